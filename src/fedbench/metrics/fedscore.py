"""FED-Score for one triplet: the statuses around the metric core (metrics/core.py).

`score_triplet` decides what can be scored (dataset errors, failed edits, degenerate ground truths)
and lays out the result row; the components come from `core.assess` under the version's spec.
`FEDScore` accumulates rows and computes the summary, torchmetrics-style.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedbench.data.images import grey_view
from fedbench.faces.masks import face_mask
from fedbench.faces.perception import FaceFeatures, ImageFeatures
from fedbench.labels import expression_index
from fedbench.metrics import core
from fedbench.metrics.fidelity import background_score, cosine
from fedbench.metrics.components import NAMES as REGISTRY_NAMES
from fedbench.metrics.spec import DEFAULT_VERSION, SUPPORTED_VERSIONS, FedScoreSpec, get_spec
from fedbench.metrics import registration
from fedbench.metrics.bgsource import SourceBackground
from fedbench.metrics.ssim import ssim_map_prepared

FEDSCORE_VERSION = DEFAULT_VERSION  # the versions themselves live in metrics/spec.py
BG_LONG_SIDE = 512

# Sample statuses. Dataset errors exclude the sample from every mean (and are listed); edit failures
# score every component 0 and count; degenerate_gt leaves REG and FED undefined (null, counted).
DATASET_ERRORS = (
    "unreadable_source", "no_face_source", "unreadable_ground_truth", "no_face_ground_truth",
)
EDIT_FAILURES = ("missing_edit", "unreadable_edit", "no_face_edit", "generation_failed")
# A refusal (content filter, policy) is the model's own answer, not a bad edit: never a low score.
# Refused samples are excluded from every mean, counted and listed; the refusal rate is reported.
REFUSALS = ("refused",)
EXCLUDED = (*DATASET_ERRORS, *REFUSALS)
STATUSES = ("ok", "degenerate_gt", *EDIT_FAILURES, *REFUSALS, *DATASET_ERRORS)

# The components in the order a samples.jsonl row lists them (the registry orders the summaries).
COMPONENTS = ("alignment", "a_emo", "a_act", "fidelity", "id_score", "bg", "pq", "reg", "fed")
assert sorted(COMPONENTS) == sorted(REGISTRY_NAMES), "row layout and component registry disagree"


def fed_score(alignment_: float, fidelity_: float, reg: float | None,
              version: str | FedScoreSpec = FEDSCORE_VERSION) -> float | None:
    """FED from Alignment, Fidelity and REG under a version (1.x: 100 (A F REG)^(1/3)); None without REG."""
    return core.combine(get_spec(version), alignment_, fidelity_, reg)


def _r(x: float | None) -> float | None:
    """Round for the result files: stable text, far below any meaningful difference."""
    return None if x is None else round(float(x), 6)


def background_ssim(source_rgb: np.ndarray, edit_rgb: np.ndarray, source_face: FaceFeatures,
                    edit_face: FaceFeatures) -> float | None:
    """BG: SSIM outside the union of both face masks, grey, at 512 px; E resized to S's size first."""
    return background_measure(source_rgb, edit_rgb, source_face, edit_face, register=False)[0]


