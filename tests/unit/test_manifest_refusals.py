"""Manifest problems are refused by `fedbench.score` before any work, naming the row.

Runs on the tiny generated benchmark in tests/fixtures/tiny (no faces, no model): validation happens
before a worker starts, and the patched worker initialiser proves it. The real-model runs on bad edits
and broken references stay in tests/integration/test_bad_inputs.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from PIL import Image

from fedbench.data.manifest import REQUIRED, ManifestError, read_manifest
from fedbench.scoring import worker
from fedbench.scoring.runner import score


class _WorkStarted(Exception):
    """Raised by the patched worker initialiser: scoring went past validation."""


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise _WorkStarted("a worker was started")

    monkeypatch.setattr(worker, "init_worker", refuse)


def _rows(tiny_bench: Path) -> list[dict[str, Any]]:
    lines = (tiny_bench / "triplets.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _copy_references(tiny_bench: Path, root: Path, rows: list[dict[str, Any]]) -> None:
    """Copy each source / ground truth the rows name into `root`, same relative path."""
    for r in rows:
        for key in ("source", "ground_truth"):
            src = tiny_bench / r[key]
            if src.is_file():  # rows may deliberately name files that do not exist
                dest = root / r[key]
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)


def _write_jsonl(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _score(manifest: Path, edits: Path, work: Path, **kwargs: Any) -> Any:
    return score(manifest, edits, cache_path=work / "features.sqlite", workers=1, n_bootstrap=50, **kwargs)


def _dup_id(rows: list[dict[str, Any]]) -> list[Any]:
    rows[1]["id"] = rows[0]["id"]
    return rows


def _unknown_target(rows: list[dict[str, Any]]) -> list[Any]:
    rows[1]["target"] = "sleepy"
    return rows


def _missing_source(rows: list[dict[str, Any]]) -> list[Any]:
    rows[1]["source"] = "images/does-not-exist.png"
    return rows


def _escapes(rows: list[dict[str, Any]]) -> list[Any]:
    rows[1]["source"] = "../outside.png"  # exists: the test writes it next to the corpus folder
    return rows


def _invalid_json(rows: list[dict[str, Any]]) -> list[Any]:
    return [rows[0], '{"id": "broken", "source": ', rows[2]]


MANIFEST_CASES: dict[str, tuple[Callable[[list[dict[str, Any]]], list[Any]], str]] = {
    "duplicate_id": (_dup_id, "duplicate id"),
    "unknown_target": (_unknown_target, "unknown target"),
    "missing_source_file": (_missing_source, "file not found"),
    "path_escapes_manifest_folder": (_escapes, "leaves the manifest"),
    "invalid_json_line": (_invalid_json, "invalid JSON"),
}


def _bad_manifest(tiny_bench: Path, tmp_path: Path, case: str) -> Path:
    rows = _rows(tiny_bench)
    root = tmp_path / "corpus"
    root.mkdir()
    _copy_references(tiny_bench, root, rows)
    shutil.copyfile(tiny_bench / rows[0]["source"], tmp_path / "outside.png")
    return _write_jsonl(root / "manifest.jsonl", MANIFEST_CASES[case][0](rows))


def test_the_tiny_benchmark_is_valid(tiny_bench: Path) -> None:
    """The control for every refusal below: unchanged, the same rows load."""
    man = read_manifest(tiny_bench / "triplets.jsonl")
    assert [t.id for t in man] == [r["id"] for r in _rows(tiny_bench)]
    assert all(t.source.is_file() and t.ground_truth.is_file() for t in man)


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_manifest_problem_is_refused_before_any_work(tiny_bench: Path, tmp_path: Path, case: str,
                                                     no_work: None) -> None:
    manifest = _bad_manifest(tiny_bench, tmp_path, case)
    edits = tmp_path / "edits"
    edits.mkdir()
    out = tmp_path / "out"
    with pytest.raises(ManifestError) as info:
        _score(manifest, edits, tmp_path, out=out)
    problems = info.value.problems
    assert [p.row for p in problems] == [2], [str(p) for p in problems]  # only the bad row, by number
    assert MANIFEST_CASES[case][1].lower() in problems[0].message.lower(), problems[0].message
    assert "row 2" in str(info.value)
    assert not out.exists() and not (tmp_path / "features.sqlite").exists()


def test_path_outside_the_manifest_folder_is_accepted_when_allowed(tiny_bench: Path, tmp_path: Path,
                                                                   no_work: None) -> None:
    manifest = _bad_manifest(tiny_bench, tmp_path, "path_escapes_manifest_folder")
    man = read_manifest(manifest, allow_outside=True)
    assert man.triplets[1].source == (tmp_path / "outside.png").resolve()
    edits = tmp_path / "edits"
    edits.mkdir()
    with pytest.raises(_WorkStarted):  # validation passed: `score` went on to start its workers
        _score(manifest, edits, tmp_path, allow_outside=True)


def test_two_edit_files_for_one_id_are_refused(tiny_bench: Path, tmp_path: Path, no_work: None) -> None:
    rows = _rows(tiny_bench)
    root = tmp_path / "corpus"
    _copy_references(tiny_bench, root, rows)
    manifest = _write_jsonl(root / "manifest.jsonl", rows)
    edits = tmp_path / "edits"
    edits.mkdir()
    dup = rows[1]["id"]
    with Image.open(tiny_bench / rows[1]["ground_truth"]) as gt:
        gt.convert("RGB").save(edits / f"{dup}.png")
        gt.convert("RGB").save(edits / f"{dup}.jpg")
    shutil.copyfile(tiny_bench / rows[0]["ground_truth"], edits / f"{rows[0]['id']}.png")
    out = tmp_path / "out"
    with pytest.raises(ManifestError) as info:
        _score(manifest, edits, tmp_path, out=out)
    problems = info.value.problems
    assert [(p.row, p.id) for p in problems] == [(2, dup)]
    assert f"{dup}.png" in problems[0].message and f"{dup}.jpg" in problems[0].message
    assert "row 2" in str(info.value)
    assert not out.exists() and not (tmp_path / "features.sqlite").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_manifest_saved_with_a_utf8_bom_loads(tiny_bench: Path, tmp_path: Path, fmt: str) -> None:
    """Excel's "CSV UTF-8" and Windows Notepad write a byte-order mark before the first column name."""
    rows = _rows(tiny_bench)
    _copy_references(tiny_bench, tmp_path, rows)
    path = tmp_path / f"manifest.{fmt}"
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        if fmt == "csv":
            writer = csv.DictWriter(fh, fieldnames=list(REQUIRED))
            writer.writeheader()
            writer.writerows({k: r[k] for k in REQUIRED} for r in rows)
        else:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    man = read_manifest(path)
    assert [t.id for t in man] == [r["id"] for r in rows]
