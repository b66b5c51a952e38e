"""A fedbench process writes nothing to ~/intel: OpenVINO's usage telemetry is kept off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")

PROGRAM = "import fedbench, openvino; openvino.Core(); import fedbench.faces.runtime"


def _run(home: Path, **env: str) -> None:
    # CI=... is dropped: OpenVINO's telemetry stays quiet on its own under CI, which would let both
    # tests hold without fedbench's block
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    subprocess.run([sys.executable, "-c", PROGRAM], check=True, timeout=120,
                   env={**base, "HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path), **env})


def test_importing_openvino_through_fedbench_writes_nothing_home(tmp_path: Path) -> None:
    _run(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_opt_out_can_be_lifted_and_then_openvino_writes_its_counter(tmp_path: Path) -> None:
    """The control: without fedbench's block, the same program does write ~/intel (so the test above can fail)."""
    _run(tmp_path, FEDBENCH_OPENVINO_TELEMETRY="1")
    assert (tmp_path / "intel" / "stats").is_file()
