"""What produced a score: backbones with versions and licences, library versions."""

from __future__ import annotations

from typing import Any

from fedbench.faces.perception import PerceptionConfig, dist_version
from fedbench.models.store import ARTIFACTS


def backbones_used(config: PerceptionConfig) -> dict[str, Any]:
    names = config.artifacts()
    models = {
        n: {"version": ARTIFACTS[n].version, "sha256": ARTIFACTS[n].sha256, "licence": ARTIFACTS[n].licence,
            "source": ARTIFACTS[n].source.describe()}
        for n in names
    }
    if config.uses_sface_int8:
        from fedbench.models.store import SFACE_INT8_SHA256

        models["sface-int8"] = {"version": "post-training int8 of sface (fedbench faces/sface_int8.py)",
                                "sha256": SFACE_INT8_SHA256, "licence": ARTIFACTS["sface"].licence,
                                "source": "derived from sface with fedbench/faces/data/sface_int8_ranges.json"}
    if config.identity == "arcface-onnx":
        models["arcface-onnx"] = {"path": str(config.identity_model), "licence": "user-supplied"}
    if "blendshape-prototype" in config.emotion_members:
        from fedbench.faces.emotion import PROTOTYPE_VERSION

        models["blendshape-prototype"] = {"version": PROTOTYPE_VERSION, "licence": "part of fedbench"}
    if config.emotion_head != "mean":
        from fedbench.faces.fusion import HEAD_FILES, load_head

        head = load_head(config.emotion_head)
        models["fusion-head"] = {"version": head.version, "sha256": head.sha256, "licence": "part of fedbench",
                                 "source": f"fedbench/faces/data/{HEAD_FILES[head.version]}"}
    libraries = {d: dist_version(d) for d in ("fedbench", "mediapipe", "openvino", "opencv-contrib-python",
                                            "ai-edge-litert", "numpy")}
    return {"models": models, "runtime": config.runtime, "libraries": libraries}
