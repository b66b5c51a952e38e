"""Verification thresholds for test builds whose ground truths come from the `warp` editor.

warp makes geometric edits only (no teeth, no wrinkles), so the release thresholds reject nearly all
of them; these are loose enough that some of warp's edits pass and strict enough that some fail. The
build-engine, repeatability and build -> train -> eval recipe tests share them."""

from __future__ import annotations

from typing import Any

WARP_VERIFY: dict[str, Any] = {"min_identity": 0.3, "min_emotion": 0.05, "min_actions": 0.0,
                               "min_background": 0.5, "min_quality": 0.3}
