"""Alignment: did the edit follow the instruction? Emotion level (A_emo) and facial-action level (A_act)."""

from __future__ import annotations

import numpy as np

from fedbench.labels import expression_index
from fedbench.metrics.lexicon import Action, parse_actions

ACTION_STEP = 0.05  # a blendshape change of this size in the required direction counts fully
GT_ACTION_THRESHOLD = 0.10  # without named actions: blendshapes the ground truth moves at least this much
GT_ACTION_MIN = 0.01  # v1.1: a named action the ground truth does not perform by this much is not scored


def emotion_alignment(edit_probs: np.ndarray, target: str, gt_probs: np.ndarray | None = None,
                      tolerance: float = 0.0) -> float:
    """A_emo = p_t(E) (v1.0), or min(1, p_t(E) / p_t(G)) relative to the ground truth (v1.1); 2.0 adds
    `tolerance` (the target probability's processing noise) to p_t(E): G's own flicker is not a miss."""
    t = expression_index(target)
    p_edit = float(edit_probs[t]) + tolerance
    if gt_probs is None:
        return p_edit
    p_gt = float(gt_probs[t])
    return 1.0 if p_gt <= 0.0 else float(min(1.0, p_edit / p_gt))


def required_actions(instruction: str, source_bs: np.ndarray, gt_bs: np.ndarray,
                     threshold: float = GT_ACTION_THRESHOLD) -> tuple[list[Action], str]:
    """Actions the instruction names, else the blendshapes that G moves by >= 0.10, signed by the move.

    Returns the actions and where they came from ("instruction" or "ground_truth").
    """
    named = parse_actions(instruction)
    if named:
        return named, "instruction"
    delta = np.asarray(gt_bs, dtype=np.float64) - np.asarray(source_bs, dtype=np.float64)
    moved = [
        Action(f"bs{k}", (k,), 1 if delta[k] > 0 else -1)
        for k in np.flatnonzero(np.abs(delta) >= threshold)
    ]
    return moved, "ground_truth"


def _move(a: Action, before: np.ndarray, after: np.ndarray) -> float:
    """Signed move of an action: positive in the required direction."""
    idx = list(a.blendshapes)
    return float(a.sign * (after[idx].mean() - before[idx].mean()))


def action_steps(source_bs: np.ndarray, actions: list[Action], gt_bs: np.ndarray | None = None,
                 step: float = ACTION_STEP, gt_min: float = GT_ACTION_MIN, noise: np.ndarray | None = None,
                 noise_k: float = 0.0) -> list[tuple[Action, float]]:
    """(action, step that counts fully). v1.0: every action, step 0.05. v1.1 (with G): the step is
    min(0.05, G's own move), and actions G does not perform (move < 0.01) are left out. With a noise
    model (2.0, `noise` = per-blendshape std): an action G moves by less than `noise_k` of its noise is
    not scored (it is noise), and the step is G's move less one noise unit (a processed G still counts)."""
    if gt_bs is None:
        return [(a, step) for a in actions]
    src = np.asarray(source_bs, dtype=np.float64)
    gt = np.asarray(gt_bs, dtype=np.float64)
    kept = []
    for a in actions:
        gt_move = _move(a, src, gt)
        sigma = float(np.mean(noise[list(a.blendshapes)])) if noise is not None and noise_k > 0 else 0.0
        if gt_move >= max(gt_min, noise_k * sigma):
            kept.append((a, min(step, gt_move - sigma)))
    return kept


def action_alignment(source_bs: np.ndarray, edit_bs: np.ndarray, actions: list[Action],
                     step: float = ACTION_STEP, gt_bs: np.ndarray | None = None,
                     gt_min: float = GT_ACTION_MIN, noise: np.ndarray | None = None,
                     noise_k: float = 0.0) -> float | None:
    """A_act = mean over actions of clip(sign * (b(E) - b(S)) / step, 0, 1); None when no action is scored.

    Direction only: how far the edit moves belongs to REG. With `gt_bs` (v1.1) the step is capped
    at the ground truth's own move, so an edit that moves as far as G scores 1.
    """
    steps = action_steps(source_bs, actions, gt_bs, step, gt_min, noise, noise_k)
    if not steps:
        return None
    src = np.asarray(source_bs, dtype=np.float64)
    edit = np.asarray(edit_bs, dtype=np.float64)
    return float(np.mean([np.clip(_move(a, src, edit) / d, 0.0, 1.0) for a, d in steps]))


def alignment(a_emo: float, a_act: float | None) -> float:
    """(A_emo + A_act) / 2; A_emo alone when the triplet requires no measurable action."""
    return a_emo if a_act is None else (a_emo + a_act) / 2.0
