"""The measured noise model of the expression vector: for every dimension, how much it moves between
two perceptions of the same face when only processing differs (re-encode, resize, a small crop or
shift, a mild gamma or colour change; metrics/processing.py).

The file (metrics/data/noise_v1.json) is written by `benchmarks/noise_model.py`, which records its own
command; it carries the perception signature it was measured under, so a model measured under other
backbones is never used silently (`check_signature`). FED-Score 2.0 whitens expression changes by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.faces.blendshapes import BLENDSHAPE_NAMES
from fedbench.labels import EXPRESSIONS
from fedbench.metrics.geometry_dims import NAMES as GEOMETRY_NAMES
from fedbench.metrics.geometry_dims import geometry

NOISE_FILE = "noise_v1.json"
# Probability groups of the expression vector: the ensemble's probabilities, and the mean of the
# members that look at pixels (the blendshape prototype member re-reads the blendshapes, which the
# vector already holds: counting it again would weigh the same evidence twice).
BLENDSHAPE_DIMS = tuple(f"bs:{n}" for n in BLENDSHAPE_NAMES)
ENSEMBLE_DIMS = tuple(f"p:{c}" for c in EXPRESSIONS)
PIXEL_MEMBER_DIMS = tuple(f"pm:{c}" for c in EXPRESSIONS)
GEOMETRY_DIMS = tuple(f"geo:{n}" for n in GEOMETRY_NAMES)
DIMS = (*BLENDSHAPE_DIMS, *ENSEMBLE_DIMS, *PIXEL_MEMBER_DIMS, *GEOMETRY_DIMS)
NON_PIXEL_MEMBERS = ("blendshape-prototype",)


def pixel_member_probs(members: np.ndarray, member_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Mean probabilities of the members that look at the image; the ensemble's when none is named."""
    keep = [i for i, n in enumerate(member_names) if n not in NON_PIXEL_MEMBERS]
    m = np.asarray(members, np.float64)
    if not keep or m.ndim != 2 or m.shape[0] != len(member_names):
        raise ValueError(f"no pixel member among {list(member_names)} (members {m.shape})")
    return m[keep].mean(axis=0)


def vector(blendshapes: np.ndarray, emotion: np.ndarray, members: np.ndarray,
           member_names: list[str] | tuple[str, ...], landmarks: np.ndarray) -> np.ndarray:
    """Every dimension the noise model measures, in DIMS order."""
    return np.concatenate([np.asarray(blendshapes, np.float64), np.asarray(emotion, np.float64),
                           pixel_member_probs(members, member_names), geometry(landmarks)])


def face_vector(face, member_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """`vector` of a FaceFeatures."""
    return vector(face.blendshapes, face.emotion, face.members, member_names, face.landmarks)


@dataclass(frozen=True)
class NoiseModel:
    dims: tuple[str, ...]
    sigma: np.ndarray  # robust std of the change between two perceptions of one face (1.4826 MAD)
    std: np.ndarray  # plain std of the same changes (heavier tails show here)
    n: int  # processed copies measured
    signature: str  # perception signature hash it was measured under
    meta: dict[str, Any]

    def scale_of(self, dims: tuple[str, ...], kind: str = "std") -> np.ndarray:
        """Per-dim noise scale: "std" (whitening uses it: processing noise is heavy-tailed, most copies
        move a dim by almost nothing and a few by a lot, so the median absolute change understates
        it) or "sigma" (the robust 1.4826 MAD)."""
        index = {d: i for i, d in enumerate(self.dims)}
        missing = [d for d in dims if d not in index]
        if missing:
            raise KeyError(f"noise model lacks {missing[:3]}...; regenerate it: {self.meta.get('command')}")
        values = self.std if kind == "std" else self.sigma
        return values[[index[d] for d in dims]]


def from_json(data: dict[str, Any]) -> NoiseModel:
    dims = tuple(data["dims"])
    return NoiseModel(dims=dims, sigma=np.array([data["per_dim"][d]["sigma"] for d in dims]),
                      std=np.array([data["per_dim"][d]["std"] for d in dims]), n=int(data["n_copies"]),
                      signature=str(data["perception"]["signature_hash"]), meta=data)


@lru_cache(maxsize=4)
def load(path: str | None = None) -> NoiseModel:
    """The shipped noise model, or one at `path`."""
    if path is not None:
        text = Path(path).read_text()
    else:
        text = resources.files("fedbench.metrics").joinpath("data", NOISE_FILE).read_text()
    return from_json(json.loads(text))
