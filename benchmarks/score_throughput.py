"""Throughput and memory benchmark of `fedbench.scoring.runner.score` on a 747-triplet benchmark.

Builds (outside the repo) a benchmark of unique images from the 30 PixelSmile fixture triplets, then
measures, each in a fresh Python process so that rusage peaks belong to that run alone:

* cold: every feature computed (empty feature cache), 3 images per triplet;
* warm: a second set of edits against the same cache (S and G cached), 1 image per triplet;
* memory: peak RSS of the scoring process tree, for every benchmark size in --sizes;
* floor: the backbones' own single-thread inference time per image, on already decoded images,
  scaled to the work each run must do and divided by the worker count.

Usage:  .venv/bin/python benchmarks/score_throughput.py [--workers N] [--sizes 747,187] [--workdir DIR]
                                                        [--wait-quiet SECONDS] [--retries N]
Figures go to stdout and to benchmarks/results/score_throughput.json. Every run also records how much
CPU other processes took meanwhile: on a shared machine use --wait-quiet, and trust no timing with a
warning beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from _lock import hold_exclusive  # benchmarks/ is on sys.path when a harness runs as a script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures" / "pixelsmile"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "score_throughput.json"
TARGETS = {"cold_s": 60.0, "warm_s": 20.0, "ratio": 1.2}
LONG_SIDE = 1024
JPEG_QUALITY = 95
CROP_RANGE = (0.01, 0.05)  # fraction cut off each side: small enough to keep the face, large enough to vary
SAMPLE_INTERVAL_S = 0.2
LOCK_FILE = Path(tempfile.gettempdir()) / "fedbench-score-throughput.lock"
QUIET_SHARE = 0.10  # other processes using more of the cores than this make a timing unreliable
# Stage codes keep the RNG streams of sources, ground truths and both edit sets apart.
STAGES = {"source": 0, "ground_truth": 1, "edit_cold": 2, "edit_warm": 3}


# --------------------------------------------------------------------------- benchmark generation


@dataclass(frozen=True)
class CropJob:
    src: str  # absolute fixture path
    dst: str  # absolute output path
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the fixture image


def _fixture_triplets(fixtures: Path) -> list[dict[str, Any]]:
    with open(fixtures / "triplets.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _image_size(path: Path, sizes: dict[Path, tuple[int, int]]) -> tuple[int, int]:
    if path not in sizes:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read fixture image {path}")
        sizes[path] = (img.shape[1], img.shape[0])
    return sizes[path]


def _draw_box(rng: np.random.Generator, size: tuple[int, int], used: set[tuple[Path, tuple[int, ...]]],
              src: Path) -> tuple[int, int, int, int]:
    """A random crop of `src` never drawn before: repeats would fold into one cache entry."""
    w, h = size
    while True:
        left, top, right, bottom = rng.uniform(*CROP_RANGE, size=4)
        box = (round(left * w), round(top * h), w - round(right * w), h - round(bottom * h))
        if (src, box) not in used:
            used.add((src, box))
            return box


def _plan(fixtures: Path, root: Path, n: int, seed: int, stages: list[str]
          ) -> tuple[list[dict[str, Any]], list[CropJob]]:
    """Manifest rows and crop jobs; planned here (not in the pool) so that they do not depend on scheduling."""
    fixture_rows = _fixture_triplets(fixtures)
    sizes: dict[Path, tuple[int, int]] = {}
    used: set[tuple[Path, tuple[int, ...]]] = set()
    rows: list[dict[str, Any]] = []
    jobs: list[CropJob] = []
    for i in range(n):
        base = fixture_rows[i % len(fixture_rows)]
        tid = f"bench-{i:05d}"
        src, gt = fixtures / base["source"], fixtures / base["ground_truth"]
        outputs = {
            "source": (src, root / "images" / f"{tid}_source.jpg"),
            "ground_truth": (gt, root / "images" / f"{tid}_gt.jpg"),
            # the oracle edit: the ground truth again, under a crop of its own
            "edit_cold": (gt, root / "edits-cold" / f"{tid}.jpg"),
            "edit_warm": (gt, root / "edits-warm" / f"{tid}.jpg"),
        }
        for stage in stages:
            fixture, dst = outputs[stage]
            rng = np.random.default_rng([seed, STAGES[stage], i])
            jobs.append(CropJob(str(fixture), str(dst), _draw_box(rng, _image_size(fixture, sizes), used, fixture)))
        row = {k: v for k, v in base.items() if k not in ("id", "source", "ground_truth")}
        row.update(id=tid, source=f"images/{tid}_source.jpg", ground_truth=f"images/{tid}_gt.jpg")
        rows.append(row)
    return rows, jobs


_FIXTURE_CACHE: dict[str, np.ndarray] = {}


def _crop_one(job: CropJob) -> str:
    """Crop, resize to LONG_SIDE (INTER_AREA) and re-encode; returns the file's sha256."""
    if job.src not in _FIXTURE_CACHE:  # only a handful of fixture files: decode each once per process
        _FIXTURE_CACHE[job.src] = cv2.imread(job.src, cv2.IMREAD_COLOR)
    x0, y0, x1, y1 = job.box
    crop = _FIXTURE_CACHE[job.src][y0:y1, x0:x1]
    scale = LONG_SIDE / max(crop.shape[:2])
    size = (round(crop.shape[1] * scale), round(crop.shape[0] * scale))
    ok, buf = cv2.imencode(".jpg", cv2.resize(crop, size, interpolation=cv2.INTER_AREA),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {job.dst}")
    data = buf.tobytes()
    Path(job.dst).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def generate(fixtures: Path, root: Path, n: int, seed: int, stages: list[str], processes: int) -> Path:
    """Write the images of `stages` and the manifest under `root`; returns the manifest path."""
    for sub in ("images", "edits-cold", "edits-warm"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows, jobs = _plan(fixtures, root, n, seed, stages)
    with mp.get_context("fork").Pool(processes) as pool:
        digests = pool.map(_crop_one, jobs, chunksize=16)
    if len(set(digests)) != len(digests):  # the whole point: no two files may share a cache key
        raise RuntimeError(f"{len(digests) - len(set(digests))} duplicate images generated under {root}")
    manifest = root / "manifest.jsonl"
    with open(manifest, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return manifest


# --------------------------------------------------------------------------- memory sampling


def _children(pid: int) -> list[int]:
    """Direct children, from /proc/<pid>/task/*/children (psutil is not available; a full /proc scan costs ~4 ms)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids  # the process ended
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                kids.extend(int(k) for k in fh.read().split())
        except OSError:
            continue
    return kids


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    """Proportional set size: shares the pages that fork children have in common instead of counting them N times."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak of the summed VmRSS (and PSS) of this process and all its descendants, sampled every 0.2 s.

    PSS (smaps_rollup walks the page tables, ~2 ms a process) is read every `pss_every`-th sample
    only, to keep the sampler's own CPU use well under 1 % of a core.
    """

    def __init__(self, interval: float = SAMPLE_INTERVAL_S, pss_every: int = 5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.pss_every = pss_every
        self.peak_rss_kb = self.peak_pss_kb = self.peak_procs = self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def sample(self, with_pss: bool = False) -> None:
        pids = _tree(os.getpid())
        self.peak_rss_kb = max(self.peak_rss_kb, sum(_status_kb(p, "VmRSS") for p in pids))
        if with_pss or self.samples % self.pss_every == 0:
            self.peak_pss_kb = max(self.peak_pss_kb, sum(_pss_kb(p) for p in pids))
        self.peak_procs = max(self.peak_procs, len(pids))
        self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample(with_pss=True)


# --------------------------------------------------------------------------- other load on the machine


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (every field of /proc/stat's cpu line but idle, iowait)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the pool is joined when `score` returns)."""
    ru = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in ru)


def wait_quiet(limit_s: float, max_share: float = QUIET_SHARE, window_s: float = 5.0) -> float:
    """Wait (up to limit_s) until other processes use under `max_share` of the cores; returns the last share."""
    deadline, share = time.monotonic() + limit_s, 1.0
    while True:
        busy0 = _busy_cpu_s()
        time.sleep(window_s)
        share = (_busy_cpu_s() - busy0) / (window_s * len(os.sched_getaffinity(0)))
        if share < max_share or time.monotonic() > deadline:
            return round(share, 3)


def foreign_load(busy_before: float, own_before: float, wall: float) -> dict[str, float]:
    """How much of the machine other processes used during a run: non-zero means the timing is inflated."""
    foreign = max(0.0, (_busy_cpu_s() - busy_before) - (_own_cpu_s() - own_before))
    with open("/proc/loadavg", encoding="ascii") as fh:
        loadavg = float(fh.read().split()[0])
    return {"foreign_cpu_s": round(foreign, 1),
            "foreign_share_of_cores": round(foreign / (wall * len(os.sched_getaffinity(0))), 3),
            "loadavg_1min_after": loadavg}


# --------------------------------------------------------------------------- measured child processes


def measure_score(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: one `score` call, timed, with the memory of its process tree."""
    t_import = time.perf_counter()
    from fedbench.scoring.runner import score

    import_s = time.perf_counter() - t_import
    sampler = TreeSampler()
    sampler.start()
    busy0, own0 = _busy_cpu_s(), _own_cpu_s()
    t0 = time.perf_counter()
    result = score(spec["manifest"], spec["edits"], spec["out"], cache_path=spec["cache"],
                   workers=spec["workers"], progress=False)
    wall = time.perf_counter() - t0
    sampler.stop()
    load = foreign_load(busy0, own0, wall)
    # Linux reports ru_maxrss in KiB. RUSAGE_CHILDREN is the largest single (reaped) child, not a sum.
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "wall_s": round(wall, 2),
        "import_s": round(import_s, 2),
        "runner_timings_s": {k: round(v, 2) for k, v in result.timings.items()},
        **load,
        "triplets": len(result.samples),
        "status": dict(Counter(str(r["status"]) for r in result.samples)),
        "fed_mean": result.summary.get("overall", {}).get("fed", {}).get("mean"),  # sanity: oracle edits score high
        "peak_tree_rss_mb": round(sampler.peak_rss_kb / 1024, 1),
        "peak_tree_pss_mb": round(sampler.peak_pss_kb / 1024, 1),
        "peak_processes": sampler.peak_procs,
        "memory_samples": sampler.samples,
        "ru_maxrss_self_mb": round(self_kb / 1024, 1),
        "ru_maxrss_children_mb": round(child_kb / 1024, 1),
        "ru_maxrss_self_plus_children_mb": round((self_kb + child_kb) / 1024, 1),
    }


def _time_call(bucket: dict[str, float], name: str, fn: Any, *args: Any) -> Any:
    t = time.perf_counter()
    out = fn(*args)
    bucket[name] = bucket.get(name, 0.0) + (time.perf_counter() - t) * 1000.0
    return out


def measure_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process, single-threaded like a worker: backbone inference only, decode excluded."""
    from fedbench.data.images import decode_image
    from fedbench.faces.emotion import FaceView, grey_of
    from fedbench.faces.geometry import bounding_box
    from fedbench.faces.perception import Perceiver
    from fedbench.faces.quality import laplacian_quality

    perceiver = Perceiver(threads=1)  # the threads each scoring worker gets
    images = [decode_image(Path(p).read_bytes(), perceiver.config.max_side).rgb for p in spec["images"]]
    members = perceiver.emotion.members

    def one(rgb: np.ndarray, ms: dict[str, float]) -> int:
        h, w = rgb.shape[:2]
        faces = _time_call(ms, "landmarker", perceiver.landmarker.detect, rgb)
        grey = grey_of(rgb)  # preparation shared by members, not a backbone: outside the timers
        scale = np.array([w, h], dtype=np.float64)
        for obs in faces:
            px = obs.landmarks[:, :2].astype(np.float64) * scale
            box_px = bounding_box(obs.landmarks).astype(np.float64) * np.concatenate([scale, scale])
            view = FaceView(rgb=rgb, grey=grey, box_px=box_px, blendshapes=obs.blendshapes, landmarks_px=px)
            probs = {m.name: _time_call(ms, f"emotion:{m.name}", m.predict, view) for m in members}
            if perceiver.emotion.head is not None:
                _time_call(ms, "emotion:fusion-head", perceiver.emotion.head.predict, probs, obs.blendshapes, px)
            _time_call(ms, "identity", perceiver.identity.embed, rgb, px)
            _time_call(ms, "quality", laplacian_quality, rgb, px)
        return len(faces)

    for rgb in images[: spec["warmup"]]:  # first inferences allocate and JIT; keep them out of the figure
        one(rgb, {})
    _barrier(spec.get("barrier"), spec.get("parties", 1))
    totals: dict[str, float] = {}
    busy0, own0, t0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
    n_faces = sum(one(rgb, totals) for rgb in images)
    load = foreign_load(busy0, own0, time.perf_counter() - t0)
    per_image = {k: round(v / len(images), 2) for k, v in totals.items()}
    return {"images": len(images), "faces": n_faces, "warmup_images": spec["warmup"],
            "ms_per_image": per_image, "total_ms_per_image": round(sum(totals.values()) / len(images), 2), **load}


def _barrier(directory: str | None, parties: int) -> None:
    """Concurrent floor children start timing together, so that every timed image runs under contention."""
    if not directory:
        return
    Path(directory, f"ready-{os.getpid()}").touch()
    while len(list(Path(directory).glob("ready-*"))) < parties:
        time.sleep(0.05)


WAIT_QUIET_S = 0.0  # set from --wait-quiet: every measurement first waits for the machine to calm down


def run_children(mode: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run `mode` in fresh interpreters, concurrently: rusage maxima are per process lifetime, so each
    measurement needs a process of its own; the floor runs one per worker to share the cores as they do."""
    env = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="3")
    if mode == "floor":
        env.setdefault("OMP_NUM_THREADS", "1")
    if WAIT_QUIET_S > 0:
        print(f"  other load before {mode}: {wait_quiet(WAIT_QUIET_S):.0%} of the cores", flush=True)
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), f"--_child={mode}", json.dumps(spec)],
                              env=env, stdout=subprocess.PIPE, text=True) for spec in specs]
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode != 0 for p in procs):
        raise SystemExit(f"a {mode} child failed (exit codes {[p.returncode for p in procs]}; stderr is above)")
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def run_child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    return run_children(mode, [spec])[0]


def measure_quiet(mode: str, spec: dict[str, Any], prepare: Callable[[], None], retries: int) -> dict[str, Any]:
    """Run a measurement, again (after `prepare` restores its starting state) while other load spoilt it."""
    discarded: list[dict[str, Any]] = []
    while True:
        prepare()
        result = run_child(mode, spec)
        share = result["foreign_share_of_cores"]
        if share <= QUIET_SHARE or len(discarded) >= retries:
            return {**result, "discarded_attempts": discarded}
        print(f"  {mode}: other processes took {share:.0%} of the cores; measuring again", flush=True)
        discarded.append(result)


def _reset(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite file (with its WAL folded in), via the backup API."""
    _reset(dst, Path(f"{dst}-wal"), Path(f"{dst}-shm"))
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def measure_floors(images: list[str], workers: int, workdir: Path, retries: int) -> dict[str, Any]:
    """The floor alone (one process by itself), then `workers` copies at once on the same images.

    The plain floor assumes N workers go N times as fast as one; on machines whose cores share
    execution units (SMT, busy hosts) they do not, and the concurrent figure shows by how much.
    """
    alone = measure_quiet("floor", {"images": images, "warmup": 5}, lambda: None, retries)
    barrier = Path(tempfile.mkdtemp(prefix="barrier-", dir=workdir))
    busy0, own0, t0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
    together = run_children("floor", [{"images": images, "warmup": 5, "barrier": str(barrier),
                                       "parties": workers}] * workers)
    # measured here, around the whole group: inside a child the siblings would count as "other" load
    load = foreign_load(busy0, own0, time.perf_counter() - t0)
    mean = lambda pick: round(float(np.mean([pick(r) for r in together])), 2)  # noqa: E731 - over the copies
    per_image = {k: mean(lambda r, k=k: r["ms_per_image"][k]) for k in alone["ms_per_image"]}
    return {**alone, "concurrent": {"processes": workers, "ms_per_image": per_image,
                                    "total_ms_per_image": mean(lambda r: r["total_ms_per_image"]), **load}}


# --------------------------------------------------------------------------- orchestration


def _sample_images(root: Path, count: int) -> list[str]:
    """An even spread over the cold run's images: sources, ground truths and edits alike."""
    files = sorted(str(p) for sub in ("images", "edits-cold") for p in (root / sub).glob("*.jpg"))
    idx = np.linspace(0, len(files) - 1, num=min(count, len(files))).round().astype(int)
    return [files[i] for i in idx]


def _fedbench_code() -> dict[str, str]:
    """HEAD and the tree of src/ (+ '-dirty' with uncommitted changes there): the code the editable
    install runs. Others may commit while this runs; only a change under src/ matters to the timings."""
    def git(*cmd: str) -> str:
        run = subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=False)
        return run.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "src_tree": git("rev-parse", "--short", "HEAD:src") + ("-dirty" if dirty else "")}


def _machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform()}


def _python_name() -> str:
    exe = Path(sys.executable)
    return os.path.relpath(exe, REPO) if exe.is_relative_to(REPO) else str(exe)


def _ratio(measured: float, floor: float) -> float:
    return round(measured / floor, 2) if floor > 0 else float("nan")


def _print_table(res: dict[str, Any]) -> None:
    main, floor, n = res["runs"][str(res["main_size"])], res["floor"], res["main_size"]
    print(f"\nfedbench score throughput  ({res['machine']['cores']} cores, {res['workers']} workers, "
          f"seed {res['seed']})")
    print("floor = images x backbone ms per image / workers; 'alone' times one process by itself,")
    print(f"'contended' times {res['workers']} processes at once (what the workers actually get)")
    print(f"{'':32}{'measured':>9}{'floor alone':>12}{'ratio':>7}{'floor cont.':>12}{'ratio':>7}   target")
    for kind, images in (("cold", 3), ("warm", 1)):
        print(f"{kind} {n} triplets ({images * n} images)".ljust(32)
              + f"{main[kind]['wall_s']:>8.1f}s{res['floors_s'][kind]:>11.1f}s{res['ratios'][kind]:>7.2f}"
              + f"{res['contended_floors_s'][kind]:>11.1f}s{res['contended_ratios'][kind]:>7.2f}"
              + f"   <= {TARGETS[kind + '_s']:.0f} s, ratio <= {TARGETS['ratio']}")
    print(f"\nbackbone inference, 1 thread, decoded images ({floor['images']} images, {floor['faces']} faces), "
          "ms per image")
    print(f"  {'':30}{'alone':>8}{'contended':>11}")
    for name, ms in floor["ms_per_image"].items():
        print(f"  {name:30}{ms:>8.2f}{floor['concurrent']['ms_per_image'][name]:>11.2f}")
    print(f"  {'total':30}{floor['total_ms_per_image']:>8.2f}{floor['concurrent']['total_ms_per_image']:>11.2f}")
    print("\npeak memory of the scoring process tree (cold runs)")
    print(f"  {'triplets':>9}{'wall s':>9}{'sum RSS MB':>12}{'sum PSS MB':>12}{'maxrss self MB':>16}"
          f"{'maxrss child MB':>17}")
    for size, run in sorted(res["runs"].items(), key=lambda kv: int(kv[0])):
        c = run["cold"]
        print(f"  {size:>9}{c['wall_s']:>9.1f}{c['peak_tree_rss_mb']:>12.1f}{c['peak_tree_pss_mb']:>12.1f}"
              f"{c['ru_maxrss_self_mb']:>16.1f}{c['ru_maxrss_children_mb']:>17.1f}")
    shares = {f"{kind} {size}": run[kind]["foreign_share_of_cores"] for size, run in res["runs"].items()
              for kind in ("cold", "warm") if kind in run}
    shares["floor alone"] = floor["foreign_share_of_cores"]
    shares["floor contended"] = floor["concurrent"]["foreign_share_of_cores"]
    print("\nshare of the cores used by OTHER processes during each run: "
          + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    if max(shares.values()) > QUIET_SHARE:
        print("WARNING: the machine was not quiet; the timings above are inflated by other load")
    code = res["fedbench_code"]
    if code["start"]["src_tree"] != code["end"]["src_tree"]:
        print(f"WARNING: fedbench's source changed during the run: {code}")
    for kind in ("cold", "warm"):
        print(("\n" if kind == "cold" else "") + f"runner phases, {kind} {n}: {main[kind]['runner_timings_s']}")


def _bench_size(args: argparse.Namespace, workdir: Path, n: int, warm: bool) -> dict[str, Any]:
    root = workdir / f"bench-{n}"
    stages = ["source", "ground_truth", "edit_cold"] + (["edit_warm"] if warm else [])
    t = time.perf_counter()
    manifest = generate(args.fixtures, root, n, args.seed + n, stages, args.workers)
    print(f"[{n}] generated {len(stages) * n} unique images in {time.perf_counter() - t:.1f} s", flush=True)
    cache, snapshot = root / "features.sqlite", root / "features.after-cold.sqlite"
    cache_files = (cache, Path(f"{cache}-wal"), Path(f"{cache}-shm"))
    spec = {"manifest": str(manifest), "cache": str(cache), "workers": args.workers}
    # cold starts from no cache at all; every warm attempt from the cache exactly as cold left it
    cold = measure_quiet("score", {**spec, "edits": str(root / "edits-cold"), "out": str(root / "out-cold")},
                         lambda: _reset(*cache_files, root / "out-cold"), args.retries)
    print(f"[{n}] cold: {cold['wall_s']} s", flush=True)
    out = {"cold": cold}
    if warm:
        _copy_db(cache, snapshot)

        def restore() -> None:
            _reset(*cache_files, root / "out-warm")
            _copy_db(snapshot, cache)

        warm_spec = {**spec, "edits": str(root / "edits-warm"), "out": str(root / "out-warm")}
        out["warm"] = measure_quiet("score", warm_spec, restore, args.retries)
        print(f"[{n}] warm: {out['warm']['wall_s']} s", flush=True)
    return out


def _workdir(arg: Path | None) -> tuple[Path, bool]:
    """(workdir, is_temporary); refuses a folder inside the repo, where generated images must not land."""
    path = Path(arg).resolve() if arg else Path(tempfile.mkdtemp(prefix="fedbench-throughput-"))
    if path.is_relative_to(REPO):
        raise SystemExit(f"--workdir {path} is inside the repository; choose a folder outside {REPO}")
    path.mkdir(parents=True, exist_ok=True)
    return path, arg is None


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # runner.default_workers() counts the same way; not imported so that this process stays free of fedbench
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="scoring processes (default: cores)")
    ap.add_argument("--sizes", default="747,187", help="benchmark sizes; the first is timed cold and warm, "
                                                       "the others cold only (memory flatness)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir")
    ap.add_argument("--seed", type=int, default=20251127)
    ap.add_argument("--floor-images", type=int, default=100)
    ap.add_argument("--fixtures", type=Path, default=Path(os.environ.get("FEDBENCH_FIXTURES", DEFAULT_FIXTURES)))
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="before each measurement wait up to this long for other load to drop under 10 %%")
    ap.add_argument("--retries", type=int, default=1,
                    help="measure again when other processes took over 10 %% of the cores (default 1)")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    return ap.parse_args(argv)


