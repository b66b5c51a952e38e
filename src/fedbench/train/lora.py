"""`fedbench train diffusers-lora`: LoRA on the UNet of an InstructPix2Pix-style pipeline.

The objective is InstructPix2Pix's (Brooks et al. 2023; diffusers' train_instruct_pix2pix.py): the
ground truth G is encoded to latents z (scaled), noised at a random timestep, and the UNet predicts
the noise (or the velocity, following the scheduler's `prediction_type`) from
[noisy z, latents of the source S] (the source latents unscaled, as the pipeline feeds them) and the
text embedding of the instruction. Conditioning dropout (per sample: text only, image only, or both
dropped, each with probability p) trains the unconditional branches that classifier-free guidance
uses at inference.

What the libraries do, they do here: peft injects and saves the adapter; accelerate handles the
device, mixed precision (bf16/fp16 autocast on CUDA; fp32 on the CPU), gradient accumulation,
gradient clipping, trackers, and the resumable state (optimizer, LR scheduler, micro-step counter,
RNG states, plus our sampling generator); diffusers provides the noise scheduler, the LR schedules,
`cast_training_params` and the LoRA file format (`save_lora_weights`).

Output folder:
    pytorch_lora_weights.safetensors   the adapter; loads with the `diffusers` editor's `lora` param
    training.json                      config, data sha256, seeds, versions, steps, last losses
    train_log.csv                      one row per optimizer step
    validation.csv                     FED-Score of each validation pass (when there is one)
    checkpoints/step-NNNNNN/           resumable state (`--resume` continues the latest)
    validation/step-NNNNNN/            the LoRA at that step and its `fedbench eval` run folder
    logs/                              TensorBoard events, when tensorboard is installed

Determinism: the data order of epoch e is a permutation drawn from (seed, e), and every random draw
of the loop (noise, timesteps, VAE sample, dropout, flips) comes from one CPU generator that is
saved in each checkpoint, so a resumed run on the CPU continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console

from fedbench.data.manifest import Manifest, Triplet
from fedbench.train.data import data_provenance, load_training_manifest

TRAINER = "fedbench train diffusers-lora"
TRAINER_VERSION = "1"
LORA_FILE = "pytorch_lora_weights.safetensors"
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
DEFAULT_TARGET_MODULES: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
# Settings a resumed run must share with the run it continues (others, like max_steps, may change).
_RESUME_KEYS = ("base", "pipeline", "data_sha256", "resolution", "batch_size", "grad_accum", "lr", "lr_scheduler",
                "warmup_steps", "rank", "alpha", "target_modules", "conditioning_dropout", "seed", "random_flip",
                "prompt_template", "mixed_precision", "val_ids")


class LoraTrainError(ValueError):
    """A setup problem (bad base model, bad data, a run folder that does not match): nothing trained."""


@dataclass
class LoraTrainConfig:
    base: str  # hub id or local folder of an InstructPix2Pix-style diffusers pipeline
    data: Path
    out: Path
    pipeline: str | None = None  # pipeline class name for validation (default: the model's own)
    val_data: Path | None = None  # held-out triplets; default: `val_size` rows held out of `data`
    val_size: int = 4
    val_every: int = 0  # optimizer steps between validation passes; 0: only after the last step
    val_at_start: bool = False  # also validate the base model (step 0)
    val_steps: int = 20  # inference steps of the validation generations
    val_resolution: int | None = None  # default: `resolution`
    resolution: int = 256
    batch_size: int = 4
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 1e-4
    lr_scheduler: str = "constant"  # any diffusers.optimization schedule name
    warmup_steps: int = 0
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    rank: int = 16
    alpha: float | None = None  # default: rank (scale 1)
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    conditioning_dropout: float = 0.05
    mixed_precision: str = "auto"  # auto: bf16 (else fp16) on CUDA, no (fp32) on the CPU
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    random_flip: bool = True  # mirror S and G together (an expression edit is symmetric)
    prompt_template: str = "{instruction}"  # the editor must use the same one at inference
    device: str = "auto"  # auto | cpu | cuda
    dataloader_workers: int = 0
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] | None = None
    allow_outside: bool = False
    resume: bool = False
    overwrite: bool = False
    score_workers: int | None = None
    cache_path: Path | None = None
    progress: bool = True


@dataclass
class LoraTrainResult:
    out: Path
    lora: Path
    steps: int
    resumed_from: int
    losses: list[float]
    validation: list[dict[str, Any]]
    seconds: float
    steps_per_s: float
    peak_memory_mb: float | None
    meta: dict[str, Any]


# --- data -----------------------------------------------------------------------------------------

def split_validation(triplets: Sequence[Triplet], n: int, seed: int) -> tuple[list[Triplet], list[Triplet], str]:
    """(train, val, how): about `n` rows held out as whole groups - a row's identity, else its source
    image (`train.data.group_of`), never single rows - so that a validation face is never seen in
    training; groups fill up to max(n, half the rows) and at least one stays for training."""
    from fedbench.train.data import group_of

    if n <= 0:
        return list(triplets), [], "none"
    if n >= len(triplets):
        raise LoraTrainError(f"--val-size {n} leaves no training data ({len(triplets)} rows)")
    rng = np.random.default_rng(seed)
    groups = [group_of(t.identity, t.source) for t in triplets]
    one_person = len(set(groups)) == 1 and all(t.identity for t in triplets)
    if one_person:  # no other face to hold out: other photos of that person (train.data.assign_folds does too)
        groups = [group_of(None, t.source) for t in triplets]
    counts = Counter(groups)
    order = sorted(counts)
    rng.shuffle(order)
    cap = max(n, len(triplets) // 2)  # one big identity must not take most of the training data
    held: set[str] = set()
    held_n = 0
    for g in order:
        if held_n >= n:
            break
        if held_n + counts[g] <= cap and len(held) < len(counts) - 1:
            held.add(g)
            held_n += counts[g]
    if not held:
        raise LoraTrainError(f"--val-size {n}: the {len(triplets)} rows come from {len(counts)} person/source "
                             "image group(s) that cannot be split with a face on each side; give --val-data "
                             "(other people) or --val-size 0")
    named = all(t.identity for t in triplets)
    mode = "source image (one person only)" if one_person else "identity" if named else "identity, else source image"
    how = f"{mode} ({len(held)} held out)"
    return ([t for t, g in zip(triplets, groups) if g not in held], [t for t, g in zip(triplets, groups) if g in held],
            how)


def _square(img: Any, size: int) -> Any:
    """Centre-crop to a square, resize to size x size (both images of a pair get the same treatment)."""
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


class PairDataset:
    """(source, ground truth, prompt) as tensors in [-1, 1], C x H x W. Decoding is lazy: a training
    set of 20k pairs does not sit in memory."""

    def __init__(self, triplets: Sequence[Triplet], resolution: int, template: str) -> None:
        self.triplets = list(triplets)
        self.resolution = resolution
        self.template = template

    def __len__(self) -> int:
        return len(self.triplets)

    def prompt(self, t: Triplet) -> str:
        return self.template.format(instruction=t.instruction, target=t.target,
                                    source_expression=t.source_expression or "")

    def _tensor(self, path: Path, row: Triplet) -> Any:
        import torch
        from PIL import Image

        from fedbench.editors.base import decode_full

        try:
            rgb = decode_full(path.read_bytes())
        except Exception as exc:
            raise LoraTrainError(f"row {row.row} ({row.id}): cannot read {path}: {exc}") from exc
        arr = np.asarray(_square(Image.fromarray(rgb), self.resolution), dtype=np.float32)
        return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> dict[str, Any]:
        t = self.triplets[i]
        return {"source": self._tensor(t.source, t), "target": self._tensor(t.ground_truth, t), "prompt": self.prompt(t)}


def check_images(triplets: Sequence[Triplet]) -> tuple[list[Triplet], Counter, list[dict[str, Any]]]:
    """Rows whose source or ground truth is not a readable image are skipped with a counted reason
    (header check: cheap for 20k rows; a file that fails later still names its row)."""
    from PIL import Image

    keep: list[Triplet] = []
    skipped: Counter = Counter()
    rows: list[dict[str, Any]] = []
    for t in triplets:
        reason = None
        for what, path in (("source", t.source), ("ground_truth", t.ground_truth)):
            try:
                with Image.open(path) as im:
                    im.size  # noqa: B018 - reading the header is the check
            except Exception:
                reason = f"unreadable_{what}"
                break
        if reason:
            skipped[reason] += 1
            rows.append({"id": t.id, "row": t.row, "reason": reason})
        else:
            keep.append(t)
    return keep, skipped, rows


# --- helpers --------------------------------------------------------------------------------------

class SamplingRNG:
    """The loop's one source of randomness, checkpointed with the run (accelerate calls
    state_dict / load_state_dict through `register_for_checkpointing`)."""

    def __init__(self, seed: int) -> None:
        import torch

        self.generator = torch.Generator("cpu").manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The data order of one epoch: a pure function of (seed, epoch), so a resumed run sees the same."""
    import torch

    g = torch.Generator("cpu").manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def resolve_mixed_precision(requested: str, cuda: bool) -> str:
    if requested not in MIXED_PRECISION:
        raise LoraTrainError(f"--mixed-precision {requested!r}; expected one of {', '.join(MIXED_PRECISION)}")
    if not cuda:
        if requested in ("fp16", "bf16"):
            raise LoraTrainError(f"--mixed-precision {requested} needs CUDA; on the CPU training runs in fp32 "
                                 "(--mixed-precision no or auto)")
        return "no"
    if requested == "auto":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def _latest_checkpoint(out: Path) -> Path | None:
    folders = sorted(p for p in (out / CHECKPOINTS).glob("step-*") if (p / STATE_FILE).is_file())
    return folders[-1] if folders else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _truncate_csv(path: Path, max_step: int) -> None:
    """Drop rows after `max_step` (steps a killed run logged after its last checkpoint: the resumed
    run does them again)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    keep = [r for r in rows if int(r["step"]) <= max_step]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("fedbench", "torch", "diffusers", "transformers", "accelerate", "peft", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


# --- training -------------------------------------------------------------------------------------

def _load_components(cfg: LoraTrainConfig, dtype: Any) -> dict[str, Any]:
    try:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as exc:
        raise LoraTrainError(f"LoRA training needs the diffusers extra: pip install 'fedbench[diffusers]' ({exc})") from exc
    kw = dict(cfg.load_kwargs)
    try:
        # Loaded straight in the training dtype (the frozen weights' precision): no cast afterwards.
        unet = UNet2DConditionModel.from_pretrained(cfg.base, subfolder="unet", dtype=dtype, **kw)
        vae = AutoencoderKL.from_pretrained(cfg.base, subfolder="vae", dtype=dtype, **kw)
        text_encoder = CLIPTextModel.from_pretrained(cfg.base, subfolder="text_encoder", dtype=dtype, **kw)
        tokenizer = CLIPTokenizer.from_pretrained(cfg.base, subfolder="tokenizer", **kw)
        noise_scheduler = DDPMScheduler.from_pretrained(cfg.base, subfolder="scheduler", **kw)
    except Exception as exc:  # from_pretrained raises many types (OSError, ValueError, HTTP errors)
        raise LoraTrainError(f"cannot load the InstructPix2Pix components (unet, vae, text_encoder, tokenizer, "
                             f"scheduler) of {cfg.base!r}: {type(exc).__name__}: {exc}") from exc
    latent = vae.config.latent_channels
    if unet.config.in_channels != 2 * latent:
        raise LoraTrainError(f"{cfg.base}: the UNet takes {unet.config.in_channels} input channels; an "
                             f"InstructPix2Pix-style UNet takes {2 * latent} (noisy latents + source latents)")
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "noise_scheduler": noise_scheduler}


def _prepare_out(cfg: LoraTrainConfig, settings: dict[str, Any]) -> Path | None:
    """Check the run folder; returns the checkpoint to resume from (or None)."""
    out = cfg.out
    meta = out / "training.json"
    if meta.exists() and not cfg.resume:
        if not cfg.overwrite:
            raise LoraTrainError(f"{out} already holds a LoRA training run ({meta}); pass --resume to continue "
                                 "it or --overwrite to start again")
        for name in (CHECKPOINTS, "validation", "logs"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (LORA_FILE, "training.json", "train_log.csv", "validation.csv"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        return None
    if not meta.exists():
        raise LoraTrainError(f"--resume: {out} holds no training run (no training.json)")
    old = json.loads(meta.read_text())["settings"]
    diff = [k for k in _RESUME_KEYS if old.get(k) != settings.get(k)]
    if diff:
        shown = "; ".join(f"{k}: {old.get(k)!r} then, {settings.get(k)!r} now" for k in diff)
        raise LoraTrainError(f"--resume: {out} was trained with other settings ({shown})")
    ckpt = _latest_checkpoint(out)
    if ckpt is None:
        raise LoraTrainError(f"--resume: no checkpoint under {out / CHECKPOINTS} yet; start again with --overwrite")
    return ckpt


def train_lora(cfg: LoraTrainConfig, console: Console | None = None) -> LoraTrainResult:
    """Train (or resume) a LoRA; see the module docstring for what lands in `cfg.out`."""
    try:
        return _train_lora(cfg, console)
    finally:
        _release()


def _release() -> None:
    """accelerate keeps one process-wide state (device, precision) and refuses a second Accelerator
    with other settings; a training call is self-contained, so it leaves that state cleared (and the
    CUDA cache emptied) for the next call in the same process (tests, the GPU smoke, notebooks)."""
    import gc
    import sys

    gc.collect()
    state = sys.modules.get("accelerate.state")
    if state is not None:
        state.AcceleratorState._reset_state(reset_partial_state=True)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_options(cfg: LoraTrainConfig) -> None:
    """Refuse bad options before any data or model is read."""
    import torch

    for name, value, low in (("--max-steps", cfg.max_steps, 1), ("--batch-size", cfg.batch_size, 1),
                             ("--grad-accum", cfg.grad_accum, 1), ("--rank", cfg.rank, 1),
                             ("--resolution", cfg.resolution, 8), ("--checkpoint-every", cfg.checkpoint_every, 1)):
        if int(value) < low:
            raise LoraTrainError(f"{name} must be >= {low}, got {value}")
    if cfg.resolution % 8:
        raise LoraTrainError(f"--resolution must be a multiple of 8 (the VAE's downsampling), got {cfg.resolution}")
    if not 0.0 <= cfg.conditioning_dropout <= 1 / 3:
        raise LoraTrainError(f"--conditioning-dropout must be in [0, 1/3] (three dropout cases of p each), "
                             f"got {cfg.conditioning_dropout}")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise LoraTrainError(f"--device {cfg.device!r}; expected auto, cpu or cuda")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise LoraTrainError(f"--device cuda, but torch {torch.__version__} sees no CUDA device")
    try:
        cfg.prompt_template.format(instruction="", target="", source_expression="")
    except (KeyError, IndexError, ValueError) as exc:
        raise LoraTrainError(f"--prompt-template {cfg.prompt_template!r}: unknown placeholder {exc}") from exc


@dataclass
class _TrainData:
    """The training and validation rows, and what was skipped (with row numbers) on the way."""

    manifest: Manifest
    train: list[Triplet]
    val: list[Triplet]
    val_manifest: Manifest
    val_mode: str
    skipped: Counter
    skipped_rows: list[dict[str, Any]]


def _load_data(cfg: LoraTrainConfig, console: Console) -> _TrainData:
    """Read and check the data; errors name the file and the row, before any model loads."""
    manifest = load_training_manifest(cfg.data, cfg.columns, cfg.allow_outside)
    rows, skipped, skipped_rows = check_images(manifest.triplets)
    for reason, n in sorted(skipped.items()):
        shown = ", ".join([f"row {r['row']} ({r['id']})" for r in skipped_rows if r["reason"] == reason][:5])
        console.print(f"[yellow]skipped[/] {n} row(s) of {manifest.path.name}: {reason}: {shown}")
    if cfg.val_data is not None:
        val_manifest = load_training_manifest(cfg.val_data, cfg.columns, cfg.allow_outside)
        train_rows, val_rows, val_mode = rows, list(val_manifest.triplets), f"file {cfg.val_data}"
    else:
        train_rows, val_rows, val_mode = split_validation(rows, cfg.val_size, cfg.seed)
        val_manifest = Manifest(manifest.path, manifest.root, val_rows)
    if not train_rows:
        raise LoraTrainError(f"{manifest.path}: no usable training rows (skipped: {dict(skipped)})")
    return _TrainData(manifest, train_rows, val_rows, val_manifest, val_mode, skipped, skipped_rows)


def _settings(cfg: LoraTrainConfig, data: _TrainData, mixed: str) -> dict[str, Any]:
    """What the run was trained with (training.json); `--resume` compares the `_RESUME_KEYS` of it."""
    source = data_provenance(cfg.data, data.manifest)  # a hub dataset by its rows: it may be a folder
    return {"base": cfg.base, "pipeline": cfg.pipeline, "data": source["path"],
            "data_sha256": source["sha256"], "resolution": cfg.resolution, "batch_size": cfg.batch_size,
            "grad_accum": cfg.grad_accum, "lr": cfg.lr, "lr_scheduler": cfg.lr_scheduler,
            "warmup_steps": cfg.warmup_steps, "weight_decay": cfg.weight_decay, "max_grad_norm": cfg.max_grad_norm,
            "rank": cfg.rank, "alpha": float(cfg.alpha if cfg.alpha is not None else cfg.rank),
            "target_modules": list(cfg.target_modules),
            "conditioning_dropout": cfg.conditioning_dropout, "seed": cfg.seed, "random_flip": cfg.random_flip,
            "prompt_template": cfg.prompt_template, "mixed_precision": mixed,
            "gradient_checkpointing": cfg.gradient_checkpointing, "max_steps": cfg.max_steps,
            "val_ids": [t.id for t in data.val], "val_mode": data.val_mode}


@dataclass
class _Model:
    """The accelerator, the frozen parts, the LoRA-carrying UNet and what trains it."""

    accelerator: Any
    trackers: str | None
    weight_dtype: Any
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    params: list[Any]
    optimizer: Any
    lr_scheduler: Any
    rng: SamplingRNG

    @property
    def device(self) -> Any:
        return self.accelerator.device

    def save_lora(self, directory: Path) -> Path:
        from diffusers import StableDiffusionInstructPix2PixPipeline
        from peft.utils import get_peft_model_state_dict

        directory.mkdir(parents=True, exist_ok=True)
        StableDiffusionInstructPix2PixPipeline.save_lora_weights(
            directory, unet_lora_layers=get_peft_model_state_dict(self.accelerator.unwrap_model(self.unet)))
        return directory


def _load_model(cfg: LoraTrainConfig, mixed: str, use_cuda: bool, alpha: float) -> _Model:
    """The accelerator (seeded), the pipeline's parts in the training dtype, the LoRA adapter on the
    UNet, optimizer and LR schedule, and the checkpoint hooks."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, is_tensorboard_available, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    trackers = "tensorboard" if is_tensorboard_available() else None
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision=mixed, cpu=not use_cuda, log_with=trackers,
        project_config=ProjectConfiguration(project_dir=str(cfg.out), logging_dir=str(cfg.out / "logs")))
    set_seed(cfg.seed)  # python, numpy, torch: the LoRA's initial weights
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed]
    parts = _load_components(cfg, weight_dtype)
    unet, vae, text_encoder = parts["unet"], parts["vae"], parts["text_encoder"]
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    vae.eval()
    text_encoder.eval()
    for m in (unet, vae, text_encoder):
        m.to(accelerator.device)
    try:
        unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                    target_modules=list(cfg.target_modules)))
    except ValueError as exc:  # peft: no module matches the target names
        raise LoraTrainError(f"--target-modules {list(cfg.target_modules)}: {exc}") from exc
    # Frozen weights stay in the low precision; the trainable LoRA weights in fp32 (Adam's updates
    # would vanish in bf16).
    cast_training_params(unet, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    if not params:
        raise LoraTrainError(f"no UNet module matches --target-modules {list(cfg.target_modules)}")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    try:
        lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps,
                                     num_training_steps=cfg.max_steps)
    except ValueError as exc:
        raise LoraTrainError(f"--lr-scheduler {cfg.lr_scheduler!r}: {exc}") from exc
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    rng = SamplingRNG(cfg.seed)
    accelerator.register_for_checkpointing(rng)
    _register_checkpoint_hooks(accelerator)
    return _Model(accelerator, trackers, weight_dtype, unet, vae, text_encoder, parts["tokenizer"],
                  parts["noise_scheduler"], params, optimizer, lr_scheduler, rng)


