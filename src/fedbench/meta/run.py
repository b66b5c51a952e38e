"""`fedbench meta`: the meta-evaluation of FED-Score on a benchmark (fedscore.md, last section).

One scoring pass does all the work: the probe edits of every triplet and the frames of every graded
sequence (with the last and a middle frame as ground truth) go into one manifest that the core
scorer scores, so the worker pool starts once and the feature cache shares S and G. Everything
else — probe summaries, the bias table, sequence curves, recogniser accuracy, human agreement —
reads those rows and the cached features.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from fedbench.data.manifest import Manifest, read_manifest, write_manifest
from fedbench.faces.perception import ImageFeatures, PerceptionConfig
from fedbench.meta import bias as bias_mod
from fedbench.meta import human, recogniser
from fedbench.meta.probes import SEP, Probe, default_probes, make_probes, place, probe_id
from fedbench.meta.sequences import (
    LATE_MEDIAN_RANGE, RISE_MIN, Sequence, SequenceFile, analyse, plot_sequence, read_sequences, sequence_rows,
)
from fedbench.metrics.components import HEADLINE
from fedbench.metrics.fedscore import FEDSCORE_VERSION, FEDScore
from fedbench.paths import features_db
from fedbench.cpus import default_workers
from fedbench.metrics.spec import get_spec
from fedbench.scoring.runner import score

ORACLE_FIRST_MIN = 0.95
K1_BEST_MIN = 0.90
LAZY_GAIN_MAX = 0.05
# FED-Score 2.0's contract for processing alone (issue 12): a processed S is still lazy, a processed G
# is still the ground truth.
PROCESSED_LAZY_MAX = 5.0
PROCESSED_ORACLE_MIN = 90.0


@dataclass
class MetaOptions:
    benchmark: Path
    out: Path
    sequences: Path | None = None
    ratings: Path | None = None
    ratings_scores: Path | None = None  # samples.jsonl the ratings refer to (default: meta's own rows)
    labels: Path | None = None
    columns: dict[str, str] | None = None
    allow_outside: bool = False
    config: PerceptionConfig = field(default_factory=PerceptionConfig)
    workers: int | None = None
    cache_path: Path | None = None
    probes: list[Probe] = field(default_factory=default_probes)
    n_bootstrap: int = 1000
    fedscore_version: str = FEDSCORE_VERSION
    progress: bool = False
    plots: bool = True
    judge: Any = None  # a judge.JudgeConfig: Alignment with a vision-language judge, and its agreement (docs/judge.md)


def _sequence_id(seq: Sequence, choice: str, frame: int) -> str:
    return f"seq{SEP}{seq.index:03d}-{_safe(seq.id)}{SEP}{choice}{SEP}{frame:02d}"


def _probe_section(probes: list[Probe], rows: dict[str, dict[str, dict]], n_bootstrap: int) -> dict[str, Any]:
    """Per probe: FED and each dimension (macro means with 95 % CI), gain; and the ranking checks."""
    summaries = {}
    for p in probes:
        prow = list(rows[p.name].values())
        s = FEDScore(n_bootstrap=n_bootstrap, rows=prow).compute() if prow else None
        summaries[p.name] = {
            "kind": p.kind, "param": p.param, "what": p.describe, "triplets": len(prow),
            **({"overall": {d: s["overall"][d] for d in HEADLINE},
                "gain": s["gain"], "status_counts": s["status_counts"]} if s else {}),
        }
    oracle = rows["oracle"]
    scored = [i for i, r in oracle.items() if r["status"] == "ok"]
    # The ground truth in other pixels (blend-1, a processed G) is no rival of the oracle.
    rivals = [p.name for p in probes if p.kind not in ("oracle", "copy", "processed-oracle")]
    first, margins = 0, []
    for i in scored:
        others = [rows[p][i]["fed"] for p in rivals if i in rows[p] and rows[p][i]["fed"] is not None]
        best_other = max(others) if others else -1.0
        margins.append(oracle[i]["fed"] - best_other)
        first += oracle[i]["fed"] > best_other
    section: dict[str, Any] = {
        "probes": summaries,
        "triplets_scored": len(scored),
        "degenerate_gt": sorted(i for i, r in oracle.items() if r["status"] == "degenerate_gt"),
        "oracle_first": {"count": first, "share": round(first / len(scored), 4) if scored else None,
                         "against": rivals, "smallest_margin_fed": round(min(margins), 4) if margins else None},
    }
    lazy = [rows["lazy"][i] for i in scored if i in rows.get("lazy", {})]
    section["lazy"] = {"max_fed": max((r["fed"] for r in lazy), default=None),
                       "max_abs_gain": max((abs(r["gain"]) for r in lazy), default=None)}
    section["processed"] = _processed_section(probes, rows, scored, rivals)
    ks = {p.param: p.name for p in probes if p.kind in ("under", "copy", "over")}
    if {0.5, 1.0, 2.0} <= set(ks):
        for dim in ("fed", "reg"):
            ids = [i for i in scored if all(i in rows[ks[k]] for k in (0.5, 1.0, 2.0))]
            wins = sum(rows[ks[1.0]][i][dim] > max(rows[ks[0.5]][i][dim], rows[ks[2.0]][i][dim]) for i in ids)
            section[f"k1_above_k05_and_k2_{dim}"] = {"count": wins, "of": len(ids),
                                                     "share": round(wins / len(ids), 4) if ids else None}
    return section


def _processed_section(probes: list[Probe], rows: dict[str, dict[str, dict]], scored: list[str],
                       rivals: list[str]) -> dict[str, Any] | None:
    """Processed lazy and oracle: their worst FED, and how often each processed oracle ranks first
    against every rival probe (the processed lazies included)."""
    lazies = [p.name for p in probes if p.kind == "processed-lazy"]
    oracles = [p.name for p in probes if p.kind == "processed-oracle"]
    if not lazies or not oracles:
        return None
    lazy_feds = [rows[p][i]["fed"] for p in lazies for i in scored if i in rows[p] and rows[p][i]["fed"] is not None]
    oracle_feds = [rows[p][i]["fed"] for p in oracles for i in scored if i in rows[p] and rows[p][i]["fed"] is not None]
    first = total = 0
    worst: tuple[float, str] | None = None
    for p in oracles:
        for i in scored:
            if i not in rows[p] or rows[p][i]["fed"] is None:
                continue
            others = [rows[q][i]["fed"] for q in rivals if i in rows[q] and rows[q][i]["fed"] is not None]
            margin = rows[p][i]["fed"] - (max(others) if others else -1.0)
            total += 1
            first += margin > 0
            worst = (margin, f"{p}/{i}") if worst is None or margin < worst[0] else worst
    return {"lazy_max_fed": max(lazy_feds, default=None), "lazy_n": len(lazy_feds),
            "oracle_min_fed": min(oracle_feds, default=None), "oracle_n": len(oracle_feds),
            "oracle_first": {"count": first, "of": total, "smallest_margin_fed": None if worst is None else
                             round(worst[0], 4), "at": None if worst is None else worst[1]}}


def _checks(probe_sec: dict[str, Any], bias_sec: dict[str, Any], seq_sec: list[dict[str, Any]]) -> dict[str, Any]:
    """The meta-evaluation's pass/fail criteria, each with its value and threshold."""
    lazy = probe_sec["lazy"]
    checks: dict[str, Any] = {
        "lazy_fed_zero": {"value": lazy["max_fed"], "max_abs_gain": lazy["max_abs_gain"],
                          "passed": lazy["max_fed"] == 0.0 and (lazy["max_abs_gain"] or 0) < LAZY_GAIN_MAX},
        "oracle_first": {"value": probe_sec["oracle_first"]["share"], "threshold": ORACLE_FIRST_MIN,
                         "passed": (probe_sec["oracle_first"]["share"] or 0) >= ORACLE_FIRST_MIN},
    }
    proc = probe_sec.get("processed")
    if proc:
        checks["processed_lazy_at_most_5"] = {"value": proc["lazy_max_fed"], "threshold": PROCESSED_LAZY_MAX,
                                              "n": proc["lazy_n"],
                                              "passed": proc["lazy_max_fed"] is not None
                                              and proc["lazy_max_fed"] <= PROCESSED_LAZY_MAX}
        of = proc["oracle_first"]
        checks["processed_oracle_at_least_90_and_first"] = {
            "value": proc["oracle_min_fed"], "threshold": PROCESSED_ORACLE_MIN, "first": of["count"], "of": of["of"],
            "passed": proc["oracle_min_fed"] is not None and proc["oracle_min_fed"] >= PROCESSED_ORACLE_MIN
            and of["count"] == of["of"] > 0}
    k1 = probe_sec.get("k1_above_k05_and_k2_fed")
    if k1:
        checks["fed_k1_above_k05_and_k2"] = {"value": k1["share"], "threshold": K1_BEST_MIN,
                                             "passed": (k1["share"] or 0) >= K1_BEST_MIN}
    fed_bias = bias_sec.get("fed_lazy_or_over_edit_above_oracle")
    checks["bias_shown"] = {"single_metrics_preferring_lazy_or_over_edit": bias_sec["biased_single_metrics"],
                            "fed_lazy_or_over_edit_above_oracle": fed_bias,
                            "passed": bool(bias_sec["biased_single_metrics"]) and fed_bias == 0}
    for s in seq_sec:
        checks[f"sequence {s['id']}"] = {
            "rise": s["rise"], "rise_min": RISE_MIN, "late_median": s["late_median"],
            "late_median_range": list(LATE_MEDIAN_RANGE), "passed": s["rise_ok"] and s["late_level_ok"]}
    return checks


