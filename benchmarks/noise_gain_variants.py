"""The gain definitions considered for FED-Score 2.0, compared on the dev probe sets (the table in
docs/fedscore.md, "Alternatives tried").

    PYTHONPATH=src python benchmarks/noise_model.py --dump-deltas /tmp/noise_deltas.npz
    PYTHONPATH=src python benchmarks/fedscore_v2_dev.py            # makes and perceives the probe sets
    PYTHONPATH=src python benchmarks/noise_gain_variants.py [--work /tmp/fedscore_v2_dev] [--deltas /tmp/noise_deltas.npz]

For each variant (which dims, diagonal or full-covariance whitening, the REG noise rule) it reads the
cached features of every probe triplet and reports REG only (Alignment and Fidelity are the same for
every variant): the largest REG of a processed S, the smallest of a processed G, the median gain of
warp 0.5 / 1 / 2, how many blend triplets and processing-only wild triplets are degenerate.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from fedbench.data.manifest import read_manifest
from fedbench.faces.perception import PerceptionConfig
from fedbench.metrics import noise
from fedbench.metrics.reg import reg_score
from fedbench.scoring.edits import find_edits
from fedbench.store.features import FeatureCache, content_key, signature_hash

ZERO = ("bs:_neutral", "bs:eyeLook")


def vectors(work: Path) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(set, probe, triplet) -> expression vectors of S, G, E from the harness's feature cache."""
    sig = signature_hash(PerceptionConfig().signature())
    cache = FeatureCache(work / "features.sqlite", readonly=True)
    out = {}
    for part in ("blend", "wild"):
        man = read_manifest(work / part / "manifest.jsonl", allow_outside=True)
        edits = find_edits(work / part / "edits", list(man))
        for t in man:
            feats = [cache.get(content_key(Path(p).read_bytes(), sig)) if p else None
                     for p in (t.source, t.ground_truth, edits[t.id])]
            if not all(f is not None and f.faces for f in feats):
                continue
            s = feats[0].faces[0]
            g, e = feats[1].primary(s.box), feats[2].primary(s.box)
            probe, trip = t.id.split("__", 1)
            if probe.startswith("processed") and probe[-1].isdigit():
                probe = probe.rsplit("-", 1)[0]
            vec = [noise.face_vector(x, feats[0].member_names) for x in (s, g, e)]
            out[(part, f"{probe}", f"{trip}|{t.id}")] = tuple(vec)
    cache.close()
    return out


def evaluate(v: dict, deltas: np.ndarray, w: np.ndarray, k: float, flat_top: bool) -> dict:
    thr = float(np.percentile(np.linalg.norm(deltas @ w.T, axis=1), 99))
    by: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (part, probe, _), (s, g, e) in v.items():
        dg, de = w @ (g - s), w @ (e - s)
        n = float(np.linalg.norm(dg))
        by.setdefault((part, probe), []).append((float(de @ dg) / n**2, n))

    def reg(gain: float, n: float) -> float:
        s = k / n
        if gain <= s:
            return 0.0
        if flat_top and abs(gain - 1) <= s:
            return 1.0
        return reg_score(gain, 0.5)

    ok = lambda part, p: [r for r in by.get((part, p), []) if r[1] >= thr]  # noqa: E731
    return {
        "noise_norm_p99": round(thr, 2),
        "blend_degenerate": sum(r[1] < thr for r in by[("blend", "oracle")]),
        "processed_lazy_max_reg": round(max(reg(*r) for r in ok("blend", "processed-lazy")), 3),
        "processed_oracle_min_reg": round(min(reg(*r) for r in ok("blend", "processed-oracle")), 3),
        "blend075_reg_1": sum(reg(*r) == 1.0 for r in ok("blend", "blend-0.75")),
        "warp_median_gain": [round(float(np.median([r[0] for r in ok("blend", p)])), 3)
                             for p in ("warp-0.5", "warp-1", "warp-2")],
        "wild_processed_lazy_max_reg": round(max(reg(*r) for r in ok("wild", "processed-lazy")), 3),
        "wild_processed_oracle_min_reg": round(min(reg(*r) for r in ok("wild", "processed-oracle")), 3),
        "wild_noise_degenerate": f"{sum(r[1] < thr for r in by[('wild', 'lazy')])}/{len(by[('wild', 'lazy')])}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fedscore_v2_dev"))
    ap.add_argument("--deltas", type=Path, default=Path("/tmp/noise_deltas.npz"))
    args = ap.parse_args()
    deltas = np.load(args.deltas)["deltas"]
    if deltas.shape[1] != len(noise.DIMS):
        raise SystemExit(f"{args.deltas}: {deltas.shape[1]} dims, this tree has {len(noise.DIMS)}; redump it")
    v = vectors(args.work)
    std = deltas.std(axis=0)
    mad = 1.4826 * np.median(np.abs(deltas - np.median(deltas, axis=0)), axis=0)
    rows = []
    for groups in (("bs", "pm"), ("bs", "pm", "geo"), ("bs", "geo"), ("bs",)):
        m = np.array([d.split(":")[0] in groups and not d.startswith(ZERO) for d in noise.DIMS])
        variants = {"diag std": np.diag(np.where(m, 1 / np.maximum(std, 0.005), 0))[m],
                    "diag MAD": np.diag(np.where(m, 1 / np.maximum(mad, 0.005), 0))[m]}
        cov = np.cov(deltas[:, m], rowvar=False)
        cov = 0.8 * cov + 0.2 * np.diag(np.diag(cov)) + np.eye(int(m.sum())) * 0.003**2
        full = np.zeros((int(m.sum()), len(noise.DIMS)))
        full[:, m] = np.linalg.cholesky(np.linalg.inv(cov)).T
        variants["full covariance"] = full
        for name, w in variants.items():
            for k, flat in ((0.0, False), (2.0, False), (2.0, True)):
                rule = "REG(g)" if k == 0 else f"0 within {k:g} units of 0" + (", 1 within 2 of 1" if flat else "")
                row = {"dims": "+".join(groups), "whitening": name, "reg_rule": rule,
                       **evaluate(v, deltas, w, k, flat)}
                rows.append(row)
                print(json.dumps(row))


if __name__ == "__main__":
    main()