def _register_checkpoint_hooks(accelerator: Any) -> None:
    """Checkpoints hold the adapter only (a few MB), not the frozen UNet: accelerate's hooks hand the
    models to us, we write and read them in the pipeline's LoRA format."""
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from diffusers.training_utils import cast_training_params
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    def save_hook(models: list[Any], weights: list[Any], output_dir: str) -> None:
        for m in models:
            StableDiffusionInstructPix2PixPipeline.save_lora_weights(
                output_dir, unet_lora_layers=get_peft_model_state_dict(accelerator.unwrap_model(m)))
            if weights:
                weights.pop()

    def load_hook(models: list[Any], input_dir: str) -> None:
        target = models.pop()
        state, _ = StableDiffusionInstructPix2PixPipeline.lora_state_dict(input_dir)
        unet_state = convert_unet_state_dict_to_peft(
            {k[len("unet."):]: v for k, v in state.items() if k.startswith("unet.")})
        result = set_peft_model_state_dict(accelerator.unwrap_model(target), unet_state, adapter_name="default")
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise LoraTrainError(f"{input_dir}: checkpoint has LoRA keys this UNet lacks: {unexpected[:5]}")
        cast_training_params(target, dtype=torch.float32)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _resume(model: _Model, cfg: LoraTrainConfig, resume_from: Path | None, console: Console) -> int:
    """Load the checkpoint (if any) and cut the logs back to it; returns the step to start from."""
    start_step = 0
    if resume_from is not None:
        model.accelerator.load_state(str(resume_from))
        start_step = int(json.loads((resume_from / STATE_FILE).read_text())["step"])
        for name in ("train_log.csv", "validation.csv"):
            _truncate_csv(cfg.out / name, start_step)
        console.print(f"resumed from {resume_from} (step {start_step})")
    if start_step >= cfg.max_steps:
        raise LoraTrainError(f"--resume: the run is already at step {start_step} >= --max-steps {cfg.max_steps}")
    return start_step


