"""meta.md: the meta-evaluation as tables a person reads (every number comes from meta.json)."""

from __future__ import annotations

from typing import Any

from fedbench.labels import EXPRESSIONS
from fedbench.metrics.components import HEADLINE, LABELS


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _dim(o: dict[str, Any] | None) -> str:
    if not o or o.get("mean") is None:
        return "—"
    ci = o.get("ci95")
    return f"{o['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render_markdown(meta: dict[str, Any]) -> str:
    seqs = f", sequences `{meta['sequences_file']}`" if meta["sequences_file"] else ""
    L: list[str] = [f"# FED-Score {meta['fedscore_version']} meta-evaluation", "",
                    f"Benchmark `{meta['benchmark']}`{seqs}.", ""]
    L += ["## Checks", ""]
    L += _table(["check", "value", "passed"], [
        [name, ", ".join(f"{k} {_f(v)}" for k, v in c.items() if k != "passed"), "yes" if c["passed"] else "**no**"]
        for name, c in meta["checks"].items()])
    L += ["", f"All checks passed: **{'yes' if meta['passed'] else 'no'}**.", ""]

    p = meta["probes"]
    L += ["## Probes", "",
          f"{p['triplets_scored']} triplets with a measurable change; degenerate ground truth: "
          f"{', '.join(p['degenerate_gt']) or 'none'}. Macro means over target classes, bootstrap 95 % intervals.", ""]
    L += _table(["probe", "what", *(LABELS[d] for d in HEADLINE), "mean gain"], [
        [name, s["what"], *(_dim(s.get("overall", {}).get(d)) for d in HEADLINE),
         _f(s.get("gain", {}).get("mean"))] for name, s in p["probes"].items()])
    of = p["oracle_first"]
    L += ["", f"- Oracle first (strictly highest FED of {', '.join(of['against'])}): **{of['count']} of "
              f"{p['triplets_scored']}** ({_pct(of['share'])}); smallest margin {_f(of['smallest_margin_fed'], 2)} FED. "
              "`blend-1` is the ground truth in pixels and is not a rival.",
          f"- Lazy: highest FED {_f(p['lazy']['max_fed'])}, largest |gain| {_f(p['lazy']['max_abs_gain'], 4)}."]
    for dim in ("fed", "reg"):
        k = p.get(f"k1_above_k05_and_k2_{dim}")
        if k:
            L.append(f"- {dim.upper()}(k = 1) above both k = 0.5 and k = 2: {k['count']} of {k['of']} ({_pct(k['share'])}).")
    proc = p.get("processed")
    if proc:
        pf = proc["oracle_first"]
        L.append(f"- Processed (S or G after a seeded random processing): processed lazy highest FED "
                 f"{_f(proc['lazy_max_fed'], 2)} (of {proc['lazy_n']}); processed oracle lowest FED "
                 f"{_f(proc['oracle_min_fed'], 2)}, strictly first on {pf['count']} of {pf['of']} "
                 f"(smallest margin {_f(pf['smallest_margin_fed'], 2)} FED at {pf['at']}).")
    if p["skipped"]:
        L.append(f"- Probes not made: {len(p['skipped'])} (first: {p['skipped'][0]['probe']} / {p['skipped'][0]['id']}: "
                 f"{p['skipped'][0]['reason']}).")
    L.append("")

    b = meta["bias"]
    L += ["## Bias of single metrics", "",
          "Which probe each metric ranks first (share of triplets; a tie splits the win), and how often it puts "
          "the lazy probe or an over-edit (k > 1) above the oracle.", ""]
    L += _table(["metric", "definition", "ranked first most often", "first shares", "lazy / over-edit above oracle"], [
        [m, b["definitions"].get(m, ""), f"{v['most_often_first']} ({v['most_often_first_kind']})",
         ", ".join(f"{k} {_pct(x)}" for k, x in sorted(v["first_share"].items(), key=lambda kv: -kv[1])),
         _pct(v["lazy_or_over_edit_above_oracle"])] for m, v in b["metrics"].items()])
    for name in b["absent"]:
        L.append(f"\n- `{name}`: {b['definitions'][name]}")
    L += ["", f"Biased single metrics (prefer lazy or over-edit over the oracle on some triplet): "
              f"{', '.join(b['biased_single_metrics']) or 'none'}; FED-Score does so on "
              f"{_pct(b['fed_lazy_or_over_edit_above_oracle'])} of triplets.", ""]

    s = meta["sequences"]
    if s["results"] or s["skipped"]:
        L += ["## Graded sequences", "",
              "Frame 0 is the source. Gain with the last frame as ground truth: rise = mean of late minus early "
              "frames (among those before the ground truth), late level = median of the late frames. REG peak: "
              "with the middle frame as ground truth, the frame (other than that one) with the highest REG.", ""]
        L += _table(["sequence", "target", "early / late frames", "rise", "late median", "Spearman g vs frame",
                     "middle GT", "REG peak frame (offset, REG)", "plot"], [
            [r["id"], r["target"], f"{r['early_frames'][0]}–{r['early_frames'][1]} / {r['late_frames'][0]}–{r['late_frames'][1]}",
             _f(r["rise"]), _f(r["late_median"]), _f(r["spearman_gain_vs_frame"]), str(r["middle_gt_frame"]),
             f"{r['reg_peak_frame']} ({r['reg_peak_offset']:+d}, {_f(r['reg_peak_value'])})" if r["reg_peak_frame"] else "—",
             f"![{r['id']}]({r['plot']})" if r.get("plot") else "—"] for r in s["results"]])
        for sk in s["skipped"]:
            L.append(f"\n- skipped `{sk['id']}`: {sk['reason']}")
        L.append("")

    L += render_recogniser(meta["recogniser"])

    h = meta.get("human")
    if h:
        L += ["## Human agreement", "", f"Ratings `{h['ratings']}`. Inter-rater agreement: {h['inter_rater']}.", ""]
        L += _table(["dimension", "samples", "raters", "Spearman [95 % CI]", "Kendall [95 % CI]",
                     "Krippendorff alpha", "mean pairwise Spearman"], [
            [d, str(a["samples"]), str(a["raters"]),
             f"{_f(a.get('spearman'))} {a.get('spearman_ci95') or ''}", f"{_f(a.get('kendall'))} {a.get('kendall_ci95') or ''}",
             _f(a["krippendorff_alpha_interval"]), _f(a["mean_pairwise_spearman"])] for d, a in h["agreement"].items()])
        L.append("")
    return "\n".join(L) + "\n"


