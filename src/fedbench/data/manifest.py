"""Triplet manifests: read JSONL / CSV / Parquet, map foreign column names, validate before any work.

One row per triplet: `id, source, instruction, target, ground_truth` required; `source_expression,
identity, split, actions, meta` optional. Paths are relative to the manifest's folder and may not
leave it unless the caller allows it. Every problem names its row; all are reported at once.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fedbench.data.fields import actions_field, id_problem, meta_field, text_field
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


def _decode_utf8(path: Path, data: bytes) -> str:
    """The file's text; invalid UTF-8 is a ManifestError naming the line and column."""
    try:
        return data.decode("utf-8-sig")  # -sig: tolerate a byte-order mark
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ManifestError(path, [Problem(line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column "
                                                 f"{column}); save the manifest as UTF-8")]) from None


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """(row number, record) pairs; a record that cannot be parsed is the error text instead."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows: list[tuple[int, dict[str, Any] | str]] = []
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    rows.append((n, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"))
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    rows.append((n, record if isinstance(record, dict) else "a line must be a JSON object"))
                except json.JSONDecodeError as exc:
                    rows.append((n, f"invalid JSON: {exc.msg} at column {exc.colno}"))
        return rows
    if suffix == ".json":
        try:
            data = json.loads(_decode_utf8(path, path.read_bytes()))
        except json.JSONDecodeError as exc:
            raise ManifestError(path, [Problem(exc.lineno, f"invalid JSON: {exc.msg} at column {exc.colno}")]) from None
        if not isinstance(data, list):
            raise ManifestError(path, [Problem(0, "a .json manifest must hold a list of objects")])
        return [(n, r if isinstance(r, dict) else "an entry must be a JSON object") for n, r in enumerate(data, 1)]
    if suffix in (".csv", ".tsv"):
        text = _decode_utf8(path, path.read_bytes())
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
            return [(n, dict(r)) for n, r in enumerate(reader, 2)]  # row 1 is the header
        except csv.Error as exc:
            raise ManifestError(path, [Problem(0, f"not a readable {suffix[1:].upper()} file: {exc}")]) from None
    raise ManifestError(path, [Problem(0, f"unknown manifest format {suffix!r} (use .jsonl, .csv, .tsv or .parquet)")])


def _resolve(root: Path, value: str, allow_outside: bool,
             extra_roots: tuple[Path, ...] = ()) -> tuple[Path, str | None]:
    try:
        p = Path(value).expanduser()
        full = (p if p.is_absolute() else root / p).resolve()
        if not allow_outside and not any(full.is_relative_to(r) for r in (root, *extra_roots)):
            return full, f"path {value!r} leaves the manifest's folder {root} (pass --allow-outside to permit)"
        if not full.is_file():
            return full, f"file not found: {value!r} (looked at {full})"
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        return root, f"path {value[:80]!r} cannot be opened: {getattr(exc, 'strerror', None) or exc}"
    return full, None


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
        row_problems: list[str] = []
        values: dict[str, str | None] = {}
        for f in REQUIRED + ("source_expression", "identity", "split"):
            # Types first: a NaN, bool or dict must not become the text "nan", "True" or "{...}".
            values[f], bad = text_field(f, get(f), allow_int=f in ("id", "identity"))
            if bad:
                row_problems.append(bad)
        rid = values["id"]
        missing = [f for f in REQUIRED if values[f] is None and not any(p.startswith(f + " ") for p in row_problems)]
        if missing:
            cols = ", ".join(f"{f} (column {columns.get(f, f)!r})" for f in missing)
            row_problems.insert(0, f"missing {cols}")
        if any(values[f] is None for f in REQUIRED):
            problems.extend(Problem(n, msg, rid) for msg in row_problems)
            continue
        assert rid is not None
        bad_id = id_problem(rid)
        if bad_id:
            row_problems.append(bad_id)
        if rid in seen:
            row_problems.append(f"duplicate id (first seen on row {seen[rid]})")
        else:
            seen[rid] = n
        target = normalise_expression(values["target"])
        if target is None:
            row_problems.append(f"unknown target {values['target']!r}; expected one of {', '.join(EXPRESSIONS)}")
        src_expr_raw = values["source_expression"]
        src_expr = normalise_expression(src_expr_raw) if src_expr_raw else None
        if src_expr_raw and src_expr is None:
            row_problems.append(f"unknown source_expression {src_expr_raw!r}")
        resolved = {}
        for f in ("source", "ground_truth"):
            resolved[f], err = _resolve(root, values[f], allow_outside, extra_roots)
            if err:
                row_problems.append(f"{f}: {err}")
        meta, bad = meta_field(get("meta"))
        if bad:
            row_problems.append(bad)
        actions, bad = actions_field(get("actions"))
        if bad:
            row_problems.append(bad)
        if row_problems:
            problems.extend(Problem(n, msg, rid) for msg in row_problems)
            continue
        triplets.append(
            Triplet(
                id=rid, source=resolved["source"], instruction=values["instruction"], target=target,
                ground_truth=resolved["ground_truth"], source_expression=src_expr,
                identity=values["identity"], split=values["split"], actions=actions, meta=meta, row=n,
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
