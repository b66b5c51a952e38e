"""Stage 1, ingest: image files and video frames become candidate source images.

Images are taken as they are (an exact duplicate by content is seen once, later). Videos are sampled
every `frame_interval_s` seconds; a frame within `near_duplicate_bits` pHash bits of the last kept
frame of the same video is skipped (a still shot gives one candidate, not hundreds).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from fedbench.data.images import ImageReadError, decode_image
from fedbench.engine.stage import Outcome, Record, Rejected, Stage, short_hash
from fedbench.models.store import sha256_of


def phash(rgb: np.ndarray) -> int:
    """64-bit perceptual hash (OpenCV's img_hash PHash), as an int."""
    bits = cv2.img_hash.pHash(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return int.from_bytes(bits.tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _slug(path: Path) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "-" for c in path.stem.lower())
    return keep.strip("-")[:40] or "image"


def source_id(index: int, relative: str, path: Path) -> str:
    """The id of an input file: its name's slug and a hash of (which --sources entry, its path inside
    that entry). Never the absolute path: every later choice keys on ids (target classes, ground-truth
    seeds, identity-cluster names and so the seeded test/train order), so the same photos copied to
    another folder (a fresh tmp dir per run) must get the same ids, or the split changes from run to run."""
    return f"{_slug(path)}-{short_hash(index, relative)}"


def discover(sources: list[Path], config_exts: tuple[list[str], list[str]]) -> Iterator[Record]:
    """Every image or video under `sources` (files or folders), in a stable order, one at a time."""
    image_exts, video_exts = ({e.lower() for e in x} for x in config_exts)
    for index, src in enumerate(sources):
        src = Path(src)
        if src.is_file():
            files: Iterator[tuple[Path, str]] = iter([(src, src.name)])
        elif src.is_dir():
            files = ((Path(d) / f, (Path(d) / f).relative_to(src).as_posix())
                     for d, dirs, fs in sorted(os.walk(src)) for f in sorted(fs))
        else:
            yield {"id": f"missing-{short_hash(index, src.name)}", "path": str(src), "kind": "missing"}
            continue
        for f, relative in files:
            ext = f.suffix.lower()
            if ext in image_exts or ext in video_exts:
                yield {"id": source_id(index, relative, f), "path": str(f.resolve()),
                       "kind": "video" if ext in video_exts else "image"}


class Ingest(Stage):
    name = "ingest"

    def process(self, record: Record) -> Outcome:
        path = Path(record["path"])
        if record["kind"] == "missing":
            return Rejected(f"{path}: no such file or folder")
        if record["kind"] == "image":
            return self._image(record, path)
        return self._video(record, path)

    def _image(self, record: Record, path: Path) -> Outcome:
        try:
            data = path.read_bytes()
            rgb = decode_image(data, self.config.ingest.max_side).rgb
        except (OSError, ImageReadError) as exc:
            return Rejected(f"{path.name}: {exc}")
        return [{"id": record["id"], "origin": str(path), "image": str(path), "sha256": sha256_of(path),
                 "phash": f"{phash(rgb):016x}", "size": [rgb.shape[1], rgb.shape[0]]}]

    def _video(self, record: Record, path: Path) -> Outcome:
        cfg = self.config.ingest
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            return Rejected(f"{path.name}: cannot open the video")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        step = max(1, round(fps * cfg.frame_interval_s))
        out_dir = self.work / "frames"
        out_dir.mkdir(parents=True, exist_ok=True)
        frames: list[Record] = []
        last: int | None = None
        index = 0
        try:
            while True:
                ok = cap.grab()
                if not ok:
                    break
                if index % step == 0:
                    ok, bgr = cap.retrieve()
                    if ok:
                        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                        scale = cfg.max_side / max(rgb.shape[:2])
                        if scale < 1:
                            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                        h = phash(rgb)
                        if last is None or hamming(h, last) > cfg.near_duplicate_bits:
                            last = h
                            fid = f"{record['id']}-f{index:06d}"
                            dest = out_dir / f"{fid}.png"
                            tmp = dest.with_name(dest.name + ".tmp.png")
                            cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                            os.replace(tmp, dest)
                            frames.append({"id": fid, "origin": f"{path}#t={index / fps:.2f}s", "image": str(dest),
                                           "sha256": sha256_of(dest), "phash": f"{h:016x}",
                                           "size": [rgb.shape[1], rgb.shape[0]]})
                index += 1
        finally:
            cap.release()
        if not frames:
            return Rejected(f"{path.name}: no frame could be read")
        return frames