def run_meta(opts: MetaOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the whole meta-evaluation; write meta.json, meta.md, samples.jsonl and plots under opts.out."""
    console = console or Console(stderr=True)
    out = Path(opts.out)
    # Read and validate every input before any work: a bad file fails fast, naming file and row.
    manifest: Manifest = read_manifest(opts.benchmark, opts.columns, opts.allow_outside)
    seqs: SequenceFile | None = read_sequences(opts.sequences) if opts.sequences else None
    labelled, label_conflicts = recogniser.collect(manifest, seqs, opts.labels)
    if opts.ratings_scores is not None and opts.ratings is None:
        raise ValueError("--ratings-scores needs --ratings")
    external_scores = _read_scores(opts.ratings_scores) if opts.ratings_scores else None
    probes = opts.probes
    if not any(p.kind == "oracle" for p in probes) or not any(p.kind == "lazy" for p in probes):
        raise ValueError("the probe set needs the lazy and the oracle probe")
    if len({p.name for p in probes}) != len(probes):
        raise ValueError("probe names must be unique")
    known = {probe_id(p.name, t.id) for p in probes for t in manifest} if external_scores is None else set(external_scores)
    ratings = human.read_ratings(opts.ratings, known) if opts.ratings else None

    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    flat = work / "edits"
    flat.mkdir(parents=True, exist_ok=True)
    for stale in flat.iterdir():
        stale.unlink()
    console.print(f"[bold]meta[/] making {len(probes)} probes for {len(manifest)} triplets")
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    n_workers = default_workers() if opts.workers is None else max(1, opts.workers)
    cache_path = Path(opts.cache_path) if opts.cache_path else features_db()
    opts.config = get_spec(opts.fedscore_version).perception(opts.config)  # the version's own recogniser
    probe_set = make_probes(manifest, out / "probes", probes, n_workers, perception=(opts.config, cache_path))
    timings["probes_s"] = time.perf_counter() - clock
    rows_out: list[dict[str, Any]] = []
    where: dict[str, tuple[str, ...]] = {}
    for e in probe_set.edits:
        rid = probe_id(e.probe, e.triplet.id)
        place(e.path, flat / rid)
        t = e.triplet
        rows_out.append({"id": rid, "source": str(t.source), "ground_truth": str(t.ground_truth),
                         "target": t.target, "instruction": t.instruction,
                         **({"actions": t.actions} if t.actions else {})})
        where[rid] = ("probe", e.probe, t.id)
    for seq in seqs.sequences if seqs else []:
        for row, frame, choice, k in sequence_rows(seq, lambda c, k, s=seq: _sequence_id(s, c, k)):
            place(frame, flat / row["id"])
            rows_out.append(row)
            where[row["id"]] = ("sequence", seq.id, choice, str(k))
    write_manifest(work / "manifest.jsonl", rows_out)
    console.print(f"[bold]meta[/] scoring {len(rows_out)} edits with FED-Score {opts.fedscore_version}")
    result = score(work / "manifest.jsonl", flat, None, allow_outside=True, config=opts.config,
                   workers=opts.workers, cache_path=cache_path, progress=opts.progress, n_bootstrap=0,
                   console=console, version=opts.fedscore_version, judge=opts.judge)

    probe_rows: dict[str, dict[str, dict]] = {p.name: {} for p in probes}
    seq_rows: dict[str, dict[str, dict[int, dict]]] = {}
    with open(out / "samples.jsonl", "w", encoding="utf-8") as fh:
        for row in result.samples:
            w = where[row["id"]]
            if w[0] == "probe":
                probe_rows[w[1]][w[2]] = row
                row = {"probe": w[1], "triplet": w[2], **row}
            else:
                seq_rows.setdefault(w[1], {}).setdefault(w[2], {})[int(w[3])] = row
                row = {"sequence": w[1], "ground_truth_frame": w[2], "frame": int(w[3]), **row}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    timings.update({f"scoring_{k}": v for k, v in result.timings.items()})
    clock = time.perf_counter()
    probe_sec = _probe_section(probes, probe_rows, opts.n_bootstrap)
    probe_sec["skipped"] = probe_set.skipped

    # Features of every image involved (all cached by the scoring pass): single metrics, recogniser.
    paths = [e.path for e in probe_set.edits] + [t.source for t in manifest] + [f.path for f in labelled]
    feats = recogniser.perceive_files(paths, opts.config, cache_path)
    console.print("[bold]meta[/] single metrics and the bias table")
    bias_sec = _bias_section(probe_set, probe_rows, feats, probes)
    timings["summaries_and_single_metrics_s"] = time.perf_counter() - clock
    clock = time.perf_counter()

    seq_sec: list[dict[str, Any]] = []
    for seq in seqs.sequences if seqs else []:
        res = analyse(seq, seq_rows[seq.id])
        if opts.plots:
            plot = out / "plots" / f"{_safe(seq.id)}.png"
            plot_sequence(res, plot)
            res["plot"] = str(plot.relative_to(out))
        seq_sec.append(res)

    timings["sequences_s"] = time.perf_counter() - clock
    rec_sec = recogniser.evaluate(labelled, feats)
    rec_sec_out = {"sets": rec_sec, "label_conflicts": label_conflicts,
                   "recognisers": sorted({m for s in rec_sec.values() for m in s["by_recogniser"]})}

    human_sec = None
    if ratings is not None:
        scores = external_scores or {
            probe_id(p, i): {d: r.get(d) for d in human.DIMENSIONS} for p, by in probe_rows.items() for i, r in by.items()}
        human_sec = {"ratings": str(opts.ratings), "agreement": human.agreement(ratings, scores, opts.n_bootstrap),
                     "inter_rater": "Krippendorff's alpha (interval metric) and the mean pairwise Spearman"}

    meta = {
        "fedscore_version": opts.fedscore_version,
        "benchmark": str(manifest.path),
        "sequences_file": str(seqs.path) if seqs else None,
        "perception": opts.config.model_dump(mode="json"),
        "probes": probe_sec,
        "bias": bias_sec,
        "sequences": {"results": seq_sec, "skipped": seqs.skipped if seqs else []},
        "recogniser": rec_sec_out,
        "human": human_sec,
        "checks": _checks(probe_sec, bias_sec, seq_sec),
        **({"judge": _judge_section(result, probe_rows, opts.n_bootstrap)} if opts.judge is not None else {}),
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    meta["passed"] = all(c["passed"] for c in meta["checks"].values())
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    from fedbench.meta.report import render_markdown

    (out / "meta.md").write_text(render_markdown(meta), encoding="utf-8")
    return meta


def _judge_section(result: Any, probe_rows: dict[str, dict[str, dict]], n_bootstrap: int) -> dict[str, Any]:
    from fedbench.judge.agreement import emotion_agreement, probe_agreement

    return {**result.summary["judge"], "agreement": emotion_agreement(result.samples, n_bootstrap),
            "probes": probe_agreement(probe_rows, n_bootstrap)}


def read_probe_rows(out: Path) -> dict[str, dict[str, dict]]:
    """A meta folder's probe rows: probe name -> triplet id -> its samples.jsonl row."""
    rows: dict[str, dict[str, dict]] = {}
    for line in (Path(out) / "samples.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "probe" in r:
            rows.setdefault(r["probe"], {})[r["triplet"]] = r
    return rows


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _read_scores(path: Path) -> dict[str, dict[str, float | None]]:
    """id -> dimension -> value from a samples.jsonl that `fedbench score` wrote."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: scored samples file not found")
    scores: dict[str, dict[str, float | None]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            scores[str(row["id"])] = {d: row.get(d) for d in human.DIMENSIONS}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: line {n} is not a scored sample ({exc})") from exc
    return scores


def _bias_section(probe_set, probe_rows: dict[str, dict[str, dict]], feats: dict[Path, ImageFeatures | str],
                  probes: list[Probe]) -> dict[str, Any]:
    load = bias_mod.image_loader()
    per_triplet: dict[str, dict[str, dict[str, float | None]]] = {}
    for e in probe_set.edits:
        row = probe_rows[e.probe].get(e.triplet.id)
        oracle = probe_rows["oracle"].get(e.triplet.id)
        if row is None or oracle is None or oracle["status"] != "ok":
            continue  # the triplet has no defined FED (degenerate or excluded): not ranked by anyone
        vals = bias_mod.single_metric_values(e.triplet, e.path, e.pixel, feats, load)
        vals["fed"] = row["fed"]
        per_triplet.setdefault(e.triplet.id, {})[e.probe] = vals
    table = bias_mod.bias_table(per_triplet, probes)
    table["definitions"] = {s.name: s.what for s in bias_mod.metric_specs()}
    table["definitions"]["fed"] = "FED-Score"
    table["absent"] = [s.name for s in bias_mod.metric_specs() if s.fn is None]
    return table
