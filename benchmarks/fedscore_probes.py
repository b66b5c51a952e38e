"""Probe study on the shared blend triplets, through `fedbench.meta` (the same code as `fedbench meta`).

    .venv/bin/python benchmarks/fedscore_probes.py [--fixtures ../shared/fixtures/pixelsmile] [--full]

Prints, for every FED-Score version (1.0, 1.1, 1.2, 2.0): how often the oracle (E = G) has the highest FED of {oracle,
lazy, S + 0.5(G-S), S + 0.75(G-S), S + 2(G-S)}, how often REG(k=1) beats both k=0.5 and k=2, and the
mean FED of each probe over the triplets with a measurable change. These are the numbers
docs/fedscore.md's version table quotes (tests/integration/test_fedscore_versions.py holds 1.x to them). `--full` also runs the whole meta-evaluation (every probe, the sequences, the
recogniser) for the current version and prints its checks: the numbers docs/meta.md quotes.
"""

from __future__ import annotations

import argparse
import os
import json
import tempfile
from pathlib import Path

import numpy as np

from fedbench.meta import MetaOptions, default_probes, read_probe_rows, run_meta
from fedbench.metrics.spec import SUPPORTED_VERSIONS

PROBES = ("oracle", "lazy", "blend-0.5", "blend-0.75", "blend-2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # as the tests: $FEDBENCH_FIXTURES, else ../shared/fixtures/pixelsmile beside the repo
    default = Path(os.environ.get("FEDBENCH_FIXTURES") or Path(__file__).resolve().parents[2] / "shared/fixtures/pixelsmile")
    parser.add_argument("--fixtures", type=Path, default=default)
    parser.add_argument("--full", action="store_true", help="also the whole meta-evaluation (current version)")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache to reuse (default: a fresh one)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for version in SUPPORTED_VERSIONS:
            out = base / f"v{version}"
            run_meta(MetaOptions(benchmark=args.fixtures / "triplets.jsonl", out=out, cache_path=args.cache or base / "c.sqlite",
                                 probes=default_probes(blend_ks=(0.5, 0.75, 2.0), warp_strengths=(),
                                                       processed_seeds=()),
                                 fedscore_version=version, plots=False))
            rows = read_probe_rows(out)
            ids = [i for i, r in rows["oracle"].items() if r["status"] == "ok"]
            ids = [i for i in ids if all(rows[p][i]["status"] == "ok" for p in PROBES)]  # 2.0 may call more degenerate
            first = sum(rows["oracle"][i]["fed"] > max(rows[p][i]["fed"] for p in PROBES[1:]) for i in ids)
            reg = sum(rows["oracle"][i]["reg"] > max(rows["blend-0.5"][i]["reg"], rows["blend-2"][i]["reg"])
                      for i in ids)
            means = {p: round(float(np.mean([rows[p][i]["fed"] for i in ids])), 2) for p in PROBES}
            results[version] = {"triplets_scored": len(ids), "oracle_first": first, "reg_k1_best": reg,
                                "mean_fed": means}
            print(f"FED-Score {version}: oracle first on {first}/{len(ids)}, REG(k=1) best on {reg}/{len(ids)}, "
                  f"mean FED {means}")
        if args.full:
            meta = run_meta(MetaOptions(benchmark=args.fixtures / "triplets.jsonl",
                                        sequences=args.fixtures / "sequences.json", out=base / "full",
                                        cache_path=args.cache or base / "c.sqlite"))
            results["full"] = {"checks": meta["checks"], "oracle_first": meta["probes"]["oracle_first"],
                               "mean_fed": {p: s["overall"]["fed"]["mean"] for p, s in meta["probes"]["probes"].items()},
                               "bias": {m: {k: v[k] for k in ("most_often_first", "lazy_or_over_edit_above_oracle")}
                                        for m, v in meta["bias"]["metrics"].items()},
                               "recogniser": {s: {m: r["per_class"] for m, r in v["by_recogniser"].items()}
                                              for s, v in meta["recogniser"]["sets"].items()}}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
