"""`fedbench report` and `fedbench compare`, registered on the main Typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fedbench.data.manifest import parse_columns
from fedbench.report.compare import DEFAULT_BOOTSTRAP, DEFAULT_SEED, CompareError, Comparison, compare_runs
from fedbench.report.runs import RunError, load_runs
from fedbench.report.tables import CLASS_METRICS

console = Console()
err = Console(stderr=True)


def report(
    runs: list[Path] = typer.Argument(..., help="run folders (each holds summary.json and samples.jsonl)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="html: the report folder (default report/); tables: a file (default stdout)"),
    format: str = typer.Option("html", "--format", "-f", help="html, md, csv, latex or json"),
    table: str = typer.Option("leaderboard", help="tables: leaderboard, or classes (one metric per target)"),
    metric: str = typer.Option("fed", help=f"metric of --table classes: {', '.join(CLASS_METRICS)}"),
    title: str = typer.Option("FED-Bench report", help="html: page title"),
    manifest: Optional[Path] = typer.Option(None, help="html: read instructions and images from this manifest "
                                                       "instead of the one each run recorded"),
    columns: Optional[str] = typer.Option(None, help="html: column mapping of that manifest (source=img,...)"),
    thumb_cache: Optional[Path] = typer.Option(None, help="html: thumbnail cache (default ~/.cache/fedbench/thumbnails)"),
) -> None:
    """A static HTML report (leaderboard, per-class heat map, plots, gallery) or a table for papers and scripts."""
    from fedbench.report import tables

    try:
        loaded = load_runs(runs)
        if format == "html":
            from fedbench.report.html import build_report

            result = build_report(loaded, out or Path("report"), title=title, manifest=manifest,
                                  columns=parse_columns(columns), thumb_cache=thumb_cache)
            for w in result.warnings:
                err.print(f"[yellow]note[/] {w}")
            t = result.thumbnails
            err.print(f"{result.n_items} sample rows, {t.unique} thumbnails ({t.made} made, {t.reused} reused), "
                      f"page {result.page_bytes / 1e6:.2f} MB, folder {result.folder_bytes / 1e6:.2f} MB, "
                      f"{result.seconds:.1f} s")
            console.print(f"wrote {result.index}", soft_wrap=True)
            return
        text = tables.render(loaded, format, table, metric)
    except (RunError, ValueError) as exc:
        err.print(f"[red]error[/] {exc}", soft_wrap=True)
        raise typer.Exit(2)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}")


def _print_comparison(c: Comparison) -> None:
    t = Table(title=f"{c.a} − {c.b}: paired bootstrap on {c.n_shared} shared samples "
                    f"({c.n_bootstrap} resamples, seed {c.seed})")
    for col in ("dimension", f"{c.a}", f"{c.b}", "difference", "95 % interval", "p-value", "n"):
        t.add_column(col, justify="left" if col == "dimension" else "right")
    for d in c.dimensions:
        digits = 2 if d.dimension == "fed" else 3
        f = (lambda v: "—" if v is None else f"{v:.{digits}f}")
        ci = "—" if d.ci95 is None else f"[{d.ci95[0]:+.{digits}f}, {d.ci95[1]:+.{digits}f}]"
        diff = "—" if d.diff is None else f"{d.diff:+.{digits}f}"
        # p is at least 1 / (n_bootstrap + 1): below 1e-4 only the bound is worth printing.
        p = "—" if d.p_value is None else (f"{d.p_value:.4f}" if d.p_value >= 1e-4 else "< 0.0001")
        t.add_row(d.dimension, f(d.mean_a), f(d.mean_b), diff, ci, p, str(d.n))
    console.print(t)
    if c.only_a or c.only_b:
        console.print(f"left out: {c.only_a} sample(s) only in {c.a}, {c.only_b} only in {c.b}")
    for n in c.notes:
        err.print(f"[yellow]note[/] {n}")


def compare(
    a: Path = typer.Argument(..., help="run folder A"),
    b: Path = typer.Argument(..., help="run folder B"),
    n_bootstrap: int = typer.Option(DEFAULT_BOOTSTRAP, help="bootstrap resamples"),
    seed: int = typer.Option(DEFAULT_SEED, help="bootstrap seed (recorded in the output)"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
    allow_version_mismatch: bool = typer.Option(False, help="compare runs scored with different FED-Score versions"),
) -> None:
    """Paired bootstrap difference A − B in FED-Score and each dimension, on the samples both runs share."""
    try:
        ra, rb = load_runs([a, b])
        result = compare_runs(ra, rb, n_bootstrap=n_bootstrap, seed=seed, allow_version_mismatch=allow_version_mismatch)
    except (RunError, CompareError) as exc:
        err.print(f"[red]error[/] {exc}", soft_wrap=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_comparison(result)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("compare")(compare)
