"""Leaderboard and per-class tables from run summaries, in Markdown, CSV, LaTeX and JSON.

Every number comes from `summary.json` as written by the scorer; nothing is recomputed here, so a
table always agrees with the run it names. Markdown and LaTeX round for reading (FED to 2 decimals,
the [0, 1] dimensions and the gain to 3); CSV and JSON carry the summary's values unchanged.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Literal

from fedbench.labels import EXPRESSIONS
from fedbench.metrics import components
from fedbench.report.runs import Run

Format = Literal["md", "csv", "latex", "json"]
FORMATS: tuple[str, ...] = ("md", "csv", "latex", "json")
HEADLINE = components.HEADLINE
LABELS = components.LABELS
CLASS_METRICS: tuple[str, ...] = components.NAMES
# A mean gain this far from 1 is called under- or over-editing in the tables (a reading aid only).
GAIN_BAND = 0.1


def digits(metric: str) -> int:
    """Printed precision: FED is on 0..100, everything else on 0..1 (or around 1, the gain)."""
    return 2 if metric in components.BY_NAME and components.BY_NAME[metric].high > 1 else 3


def fmt(value: float | None, metric: str) -> str:
    return "—" if value is None else f"{value:.{digits(metric)}f}"


def gain_reading(gain: float | None) -> str:
    if gain is None:
        return "n/a"
    if gain < 1 - GAIN_BAND:
        return "under"
    if gain > 1 + GAIN_BAND:
        return "over"
    return "on target"


@dataclass
class Entry:
    """One leaderboard row, straight from a run's summary."""

    name: str
    path: str
    fedscore_version: str
    means: dict[str, float | None]
    ci95: dict[str, tuple[float, float] | None]
    gain_mean: float | None
    gain_median: float | None
    n_samples: int
    n_scored: int
    statuses: dict[str, int]

    @property
    def failures(self) -> dict[str, int]:
        return {k: v for k, v in self.statuses.items() if k != "ok" and v}


def entry(run: Run) -> Entry:
    s = run.summary
    overall = s["overall"]
    means: dict[str, float | None] = {}
    cis: dict[str, tuple[float, float] | None] = {}
    for dim in HEADLINE:
        d = overall.get(dim) or {}
        means[dim] = d.get("mean")
        ci = d.get("ci95")
        cis[dim] = None if not ci else (float(ci[0]), float(ci[1]))
    gain = s.get("gain") or {}
    return Entry(name=run.name, path=str(run.path), fedscore_version=run.fedscore_version, means=means, ci95=cis,
                 gain_mean=gain.get("mean"), gain_median=gain.get("median"), n_samples=int(s.get("n_samples", 0)),
                 n_scored=int(s.get("n_scored", 0)), statuses=dict(s.get("status_counts", {})))


def leaderboard(runs: list[Run]) -> list[Entry]:
    """Entries by FED, best first; a run without a FED (nothing measurable) goes last."""
    entries = [entry(r) for r in runs]
    return sorted(entries, key=lambda e: (e.means["fed"] is None, -(e.means["fed"] or 0.0), e.name))


def class_names(runs: list[Run]) -> list[str]:
    present = {c for r in runs for c in r.summary.get("per_class", {})}
    return [c for c in EXPRESSIONS if c in present]


def all_statuses(entries: list[Entry]) -> list[str]:
    """Statuses seen in any run, `ok` first, then in order of first appearance (new ones included)."""
    seen: list[str] = []
    for e in entries:
        for k in e.statuses:
            if k not in seen:
                seen.append(k)
    return sorted(seen, key=lambda k: (k != "ok", seen.index(k)))


# ---------------------------------------------------------------- leaderboard renderers

def _cell_with_ci(e: Entry, dim: str) -> str:
    m, ci = e.means[dim], e.ci95[dim]
    if m is None:
        return "—"
    return fmt(m, dim) + (f" [{fmt(ci[0], dim)}, {fmt(ci[1], dim)}]" if ci else "")


