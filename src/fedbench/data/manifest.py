"""Triplet manifests: read JSONL / CSV / Parquet, map foreign column names, validate before any work.

One row per triplet: `id, source, instruction, target, ground_truth` required; `source_expression,
identity, split, actions, meta` optional. Paths are relative to the manifest's folder and may not
leave it unless the caller allows it. Every problem names its row; all are reported at once.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fedbench.labels import EXPRESSIONS, normalise_expression

REQUIRED = ("id", "source", "instruction", "target", "ground_truth")
OPTIONAL = ("source_expression", "identity", "split", "actions", "meta")
MAX_SHOWN = 25


class Triplet(BaseModel):
    id: str
    source: Path
    instruction: str
    target: str
    ground_truth: Path
    source_expression: str | None = None
    identity: str | None = None
    split: str | None = None
    actions: list[str] | None = None
    meta: dict[str, Any] | None = None
    row: int = 0  # 1-based row in the manifest (line for JSONL), for messages


@dataclass
class Problem:
    row: int
    message: str
    id: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" + (f" (id {self.id!r})" if self.id else "")
        return f"{where}: {self.message}"


class ManifestError(ValueError):
    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:MAX_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        super().__init__(f"{path}: {len(problems)} problem(s) in the manifest\n{shown}{more}")


@dataclass
class Manifest:
    path: Path
    root: Path
    triplets: list[Triplet] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.triplets)

    def __iter__(self):
        return iter(self.triplets)


def parse_columns(spec: str | None) -> dict[str, str]:
    """'source=img,target=emotion' -> {'source': 'img', 'target': 'emotion'} (fedbench field = your column)."""
    mapping: dict[str, str] = {}
    if not spec:
        return mapping
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"--columns expects field=column pairs, got {part!r}")
        ours, theirs = (x.strip() for x in part.split("=", 1))
        if ours not in REQUIRED + OPTIONAL:
            raise ValueError(f"--columns: {ours!r} is not a manifest field ({', '.join(REQUIRED + OPTIONAL)})")
        mapping[ours] = theirs
    return mapping


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """(row number, record) pairs; a record that cannot be parsed is the error text instead."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows: list[tuple[int, dict[str, Any] | str]] = []
        with open(path, encoding="utf-8-sig") as fh:  # -sig: tolerate a byte-order mark
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    rows.append((n, record if isinstance(record, dict) else "a line must be a JSON object"))
                except json.JSONDecodeError as exc:
                    rows.append((n, f"invalid JSON: {exc.msg} at column {exc.colno}"))
        return rows
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        if not isinstance(data, list):
            raise ManifestError(path, [Problem(0, "a .json manifest must hold a list of objects")])
        return [(n, r if isinstance(r, dict) else "an entry must be a JSON object") for n, r in enumerate(data, 1)]
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            return [(n, dict(r)) for n, r in enumerate(reader, 2)]  # row 1 is the header
    raise ManifestError(path, [Problem(0, f"unknown manifest format {suffix!r} (use .jsonl, .csv, .tsv or .parquet)")])


def _resolve(root: Path, value: str, allow_outside: bool,
             extra_roots: tuple[Path, ...] = ()) -> tuple[Path, str | None]:
    p = Path(value).expanduser()
    full = (p if p.is_absolute() else root / p).resolve()
    if not allow_outside and not any(full.is_relative_to(r) for r in (root, *extra_roots)):
        return full, f"path {value!r} leaves the manifest's folder {root} (pass --allow-outside to permit)"
    if not full.is_file():
        return full, f"file not found: {value!r} (looked at {full})"
    return full, None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def read_manifest(path: str | Path, columns: dict[str, str] | None = None, allow_outside: bool = False, *,
                  rows: list[tuple[int, dict[str, Any] | str]] | None = None, root: Path | None = None,
                  extra_roots: tuple[Path, ...] = ()) -> Manifest:
    """Read and validate a manifest; raise ManifestError listing every problem, by row.

    Parquet/Arrow files, dataset folders and hf:// URLs go through fedbench.data.hub, which hands the
    rows back here (`rows`, `root`, and `extra_roots`: where it put embedded images) for validation."""
    if rows is None:
        from fedbench.data import hub

        if hub.is_hub_manifest(path):
            return hub.read_hub_manifest(path, columns, allow_outside)
    path = Path(path).expanduser().resolve()
    if rows is None and not path.is_file():
        raise ManifestError(path, [Problem(0, "manifest file not found")])
    root = root or path.parent
    columns = columns or {}
    problems: list[Problem] = []
    triplets: list[Triplet] = []
    seen: dict[str, int] = {}
    for n, record in _read_rows(path) if rows is None else rows:
        if isinstance(record, str):
            problems.append(Problem(n, record))
            continue
        get = lambda f: record.get(columns.get(f, f))  # noqa: E731 - one-line column lookup
        values = {f: _text(get(f)) for f in REQUIRED}
        rid = values["id"]
        missing = [f for f in REQUIRED if values[f] is None]
        if missing:
            cols = ", ".join(f"{f} (column {columns.get(f, f)!r})" for f in missing)
            problems.append(Problem(n, f"missing {cols}", rid))
            continue
        row_problems: list[str] = []
        if any(c in rid for c in "/\\") or rid.startswith(".") or "\x00" in rid:
            row_problems.append("id may not contain '/' or '\\' or start with '.' (it names the edited file)")
        if rid in seen:
            row_problems.append(f"duplicate id (first seen on row {seen[rid]})")
        else:
            seen[rid] = n
        target = normalise_expression(values["target"])
        if target is None:
            row_problems.append(f"unknown target {values['target']!r}; expected one of {', '.join(EXPRESSIONS)}")
        src_expr_raw = _text(get("source_expression"))
        src_expr = normalise_expression(src_expr_raw) if src_expr_raw else None
        if src_expr_raw and src_expr is None:
            row_problems.append(f"unknown source_expression {src_expr_raw!r}")
        resolved = {}
        for f in ("source", "ground_truth"):
            resolved[f], err = _resolve(root, values[f], allow_outside, extra_roots)
            if err:
                row_problems.append(f"{f}: {err}")
        meta = get("meta")
        if isinstance(meta, str) and meta.strip():
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError:
                row_problems.append("meta is not valid JSON")
        actions = get("actions")
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(";") if a.strip()]
        if row_problems:
            problems.extend(Problem(n, msg, rid) for msg in row_problems)
            continue
        triplets.append(
            Triplet(
                id=rid, source=resolved["source"], instruction=values["instruction"], target=target,
                ground_truth=resolved["ground_truth"], source_expression=src_expr,
                identity=_text(get("identity")), split=_text(get("split")),
                actions=list(actions) if actions else None, meta=meta if isinstance(meta, dict) else None, row=n,
            )
        )
    if problems:
        raise ManifestError(path, problems)
    if not triplets:
        raise ManifestError(path, [Problem(0, "the manifest has no rows")])
    return Manifest(path=path, root=root, triplets=triplets)


def write_manifest(path: Path, triplets: list[dict[str, Any]]) -> None:
    """Write rows as JSONL (paths as given); the format every fedbench command reads."""
    with open(path, "w", encoding="utf-8") as fh:
        for t in triplets:
            fh.write(json.dumps(t, ensure_ascii=False) + "\n")
