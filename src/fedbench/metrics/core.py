"""The metric core: one pure function from perceived features of S, E and G (plus the instruction and
the pair measurements that need pixels, such as the background SSIMs) to FED-Score's components,
under a version's spec. Scoring, the build engine's verify stage, meta and training all call this;
nothing else combines components.

`reference` is the part that needs only S and G (required actions, the ground truth's change,
degeneracy); `assess` adds the edit. With `g_face=None` every component is measured absolutely
against S: the verify stage judges a ground-truth candidate that way (there is no reference yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from fedbench.faces.perception import FaceFeatures
from fedbench.labels import EXPRESSIONS, expression_index
from fedbench.metrics.alignment import action_alignment, action_steps, alignment, emotion_alignment, required_actions
from fedbench.metrics.fidelity import cosine, fidelity, identity_score, quality_score, relative_background
from fedbench.metrics.lexicon import Action, named_actions, parse_actions
from fedbench.metrics.reg import Gain, expression_gain, expression_vector, reg_score
from fedbench.metrics import noise
from fedbench.metrics.spec import FedScoreSpec


@dataclass(frozen=True)
class PairMeasures:
    """Measurements that need the pixels of two images, taken by the caller (scoring/worker.py)."""

    bg_edit: float | None = None  # SSIM_bg(S, E): mean background SSIM, None without background
    bg_gt: float | None = None  # SSIM_bg(S, G), for versions whose BG is relative to G
    bg_shift: float | None = None  # registration of E to S (versions that register), max(shift, |scale-1|)
    bg_chroma_edit: float | None = None  # background chroma distance S-E (versions that compare colour)
    bg_chroma_gt: float | None = None  # the same for S-G


@dataclass(frozen=True)
class Reference:
    """What S and G alone determine: the actions to score, the ground truth's change, degeneracy."""

    target: str
    actions: list[Action]
    action_source: str  # "instruction" or "ground_truth"
    scored_actions: list[str]  # the actions A_act will score (relative versions drop what G does not do)
    change: Gain  # G against S (gain 1 by construction; gt_change and degenerate are what matter)
    member_names: tuple[str, ...] = field(default=())  # the emotion members behind FaceFeatures.members


def whitening_weights(spec: FedScoreSpec, std: np.ndarray) -> np.ndarray:
    """Per-dim weight of the whitened expression vector (noise.DIMS order): 1 / max(noise std, floor)
    for the spec's groups, 0 for the rest and for dims that carry no expression (gaze, `_neutral`).
    benchmarks/noise_model.py calls this too, to record how large a change of pure noise gets."""
    w = np.zeros(len(noise.DIMS))
    for i, d in enumerate(noise.DIMS):
        if d.split(":")[0] in spec.expression_groups and not d.startswith(spec.zero_weight):
            w[i] = 1.0 / max(float(std[i]), spec.sigma_floor)
    return w


@lru_cache(maxsize=8)
def _whitening(spec: FedScoreSpec) -> np.ndarray:
    return whitening_weights(spec, noise.load().scale_of(noise.DIMS, "std"))


def _alignment_noise(spec: FedScoreSpec) -> tuple[np.ndarray | None, float]:
    """(per-blendshape noise std, k) for versions whose Alignment forgives noise; (None, 0) otherwise."""
    if spec.alignment_noise_k <= 0:
        return None, 0.0
    return noise.load().scale_of(noise.BLENDSHAPE_DIMS, "std"), spec.alignment_noise_k


def _target_tolerance(spec: FedScoreSpec, target: str) -> float:
    if spec.alignment_noise_k <= 0:
        return 0.0
    return spec.alignment_noise_k * float(noise.load().scale_of((f"p:{target}",), "std")[0])


def noise_norm(spec: FedScoreSpec) -> float:
    """|dG_w| that processing alone stays under in the spec's share of the noise model's copies."""
    model = noise.load()
    try:
        return float(model.meta["degenerate_norm"][spec.version][f"{spec.degenerate_percentile:g}"])
    except KeyError:
        raise KeyError(f"the noise model has no noise norm for FED-Score {spec.version}; regenerate it: "
                       f"{model.meta.get('command')}") from None


