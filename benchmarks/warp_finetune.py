"""Fine-tuned vs reference `warp` on people the fit has never seen: leave one person out.

The people: the PixelSmile blend portraits (one person, 30 emotion-to-emotion triplets) and the
graded slider sequences (one person each: `fedbench.train.data.pairs_from_sequences`). A slider
person is tested on frame 00 -> the middle and the last frame (a moderate and a full expression, as
the kept-back checks land), and trains the others with pairs at several intensities
(`--train-frames`, default 7,14,21,27: a quarter, half, three quarters and all of the way). For
every person P with usable triplets, `fedbench train warp --model M` fits on everybody else (its
cross-validation also holds out whole people), then `fedbench eval` runs the reference and the
fitted warp over P's triplets, and `fedbench compare`'s paired bootstrap gives fitted - reference
per person, per target and pooled over all held-out people (FED-Score is a macro mean over targets;
the bootstrap resamples within target). Every (model, seed) is reported; seeds change only the fold
assignment of the cross-validation (with fewer people than folds it is leave-one-person-out and
seed-free).

`--refit-preset` instead refits the fields shipped in the package (`warp` editor,
`checkpoint=fitted`, the strength model) on every person, bit for bit: the checkpoint names its
training rows by content (paths relative to the fixtures folder), not by where they lie.

Usage:  python benchmarks/warp_finetune.py [--fedscore-version 2.0] [--models strength,additive]
                 [--seeds 0] [--people a,b] [--train-frames 7,14,21,27] [--workdir DIR] [--out FILE] [--workers N]
        python benchmarks/warp_finetune.py --refit-preset [--fedscore-version 2.0] [--preset-dir DIR]
Both take --fixtures DIR (default $FEDBENCH_FIXTURES, else ../shared/fixtures/pixelsmile).
Figures go to stdout and to benchmarks/results/warp_finetune.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = Path(os.environ.get("FEDBENCH_FIXTURES") or REPO.parent / "shared" / "fixtures" / "pixelsmile")
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "warp_finetune.json"
PRESET_DIR = REPO / "src" / "fedbench" / "editors" / "warp_presets" / "fitted"
TRAIN_FRAMES: tuple[int, ...] = (7, 14, 21, 27)  # of the 28-frame sliders: 1/4, 1/2, 3/4 and the full expression


def people(fixtures: Path, gt_frames: Sequence[int] | None = None):
    """Every row of every person, with absolute paths (fedbench.train.data.people_rows); slider
    pairs at `gt_frames` (default: the middle and the last frame)."""
    from fedbench.data.manifest import read_manifest
    from fedbench.train.data import people_rows

    return people_rows(read_manifest(fixtures / "triplets.jsonl"), fixtures / "sequences.json", gt_frames=gt_frames)


def _fed_dims(cmp: Any) -> dict[str, Any]:
    d = {x["dimension"]: x for x in cmp.as_dict()["dimensions"]}
    return {k: {f: d[k][f] for f in ("mean_a", "mean_b", "diff", "ci95", "p_value", "n")} for k in d}


def _compare(fitted: Any, reference: Any, n_bootstrap: int) -> dict[str, Any]:
    from fedbench.report.compare import compare_runs

    cmp = compare_runs(fitted, reference, n_bootstrap=n_bootstrap)
    return {"n": cmp.n_shared, "dimensions": _fed_dims(cmp), "fedscore_version": cmp.fedscore_version}


def _merged(runs: Sequence[Any], name: str, target: str | None = None) -> Any:
    """One Run over the samples of several (each held-out person's run), optionally one target's."""
    from fedbench.report.runs import Run

    samples = [s for r in runs for s in r.samples if target is None or s.get("target") == target]
    return Run(name, runs[0].path, {"fedscore_version": runs[0].fedscore_version}, samples)


def _landmark_errors(fields: Any, measured: Any) -> dict[str, Any]:
    from fedbench.editors.warp import reference_field
    from fedbench.train.warp_fit import landmark_error

    pairs = measured.pairs
    return {"n": len(pairs),
            "fitted": float(np.mean([landmark_error(fields.lookup(p.target, p.source_expression), p.field)
                                     for p in pairs])) if pairs else None,
            "reference": float(np.mean([landmark_error(reference_field(p.target), p.field) for p in pairs]))
            if pairs else None,
            "no_edit": float(np.mean([landmark_error(np.zeros_like(p.field), p.field) for p in pairs]))
            if pairs else None}


def _all_rows_manifest(everyone: Any, workdir: Path) -> Any:
    from fedbench.data.manifest import read_manifest
    from fedbench.train.data import write_rows

    return read_manifest(write_rows(workdir / "people.jsonl", everyone.rows), allow_outside=True)


def leave_one_person_out(fixtures: Path, workdir: Path, seeds: Sequence[int], version: str, n_bootstrap: int,
                         workers: int | None, models: Sequence[str] = ("strength",),
                         only: Sequence[str] | None = None,
                         train_frames: Sequence[int] | None = TRAIN_FRAMES) -> dict[str, Any]:
    """Per held-out person, model and seed: train on the others (slider pairs at `train_frames`),
    eval the fit and the reference on that person (slider pairs at the middle and the last frame).
    The strength model's FED table is measured once over every person's training rows and subset per
    fold (a row's FEDs do not depend on the other rows: the same as measuring again)."""
    from fedbench.data.manifest import read_manifest
    from fedbench.editors.warp import WarpFields
    from fedbench.evaluate import evaluate
    from fedbench.report.runs import load_run
    from fedbench.train.data import write_rows
    from fedbench.train.warp_fit import measure_pairs, train_warp
    from fedbench.train.warp_strength import measure_strengths, train_strength

    everyone = people(fixtures)  # test rows
    trainable = people(fixtures, train_frames) if train_frames else everyone
    cache = workdir / "features.sqlite"
    table = None
    t0 = time.perf_counter()
    if "strength" in models:
        table = measure_strengths(_all_rows_manifest(trainable, workdir).triplets, version=version)
    table_s = time.perf_counter() - t0
    variants = [f"{m}-{s}" for m in models for s in seeds]
    per_person: list[dict[str, Any]] = []
    held: list[str] = []
    for person in everyone.people:
        if only and person not in only:
            continue
        test_rows = [r for r in everyone.rows if r["identity"] == person]
        entry: dict[str, Any] = {"person": person, "test_rows": len(test_rows),
                                 "targets": sorted({r["target"] for r in test_rows})}
        if not test_rows:
            entry["note"] = "no usable triplet (its sequence's target is not one of the seven classes)"
            per_person.append(entry)
            continue
        held.append(person)
        wd = workdir / person
        train = read_manifest(write_rows(wd / "train.jsonl", [r for r in trainable.rows if r["identity"] != person]),
                              allow_outside=True)
        test = read_manifest(write_rows(wd / "test.jsonl", test_rows), allow_outside=True)
        measured = measure_pairs(test.triplets, cache_path=cache)
        reference = evaluate("warp", test, wd / "runs" / "reference", cache_path=cache, workers=workers,
                             overwrite=True, progress=False, version=version)
        entry["reference_status"] = reference.summary["status_counts"]
        entry["variants"] = []
        for model in models:
            for seed in seeds:
                name, ckpt = f"{model}-{seed}", wd / f"ckpt-{model}-{seed}"
                t1 = time.perf_counter()
                if model == "strength":
                    trained: Any = train_strength(train, ckpt, seed=seed, version=version, overwrite=True,
                                                  progress=False, table=table)
                    fit = {"rule": trained.validation.best, "strengths": trained.strengths,
                           "validation": trained.meta["validation"]["rules"]}
                else:
                    trained = train_warp(train, ckpt, seed=seed, overwrite=True, progress=False, cache_path=cache)
                    fit = {"regularisation": trained.meta["regularisation"],
                           "validation": {k: trained.meta["validation"][k] for k in ("mode", "folds", "loss",
                                                                                       "baselines")}}
                train_s = time.perf_counter() - t1
                evaluate("warp", test, wd / "runs" / name, editor_args={"checkpoint": str(ckpt)}, cache_path=cache,
                         workers=workers, overwrite=True, progress=False, version=version)
                entry["variants"].append({
                    "variant": name, "model": model, "seed": seed, "train_pairs": trained.meta["data"]["pairs"],
                    "fit": fit, "digest": trained.fields.digest(), "train_seconds": round(train_s, 1),
                    "landmark_error": _landmark_errors(WarpFields.load(ckpt), measured),
                    "comparison": _compare(load_run(wd / "runs" / name, name),
                                           load_run(wd / "runs" / "reference", "reference"), n_bootstrap)})
        per_person.append(entry)
    pooled = []
    ref = [load_run(workdir / p / "runs" / "reference", "reference") for p in held]
    targets = sorted({s["target"] for r in ref for s in r.samples})
    for name in variants:
        fit = [load_run(workdir / p / "runs" / name, name) for p in held]
        pooled.append({"variant": name, "test_people": len(held), "test_triplets": sum(len(r.samples) for r in ref),
                       "all": _compare(_merged(fit, name), _merged(ref, "reference"), n_bootstrap),
                       "per_target": {t: _compare(_merged(fit, name, t), _merged(ref, "reference", t), n_bootstrap)
                                      for t in targets}})
    return {"people": everyone.people, "skipped_sequences": everyone.skipped_sequences, "models": list(models),
            "train_frames": list(train_frames) if train_frames else None,
            "strength_table_seconds": round(table_s, 1), "per_person": per_person, "pooled": pooled,
            "_table": table}


def refit_preset(fixtures: Path, out: Path, version: str, seed: int = 0, table: Any = None,
                 train_frames: Sequence[int] | None = TRAIN_FRAMES) -> Any:
    """The shipped `checkpoint=fitted` fields, fitted on every person. The checkpoint names its data
    by content, not by where this machine keeps it: the rows with paths relative to the fixtures'
    folder and their sha256, so a refit on any checkout writes the same bytes. `table`: a strength
    table already measured on these rows (the test reuses the benchmark's)."""
    import hashlib

    from fedbench.data.manifest import read_manifest
    from fedbench.editors.warp import WarpFields
    from fedbench.train.data import write_rows
    from fedbench.train.warp_strength import train_strength

    everyone = people(fixtures, train_frames)
    root = fixtures.resolve()
    canonical = "".join(json.dumps({**r, "source": Path(r["source"]).relative_to(root).as_posix(),
                                    "ground_truth": Path(r["ground_truth"]).relative_to(root).as_posix()},
                                   ensure_ascii=False) + "\n" for r in everyone.rows)
    with tempfile.TemporaryDirectory(prefix="fedbench-warp-preset-") as tmp:
        manifest = write_rows(Path(tmp) / "people.jsonl", everyone.rows)
        res = train_strength(read_manifest(manifest, allow_outside=True), out, seed=seed, version=version,
                             overwrite=True, progress=False, table=table)
    frames = ",".join(str(f) for f in train_frames) if train_frames else ""
    res.meta["data"].update(path="pixelsmile fixtures: triplets.jsonl + sequences.json "
                            f"(slider frames {frames or 'middle and last'})",
                            sha256=hashlib.sha256(canonical.encode()).hexdigest(), identities=everyone.people)
    res.meta["refit"] = (f"python benchmarks/warp_finetune.py --refit-preset --fedscore-version {version} "
                         f"--train-frames {frames or repr('')} --fixtures <pixelsmile fixtures>")
    WarpFields(res.fields.fields, res.meta).save(out)
    return res


def _row(label: str, c: dict[str, Any]) -> str:
    fed = c["dimensions"]["fed"]
    if fed["diff"] is None:
        return f"{label:<34} {c['n']:>3}   no FED (no measurable ground-truth change)"
    return (f"{label:<34} {fed['n']:>3} {fed['mean_b']:>8.2f} {fed['mean_a']:>8.2f} {fed['diff']:>+7.2f} "
            f"[{fed['ci95'][0]:>6.2f}, {fed['ci95'][1]:>6.2f}] {fed['p_value']:>7.4f} "
            f"{c['dimensions']['alignment']['diff']:>+7.3f} {c['dimensions']['fidelity']['diff']:>+8.4f} "
            f"{c['dimensions']['reg']['diff']:>+7.3f}")


def main(argv: list[str] | None = None) -> int:
    from fedbench.metrics.fedscore import FEDSCORE_VERSION

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--seeds", default="0", help="cross-validation fold seeds, comma-separated; all are reported")
    ap.add_argument("--people", default=None, help="hold out only these people (comma-separated; default all)")
    ap.add_argument("--models", default="strength", help="fedbench train warp --model values: strength, additive")
    ap.add_argument("--fedscore-version", default=FEDSCORE_VERSION, help="FED-Score version of both runs")
    ap.add_argument("--n-bootstrap", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=None, help="scoring processes (default: one per core)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    ap.add_argument("--train-frames", default=",".join(map(str, TRAIN_FRAMES)),
                    help="slider frames paired with frame 00 for training ('' = the middle and the last)")
    ap.add_argument("--refit-preset", action="store_true", help="refit the shipped checkpoint=fitted fields")
    ap.add_argument("--preset-dir", type=Path, default=PRESET_DIR)
    args = ap.parse_args(argv)
    if not (args.fixtures / "triplets.jsonl").is_file():
        print(f"fixtures not found at {args.fixtures}", file=sys.stderr)
        return 2
    train_frames = [int(f) for f in args.train_frames.split(",") if f.strip()] or None
    if args.refit_preset:
        res = refit_preset(args.fixtures, args.preset_dir, args.fedscore_version, train_frames=train_frames)
        print(f"wrote {args.preset_dir}: {res.meta['data']['pairs']} pairs of {res.meta['data']['people']} people, "
              f"rule {res.validation.best}, strengths {res.strengths}, digest {res.fields.digest()}")
        return 0
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    only = [p.strip() for p in args.people.split(",")] if args.people else None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedbench-warp-ft-") as tmp:
        workdir = args.workdir or Path(tmp)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        res = leave_one_person_out(args.fixtures, workdir, seeds, args.fedscore_version, args.n_bootstrap,
                                   args.workers, models, only, train_frames)
    from importlib import metadata

    report = {
        "what": "leave-one-person-out: fedbench train warp fitted on every other person vs the reference warp, "
                "on the held-out person's triplets; paired bootstrap of fitted - reference (fedbench compare)",
        "command": " ".join(["benchmarks/warp_finetune.py", *(argv if argv is not None else sys.argv[1:])]),
        "fixtures": str(args.fixtures), "fedscore_version": args.fedscore_version, "n_bootstrap": args.n_bootstrap,
        "fedbench": metadata.version("fedbench"), "python": platform.python_version(),
        "seconds": round(time.perf_counter() - t0, 1), **{k: v for k, v in res.items() if k != "_table"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    head = (f"{'':<34} {'n':>3} {'FED ref':>8} {'FED fit':>8} {'diff':>7} {'95% CI':>17} {'p':>7} "
            f"{'Align':>7} {'Fid':>8} {'REG':>7}")
    for pooled in res["pooled"]:
        name = pooled["variant"]
        print(f"\n{name}: {pooled['test_people']} held-out people, {pooled['test_triplets']} test triplets")
        print(head)
        for e in res["per_person"]:
            if "variants" not in e:
                print(f"{'held out ' + e['person']:<34}   0   {e['note']}")
                continue
            v = next(x for x in e["variants"] if x["variant"] == name)
            fit = v["fit"]
            how = (f"{fit['rule']}: " + " ".join(f"{t[:3]} {a:g}" for t, a in fit["strengths"].items())
                   if "rule" in fit else "{prior}/{lambda:g}/{mu:g}".format(**fit["regularisation"]))
            print(_row(f"held out {e['person']}", v["comparison"]) + f"   {how}")
        for t, c in pooled["per_target"].items():
            print(_row(f"target {t}", c))
        print(_row("ALL held-out people", pooled["all"]))
    print("columns: n test triplets with a FED; FED of the reference and fitted warp; diff = fitted - reference with "
          "its paired-bootstrap 95 % interval and p (per target and ALL: pooled over held-out people, FED a macro "
          "mean over targets); Align/Fid/REG: paired differences; last column: what the person-grouped "
          "cross-validation chose on the other people (strength: rule and strengths; additive: prior/lambda/mu)")
    print(f"FED-Score {args.fedscore_version}; wrote {args.out} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":  # scoring starts worker processes (spawn): the guard is required
    sys.exit(main())
