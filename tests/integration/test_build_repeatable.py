"""`fedbench build` is repeatable: the same photos give the same test/train split, bit for bit.

The bug this guards: input ids hashed the file's absolute path, and every later choice keys on ids
(target classes, ground-truth seeds, identity-cluster names and so the seeded order in which clusters
go to test), so the same photos copied to another folder (a fresh tmp dir per run, as the training
recipe does) got another split: 3 test / 4 train triplets in one folder, 4 / 4 of other people in
the next. Here the same real photos sit in two folders and are built three ways: cold with 2
workers, cold with 1 worker, and with the first build's feature cache copied in (warm)."""

from __future__ import annotations

import csv
import shutil
import sqlite3
from pathlib import Path

import pytest

from fedbench.engine import BuildConfig, build
from fedbench.engine.stages.ingest import discover
from fedbench.testing.build_settings import WARP_VERIFY

N_PEOPLE = 14  # 14 photos build in ~15 s per build on 2 shared cores and give both splits a few triplets
SETTINGS = {
    "per_class": 1, "train_per_class": 3,
    "target": {"targets_per_source": 2},
    "ground_truth": {"editor": "warp", "seeds": 1},
    "verify": WARP_VERIFY,  # warp's geometric edits: loose enough that some pass, strict enough that some fail
}


def _copy_photos(wild: Path, dest: Path) -> Path:
    """One photo each of N_PEOPLE people, the labels taken in turn (so several classes are sources)."""
    with open(wild / "labels.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["image"])
    by_label: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    seen: set[str] = set()
    dest.mkdir(parents=True)
    for r in (r for group in zip(*by_label.values()) for r in group):
        if r["identity"] not in seen:
            seen.add(r["identity"])
            shutil.copy(wild / r["image"], dest / Path(r["image"]).name)
        if len(seen) == N_PEOPLE:
            break
    return dest


def _outputs(out: Path, photos: Path) -> dict[str, str]:
    # meta.origin names the input file itself: the only place the folder may (and must) differ
    return {name: (out / name).read_text().replace(str(photos.resolve()), "<photos>")
            for name in ("test.jsonl", "train.jsonl", "rejections.jsonl")}


def _feature_rows(out: Path) -> int:
    with sqlite3.connect(out / "work" / "features.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM features").fetchone()[0]


def test_ids_do_not_depend_on_the_folder(tmp_path: Path) -> None:
    for folder in ("a/photos", "b/elsewhere/photos"):
        (tmp_path / folder / "sub").mkdir(parents=True)
        for name in ("x.jpg", "sub/y.png", "z.txt"):
            (tmp_path / folder / name).write_bytes(b"")
    ids = [[r["id"] for r in discover([tmp_path / f], ([".jpg", ".png"], []))]
           for f in ("a/photos", "b/elsewhere/photos")]
    assert ids[0] == ids[1] and len(ids[0]) == 2
    # the same name in two --sources entries is still two inputs
    twice = [r["id"] for r in discover([tmp_path / "a/photos/x.jpg", tmp_path / "b/elsewhere/photos/x.jpg"],
                                       ([".jpg"], []))]
    assert len(set(twice)) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_same_photos_give_the_same_split(faces_in_the_wild: Path, tmp_path: Path) -> None:
    config = BuildConfig.model_validate(SETTINGS)
    photos_a = _copy_photos(faces_in_the_wild, tmp_path / "a" / "photos")
    photos_b = _copy_photos(faces_in_the_wild, tmp_path / "b" / "elsewhere" / "photos")

    ref = build([photos_a], tmp_path / "built-a", config, workers=2, progress=False)
    expected = _outputs(ref.out, photos_a)
    n_test, n_train = (expected[n].count("\n") for n in ("test.jsonl", "train.jsonl"))
    assert n_test > 0 and n_train > 0, (n_test, n_train)

    cold = build([photos_b], tmp_path / "built-b-cold", config, workers=1, progress=False)
    assert _outputs(cold.out, photos_b) == expected, "another folder, 1 worker: another split"

    warm_out = tmp_path / "built-b-warm"
    (warm_out / "work").mkdir(parents=True)
    for f in (ref.out / "work").glob("features.sqlite*"):
        shutil.copy(f, warm_out / "work" / f.name)
    before = _feature_rows(warm_out)
    warm = build([photos_b], warm_out, config, workers=2, progress=False)
    assert _feature_rows(warm.out) == before, "the copied cache should have held every image's features"
    assert _outputs(warm.out, photos_b) == expected, "a warm feature cache changed the split"
