"""Manifests in the shapes the Hugging Face hub publishes them.

- a Parquet or Arrow file whose image columns are HF `Image` structs `{bytes, path}` (or plain paths);
- a folder of Parquet shards (`test-00000-of-00003.parquet`, ...), or a `datasets.save_to_disk` folder;
- `hf://datasets/ORG/NAME[@REVISION][/SUBFOLDER]`, downloaded with `huggingface_hub.snapshot_download`
  (a gated dataset needs its terms accepted and a token: `HF_TOKEN` or `hf auth login`).

Embedded images are written once to a content-addressed folder, `<cache>/embedded/<sha256>.<ext>`, so
every stage that takes paths (perception, editors, reports) works unchanged and the feature cache,
which keys by content, shares work with the same image read from a file. The rows then go through the
same validation as a JSONL manifest (`read_manifest`): one error lists every bad row.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from fedbench.data.manifest import REQUIRED, Manifest, ManifestError, Problem, read_manifest
from fedbench.paths import cache_root

HF_PREFIX = "hf://datasets/"
IMAGE_FIELDS = ("source", "ground_truth")  # manifest fields that may hold an embedded image
TABLE_SUFFIXES = (".parquet", ".arrow")
BATCH_ROWS = 64  # rows decoded at a time: a dataset's images never sit in memory all at once
SHARD = re.compile(r"^(?P<split>.+?)-(?P<index>\d{5})-of-(?P<count>\d{5})\.(parquet|arrow)$")
PIL_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "AVIF": "avif", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


def embedded_dir() -> Path:
    return cache_root() / "embedded"


def hf_url(path: str | Path) -> str | None:
    """The hf:// URL `path` spells, or None. A URL that went through pathlib has lost a slash."""
    text = str(path)
    if text.startswith("hf:/") and not text.startswith("hf://"):
        text = "hf://" + text[len("hf:/"):]
    return text if text.startswith("hf://") else None


def is_hub_manifest(path: str | Path) -> bool:
    """True for what this module reads: hf:// URLs, folders, .parquet and .arrow files."""
    text = str(path)
    if hf_url(text):
        return True
    p = Path(text).expanduser()
    return p.is_dir() or p.suffix.lower() in TABLE_SUFFIXES


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str | None
    subfolder: str | None


def parse_hf_url(url: str) -> HubRef:
    """'hf://datasets/ORG/NAME[@REV][/SUB/FOLDER]' -> HubRef; anything else is a ValueError."""
    if not url.startswith(HF_PREFIX):
        raise ValueError(f"{url!r}: expected hf://datasets/ORG/NAME[@REVISION][/SUBFOLDER] (only datasets are read)")
    parts = url[len(HF_PREFIX):].strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(f"{url!r}: expected hf://datasets/ORG/NAME[@REVISION][/SUBFOLDER]")
    name, _, revision = parts[1].partition("@")
    return HubRef(f"{parts[0]}/{name}", revision or None, "/".join(parts[2:]) or None)