def main(argv: list[str]) -> None:
    global WAIT_QUIET_S
    args = parse_args(argv)
    WAIT_QUIET_S = args.wait_quiet
    # Two copies of this benchmark on one machine ruin each other's timings: the second one waits.
    lock = hold_exclusive(LOCK_FILE, "score_throughput")  # noqa: F841 - held for the life of the process
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir, temporary = _workdir(args.workdir)
    print(f"workdir {workdir}", flush=True)
    code_at_start = _fedbench_code()
    try:
        runs = {str(n): _bench_size(args, workdir, n, warm=(i == 0)) for i, n in enumerate(sizes)}
        floor = measure_floors(_sample_images(workdir / f"bench-{sizes[0]}", args.floor_images), args.workers,
                               workdir, args.retries)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    n = sizes[0]
    images = {"cold": 3 * n, "warm": n}  # cold perceives S, G and E; warm only E
    floors = {k: v * floor["total_ms_per_image"] / 1000 / args.workers for k, v in images.items()}
    contended = {k: v * floor["concurrent"]["total_ms_per_image"] / 1000 / args.workers for k, v in images.items()}
    res = {
        "command": " ".join([_python_name(), *sys.argv]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fedbench_code": {"start": code_at_start, "end": _fedbench_code()},
        "machine": _machine(), "workers": args.workers, "seed": args.seed, "sizes": sizes, "main_size": n,
        "generation": {"crop_fraction_per_side": list(CROP_RANGE), "long_side": LONG_SIDE,
                       "interpolation": "INTER_AREA", "jpeg_quality": JPEG_QUALITY,
                       "seed_per_size": {str(s): args.seed + s for s in sizes}},
        "targets": TARGETS, "runs": runs, "floor": floor,
        "floors_s": {k: round(v, 2) for k, v in floors.items()},
        "ratios": {k: _ratio(runs[str(n)][k]["wall_s"], floors[k]) for k in images},
        "contended_floors_s": {k: round(v, 2) for k, v in contended.items()},
        "contended_ratios": {k: _ratio(runs[str(n)][k]["wall_s"], contended[k]) for k in images},
    }
    _print_table(res)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.results}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1].startswith("--_child="):
        mode, spec = sys.argv[1].split("=", 1)[1], json.loads(sys.argv[2])
        result = measure_score(spec) if mode == "score" else measure_floor(spec)
        sys.stdout.flush()
        print(json.dumps(result), flush=True)  # last stdout line: what the parent parses
        os._exit(0)  # the result is out; skip tearing down the backbones, which only costs time
    main(sys.argv[1:])
