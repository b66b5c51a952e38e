"""Memory and throughput of `fedbench build` (the build engine) as the number of inputs grows.

Generates up to max(--sizes) small face images (128-192 px; default 20,000) under --work, from the
public-domain portraits (skimage's astronaut, matplotlib's Grace Hopper) and the shared PixelSmile
fixture portraits: random crops, shifts, scales, small rotations, brightness/contrast changes and
flips, so no two files share content (the feature cache and pHash dedupe see different images). A
share of the inputs is faceless (smooth noise and shapes), has a face too small for the face filter,
or is broken (garbage bytes, truncated JPEGs, images under 32 px), so every rejection path runs.

Then, for every size, it builds the first N inputs into a build folder of its own, each in a fresh
Python process, with a config that bounds the late stages (small per-class quotas, so the target
stage's class cap limits ground-truth work; one ground-truth seed; the `warp` editor), and samples
every 0.25 s with psutil: the RSS of the build's main process, and the sum and the largest RSS of
its pool workers. It reports per-stage inputs, outputs, rejections, seconds and candidates per
second (from `BuildResult.counts`), and the peak memory of each stage.

Usage:  .venv/bin/python benchmarks/build_memory.py [--work /tmp/buildmem] [--sizes 1000,5000,20000]
                                                    [--workers N] [--keep-builds]
Figures go to stdout and to benchmarks/results/build_memory.json. It prints PASS when the peak
main-process RSS at the largest size is within 1.25x (+20 MB) of the smallest size's, else FAIL
(and exits 1). Timings on a shared machine carry the other load, which the results record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _lock import hold_exclusive  # benchmarks/ is on sys.path when a harness runs as a script

if TYPE_CHECKING:
    import numpy as np

# This process only orchestrates: generation and every build run in fresh child processes, so that
# the kernel's ru_maxrss of a build (which counts the RSS of the process that started it, carried
# across fork and exec) is the build's own. Keep heavy imports (numpy, cv2, fedbench) out of here.

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures" / "pixelsmile"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "build_memory.json"
DEFAULT_SIZES = "1000,5000,20000"
LOCK_FILE = Path(tempfile.gettempdir()) / "fedbench-build-memory.lock"
SAMPLE_INTERVAL_S = 0.25
FLAT_RATIO, FLAT_SLACK_MB = 1.25, 20.0
QUIET_SHARE = 0.10
GENERATOR_VERSION = 2  # bump when the generated images change: a --work folder is then regenerated

# What each input is. Faces dominate, so that every later stage has work.
KIND_SHARES = {"face": 0.84, "small_face": 0.04, "faceless": 0.08, "broken": 0.04}
OUT_SIDE = (128, 192)  # output long side, px
FACE_SPAN = (1.5, 2.4)  # crop side as a multiple of the face box's larger side
SMALL_FACE_PX = (16, 34)  # face box height of the small faces: under min_face_px (or not found at all)
MIN_FACE_PX = 40

# The build: late stages bounded by the class caps (cap = oversample x (per_class + train_per_class)
# = 12 per class, 84 ground-truth candidates in all), whatever the number of inputs.
BUILD_SETTINGS: dict[str, Any] = {
    "per_class": 2, "train_per_class": 6,
    "face": {"min_face_px": MIN_FACE_PX},
    "ground_truth": {"editor": "warp", "seeds": 1},
    # warp makes geometric edits only; the thresholds of tests/integration/test_build_engine.py
    "verify": {"min_identity": 0.3, "min_emotion": 0.05, "min_actions": 0.0, "min_background": 0.5,
               "min_quality": 0.3},
}
STAGE_ORDER = ["ingest", "face", "label", "target", "instruction", "ground_truth", "verify", "split"]


# --------------------------------------------------------------------------- input generation


def _load_bases(fixtures: Path) -> dict[str, np.ndarray]:
    """The portraits variants are cut from, as RGB at most 512 px on the long side."""
    import cv2
    import numpy as np

    from fedbench.data.images import decode_image
    from fedbench.demo import public_domain_faces

    bases = dict(public_domain_faces())
    files = sorted((fixtures / "blend").glob("*.jpg")) + sorted((fixtures / "slider").glob("*/*.avif"))[::4]
    if not files:
        print(f"note: no fixture portraits under {fixtures}; using the public-domain faces only", flush=True)
    for f in files:
        key = f"{f.parent.name}-{f.stem}"
        bases[key] = decode_image(f.read_bytes(), 512).rgb
    out = {}
    for key, rgb in bases.items():
        scale = 512 / max(rgb.shape[:2])
        out[key] = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    return out


def _face_boxes(bases: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Pixel box (x0, y0, x1, y1) of the largest face of each base; bases without one are dropped."""
    import numpy as np

    from fedbench.faces.geometry import bounding_box
    from fedbench.faces.landmarks import FaceLandmarker

    boxes: dict[str, list[float]] = {}
    landmarker = FaceLandmarker(max_faces=1)
    try:
        for key, rgb in bases.items():
            faces = landmarker.detect(rgb)
            if faces:
                h, w = rgb.shape[:2]
                boxes[key] = (bounding_box(faces[0].landmarks) * np.array([w, h, w, h])).round(1).tolist()
    finally:
        landmarker.close()
    return boxes


