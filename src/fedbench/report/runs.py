"""Reading run folders for reports: `summary.json`, `samples.jsonl`, `run.json` and, for eval runs,
`generations.jsonl` and `generated/<id>.png`.

A report must never guess: a folder without `summary.json` or `samples.jsonl` is refused with an
error naming the file, and so is a file that does not parse. The manifest (for instructions and the
source / ground-truth images) is optional evidence: when it cannot be read the report still shows
every score and says why the pictures are missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedbench.data.manifest import Manifest, ManifestError, read_manifest
from fedbench.scoring.edits import EDIT_EXTENSIONS

GENERATED = "generated"  # where `fedbench eval` writes an editor's images inside its run folder


class RunError(ValueError):
    """A run folder that a report cannot use; the message names the file."""


@dataclass
class Run:
    name: str
    path: Path
    summary: dict[str, Any]
    samples: list[dict[str, Any]]
    run_info: dict[str, Any] = field(default_factory=dict)
    generations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def fedscore_version(self) -> str:
        return str(self.summary.get("fedscore_version", "?"))

    @property
    def by_id(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.samples}

    def manifest_path(self) -> Path | None:
        return _recorded_path(self.summary.get("manifest"), self.path)

    def edits_dir(self) -> Path | None:
        return _recorded_path(self.summary.get("edits"), self.path)

    def edit_image(self, sample_id: str) -> Path | None:
        """The edited image scored for `sample_id`: in the recorded edits folder, else in generated/."""
        for folder in (self.edits_dir(), self.path / GENERATED):
            if folder is None or not folder.is_dir():
                continue
            for ext in EDIT_EXTENSIONS:
                for candidate in (folder / f"{sample_id}{ext}", folder / f"{sample_id}{ext.upper()}"):
                    if candidate.is_file():
                        return candidate
        return None


def _recorded_path(value: Any, run_dir: Path) -> Path | None:
    """A path recorded in summary.json: absolute as written by the scorer; a relative one is tried
    from the working directory, then from the run folder (a run moved together with its data)."""
    if not value:
        return None
    p = Path(str(value)).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return run_dir / p


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object")
    return data


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunError(f"{path}: line {n}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "id" not in row:
                raise RunError(f"{path}: line {n}: expected an object with an 'id'")
            rows.append(row)
    return rows


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Load one run folder; RunError names the missing or broken file."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: not a folder (expected a run folder holding summary.json and samples.jsonl)")
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        hint = ""
        nested = sorted(p.parent for p in path.glob("*/summary.json"))[:3]
        if nested:
            hint = f"; run folders below it: {', '.join(str(p) for p in nested)}"
        raise RunError(f"{summary_path}: not found — {path} is not a scored run folder{hint}")
    summary = _read_json(summary_path)
    for key in ("overall", "per_class"):
        if key not in summary:
            raise RunError(f"{summary_path}: no {key!r} (not a fedbench summary)")
    samples_path = path / "samples.jsonl"
    if not samples_path.is_file():
        raise RunError(f"{samples_path}: not found (the per-sample rows of this run)")
    samples = _read_jsonl(samples_path)
    run_info = _read_json(path / "run.json") if (path / "run.json").is_file() else {}
    generations: dict[str, dict[str, Any]] = {}
    if (path / "generations.jsonl").is_file():
        # The log is appended to on resume; the last row of an id is the one that was scored.
        for row in _read_jsonl(path / "generations.jsonl"):
            generations[str(row["id"])] = row
    return Run(name=name or path.resolve().name, path=path, summary=summary, samples=samples,
               run_info=run_info, generations=generations)


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Load several runs; names are the folder names, made unique with the parent folder if needed."""
    if not paths:
        raise RunError("no run folders given")
    resolved = [Path(p).resolve() for p in paths]
    seen: set[Path] = set()
    for given, p in zip(paths, resolved):
        if p in seen:
            raise RunError(f"{given}: the same run folder is given twice")
        seen.add(p)
    bare = [p.name for p in resolved]
    names = [f"{p.parent.name}/{p.name}" if bare.count(p.name) > 1 else p.name for p in resolved]
    return [load_run(p, n) for p, n in zip(paths, names)]


@dataclass
class ManifestView:
    """The triplets behind a set of runs, or the reason they could not be read."""

    triplets: dict[str, Any]  # id -> fedbench.data.manifest.Triplet
    problems: list[str]


def read_manifests(runs: list[Run], override: Path | None = None, columns: dict[str, str] | None = None) -> ManifestView:
    """Triplets of every manifest the runs name (or `override`), merged by id.

    Paths in the manifest may leave its folder here: the report only reads images the scorer already
    read. A manifest that fails validation (moved images, a `--columns` mapping not recorded in the
    run) is reported as a problem, and the report goes on without its pictures.
    """
    paths: list[Path] = []
    problems: list[str] = []
    if override is not None:
        paths = [override]
    else:
        for run in runs:
            p = run.manifest_path()
            if p is None:
                problems.append(f"{run.path / 'summary.json'}: names no manifest")
            elif p not in paths:
                paths.append(p)
    triplets: dict[str, Any] = {}
    for p in paths:
        try:
            manifest: Manifest = read_manifest(p, columns, allow_outside=True)
        except ManifestError as exc:
            first = str(exc).splitlines()
            problems.append(f"manifest {p} could not be read ({first[1].strip() if len(first) > 1 else first[0]}); "
                            "its instructions and images are left out (pass --manifest/--columns to point at it)")
            continue
        for t in manifest:
            triplets.setdefault(t.id, t)
    return ManifestView(triplets, problems)