def expression(spec: FedScoreSpec, face: FaceFeatures, member_names: tuple[str, ...]) -> np.ndarray:
    """The expression vector a version measures gain in: raw [b, p] (1.x), or noise-whitened (2.0)."""
    if spec.gain == "raw":
        return expression_vector(face.blendshapes, face.emotion)
    return noise.face_vector(face, member_names) * _whitening(spec)


def _degenerate_factor(spec: FedScoreSpec, dim: int) -> float:
    if spec.gain == "raw":
        return spec.degenerate_factor
    # Whitened: G's change must exceed what processing alone produces in 95 % of the noise model's
    # copies (expression_gain compares |dG| with factor * sqrt(dim)).
    return noise_norm(spec) / math.sqrt(dim)


def noisy_reg(spec: FedScoreSpec, gain: Gain) -> float:
    """REG with the gain's own noise: 1.x is REG(g). Whitened, one unit of noise along G's direction
    moves g by s = 1 / |dG_w|; a g within `reg_noise_k` s of 0 is no change (REG 0): processing alone
    must not read as an edit. Near 1 REG stays strictly peaked (a flat top there would tie the
    ground truth with every near-complete edit; dev evidence in docs/fedscore.md)."""
    if gain.gain is None:
        raise ValueError("REG of a degenerate triplet")
    if spec.gain == "raw" or spec.reg_noise_k <= 0:
        return reg_score(gain.gain, spec.reg_width)
    s = spec.reg_noise_k / max(gain.gt_change, 1e-12)  # gt_change is |dG_w| for whitened specs
    if gain.gain <= s:
        return 0.0
    return reg_score(gain.gain, spec.reg_width)


def expression_change(spec: FedScoreSpec, s_face: FaceFeatures, e_face: FaceFeatures, g_face: FaceFeatures,
                      member_names: tuple[str, ...] = ()) -> Gain:
    """Gain of E's change from S along G's, under the spec's expression space."""
    e_s = expression(spec, s_face, member_names)
    return expression_gain(e_s, expression(spec, e_face, member_names), expression(spec, g_face, member_names),
                           _degenerate_factor(spec, e_s.size))


def reference(spec: FedScoreSpec, target: str, instruction: str, s_face: FaceFeatures,
              g_face: FaceFeatures | None, member_names: tuple[str, ...] | list[str] = (),
              manifest_actions: list[str] | None = None) -> Reference:
    """`manifest_actions` (the manifest's optional `actions` field) are the required actions when
    given; otherwise those the instruction names, else those G performs."""
    names = tuple(member_names)
    if manifest_actions:
        actions, source = named_actions(manifest_actions), "manifest"
    elif g_face is None:  # reference-free (verify): only what the instruction names
        actions, source = parse_actions(instruction), "instruction"
    else:
        actions, source = required_actions(instruction, s_face.blendshapes, g_face.blendshapes,
                                           spec.gt_action_threshold)
    if g_face is None:
        return Reference(target, actions, source, [a.name for a in actions], Gain(None, None, 0.0, True), names)
    rel_gt = g_face.blendshapes if spec.relative("a_act") else None
    bs_noise, k = _alignment_noise(spec)
    scored = [a.name for a, _ in action_steps(s_face.blendshapes, actions, rel_gt, spec.action_step, spec.gt_action_min,
                                              bs_noise, k)]
    return Reference(target, actions, source, scored, expression_change(spec, s_face, g_face, g_face, names), names)


def processing_allowance(spec: FedScoreSpec) -> tuple[float, float]:
    """(identity cosine drop, face-quality factor) that processing alone causes in 95 % of the noise
    model's copies; (0, 1) for versions that do not forgive processing."""
    if not spec.processing_tolerant:
        return 0.0, 1.0
    fid = noise.load().meta["fidelity"]
    return 1.0 - float(fid["identity_cos"]["p05"]), float(math.exp(min(0.0, fid["log_quality_ratio"]["p05"])))


