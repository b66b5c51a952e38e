"""The metric core: one pure function from perceived features of S, E and G (plus the instruction and
the pair measurements that need pixels, such as the background SSIMs) to FED-Score's components,
under a version's spec. Scoring, the build engine's verify stage, meta and training all call this;
nothing else combines components.

`reference` is the part that needs only S and G (required actions, the ground truth's change,
degeneracy); `assess` adds the edit. With `g_face=None` every component is measured absolutely
against S: the verify stage judges a ground-truth candidate that way (there is no reference yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedbench.faces.perception import FaceFeatures
from fedbench.labels import EXPRESSIONS, expression_index
from fedbench.metrics.alignment import action_alignment, action_steps, alignment, emotion_alignment, required_actions
from fedbench.metrics.fidelity import cosine, fidelity, identity_score, quality_score, relative_background
from fedbench.metrics.lexicon import Action, parse_actions
from fedbench.metrics.reg import Gain, expression_gain, expression_vector, reg_score
from fedbench.metrics.spec import FedScoreSpec


@dataclass(frozen=True)
class PairMeasures:
    """Measurements that need the pixels of two images, taken by the caller (scoring/worker.py)."""

    bg_edit: float | None = None  # SSIM_bg(S, E): mean background SSIM, None without background
    bg_gt: float | None = None  # SSIM_bg(S, G), for versions whose BG is relative to G


@dataclass(frozen=True)
class Reference:
    """What S and G alone determine: the actions to score, the ground truth's change, degeneracy."""

    target: str
    actions: list[Action]
    action_source: str  # "instruction" or "ground_truth"
    scored_actions: list[str]  # the actions A_act will score (relative versions drop what G does not do)
    change: Gain  # G against S (gain 1 by construction; gt_change and degenerate are what matter)


def _expression(face: FaceFeatures) -> np.ndarray:
    return expression_vector(face.blendshapes, face.emotion)


def expression_change(spec: FedScoreSpec, s_face: FaceFeatures, e_face: FaceFeatures, g_face: FaceFeatures) -> Gain:
    """Gain of E's change from S along G's, under the spec's expression space."""
    return expression_gain(_expression(s_face), _expression(e_face), _expression(g_face), spec.degenerate_factor)


def reference(spec: FedScoreSpec, target: str, instruction: str, s_face: FaceFeatures,
              g_face: FaceFeatures | None) -> Reference:
    if g_face is None:  # reference-free (verify): only what the instruction names
        actions, source = parse_actions(instruction), "instruction"
        return Reference(target, actions, source, [a.name for a in actions],
                         Gain(None, None, 0.0, True))
    actions, source = required_actions(instruction, s_face.blendshapes, g_face.blendshapes, spec.gt_action_threshold)
    rel_gt = g_face.blendshapes if spec.relative("a_act") else None
    scored = [a.name for a, _ in action_steps(s_face.blendshapes, actions, rel_gt, spec.action_step, spec.gt_action_min)]
    return Reference(target, actions, source, scored, expression_change(spec, s_face, g_face, g_face))


def combine(spec: FedScoreSpec, alignment_: float, fidelity_: float, reg: float | None) -> float | None:
    """FED from the three headline components; undefined when REG is."""
    if reg is None:
        return None
    if spec.combine == "geometric":
        return float(100.0 * max(0.0, alignment_ * fidelity_ * reg) ** (1.0 / 3.0))
    raise ValueError(f"FED-Score {spec.version}: unknown combination {spec.combine!r}")


def assess(spec: FedScoreSpec, ref: Reference, s_face: FaceFeatures, e_face: FaceFeatures,
           g_face: FaceFeatures | None, pair: PairMeasures, identity_threshold: float) -> dict[str, Any]:
    """Every component of one edit, and the raw numbers behind them (unrounded).

    Components absent from the result's meaning are None: REG and FED when G is degenerate or absent.
    """
    t = expression_index(ref.target)
    g = g_face
    rel = {c: g is not None and spec.relative(c) for c in ("a_emo", "a_act", "pq", "bg")}
    a_emo = emotion_alignment(e_face.emotion, ref.target, g.emotion if rel["a_emo"] else None)
    a_act = action_alignment(s_face.blendshapes, e_face.blendshapes, ref.actions, spec.action_step,
                             g.blendshapes if rel["a_act"] else None, spec.gt_action_min) if ref.actions else None
    align = alignment(a_emo, a_act)
    cos_es = cosine(e_face.embedding, s_face.embedding)
    # Without G the identity is normalised by 1 - c0, as for a drifting ground truth.
    cos_gs = cosine(g.embedding, s_face.embedding) if g is not None else 1.0
    id_s = identity_score(cos_es, cos_gs, identity_threshold, spec.identity_drift_margin)
    bg = relative_background(pair.bg_edit, pair.bg_gt, spec.bg_reference_floor) if rel["bg"] else pair.bg_edit
    pq = quality_score(e_face.quality, s_face.quality, g.quality if rel["pq"] else None)
    fid = fidelity(id_s, bg, pq)
    gain = expression_change(spec, s_face, e_face, g) if g is not None else ref.change
    reg = None if gain.degenerate else reg_score(gain.gain, spec.reg_width)
    return {
        "alignment": align, "a_emo": a_emo, "a_act": a_act, "fidelity": fid, "id_score": id_s, "bg": bg,
        "pq": pq, "reg": reg, "fed": combine(spec, align, fid, reg), "gain": gain.gain, "off_axis": gain.off_axis,
        "degenerate": gain.degenerate, "bg_edit_source": pair.bg_edit, "bg_gt_source": pair.bg_gt,
        "p_target_edit": float(e_face.emotion[t]), "top_emotion_edit": EXPRESSIONS[int(np.argmax(e_face.emotion))],
        "cos_edit_source": cos_es, "cos_gt_source": cos_gs if g is not None else None,
        "quality_edit": float(e_face.quality),
    }
