"""Stage 7, verification: a ground-truth candidate must keep the identity (ID), reach the target
(A_emo: its target probability; A_act: the share of the instruction's actions it performs), keep the
background (BG) and the face quality (PQ), each above its threshold, and it must change the expression
measurably (a candidate FED-Score would call degenerate is no reference). FED-Score's own metric core
is used (metrics/core.py, the current version's spec), with the candidate in the edit's place and no
ground truth: every component is then measured against the source, as there is no reference yet
(this is what makes one). Of the candidates that pass, the one with the highest Alignment x Fidelity
is kept."""

from __future__ import annotations

from pathlib import Path

from fedbench.engine.perception import ImageReadError, PerceivingStage
from fedbench.engine.stage import Outcome, Record, Rejected
from fedbench.metrics import core
from fedbench.metrics.fedscore import FEDSCORE_VERSION, background_ssim
from fedbench.metrics.spec import get_spec


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
        spec = get_spec(FEDSCORE_VERSION)
        change = core.expression_change(spec, s_face, g_face, g_face, tuple(s_feats.member_names))
        if change.degenerate:  # FED-Score would mark this triplet degenerate_gt: useless as a reference
            return {}, f"no measurable expression change (|dG| {change.gt_change:.3f})"
        ref = core.reference(spec, record["target"], record["instruction"], s_face, None, s_feats.member_names)
        pair = core.PairMeasures(bg_edit=background_ssim(s_rgb, g_rgb, s_face, g_face))
        c = core.assess(spec, ref, s_face, g_face, None, pair, self.perception.perceiver.identity_threshold)
        checks = {"id": c["id_score"], "a_emo": c["a_emo"], "a_act": c["a_act"], "bg": c["bg"], "pq": c["pq"],
                  "alignment": c["alignment"], "fidelity": c["fidelity"], "gt_change": change.gt_change}
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