def _kind(u: float) -> str:
    acc = 0.0
    for kind, share in KIND_SHARES.items():
        acc += share
        if u < acc:
            return kind
    return "face"


def _crop_face(rgb: np.ndarray, box: list[float], rng: np.random.Generator, span: tuple[float, float]) -> np.ndarray:
    import cv2
    import numpy as np

    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    face = max(x1 - x0, y1 - y0)
    side = min(face * rng.uniform(*span), w, h)
    cx = (x0 + x1) / 2 + rng.uniform(-0.12, 0.12) * side
    cy = (y0 + y1) / 2 + rng.uniform(-0.12, 0.12) * side
    left = int(np.clip(cx - side / 2, 0, w - side))
    top = int(np.clip(cy - side / 2, 0, h - side))
    aspect = rng.uniform(0.8, 1.0)  # some portrait-shaped crops
    crop = rgb[top:top + int(side), left + int(side * (1 - aspect) / 2):left + int(side * (1 + aspect) / 2)]
    angle = rng.uniform(-8, 8)
    if abs(angle) > 1:
        ch, cw = crop.shape[:2]
        m = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
        crop = cv2.warpAffine(crop, m, (cw, ch), borderMode=cv2.BORDER_REFLECT101)
    return crop


def _faceless(rng: np.random.Generator, side: int) -> np.ndarray:
    """Smooth colour noise with a few shapes: textured, but no face."""
    import cv2
    import numpy as np

    small = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    img = cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(1, 5))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        p = rng.integers(0, side, 4)
        if rng.random() < 0.5:
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, -1)
        else:
            cv2.circle(img, (int(p[0]), int(p[1])), int(p[2] // 3 + 4), colour, -1)
    return img


def _encode(rgb: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if rng.random() < 0.15:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        ext = ".png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
        ext = ".jpg"
    if not ok:
        raise RuntimeError("encoding failed")
    return buf.tobytes(), ext


def make_input(i: int, seed: int, bases: dict[str, np.ndarray], boxes: dict[str, list[float]],
               names: list[str]) -> tuple[str, bytes]:
    """Input number i (deterministic in seed and i alone): its file name and bytes."""
    import cv2
    import numpy as np

    rng = np.random.default_rng([seed, i])
    kind = _kind(rng.random())
    out_side = int(rng.integers(OUT_SIDE[0], OUT_SIDE[1] + 1))
    if kind == "broken":
        how = ("garbage", "truncated", "tiny")[int(rng.integers(0, 3))]
        if how == "garbage":
            return f"{i:06d}-broken-garbage.jpg", b"\xff\xd8\xff\xe0" + rng.bytes(int(rng.integers(50, 3000)))
        base = names[int(rng.integers(0, len(names)))]
        crop = _crop_face(bases[base], boxes[base], rng, FACE_SPAN)
        side = 24 if how == "tiny" else out_side  # under the decoder's 32 px minimum
        img = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        data = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
        if how == "truncated":
            data = data[: len(data) * 2 // 3]
        return f"{i:06d}-broken-{how}.jpg", data
    if kind == "faceless":
        img, label = _faceless(rng, out_side), "faceless-noise"
    else:
        base = names[int(rng.integers(0, len(names)))]
        if kind == "face":
            crop = _crop_face(bases[base], boxes[base], rng, FACE_SPAN)
            scale = out_side / max(crop.shape[:2])
        else:  # the whole portrait, shrunk until its face is SMALL_FACE_PX high, on a faceless canvas
            crop = bases[base]
            x0, y0, x1, y1 = boxes[base]
            scale = rng.uniform(*SMALL_FACE_PX) / (y1 - y0)
        img = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
        if kind == "small_face":
            canvas = _faceless(rng, out_side)
            cx, cy = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale  # a big portrait: keep the face's part
            top = int(np.clip(cy - out_side / 2, 0, max(0, img.shape[0] - out_side)))
            left = int(np.clip(cx - out_side / 2, 0, max(0, img.shape[1] - out_side)))
            img = img[top:top + out_side, left:left + out_side]
            h, w = img.shape[:2]
            top, left = int(rng.integers(0, out_side - h + 1)), int(rng.integers(0, out_side - w + 1))
            canvas[top:top + h, left:left + w] = img
            img = canvas
        if rng.random() < 0.5:
            img = img[:, ::-1]
        alpha, beta = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
        img = cv2.convertScaleAbs(np.ascontiguousarray(img), alpha=alpha, beta=beta)
        label = f"{kind.replace('_', '')}-{base}"
    data, ext = _encode(img, rng)
    return f"{i:06d}-{label}{ext}", data


def generate(work: Path, n: int, seed: int, fixtures: Path) -> dict[str, Any]:
    """The first n inputs under work/inputs/all (kept between runs: only missing ones are written)."""
    pool = work / "inputs" / "all"
    stamp = work / "inputs" / "generator.json"
    identity = {"version": GENERATOR_VERSION, "seed": seed, "fixtures": str(fixtures.resolve()),
                "kinds": KIND_SHARES, "out_side": OUT_SIDE, "small_face_px": SMALL_FACE_PX}
    identity = json.loads(json.dumps(identity))  # as it reads back (tuples become lists)
    if stamp.exists() and json.loads(stamp.read_text())["identity"] != identity:
        shutil.rmtree(work / "inputs")
    pool.mkdir(parents=True, exist_ok=True)
    info = json.loads(stamp.read_text()) if stamp.exists() else {"identity": identity, "files": []}
    files: list[str] = info["files"]
    t0, existing = time.perf_counter(), len(files)
    if len(files) < n:
        import cv2

        cv2.setNumThreads(1)
        bases = _load_bases(fixtures)
        boxes = info.get("boxes") or _face_boxes(bases)
        names = sorted(boxes)
        for i in range(len(files), n):
            name, data = make_input(i, seed, bases, boxes, names)
            (pool / name).write_bytes(data)
            files.append(name)
        info.update(files=files, boxes=boxes, bases=names)
        stamp.write_text(json.dumps(info))
    seconds = time.perf_counter() - t0
    kinds: dict[str, int] = {}
    for name in files[:n]:
        k = name.split("-")[1]
        kinds[k] = kinds.get(k, 0) + 1
    return {"generated": max(0, n - existing), "generated_s": round(seconds, 2), "bases": len(info.get("bases", [])),
            "kinds_in_largest": kinds, "files": files}


def size_folder(work: Path, files: list[str], n: int) -> Path:
    """work/inputs/n<N>: hard links to the first n inputs (the sizes share a prefix of one input set)."""
    folder = work / "inputs" / f"n{n}"
    want = set(files[:n])
    if folder.exists() and set(os.listdir(folder)) == want:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in files[:n]:
        os.link(work / "inputs" / "all" / name, folder / name)
    return folder


# --------------------------------------------------------------------------- measured build (child process)


class Sampler(threading.Thread):
    """RSS of this process and of its pool workers (spawned children running `spawn_main`)."""

    def __init__(self, work: Path, interval: float = SAMPLE_INTERVAL_S) -> None:
        import psutil

        super().__init__(daemon=True)
        self.psutil = psutil
        self.me = psutil.Process()
        self.interval = interval
        self.samples: list[tuple[float, int, int, int, int, int]] = []  # t, main, workers sum, max, n, other
        self._kinds: dict[int, bool] = {}  # pids known to be pool workers
        self._stop_event = threading.Event()
        # when each stage journal got its first row: the stage's start-up (pool spawn, models) is over
        self.journals = {name: work / f"{name}.jsonl" for name in STAGE_ORDER[:-1]}
        self.first_row_at: dict[str, float] = {}

    def _is_worker(self, p: Any) -> bool:
        """A pool worker: a direct child running spawn_main. (Workers start short-lived programs of
        their own at import, e.g. ldconfig, whose command line reads spawn_main until their exec.)
        Only a yes is remembered: until its exec, a new worker shows this process's command line."""
        if p.pid not in self._kinds:
            try:
                if not (p.ppid() == self.me.pid and "spawn_main" in " ".join(p.cmdline())):
                    return False
            except self.psutil.Error:
                return False
            self._kinds[p.pid] = True
        return True

    def sample(self) -> None:
        ps = self.psutil
        main = self.me.memory_info().rss
        workers, other = [], 0
        for p in self.me.children(recursive=True):
            try:
                rss = p.memory_info().rss
            except ps.Error:
                continue
            if rss == 0:
                continue  # a worker that exited and is not reaped yet (a zombie has no memory)
            if self._is_worker(p):
                workers.append(rss)
            else:
                other += rss  # multiprocessing's resource tracker, programs the workers start
        now = time.time()
        self.samples.append((now, main, sum(workers), max(workers, default=0), len(workers), other))
        for name, path in self.journals.items():
            if name not in self.first_row_at:
                try:
                    if path.stat().st_size > 0:
                        self.first_row_at[name] = now
                except OSError:
                    pass

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def _mb(b: float) -> float:
    return round(b / 2**20, 1)


def _peaks(samples: list[tuple[float, ...]]) -> dict[str, Any]:
    if not samples:
        return {"samples": 0}
    return {"main_rss_mb": _mb(max(s[1] for s in samples)), "workers_sum_rss_mb": _mb(max(s[2] for s in samples)),
            "worker_max_rss_mb": _mb(max(s[3] for s in samples)), "workers": max(s[4] for s in samples),
            "other_children_rss_mb": _mb(max(s[5] for s in samples)), "samples": len(samples)}


def _cpu_s() -> float:
    ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in ru)


def measure_build(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: one `build`, with its memory sampled and its stages timed."""
    from fedbench.engine import BuildConfig, build

    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)  # a fresh build: no journal of an earlier run may be seen
    config = BuildConfig.model_validate(spec["settings"])
    sampler = Sampler(out / "work")
    sampler.sample()
    baseline = _peaks(sampler.samples)["main_rss_mb"]  # after the imports, before any work
    sampler.start()
    t_start = time.time()
    t0 = time.perf_counter()
    result = build([spec["inputs"]], out, config, workers=spec["workers"], overwrite=True, progress=False)
    wall = time.perf_counter() - t0
    t_end = time.time()
    sampler.stop()
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # Stage windows: each stage ends when its done marker is written; the split ends with the build.
    ends = [(c.name, (out / "work" / f"{c.name}.done").stat().st_mtime if c.name != "split" else t_end)
            for c in result.counts]
    stages, start = {}, t_start
    for c, (_, end) in zip(result.counts, ends):
        window = [s for s in sampler.samples if start <= s[0] <= end]
        first = sampler.first_row_at.get(c.name)
        # start-up: from the stage's start to its first journal row (worker spawn and setup, to within a sample)
        startup = round(first - start, 2) if first is not None and c.name != "split" else None
        steady = (round((c.inputs - 1) / (end - first), 1) if first is not None and end - first > 1.0
                  and c.inputs > 1 else None)
        stages[c.name] = {"inputs": c.inputs, "outputs": c.outputs, "rejected": c.rejected, "seconds": c.seconds,
                          "candidates_per_s": round(c.inputs / c.seconds, 1) if c.seconds > 0 else None,
                          "startup_s": startup, "steady_candidates_per_s": steady,
                          "reasons": c.reasons, "peak": _peaks(window)}
        start = end
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": round(wall, 2), "main_rss_after_import_mb": baseline,
            "cpu_s_main": round(me.ru_utime + me.ru_stime, 1), "peak": _peaks(sampler.samples),
            "ru_maxrss_main_mb": round(self_kb / 1024, 1), "ru_maxrss_largest_worker_mb": round(child_kb / 1024, 1),
            "stages": stages, "test": sum(v["test"] for v in result.per_class.values()),
            "train": sum(v["train"] for v in result.per_class.values()), "cpu_s_main_and_workers": round(_cpu_s(), 1)}


# --------------------------------------------------------------------------- orchestration


def _busy_cpu_s() -> float:
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> list[float]:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def _child(mode: str, spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run `mode` in a fresh interpreter; (its result, wall seconds)."""
    env = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="3")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), f"--_child={mode}", json.dumps(spec)],
                          env=env, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the {mode} child failed (exit {proc.returncode}; its stderr is above)")
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def run_build(spec: dict[str, Any]) -> dict[str, Any]:
    busy0, load0 = _busy_cpu_s(), _loadavg()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result, wall = _child("build", spec)
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the build and its reaped workers
    own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    foreign = max(0.0, _busy_cpu_s() - busy0 - own)
    result["load"] = {"loadavg_before": load0, "loadavg_after": _loadavg(), "own_cpu_s": round(own, 1),
                      "foreign_cpu_s": round(foreign, 1),
                      "foreign_share_of_cores": round(foreign / (wall * len(os.sched_getaffinity(0))), 3)}
    return result


def _git(*cmd: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=False).stdout.strip()


def _code() -> dict[str, str]:
    """HEAD, and the tree of src/ with a fingerprint of any uncommitted change there: the code the
    editable install runs."""
    import hashlib

    diff = _git("diff", "HEAD", "--", "src")
    dirty = f"-dirty.{hashlib.sha256(diff.encode()).hexdigest()[:7]}" if diff else ""
    return {"commit": _git("rev-parse", "--short", "HEAD"),
            "src_tree": _git("rev-parse", "--short", "HEAD:src") + dirty}


def _source_changes(codes: list[dict[str, str]]) -> str | None:
    """None when every build saw one source tree; else which files under src/ differ."""
    trees = list(dict.fromkeys(c["src_tree"] for c in codes))
    if len(trees) == 1:
        return None
    first, last = (t.split("-dirty")[0] for t in (trees[0], trees[-1]))
    files = _git("diff", "--name-only", first, last).split() if first != last else []
    dirty = " (and uncommitted changes)" if any("-dirty" in t for t in trees) else ""
    return f"{' -> '.join(trees)}: {', '.join(files) or 'no committed file'}{dirty}"


def _machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform()}


