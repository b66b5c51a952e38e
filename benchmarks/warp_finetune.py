"""Fine-tuned vs reference `warp` on held-out PixelSmile triplets: does `fedbench train warp` help?

For each seed: a seeded split of the 30 blend triplets (one identity, so by triplet), stratified by
target (`--test-per-class` of each target held out); the training side also gets the slider
sequences' first -> last frame pairs (other identities). `fedbench train warp` fits the fields on
the training side; `fedbench eval` runs the untrained (reference) and the fitted warp over the test
side; `fedbench compare`'s paired bootstrap gives the difference in FED-Score and each dimension,
with its 95 % interval and p-value. The held-out landmark error (what the fit optimises) is
reported beside it.

Usage:  .venv/bin/python benchmarks/warp_finetune.py [--seeds 0,1,2] [--test-per-class 2]
                                                     [--workdir DIR] [--out FILE] [--workers N]
Figures go to stdout and to benchmarks/results/warp_finetune.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures" / "pixelsmile"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "warp_finetune.json"


def run_seed(seed: int, fixtures: Path, workdir: Path, test_per_class: int, sequences: bool, n_bootstrap: int,
             workers: int | None) -> dict[str, Any]:
    from fedbench.data.manifest import read_manifest
    from fedbench.editors.warp import WarpFields, reference_field
    from fedbench.evaluate import evaluate
    from fedbench.report.compare import compare_runs
    from fedbench.report.runs import load_run
    from fedbench.train.data import write_split_manifests
    from fedbench.train.warp_fit import landmark_error, measure_pairs, train_warp

    wd = workdir / f"seed-{seed}"
    split = write_split_manifests(read_manifest(fixtures / "triplets.jsonl"), wd, test_per_class, seed,
                                  fixtures / "sequences.json" if sequences else None)
    t0 = time.perf_counter()
    trained = train_warp(read_manifest(split.train, allow_outside=True), wd / "ckpt", seed=seed, overwrite=True,
                         progress=False)
    train_s = time.perf_counter() - t0
    test = read_manifest(split.test, allow_outside=True)
    cache = workdir / "features.sqlite"
    runs = {}
    t0 = time.perf_counter()
    for name, args in (("reference", {}), ("fitted", {"checkpoint": str(wd / "ckpt")})):
        runs[name] = evaluate("warp", test, wd / "runs" / name, editor_args=args, cache_path=cache,
                              workers=workers, overwrite=True, progress=False)
    eval_s = time.perf_counter() - t0
    cmp = compare_runs(load_run(wd / "runs" / "fitted", "fitted"), load_run(wd / "runs" / "reference", "reference"),
                       n_bootstrap=n_bootstrap)
    # What the fit optimises, on the test pairs: the landmark displacement error of each editor's field.
    fields = WarpFields.load(wd / "ckpt")
    measured = measure_pairs(test.triplets)
    lm = {"fitted": float(np.mean([landmark_error(fields.lookup(p.target, p.source_expression), p.field)
                                   for p in measured.pairs])),
          "reference": float(np.mean([landmark_error(reference_field(p.target), p.field) for p in measured.pairs])),
          "no_edit": float(np.mean([landmark_error(np.zeros_like(p.field), p.field) for p in measured.pairs])),
          "n": len(measured.pairs)}
    meta = trained.meta
    return {
        "seed": seed,
        "split": {"train_rows": split.n_train, "test_rows": split.n_test, "sequence_pairs": split.n_sequence_pairs,
                  "skipped_sequences": split.skipped_sequences, "test_ids": [t.id for t in test.triplets]},
        "checkpoint": {"pairs": meta["data"]["pairs"], "keys": len(trained.fields.fields),
                       "regularisation": meta["regularisation"], "validation_loss": meta["validation"]["loss"],
                       "validation_mode": meta["validation"]["mode"],
                       "validation_baselines": meta["validation"]["baselines"], "digest": trained.fields.digest()},
        "test_landmark_error": lm,
        "summaries": {name: {d: r.summary["overall"][d] for d in ("fed", "alignment", "fidelity", "reg")}
                      | {"status_counts": r.summary["status_counts"], "gain": r.summary["gain"]}
                      for name, r in runs.items()},
        "comparison": cmp.as_dict(),
        "seconds": {"train": round(train_s, 2), "eval_both": round(eval_s, 2)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--seeds", default="0,1,2", help="split seeds, comma-separated")
    ap.add_argument("--test-per-class", type=int, default=2, help="test triplets held out per target")
    ap.add_argument("--no-sequences", action="store_true", help="train on the blend split only")
    ap.add_argument("--n-bootstrap", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=None, help="scoring processes (default: one per core)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    args = ap.parse_args(argv)
    if not (args.fixtures / "triplets.jsonl").is_file():
        print(f"fixtures not found at {args.fixtures}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedbench-warp-ft-") as tmp:
        workdir = args.workdir or Path(tmp)
        results = [run_seed(s, args.fixtures, workdir, args.test_per_class, not args.no_sequences, args.n_bootstrap,
                            args.workers) for s in seeds]
    from importlib import metadata

    report = {
        "what": "fine-tuned warp (fedbench train warp) vs the reference warp on a held-out split of the PixelSmile "
                "blend triplets; paired bootstrap of fitted - reference (fedbench compare)",
        "command": " ".join(["benchmarks/warp_finetune.py", *(argv if argv is not None else sys.argv[1:])]),
        "fixtures": str(args.fixtures), "test_per_class": args.test_per_class, "sequences": not args.no_sequences,
        "n_bootstrap": args.n_bootstrap, "fedbench": metadata.version("fedbench"), "python": platform.python_version(),
        "seconds": round(time.perf_counter() - t0, 1), "seeds": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{'seed':>4} {'n':>3} {'FED ref':>8} {'FED fit':>8} {'diff':>7} {'95% CI':>17} {'p':>8} "
          f"{'Align':>6} {'Fid':>7} {'REG':>6}  {'lm err ref':>10} {'lm err fit':>10}  prior/lambda/mu")
    for r in results:
        d = {x["dimension"]: x for x in r["comparison"]["dimensions"]}
        fed = d["fed"]
        reg = r["checkpoint"]["regularisation"]
        print(f"{r['seed']:>4} {fed['n']:>3} {fed['mean_b']:>8.2f} {fed['mean_a']:>8.2f} {fed['diff']:>+7.2f} "
              f"[{fed['ci95'][0]:>6.2f}, {fed['ci95'][1]:>6.2f}] {fed['p_value']:>8.4f} "
              f"{d['alignment']['diff']:>+6.3f} {d['fidelity']['diff']:>+7.4f} {d['reg']['diff']:>+6.3f}  "
              f"{r['test_landmark_error']['reference']:>10.4f} {r['test_landmark_error']['fitted']:>10.4f}  "
              f"{reg['prior']}/{reg['lambda']:g}/{reg['mu']:g}")
    print("columns: FED of the reference and fitted warp on the test split; diff = fitted - reference with its "
          "paired-bootstrap 95 % interval and p; Align/Fid/REG: paired differences; lm err: held-out landmark "
          "displacement RMS (inter-ocular units)")
    versions = sorted({r["comparison"]["fedscore_version"] for r in results})
    print(f"FED-Score {', '.join(versions)}; wrote {args.out} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":  # scoring starts worker processes (spawn): the guard is required
    sys.exit(main())