def _loss(model: _Model, cfg: LoraTrainConfig, batch: dict[str, Any], null_text: Any) -> Any:
    """InstructPix2Pix's denoising loss on one batch; every random draw comes from `model.rng`."""
    import torch
    import torch.nn.functional as F

    device, dtype, gen = model.device, model.weight_dtype, model.rng.generator
    tokenizer, noise_scheduler = model.tokenizer, model.noise_scheduler
    src = batch["source"].to(device, dtype=dtype)
    tgt = batch["target"].to(device, dtype=dtype)
    bsz = src.shape[0]
    if cfg.random_flip:  # the same flip for S and G
        flip = (torch.rand(bsz, generator=gen) < 0.5).to(device)[:, None, None, None]
        src, tgt = torch.where(flip, src.flip(-1), src), torch.where(flip, tgt.flip(-1), tgt)
    ids = tokenizer(list(batch["prompt"]), max_length=tokenizer.model_max_length, padding="max_length",
                    truncation=True, return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        latents = model.vae.encode(tgt).latent_dist.sample(generator=gen) * model.vae.config.scaling_factor
        source_latents = model.vae.encode(src).latent_dist.mode()  # unscaled, as the pipeline feeds them
        text = model.text_encoder(ids)[0]
    noise = torch.randn(latents.shape, generator=gen, dtype=torch.float32).to(device, dtype=latents.dtype)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,), generator=gen).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if cfg.conditioning_dropout > 0:
        p = cfg.conditioning_dropout
        u = torch.rand(bsz, generator=gen).to(device)
        drop_text = (u < 2 * p)[:, None, None]  # [0, 2p): text dropped ([0, p) both, [p, 2p) text only)
        text = torch.where(drop_text, null_text.to(text.dtype), text)
        keep_image = 1 - ((u >= p) & (u < 3 * p)).to(source_latents.dtype)  # [p, 3p): image dropped
        source_latents = source_latents * keep_image[:, None, None, None]
    if noise_scheduler.config.prediction_type == "epsilon":
        target = noise
    elif noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise LoraTrainError(f"unsupported prediction_type {noise_scheduler.config.prediction_type!r}")
    pred = model.unet(torch.cat([noisy, source_latents], dim=1), timesteps, text, return_dict=False)[0]
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


