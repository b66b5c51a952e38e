"""GPU smoke test of `fedbench train diffusers-lora`: the tiny random InstructPix2Pix pipeline trained
with CUDA and bf16 (fp16 where the card has no bf16), with and without gradient checkpointing; a
resume; the LoRA loaded into the `diffusers` editor on the GPU. Prints steps/s and peak CUDA memory.

Self-contained: it builds the tiny pipeline and a synthetic training set (drawn shapes, no faces, no
downloads) in a temporary folder, so it runs on a bare machine with only the repo and its .venv.
No validation pass (that needs the scoring models, fetched from PyPI on first use).

Usage:  benchmarks/gpu_train_smoke.sh [--steps 20] [--resolution 64] [--batch-size 8] [--json FILE]
        .venv/bin/python benchmarks/gpu_train_smoke.py --cpu-fallback    # check the script on a CPU
Exit codes: 0 all checks passed; 1 a check failed; 2 no CUDA (and no --cpu-fallback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def cuda_report() -> tuple[bool, str]:
    """(usable, a line that says why or what)."""
    import torch

    if torch.version.cuda is None:
        return False, (f"CUDA unavailable: torch {torch.__version__} is a CPU-only build (torch.version.cuda is None). "
                       "Install a CUDA build of torch in .venv (e.g. pip install torch --index-url "
                       "https://download.pytorch.org/whl/cu126) to run this smoke test on the GPU.")
    if not torch.cuda.is_available():
        return False, (f"CUDA unavailable: torch {torch.__version__} was built for CUDA {torch.version.cuda} but sees "
                       f"no device (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}; check the "
                       "driver with nvidia-smi).")
    props = torch.cuda.get_device_properties(0)
    return True, (f"CUDA: {props.name}, {props.total_memory / 2**30:.1f} GiB, torch {torch.__version__} "
                  f"(CUDA {torch.version.cuda}), bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")


def synthetic_pairs(root: Path, n: int, side: int = 128, seed: int = 0) -> Path:
    """n (source, target) image pairs: coloured discs on a gradient; the target moves and grows them."""
    import cv2

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        base = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)
        src, tgt = base.copy(), base.copy()
        for _ in range(3):
            c = rng.integers(20, side - 20, size=2)
            r = int(rng.integers(6, 16))
            colour = tuple(int(v) for v in rng.integers(0, 255, size=3))
            cv2.circle(src, (int(c[0]), int(c[1])), r, colour, -1)
            cv2.circle(tgt, (int(c[0]) + 4, int(c[1]) - 4), r + 3, colour, -1)
        for name, img in ((f"s{i:03d}.png", src), (f"t{i:03d}.png", tgt)):
            cv2.imwrite(str(root / name), img[..., ::-1])
        rows.append({"id": f"pair-{i:03d}", "source": f"s{i:03d}.png", "ground_truth": f"t{i:03d}.png",
                     "target": "happy", "instruction": "move the discs up and right and make them larger"})
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per timed run")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=32, help="synthetic training pairs")
    ap.add_argument("--mixed-precision", default="auto", help="auto (bf16, else fp16), bf16, fp16 or no")
    ap.add_argument("--cpu-fallback", action="store_true", help="without CUDA, run on the CPU in fp32 instead "
                    "of stopping (checks the script, not the GPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); on a busy "
                    "shared CPU, 1 avoids OpenMP spin contention")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cuda, line = cuda_report()
    print(line, flush=True)
    if not cuda and not args.cpu_fallback:
        print("stopping: pass --cpu-fallback to check the script on the CPU instead", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    mixed = args.mixed_precision if cuda else "no"

    from fedbench.editors import EditRequest, EditStatus, build_editor, load_editor_config
    from fedbench.testing.tiny_pipeline import build_tiny_instruct_pix2pix
    from fedbench.train.lora import LORA_FILE, LoraTrainConfig, train_lora

    report: dict[str, Any] = {"device": line, "python": platform.python_version(), "torch": torch.__version__,
                              "cpu_threads": torch.get_num_threads(),
                              "steps": args.steps, "resolution": args.resolution, "batch_size": args.batch_size,
                              "grad_accum": args.grad_accum, "runs": {}, "checks": {}}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fedbench-gpu-smoke-") as tmp:
        work = args.workdir or Path(tmp)
        tiny = build_tiny_instruct_pix2pix(work / "tiny")
        data = synthetic_pairs(work / "data", args.pairs)
        base = dict(base=str(tiny), data=data, resolution=args.resolution, batch_size=args.batch_size,
                    grad_accum=args.grad_accum, max_steps=args.steps, checkpoint_every=max(1, args.steps // 2),
                    val_size=0, rank=8, lr=1e-4, mixed_precision=mixed, device=device, progress=False)
        for name, gc in (("plain", False), ("gradient_checkpointing", True)):
            t0 = time.perf_counter()
            res = train_lora(LoraTrainConfig(out=work / name, gradient_checkpointing=gc, overwrite=True, **base))
            finite = all(math.isfinite(v) for v in res.losses)
            report["runs"][name] = {
                "mixed_precision": res.meta["settings"]["mixed_precision"], "steps_per_s": round(res.steps_per_s, 3),
                "samples_per_s": round(res.steps_per_s * args.batch_size * args.grad_accum, 1),
                "peak_cuda_memory_mb": res.meta["peak_cuda_memory_mb"], "first_loss": round(res.losses[0], 5),
                "last_loss": round(res.losses[-1], 5), "finite": finite, "wall_s": round(time.perf_counter() - t0, 1)}
            if not finite:
                failures.append(f"{name}: non-finite loss {res.losses}")
        # resume: two more steps continue the step count from the last checkpoint
        res = train_lora(LoraTrainConfig(out=work / "plain", resume=True, **{**base, "max_steps": args.steps + 2}))
        report["checks"]["resume"] = {"resumed_from": res.resumed_from, "steps": res.steps}
        if (res.resumed_from, res.steps) != (args.steps, args.steps + 2):
            failures.append(f"resume: from {res.resumed_from} to {res.steps}, expected {args.steps}..{args.steps + 2}")
        # the LoRA loads into the diffusers editor on the same device and edits an image
        dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(res.meta["settings"]["mixed_precision"], "float32")
        params = {"model": str(tiny), "lora": str(work / "plain"), "steps": 4, "resolution": args.resolution,
                  "device": device, "dtype": dtype}
        t0 = time.perf_counter()
        with build_editor(load_editor_config("diffusers", params)) as editor:
            out = editor.edit(EditRequest("smoke", data.parent / "s000.png", "move the discs", "happy", 0))
        report["checks"]["editor"] = {"status": out.status.value, "reason": out.reason, "dtype": dtype,
                                      "lora_file": (work / "plain" / LORA_FILE).is_file(),
                                      "seconds": round(time.perf_counter() - t0, 2)}
        if out.status != EditStatus.OK:
            failures.append(f"editor with the LoRA: {out.status.value}: {out.reason}")

    print(f"{'run':<24}{'precision':>10}{'steps/s':>10}{'samples/s':>11}{'peak MiB':>10}{'loss first→last':>20}")
    for name, r in report["runs"].items():
        peak = "—" if r["peak_cuda_memory_mb"] is None else f"{r['peak_cuda_memory_mb']:.0f}"
        print(f"{name:<24}{r['mixed_precision']:>10}{r['steps_per_s']:>10.2f}{r['samples_per_s']:>11.1f}{peak:>10}"
              f"{r['first_loss']:>10.4f}→{r['last_loss']:.4f}")
    print(f"resume: step {report['checks']['resume']['resumed_from']} → {report['checks']['resume']['steps']}; "
          f"editor with LoRA on {device}: {report['checks']['editor']['status']}")
    report["failures"] = failures
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    print("gpu_train_smoke: " + ("OK" if not failures else f"{len(failures)} check(s) failed")
          + ("" if cuda else " (CPU fallback: no GPU figures)"))
    return 1 if failures else 0


if __name__ == "__main__":  # the editor and scorer may start worker processes (spawn)
    sys.exit(main())
