"""The warp editor's geometry on a real portrait: at strength 2 the map from output to source pixels
never folds (every cell of it keeps a positive Jacobian determinant, a check that the version-2 map,
sampling at p - D(p), fails on the same field), and strength 2 moves the face's landmarks further
than strength 1, as the Face Landmarker reads them on the edited images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fedbench.data.images import decode_image
from fedbench.editors.warp import (_STEP_SLOPE, DISPLACEMENTS, SourceMap, _bilinear, displacement, source_map,
                                   warp_expression, warp_grid)
from fedbench.faces.service import PerceptionService

pytestmark = pytest.mark.integration

TARGETS = [t for t in DISPLACEMENTS if t != "neutral"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    svc = PerceptionService(None, tmp_path_factory.mktemp("warp-geometry") / "features.sqlite")
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def portrait(pixelsmile: Path, service) -> tuple[np.ndarray, np.ndarray]:
    data = (pixelsmile / "blend" / "happy.jpg").read_bytes()
    rgb = decode_image(data, 1024).rgb
    pts = service.landmarks_px(data, (rgb.shape[1], rgb.shape[0]))
    assert pts is not None
    return rgb, pts[:, :2].astype(np.float64)


def test_strength_2_is_fold_free(portrait) -> None:
    rgb, pts = portrait
    shape = rgb.shape[:2]
    old_folds = 0
    for target in TARGETS:
        grid = warp_grid(shape, pts, target, 2.0)
        assert grid is not None
        # every Euler step's Jacobian I - J/n has singular values >= 1 - _STEP_SLOPE: each step is injective
        assert grid.slopes().max() / grid.n_steps <= _STEP_SLOPE + 1e-9
        backward = source_map(grid, shape)
        assert backward.min_det() > 0, target
        # the same check on version 2's map, p -> p - D(p) with this very field, finds the folds it made
        py, px = np.mgrid[0:shape[0] + 4:4, 0:shape[1] + 4:4].astype(np.float64)
        d = _bilinear(grid.field, px / grid.step, py / grid.step)
        old_folds += SourceMap(px - d[..., 0], py - d[..., 1], 4).min_det() <= 0
    assert old_folds >= 1


def _landmark_shift(service, rgb: np.ndarray, pts: np.ndarray, target: str, strength: float, tmp: Path) -> float:
    """Mean distance the Face Landmarker finds the target's moved landmarks from their source places."""
    path = tmp / f"{target}-{strength:g}.png"
    cv2.imwrite(str(path), cv2.cvtColor(warp_expression(rgb, pts, target, strength), cv2.COLOR_RGB2BGR))
    found = service.landmarks_px(path.read_bytes(), (rgb.shape[1], rgb.shape[0]))
    assert found is not None, f"{path}: no face found in the edit"
    moved = np.abs(displacement(pts, target, 1.0)).sum(axis=1) > 0
    return float(np.linalg.norm(found[moved, :2] - pts[moved], axis=1).mean())


def test_strength_2_moves_the_landmarks_further(portrait, service, tmp_path: Path) -> None:
    rgb, pts = portrait
    shifts = {t: [_landmark_shift(service, rgb, pts, t, s, tmp_path) for s in (0.5, 1.0, 2.0)] for t in TARGETS}
    print("landmark shift (px) at strength 0.5 / 1 / 2:", {t: [round(v, 1) for v in s] for t, s in shifts.items()})
    for target, (half, one, two) in shifts.items():
        assert half < one < two, (target, half, one, two)


def test_warp_editor_uses_the_runs_feature_cache(pixelsmile: Path, tmp_path: Path, monkeypatch) -> None:
    """`fedbench eval --cache X`: the warp editor reads and keeps the source's landmarks in X, not in
    the default cache (the scoring already did)."""
    import json

    from fedbench.evaluate import evaluate

    default = tmp_path / "default.sqlite"
    monkeypatch.setattr("fedbench.faces.service.features_db", lambda: default)
    row = {"id": "h2s", "source": str(pixelsmile / "blend" / "happy.jpg"), "target": "sad",
           "ground_truth": str(pixelsmile / "blend" / "sad.jpg"), "instruction": "Make the face sad."}
    manifest = tmp_path / "one.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    res = evaluate("warp", manifest, tmp_path / "run", cache_path=tmp_path / "run.sqlite", allow_outside=True,
                   workers=1, progress=False, n_bootstrap=0)
    assert res.counts["failed"] == 0 and res.generations[0]["status"] == "ok"
    assert (tmp_path / "run.sqlite").is_file() and not default.exists()
