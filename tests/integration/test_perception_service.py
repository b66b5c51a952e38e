"""The one perception path on real faces: tight crops are found (in the original frame's coordinates),
the service perceives an image once whatever asks for it, and a `fedbench meta` + `fedbench score`
pair over one cache perceives each image once."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.data.images import decode_image
from fedbench.faces.perception import Perceiver
from fedbench.faces.service import PerceptionService

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def perceiver() -> Perceiver:
    p = Perceiver()
    yield p
    p.close()


def _rgb(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).rgb


def _tight_crop(rgb: np.ndarray, box: np.ndarray, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """The face's landmark box cut `shrink` of its size tighter on each side; and the crop's origin (x, y)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box * [w, h, w, h]
    dx, dy = (x1 - x0) * shrink, (y1 - y0) * shrink
    x0, y0, x1, y1 = (int(round(v)) for v in (x0 + dx, y0 + dy, x1 - dx, y1 - dy))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), np.array([x0, y0], dtype=np.float64)


@pytest.mark.parametrize("name", ["angry", "fear"])
def test_a_tight_crop_of_a_shared_portrait_is_found_in_its_own_coordinates(pixelsmile, perceiver, name):
    rgb = _rgb(pixelsmile / "blend" / f"{name}.jpg")
    whole = perceiver.perceive(rgb)
    assert whole.status == "ok" and whole.padding == 0
    face = whole.faces[0]
    assert perceiver.perceive(_tight_crop(rgb, face.box, 0.0)[0]).status == "ok"  # cut to the face box
    # 20 % inside the box: a crop tighter than any aligned-face dataset's
    crop, origin = _tight_crop(rgb, face.box, 0.2)
    assert perceiver.landmarker.detect(crop) == []  # the frame-filling face the landmarker alone misses

    found = perceiver.perceive(crop)
    assert found.status == "ok" and found.padding > 0
    ch, cw = crop.shape[:2]
    got_px = found.faces[0].landmarks[:, :2].astype(np.float64) * [cw, ch]
    want_px = face.landmarks[:, :2].astype(np.float64) * [rgb.shape[1], rgb.shape[0]] - origin
    # Mapped back into the crop's own frame: the same points as on the whole portrait, within a few
    # per cent of the eye distance for the points inside the crop (a mapping left in the padded frame
    # is off by the padding, a quarter of the eye distance or more).
    inside = (want_px[:, 0] >= 0) & (want_px[:, 0] < cw) & (want_px[:, 1] >= 0) & (want_px[:, 1] < ch)
    iod = float(np.linalg.norm(want_px[[33, 133]].mean(axis=0) - want_px[[362, 263]].mean(axis=0)))
    assert inside.sum() > 200 and found.padding > 0.25 * iod
    assert float(np.median(np.linalg.norm(got_px - want_px, axis=1)[inside])) < 0.1 * iod
    # the face reaches past the crop's edges, so its box does too
    assert found.faces[0].box[0] < 0 and found.faces[0].box[2] > 1
    # Crops for identity and emotion are cut from those coordinates: still the same person.
    assert float(np.dot(found.faces[0].embedding, face.embedding)) > perceiver.identity_threshold


def test_the_service_perceives_once_and_shares_its_cache(pixelsmile, tmp_path):
    cache = tmp_path / "features.sqlite"
    path = pixelsmile / "blend" / "happy.jpg"
    with PerceptionService(cache_path=cache) as service:
        first = service.perceive_path(path, need_rgb=True)
        again = service.perceive_path(path)
        assert service.perceived == 1 and first.problem is None and first.rgb is not None
        assert again.blob is None and np.array_equal(again.features.faces[0].landmarks, first.features.faces[0].landmarks)
        pts = service.landmarks_px(path.read_bytes(), (2048, 2048))  # any resolution of the image
        assert np.allclose(pts, first.features.faces[0].landmarks[:, :2] * 2048)
    # Another reader (a pool worker, read-only) finds it without loading a model; a new image it
    # perceives comes back as a blob for the writer and is not written by the reader.
    with PerceptionService(cache_path=cache, readonly=True) as worker:
        assert worker.perceive_path(path).blob is None and worker._perceiver is None
        other = worker.perceive_path(pixelsmile / "blend" / "sad.jpg")
        assert worker.perceived == 1 and other.blob is not None
        assert len(worker.cache) == 1
    missing = PerceptionService(cache_path=cache).perceive_path(tmp_path / "nope.jpg")
    assert missing.features is None and "cannot read nope.jpg" in missing.problem


def test_one_meta_and_score_run_over_a_shared_cache_perceives_each_image_once(pixelsmile, tmp_path, monkeypatch):
    """`fedbench meta` (probes incl. the warp editor's landmarks, scoring, the recogniser over a labels
    CSV) and then `fedbench score` of the same triplets with one cache: every distinct image is run
    through the backbones exactly once."""
    bench = tmp_path / "bench"
    (bench / "blend").mkdir(parents=True)
    for n in ("happy", "sad", "angry", "fear"):
        shutil.copyfile(pixelsmile / "blend" / f"{n}.jpg", bench / "blend" / f"{n}.jpg")
    rows = [json.loads(line) for line in (pixelsmile / "triplets.jsonl").read_text().splitlines() if line.strip()]
    keep = [r for r in rows if r["id"] in ("blend-happy-to-sad", "blend-happy-to-angry")]
    assert len(keep) == 2
    (bench / "triplets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    # the source again (already perceived by then) and a face no triplet holds
    (bench / "labels.csv").write_text("image,label\nblend/happy.jpg,happy\nblend/fear.jpg,fear\n")

    calls: Counter[str] = Counter()
    real = Perceiver.perceive

    def counting(self, rgb):
        calls[hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()] += 1
        return real(self, rgb)

    monkeypatch.setattr(Perceiver, "perceive", counting)
    cache = tmp_path / "features.sqlite"
    runner = CliRunner()
    meta = runner.invoke(app, ["meta", "--benchmark", str(bench / "triplets.jsonl"), "--out", str(tmp_path / "meta"),
                               "--labels", str(bench / "labels.csv"), "--blend-k", "0.5", "--warp-strength", "1",
                               "--workers", "1", "--cache", str(cache)])
    assert meta.exit_code == 0, meta.output
    after_meta = sum(calls.values())
    score = runner.invoke(app, ["score", "--manifest", str(bench / "triplets.jsonl"),
                                "--edits", str(tmp_path / "meta" / "probes" / "warp-1"),
                                "--out", str(tmp_path / "score"), "--workers", "1", "--cache", str(cache)])
    assert score.exit_code == 0, score.output
    samples = [json.loads(line) for line in (tmp_path / "score" / "samples.jsonl").read_text().splitlines()]
    assert [s["status"] for s in samples] == ["ok", "ok"]

    assert calls and max(calls.values()) == 1, calls  # no image perceived twice
    assert sum(calls.values()) == after_meta  # the score run found everything in the cache
    with sqlite3.connect(cache) as db:
        rows_cached = db.execute("SELECT COUNT(*) FROM features WHERE key NOT LIKE 'bg-pair%'").fetchone()[0]
    assert rows_cached == len(calls)  # every perception is in the cache, and nothing else is
    # 4 fixture images + 2 edits each of the blend, the warp and the two processed probes (lazy and
    # oracle are byte copies; blend-1 is G's pixels)
    assert len(calls) == 12
