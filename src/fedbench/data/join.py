"""`fedbench data join`: a ground-truth-only release joined with locally held sources into a manifest.

The official FED-Bench release publishes the ground-truth images (Parquet on the hub); the source
frames come from SFEW 2.0, which users obtain under its own licence. A key column of the release
names each row's source; `--source-pattern` turns it (and any other column) into a path under
`--sources-root`. Every row is checked - key present, source file there, target, instruction, id
unique - and every problem, each missing source by id, is reported before the manifest is written.
Embedded ground-truth images are written beside the manifest (`ground_truth/<sha256>.<ext>`) so the
manifest, its ground truth and (when `--sources-root` lies inside its folder) its sources form one
folder that `fedbench score` / `eval` read without `--allow-outside`.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from fedbench.data.manifest import (OPTIONAL, ManifestError, Problem, Triplet, parse_columns, read_manifest,
                                    write_manifest)

GT_FIELDS = ("instruction", "target", "ground_truth")  # what the release must carry; `source` comes from the join
GT_FOLDER = "ground_truth"


@dataclass
class JoinResult:
    manifest: Path
    rows: int
    outside: bool  # sources lie outside the manifest's folder: scoring needs --allow-outside


def _placeholders(pattern: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(pattern) if name]


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def join(gt: str | Path, sources_root: str | Path, key: str, out: str | Path, *,
         source_pattern: str = "{key}.jpg", columns: dict[str, str] | None = None) -> JoinResult:
    """Join the ground-truth dataset `gt` (anything fedbench.data.hub reads) with the files under
    `sources_root` by column `key`; write a JSONL manifest to `out`. Raises ManifestError listing every
    bad row before the manifest is written."""
    from fedbench.data.hub import load_table  # pyarrow & co. only when a join runs, not at CLI start

    columns = dict(columns or {})
    out = Path(out).expanduser().resolve()
    root = Path(sources_root).expanduser().resolve()
    if not root.is_dir():
        raise ManifestError(root, [Problem(0, "--sources-root is not a folder")])
    if "source" in columns:
        raise ValueError("--columns: the source comes from --key and --source-pattern, not from a column")
    unknown = [p for p in _placeholders(source_pattern) if p != "key" and not p.isidentifier()]
    if unknown or not _placeholders(source_pattern):
        raise ValueError(f"--source-pattern {source_pattern!r}: use {{key}} and column names, e.g. '{{key}}.jpg'")
    fields = GT_FIELDS + (("id",) if "id" in columns else ())
    table = load_table(gt, {**columns, "key": key}, out.parent / GT_FOLDER, fields=(*fields, "key"),
                       image_fields=("ground_truth",))
    col = lambda field: columns.get(field, field)  # noqa: E731 - field -> the release's column
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for n, record in table.rows:
        value = record.get(key)
        if value is None or str(value).strip() == "":
            rows.append((n, f"no key in column {key!r}"))
            continue
        cells = {k: v for k, v in record.items() if isinstance(v, (str, int, float))}
        try:
            rel = source_pattern.format(**{**cells, "key": str(value).strip()})
        except (KeyError, IndexError, ValueError) as exc:
            rows.append((n, f"--source-pattern {source_pattern!r} cannot be filled from this row ({exc})"))
            continue
        target = record.get(col("target"))
        row = {
            "id": record.get(col("id")) if "id" in columns else f"{value}-{target}",
            "source": str(root / rel),
            "instruction": record.get(col("instruction")),
            "target": target,
            "ground_truth": record.get(col("ground_truth")),
            **{f: record.get(col(f)) for f in OPTIONAL if col(f) in record},
        }
        # a path-valued ground truth is relative to the release's folder, as in any manifest
        gt_path = row["ground_truth"]
        if isinstance(gt_path, str) and gt_path and not Path(gt_path).is_absolute():
            row["ground_truth"] = str(table.root / gt_path)
        meta = row.get("meta")
        if isinstance(meta, str) and meta.strip():
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError:
                rows.append((n, f"meta (column {col('meta')!r}) is not valid JSON"))
                continue
        row["meta"] = {**(meta if isinstance(meta, dict) else {}), "join_key": str(value)}
        rows.append((n, row))
    try:
        # the rows now hold absolute paths: validate them exactly as a manifest's rows, all at once
        manifest = read_manifest(out, None, allow_outside=True, rows=rows, root=out.parent)
    except ManifestError as exc:
        raise table.locate(ManifestError(Path(str(gt)), exc.problems)) from None
    outside = not all(t.source.is_relative_to(out.parent) for t in manifest)
    write_manifest(out, [_row(t, out.parent) for t in manifest])
    return JoinResult(out, len(manifest), outside)


def _row(t: Triplet, root: Path) -> dict[str, Any]:
    row = {"id": t.id, "source": _relative(t.source, root), "instruction": t.instruction, "target": t.target,
           "ground_truth": _relative(t.ground_truth, root)}
    for f in OPTIONAL:
        value = getattr(t, f)
        if value is not None:
            row[f] = value
    return json.loads(json.dumps(row, default=str))


data_app = typer.Typer(help="Datasets: join a ground-truth release with locally held sources.", no_args_is_help=True)


@data_app.command("join")
def join_cmd(
    gt: str = typer.Option(..., "--gt", help="ground-truth dataset: .parquet/.arrow, a shard or save_to_disk folder, "
                                             "or hf://datasets/ORG/NAME(@REVISION)"),
    sources_root: Path = typer.Option(..., "--sources-root", help="folder holding the source images"),
    key: str = typer.Option(..., "--key", help="the release's column that names each row's source"),
    out: Path = typer.Option(..., "--out", "-o", help="manifest to write (.jsonl); ground truth goes beside it"),
    source_pattern: str = typer.Option("{key}.jpg", help="source path under --sources-root, from {key} and "
                                                         "other columns, e.g. '{split}/{key}.png'"),
    columns: Optional[str] = typer.Option(None, help="map fields to the release's columns: "
                                                     "id=uid,target=emotion,ground_truth=image"),
) -> None:
    """Join a ground-truth release with your source images into a manifest; every row checked first."""
    from rich.console import Console

    err = Console(stderr=True)
    try:
        res = join(gt, sources_root, key, out, source_pattern=source_pattern, columns=parse_columns(columns))
    except (ManifestError, ValueError) as exc:
        err.print(f"[red]error[/] {exc}")
        raise typer.Exit(2)
    err.print(f"wrote {res.manifest}: {res.rows} triplets")
    if res.outside:
        err.print("[yellow]note[/] sources lie outside the manifest's folder: pass --allow-outside to "
                  "`fedbench score` / `eval`, or write the manifest in a folder above --sources-root")