def render_recogniser(rec: dict) -> list[str]:
    """The recogniser section: per labelled set, every recogniser's accuracy and the ensemble's confusion."""
    L = ["## Emotion recogniser", "",
         "Accuracy of the ensemble and of each member alone (argmax) on labelled faces; per class: correct / "
         "images. An image in which no face is found counts as wrong.", ""]
    for name, st in rec["sets"].items():
        by = st["by_recogniser"]
        if not by:
            L += [f"### {name}: no labelled faces", ""]
            continue
        classes = [c for c in EXPRESSIONS if any(c in r["per_class"] for r in by.values())]
        L += [f"### {name} ({st['images']} images, {len(st['no_face'])} without a face)", ""]
        L += _table(["recogniser", "accuracy", "balanced", *classes], [
            [m, _f(r["accuracy"], 2), _f(r["balanced_accuracy"], 2),
             *(f"{r['per_class'][c]['correct']}/{r['per_class'][c]['n']}" if c in r["per_class"] else "—" for c in classes)]
            for m, r in by.items()])
        conf = by["ensemble"]["confusion"]
        cm, columns = conf["rows_true_columns_predicted"], conf["columns"]
        used = [j for j in range(len(columns)) if any(row[j] for row in cm) or (j < len(cm) and sum(cm[j]))]
        L += ["", "Ensemble confusion (rows true, columns predicted):", ""]
        L += _table(["true \\ predicted", *(columns[j] for j in used)],
                    [[EXPRESSIONS[i], *(str(cm[i][j]) for j in used)] for i in range(len(cm)) if sum(cm[i])])
        for u in st["no_face"]:
            L.append(f"\n- no face: {u['image']} ({u['where']}): {u['reason']}")
        L.append("")
    for c in rec["label_conflicts"]:
        L.append(f"- label conflict, left out: {c}")
    return L
