"""CLI misuse of its surroundings is one line, never a traceback: --out a file, --cache a folder or a
text file, a busy run folder, a full disk. No model is loaded: each is refused before the work."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.store.lock import folder_lock


@pytest.fixture()
def bench(tmp_path: Path) -> dict[str, Path]:
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "r1", "source": "a.png", "instruction": "smile", "target": "happy",
                                    "ground_truth": "a.png"}) + "\n")
    edits = tmp_path / "edits"
    edits.mkdir()
    return {"manifest": manifest, "edits": edits, "root": tmp_path}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def _score(bench: dict[str, Path], out: Path, cache: Path) -> tuple[int, str]:
    return _run("score", "-m", bench["manifest"], "-e", bench["edits"], "-o", out, "--cache", cache)


def test_out_that_is_a_file(bench: dict[str, Path]) -> None:
    out = bench["root"] / "out.txt"
    out.write_text("not a folder")
    code, text = _score(bench, out, bench["root"] / "f.sqlite")
    assert code == 2 and "is a file, not a folder" in _one_line(text)
    code, text = _run("eval", "--editor", "identity", "-b", bench["manifest"], "-o", out,
                      "--cache", bench["root"] / "f.sqlite")
    assert code == 2 and "is a file, not a folder" in _one_line(text)


def test_cache_that_is_a_folder_or_a_text_file(bench: dict[str, Path]) -> None:
    code, text = _score(bench, bench["root"] / "out", bench["root"])
    assert code == 2 and "is a folder" in _one_line(text)
    notes = bench["root"] / "notes.txt"
    notes.write_text("a shopping list\n" * 200)
    code, text = _score(bench, bench["root"] / "out", notes)
    assert code == 2 and "not a fedbench feature cache" in _one_line(text)
    assert notes.read_text() == "a shopping list\n" * 200  # untouched


def test_busy_run_folder_names_the_holder(bench: dict[str, Path]) -> None:
    import os
    import subprocess
    import sys

    out = bench["root"] / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom fedbench.store.lock import folder_lock\n"
                               f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        code, text = _score(bench, out, bench["root"] / "f.sqlite")
        assert code == 2 and f"process {holder.pid} " in _one_line(text) and "--wait" in text
        code, text = _run("eval", "--editor", "identity", "-b", bench["manifest"], "-o", out, "--resume",
                          "--cache", bench["root"] / "f.sqlite")
        assert code == 2 and f"process {holder.pid} " in _one_line(text)
    finally:
        holder.kill()
        holder.wait()


def test_full_disk_is_one_line(bench: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("fedbench.store.features.sqlite3.connect", full)  # the first write of a score run
    code, text = _score(bench, bench["root"] / "out", bench["root"] / "f.sqlite")
    assert code == 4 and "no space left" in _one_line(text).lower()


def test_the_lock_is_reentrant_for_eval_then_score(bench: dict[str, Path]) -> None:
    with folder_lock(bench["root"] / "run"):  # what eval does before scoring into the same folder
        with folder_lock(bench["root"] / "run"):
            pass