class _Validator:
    """Validation passes: the LoRA saved at a step, generated and scored on the held-out rows."""

    def __init__(self, cfg: LoraTrainConfig, data: _TrainData, model: _Model, mixed: str, use_cuda: bool,
                 console: Console) -> None:
        self.cfg, self.data, self.model = cfg, data, model
        self.mixed, self.use_cuda, self.console = mixed, use_cuda, console
        self.rows: list[dict[str, Any]] = []

    def __call__(self, step: int) -> None:
        if not self.data.val:
            return
        vdir = self.cfg.out / "validation" / f"step-{step:06d}"
        lora_dir = self.model.save_lora(vdir / "lora")
        row = run_validation(self.cfg, self.data.val_manifest, lora_dir, vdir / "run", step, self.mixed,
                             self.use_cuda, self.console)
        self.rows.append(row)
        _append_csv(self.cfg.out / "validation.csv", row)
        if self.model.trackers:
            self.model.accelerator.log({f"val/{k}": v for k, v in row.items() if k != "step" and v is not None},
                                       step=step)


@dataclass
class _LoopResult:
    step: int
    losses: list[float]
    loop_s: float  # training time, checkpoints and validation excluded
    peak_mb: float | None


def _train_loop(cfg: LoraTrainConfig, model: _Model, data: _TrainData, start_step: int, validate: _Validator,
                use_cuda: bool, console: Console) -> _LoopResult:
    """Optimizer steps from `start_step` to `cfg.max_steps`: log each, checkpoint and validate on schedule."""
    import torch

    from fedbench.progress import progress_bar

    accelerator, tokenizer = model.accelerator, model.tokenizer
    dataset = PairDataset(data.train, cfg.resolution, cfg.prompt_template)
    null_ids = tokenizer([""], max_length=tokenizer.model_max_length, padding="max_length", truncation=True,
                         return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        null_text = model.text_encoder(null_ids)[0]
    n_batches = math.ceil(len(dataset) / cfg.batch_size)

    losses: list[float] = []
    peak_mb = None
    if use_cuda:
        torch.cuda.reset_peak_memory_stats()
    if cfg.val_at_start and start_step == 0:
        validate(0)
    step = start_step
    micro = step * cfg.grad_accum
    acc_loss, acc_n = 0.0, 0
    t_loop = time.perf_counter()
    overhead = 0.0  # seconds spent checkpointing and validating: not training speed

    model.unet.train()
    with progress_bar(cfg.progress, console) as bar:
        task = bar.add_task("LoRA", total=cfg.max_steps, completed=start_step) if bar else None
        while step < cfg.max_steps:
            epoch, skip = divmod(micro, n_batches)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=cfg.batch_size, sampler=epoch_order(len(dataset), cfg.seed, epoch),
                num_workers=cfg.dataloader_workers)
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
            for batch in batches:
                with accelerator.accumulate(model.unet):
                    loss = _loss(model, cfg, batch, null_text)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.params, cfg.max_grad_norm)
                    model.optimizer.step()
                    model.lr_scheduler.step()
                    model.optimizer.zero_grad(set_to_none=True)
                micro += 1
                acc_loss += float(loss.detach())
                acc_n += 1
                if not accelerator.sync_gradients:
                    continue
                step += 1
                value = acc_loss / acc_n
                acc_loss, acc_n = 0.0, 0
                if not math.isfinite(value):
                    raise LoraTrainError(f"step {step}: the loss is {value}; lower --lr or use "
                                         "--mixed-precision bf16/no")
                losses.append(value)
                elapsed = time.perf_counter() - t_loop
                log_row = {"step": step, "epoch": epoch, "loss": round(value, 6),
                           "lr": model.lr_scheduler.get_last_lr()[0], "seconds": round(elapsed, 3)}
                _append_csv(cfg.out / "train_log.csv", log_row)
                if model.trackers:
                    accelerator.log({"train/loss": value, "train/lr": log_row["lr"]}, step=step)
                if bar:
                    bar.update(task, advance=1, description=f"LoRA loss {value:.4f}")
                t_extra = time.perf_counter()
                if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                    save_checkpoint(accelerator, cfg, step, micro, value)
                if (cfg.val_every and step % cfg.val_every == 0) or step == cfg.max_steps:
                    validate(step)
                overhead += time.perf_counter() - t_extra
                if step >= cfg.max_steps:
                    break
    loop_s = time.perf_counter() - t_loop - overhead
    if use_cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    return _LoopResult(step, losses, loop_s, peak_mb)


