"""FED-Score versions as frozen spec objects: each version's constants and which components it
measures against the ground truth G. Code asks the spec (`spec.relative("bg")`), never a version
string, so a version is one object here and nowhere else (docs/fedscore.md explains each constant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Components a version may measure against what G did rather than absolutely. ID is relative to
# cos(G, S) in every version (FED-Score 1.0 already defined it so).
RELATIVE_CAPABLE = ("a_emo", "a_act", "pq", "bg")


@dataclass(frozen=True)
class FedScoreSpec:
    version: str
    relative_to_gt: frozenset[str]  # subset of RELATIVE_CAPABLE
    # Alignment
    action_step: float = 0.05  # a blendshape move of this size in the required direction counts fully
    gt_action_threshold: float = 0.10  # no named action: blendshapes G moves at least this much are required
    gt_action_min: float = 0.01  # relative A_act: a named action G moves less than this is not scored
    # Fidelity
    identity_drift_margin: float = 0.05  # cos(G,S) <= c0 + this: G drifts, ID normalises by 1 - c0
    bg_reference_floor: float = 0.5  # relative BG: a G that redraws more than this sets no bar
    # Relative Expression Gain
    gain: Literal["raw"] = "raw"  # raw: e = [b, p], unweighted
    reg_width: float = 0.5  # log-gain standard deviation of REG
    degenerate_factor: float = 0.05  # |dG| < this * sqrt(dim e): degenerate_gt
    # FED
    combine: Literal["geometric"] = "geometric"  # 100 (A F REG)^(1/3)
    notes: str = field(default="", compare=False)

    def relative(self, component: str) -> bool:
        if component not in RELATIVE_CAPABLE:
            raise KeyError(f"{component!r} is not a component a version can make relative")
        return component in self.relative_to_gt

    @property
    def uses_gt_background(self) -> bool:
        """Scoring needs BG(S, G) (a pair measurement of S and G's pixels)."""
        return self.relative("bg")


V1_0 = FedScoreSpec("1.0", frozenset(), notes="fedscore.md as first written: A_emo = p_t(E), fixed action step, PQ vs S")
V1_1 = FedScoreSpec("1.1", frozenset({"a_emo", "a_act", "pq"}), notes="Alignment and PQ relative to G, as ID")
V1_2 = FedScoreSpec("1.2", frozenset({"a_emo", "a_act", "pq", "bg"}), notes="BG relative to G's own background change")

SPECS: dict[str, FedScoreSpec] = {s.version: s for s in (V1_0, V1_1, V1_2)}
DEFAULT_VERSION = "1.2"
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(SPECS)


def get_spec(version: str | FedScoreSpec) -> FedScoreSpec:
    """The spec of a version ("1.2"), or the spec itself."""
    if isinstance(version, FedScoreSpec):
        return version
    try:
        return SPECS[str(version)]
    except KeyError:
        raise ValueError(f"unknown FED-Score version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}") from None
