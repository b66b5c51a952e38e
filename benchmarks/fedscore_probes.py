"""Probe study on the shared blend triplets, for FED-Score 1.0 and 1.1 side by side.

    .venv/bin/python benchmarks/fedscore_probes.py [--fixtures ../shared/fixtures/pixelsmile]

Prints, per version: how often the oracle (E = G) has the highest FED of {oracle, lazy, S + 0.5(G-S),
S + 2(G-S)}, how often REG(k=1) beats both k=0.5 and k=2, and the mean FED of each probe.
These are the numbers docs/fedscore.md quotes for the 1.1 change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fedbench.data.manifest import read_manifest
from fedbench.editors.probes import pixel_blend_files
from fedbench.scoring.runner import score

PROBES = ("oracle", "lazy", "k0.5", "k2")


def make_probes(manifest, base: Path) -> None:
    for probe in PROBES:
        (base / probe).mkdir(parents=True)
        for t in manifest:
            if probe == "oracle":
                shutil.copy(t.ground_truth, base / probe / f"{t.id}.jpg")
            elif probe == "lazy":
                shutil.copy(t.source, base / probe / f"{t.id}.jpg")
            else:
                pixel_blend_files(t.source, t.ground_truth, float(probe[1:]), base / probe / f"{t.id}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[2] / "shared/fixtures/pixelsmile")
    args = parser.parse_args()
    manifest = read_manifest(args.fixtures / "triplets.jsonl")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_probes(manifest, base)
        for version in ("1.0", "1.1"):
            rows = {p: {r["id"]: r for r in score(manifest, base / p, cache_path=base / "c.sqlite",
                                                   version=version).samples} for p in PROBES}
            ids = [i for i, r in rows["oracle"].items() if r["status"] == "ok"]
            first = sum(rows["oracle"][i]["fed"] > max(rows[p][i]["fed"] for p in PROBES[1:]) for i in ids)
            reg = sum(rows["oracle"][i]["reg"] > max(rows["k0.5"][i]["reg"], rows["k2"][i]["reg"]) for i in ids)
            means = {p: round(float(np.mean([rows[p][i]["fed"] for i in ids])), 2) for p in PROBES}
            results[version] = {"triplets_scored": len(ids), "oracle_first": first, "reg_k1_best": reg,
                                "mean_fed": means}
            print(f"FED-Score {version}: oracle first on {first}/{len(ids)}, REG(k=1) best on {reg}/{len(ids)}, "
                  f"mean FED {means}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