def _train_lora(cfg: LoraTrainConfig, console: Console | None) -> LoraTrainResult:
    """Check, load the data, prepare the folder, load the model, resume, train, write the result."""
    import torch

    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    _check_options(cfg)
    data = _load_data(cfg, console)
    use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    mixed = resolve_mixed_precision(cfg.mixed_precision, use_cuda)
    settings = _settings(cfg, data, mixed)
    resume_from = _prepare_out(cfg, settings)
    model = _load_model(cfg, mixed, use_cuda, settings["alpha"])
    start_step = _resume(model, cfg, resume_from, console)

    meta = {"trainer": TRAINER, "trainer_version": TRAINER_VERSION, "settings": settings,
            "data": {"rows": len(data.manifest), "train": len(data.train), "validation": len(data.val),
                     "skipped": dict(data.skipped), "skipped_rows": data.skipped_rows},
            "libraries": _versions(), "lora_file": LORA_FILE,
            "editor": {"adapter": "diffusers", "model": cfg.base, "pipeline": cfg.pipeline, "lora": str(cfg.out),
                       "prompt_template": cfg.prompt_template}}
    _write_json(cfg.out / "training.json", meta)
    if model.trackers:
        model.accelerator.init_trackers("fedbench-lora", config={k: v for k, v in settings.items()
                                                                 if isinstance(v, (int, float, str, bool))})
    validate = _Validator(cfg, data, model, mixed, use_cuda, console)
    loop = _train_loop(cfg, model, data, start_step, validate, use_cuda, console)

    model.save_lora(cfg.out)
    done = loop.step - start_step
    meta.update({"steps": loop.step, "resumed_from": start_step, "last_losses": loop.losses[-10:],
                 "steps_per_s": round(done / loop.loop_s, 4) if loop.loop_s > 0 else None,
                 "peak_cuda_memory_mb": round(loop.peak_mb, 1) if loop.peak_mb is not None else None,
                 "validation": validate.rows, "seconds": round(time.perf_counter() - t_start, 2)})
    _write_json(cfg.out / "training.json", meta)
    if model.trackers:
        model.accelerator.end_training()
    return LoraTrainResult(cfg.out, cfg.out / LORA_FILE, loop.step, start_step, loop.losses, validate.rows,
                           time.perf_counter() - t_start, done / loop.loop_s if loop.loop_s > 0 else 0.0,
                           loop.peak_mb, meta)