def background_value(spec: FedScoreSpec, ssim: float | None, chroma: float | None) -> float | None:
    """The background number a version compares: SSIM, times min(1, tolerance / chroma distance) when
    the version also compares colour (grey SSIM does not see a recoloured background)."""
    if ssim is None or spec.bg_chroma_tolerance is None or chroma is None:
        return ssim
    return float(ssim * min(1.0, spec.bg_chroma_tolerance / max(chroma, 1e-9)))


@dataclass(frozen=True)
class JudgeVerdict:
    """A vision-language judge's answers for one sample (fedbench/judge, docs/judge.md), as Alignment
    uses them. `status` other than "ok" means no answer: the role's components, Alignment and FED are
    then None (never 0), and the rule-based figures stay beside them."""

    status: str  # "ok", "judge_failed" or "judge_refused"
    role: str  # "emotion-member": the judge's distribution joins A_emo's; "actions": its verdicts join A_act
    weight: float  # the judge's share; the rules keep 1 - weight
    edit_probs: np.ndarray | None = None  # 7 classes (labels.EXPRESSIONS) for E
    gt_probs: np.ndarray | None = None  # the same for G (relative A_emo needs it)
    shows: dict[str, bool] = field(default_factory=dict)  # action name -> does E show it


def judged_alignment(spec: FedScoreSpec, ref: Reference, e_face: FaceFeatures, g_face: FaceFeatures | None,
                     a_emo_rules: float, a_act_rules: float | None, judge: JudgeVerdict
                     ) -> tuple[float | None, float | None, int]:
    """(A_emo, A_act, actions the judge scored) with the judge's answers mixed in per its role.

    emotion-member: p(E) = (1 - w) p_rules(E) + w p_judge(E) (and the same for G where A_emo is
    relative), then A_emo as the version defines it. actions: A_act = (1 - w) A_act_rules + w x the
    share of scored actions the judge sees performed (an action that must fall is performed when E
    does not show it); actions the judge was not asked about (G-defined `bsNN`) leave A_act to the rules."""
    if judge.status != "ok":
        if judge.role == "emotion-member":
            return None, a_act_rules, 0
        return a_emo_rules, None, 0
    w = judge.weight
    if judge.role == "emotion-member":
        if judge.edit_probs is None:
            raise ValueError("an emotion-member judge verdict without the edit's distribution")
        rel = g_face is not None and spec.relative("a_emo")
        if rel and judge.gt_probs is None:
            raise ValueError("a relative A_emo needs the judge's answer for the ground truth")
        e_p = (1 - w) * e_face.emotion + w * judge.edit_probs
        g_p = (1 - w) * g_face.emotion + w * judge.gt_probs if rel else None
        tol = _target_tolerance(spec, ref.target) if rel else 0.0
        return min(1.0, emotion_alignment(e_p, ref.target, g_p, tol)), a_act_rules, 0
    if judge.role != "actions":
        raise ValueError(f"unknown judge role {judge.role!r}")
    seen = [judge.shows[a.name] == (a.sign > 0) for a in ref.actions
            if a.name in ref.scored_actions and a.name in judge.shows]
    if not seen or a_act_rules is None:
        return a_emo_rules, a_act_rules, 0
    return a_emo_rules, (1 - w) * a_act_rules + w * float(np.mean(seen)), len(seen)


def combine(spec: FedScoreSpec, alignment_: float, fidelity_: float, reg: float | None) -> float | None:
    """FED from the three headline components; undefined when REG is."""
    if reg is None:
        return None
    if spec.combine == "geometric":
        return float(100.0 * max(0.0, alignment_ * fidelity_ * reg) ** (1.0 / 3.0))
    if spec.combine == "reg_gated":  # linear in REG: a near-zero gain stays near zero
        return float(100.0 * reg * math.sqrt(max(0.0, alignment_ * fidelity_)))
    raise ValueError(f"FED-Score {spec.version}: unknown combination {spec.combine!r}")


