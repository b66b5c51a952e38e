"""Synthetic run folders, for testing and sizing reports without scoring anything.

The rows are INVENTED: drawn from a seeded generator, then combined with FED-Score's own formulas
(REG from the gain, Fidelity and FED from their components) and aggregated by the scorer's own
`summarise`, so a synthetic run has the exact shape and internal consistency of a real one. Its
`summary.json` carries `"synthetic": true` and the HTML report says so in its first lines; these
runs are for the report's tests and `benchmarks/report_size.py`, never for results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fedbench.metrics.aggregate import summarise
from fedbench.metrics.fedscore import COMPONENTS, FEDSCORE_VERSION, fed_score
from fedbench.metrics.fidelity import fidelity
from fedbench.metrics.reg import reg_score


@dataclass(frozen=True)
class Behaviour:
    """How an invented model behaves: typical gain, how much it keeps, how often it fails."""

    gain: float = 1.0  # centre of the gain g (1 = the ground truth's change)
    gain_spread: float = 0.25
    alignment: float = 0.8
    keep: float = 0.9  # centre of ID, BG and PQ
    failure_rate: float = 0.0  # share of samples with an edit failure (missing / no face)


def synthetic_rows(samples: Iterable[tuple[str, str]], behaviour: Behaviour, seed: int) -> list[dict[str, Any]]:
    """One samples.jsonl row per (id, target), deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    rows = []
    for sample_id, target in samples:
        row: dict[str, Any] = {"id": sample_id, "target": target, "status": "ok", "reason": None,
                               "edit_status": "ok"}
        if rng.random() < behaviour.failure_rate:
            status = "missing_edit" if rng.random() < 0.5 else "no_face_edit"
            row.update({c: 0.0 for c in COMPONENTS}, status=status, edit_status=status,
                       reason="synthetic edit failure", gain=None, off_axis=None)
            rows.append(row)
            continue
        clip = lambda x: float(np.clip(x, 0.0, 1.0))  # noqa: E731
        a_emo, a_act = clip(rng.normal(behaviour.alignment, 0.12)), clip(rng.normal(behaviour.alignment, 0.15))
        align = (a_emo + a_act) / 2
        id_s, bg, pq = (clip(rng.normal(behaviour.keep, 0.06)) for _ in range(3))
        fid = fidelity(id_s, bg, pq)
        gain = float(rng.normal(behaviour.gain, behaviour.gain_spread))
        reg = reg_score(gain)
        row.update(alignment=round(align, 6), a_emo=round(a_emo, 6), a_act=round(a_act, 6),
                   fidelity=round(fid, 6), id_score=round(id_s, 6), bg=round(bg, 6), pq=round(pq, 6),
                   reg=round(reg, 6), fed=round(fed_score(align, fid, reg), 6), gain=round(gain, 6),
                   off_axis=round(abs(float(rng.normal(0, 0.2))), 6))
        rows.append(row)
    return rows


def write_run(out: Path, rows: list[dict[str, Any]], manifest: Path | None, edits: Path | None,
              n_bootstrap: int = 200, version: str = FEDSCORE_VERSION) -> Path:
    """Write samples.jsonl, summary.json (marked synthetic) and run.json into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = {"fedscore_version": version, "synthetic": True,
               "manifest": None if manifest is None else str(manifest),
               "edits": None if edits is None else str(edits), **summarise(rows, n_bootstrap=n_bootstrap),
               "backbones": {"models": {}, "runtime": "synthetic"}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "run.json").write_text(json.dumps({"synthetic": True}) + "\n", encoding="utf-8")
    return out
