"""FED-Score 2.0 design evidence, on dev data only: the shared PixelSmile blend triplets and processed
copies of faces-in-the-wild DEV faces. Prints and writes benchmarks/results/fedscore_v2_dev.json, the
table docs/fedscore.md quotes.

    PYTHONPATH=src .venv/bin/python benchmarks/fedscore_v2_dev.py [--versions 1.2 2.0] [--n-wild 40] \
        [--work /tmp/fedscore_v2_dev] [--seeds 3]

Three probe sets, made once under --work and scored by the ordinary scorer (feature cache under
--work, so a second run only re-scores):
- blend: the 30 PixelSmile triplets with lazy, oracle, S + k(G - S) for k 0.5 / 0.75 / 2, warp at
  0.5 / 1 / 2, and `--seeds` processed copies of S (processed lazy) and of G (processed oracle);
- wild-warp: each sampled dev face S, G = warp(S) at reference strength towards a seeded target,
  E = processed S and processed G (a real expression change on faces the blend set does not hold);
- wild-noise: S, G = S after processing (no expression change: must be degenerate_gt), E = lazy.
Then, for each version: processed lazy max FED, processed oracle min FED and whether it ranks first,
oracle first, median warp gains, degenerate counts; and FED against the gain at fixed A and F for the
aggregations considered.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedbench.data.images import decode_image
from fedbench.data.manifest import read_manifest, write_manifest
from fedbench.editors.warp import warp_expression
from fedbench.labels import EXPRESSIONS
from fedbench.faces.service import PerceptionService
from fedbench.meta.probes import Probe, _save_png, make_probes, place, probe_id, processed
from fedbench.metrics.reg import reg_score
from fedbench.scoring.runner import score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_model import SHARED, wild_images  # noqa: E402  (the same dev sample as the noise model)

REPO = Path(__file__).resolve().parents[1]
WILD_TARGETS = ("happy", "sad", "surprise", "fear", "disgust", "angry")


def blend_probes(seeds: int) -> list[Probe]:
    probes = [Probe("lazy", "lazy"), Probe("oracle", "oracle")]
    probes += [Probe(f"blend-{k:g}", "under" if k < 1 else "over", k) for k in (0.5, 0.75, 2.0)]
    probes += [Probe(f"warp-{s:g}", "warp", s) for s in (0.5, 1.0, 2.0)]
    for seed in range(seeds):
        probes += [Probe(f"processed-lazy-{seed}", "processed-lazy", float(seed)),
                   Probe(f"processed-oracle-{seed}", "processed-oracle", float(seed))]
    return probes


def build_blend(fixtures: Path, work: Path, seeds: int) -> Path:
    """Probe images and a manifest for the blend set (made once)."""
    manifest_path = work / "blend" / "manifest.jsonl"
    if manifest_path.is_file():
        return manifest_path
    manifest = read_manifest(fixtures / "triplets.jsonl")
    flat = work / "blend" / "edits"
    flat.mkdir(parents=True, exist_ok=True)
    probe_set = make_probes(manifest, work / "blend" / "probes", blend_probes(seeds))
    rows = []
    for e in probe_set.edits:
        rid = probe_id(e.probe, e.triplet.id)
        place(e.path, flat / rid)
        t = e.triplet
        rows.append({"id": rid, "source": str(t.source), "ground_truth": str(t.ground_truth), "target": t.target,
                     "instruction": t.instruction})
    write_manifest(manifest_path, rows)
    return manifest_path


def build_wild(wild: Path, work: Path, n: int, seed: int) -> Path:
    """wild-warp and wild-noise triplets on sampled dev faces (made once)."""
    manifest_path = work / "wild" / "manifest.jsonl"
    if manifest_path.is_file():
        return manifest_path
    root = work / "wild"
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "edits").mkdir(parents=True, exist_ok=True)
    service = PerceptionService(None, work / "features.sqlite")  # the one perception path, cached
    rng = np.random.default_rng(seed)
    rows = []
    try:
        for k, path in enumerate(wild_images(wild, n, seed)):
            rgb = decode_image(path.read_bytes(), 1024).rgb
            pts = service.landmarks_px(path.read_bytes(), (rgb.shape[1], rgb.shape[0]))
            if pts is None:
                continue
            sid = f"w{k:03d}"
            target = str(rng.choice(WILD_TARGETS))
            s_path, g_path, n_path = root / "img" / f"{sid}-s.png", root / "img" / f"{sid}-g.png", root / "img" / f"{sid}-n.png"
            g = warp_expression(rgb, pts, target, 1.0)
            _save_png(rgb, s_path)
            _save_png(g, g_path)
            _save_png(processed(rgb, sid, 100, "noise-gt"), n_path)
            instr = f"Change the expression to {target}."
            for name, e in (("processed-lazy", processed(rgb, sid, 0, "source")),
                            ("processed-oracle", processed(g, sid, 0, "ground_truth"))):
                _save_png(e, root / "edits" / f"{name}__warp-{sid}.png")
                rows.append({"id": f"{name}__warp-{sid}", "source": str(s_path), "ground_truth": str(g_path),
                             "target": target, "instruction": instr})
            _save_png(rgb, root / "edits" / f"lazy__noise-{sid}.png")
            rows.append({"id": f"lazy__noise-{sid}", "source": str(s_path), "ground_truth": str(n_path),
                         "target": target, "instruction": instr})
    finally:
        service.close()
    write_manifest(manifest_path, rows)
    return manifest_path


@dataclass
class DevTriplet:
    """One dev triplet as made under --work, with the files of its probe edits (byte copies left out)."""

    name: str
    source: Path
    ground_truth: Path
    edits: dict[str, Path]  # probe name -> file


def dev_triplets(work: Path) -> tuple[list[DevTriplet], list[DevTriplet]]:
    """(blend, wild) triplets of the probe sets `main` made under `work`, for the studies that reuse
    them (bg_registration_cost.py, fedscore_processing_studies.py)."""
    blend_dir, wild_dir = work / "blend", work / "wild"
    if not (blend_dir / "manifest.jsonl").is_file():
        raise SystemExit(f"no dev probes under {work}; run benchmarks/fedscore_v2_dev.py --work {work} first")
    by_triplet: dict[str, dict[str, dict]] = {}
    for line in (blend_dir / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            probe, tid = row["id"].split("__", 1)
            by_triplet.setdefault(tid, {})[probe] = row
    blend = []
    for tid, probes in sorted(by_triplet.items()):
        edits = {}
        for probe, row in probes.items():
            found = glob.glob(str(blend_dir / "edits" / (glob.escape(row["id"]) + ".*")))
            if probe not in ("lazy", "oracle") and len(found) == 1:
                edits[probe] = Path(found[0])
        ref = probes["oracle"]
        blend.append(DevTriplet(tid, Path(ref["source"]), Path(ref["ground_truth"]), edits))
    wild = []
    for s in sorted((wild_dir / "img").glob("w*-s.png")):
        sid = s.name[:-len("-s.png")]
        edits = {p: wild_dir / "edits" / f"{p}__warp-{sid}.png" for p in ("processed-lazy", "processed-oracle")}
        wild.append(DevTriplet(sid, s, wild_dir / "img" / f"{sid}-g.png", {p: e for p, e in edits.items() if e.is_file()}))
    return blend, wild


def _rows(manifest: Path, version: str, cache: Path) -> dict[str, dict[str, dict]]:
    res = score(manifest, manifest.parent / "edits", None, allow_outside=True, cache_path=cache, n_bootstrap=0,
                version=version, progress=True)
    out: dict[str, dict[str, dict]] = {}
    with open(manifest.parent / f"rows-{version}.jsonl", "w") as fh:  # for inspection
        fh.writelines(json.dumps(r) + "\n" for r in res.samples)
    for r in res.samples:
        probe, tid = r["id"].split("__", 1)
        out.setdefault(probe, {})[tid] = r
    return out


def _median(xs: list[float]) -> float | None:
    return round(float(np.median(xs)), 4) if xs else None


def evaluate(blend: dict[str, dict[str, dict]], wild: dict[str, dict[str, dict]]) -> dict:
    ok = [i for i, r in blend["oracle"].items() if r["status"] == "ok"]
    lazies = [p for p in blend if p.startswith("processed-lazy")]
    oracles = [p for p in blend if p.startswith("processed-oracle")]
    rivals = [p for p in blend if p not in ("oracle", *oracles)]

    def fed(p: str, i: str) -> float:
        v = blend[p][i]["fed"]
        return -1.0 if v is None else v

    p_lazy = [fed(p, i) for p in lazies for i in ok]
    p_oracle = [fed(p, i) for p in oracles for i in ok]
    p_first = sum(fed(p, i) > max(fed(q, i) for q in rivals) for p in oracles for i in ok)
    first = sum(fed("oracle", i) > max(fed(q, i) for q in rivals) for i in ok)
    warp_gain = {p: _median([blend[p][i]["gain"] for i in ok if blend[p][i]["gain"] is not None])
                 for p in ("warp-0.5", "warp-1", "warp-2")}
    worst_lazy = max(((fed(p, i), f"{p}/{i}") for p in lazies for i in ok), default=None)
    worst_oracle = min(((fed(p, i), f"{p}/{i}") for p in oracles for i in ok), default=None)
    w_ok = [i for i, r in wild.get("processed-oracle", {}).items() if r["status"] == "ok"]
    noise_rows = list(wild.get("lazy", {}).values())
    return {
        "blend": {
            "scored": len(ok), "degenerate_gt": sorted(i for i, r in blend["oracle"].items() if r["status"] == "degenerate_gt"),
            "processed_lazy_max_fed": round(max(p_lazy), 2), "at": worst_lazy[1] if worst_lazy else None,
            "processed_oracle_min_fed": round(min(p_oracle), 2), "at_oracle": worst_oracle[1] if worst_oracle else None,
            "processed_oracle_first": f"{p_first}/{len(p_oracle)}", "oracle_first": f"{first}/{len(ok)}",
            "lazy_max_fed": max(fed("lazy", i) for i in ok),
            "median_gain_warp": warp_gain,
            "mean_fed": {p: round(float(np.mean([fed(p, i) for i in ok])), 2) for p in
                         ("oracle", "blend-0.75", "blend-2", "blend-0.5", "warp-0.5", "warp-1", "warp-2", "lazy")},
        },
        "wild_warp": {
            "scored": len(w_ok), "of": len(wild.get("processed-oracle", {})),
            "processed_lazy_max_fed": round(max((wild["processed-lazy"][i]["fed"] or 0.0) for i in w_ok), 2) if w_ok else None,
            "processed_oracle_min_fed": round(min((wild["processed-oracle"][i]["fed"] or 0.0) for i in w_ok), 2) if w_ok else None,
            "processed_oracle_median_fed": _median([wild["processed-oracle"][i]["fed"] for i in w_ok]),
        },
        "wild_noise": {"degenerate_gt": sum(r["status"] == "degenerate_gt" for r in noise_rows), "of": len(noise_rows)},
    }


def aggregation_table() -> list[dict]:
    """FED against the gain at fixed Alignment and Fidelity (0.9 each), for the aggregations tried."""
    a = f = 0.9
    out = []
    for g in (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0):
        r = reg_score(g, 0.5)
        out.append({"gain": g, "reg": round(r, 4),
                    "geometric (1.x) 100 (A F REG)^1/3": round(100 * (a * f * r) ** (1 / 3), 1),
                    "product 100 A F REG": round(100 * a * f * r, 1),
                    "harmonic 300 / (1/A + 1/F + 1/REG)": round(300 / (1 / a + 1 / f + 1 / r), 1) if r > 0 else 0.0,
                    "REG-gated 100 REG (A F)^1/2 (2.0)": round(100 * r * math.sqrt(a * f), 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, default=SHARED / "pixelsmile")
    ap.add_argument("--wild", type=Path, default=SHARED / "faces-in-the-wild")
    ap.add_argument("--n-wild", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)  # not the noise model's sample (seed 0): other faces first
    ap.add_argument("--versions", nargs="+", default=["1.2", "2.0"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fedscore_v2_dev"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fedscore_v2_dev.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "features.sqlite"
    blend_manifest = build_blend(args.fixtures, args.work, args.seeds)
    wild_manifest = build_wild(args.wild, args.work, args.n_wild, args.seed)
    results = {"versions": {}, "aggregation_at_A_F_0.9": aggregation_table(),
               "command": "PYTHONPATH=src python benchmarks/fedscore_v2_dev.py " + " ".join(sys.argv[1:])}
    for v in args.versions:
        results["versions"][v] = evaluate(_rows(blend_manifest, v, cache), _rows(wild_manifest, v, cache))
        print(f"FED-Score {v}: {json.dumps(results['versions'][v])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    for row in results["aggregation_at_A_F_0.9"]:
        print(row)


if __name__ == "__main__":
    main()
