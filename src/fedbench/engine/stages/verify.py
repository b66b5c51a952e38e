"""Stage 7, verification: a ground-truth candidate must keep the identity (ID), reach the target
(A_emo: its target probability; A_act: the share of the instruction's actions it performs), keep the
background (BG) and the face quality (PQ), each above its threshold, and it must change the expression
measurably (a candidate FED-Score would call degenerate is no reference). FED-Score's own components
are used, measured against the source (there is no reference yet: this is what makes one). Of the
candidates that pass, the one with the highest Alignment x Fidelity is kept."""

from __future__ import annotations

from pathlib import Path

from fedbench.engine.perception import ImageReadError, PerceivingStage
from fedbench.engine.stage import Outcome, Record, Rejected
from fedbench.metrics.alignment import action_alignment, alignment, emotion_alignment
from fedbench.metrics.fedscore import background_ssim
from fedbench.metrics.fidelity import cosine, fidelity, identity_score, quality_score
from fedbench.metrics.lexicon import parse_actions
from fedbench.metrics.reg import expression_gain, expression_vector


class Verify(PerceivingStage):
    name = "verify"

    def _checks(self, record: Record, s_feats, s_rgb, path: Path) -> tuple[dict[str, float | None], str | None]:
        try:
            g_feats, g_rgb = self.perception.features(path, want_rgb=True)
        except (OSError, ImageReadError) as exc:
            return {}, f"unreadable candidate: {exc}"
        s_face = s_feats.faces[0]
        g_face = g_feats.primary(s_face.box)
        if g_face is None:
            return {}, "no face in the candidate"
        actions = parse_actions(record["instruction"])
        a_emo = emotion_alignment(g_face.emotion, record["target"])
        a_act = action_alignment(s_face.blendshapes, g_face.blendshapes, actions) if actions else None
        id_s = identity_score(cosine(g_face.embedding, s_face.embedding), 1.0, self.perception.perceiver.identity_threshold)
        bg = background_ssim(s_rgb, g_rgb, s_face, g_face)
        pq = quality_score(g_face.quality, s_face.quality)
        change = expression_gain(expression_vector(s_face.blendshapes, s_face.emotion),
                                 expression_vector(g_face.blendshapes, g_face.emotion),
                                 expression_vector(g_face.blendshapes, g_face.emotion))
        if change.degenerate:  # FED-Score would mark this triplet degenerate_gt: useless as a reference
            return {}, f"no measurable expression change (|dG| {change.gt_change:.3f})"
        checks = {"id": id_s, "a_emo": a_emo, "a_act": a_act, "bg": bg, "pq": pq,
                  "alignment": alignment(a_emo, a_act), "fidelity": fidelity(id_s, bg, pq),
                  "gt_change": change.gt_change}
        return {k: (None if v is None else round(float(v), 4)) for k, v in checks.items()}, None

    def process(self, record: Record) -> Outcome:
        cfg = self.config.verify
        try:
            s_feats, s_rgb = self.perception.features(Path(record["image"]), want_rgb=True)
        except (OSError, ImageReadError) as exc:
            return Rejected(f"source unreadable: {exc}")
        limits = {"id": cfg.min_identity, "a_emo": cfg.min_emotion, "a_act": cfg.min_actions,
                  "bg": cfg.min_background, "pq": cfg.min_quality}
        best, best_failed, tried = None, None, []
        for cand in record["gt_candidates"]:
            checks, problem = self._checks(record, s_feats, s_rgb, Path(cand["image"]))
            if problem:
                tried.append({"seed": cand["seed"], "problem": problem})
                continue
            failed = [f"{k} {checks[k]:.2f} < {v}" for k, v in limits.items() if checks[k] is not None and checks[k] < v]
            merit = checks["alignment"] * checks["fidelity"]
            tried.append({"seed": cand["seed"], **checks, "failed": failed})
            if not failed and (best is None or merit > best[0]):
                best = (merit, cand, checks)
            if failed and (best_failed is None or merit > best_failed[0]):
                best_failed = (merit, failed)
        if best is None:
            reason = "no candidate passed: " + ("; ".join(best_failed[1]) if best_failed else tried[0]["problem"])
            return Rejected(reason, {"candidates": tried})
        _, cand, checks = best
        out = {k: v for k, v in record.items() if k != "gt_candidates"}
        return [{**out, "ground_truth": cand["image"], "gt_seed": cand["seed"], "verification": checks,
                 "candidates_tried": len(tried)}]
