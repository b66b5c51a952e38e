"""The MediaPipe Face Landmarker is closed before interpreter teardown, without swapping its class.

MediaPipe's own __del__ raises when it first runs during teardown (its thread pool is gone). Each case
runs in a fresh interpreter, because only the end of a process shows the problem; the real model runs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[2] / "src"
PRELUDE = f"""
import gc, sys
sys.path.insert(0, {str(SRC)!r})
import numpy as np
from fedbench.faces.landmarks import FaceLandmarker
blank = np.zeros((64, 64, 3), np.uint8)
"""


def _run(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("body", [
    "kept = FaceLandmarker(); kept.detect(blank)  # never closed: lives until the process ends",
    "lm = FaceLandmarker(); lm.detect(blank); lm.close(); lm.close()  # closing twice is harmless",
], ids=["left-open-at-exit", "closed-twice"])
def test_no_error_at_exit(body: str) -> None:
    res = _run(body)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr


def test_dropping_the_wrapper_closes_the_landmarker_and_keeps_its_class() -> None:
    res = _run("""
        from mediapipe.tasks.python import vision
        lm = FaceLandmarker(); inner = lm._landmarker
        assert type(inner) is vision.FaceLandmarker, type(inner)
        del lm; gc.collect()
        print("closed" if not inner._handle else "open")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "closed"