def _failures_text(e: Entry) -> str:
    return ", ".join(f"{k} {v}" for k, v in e.failures.items()) or "none"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def leaderboard_md(entries: list[Entry]) -> str:
    head = ["model", "FED [95% CI]", "Alignment [95% CI]", "Fidelity [95% CI]", "REG [95% CI]",
            "mean gain", "median gain", "scored / samples", "failures", "FED-Score"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 7 + ["---", "---"]) + "|"]
    for e in entries:
        gain = "—" if e.gain_mean is None else f"{fmt(e.gain_mean, 'gain')} ({gain_reading(e.gain_mean)})"
        cells = [_md_escape(e.name), *(_cell_with_ci(e, d) for d in HEADLINE), gain, fmt(e.gain_median, "gain"),
                 f"{e.n_scored} / {e.n_samples}", _md_escape(_failures_text(e)), e.fedscore_version]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def leaderboard_rows(entries: list[Entry]) -> list[dict[str, Any]]:
    """Flat rows (CSV, JSON): the summary's values unrounded, one column per status seen."""
    statuses = all_statuses(entries)
    rows = []
    for e in entries:
        row: dict[str, Any] = {"model": e.name}
        for d in HEADLINE:
            row[d] = e.means[d]
            row[f"{d}_ci_lo"] = None if e.ci95[d] is None else e.ci95[d][0]
            row[f"{d}_ci_hi"] = None if e.ci95[d] is None else e.ci95[d][1]
        row.update(gain_mean=e.gain_mean, gain_median=e.gain_median, n_samples=e.n_samples, n_scored=e.n_scored)
        row.update({f"status_{k}": e.statuses.get(k, 0) for k in statuses})
        row.update(fedscore_version=e.fedscore_version, run=e.path)
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _best(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def leaderboard_latex(entries: list[Entry]) -> str:
    """A booktabs tabular; the best mean of each column (at the printed precision) in bold."""
    best = {d: _best([None if e.means[d] is None else round(e.means[d], digits(d)) for e in entries]) for d in HEADLINE}
    lines = [r"% fedbench leaderboard (requires \usepackage{booktabs})", r"\begin{tabular}{lrrrrr}", r"\toprule",
             r"Model & FED $\uparrow$ & Alignment $\uparrow$ & Fidelity $\uparrow$ & REG $\uparrow$ & gain \\",
             r"\midrule"]
    for e in entries:
        cells = [latex_escape(e.name)]
        for d in HEADLINE:
            m, ci = e.means[d], e.ci95[d]
            if m is None:
                cells.append("--")
                continue
            text = fmt(m, d)
            if best[d] is not None and round(m, digits(d)) == best[d]:
                text = rf"\textbf{{{text}}}"
            if ci:
                text += rf" {{\scriptsize [{fmt(ci[0], d)}, {fmt(ci[1], d)}]}}"
            cells.append(text)
        cells.append("--" if e.gain_mean is None else fmt(e.gain_mean, "gain"))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- per-class renderers

def class_table(runs: list[Run], metric: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(classes, rows): each row holds the model, then per class the metric's mean and n."""
    if metric not in CLASS_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(CLASS_METRICS)}")
    classes = class_names(runs)
    order = {e.name: i for i, e in enumerate(leaderboard(runs))}
    rows = []
    for run in sorted(runs, key=lambda r: order[r.name]):
        pc = run.summary.get("per_class", {})
        row: dict[str, Any] = {"model": run.name, "metric": metric}
        for c in classes:
            row[c] = (pc.get(c) or {}).get(metric)
            row[f"n_{c}"] = (pc.get(c) or {}).get("n", 0)
        row["macro"] = (run.summary["overall"].get(metric) or {}).get("mean")
        rows.append(row)
    return classes, rows


def classes_md(classes: list[str], rows: list[dict[str, Any]]) -> str:
    metric = rows[0]["metric"] if rows else "fed"
    head = ["model", *(f"{c} (n)" for c in classes), f"macro {LABELS[metric]}"]
    lines = [f"<!-- per-class {LABELS[metric]} -->", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(classes) + 1)) + "|"]
    for r in rows:
        cells = [_md_escape(r["model"]), *(f"{fmt(r[c], metric)} ({r[f'n_{c}']})" for c in classes),
                 fmt(r["macro"], metric)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def classes_latex(classes: list[str], rows: list[dict[str, Any]]) -> str:
    metric = rows[0]["metric"] if rows else "fed"
    lines = [f"% fedbench per-class {LABELS[metric]} (requires \\usepackage{{booktabs}})",
             r"\begin{tabular}{l" + "r" * (len(classes) + 1) + "}", r"\toprule",
             "Model & " + " & ".join(c.capitalize() for c in classes) + r" & Macro \\", r"\midrule"]
    for r in rows:
        cells = [latex_escape(r["model"]), *("--" if r[c] is None else fmt(r[c], metric) for c in classes),
                 "--" if r["macro"] is None else fmt(r["macro"], metric)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render(runs: list[Run], fmt_: str, table: str = "leaderboard", metric: str = "fed") -> str:
    """The text of one table in one format."""
    if fmt_ not in FORMATS:
        raise ValueError(f"unknown format {fmt_!r}; choose one of {', '.join(FORMATS)} (or html)")
    if table == "leaderboard":
        entries = leaderboard(runs)
        renderers: dict[str, Callable[[], str]] = {
            "md": lambda: leaderboard_md(entries),
            "csv": lambda: _csv(leaderboard_rows(entries)),
            "latex": lambda: leaderboard_latex(entries),
            "json": lambda: json.dumps(leaderboard_rows(entries), indent=2, ensure_ascii=False) + "\n",
        }
    elif table == "classes":
        classes, rows = class_table(runs, metric)
        renderers = {
            "md": lambda: classes_md(classes, rows),
            "csv": lambda: _csv(rows),
            "latex": lambda: classes_latex(classes, rows),
            "json": lambda: json.dumps(rows, indent=2, ensure_ascii=False) + "\n",
        }
    else:
        raise ValueError(f"unknown table {table!r}; choose leaderboard or classes")
    return renderers[fmt_]()
