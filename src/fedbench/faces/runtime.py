"""Inference runtimes for the CNN backbones.

"openvino" (default) runs SFace and facex at fp32 on OpenVINO, two to three times faster than
their reference runtimes (OpenCV dnn for SFace, ai-edge-litert for the .tflite files); tests hold
each pair to the same outputs on real faces. The small fer CNN always runs on ai-edge-litert.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fedbench.faces.native_logs import filtered_native_stderr

Runtime = Literal["openvino", "reference"]


def mediapipe_vision() -> tuple[Any, Any]:
    """(BaseOptions, vision) of MediaPipe Tasks, imported without matplotlib.pyplot.

    `mediapipe.tasks.python.vision` imports its drawing helpers, and they import matplotlib.pyplot:
    about 0.6 s of every scoring worker's start-up (more on a busy machine), for plotting that
    fedbench never calls. A placeholder stands in for pyplot while MediaPipe imports and is removed
    afterwards, so a later `import matplotlib.pyplot` in this process loads the real module.
    """
    name = "matplotlib.pyplot"
    placeholder = None
    if name not in sys.modules:
        placeholder = types.ModuleType(name, "placeholder while MediaPipe imports (faces/runtime.py)")
        sys.modules[name] = placeholder
    try:
        from mediapipe.tasks.python import BaseOptions, vision
    finally:
        if placeholder is not None and sys.modules.get(name) is placeholder:
            del sys.modules[name]
    return BaseOptions, vision


OPENVINO_CACHE_ENV = "FEDBENCH_OPENVINO_CACHE"


def openvino_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled networks between processes (`models/openvino-cache` in the
    fedbench cache); None when $FEDBENCH_OPENVINO_CACHE is 0/off/false. Each scoring worker compiles
    every network at start-up; a cached compilation loads in a third of the time and runs the same
    kernels (OpenVINO keys each entry by the model file, the device, the settings and its own version,
    and compiles afresh when an entry does not load)."""
    if os.environ.get(OPENVINO_CACHE_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    from fedbench.paths import models_dir

    return models_dir() / "openvino-cache"


class OpenVinoNetwork:
    def __init__(self, path: Path, threads: int = 1) -> None:
        import openvino as ov

        core = ov.Core()
        cache = openvino_cache_dir()
        if cache is not None:
            core.set_property({"CACHE_DIR": str(cache)})
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",  # bf16/f16 would change scores across CPUs
        }
        # Compiled from the path (not a read model): on a cache hit OpenVINO then skips parsing the file.
        self._compiled = core.compile_model(str(path), "CPU", config)
        self._request = self._compiled.create_infer_request()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)


class LiteRtNetwork:
    def __init__(self, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with filtered_native_stderr():  # LiteRT announces its XNNPACK delegate at every load
            self._it = Interpreter(model_path=str(path), num_threads=threads)
            self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._in, np.ascontiguousarray(x, dtype=np.float32))
        self._it.invoke()
        return np.array(self._it.get_tensor(self._out), dtype=np.float32, copy=True)

