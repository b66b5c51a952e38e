"""Stage 3, source label: the emotion ensemble's top class; an unsure source (top probability below
`min_confidence`) is kept as `unknown` or dropped, by config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedbench.engine.perception import ImageReadError, PerceivingStage
from fedbench.engine.stage import Outcome, Record, Rejected
from fedbench.labels import EXPRESSIONS


class SourceLabel(PerceivingStage):
    name = "label"

    def process(self, record: Record) -> Outcome:
        cfg = self.config.label
        try:
            feats, _ = self.perception.features(Path(record["image"]))  # cached by the face stage
        except (OSError, ImageReadError) as exc:
            return Rejected(f"unreadable: {exc}")
        probs = feats.faces[0].emotion
        top = int(np.argmax(probs))
        confidence = float(probs[top])
        label = EXPRESSIONS[top]
        if confidence < cfg.min_confidence:
            if cfg.unknown == "drop":
                return Rejected(f"unsure expression: {label} at {confidence:.2f} < {cfg.min_confidence}")
            label = "unknown"
        return [{**record, "source_expression": label, "label_confidence": round(confidence, 4),
                 "identity_embedding": [round(float(x), 6) for x in feats.faces[0].embedding]}]
