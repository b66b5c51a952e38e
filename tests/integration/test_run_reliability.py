"""Run folders under stress, end to end with real models: a full disk mid-run is one message, leaves
no temporary file and resumes; two runs on one --out never interleave (refused with the holder's PID,
or waiting with --wait) and give the same bytes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.store import atomic
from fedbench.store.lock import LOCK_NAME

from conftest import manifest_rows, write_absolute_manifest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW_EDITOR = """
    import sys, time
    from PIL import Image
    src, dst = sys.argv[1:]
    time.sleep(1.5)
    Image.open(src).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(dst)
"""


@pytest.fixture()
def bench(tmp_path: Path, pixelsmile: Path) -> dict[str, Path]:
    manifest = write_absolute_manifest(pixelsmile, manifest_rows(pixelsmile)[:3], tmp_path / "bench.jsonl")
    program = tmp_path / "slow_editor.py"
    program.write_text(textwrap.dedent(SLOW_EDITOR))
    config = tmp_path / "slow.yaml"
    config.write_text("adapter: command\nparams:\n"
                      f"  command: {json.dumps(f'{sys.executable} {program} {{input}} {{output}}')}\n")
    return {"manifest": manifest, "config": config, "cache": tmp_path / "features.sqlite", "root": tmp_path}


def _args(bench: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["eval", "--editor", str(bench["config"]), "--benchmark", str(bench["manifest"]), "--out", str(out),
            "--allow-outside", "--cache", str(bench["cache"]), "--workers", "1", *extra]


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_mid_run_is_one_message_then_resumes(bench: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    out = bench["root"] / "run"
    real_replace = os.replace

    def full_for_summary(src: object, dst: object) -> None:
        if Path(str(dst)).name == "summary.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full_for_summary)
    result = CliRunner().invoke(app, _args(bench, out))
    assert result.exit_code == 4, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and "disk full" in line]
    assert len(lines) == 1 and "summary.json" in lines[0] and "Traceback" not in result.stderr
    assert not (out / "summary.json").exists() and _temps(out) == []
    replaced: list[str] = []

    def recording(src: object, dst: object) -> None:
        replaced.append(Path(str(dst)).name)
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", recording)

    result = CliRunner().invoke(app, _args(bench, out, "--resume"))
    assert result.exit_code == 0, result.stderr
    # each file written once, by the step that owns it (the scorer), with the editor's provenance in it
    assert replaced.count("summary.json") == 1 and replaced.count("run.json") == 1, replaced
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 3
    assert summary["editor"]["editor"] == json.loads((out / "eval.json").read_text())["editor"]
    assert json.loads((out / "run.json").read_text())["generation"]["reused"] == 3  # nothing generated twice
    assert _temps(out) == []


def _cli(bench: dict[str, Path], out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedbench.cli", *_args(bench, out, *extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_runs_on_one_folder_never_interleave(bench: dict[str, Path]) -> None:
    out = bench["root"] / "run"
    first = _cli(bench, out, "--resume")
    deadline = time.monotonic() + 120
    while not ((out / LOCK_NAME).exists() and (out / LOCK_NAME).read_text().strip()):
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = _cli(bench, out, "--resume")
    assert second.wait(120) == 2
    refusal = second.stderr.read()
    assert f"process {first.pid} " in refusal and "--wait" in refusal and "Traceback" not in refusal
    waiting = _cli(bench, out, "--resume", "--wait")
    assert first.wait(300) == 0, first.stderr.read()[-2000:]
    samples = (out / "samples.jsonl").read_bytes()
    assert waiting.wait(300) == 0, waiting.stderr.read()[-2000:]
    assert "in use by" in waiting.stderr.read()  # it said what it waited for
    assert (out / "samples.jsonl").read_bytes() == samples  # resumed after the first: the same bytes
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len({r["id"] for r in rows}) == 3  # one row each, nothing duplicated
    assert json.loads((out / "run.json").read_text())["generation"]["generated"] == 0
