"""Web thumbnails for the report gallery, made once and cached by file content.

A thumbnail is named by the sha256 of the image's bytes (and the thumbnail settings), so a source or
ground truth shared by five models is made once, and a report built again reuses every thumbnail
(from the user cache, `~/.cache/fedbench/thumbnails`, and from the report folder itself).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from fedbench.cpus import default_workers
from fedbench.paths import cache_root

THUMB_SIZE = 160
JPEG_QUALITY = 80
# Bump when the way thumbnails are made changes, so old cached files are not reused.
THUMB_VERSION = "1"


def default_cache_dir() -> Path:
    return cache_root() / "thumbnails"


def content_key(path: Path, size: int = THUMB_SIZE) -> str:
    h = hashlib.sha256(f"fedbench-thumb:{THUMB_VERSION}:{size}:{JPEG_QUALITY}:".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


def make_thumbnail(src: Path, dest: Path, size: int = THUMB_SIZE) -> None:
    """A JPEG no larger than size x size; written to a temporary name first (never half a file)."""
    with Image.open(src) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at the smallest DCT scale still >= size (much faster)
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                im.save(fh, "JPEG", quality=JPEG_QUALITY, optimize=True)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass
class ThumbnailStats:
    requested: int = 0  # image references (a shared source counts once per model)
    unique: int = 0  # distinct contents, i.e. thumbnails in the report
    made: int = 0  # newly decoded and resized in this build
    reused: int = 0  # found in the cache or in the report folder
    failed: list[str] = field(default_factory=list)  # unreadable images (the gallery says so)


class Thumbnails:
    """Thumbnails for a report folder: `thumbs/<key>.jpg` beside the page, backed by a user cache."""

    def __init__(self, out_dir: Path, cache_dir: Path | None = None, size: int = THUMB_SIZE,
                 workers: int | None = None) -> None:
        self.dir = out_dir / "thumbs"
        self.cache = (cache_dir or default_cache_dir()) / str(size)
        self.size = size
        self.workers = workers or min(4, default_workers())
        self.stats = ThumbnailStats()
        self._by_path: dict[Path, str | None] = {}
        self._by_key: dict[str, str | None] = {}

    def _key(self, path: Path) -> str | None:
        try:
            return content_key(path, self.size)
        except OSError:
            return None

    def _materialise(self, key: str, path: Path) -> tuple[str | None, bool]:
        """(thumbnail file name or None, made now) for one content key; `path` holds that content."""
        name = f"{key}.jpg"
        local, cached = self.dir / name, self.cache / name
        if local.is_file():
            return name, False
        made = False
        if not cached.is_file():
            try:
                make_thumbnail(path, cached, self.size)
            except (OSError, ValueError, Image.DecompressionBombError):
                return None, False
            made = True
        try:
            os.link(cached, local)  # same file system: no copy
        except OSError:
            shutil.copyfile(cached, local)
        return name, made

    def add(self, paths: list[Path]) -> dict[Path, str | None]:
        """Thumbnail file names (relative to `thumbs/`) for `paths`; None for an unreadable image."""
        self.stats.requested += len(paths)
        todo = sorted({p for p in paths if p not in self._by_path})
        self.dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(self.workers) as pool:  # hashing and Pillow release the GIL
            keys = dict(zip(todo, pool.map(self._key, todo)))
            by_key: dict[str, Path] = {}
            for p, k in keys.items():
                if k is not None and k not in self._by_key:
                    by_key.setdefault(k, p)
            for k, (name, made) in zip(by_key, pool.map(self._materialise, by_key, by_key.values())):
                self._by_key[k] = name
                if name is None:
                    self.stats.failed.append(str(by_key[k]))
                elif made:
                    self.stats.made += 1
                else:
                    self.stats.reused += 1
        for p, k in keys.items():
            self._by_path[p] = None if k is None else self._by_key.get(k)
            if k is None:
                self.stats.failed.append(str(p))
        self.stats.unique = len({n for n in self._by_key.values() if n})
        return {p: self._by_path[p] for p in paths}

    def prune(self) -> int:
        """Remove thumbnails in the report folder that this build does not use (from older builds)."""
        keep = {n for n in self._by_key.values() if n}
        removed = 0
        for f in self.dir.glob("*.jpg"):
            if f.name not in keep:
                f.unlink()
                removed += 1
        return removed
