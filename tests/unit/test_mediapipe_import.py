"""MediaPipe is imported without matplotlib.pyplot (worker start-up), and pyplot still works after."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from fedbench.faces.runtime import mediapipe_vision
BaseOptions, vision = mediapipe_vision()
assert hasattr(vision, "FaceLandmarker") and BaseOptions is not None
assert "matplotlib.figure" not in sys.modules, "pyplot was imported"
assert "matplotlib.pyplot" not in sys.modules, "the placeholder was left behind"
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig = plt.figure()
assert fig is not None and "matplotlib.figure" in sys.modules
print("ok")
"""


def test_mediapipe_imports_without_pyplot_and_pyplot_loads_afterwards() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