def assess(spec: FedScoreSpec, ref: Reference, s_face: FaceFeatures, e_face: FaceFeatures,
           g_face: FaceFeatures | None, pair: PairMeasures, identity_threshold: float,
           judge: JudgeVerdict | None = None) -> dict[str, Any]:
    """Every component of one edit, and the raw numbers behind them (unrounded).

    With a `judge`, Alignment (and FED) combine its answers (`judged_alignment`); the rule-based
    A_emo, A_act, Alignment and FED are returned beside them as `*_rules`.

    Components absent from the result's meaning are None: REG and FED when G is degenerate or absent.
    """
    t = expression_index(ref.target)
    g = g_face
    rel = {c: g is not None and spec.relative(c) for c in ("a_emo", "a_act", "pq", "bg")}
    tol = _target_tolerance(spec, ref.target) if rel["a_emo"] else 0.0
    a_emo = min(1.0, emotion_alignment(e_face.emotion, ref.target, g.emotion if rel["a_emo"] else None, tol))
    bs_noise, k = _alignment_noise(spec) if rel["a_act"] else (None, 0.0)
    a_act = action_alignment(s_face.blendshapes, e_face.blendshapes, ref.actions, spec.action_step,
                             g.blendshapes if rel["a_act"] else None, spec.gt_action_min, bs_noise, k) if ref.actions else None
    align = alignment(a_emo, a_act)
    cos_es = cosine(e_face.embedding, s_face.embedding)
    # Without G the identity is normalised by 1 - c0, as for a drifting ground truth.
    cos_gs = cosine(g.embedding, s_face.embedding) if g is not None else 1.0
    id_drop, q_loss = processing_allowance(spec)
    id_s = identity_score(min(1.0, cos_es + id_drop), cos_gs, identity_threshold, spec.identity_drift_margin)
    bg_edit = background_value(spec, pair.bg_edit, pair.bg_chroma_edit)
    bg_gt = background_value(spec, pair.bg_gt, pair.bg_chroma_gt)
    bg = relative_background(bg_edit, bg_gt, spec.bg_reference_floor) if rel["bg"] else bg_edit
    pq = quality_score(e_face.quality / q_loss, s_face.quality, g.quality if rel["pq"] else None)
    fid = fidelity(id_s, bg, pq)
    gain = expression_change(spec, s_face, e_face, g, ref.member_names) if g is not None else ref.change
    reg = None if gain.degenerate else noisy_reg(spec, gain)
    judged: dict[str, Any] = {}
    if judge is not None:
        j_emo, j_act, n_act = judged_alignment(spec, ref, e_face, g, a_emo, a_act, judge)
        judged = {"a_emo_rules": a_emo, "a_act_rules": a_act, "alignment_rules": align,
                  "fed_rules": combine(spec, align, fid, reg), "judge_actions_scored": n_act,
                  "judge_top_emotion": None if judge.edit_probs is None else EXPRESSIONS[int(np.argmax(judge.edit_probs))],
                  "judge_p_target": None if judge.edit_probs is None else float(judge.edit_probs[t])}
        a_emo, a_act = j_emo, j_act
        align = alignment(a_emo, a_act) if judge.status == "ok" else None  # no answer: no judged value
    return {
        **judged,
        "alignment": align, "a_emo": a_emo, "a_act": a_act, "fidelity": fid, "id_score": id_s, "bg": bg,
        "pq": pq, "reg": reg, "fed": None if align is None else combine(spec, align, fid, reg), "gain": gain.gain, "off_axis": gain.off_axis,
        "degenerate": gain.degenerate, "bg_edit_source": pair.bg_edit, "bg_gt_source": pair.bg_gt,
        "bg_shift": pair.bg_shift, "bg_chroma": pair.bg_chroma_edit,
        "p_target_edit": float(e_face.emotion[t]), "top_emotion_edit": EXPRESSIONS[int(np.argmax(e_face.emotion))],
        "cos_edit_source": cos_es, "cos_gt_source": cos_gs if g is not None else None,
        "quality_edit": float(e_face.quality),
    }