def flatness(runs: dict[str, Any], key: str) -> dict[str, Any]:
    sizes = sorted(runs, key=int)
    lo, hi = runs[sizes[0]]["peak"][key], runs[sizes[-1]]["peak"][key]
    limit = round(FLAT_RATIO * lo + FLAT_SLACK_MB, 1)
    return {"smallest": int(sizes[0]), "largest": int(sizes[-1]), "smallest_mb": lo, "largest_mb": hi,
            "limit_mb": limit, "ratio": round(hi / lo, 3) if lo else None, "pass": hi <= limit}


def _print(res: dict[str, Any]) -> None:
    runs = res["runs"]
    sizes = sorted(runs, key=int)
    code = res["fedbench_code"]["start"]
    print(f"\nfedbench build memory  ({res['machine']['cores']} cores, {res['workers']} workers, "
          f"fedbench {code['commit']}, src tree {code['src_tree']})")
    print(f"{'inputs':>7}{'wall s':>9}{'main MB':>9}{'workers sum':>13}{'worker max':>12}{'ru main':>9}"
          f"{'ru worker':>11}{'test':>6}{'train':>6}{'other load':>12}")
    for n in sizes:
        r = runs[n]
        p = r["peak"]
        print(f"{n:>7}{r['wall_s']:>9.1f}{p['main_rss_mb']:>9.1f}{p['workers_sum_rss_mb']:>13.1f}"
              f"{p['worker_max_rss_mb']:>12.1f}{r['ru_maxrss_main_mb']:>9.1f}{r['ru_maxrss_largest_worker_mb']:>11.1f}"
              f"{r['test']:>6}{r['train']:>6}{r['load']['foreign_share_of_cores']:>11.0%}")
    print("(peak RSS in MB, sampled every 0.25 s; ru = the kernel's ru_maxrss of the main process and of the "
          "largest worker; other load = share of the cores other processes used meanwhile)")
    for n in sizes:
        print(f"\nper stage, {n} inputs")
        print(f"  {'stage':13}{'in':>7}{'out':>7}{'rejected':>9}{'seconds':>9}{'cand/s':>9}{'start-up s':>11}"
              f"{'steady/s':>9}{'main MB':>9}{'workers MB':>11}")
        for name in STAGE_ORDER:
            s = runs[n]["stages"].get(name)
            if s is None:
                continue
            cps = "-" if s["candidates_per_s"] is None else f"{s['candidates_per_s']:.1f}"
            pk = s["peak"]
            mem = (f"{pk['main_rss_mb']:>9.1f}{pk['workers_sum_rss_mb']:>11.1f}" if pk["samples"]
                   else f"{'-':>9}{'-':>11}")  # over before the next sample
            up = "-" if s["startup_s"] is None else f"{s['startup_s']:.1f}"
            steady = "-" if s["steady_candidates_per_s"] is None else f"{s['steady_candidates_per_s']:.1f}"
            print(f"  {name:13}{s['inputs']:>7}{s['outputs']:>7}{s['rejected']:>9}{s['seconds']:>9.1f}{cps:>9}"
                  f"{up:>11}{steady:>9}{mem}")
    print()
    for key, label in (("workers_sum_rss_mb", "info: peak workers (sum)"),
                       ("main_rss_mb", "FLATNESS: peak main-process")):
        f = res["flatness"][key]
        verdict = ("PASS" if f["pass"] else "FAIL") if key == "main_rss_mb" else ("flat" if f["pass"] else "NOT flat")
        print(f"{label} RSS {f['largest_mb']} MB at {f['largest']} inputs vs {f['smallest_mb']} MB at "
              f"{f['smallest']} (limit {f['limit_mb']} MB = {FLAT_RATIO}x + {FLAT_SLACK_MB:g} MB): {verdict}")
    if res["source_changes"] is not None:
        print(f"WARNING: fedbench's source changed during the run: {res['source_changes']}; "
              "the builds may not all have run the same code")
    worst = max(r["load"]["foreign_share_of_cores"] for r in runs.values())
    if worst > QUIET_SHARE:
        print(f"WARNING: other processes used up to {worst:.0%} of the cores during a build: "
              "the timings are inflated (memory figures are not affected)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fedbench-buildmem",
                    help="inputs and build folders go here, outside the repo (kept: a rerun reuses the inputs)")
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"input counts to build (default {DEFAULT_SIZES})")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="pool workers (default: cores)")
    ap.add_argument("--seed", type=int, default=20251127)
    ap.add_argument("--fixtures", type=Path, default=Path(os.environ.get("FEDBENCH_FIXTURES", DEFAULT_FIXTURES)))
    ap.add_argument("--keep-builds", action="store_true", help="keep each size's build folder (default: removed)")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if len(sizes) < 2:
        raise SystemExit("--sizes needs at least two sizes to judge flatness")
    work = args.work.resolve()
    if work.is_relative_to(REPO):
        raise SystemExit(f"--work {work} is inside the repository; choose a folder outside {REPO}")
    lock = hold_exclusive(LOCK_FILE, "build_memory")  # noqa: F841 - held for the life of the process
    code_start = _code()
    t_all = time.perf_counter()
    gen, _ = _child("generate", {"work": str(work), "n": sizes[-1], "seed": args.seed,
                                 "fixtures": str(args.fixtures)})
    print(f"inputs: {sizes[-1]} under {work / 'inputs'} ({gen['kinds_in_largest']}; from {gen['bases']} portraits; "
          f"{gen['generated']} new, in {gen['generated_s']} s)", flush=True)
    runs: dict[str, Any] = {}
    for n in sizes:
        folder = size_folder(work, gen["files"], n)
        out = work / "builds" / f"n{n}"
        spec = {"inputs": str(folder), "out": str(out), "workers": args.workers, "settings": BUILD_SETTINGS}
        print(f"[{n}] building ...", flush=True)
        code = _code()  # the source each build imports (others may commit to this tree meanwhile)
        runs[str(n)] = run_build(spec)
        r = runs[str(n)]
        r["fedbench_code"] = {"start": code, "end": _code()}
        print(f"[{n}] {r['wall_s']} s, peak main {r['peak']['main_rss_mb']} MB, workers "
              f"{r['peak']['workers_sum_rss_mb']} MB (largest {r['peak']['worker_max_rss_mb']} MB), other load "
              f"{r['load']['foreign_share_of_cores']:.0%}", flush=True)
        if not args.keep_builds:
            shutil.rmtree(out, ignore_errors=True)
    res = {
        "command": " ".join([os.path.relpath(sys.executable, REPO) if Path(sys.executable).is_relative_to(REPO)
                             else sys.executable, *sys.argv]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_s": round(time.perf_counter() - t_all, 1),
        "fedbench_code": {"start": code_start, "end": _code()},
        "machine": _machine(), "workers": args.workers, "sizes": sizes, "seed": args.seed,
        "inputs": {"generator_version": GENERATOR_VERSION, "kind_shares": KIND_SHARES,
                   "kinds_in_largest": gen["kinds_in_largest"], "portraits": gen["bases"],
                   "out_long_side_px": list(OUT_SIDE), "small_face_px": list(SMALL_FACE_PX),
                   "generated_s": gen["generated_s"]},
        "build_settings": BUILD_SETTINGS, "sample_interval_s": SAMPLE_INTERVAL_S,
        "flatness_rule": f"peak at the largest size <= {FLAT_RATIO} x peak at the smallest + {FLAT_SLACK_MB:g} MB",
        "runs": runs,
    }
    res["source_changes"] = _source_changes([c for n in sizes for c in runs[str(n)]["fedbench_code"].values()])
    res["flatness"] = {k: flatness(runs, k) for k in ("main_rss_mb", "workers_sum_rss_mb", "worker_max_rss_mb")}
    _print(res)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.results}")
    return 0 if res["flatness"]["main_rss_mb"]["pass"] else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1].startswith("--_child="):
        mode, spec = sys.argv[1].split("=", 1)[1], json.loads(sys.argv[2])
        if mode == "build":
            result = measure_build(spec)
        else:
            result = generate(Path(spec["work"]), spec["n"], spec["seed"], Path(spec["fixtures"]))
        sys.stdout.flush()
        print(json.dumps(result), flush=True)  # the last stdout line is what the parent reads
        os._exit(0)
    sys.exit(main(sys.argv[1:]))
