"""`warp`: a training-free expression editor. Face Landmarker points move along a per-expression
displacement field, given in a normalised face frame (units of the inter-ocular distance, x towards
the subject's left, y down), and the image follows a smooth thin-plate-spline warp. No teeth or
wrinkles appear, but the geometry of the expression changes: a real, fast baseline.

The displacement fields are data (`DISPLACEMENTS`), meant to be refitted from training pairs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

from fedbench.editors.base import EditRequest, EditResult, Editor, decode_full

# MediaPipe face-mesh indices ("left" = image left = the subject's right).
_MOUTH_L, _MOUTH_R = 61, 291
_UPPER_LIP = (0, 37, 267, 13)
_LOWER_LIP = (17, 84, 314, 14)
_CHIN = (152, 148, 176, 377, 400)
_JAW_SIDE = (149, 150, 378, 379)
_BROW_L_INNER, _BROW_R_INNER = (107, 55, 66, 65), (336, 285, 296, 295)
_BROW_L_OUTER, _BROW_R_OUTER = (70, 46, 63, 53, 105, 52), (300, 276, 293, 283, 334, 282)
_UPPER_LID = (159, 158, 160, 386, 385, 387)
_NOSE_WINGS = (98, 327, 64, 294)
_MOUTH_L_INNER, _MOUTH_R_INNER = (76, 62, 78), (306, 292, 308)
_MOUTH_L_NEAR, _MOUTH_R_NEAR = (146, 91, 185, 40, 77), (375, 321, 409, 270, 307)
_LOWER_LID = (145, 153, 144, 374, 380, 373)
_CHEEKS = (50, 101, 205, 280, 330, 425)

Move = tuple[tuple[int, ...], tuple[float, float]]

# Per target: (landmarks, (dx, dy)) in inter-ocular units, x towards the image right: each side of
# the face has its own entry where the two sides move apart or together.
DISPLACEMENTS: dict[str, list[Move]] = {
    # A smile moves the whole mouth-corner region up and out and lifts the cheeks and lower lids
    # (AU12 + AU6); moving the two corner points alone reads as almost no smile to the landmarker.
    "happy": [((_MOUTH_L,), (-0.18, -0.24)), ((_MOUTH_R,), (0.18, -0.24)),
              (_MOUTH_L_INNER, (-0.15, -0.20)), (_MOUTH_R_INNER, (0.15, -0.20)),
              (_MOUTH_L_NEAR, (-0.10, -0.13)), (_MOUTH_R_NEAR, (0.10, -0.13)),
              (_UPPER_LIP + (82, 312), (0.00, -0.045)), (_LOWER_LID, (0.00, -0.06)), (_CHEEKS, (0.00, -0.09))],
    "sad": [((_MOUTH_L, _MOUTH_R), (0.00, 0.18)), (_BROW_L_INNER + _BROW_R_INNER, (0.00, -0.15)),
            (_BROW_L_OUTER + _BROW_R_OUTER, (0.00, 0.04)), (_LOWER_LIP, (0.00, 0.04))],
    "surprise": [(_BROW_L_INNER + _BROW_R_INNER + _BROW_L_OUTER + _BROW_R_OUTER, (0.00, -0.24)),
                 (_UPPER_LID, (0.00, -0.07)), (_LOWER_LIP, (0.00, 0.35)), (_CHIN, (0.00, 0.40)),
                 (_JAW_SIDE, (0.00, 0.20)), ((_MOUTH_L, _MOUTH_R), (0.00, 0.13))],
    "fear": [(_BROW_L_INNER + _BROW_R_INNER, (0.00, -0.20)), (_BROW_L_OUTER + _BROW_R_OUTER, (0.00, -0.11)),
             (_UPPER_LID, (0.00, -0.07)), ((_MOUTH_L,), (-0.15, 0.07)), ((_MOUTH_R,), (0.15, 0.07)),
             (_LOWER_LIP, (0.00, 0.13)), (_CHIN, (0.00, 0.13))],
    "angry": [(_BROW_L_INNER, (0.07, 0.15)), (_BROW_R_INNER, (-0.07, 0.15)),
              (_BROW_L_OUTER + _BROW_R_OUTER, (0.00, 0.07)), (_UPPER_LID, (0.00, 0.04)),
              (_UPPER_LIP, (0.00, 0.04)), (_LOWER_LIP, (0.00, -0.07))],
    "disgust": [(_UPPER_LIP, (0.00, -0.13)), (_NOSE_WINGS, (0.00, -0.07)), ((_MOUTH_L, _MOUTH_R), (0.00, 0.09)),
                (_BROW_L_INNER + _BROW_R_INNER, (0.00, 0.07))],
    "neutral": [],
}


N_LANDMARKS = 478


def _face_frame(landmarks_px: np.ndarray) -> tuple[float, np.ndarray]:
    """Inter-ocular distance and the rotation from face frame to image."""
    left = landmarks_px[[33, 133]].mean(axis=0)
    right = landmarks_px[[362, 263]].mean(axis=0)
    axis = right - left
    iod = float(np.linalg.norm(axis))
    c, s = axis / max(iod, 1e-6)
    return iod, np.array([[c, -s], [s, c]])


def reference_field(target: str) -> np.ndarray:
    """The hand-made displacement field of `target`: N_LANDMARKS x 2, face-frame units."""
    field = np.zeros((N_LANDMARKS, 2))
    for idx, (dx, dy) in DISPLACEMENTS[target]:
        field[list(idx)] = (dx, dy)
    return field


def to_face_frame(landmarks_px: np.ndarray, moves_px: np.ndarray) -> np.ndarray:
    """Pixel moves of each landmark -> face-frame units (the inverse of `displacement`)."""
    iod, rot = _face_frame(landmarks_px)
    return (moves_px @ rot) / max(iod, 1e-6)


def displacement(landmarks_px: np.ndarray, target: str | np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Per-landmark displacement (N x 2, pixels) for `target` (a name, or a face-frame field) at `strength`."""
    iod, rot = _face_frame(landmarks_px)
    field = reference_field(target) if isinstance(target, str) else np.asarray(target, dtype=np.float64)
    return strength * iod * field[: len(landmarks_px)] @ rot.T


