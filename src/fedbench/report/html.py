"""The static HTML report: one page (`index.html`) with thumbnails and plots beside it.

No server and no network: styles and scripts are inline, images are relative files. Every piece of
text that comes from a manifest or a run (ids, instructions, file names, model names, reasons) is
escaped by Jinja2's autoescape; the gallery's data travels as JSON inside
`<script type="application/json">`, with `<`, `>`, `&` and `'` written as \\u escapes (Jinja2's
`tojson`), so no string can close the script element. The page's script builds the gallery with
`textContent` and attributes only, never `innerHTML`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined

from fedbench import __version__
from fedbench.labels import EXPRESSIONS
from fedbench.metrics.components import NAMES as COMPONENT_NAMES
from fedbench.report import tables
from fedbench.report.plots import make_plots
from fedbench.report.runs import ManifestView, Run, read_manifests
from fedbench.report.thumbnails import ThumbnailStats, Thumbnails

# Components carried per gallery item (short keys keep a 5 x 750-sample page small).
ITEM_COMPONENTS: tuple[str, ...] = (*COMPONENT_NAMES, "gain", "off_axis")


@dataclass
class ReportResult:
    index: Path
    page_bytes: int
    folder_bytes: int
    thumbnails: ThumbnailStats
    n_items: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


def _href(target: Path | None, out_dir: Path) -> str | None:
    """A link from the page to an original image: relative when possible, so a report moved together
    with its data keeps working; a file: URI otherwise (another drive)."""
    if target is None:
        return None
    target = target.resolve()
    try:
        rel = os.path.relpath(target, out_dir.resolve())
    except ValueError:
        return target.as_uri()
    return quote(Path(rel).as_posix(), safe="/")


def _colour(value: float | None, vmax: float) -> tuple[str, str]:
    """Heat-map cell colours (background, text) from viridis; None is grey."""
    if value is None:
        return "#eeeeee", "#555555"
    from matplotlib import colormaps

    r, g, b, _ = colormaps["viridis"](max(0.0, min(1.0, value / vmax)))
    text = "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "#ffffff"
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}", text


def _backbone_signature(run: Run) -> tuple:
    models = (run.summary.get("backbones") or {}).get("models") or {}
    return tuple(sorted((k, str(v.get("version")), str(v.get("sha256"))) for k, v in models.items()))


def _provenance(runs: list[Run]) -> tuple[list[dict[str, Any]], list[str]]:
    """Distinct backbone sets with the runs that used each, and warnings when runs differ."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        sig = _backbone_signature(r)
        g = groups.setdefault(sig, {"runs": [], "backbones": (r.summary.get("backbones") or {}),
                                    "perception": r.summary.get("perception") or {}})
        g["runs"].append(r.name)
    warnings = []
    synthetic = [r.name for r in runs if r.summary.get("synthetic")]
    if synthetic:
        warnings.append(f"SYNTHETIC runs (invented scores, for testing the report only): {', '.join(synthetic)}")
    if len(groups) > 1:
        warnings.append("the runs were scored with different backbones: their scores are not strictly comparable")
    versions = sorted({r.fedscore_version for r in runs})
    if len(versions) > 1:
        warnings.append(f"the runs use different FED-Score versions ({', '.join(versions)}): rescore with one "
                        "--fedscore-version before comparing")
    manifests = sorted({str(r.manifest_path()) for r in runs})
    if len(manifests) > 1:
        warnings.append(f"the runs name {len(manifests)} different manifests: rankings compare different benchmarks")
    return list(groups.values()), warnings