def download(url: str) -> Path:
    """Fetch the dataset's table files with huggingface_hub (its own cache, its own token handling)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    ref = parse_hf_url(url)
    prefix = f"{ref.subfolder}/" if ref.subfolder else ""
    patterns = [f"{prefix}*.parquet", f"{prefix}**/*.parquet", f"{prefix}*.arrow", f"{prefix}**/*.arrow",
                f"{prefix}*.json", f"{prefix}**/*.json"]
    try:
        local = Path(snapshot_download(ref.repo_id, repo_type="dataset", revision=ref.revision,
                                       allow_patterns=patterns))
    except GatedRepoError as exc:
        raise ManifestError(Path(url), [Problem(0, f"{ref.repo_id} is gated: accept its terms on the hub, then "
                                                   f"set HF_TOKEN or run `hf auth login` ({exc.__class__.__name__})")])
    except RevisionNotFoundError:
        raise ManifestError(Path(url), [Problem(0, f"revision {ref.revision!r} not found in {ref.repo_id}")])
    except RepositoryNotFoundError:
        raise ManifestError(Path(url), [Problem(0, f"dataset {ref.repo_id} not found, or private and no token "
                                                   "with access is set (HF_TOKEN or `hf auth login`)")])
    except (HfHubHTTPError, OSError) as exc:  # offline, proxy, disk
        raise ManifestError(Path(url), [Problem(0, f"could not download {ref.repo_id}: {exc}")])
    return local / ref.subfolder if ref.subfolder else local


# --------------------------------------------------------------------------------------------- tables


@dataclass
class TablePart:
    """One file of a dataset (a shard), with the 1-based global row number its first row gets."""

    name: str
    first_row: int
    rows: int


def _hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The `huggingface` schema metadata's features (column -> feature spec), or {}."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return (meta.get("info") or {}).get("features") or {}


def _image_columns(schema: pa.Schema) -> list[str]:
    feats = _hf_features(schema)
    return [c for c, f in feats.items() if isinstance(f, dict) and f.get("_type") == "Image"]


def _open_arrow(path: Path) -> pa.Table:
    """An Arrow file: the IPC stream format `datasets` writes, or the random-access file format."""
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            pass
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _batches(path: Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        return pf.schema_arrow, pf.iter_batches(batch_size=BATCH_ROWS)
    table = _open_arrow(path)
    return table.schema, iter(table.to_batches(max_chunksize=BATCH_ROWS))


def _shard_files(folder: Path) -> list[Path]:
    """The table files of one split in `folder`, in order; refuses a mix of splits or a missing shard."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in TABLE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ManifestError(folder, [Problem(0, "no .parquet or .arrow files in this folder")])
    splits: dict[str, list[Path]] = {}
    for f in files:
        m = SHARD.match(f.name)
        splits.setdefault(m["split"] if m else f.parent.relative_to(folder).as_posix(), []).append(f)
    if len(splits) > 1:
        if "test" not in splits:
            names = ", ".join(sorted(splits))
            raise ManifestError(folder, [Problem(0, f"the folder holds several splits ({names}); pass the "
                                                    "folder or file of the one to use")])
        files = splits["test"]  # a benchmark's evaluation split
    problems = []
    counts = {int(m["count"]) for f in files if (m := SHARD.match(f.name))}
    if len(counts) == 1:
        have = {int(m["index"]) for f in files if (m := SHARD.match(f.name))}
        missing = sorted(set(range(counts.pop())) - have)
        problems += [Problem(0, f"shard {i:05d} is missing (files are named *-NNNNN-of-MMMMM)") for i in missing]
    if problems:
        raise ManifestError(folder, problems)
    return files


def _save_to_disk_table(folder: Path) -> pa.Table:
    """A `datasets.save_to_disk` folder (one Dataset, or a DatasetDict with a `test` split) as Arrow."""
    import datasets

    ds = datasets.load_from_disk(str(folder))
    if isinstance(ds, datasets.DatasetDict):
        if "test" in ds:
            ds = ds["test"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise ManifestError(folder, [Problem(0, f"a DatasetDict with splits {', '.join(ds)}: pass the folder "
                                                    "of the one to use (e.g. DIR/test)")])
    # Arrow format keeps images as their {bytes, path} structs (no PIL decoding) and applies any
    # select/shuffle indices the saved dataset carries.
    table = ds.with_format("arrow")[:]
    features = json.dumps({"info": {"features": ds.features.to_dict()}})
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"huggingface": features.encode()})


# ------------------------------------------------------------------------------------ embedded images


def materialise(data: bytes, hint: str | None = None, folder: Path | None = None) -> Path:
    """Write `data` once to `<folder>/<sha256>.<ext>` (atomically) and return that path."""
    folder = folder or embedded_dir()
    digest = hashlib.sha256(data).hexdigest()
    ext = None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            ext = PIL_EXT.get((im.format or "").upper())
    except Exception:  # not an image: keep the bytes; the scorer reports the row as unreadable
        pass
    if ext is None and hint and Path(hint).suffix:
        ext = Path(hint).suffix.lstrip(".").lower()
    path = folder / f"{digest}.{ext or 'img'}"
    if path.is_file() and path.stat().st_size == len(data):
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _image_value(value: Any, folder: Path) -> Any:
    """An image cell as the manifest expects it: a path string (materialised when embedded)."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data:
            return str(materialise(bytes(data), path, folder))
        return path  # a path-only Image struct: relative to the dataset's folder, as in JSONL
    if isinstance(value, (bytes, bytearray)):
        return str(materialise(bytes(value), None, folder)) if value else None
    return value


# -------------------------------------------------------------------------------------------- reading


def check_columns(where: Path, schema: pa.Schema, columns: dict[str, str], fields: tuple[str, ...] = REQUIRED) -> None:
    """Every field's column must exist; say which columns there are (and which are images)."""
    names = set(schema.names)
    missing = [f for f in fields if columns.get(f, f) not in names]
    if missing:
        images = set(_image_columns(schema))
        have = ", ".join(f"{n} (Image)" if n in images else n for n in schema.names)
        wanted = ", ".join(f"{f} (column {columns.get(f, f)!r})" for f in missing)
        raise ManifestError(where, [Problem(0, f"no column for {wanted}; the dataset has: {have}. "
                                               "Map yours with --columns field=column")])