# A true, fold-free warp. The landmark moves, spread by a thin-plate spline, are a velocity field D,
# and the face follows its flow for time 1: a point keeps moving along the field from wherever it has
# got to. The flow of a smooth field is a bijection at any time, so a larger strength moves the face
# further and never folds it. Version 2 sampled the source at p - D(p), right only for small moves:
# that map folds wherever det(I - J) <= 0 (J the Jacobian of D), which the reference fields reach along
# the lips already at strength 1 (mouth corners overtake their neighbours) and over much of the mouth
# at strength 2; where a field asks for a fold, the flow compresses instead (and `soften` keeps that
# compression within what a sampled map resolves).
# The backward flow, q <- q - D(q) / n in n steps, gives each output pixel its source position; with
# n >= slope / _STEP_SLOPE (slope: the largest spectral norm of J) each step's Jacobian I - J / n keeps
# singular values in [1 - _STEP_SLOPE, 1 + _STEP_SLOPE], so every step, and their composition, has
# det > 0.
_STEP_SLOPE = 0.5
# Thin-plate smoothing in face-frame units (coordinates divided by the inter-ocular distance), so a
# face warps the same at any resolution: the landmark moves are met to ~90 %, and moves that conflict
# within a few pixels (a closed mouth's inner lips) are averaged instead of torn apart.
_SMOOTHING = 1e-3
_SLOPE_KNEE, _SLOPE_CAP = 0.75, 1.5  # see `soften`
_SOFTEN_ROUNDS = 10


@dataclass(frozen=True)
class WarpGrid:
    """The velocity field D (pixels) on a coarse grid, `step` px apart, bilinear in between."""

    field: np.ndarray  # gh x gw x 2, float64
    step: int

    def slopes(self) -> np.ndarray:
        """Per grid cell, the largest spectral norm of D's Jacobian inside it. The bilinear field's
        Jacobian in a cell is a convex combination of its four (x-edge, y-edge) difference pairs, and
        the norm is convex, so the largest of those four bounds the whole cell exactly."""
        return np.max(np.linalg.norm(self._edge_jacobians(), ord=2, axis=(-2, -1)), axis=0)

    @property
    def n_steps(self) -> int:
        """Flow steps that keep each step's slope at most _STEP_SLOPE."""
        return max(1, int(np.ceil(float(self.slopes().max()) / _STEP_SLOPE)))

    def _edge_jacobians(self) -> np.ndarray:
        f = self.field / self.step
        dx = f[:, 1:] - f[:, :-1]  # d/dx along each horizontal edge: (gh, gw-1, 2)
        dy = f[1:] - f[:-1]  # d/dy along each vertical edge: (gh-1, gw, 2)
        out = []
        for tx in (dx[:-1], dx[1:]):  # top / bottom edge of each cell
            for ty in (dy[:, :-1], dy[:, 1:]):  # left / right edge
                out.append(np.stack([tx, ty], axis=-1))  # rows: (Dx, Dy); columns: d/dx, d/dy
        return np.stack(out)  # 4 x (gh-1) x (gw-1) x 2 x 2