def background_measure(source_rgb: np.ndarray, edit_rgb: np.ndarray, source_face: FaceFeatures,
                       edit_face: FaceFeatures, register: bool, prepared: SourceBackground | None = None
                       ) -> tuple[float | None, float | None, float | None]:
    """(background SSIM, registration magnitude, chroma distance). With `register`, E is first
    registered to S on the background (metrics/registration.py), SSIM is taken over the background
    pixels E covers and the background's colour is compared too; the magnitude is max(shift,
    |scale - 1|) of the accepted registration (0: none needed or refused). `prepared`: the source's
    side, kept across the pairs that share S (the same numbers, computed once)."""
    src = SourceBackground(source_rgb, source_face.landmarks) if prepared is None else prepared
    if src.rgb is not source_rgb or not np.array_equal(src.landmarks, source_face.landmarks):
        raise ValueError("background_measure: `prepared` was built for another source image or face")
    if not register:
        s_grey = src.grey(BG_LONG_SIDE)
        size = (s_grey.shape[1], s_grey.shape[0])
        e_grey = grey_view(edit_rgb, size=size)
        background = ~(src.face_mask(size) | face_mask(edit_face.landmarks, size))
        return background_score(ssim_map_prepared(src.ssim_stats(BG_LONG_SIDE), e_grey), background), None, None
    # Registered (2.0): compare at the resolution both images have (at most 512 px), so a smaller
    # copy of an intact picture is not charged for the detail it cannot hold, while a blur at the
    # same resolution still is.
    long_side = min(BG_LONG_SIDE, max(source_rgb.shape[:2]), max(edit_rgb.shape[:2]))
    s_grey = src.grey(long_side)
    size = (s_grey.shape[1], s_grey.shape[0])
    e_grey = grey_view(edit_rgb, size=size)
    background = ~(src.face_mask(size) | face_mask(edit_face.landmarks, size))
    reg = registration.register(s_grey, e_grey, background, src.ecc_view(long_side))
    e_reg, covered = registration.apply(e_grey, reg)
    chroma = registration.chroma_distance(source_rgb, edit_rgb, reg, background, src.chroma_lab())
    return (background_score(ssim_map_prepared(src.ssim_stats(long_side), e_reg), background & covered),
            reg.magnitude, chroma)


@dataclass
class ImageOutcome:
    """Features of one image, or why there are none ("missing", "unreadable: ...")."""

    features: ImageFeatures | None
    problem: str | None = None

    @property
    def n_faces(self) -> int | None:
        return None if self.features is None else len(self.features.faces)


def _empty_row(sample_id: str, target: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": sample_id, "target": target, "status": None, "reason": None,
                           "edit_status": None}
    row.update({c: None for c in COMPONENTS})
    row.update(gain=None, off_axis=None, gt_change=None, action_source=None, actions=None,
               p_target_source=None, p_target_edit=None, p_target_gt=None, top_emotion_edit=None,
               cos_edit_source=None, cos_gt_source=None, bg_edit_source=None, bg_gt_source=None,
               quality_source=None, quality_edit=None,
               faces_source=None, faces_edit=None, faces_gt=None)
    return row