def save_checkpoint(accelerator: Any, cfg: LoraTrainConfig, step: int, micro: int, loss: float) -> Path:
    """accelerate's full state (adapter via our hook, optimizer, LR scheduler, micro-step, RNG states
    and the sampling generator), written to a temporary folder and renamed: a killed run never
    leaves a half-written checkpoint that --resume would pick."""
    final = cfg.out / CHECKPOINTS / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp))
    _write_json(tmp / STATE_FILE, {"step": step, "micro_step": micro, "loss": loss,
                                   "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    folders = sorted(p for p in (cfg.out / CHECKPOINTS).glob("step-*") if not p.name.endswith(".tmp"))
    for old in folders[: max(0, len(folders) - max(1, cfg.keep_checkpoints))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def run_validation(cfg: LoraTrainConfig, val: Manifest, lora_dir: Path, run_dir: Path, step: int, mixed: str,
                   cuda: bool, console: Console) -> dict[str, Any]:
    """Generate the held-out triplets through the `diffusers` editor with the LoRA saved at `step`,
    and score them with the core scorer (`fedbench eval`)."""
    from fedbench.editors.config import EditorConfig
    from fedbench.evaluate import evaluate

    dtype = {"no": "float32", "fp16": "float16", "bf16": "bfloat16"}[mixed]
    params: dict[str, Any] = {"model": cfg.base, "lora": str(lora_dir), "steps": cfg.val_steps,
                              "resolution": cfg.val_resolution or cfg.resolution, "dtype": dtype,
                              "device": "cuda" if cuda else "cpu",
                              "prompt_template": cfg.prompt_template, "load_kwargs": dict(cfg.load_kwargs)}
    if cfg.pipeline:
        params["pipeline"] = cfg.pipeline
    config = EditorConfig(name=f"lora-step-{step}", adapter="diffusers", seed=cfg.seed, params=params,
                          description=f"{TRAINER} validation at step {step}")
    t0 = time.perf_counter()
    res = evaluate(config, val, run_dir, overwrite=True, workers=cfg.score_workers, cache_path=cfg.cache_path,
                   progress=False, console=console)
    o = res.summary["overall"]
    row = {"step": step, "n": len(val), "fed": o["fed"]["mean"], "alignment": o["alignment"]["mean"],
           "fidelity": o["fidelity"]["mean"], "reg": o["reg"]["mean"],
           "failed": res.counts.get("failed", 0), "seconds": round(time.perf_counter() - t0, 2)}
    console.print(f"validation step {step}: FED {row['fed']} alignment {row['alignment']} "
                  f"fidelity {row['fidelity']} REG {row['reg']} on {len(val)} held-out triplets")
    return row