def warp_grid(shape: tuple[int, int], landmarks_px: np.ndarray, target: str | np.ndarray, strength: float = 1.0,
              grid_step: int | None = None) -> WarpGrid | None:
    """The velocity field of an image of `shape` (h, w); None when nothing moves."""
    h, w = shape
    pts = landmarks_px[:, :2].astype(np.float64)
    moves = displacement(pts, target, strength)
    if not np.any(moves):
        return None
    # Pin a ring around the face and the image border so the background stays where it is.
    centre = pts.mean(axis=0)
    hull = pts[cv2.convexHull(pts.astype(np.float32), returnPoints=False).ravel()]
    ring = centre + 1.6 * (hull - centre)
    border = np.array([[x, y] for x in np.linspace(0, w - 1, 5) for y in (0, h - 1)]
                      + [[x, y] for x in (0, w - 1) for y in np.linspace(0, h - 1, 5)])
    anchors = np.vstack([ring, border])
    iod = _face_frame(pts)[0]
    control = np.vstack([pts, anchors]) / iod
    values = np.vstack([moves, np.zeros_like(anchors)])
    spline = RBFInterpolator(control, values, kernel="thin_plate_spline", smoothing=_SMOOTHING, degree=1)
    # The field is smooth: evaluate it on a coarse grid (64 cells on the long side, at least 8 px)
    # and interpolate; evaluating the spline at every pixel costs seconds on a 1024 px image.
    step = grid_step or max(8, max(h, w) // 64)
    gy, gx = np.mgrid[0:h + step:step, 0:w + step:step]  # one node past the edge: every pixel inside a cell
    return soften(WarpGrid(spline(np.column_stack([gx.ravel(), gy.ravel()]) / iod).reshape(gx.shape + (2,)), step))


def soft_cap(slope: np.ndarray) -> np.ndarray:
    """The slope a cell keeps: itself up to _SLOPE_KNEE, then rising smoothly towards _SLOPE_CAP."""
    span = _SLOPE_CAP - _SLOPE_KNEE
    return np.where(slope <= _SLOPE_KNEE, slope, _SLOPE_KNEE + span * np.tanh((slope - _SLOPE_KNEE) / span))


def soften(grid: WarpGrid) -> WarpGrid:
    """`grid` scaled down where it is steeper than _SLOPE_KNEE, by a factor smoothed over a few cells.
    The flow never folds whatever the field, but where its slope is large it squeezes a band of the
    source to a line and stretches it over many pixels (a closed mouth's inner lips moving apart),
    finer than any sampling of the map resolves; the cap keeps that squeeze resolvable. Only the
    steep cells and their surroundings change: elsewhere a strength-2 field moves twice as far."""
    field, step = grid.field.copy(), grid.step
    for _ in range(_SOFTEN_ROUNDS):
        slopes = WarpGrid(field, step).slopes()
        if slopes.max() <= _SLOPE_CAP:
            break
        cell = soft_cap(slopes) / np.maximum(slopes, 1e-12)
        node = np.ones(field.shape[:2])
        for dj in (0, 1):  # a node takes the smallest factor of the (up to four) cells around it
            for di in (0, 1):
                view = node[dj:dj + cell.shape[0], di:di + cell.shape[1]]
                np.minimum(view, cell, out=view)
        field *= cv2.GaussianBlur(node, (0, 0), 1.5)[..., None]
    return WarpGrid(field, step)


def _bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`field` (gh x gw x 2) at grid-unit positions (x, y), bilinear in float64, clamped at the edge."""
    gh, gw = field.shape[:2]
    x = np.clip(x, 0, gw - 1)
    y = np.clip(y, 0, gh - 1)
    i = np.minimum(x.astype(np.intp), gw - 2)
    j = np.minimum(y.astype(np.intp), gh - 2)
    u, v = (x - i)[..., None], (y - j)[..., None]
    return ((1 - v) * ((1 - u) * field[j, i] + u * field[j, i + 1])
            + v * ((1 - u) * field[j + 1, i] + u * field[j + 1, i + 1]))


@dataclass(frozen=True)
class SourceMap:
    """Where each output pixel samples the source, on nodes `spacing` px apart (bilinear in between):
    x and y are (ny x nx) source positions in pixels."""

    x: np.ndarray
    y: np.ndarray
    spacing: int

    def min_det(self) -> float:
        """The smallest Jacobian determinant of the map (> 0: no cell folds anywhere). A bilinear
        cell's determinant is affine in each coordinate, so its extremes are at the four corners,
        i.e. at the four (x-edge, y-edge) difference pairs."""
        xx, xy = np.diff(self.x, axis=1), np.diff(self.y, axis=1)  # along x: (ny, nx-1)
        yx, yy = np.diff(self.x, axis=0), np.diff(self.y, axis=0)  # along y: (ny-1, nx)
        dets = [ax * by - ay * bx
                for ax, ay in ((xx[:-1], xy[:-1]), (xx[1:], xy[1:]))
                for bx, by in ((yx[:, :-1], yy[:, :-1]), (yx[:, 1:], yy[:, 1:]))]
        return float(min(d.min() for d in dets)) / self.spacing**2

    def dense(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The map at every pixel of an image of `shape`, by exact separable bilinear interpolation."""
        h, w = shape
        wy, wx = _interp_matrix(h, self.spacing, self.x.shape[0]), _interp_matrix(w, self.spacing, self.x.shape[1])
        return ((wy @ self.x @ wx.T).astype(np.float32), (wy @ self.y @ wx.T).astype(np.float32))


def _interp_matrix(n: int, spacing: int, nodes: int) -> np.ndarray:
    """n x nodes: row p holds the linear-interpolation weights of pixel p between its two nodes."""
    pos = np.arange(n) / spacing
    i = np.minimum(pos.astype(np.intp), nodes - 2)
    t = pos - i
    m = np.zeros((n, nodes))
    m[np.arange(n), i] = 1 - t
    m[np.arange(n), i + 1] = t
    return m


def source_map(grid: WarpGrid, shape: tuple[int, int], spacing: int = 4) -> SourceMap:
    """The backward flow of the field for time 1, in `grid.n_steps` Euler steps, from nodes `spacing`
    px apart covering an image of `shape` (one node past each edge); only nodes the field moves at all
    are integrated."""
    h, w = shape
    py, px = np.mgrid[0:h + spacing:spacing, 0:w + spacing:spacing].astype(np.float64)
    qx, qy = px / grid.step, py / grid.step  # grid units
    moving = _bilinear(np.abs(grid.field).max(axis=-1, keepdims=True), qx, qy)[..., 0] > 1e-3
    n = grid.n_steps
    velocity = grid.field / (grid.step * n)  # grid units per step
    x, y = qx[moving], qy[moving]
    for _ in range(n):
        d = _bilinear(velocity, x, y)
        x, y = x - d[:, 0], y - d[:, 1]
    qx[moving], qy[moving] = x, y
    return SourceMap(qx * grid.step, qy * grid.step, spacing)


def warp_expression(rgb: np.ndarray, landmarks_px: np.ndarray, target: str | np.ndarray, strength: float = 1.0,
                    grid_step: int | None = None) -> np.ndarray:
    """The image with its face moved towards `target` (a name or a face-frame field; strength 1 =
    reference, 0 = unchanged). A true warp: the face follows the flow of the landmark moves, a
    bijection at any strength; each output pixel samples the source where the backward flow sends it."""
    h, w = rgb.shape[:2]
    grid = warp_grid((h, w), landmarks_px, target, strength, grid_step)
    if grid is None:
        return rgb.copy()
    mx, my = source_map(grid, (h, w)).dense((h, w))
    return cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# --- fields as data: the reference set, or a fitted checkpoint ------------------------------------

CHECKPOINT_FORMAT = "fedbench-warp-fields"
CHECKPOINT_VERSION = 1


def field_key(target: str, source_expression: str | None = None) -> str:
    return target if not source_expression else f"{source_expression}>{target}"


# Fields shipped inside the package, by name: `checkpoint=fitted` (see docs/training.md for the data,
# the held-out figures and the command that refits them bit for bit).
PRESETS: dict[str, Path] = {"fitted": Path(__file__).with_name("warp_presets") / "fitted"}


def _write_npz(path: Path, fields: dict[str, np.ndarray]) -> None:
    """An .npz that np.load reads, with fixed member timestamps and order (np.savez stamps the
    current time): the same fields give the same bytes, so a refitted checkpoint can be compared
    byte for byte."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(fields):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(fields[key], dtype=np.float64), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """A preset name (`fitted`) or a checkpoint folder. A preset name wins over a folder of that name
    in the working directory; write `./fitted` for the folder."""
    return PRESETS[checkpoint] if isinstance(checkpoint, str) and checkpoint in PRESETS else Path(checkpoint)


@dataclass
class WarpFields:
    """Displacement fields in the face frame, keyed by target or by "source>target"; a pair-specific
    field wins over the target's own, which wins over the reference."""

    fields: dict[str, np.ndarray]
    meta: dict[str, Any]

    @classmethod
    def reference(cls) -> "WarpFields":
        return cls({t: reference_field(t) for t in DISPLACEMENTS}, {"fitted": False})

    def lookup(self, target: str, source_expression: str | None = None) -> np.ndarray:
        for key in (field_key(target, source_expression), target):
            if key in self.fields:
                return self.fields[key]
        return reference_field(target)

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_npz(directory / "warp_fields.npz", self.fields)
        meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "keys": sorted(self.fields), **self.meta}
        (directory / "checkpoint.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> "WarpFields":
        directory = Path(directory)
        meta_path, data_path = directory / "checkpoint.json", directory / "warp_fields.npz"
        if not meta_path.is_file() or not data_path.is_file():
            raise FileNotFoundError(f"{directory}: not a warp checkpoint (needs checkpoint.json and warp_fields.npz)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r} v{meta.get('version')!r}; "
                             f"this fedbench reads {CHECKPOINT_FORMAT} v{CHECKPOINT_VERSION}")
        with np.load(data_path) as data:
            fields = {k: data[k].astype(np.float64) for k in data.files}
        bad = [k for k, v in fields.items() if v.shape != (N_LANDMARKS, 2) or not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"{data_path}: fields {bad} are not finite {N_LANDMARKS} x 2 arrays")
        return cls(fields, {k: v for k, v in meta.items() if k not in ("format", "version", "keys")})

    def digest(self) -> str:
        h = hashlib.sha256()
        for k in sorted(self.fields):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.fields[k], dtype=np.float64).tobytes())
        return h.hexdigest()[:16]


