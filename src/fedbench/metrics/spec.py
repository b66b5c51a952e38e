"""FED-Score versions as frozen spec objects: each version's constants and which components it
measures against the ground truth G. Code asks the spec (`spec.relative("bg")`), never a version
string, so a version is one object here and nowhere else (docs/fedscore.md explains each constant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from fedbench.faces.perception import PerceptionConfig

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
    alignment_noise_k: float = 0.0  # 2.0: noise units of the noise model that Alignment forgives
    # Fidelity
    identity_drift_margin: float = 0.05  # cos(G,S) <= c0 + this: G drifts, ID normalises by 1 - c0
    bg_reference_floor: float = 0.5  # relative BG: a G that redraws more than this sets no bar
    bg_register: bool = False  # register E (and G) to S on the background before SSIM
    bg_chroma_tolerance: float | None = None  # background chroma distance (CIELAB) forgiven as processing
    processing_tolerant: bool = False  # ID and PQ forgive what processing alone does (noise model)
    # Relative Expression Gain
    gain: Literal["raw", "whitened"] = "raw"  # raw: e = [b, p]; whitened: noise-model units, see below
    expression_groups: tuple[str, ...] = ("bs", "p")  # whitened: the noise-model dim groups used
    zero_weight: tuple[str, ...] = ()  # whitened: dim-name prefixes that carry no expression (gaze)
    sigma_floor: float = 0.0  # whitened: the smallest noise a dim is credited with
    reg_width: float = 0.5  # log-gain standard deviation of REG
    degenerate_factor: float = 0.05  # raw: |dG| < this * sqrt(dim e): degenerate_gt
    degenerate_percentile: float = 95.0  # whitened: G's change must exceed this percentile of pure noise
    reg_noise_k: float = 0.0  # whitened: a gain within k noise units of 1 (of 0) counts as 1 (as 0)
    # FED
    combine: Literal["geometric", "reg_gated"] = "geometric"  # 100 (A F REG)^(1/3) | 100 REG (A F)^(1/2)
    # The perception the version was defined with (PerceptionConfig fields: the emotion recogniser and the
    # identity network's precision). 1.x scored with the mean of fer, facex and the blendshape prototype and
    # the fp32 SFace; 2.0 uses the default perception, which its noise model was measured under. Applied
    # unless the caller chose one of these fields, so `--fedscore-version 1.2` keeps 1.2's numbers.
    recogniser: tuple[tuple[str, Any], ...] = ()
    notes: str = field(default="", compare=False)

    def perception(self, config: "PerceptionConfig | None" = None) -> "PerceptionConfig":
        """`config` (default: the default perception) with this version's recogniser, where the caller left
        the recogniser fields at their defaults."""
        from fedbench.faces.perception import PerceptionConfig

        config = config or PerceptionConfig()
        chosen = dict(self.recogniser)
        if not chosen or config.model_fields_set & set(chosen):  # the caller chose a recogniser: theirs
            return config
        return PerceptionConfig.model_validate({**config.model_dump(), **chosen})

    def relative(self, component: str) -> bool:
        if component not in RELATIVE_CAPABLE:
            raise KeyError(f"{component!r} is not a component a version can make relative")
        return component in self.relative_to_gt

    @property
    def uses_gt_background(self) -> bool:
        """Scoring needs BG(S, G) (a pair measurement of S and G's pixels)."""
        return self.relative("bg")


# The 1.x perception: the members' mean, without the face-api member and the fusion head, and the
# published fp32 SFace (int8 came later and moves identity cosines by ~0.01).
MEAN_RECOGNISER_V1: tuple[tuple[str, Any], ...] = (
    ("emotion_members", ("fer-cnn", "facex-cnn", "blendshape-prototype")), ("emotion_head", "mean"),
    ("identity_precision", "fp32"))

V1_0 = FedScoreSpec("1.0", frozenset(), recogniser=MEAN_RECOGNISER_V1, notes="fedscore.md as first written: A_emo = p_t(E), fixed action step, PQ vs S")
V1_1 = FedScoreSpec("1.1", frozenset({"a_emo", "a_act", "pq"}), recogniser=MEAN_RECOGNISER_V1, notes="Alignment and PQ relative to G, as ID")
V1_2 = FedScoreSpec("1.2", frozenset({"a_emo", "a_act", "pq", "bg"}), recogniser=MEAN_RECOGNISER_V1, notes="BG relative to G's own background change")

# 2.0 (docs/fedscore.md): processing alone is not an edit. The gain is measured in noise-model units
# on the blendshapes and the pixel members' probabilities (gaze and `_neutral` weigh nothing; the
# blendshape prototype is not counted again; landmark geometry is added); a G whose change is
# within what processing alone produces to 95 % of faces is degenerate; a gain within 2 noise units
# of 1 or of 0 counts as 1 or 0; BG registers E and G to S and compares colour; ID and PQ forgive what processing does;
# FED is linear in REG.
V2_0 = FedScoreSpec(
    "2.0", frozenset({"a_emo", "a_act", "pq", "bg"}), bg_register=True, bg_chroma_tolerance=10.0,
    processing_tolerant=True, gain="whitened", expression_groups=("bs", "pm", "geo"),
    zero_weight=("bs:_neutral", "bs:eyeLook"), sigma_floor=0.005, reg_noise_k=2.0, alignment_noise_k=2.0,
    combine="reg_gated", notes="noise-whitened gain, registered BG, processing-tolerant ID/PQ, REG-gated FED")

SPECS: dict[str, FedScoreSpec] = {s.version: s for s in (V1_0, V1_1, V1_2, V2_0)}
DEFAULT_VERSION = "2.0"
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(SPECS)


def get_spec(version: str | FedScoreSpec) -> FedScoreSpec:
    """The spec of a version ("1.2"), or the spec itself."""
    if isinstance(version, FedScoreSpec):
        return version
    try:
        return SPECS[str(version)]
    except KeyError:
        raise ValueError(f"unknown FED-Score version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}") from None
