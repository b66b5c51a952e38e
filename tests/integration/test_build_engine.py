"""The build engine end to end on real faces: the shared fixture portraits, a video made from a
slider sequence, and the public-domain faces, with `warp` as the ground-truth maker.

One reference build (local process pool); the same build on a local Ray cluster must give the same
manifests; a build killed with SIGKILL mid-way and resumed must give the same result too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fedbench.data.manifest import read_manifest
from fedbench.engine import BuildConfig, build
from fedbench.engine.pipeline import STAGES, BuildFolderError
from fedbench.testing.build_settings import WARP_VERIFY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = {
    "per_class": 2, "train_per_class": 20,
    "ingest": {"frame_interval_s": 0.5},
    "ground_truth": {"editor": "warp", "seeds": 2},
    "verify": WARP_VERIFY,  # warp's geometric edits: loose enough that some pass, strict enough that some fail
}


def _video(frames: list[Path], dest: Path, fps: float = 4.0) -> Path:
    images = [np.asarray(Image.open(f).convert("RGB"))[..., ::-1] for f in frames]
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for img in images:
        for _ in range(2):  # each frame held twice: near-identical neighbours the ingest must skip
            writer.write(np.ascontiguousarray(img))
    writer.release()
    return dest


@pytest.fixture(scope="module")
def sources(pixelsmile: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from fedbench.demo import public_domain_faces

    root = tmp_path_factory.mktemp("footage")
    faces = root / "portraits"
    faces.mkdir()
    for name, rgb in public_domain_faces().items():
        Image.fromarray(rgb).save(faces / f"{name}.png")
    (faces / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(faces / "wall.png")  # no face
    slider = sorted((pixelsmile / "slider" / "sad").glob("*.avif"))[::3]
    video = _video(slider, root / "sad-clip.mp4")
    return [pixelsmile / "blend", faces, video]


@pytest.fixture(scope="module")
def reference(sources: list[Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("built") / "local"
    return build(sources, out, BuildConfig.model_validate(SETTINGS), workers=2, progress=False)


def _manifests(out: Path) -> tuple[str, str]:
    return (out / "test.jsonl").read_text(), (out / "train.jsonl").read_text()


def test_every_stage_runs_and_rejections_carry_reasons(reference) -> None:
    counts = {c.name: c for c in reference.counts}
    assert [c.name for c in reference.counts] == [s.name for s in STAGES] + ["split"]
    assert counts["ingest"].rejected == 1  # the broken file
    assert counts["face"].rejected >= 1  # the wall
    assert counts["target"].outputs == 2 * counts["label"].outputs
    assert counts["verify"].outputs > 0 and counts["verify"].rejected > 0
    rejections = [json.loads(line) for line in (reference.out / "rejections.jsonl").read_text().splitlines()]
    assert all(r["stage"] and r["reason"] for r in rejections)
    stages = {r["stage"] for r in rejections}
    assert {"ingest", "face", "verify", "split"} <= stages
    broken = next(r for r in rejections if r["stage"] == "ingest")
    assert "broken.jpg" in broken["reason"]
    card = (reference.out / "datacard.md").read_text()
    for text in ("| verify |", "min_identity", "face-landmarker", "Apache-2.0", "SYNTHETIC", "warp"):
        assert text in card


def test_video_frames_are_sampled_and_near_duplicates_skipped(reference) -> None:
    ingest = [json.loads(line) for line in (reference.out / "work" / "ingest.jsonl").read_text().splitlines()]
    video = next(r for r in ingest if r["id"].startswith("sad-clip"))
    frames = video["out"]
    # 10 slider frames, each held 2 frames at 4 fps, sampled every 0.5 s: at most 10, the near-identical dropped
    assert 1 <= len(frames) < 10
    assert all("#t=" in f["origin"] and Path(f["image"]).is_file() for f in frames)


def test_split_is_identity_disjoint_and_manifests_load(reference) -> None:
    test = read_manifest(reference.test)
    train = read_manifest(reference.train)
    assert len(test) > 0 and len(train) > 0
    assert {t.identity for t in test}.isdisjoint({t.identity for t in train})
    assert {t.split for t in test} == {"test"} and {t.split for t in train} == {"train"}
    for t in [*test, *train]:
        assert t.target != t.source_expression
        assert t.source.is_file() and t.ground_truth.is_file()
        if t.target != "neutral":  # neutral names no facial action to perform
            assert t.actions, f"{t.id}: the instruction names no action FED-Score can read: {t.instruction}"
        assert t.meta["verification"]["id"] >= SETTINGS["verify"]["min_identity"]
    per_class_test = {}
    for t in test:
        per_class_test[t.target] = per_class_test.get(t.target, 0) + 1
    assert max(per_class_test.values()) <= SETTINGS["per_class"]


def test_the_built_benchmark_scores(reference, tmp_path: Path) -> None:
    from fedbench.evaluate import evaluate

    result = evaluate("oracle", reference.test, tmp_path / "oracle", cache_path=tmp_path / "f.sqlite",
                      workers=1, progress=False)
    assert result.summary["n_scored"] == len(read_manifest(reference.test))
    assert result.summary["status_counts"] == {"ok": result.summary["n_scored"]}  # verified: none degenerate
    assert result.summary["overall"]["fed"]["mean"] > 90


def test_ray_executor_gives_the_same_manifests(reference, sources: list[Path], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = build(sources, tmp_path / "ray", BuildConfig.model_validate(SETTINGS), executor="ray",
                       workers=2, progress=False)
    finally:
        ray.shutdown()
    assert _manifests(result.out) == _manifests(reference.out)
    assert "`ray` executor" in (result.out / "datacard.md").read_text()


def test_killed_and_resumed_build_matches(reference, sources: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "killed"
    settings = tmp_path / "build.yaml"
    import yaml

    settings.write_text(yaml.safe_dump(SETTINGS))
    cmd = [sys.executable, "-m", "fedbench.cli", "build", "--out", str(out), "--config", str(settings),
           "--workers", "2", *[a for s in sources for a in ("--sources", str(s))]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    journal = out / "work" / "ground_truth.jsonl"
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 3):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert not (out / "test.jsonl").exists()
    done_before = journal.read_bytes().count(b"\n")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _manifests(out) == _manifests(reference.out)
    gt_rows = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(gt_rows) == len({r["id"] for r in gt_rows})  # nothing done twice
    assert len(gt_rows) >= done_before
    # a different setting cannot resume into the same folder
    with pytest.raises(BuildFolderError, match="other sources or settings"):
        build(sources, out, BuildConfig.model_validate({**SETTINGS, "per_class": 3}), workers=1, progress=False)
