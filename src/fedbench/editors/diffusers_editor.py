"""`diffusers`: any diffusers image-edit pipeline (InstructPix2Pix, FLUX.1 Kontext, Qwen-Image-Edit, ...).

    adapter: diffusers
    params: {model: timbrooks/instruct-pix2pix, steps: 20, guidance: 7.5, image_guidance: 1.5, resolution: 512}

Construction only checks the parameters (no import of torch, no download); the pipeline loads on the
first edit, or when the runner calls `load()`. A pipeline that cannot load is a setup error
(`DiffusersLoadError`, raised), not a per-sample failure: a typo in a model id must not be scored as a
model that failed every sample. Once loaded, one sample's trouble (an exception inside the pipeline,
out of memory) is that sample's `generation_failed`, and a safety-checker blackout is `refused`.

Reproducibility: each sample's noise comes from a CPU `torch.Generator` seeded with the request's seed,
so the starting noise is the same on any device; on the CPU the same seed gives the same bytes.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import inspect
import logging
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fedbench.editors.base import EditRequest, EditResult, Editor
from fedbench.editors.config import EditorConfigError

INSTALL_HINT = "pip install 'fedbench[diffusers]'"
DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")
SIZE_MULTIPLE = 16  # latent patching of Flux/Qwen needs 16; SD's VAE needs 8: 16 suits both
_PROMPT_FIELDS = ("instruction", "target", "source_expression")
_LORA_ADAPTER = "fedbench"
log = logging.getLogger(__name__)


class DiffusersLoadError(RuntimeError):
    """The pipeline could not be built (missing package, bad model id, unknown class, bad LoRA):
    a setup error for the whole run, raised rather than recorded per sample."""


def _missing_packages() -> list[str]:
    return [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]


def _working_size(width: int, height: int, resolution: int | None) -> tuple[int, int]:
    """The size the pipeline sees: long side scaled to `resolution` (when given), each side rounded
    to a multiple of SIZE_MULTIPLE. The output is resized back to the source's own size."""
    scale = resolution / max(width, height) if resolution else 1.0

    def snap(v: float) -> int:
        return max(SIZE_MULTIPLE, int(v / SIZE_MULTIPLE + 0.5) * SIZE_MULTIPLE)

    return snap(width * scale), snap(height * scale)


def _looks_like_hub_id(text: str) -> bool:
    """owner/name, nothing more: anything else that does not exist locally is a missing path."""
    parts = text.split("/")
    return (len(parts) == 2 and all(parts) and not text.startswith((".", "~"))
            and Path(text).suffix not in (".safetensors", ".bin", ".pt", ".pth"))


def _digest_weights(path: Path) -> str:
    """sha256 (16 hex) of a LoRA file, or of the weight files at the top of a LoRA folder (names and
    bytes): what `load_lora_weights(folder)` reads. Sub-folders (a trainer's checkpoints and
    validation copies) do not decide the images, so they do not enter the config hash."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file()
                                                 and p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    if not files:
        raise EditorConfigError(f"lora {path}: no .safetensors/.bin weights in it")
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if f != path else b"")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _to_rgb_array(image: Any) -> np.ndarray:
    """A pipeline's image (PIL, or float array in 0..1) -> H x W x 3 uint8."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return arr[..., :3]


