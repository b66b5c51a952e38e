"""Where scoring time goes, stage by stage: per triplet, cold and warm, in one process.

`score_throughput.py` says how far the pipeline is from the backbones' floor; this says what the rest
is. It builds the same kind of benchmark (unique 1024 px crops of the PixelSmile fixtures), scores it
in-process with one worker (cold: empty feature cache; warm: a second set of edits against it) and
times each stage with exclusive clocks (a stage's time leaves out the stages it calls), so the stages
add up to the run's wall time. Figures are milliseconds per triplet on one thread; nothing is changed
in what is computed (the timers wrap the functions, the scores are the ordinary ones).

    PYTHONPATH=src .venv/bin/python benchmarks/score_breakdown.py [--n 60] [--workdir DIR] [--repeats 2]

Writes benchmarks/results/score_breakdown.json. Run it on a quiet machine: it is a single process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import score_throughput as throughput  # noqa: E402  (the same benchmark generator)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "score_breakdown.json"
BACKBONES = ("landmarker", "emotion members + head", "identity", "quality")
BACKGROUND = ("BG registration (ECC)", "BG registration applied", "BG colour", "BG SSIM", "BG views and masks")


class StageClock:
    """Exclusive wall time per stage: a stage's clock stops while a stage it calls runs."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []  # [stage, start, time spent in callees]

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([stage, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                name, start, inner = self._stack.pop()
                spent = time.perf_counter() - start
                self.ms[name] += (spent - inner) * 1000.0
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][2] += spent

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    def reset(self) -> None:
        self.ms.clear()
        self.calls.clear()


def _targets() -> list[tuple[str, Any, str]]:
    """(stage, owner, attribute): the functions and methods each stage is made of."""
    from fedbench.data import images
    from fedbench.faces import emotion, identity, landmarks, masks, perception, quality
    from fedbench.metrics import core, registration, ssim
    from fedbench.store import features

    return [
        ("decode", images, "decode_image"),
        ("landmarker", landmarks.FaceLandmarker, "detect"),
        ("emotion members + head", emotion.EmotionEnsemble, "predict"),
        ("emotion members + head", emotion, "grey_of"),
        ("identity", identity.SFace, "embed"),
        ("quality", quality, "laplacian_quality"),
        ("features (de)serialised", perception.ImageFeatures, "to_bytes"),
        ("features (de)serialised", perception.ImageFeatures, "from_bytes"),
        ("content hash", features, "content_key"),
        ("feature cache I/O", features.FeatureCache, "get"),
        ("feature cache I/O", features.FeatureCache, "get_raw"),
        ("feature cache I/O", features.FeatureCache, "has"),
        ("feature cache I/O", features.FeatureCache, "put_many"),
        ("BG registration (ECC)", registration, "register"),
        ("BG registration applied", registration, "apply"),
        ("BG colour", registration, "chroma_distance"),
        ("BG colour", registration, "chroma_view"),
        ("BG SSIM", ssim, "ssim_map_prepared"),
        ("BG SSIM", ssim, "prepare"),
        ("BG views and masks", images, "grey_view"),
        ("BG views and masks", masks, "face_mask"),
        ("metric core", core, "assess"),
    ]


def instrument(clock: StageClock) -> None:
    """Wrap every target where it is looked up: on its class, or in every fedbench module that
    imported the function by name."""
    for stage, owner, attr in _targets():
        original = getattr(owner, attr)
        if isinstance(owner, type):
            raw = owner.__dict__[attr]
            if isinstance(raw, (classmethod, staticmethod)):
                setattr(owner, attr, type(raw)(clock.wrap(stage, raw.__func__)))
            else:
                setattr(owner, attr, clock.wrap(stage, original))
            continue
        timed = clock.wrap(stage, original)
        for name, module in list(sys.modules.items()):
            if (name == "fedbench" or name.startswith("fedbench.")) and module is not None:
                for key, value in list(vars(module).items()):
                    if value is original:
                        setattr(module, key, timed)


def run(manifest: Path, edits: Path, cache: Path, clock: StageClock) -> dict[str, Any]:
    from fedbench.scoring.runner import score

    clock.reset()
    t0 = time.perf_counter()
    result = score(manifest, edits, None, cache_path=cache, workers=1, progress=False, n_bootstrap=0)
    wall_ms = (time.perf_counter() - t0) * 1000.0
    work_ms = (result.timings["references_s"] + result.timings["edits_s"]) * 1000.0
    n = len(result.samples)
    stages = {k: round(v / n, 2) for k, v in sorted(clock.ms.items(), key=lambda kv: -kv[1])}
    timed = sum(clock.ms.values())
    stages["other (pool, IPC, bookkeeping)"] = round((work_ms - timed) / n, 2)
    backbones = sum(stages.get(s, 0.0) for s in BACKBONES)
    background = sum(stages.get(s, 0.0) for s in BACKGROUND)
    per_triplet = work_ms / n
    return {
        "triplets": n,
        "wall_s": round(wall_ms / 1000.0, 2),
        "startup_s": round(result.timings["startup_s"], 2),
        "ms_per_triplet": round(per_triplet, 2),
        "stages_ms_per_triplet": stages,
        "calls": dict(clock.calls),
        "backbones_ms_per_triplet": round(backbones, 2),
        "background_measure_ms_per_triplet": round(background, 2),
        "ratio_to_backbones": round(per_triplet / backbones, 2) if backbones else None,
        "ratio_without_background_measure": round((per_triplet - background) / backbones, 2) if backbones else None,
    }


def _print(kind: str, res: dict[str, Any]) -> None:
    print(f"\n{kind}: {res['triplets']} triplets, {res['ms_per_triplet']:.1f} ms per triplet "
          f"(backbones {res['backbones_ms_per_triplet']:.1f}; ratio {res['ratio_to_backbones']}, "
          f"{res['ratio_without_background_measure']} without the background measure)")
    for stage, ms in res["stages_ms_per_triplet"].items():
        share = 100.0 * ms / res["ms_per_triplet"]
        print(f"  {stage:34}{ms:8.2f} ms {share:5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="triplets (default 60)")
    ap.add_argument("--fixtures", type=Path, default=throughput.DEFAULT_FIXTURES)
    ap.add_argument("--workdir", type=Path, default=None, help="outside the repo; default a temp dir")
    ap.add_argument("--repeats", type=int, default=2, help="cold+warm pairs; the fastest of each is kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)  # as a scoring worker runs
    root = args.workdir or Path(tempfile.mkdtemp(prefix="fedbench-breakdown-"))
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        throughput.generate(args.fixtures, root, args.n, args.seed,
                            ["source", "ground_truth", "edit_cold", "edit_warm"], 2)
    clock = StageClock()
    import fedbench.scoring.runner  # noqa: F401  (load every module before wrapping what they imported)
    import fedbench.scoring.worker  # noqa: F401
    instrument(clock)
    best: dict[str, dict[str, Any]] = {}
    for r in range(args.repeats):
        cache = root / f"cache-{r}.sqlite"
        cache.unlink(missing_ok=True)
        for kind in ("cold", "warm"):
            res = run(manifest, root / f"edits-{kind}", cache, clock)
            if kind not in best or res["ms_per_triplet"] < best[kind]["ms_per_triplet"]:
                best[kind] = res
    for kind in ("cold", "warm"):
        _print(kind, best[kind])
    out = {"command": "PYTHONPATH=src .venv/bin/python benchmarks/score_breakdown.py " + " ".join(sys.argv[1:]),
           "machine": throughput._machine(),
           "code": throughput._fedbench_code(), "n": args.n, "repeats": args.repeats, **best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
