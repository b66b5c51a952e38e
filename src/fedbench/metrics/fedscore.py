"""FED-Score v1 for one triplet: components from perception features, and their combination.

`score_triplet` is the functional form used by the runner; `FEDScore` accumulates rows and computes
the summary, torchmetrics-style.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedbench.data.images import grey_view
from fedbench.faces.masks import face_mask
from fedbench.faces.perception import FaceFeatures, ImageFeatures
from fedbench.labels import EXPRESSIONS, expression_index
from fedbench.metrics.alignment import action_alignment, action_steps, alignment, emotion_alignment, required_actions
from fedbench.metrics.fidelity import (
    background_score, cosine, fidelity, identity_score, quality_score, relative_background,
)
from fedbench.metrics.reg import expression_gain, expression_vector, reg_score
from fedbench.metrics.ssim import ssim_map

FEDSCORE_VERSION = "1.2"
# 1.0: fedscore.md as first written (A_emo = p_t(E), fixed action step, PQ against S).
# 1.1: Alignment and PQ relative to the ground truth, as ID always was (docs/fedscore.md, "Changes").
# 1.2: BG relative to the ground truth's own background change too: every component is then
#      measured against what G did, and G itself scores 100.
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")


def uses_gt_background(version: str) -> bool:
    return version not in ("1.0", "1.1")
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

COMPONENTS = ("alignment", "a_emo", "a_act", "fidelity", "id_score", "bg", "pq", "reg", "fed")


def fed_score(alignment_: float, fidelity_: float, reg: float | None) -> float | None:
    """FED = 100 * (Alignment * Fidelity * REG)^(1/3); undefined when REG is."""
    if reg is None:
        return None
    return float(100.0 * max(0.0, alignment_ * fidelity_ * reg) ** (1.0 / 3.0))


def _r(x: float | None) -> float | None:
    """Round for the result files: stable text, far below any meaningful difference."""
    return None if x is None else round(float(x), 6)


def background_ssim(source_rgb: np.ndarray, edit_rgb: np.ndarray, source_face: FaceFeatures,
                    edit_face: FaceFeatures) -> float | None:
    """BG: SSIM outside the union of both face masks, grey, at 512 px; E resized to S's size first."""
    s_grey = grey_view(source_rgb, BG_LONG_SIDE)
    size = (s_grey.shape[1], s_grey.shape[0])
    e_grey = grey_view(edit_rgb, size=size)
    faces = face_mask(source_face.landmarks, size) | face_mask(edit_face.landmarks, size)
    return background_score(ssim_map(s_grey, e_grey), ~faces)


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
    version: str = FEDSCORE_VERSION,
    generation: tuple[str, str | None] | None = None,
    bg_gt: float | None = None,
) -> dict[str, Any]:
    """One row of samples.jsonl: every component, the status, and the raw numbers behind them.

    `generation` is (status, reason) when an editor run produced no image for this sample
    ("refused" or "generation_failed"); the edit is then not looked at. `bg_gt` is BG(S, G), which
    version 1.2 divides the edit's BG by.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unknown FED-Score version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    relative = version != "1.0"
    row = _empty_row(sample_id, target)
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
    e_s = expression_vector(s_face.blendshapes, s_face.emotion)
    e_g = expression_vector(g_face.blendshapes, g_face.emotion)
    actions, action_source = required_actions(instruction, s_face.blendshapes, g_face.blendshapes)
    cos_gs = cosine(g_face.embedding, s_face.embedding)
    row.update(p_target_source=_r(s_face.emotion[t]), p_target_gt=_r(g_face.emotion[t]),
               cos_gt_source=_r(cos_gs), quality_source=_r(s_face.quality),
               quality_gt=_r(g_face.quality), action_source=action_source,
               actions=[a.name for a, _ in action_steps(s_face.blendshapes, actions,
                                                        g_face.blendshapes if relative else None)])

    degenerate = expression_gain(e_s, e_g, e_g).degenerate
    row["gt_change"] = _r(float(np.linalg.norm(e_g - e_s)))

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
        return row

    row["edit_status"] = "ok"
    e_face = edit.features.primary(s_face.box)
    a_emo = emotion_alignment(e_face.emotion, target, g_face.emotion if relative else None)
    a_act = action_alignment(s_face.blendshapes, e_face.blendshapes, actions,
                             gt_bs=g_face.blendshapes if relative else None)
    align = alignment(a_emo, a_act)
    cos_es = cosine(e_face.embedding, s_face.embedding)
    id_s = identity_score(cos_es, cos_gs, identity_threshold)
    bg_abs = background_ssim(source_rgb, edit_rgb, s_face, e_face)
    bg = relative_background(bg_abs, bg_gt) if uses_gt_background(version) else bg_abs
    pq = quality_score(e_face.quality, s_face.quality, g_face.quality if relative else None)
    fid = fidelity(id_s, bg, pq)
    gain = expression_gain(e_s, expression_vector(e_face.blendshapes, e_face.emotion), e_g)
    reg = None if gain.degenerate else reg_score(gain.gain)
    row.update(
        status="degenerate_gt" if gain.degenerate else "ok",
        reason="the ground truth shows no measurable expression change" if gain.degenerate else None,
        alignment=_r(align), a_emo=_r(a_emo), a_act=_r(a_act), fidelity=_r(fid), id_score=_r(id_s),
        bg=_r(bg), pq=_r(pq), reg=_r(reg), gain=_r(gain.gain), off_axis=_r(gain.off_axis),
        bg_edit_source=_r(bg_abs), bg_gt_source=_r(bg_gt),
        fed=_r(fed_score(align, fid, reg)), p_target_edit=_r(e_face.emotion[t]),
        top_emotion_edit=EXPRESSIONS[int(np.argmax(e_face.emotion))], cos_edit_source=_r(cos_es),
        quality_edit=_r(e_face.quality),
    )
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
