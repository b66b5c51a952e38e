"""Shared test fixtures: where the real fixture images are, a tiny generated benchmark that ships in
tests/, and a per-session feature cache.

Real-face tests take the `pixelsmile` / `faces_in_the_wild` fixtures. Outside CI a missing ../shared
skips them; under CI=true it fails them, naming what is missing and where it was looked for, so a CI
run can never pass by skipping its real-model tests. Tests that need no real face use `tiny_bench`,
which is committed under tests/fixtures/tiny (regenerate with tests/fixtures/make_tiny.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).resolve().parent / "fixtures" / "tiny"


def fixtures_root() -> Path:
    """The shared PixelSmile fixtures: $FEDBENCH_FIXTURES, else ../shared/fixtures/pixelsmile beside the repo."""
    env = os.environ.get("FEDBENCH_FIXTURES")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "fixtures" / "pixelsmile"


def wild_root() -> Path:
    """Faces in the wild: $FEDBENCH_WILD, else beside the PixelSmile fixtures."""
    env = os.environ.get("FEDBENCH_WILD")
    return Path(env).expanduser() if env else fixtures_root().parent / "faces-in-the-wild"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_shared(root: Path, marker: str, what: str, how: str) -> Path:
    """`root` when `root/marker` exists; otherwise skip, or fail under CI=true (a CI run must not pass by
    skipping the real-face tests)."""
    if (root / marker).is_file():
        return root
    why = f"{what} not found: {root / marker} does not exist ({how})"
    if in_ci():
        pytest.fail(f"CI=true and the shared real-face fixtures are missing: {why}", pytrace=False)
    pytest.skip(why)


def manifest_rows(root: Path) -> list[dict[str, Any]]:
    """The rows of `root/triplets.jsonl`, as dicts."""
    return [json.loads(line) for line in (root / "triplets.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]


def write_absolute_manifest(root: Path, rows: Sequence[dict[str, Any]], dest: Path) -> Path:
    """Write `rows` (of the manifest in `root`) to `dest` with absolute image paths, so `dest` may live
    anywhere (a tmp folder) and still name the fixture images (read with allow_outside)."""
    dest.write_text("".join(json.dumps({**r, "source": str(root / r["source"]),
                                        "ground_truth": str(root / r["ground_truth"])}) + "\n" for r in rows),
                    encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def pixelsmile() -> Path:
    return require_shared(fixtures_root(), "triplets.jsonl", "PixelSmile fixtures",
                          "set FEDBENCH_FIXTURES, or put ../shared/fixtures/pixelsmile beside the repo")


@pytest.fixture(scope="session")
def faces_in_the_wild() -> Path:
    """Labelled real faces (labels.csv: image,label,identity), beside the PixelSmile fixtures."""
    return require_shared(wild_root(), "labels.csv", "faces-in-the-wild fixtures",
                          "set FEDBENCH_WILD, or put faces-in-the-wild beside the PixelSmile fixtures")


@pytest.fixture(scope="session")
def tiny_bench() -> Path:
    """A three-row benchmark of small generated images (no faces): for validation and plumbing tests."""
    assert (TINY / "triplets.jsonl").is_file(), f"{TINY / 'triplets.jsonl'} is missing: run tests/fixtures/make_tiny.py"
    return TINY