class WarpEditor(Editor):
    """Training-free expression editor: landmarks move along the target's field, the image follows.

    Params: `strength` (1 = reference), `checkpoint` (a folder written by `fedbench train warp`, or
    the name of fields shipped in the package: `fitted`).
    """

    description = "training-free landmark warp along per-expression displacement fields"
    # 2: landmarks come from the shared perception service (its working copy, padded retry for
    # tight crops), so an edit of a large or tightly cropped source can differ from version 1's.
    # 3: a true, fold-free warp (the flow of the landmark moves, slope-capped) instead of sampling
    # the source at p - D(p): every image differs from version 2's.
    version = "3"

    def __init__(self, strength: float = 1.0, checkpoint: str | None = None) -> None:
        self.fields = WarpFields.load(resolve_checkpoint(checkpoint)) if checkpoint else WarpFields.reference()
        # The fields' content, not a path or a name, decides the images: hash it into the config, so a
        # change of the reference fields or a moved checkpoint is handled right by the eval cache.
        super().__init__(strength=float(strength), fields=self.fields.digest(),
                         fitted=bool(self.fields.meta.get("fitted", True)))
        self.checkpoint = checkpoint
        self.strength = float(strength)
        self._perception: Any = None
        self._cache_path: Path | None = None

    def use_feature_cache(self, cache_path: str | Path | None) -> None:
        """Read and keep landmarks in the run's feature cache (`fedbench eval --cache`). Only where
        they are stored changes, not what they are (the default perception config, always), so the
        images and the config hash do not depend on it."""
        self.close()
        self._cache_path = Path(cache_path) if cache_path else None

    def _landmarks(self, data: bytes, rgb: np.ndarray) -> np.ndarray | None:
        # From the shared feature cache (the default config; the run's cache, else the default one):
        # a source scored before is not perceived again, and one perceived here is found there when
        # its edit is scored.
        if self._perception is None:
            from fedbench.faces.service import PerceptionService

            self._perception = PerceptionService(None, self._cache_path)
        return self._perception.landmarks_px(data, (rgb.shape[1], rgb.shape[0]))

    def edit(self, request: EditRequest) -> EditResult:
        data = request.source.read_bytes()
        rgb = decode_full(data)
        pts = self._landmarks(data, rgb)
        if pts is None:
            return EditResult.failed("no face found in the source")
        field = self.fields.lookup(request.target, request.source_expression)
        return EditResult.ok(warp_expression(rgb, pts, field, self.strength))

    def libraries(self) -> dict[str, str]:
        import mediapipe

        return {"mediapipe": mediapipe.__version__, "opencv": cv2.__version__}

    def close(self) -> None:
        if self._perception is not None:
            self._perception.close()
            self._perception = None