def _leaderboard_context(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for rank, e in enumerate(tables.leaderboard(runs), 1):
        cells = {}
        for d in tables.HEADLINE:
            m, ci = e.means[d], e.ci95[d]
            cells[d] = {"value": m, "text": tables.fmt(m, d),
                        "ci": None if ci is None else f"[{tables.fmt(ci[0], d)}, {tables.fmt(ci[1], d)}]"}
        rows.append({"rank": rank, "name": e.name, "path": e.path, "cells": cells, "gain_mean": e.gain_mean,
                     "gain_text": tables.fmt(e.gain_mean, "gain"), "gain_median": tables.fmt(e.gain_median, "gain"),
                     "gain_reading": tables.gain_reading(e.gain_mean), "n_scored": e.n_scored,
                     "n_samples": e.n_samples, "failures": e.failures, "n_failures": sum(e.failures.values()),
                     "version": e.fedscore_version})
    return rows


def _class_context(runs: list[Run]) -> dict[str, Any]:
    classes = tables.class_names(runs)
    order = [e.name for e in tables.leaderboard(runs)]
    by_name = {r.name: r for r in runs}
    heat, detail = [], []
    for name in order:
        pc = by_name[name].summary.get("per_class", {})
        cells = []
        for c in classes:
            v = (pc.get(c) or {}).get("fed")
            bg, fg = _colour(v, 100.0)
            cells.append({"cls": c, "value": v, "text": tables.fmt(v, "fed"), "bg": bg, "fg": fg,
                          "n": (pc.get(c) or {}).get("n", 0)})
        heat.append({"name": name, "cells": cells})
        for c in classes:
            d = pc.get(c) or {}
            detail.append({"name": name, "cls": c, "n": d.get("n", 0),
                           **{m: tables.fmt(d.get(m), m) for m in tables.CLASS_METRICS}})
    return {"classes": classes, "heat": heat, "detail": detail}


def _gallery_data(runs: list[Run], view: ManifestView, thumbs: Thumbnails, out_dir: Path) -> tuple[dict[str, Any], list[str]]:
    warnings: list[str] = []
    order = [e.name for e in tables.leaderboard(runs)]
    runs = sorted(runs, key=lambda r: order.index(r.name))
    ids: list[str] = []
    for r in runs:
        for s in r.samples:
            if s["id"] not in view.triplets and s["id"] not in ids:
                ids.append(s["id"])
    edits: dict[tuple[int, str], Path | None] = {}
    for m, r in enumerate(runs):
        for s in r.samples:
            edits[(m, s["id"])] = r.edit_image(s["id"])
    refs = [p for t in view.triplets.values() for p in (t.source, t.ground_truth)]
    names = thumbs.add(refs + [p for p in edits.values() if p is not None])

    triplets: dict[str, dict[str, Any]] = {}
    used_ids = {s["id"] for r in runs for s in r.samples}
    for tid, t in view.triplets.items():
        if tid not in used_ids:
            continue
        triplets[tid] = {"i": t.instruction, "t": t.target, "s": names.get(t.source), "g": names.get(t.ground_truth),
                         "S": _href(t.source, out_dir), "G": _href(t.ground_truth, out_dir),
                         "sf": t.source.name, "gf": t.ground_truth.name, "se": t.source_expression}
    items = []
    missing_images = 0
    for m, r in enumerate(runs):
        for s in r.samples:
            e = edits[(m, s["id"])]
            missing_images += int(e is None and s.get("status") != "missing_edit")
            item: dict[str, Any] = {"m": m, "id": s["id"], "t": s.get("target"), "st": s.get("status"),
                                    "r": s.get("reason"), "e": None if e is None else names.get(e),
                                    "E": _href(e, out_dir), "ef": None if e is None else e.name}
            item.update({k: s.get(k) for k in ITEM_COMPONENTS})
            gen = r.generations.get(s["id"])
            if gen:
                item["gen"] = {k: gen.get(k) for k in ("status", "reason", "seconds", "seed") if gen.get(k) is not None}
            items.append(item)
    if ids:
        warnings.append(f"{len(ids)} sample id(s) have no manifest row here: shown without instruction or pictures")
    if missing_images:
        warnings.append(f"{missing_images} edited image(s) were not found where the runs recorded them")
    statuses = sorted({i["st"] for i in items if i["st"]}, key=lambda s: (s != "ok", s))
    data = {"models": [r.name for r in runs], "classes": [c for c in EXPRESSIONS if any(i["t"] == c for i in items)],
            "statuses": statuses, "triplets": triplets, "items": items}
    return data, warnings


def _environment() -> Environment:
    # autoescape on for every template (their names end in .j2, which select_autoescape would miss).
    env = Environment(loader=PackageLoader("fedbench.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # tojson keeps its HTML-safe escaping; compact separators and manifest order keep the page small.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":"), "ensure_ascii": False}
    return env


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def build_report(runs: list[Run], out_dir: str | Path, *, title: str = "FED-Bench report",
                 manifest: Path | None = None, columns: dict[str, str] | None = None,
                 thumb_cache: Path | None = None, workers: int | None = None) -> ReportResult:
    """Write out_dir/index.html (+ thumbs/, plots/) for `runs`; return sizes, counts and seconds."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    view = read_manifests(runs, manifest, columns)
    thumbs = Thumbnails(out_dir, thumb_cache, workers=workers)
    gallery, gallery_warnings = _gallery_data(runs, view, thumbs, out_dir)
    thumbs.prune()
    groups, provenance_warnings = _provenance(runs)
    warnings = provenance_warnings + view.problems + gallery_warnings
    if thumbs.stats.failed:
        warnings.append(f"{len(thumbs.stats.failed)} image(s) could not be read for thumbnails")
    plots = make_plots(runs, out_dir)
    lb = _leaderboard_context(runs)
    statuses = tables.all_statuses(tables.leaderboard(runs))
    page = _environment().get_template("index.html.j2").render(
        title=title, version=__version__, generated=time.strftime("%Y-%m-%d %H:%M %Z"), leaderboard=lb,
        failure_statuses=[s for s in statuses if s != "ok"], classes=_class_context(runs), plots=plots,
        provenance=groups,
        runs=[{"name": r.name, "path": str(r.path), "version": r.fedscore_version,
               "manifest": str(r.manifest_path()), "edits": str(r.edits_dir()),
               "editor": r.summary.get("editor"), "run_info": r.run_info} for r in runs],
        warnings=warnings, gallery=gallery, n_items=len(gallery["items"]),
    )
    index = out_dir / "index.html"
    tmp = out_dir / "index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return ReportResult(index=index, page_bytes=index.stat().st_size, folder_bytes=_folder_bytes(out_dir),
                        thumbnails=thumbs.stats, n_items=len(gallery["items"]),
                        seconds=time.perf_counter() - t0, warnings=warnings)
