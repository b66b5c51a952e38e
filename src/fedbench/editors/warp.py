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


def warp_expression(rgb: np.ndarray, landmarks_px: np.ndarray, target: str | np.ndarray, strength: float = 1.0,
                    grid_step: int | None = None) -> np.ndarray:
    """The image with its face moved towards `target` (a name or a face-frame field; strength 1 =
    reference, 0 = unchanged)."""
    h, w = rgb.shape[:2]
    pts = landmarks_px[:, :2].astype(np.float64)
    moves = displacement(pts, target, strength)
    if not np.any(moves):
        return rgb.copy()
    # Pin a ring around the face and the image border so the background stays where it is.
    centre = pts.mean(axis=0)
    hull = pts[cv2.convexHull(pts.astype(np.float32), returnPoints=False).ravel()]
    ring = centre + 1.6 * (hull - centre)
    border = np.array([[x, y] for x in np.linspace(0, w - 1, 5) for y in (0, h - 1)]
                      + [[x, y] for x in (0, w - 1) for y in np.linspace(0, h - 1, 5)])
    anchors = np.vstack([ring, border])
    # Destination positions carry the displacement; sample the source at p - D(p) (small moves).
    control = np.vstack([pts + moves, anchors])
    values = np.vstack([moves, np.zeros_like(anchors)])
    field = RBFInterpolator(control, values, kernel="thin_plate_spline", smoothing=1.0, degree=1)
    # The field is smooth: evaluate it on a coarse grid (64 cells on the long side, at least 8 px)
    # and interpolate; evaluating the spline at every pixel costs seconds on a 1024 px image.
    step = grid_step or max(8, max(h, w) // 64)
    gy, gx = np.mgrid[0:h:step, 0:w:step]
    coarse = field(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape + (2,)).astype(np.float32)
    dense = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(rgb, xs - dense[..., 0], ys - dense[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


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
    version = "2"

    def __init__(self, strength: float = 1.0, checkpoint: str | None = None) -> None:
        self.fields = WarpFields.load(resolve_checkpoint(checkpoint)) if checkpoint else WarpFields.reference()
        # The fields' content, not a path or a name, decides the images: hash it into the config, so a
        # change of the reference fields or a moved checkpoint is handled right by the eval cache.
        super().__init__(strength=float(strength), fields=self.fields.digest(),
                         fitted=bool(self.fields.meta.get("fitted", True)))
        self.checkpoint = checkpoint
        self.strength = float(strength)
        self._perception: Any = None

    def _landmarks(self, data: bytes, rgb: np.ndarray) -> np.ndarray | None:
        # From the shared feature cache (default config and cache): a source scored before is not
        # perceived again, and one perceived here is found there when its edit is scored.
        if self._perception is None:
            from fedbench.faces.service import PerceptionService

            self._perception = PerceptionService()
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