def score_triplet(
    sample_id: str,
    target: str,
    instruction: str,
    source: ImageOutcome,
    ground_truth: ImageOutcome,
    edit: ImageOutcome,
    source_rgb: np.ndarray | None,
    edit_rgb: np.ndarray | None,
    identity_threshold: float,
    version: str | FedScoreSpec = FEDSCORE_VERSION,
    generation: tuple[str, str | None] | None = None,
    bg_gt: float | None = None,
    bg_chroma_gt: float | None = None,
    actions: list[str] | None = None,
    judge: tuple[core.JudgeVerdict | None, str | None] | None = None,
    source_background: SourceBackground | None = None,
) -> dict[str, Any]:
    """One row of samples.jsonl: every component, the status, and the raw numbers behind them.

    `generation` is (status, reason) when an editor run produced no image for this sample
    ("refused" or "generation_failed"); the edit is then not looked at. `bg_gt` is BG(S, G), which
    versions with a relative BG (`spec.uses_gt_background`) divide the edit's BG by. `actions` is the
    manifest's optional field: when given, the required actions (else the instruction's, else G's).
    `judge` is (verdict or None when the edit was not judged, reason) for runs with a judge
    (docs/judge.md): the row then also carries the rule-based figures and `judge_status`.
    `source_background`: S's side of the background measure when the caller reuses it across pairs.
    """
    spec = get_spec(version)
    row = _empty_row(sample_id, target)
    if judge is not None:
        verdict, reason = judge
        row.update(judge_status=None if verdict is None else verdict.status, judge_reason=reason,
                   alignment_rules=None, a_emo_rules=None, a_act_rules=None, fed_rules=None)
    row.update(faces_source=source.n_faces, faces_gt=ground_truth.n_faces, faces_edit=edit.n_faces)
    for role, outcome in (("source", source), ("ground_truth", ground_truth)):
        if outcome.features is None:
            row.update(status=f"unreadable_{role}", reason=outcome.problem)
            return row
        if not outcome.features.faces:
            row.update(status=f"no_face_{role}", reason=f"no face found in the {role.replace('_', ' ')}")
            return row

    t = expression_index(target)
    s_face = source.features.faces[0]  # the largest face is the subject
    g_face = ground_truth.features.primary(s_face.box)
    ref = core.reference(spec, target, instruction, s_face, g_face, source.features.member_names, actions)
    row.update(p_target_source=_r(s_face.emotion[t]), p_target_gt=_r(g_face.emotion[t]),
               cos_gt_source=_r(cosine(g_face.embedding, s_face.embedding)), quality_source=_r(s_face.quality),
               quality_gt=_r(g_face.quality), action_source=ref.action_source, actions=ref.scored_actions,
               gt_change=_r(ref.change.gt_change))
    degenerate = ref.change.degenerate

    if generation is not None and generation[0] in REFUSALS:
        row.update(status=generation[0], reason=generation[1], edit_status=generation[0])
        return row
    edit_problem = None
    if generation is not None:
        edit_problem = generation
    elif edit.features is None:
        edit_problem = ("missing_edit", "no edited image for this id") if edit.problem == "missing" else (
            "unreadable_edit", edit.problem)
    elif not edit.features.faces:
        edit_problem = ("no_face_edit", "no face found in the edited image")
    if edit_problem is not None:
        row["edit_status"] = edit_problem[0]
        row.update({c: 0.0 for c in COMPONENTS})
        row.update(status="degenerate_gt" if degenerate else edit_problem[0], reason=edit_problem[1])
        if degenerate:
            row.update(reg=None, fed=None)
        if judge is not None:  # no edit to judge: the rule-based figures are the row's own
            row.update(alignment_rules=row["alignment"], a_emo_rules=row["a_emo"], a_act_rules=row["a_act"],
                       fed_rules=row["fed"])
        return row

    row["edit_status"] = "ok"
    e_face = edit.features.primary(s_face.box)
    bg_edit, bg_shift, chroma = background_measure(source_rgb, edit_rgb, s_face, e_face, spec.bg_register,
                                                   source_background)
    out = core.assess(spec, ref, s_face, e_face, g_face,
                      core.PairMeasures(bg_edit=bg_edit, bg_gt=bg_gt if spec.uses_gt_background else None,
                                        bg_shift=bg_shift, bg_chroma_edit=chroma, bg_chroma_gt=bg_chroma_gt),
                      identity_threshold, None if judge is None else judge[0])
    if judge is not None and judge[0] is not None:
        row.update({k: _r(out[k]) for k in ("alignment_rules", "a_emo_rules", "a_act_rules", "fed_rules")},
                   judge_actions_scored=out["judge_actions_scored"], judge_top_emotion=out["judge_top_emotion"],
                   judge_p_target=_r(out["judge_p_target"]))
    row.update(
        status="degenerate_gt" if out["degenerate"] else "ok",
        reason="the ground truth shows no measurable expression change" if out["degenerate"] else None,
        **{k: _r(out[k]) for k in (*COMPONENTS, "gain", "off_axis", "bg_edit_source", "p_target_edit",
                                    "cos_edit_source", "quality_edit")},
        bg_gt_source=_r(bg_gt), top_emotion_edit=out["top_emotion_edit"],
    )
    if spec.bg_register:  # only versions that register carry these (1.x rows keep their layout)
        row.update(bg_shift=_r(bg_shift), bg_chroma=_r(chroma))
    return row


@dataclass
class FEDScore:
    """Accumulate per-sample rows; `compute()` gives the summary (per class, macro mean, 95 % CI)."""

    n_bootstrap: int = 1000
    seed: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def update(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def compute(self) -> dict[str, Any]:
        from fedbench.metrics.aggregate import summarise

        return summarise(self.rows, n_bootstrap=self.n_bootstrap, seed=self.seed)
