"""OpenVINO's usage telemetry stays off: nothing is written to ~/intel (or sent) by a fedbench run.

`import openvino` imports its model converter, which imports `openvino_telemetry`; that package
bumps a usage counter in ~/intel/stats and keeps a client id beside it on every run, outside the
run's --out. OpenVINO falls back to its own no-op stub when `openvino_telemetry` cannot be imported,
so fedbench marks the module as absent before anything imports openvino. Set
FEDBENCH_OPENVINO_TELEMETRY=1 to leave OpenVINO's telemetry as its own settings say.
"""

from __future__ import annotations

import os
import sys

ENV = "FEDBENCH_OPENVINO_TELEMETRY"


def disable_openvino_telemetry() -> bool:
    """Block `openvino_telemetry` for this process (and, through the environment, fedbench's workers,
    which import fedbench first). Returns True when it is blocked."""
    if os.environ.get(ENV, "").strip() in ("1", "true", "yes"):
        return False
    if "openvino_telemetry" in sys.modules and sys.modules["openvino_telemetry"] is not None:
        return False  # already imported by the host program: not ours to take away
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # `import` now raises ImportError
    return True
