"""FED-Score v1 components (functional), the per-sample scorer and the aggregation."""

from fedbench.metrics.alignment import action_alignment, alignment, emotion_alignment
from fedbench.metrics.fedscore import FEDSCORE_VERSION, FEDScore, fed_score
from fedbench.metrics.fidelity import background_score, fidelity, identity_score, quality_score
from fedbench.metrics.reg import expression_gain, expression_vector, reg_score

__all__ = [
    "FEDSCORE_VERSION", "FEDScore", "action_alignment", "alignment", "background_score",
    "emotion_alignment", "expression_gain", "expression_vector", "fed_score", "fidelity",
    "identity_score", "quality_score", "reg_score",
]