class DiffusersEditor(Editor):
    """Params (all but `model` optional):

    model            hub id or local folder of a diffusers pipeline
    pipeline         diffusers class name (e.g. StableDiffusionInstructPix2PixPipeline); default: the class
                     the model's model_index.json names, through DiffusionPipeline.from_pretrained
    dtype            auto | float32 | float16 | bfloat16 (auto: float32 on the CPU, float16 elsewhere)
    device           auto | cpu | cuda | mps (auto: cuda, else mps, else cpu)
    cpu_offload      keep sub-models on the CPU and move each to the GPU when it runs (needs accelerate)
    cpu_threads      torch threads when the pipeline runs on the CPU (default 1): a fixed count, because
                     float sums split over another number of threads round differently, and the same
                     seed must give the same bytes in every process (a Ray actor gets one thread)
    steps, guidance  num_inference_steps, guidance_scale
    image_guidance   image_guidance_scale, passed only to pipelines whose call takes it
    negative_prompt  passed only to pipelines whose call takes it
    prompt_template  "{instruction}" by default; may use {instruction} {target} {source_expression}
    resolution       long side the pipeline works at (each side a multiple of 16); the output comes back
                     at the source's size. Pipelines that take height/width get the working size.
    scheduler        a diffusers scheduler class name, built from the pipeline's scheduler config
    lora, lora_scale LoRA weights (file or folder, or a hub id) loaded with pipe.load_lora_weights
    load_kwargs      further from_pretrained arguments (revision, variant, ...)
    extra            further call arguments (true_cfg_scale, max_sequence_length, ...); they win
    """

    description = "any diffusers image-edit pipeline (InstructPix2Pix, FLUX.1 Kontext, Qwen-Image-Edit, ...)"
    version = "1"

    def __init__(self, model: str, pipeline: str | None = None, dtype: str = "auto", device: str = "auto",
                 cpu_offload: bool = False, steps: int | None = None, guidance: float | None = None,
                 image_guidance: float | None = None, prompt_template: str = "{instruction}",
                 resolution: int | None = None, negative_prompt: str | None = None,
                 extra: dict[str, Any] | None = None, lora: str | None = None, lora_scale: float = 1.0,
                 scheduler: str | None = None, load_kwargs: dict[str, Any] | None = None,
                 cpu_threads: int = 1) -> None:
        if not model or not isinstance(model, str):
            raise EditorConfigError("diffusers: `model` (a hub id or a local folder) is required")
        if dtype not in DTYPES:
            raise EditorConfigError(f"diffusers: dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        if device not in DEVICES:
            raise EditorConfigError(f"diffusers: device {device!r}; expected one of {', '.join(DEVICES)}")
        if steps is not None and int(steps) < 1:
            raise EditorConfigError(f"diffusers: steps must be >= 1, got {steps}")
        if resolution is not None and int(resolution) < SIZE_MULTIPLE:
            raise EditorConfigError(f"diffusers: resolution must be >= {SIZE_MULTIPLE}, got {resolution}")
        try:  # a typo such as {instrution} is caught now, not on every sample
            prompt_template.format(**{f: "" for f in _PROMPT_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            raise EditorConfigError(f"diffusers: prompt_template {prompt_template!r}: unknown placeholder {exc}; "
                                    f"known: {', '.join('{' + f + '}' for f in _PROMPT_FIELDS)}") from exc
        for name, value in (("extra", extra), ("load_kwargs", load_kwargs)):
            if value is not None and not isinstance(value, dict):
                raise EditorConfigError(f"diffusers: {name} must be a mapping, got {type(value).__name__}")
        if not Path(model).expanduser().exists() and not _looks_like_hub_id(model):
            raise EditorConfigError(f"diffusers: model {model!r} is neither a local folder nor a hub id (owner/name)")
        missing = _missing_packages()
        if missing:
            raise EditorConfigError(f"diffusers editor needs {', '.join(missing)}: {INSTALL_HINT}")

        # A local LoRA's content, not its path, decides the images: hash it into the parameters
        # (and so into the run's config hash). A hub id stays as given (pin it with a revision).
        lora_digest = None
        if lora is not None:
            lora_path = Path(lora).expanduser()
            if lora_path.exists():
                lora_digest = _digest_weights(lora_path)
            elif not _looks_like_hub_id(str(lora)):
                raise EditorConfigError(f"diffusers: lora {lora}: no such file or folder")

        super().__init__(model=model, pipeline=pipeline, dtype=dtype, device=device, cpu_offload=bool(cpu_offload),
                         steps=steps, guidance=guidance, image_guidance=image_guidance,
                         prompt_template=prompt_template, resolution=resolution, negative_prompt=negative_prompt,
                         extra=dict(extra or {}), lora=lora, lora_digest=lora_digest, lora_scale=float(lora_scale),
                         scheduler=scheduler, load_kwargs=dict(load_kwargs or {}), cpu_threads=int(cpu_threads))
        if int(cpu_threads) < 1:
            raise EditorConfigError(f"diffusers: cpu_threads {cpu_threads!r}; expected a whole number >= 1")
        self.cpu_threads = int(cpu_threads)
        self.model, self.pipeline_name, self.dtype_name, self.device_name = model, pipeline, dtype, device
        self.cpu_offload = bool(cpu_offload)
        self.steps = int(steps) if steps is not None else None
        self.guidance = float(guidance) if guidance is not None else None
        self.image_guidance = float(image_guidance) if image_guidance is not None else None
        self.prompt_template, self.negative_prompt = prompt_template, negative_prompt
        self.resolution = int(resolution) if resolution is not None else None
        self.extra, self.load_kwargs = dict(extra or {}), dict(load_kwargs or {})
        self.lora, self.lora_scale, self.scheduler_name = lora, float(lora_scale), scheduler

        self._lock = threading.Lock()  # one load, and one pipeline call at a time (pipelines are not re-entrant)
        self._pipe: Any = None
        self._device: str | None = None
        self._accepts: set[str] = set()
        self._load_error: DiffusersLoadError | None = None
        self.load_info: dict[str, Any] = {}  # what was loaded: class, device, dtype, ignored params, seconds

    # --- loading ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Build the pipeline now (the first edit does it otherwise). Raises DiffusersLoadError."""
        with self._lock:
            self._load_locked()

    def _resolve_device(self, torch: Any) -> str:
        if self.device_name != "auto":
            if self.device_name == "cuda" and not torch.cuda.is_available():
                raise DiffusersLoadError("diffusers: device 'cuda' asked for, but torch sees no CUDA device "
                                         f"(torch {torch.__version__}); use device: cpu or auto")
            if self.device_name == "mps" and not torch.backends.mps.is_available():
                raise DiffusersLoadError("diffusers: device 'mps' asked for, but it is not available")
            return self.device_name
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def _load_locked(self) -> None:
        if self._pipe is not None:
            return
        if self._load_error is not None:  # fail fast on every later call with the first reason
            raise self._load_error
        try:
            self._build()
        except DiffusersLoadError as exc:
            self._load_error = exc
            raise
        except Exception as exc:  # from_pretrained raises many types (OSError, ValueError, HTTP errors)
            self._load_error = DiffusersLoadError(f"diffusers: cannot load {self.model!r}: {type(exc).__name__}: {exc}")
            raise self._load_error from exc

    def _build(self) -> None:
        t0 = time.perf_counter()
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise DiffusersLoadError(f"diffusers editor: {exc}. {INSTALL_HINT}") from exc

        device = self._resolve_device(torch)
        if device == "cpu":
            torch.set_num_threads(self.cpu_threads)
        dtype_name = self.dtype_name if self.dtype_name != "auto" else ("float32" if device == "cpu" else "float16")
        dtype = getattr(torch, dtype_name)

        cls: Any
        if self.pipeline_name is None:
            cls = diffusers.DiffusionPipeline  # reads model_index.json's _class_name: the model's own pipeline
        else:
            cls = getattr(diffusers, self.pipeline_name, None)
            if cls is None or not hasattr(cls, "from_pretrained"):
                raise DiffusersLoadError(f"diffusers {diffusers.__version__} has no pipeline class "
                                         f"{self.pipeline_name!r}")
        # diffusers >= 0.36 names the argument `dtype` (torch_dtype is deprecated); the extra pins that.
        pipe = cls.from_pretrained(self.model, dtype=dtype, **self.load_kwargs)

        if self.scheduler_name:
            sched_cls = getattr(diffusers, self.scheduler_name, None)
            if sched_cls is None or not hasattr(sched_cls, "from_config"):
                raise DiffusersLoadError(f"diffusers {diffusers.__version__} has no scheduler {self.scheduler_name!r}")
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config)

        if self.lora is not None:
            if not hasattr(pipe, "load_lora_weights"):
                raise DiffusersLoadError(f"{type(pipe).__name__} cannot load LoRA weights (no load_lora_weights)")
            pipe.load_lora_weights(str(Path(self.lora).expanduser()) if Path(self.lora).expanduser().exists()
                                   else self.lora, adapter_name=_LORA_ADAPTER)
            if self.lora_scale != 1.0:
                pipe.set_adapters([_LORA_ADAPTER], adapter_weights=[self.lora_scale])

        offloaded = self.cpu_offload and device != "cpu"
        if offloaded:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)  # the runner draws its own progress

        params = inspect.signature(pipe.__call__).parameters
        self._accepts = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for needed in ("prompt", "image"):
            if needed not in self._accepts:
                raise DiffusersLoadError(f"{type(pipe).__name__} takes no {needed!r}: not an image-edit pipeline")
        unknown = [k for k in self.extra if k not in self._accepts]
        if unknown and not takes_any:
            raise DiffusersLoadError(f"extra {unknown}: {type(pipe).__name__}'s call takes no such argument")
        ignored = [name for name, value, arg in (("guidance", self.guidance, "guidance_scale"),
                                                 ("image_guidance", self.image_guidance, "image_guidance_scale"),
                                                 ("negative_prompt", self.negative_prompt, "negative_prompt"),
                                                 ("steps", self.steps, "num_inference_steps"))
                   if value is not None and arg not in self._accepts]
        if ignored:  # a parameter this pipeline has no argument for: say so rather than drop it quietly
            log.warning("diffusers: %s takes no argument for %s; ignored", type(pipe).__name__, ", ".join(ignored))
        self._pipe = pipe
        self._device = device
        self.load_info = {"pipeline": type(pipe).__name__, "device": device, "dtype": dtype_name,
                          "cpu_offload": offloaded, "ignored_params": ignored,
                          "load_seconds": round(time.perf_counter() - t0, 3)}

    # --- editing ----------------------------------------------------------------------------------

    def prompt_for(self, request: EditRequest) -> str:
        return self.prompt_template.format(instruction=request.instruction, target=request.target,
                                           source_expression=request.source_expression or "")

    def _call_kwargs(self, prompt: str, image: Image.Image, generator: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {"prompt": prompt, "image": image, "generator": generator}
        optional = {"num_inference_steps": self.steps, "guidance_scale": self.guidance,
                    "image_guidance_scale": self.image_guidance, "negative_prompt": self.negative_prompt,
                    "num_images_per_prompt": 1}
        if self.resolution is not None:  # the pipeline generates at the working size, not its default
            optional.update(width=image.width, height=image.height)
        kw.update({k: v for k, v in optional.items() if v is not None and k in self._accepts})
        kw.update(self.extra)
        return kw

    def edit(self, request: EditRequest) -> EditResult:
        with self._lock:
            self._load_locked()  # raises DiffusersLoadError: a setup error, not this sample's
            return self._edit_locked(request)

    def _edit_locked(self, request: EditRequest) -> EditResult:
        import torch

        t0 = time.perf_counter()
        try:
            source = request.source_rgb()
        except Exception as exc:  # decode errors are the dataset's, but this editor must not raise
            return EditResult.failed(f"cannot read the source: {exc}")
        h, w = source.shape[:2]
        work = _working_size(w, h, self.resolution)
        image = Image.fromarray(source)
        if work != (w, h):
            image = image.resize(work, Image.Resampling.LANCZOS)
        # A CPU generator: the same starting noise whatever the device (diffusers moves it there).
        generator = torch.Generator("cpu").manual_seed(int(request.seed))
        details: dict[str, Any] = {"seed": int(request.seed), "work_size": list(work),
                                   "device": self.load_info.get("device"), "dtype": self.load_info.get("dtype")}
        try:
            with torch.inference_mode():
                out = self._pipe(**self._call_kwargs(self.prompt_for(request), image, generator))
        except torch.OutOfMemoryError as exc:
            self._free_accelerator_cache()
            return EditResult.failed(f"out of memory at {work[0]}x{work[1]}: {exc}".splitlines()[0], **details)
        except Exception as exc:  # one sample's pipeline error is that sample's failure
            return EditResult.failed(f"{type(exc).__name__}: {exc}"[:500], **details)
        details["seconds"] = round(time.perf_counter() - t0, 3)

        # Stable Diffusion's safety checker replaces a flagged image with black and says so.
        flags = getattr(out, "nsfw_content_detected", None)
        if flags is None:
            flags = getattr(out, "nsfw_detected", None)  # DeepFloyd IF's name for it
        if flags is not None and any(bool(f) for f in np.atleast_1d(flags)):
            return EditResult.refused("the pipeline's safety checker flagged the output (blacked out)", **details)
        images = getattr(out, "images", None)
        if images is None or len(images) == 0:
            return EditResult.failed("the pipeline returned no image", **details)
        result = _to_rgb_array(images[0])
        if result.shape[:2] != (h, w):
            result = np.asarray(Image.fromarray(result).resize((w, h), Image.Resampling.LANCZOS))
        return EditResult.ok(result, **details)

    # --- provenance and cleanup -------------------------------------------------------------------

    def libraries(self) -> dict[str, str]:
        names = ["torch", "diffusers", "transformers", "accelerate", "safetensors"]
        if self.lora is not None:
            names.append("peft")
        out = {}
        for name in names:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return out

    def _free_accelerator_cache(self) -> None:
        torch = sys.modules.get("torch")  # never import torch just to free its cache
        if torch is None:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            torch.mps.empty_cache()

    def close(self) -> None:
        with self._lock:
            if self._pipe is None:
                return
            if self.cpu_offload and hasattr(self._pipe, "remove_all_hooks"):
                self._pipe.remove_all_hooks()  # offload hooks hold references to the sub-models
            self._pipe = None
        gc.collect()
        self._free_accelerator_cache()
