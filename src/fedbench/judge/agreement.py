"""Judge-versus-rules agreement for `fedbench meta --judge`: Cohen's kappa between the judge's top
expression and the rule ensemble's (`top_emotion_edit`) on the same edited faces, over all seven
classes and per class (one class against the rest), each with a bootstrap 95 % interval; and per probe,
the judged and rule-based Alignment side by side. Only rows the judge answered (`judge_status` ok) count."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedbench.labels import EXPRESSIONS


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two label arrays; None when chance agreement is total (kappa undefined)."""
    if a.size == 0:
        return None
    labels = np.union1d(a, b)
    po = float(np.mean(a == b))
    pe = float(sum(np.mean(a == c) * np.mean(b == c) for c in labels))
    return None if pe >= 1.0 else (po - pe) / (1.0 - pe)


def kappa_with_interval(a: np.ndarray, b: np.ndarray, n_bootstrap: int, seed: int = 0) -> dict[str, Any]:
    """kappa, its percentile bootstrap interval over rows (resamples where kappa is undefined are dropped), n."""
    k = cohen_kappa(a, b)
    ci = None
    if k is not None and n_bootstrap > 0 and a.size > 1:
        rng = np.random.default_rng(seed)
        draws = [cohen_kappa(a[idx], b[idx]) for idx in rng.integers(0, a.size, size=(n_bootstrap, a.size))]
        draws = [d for d in draws if d is not None]
        if draws:
            lo, hi = np.percentile(draws, [2.5, 97.5])
            ci = [round(float(lo), 4), round(float(hi), 4)]
    return {"kappa": None if k is None else round(k, 4), "ci95": ci, "n": int(a.size)}


def _pairs(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    ok = [r for r in rows if r.get("judge_status") == "ok" and r.get("judge_top_emotion") and r.get("top_emotion_edit")]
    return (np.array([r["judge_top_emotion"] for r in ok], dtype=object),
            np.array([r["top_emotion_edit"] for r in ok], dtype=object))


def emotion_agreement(rows: list[dict[str, Any]], n_bootstrap: int, seed: int = 0) -> dict[str, Any]:
    judge, rules = _pairs(rows)
    per_class = {}
    for i, c in enumerate(EXPRESSIONS):
        per_class[c] = {**kappa_with_interval(judge == c, rules == c, n_bootstrap, seed + 1 + i),
                        "judge_positive": int(np.sum(judge == c)), "rules_positive": int(np.sum(rules == c))}
    return {"all_classes": kappa_with_interval(judge, rules, n_bootstrap, seed), "per_class": per_class,
            "raw_agreement": None if judge.size == 0 else round(float(np.mean(judge == rules)), 4)}


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def probe_agreement(probe_rows: dict[str, dict[str, dict]], n_bootstrap: int) -> dict[str, Any]:
    """Per probe: judged and rule-based Alignment (plain means over the probe's rows), judge statuses, kappa."""
    out = {}
    for i, (name, by_id) in enumerate(probe_rows.items()):
        rows = list(by_id.values())
        statuses: dict[str, int] = {}
        for r in rows:
            s = r.get("judge_status") or "not_judged"
            statuses[s] = statuses.get(s, 0) + 1
        j, r_ = _pairs(rows)
        out[name] = {"alignment": _mean(rows, "alignment"), "alignment_rules": _mean(rows, "alignment_rules"),
                     "judge_statuses": statuses, "kappa": kappa_with_interval(j, r_, n_bootstrap, 100 + i)}
    return out
