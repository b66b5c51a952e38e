"""Shared test fixtures: where the real fixture images are, and a per-session feature cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fixtures_root() -> Path:
    """The shared PixelSmile fixtures: $FEDBENCH_FIXTURES, else ../shared/fixtures/pixelsmile beside the repo."""
    env = os.environ.get("FEDBENCH_FIXTURES")
    return Path(env) if env else REPO.parent / "shared" / "fixtures" / "pixelsmile"


@pytest.fixture(scope="session")
def pixelsmile() -> Path:
    root = fixtures_root()
    if not (root / "triplets.jsonl").is_file():
        pytest.skip(f"shared fixtures not found at {root} (set FEDBENCH_FIXTURES)")
    return root


@pytest.fixture(scope="session")
def faces_in_the_wild() -> Path:
    """Labelled real faces (labels.csv: image,label,identity), beside the PixelSmile fixtures."""
    root = fixtures_root().parent / "faces-in-the-wild"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"shared fixtures not found at {root} (set FEDBENCH_FIXTURES)")
    return root
