"""`fedbench train`: registered on the main Typer app by `register`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fedbench.metrics.fedscore import FEDSCORE_VERSION


def _floats(spec: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in spec.split(",") if x.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{option} expects numbers separated by commas, got {spec!r}") from exc
    if not values or any(v < 0 for v in values):
        raise typer.BadParameter(f"{option} expects non-negative numbers, got {spec!r}")
    return values


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(help="Train baseline editors on a training manifest and write checkpoints.",
                            no_args_is_help=True)
    app.add_typer(train_app, name="train")
    console, err = Console(), Console(stderr=True)

    @train_app.command("warp")
    def warp(
        data: Path = typer.Option(..., "--data", "-d", help="training manifest: source, target, ground_truth "
                                  "(source_expression, identity optional)"),
        out: Path = typer.Option(..., "--out", "-o", help="checkpoint folder (warp_fields.npz + checkpoint.json)"),
        model: str = typer.Option("strength", help="strength: one strength per target for the reference fields, "
                                  "chosen by FED-Score (generalises to new people); additive: landmark fields "
                                  "fitted from the pairs' landmark moves"),
        folds: int = typer.Option(5, help="cross-validation folds (whole people each) that choose the rule or "
                                  "the regularisation"),
        seed: int = typer.Option(0, help="seed of the fold assignment"),
        strengths: str = typer.Option("0.5,0.75,1,1.5,2,2.5,3,4", help="strength: the grid of strengths tried"),
        fedscore_version: str = typer.Option(FEDSCORE_VERSION, help="strength: FED-Score definition the "
                                             "strengths are chosen by (use the one you evaluate with)"),
        min_pairs: int = typer.Option(2, help="additive: people with a direct pair a source>target key needs for "
                                      "its own residual field"),
        lambdas: str = typer.Option(",".join(f"{v:g}" for v in (0, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 64, 1e6)),
                                    help="additive: shrinkage strengths towards the prior, in pseudo-pairs"),
        mus: str = typer.Option("0.5,2,8,1e6", help="additive: shrinkage strengths of the per-key residuals"),
        priors: str = typer.Option("reference,scaled,zero", help="additive: what the fields shrink towards: the "
                                   "reference fields, the reference scaled per target (fitted across people), zero"),
        objective: str = typer.Option("reg", help="additive: held-out loss of the cross-validation: reg (FED's "
                                      "expression gain on the landmark moves) or rmse (landmark error)"),
        columns: Optional[str] = typer.Option(None, help="map fields to your columns: source=img,target=emotion"),
        allow_outside: bool = typer.Option(False, "--allow-outside", help="let paths leave the manifest's folder"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace a checkpoint already in --out"),
        cache: Optional[Path] = typer.Option(None, help="additive: feature cache the landmarks are read from and "
                                             "kept in (default: ~/.cache/fedbench/features.sqlite)"),
    ) -> None:
        """Fit the warp editor's displacement fields (CPU, seconds to minutes)."""
        from fedbench.data.manifest import ManifestError, parse_columns
        from fedbench.models.store import ArtifactError
        from fedbench.train.warp_fit import OBJECTIVES, PRIORS, train_warp
        from fedbench.train.warp_strength import train_strength

        if model not in ("strength", "additive"):
            raise typer.BadParameter(f"--model: expected strength or additive, got {model!r}")
        prior_list = tuple(p.strip() for p in priors.split(",") if p.strip())
        bad = [p for p in prior_list if p not in PRIORS]
        if bad or not prior_list:
            raise typer.BadParameter(f"--priors: expected some of {', '.join(PRIORS)}, got {priors!r}")
        if objective not in OBJECTIVES:
            raise typer.BadParameter(f"--objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
        grid = _floats(strengths, "--strengths")
        if any(g <= 0 for g in grid):
            raise typer.BadParameter(f"--strengths expects positive numbers, got {strengths!r}")
        try:
            if model == "strength":
                res_s = train_strength(data, out, folds=folds, seed=seed, strengths=grid, version=fedscore_version,
                                       columns=parse_columns(columns), allow_outside=allow_outside,
                                       overwrite=overwrite, console=err)
            else:
                res = train_warp(data, out, folds=folds, seed=seed, min_pairs=min_pairs,
                                 lambdas=_floats(lambdas, "--lambdas"), mus=_floats(mus, "--mus"), priors=prior_list,
                                 objective=objective, columns=parse_columns(columns), allow_outside=allow_outside,
                                 overwrite=overwrite, console=err, cache_path=cache)
        except (ManifestError, ValueError, FileExistsError) as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2)
        except ArtifactError as exc:
            err.print(f"[red]model error[/] {exc}")
            raise typer.Exit(3)
        if model == "strength":
            table = Table(title=f"warp strengths — {Path(data).name}")
            for col in ("pairs", "people", "rule", *(r["rule"] + " held-out FED" for r in res_s.validation.table),
                        "strengths"):
                table.add_column(col, justify="right")
            table.add_row(str(res_s.meta["data"]["pairs"]), str(res_s.meta["data"]["people"]), res_s.validation.best,
                          *(f"{r['held_out_fed']:.2f}" for r in res_s.validation.table),
                          " ".join(f"{t} {a:g}" for t, a in res_s.strengths.items()))
        else:
            v = res.meta["validation"]
            table = Table(title=f"warp fields — {Path(data).name}")
            for col in ("pairs", "keys", "prior", "lambda", "mu", f"held-out {objective} loss", "reference editor",
                        "no edit"):
                table.add_column(col, justify="right")
            r = res.meta["regularisation"]
            table.add_row(str(res.meta["data"]["pairs"]), str(len(res.fields.fields)), r["prior"],
                          f"{r['lambda']:g}", f"{r['mu']:g}", f"{v['loss']:.4f}",
                          f"{v['baselines']['reference_editor']:.4f}", f"{v['baselines']['no_edit']:.4f}")
        console.print(table)
        console.print(f"wrote {out}; use it with: fedbench eval --editor warp --editor-arg checkpoint={out} ...")

    @train_app.command("diffusers-lora")
    def diffusers_lora(
        base: str = typer.Option(..., "--base", help="InstructPix2Pix-style pipeline: hub id or local folder"),
        data: Path = typer.Option(..., "--data", "-d", help="training manifest (source, instruction, target, ground_truth)"),
        out: Path = typer.Option(..., "--out", "-o", help="run folder; the LoRA lands in it as "
                                 "pytorch_lora_weights.safetensors"),
        val_data: Optional[Path] = typer.Option(None, help="held-out triplets (default: --val-size rows of --data)"),
        val_size: int = typer.Option(4, help="triplets held out of --data for validation (0: none)"),
        val_every: int = typer.Option(0, help="optimizer steps between validation passes (0: after the last step only)"),
        val_at_start: bool = typer.Option(False, "--val-at-start", help="also validate the base model first"),
        val_steps: int = typer.Option(20, help="inference steps of validation generations"),
        val_resolution: Optional[int] = typer.Option(None, help="validation working size (default: --resolution)"),
        pipeline: Optional[str] = typer.Option(None, help="pipeline class for validation (default: the model's own)"),
        resolution: int = typer.Option(256, help="training images are centre-cropped and resized to this square"),
        batch_size: int = typer.Option(4, help="pairs per micro-batch"),
        grad_accum: int = typer.Option(1, help="micro-batches per optimizer step"),
        max_steps: int = typer.Option(1000, help="optimizer steps (a resumed run continues up to this)"),
        lr: float = typer.Option(1e-4, help="learning rate"),
        lr_scheduler: str = typer.Option("constant", help="diffusers schedule: constant, cosine, linear, ..."),
        warmup_steps: int = typer.Option(0, help="LR warm-up steps"),
        rank: int = typer.Option(16, help="LoRA rank"),
        alpha: Optional[float] = typer.Option(None, help="LoRA alpha (default: the rank)"),
        target_modules: str = typer.Option("to_q,to_k,to_v,to_out.0", help="UNet modules that get an adapter"),
        conditioning_dropout: float = typer.Option(0.05, help="InstructPix2Pix conditioning dropout p"),
        mixed_precision: str = typer.Option("auto", help="auto (bf16/fp16 on CUDA, fp32 on CPU), no, fp16, bf16"),
        gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="trade compute for memory"),
        checkpoint_every: int = typer.Option(500, help="optimizer steps between resumable checkpoints"),
        keep_checkpoints: int = typer.Option(2, help="checkpoints kept (oldest removed first)"),
        seed: int = typer.Option(0, help="seed of the LoRA init, data order and noise"),
        random_flip: bool = typer.Option(True, "--random-flip/--no-random-flip", help="mirror S and G together"),
        prompt_template: str = typer.Option("{instruction}", help="prompt; the editor must use the same"),
        device: str = typer.Option("auto", help="auto, cpu or cuda"),
        dataloader_workers: int = typer.Option(0, help="image-decoding worker processes"),
        columns: Optional[str] = typer.Option(None, help="map fields to your columns: source=img,target=emotion"),
        allow_outside: bool = typer.Option(False, "--allow-outside", help="let paths leave the manifest's folder"),
        resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in --out"),
        overwrite: bool = typer.Option(False, "--overwrite", help="discard a run already in --out"),
        workers: Optional[int] = typer.Option(None, help="scoring processes of validation (default: one per core)"),
        cache: Optional[Path] = typer.Option(None, help="feature cache file for validation scoring"),
    ) -> None:
        """LoRA fine-tuning of an InstructPix2Pix-style UNet (GPU; a tiny model runs on the CPU)."""
        from fedbench.data.manifest import ManifestError, parse_columns
        from fedbench.train.lora import LoraTrainConfig, LoraTrainError, train_lora

        cfg = LoraTrainConfig(
            base=base, data=data, out=out, pipeline=pipeline, val_data=val_data, val_size=val_size,
            val_every=val_every, val_at_start=val_at_start, val_steps=val_steps, val_resolution=val_resolution,
            resolution=resolution, batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps, lr=lr,
            lr_scheduler=lr_scheduler, warmup_steps=warmup_steps, rank=rank, alpha=alpha,
            target_modules=tuple(m.strip() for m in target_modules.split(",") if m.strip()),
            conditioning_dropout=conditioning_dropout, mixed_precision=mixed_precision,
            gradient_checkpointing=gradient_checkpointing, checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints, seed=seed, random_flip=random_flip, prompt_template=prompt_template,
            device=device, dataloader_workers=dataloader_workers, columns=parse_columns(columns),
            allow_outside=allow_outside, resume=resume, overwrite=overwrite, score_workers=workers, cache_path=cache)
        try:
            res = train_lora(cfg, console=err)
        except (ManifestError, LoraTrainError) as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2)
        last = res.losses[-1] if res.losses else float("nan")
        console.print(f"trained steps {res.resumed_from}..{res.steps} ({res.steps_per_s:.3f} steps/s), last loss "
                      f"{last:.4f}; LoRA: {res.lora}")
        console.print(f"use it with: fedbench eval --editor diffusers --editor-arg model={base} "
                      f"--editor-arg lora={out} ...")