def _records(parts: list[tuple[str, pa.Schema, Iterator[pa.RecordBatch]]], image_columns: list[str],
             folder: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[TablePart]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    spans: list[TablePart] = []
    image_cols = set(image_columns)
    for name, _schema, batches in parts:
        first = len(rows) + 1
        for batch in batches:
            for record in batch.to_pylist():
                for col in image_cols & record.keys():
                    record[col] = _image_value(record[col], folder)
                rows.append((len(rows) + 1, record))
        spans.append(TablePart(name, first, len(rows) + 1 - first))
    return rows, spans


def _locate(problem: Problem, spans: list[TablePart]) -> Problem:
    """Global row number -> 'file row N' when a dataset has several files."""
    for s in spans:
        if s.first_row <= problem.row < s.first_row + s.rows:
            return Problem(problem.row, f"{s.name} row {problem.row - s.first_row + 1}: {problem.message}",
                           problem.id)
    return problem


@dataclass
class HubTable:
    """A dataset's rows, read: embedded images already replaced by their materialised paths."""

    local: Path  # the file or folder read (an hf:// dataset's downloaded snapshot)
    root: Path  # what path-valued image cells are relative to
    rows: list[tuple[int, dict[str, Any]]]
    spans: list[TablePart]

    def locate(self, exc: ManifestError) -> ManifestError:
        """The same error with each row also named by its own file, when there are several files."""
        if len(self.spans) < 2:
            return exc
        return ManifestError(exc.path, [_locate(p, self.spans) for p in exc.problems])


def load_table(path: str | Path, columns: dict[str, str], image_folder: Path,
               fields: tuple[str, ...] = REQUIRED, image_fields: tuple[str, ...] = IMAGE_FIELDS) -> HubTable:
    """Read a Parquet/Arrow file, a shard or save_to_disk folder, or an hf:// dataset; check that each
    of `fields` has a column; materialise the embedded images of `image_fields` under `image_folder`."""
    url = hf_url(path)
    local = download(url) if url else Path(path).expanduser().resolve()
    if not local.exists():
        raise ManifestError(local, [Problem(0, "manifest file or folder not found")])
    if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
        table = _save_to_disk_table(local)
        parts = [(local.name, table.schema, iter(table.to_batches(max_chunksize=BATCH_ROWS)))]
        root = local
    else:
        files = _shard_files(local) if local.is_dir() else [local]
        root = local if local.is_dir() else local.parent
        parts = []
        for f in files:
            try:
                schema, batches = _batches(f)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ManifestError(f, [Problem(0, f"not a readable Parquet/Arrow file: {exc}")]) from None
            parts.append((f.relative_to(root).as_posix(), schema, batches))
    for name, schema, _ in parts:
        check_columns(root / name if len(parts) > 1 else local, schema, columns, fields)
    rows, spans = _records(parts, [columns.get(f, f) for f in image_fields], image_folder.expanduser().resolve())
    return HubTable(local, root, rows, spans)


def read_hub_manifest(path: str | Path, columns: dict[str, str] | None = None, allow_outside: bool = False,
                      image_folder: Path | None = None) -> Manifest:
    """Read a Parquet/Arrow file, a shard folder, a save_to_disk folder or an hf:// dataset as a Manifest.

    Path-valued image cells are relative to the dataset's folder (the file's folder, or the folder
    given); embedded ones are materialised under `image_folder` (default `<cache>/embedded`)."""
    columns = columns or {}
    folder = (image_folder or embedded_dir()).expanduser().resolve()
    t = load_table(path, columns, folder)
    try:
        return read_manifest(t.local, columns, allow_outside, rows=t.rows, root=t.root, extra_roots=(folder,))
    except ManifestError as exc:
        raise t.locate(exc) from None
