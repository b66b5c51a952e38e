"""`fedbench meta`: registered on the main Typer app by `register`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console


def _floats(spec: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in spec.split(",") if x.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{option} expects numbers separated by commas, got {spec!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise typer.BadParameter(f"{option} expects positive numbers, got {spec!r}")
    return values


def _labels_only(labels: Path, out: Path, config, cache: Optional[Path], err: Console, console: Console) -> None:
    from fedbench.meta.recogniser import LabelError, run_labels
    from fedbench.models.store import ArtifactError
    from fedbench.paths import features_db

    try:
        meta = run_labels(labels, out, config, cache or features_db(), progress=True)
    except LabelError as exc:
        err.print(f"[red]error[/] {exc}")
        raise typer.Exit(2)
    except ArtifactError as exc:
        err.print(f"[red]model error[/] {exc}")
        raise typer.Exit(3)
    for name, st in meta["recogniser"]["sets"].items():
        console.print(f"[bold]{name}[/]: {st['images']} images, {len(st['no_face'])} without a face (counted wrong)")
        for rec, r in st["by_recogniser"].items():
            per = "  ".join(f"{c} {v['correct']}/{v['n']}" for c, v in r["per_class"].items())
            console.print(f"  {rec:22s} balanced accuracy {r['balanced_accuracy']:.3f}   {per}", soft_wrap=True)
    console.print(f"wrote {out / 'meta.json'} and {out / 'meta.md'}")


def register(app: typer.Typer) -> None:
    @app.command()
    def meta(
        benchmark: Optional[Path] = typer.Option(
            None, "--benchmark", "-b", help="triplet manifest (.jsonl, .csv, .parquet); without it, --labels alone "
            "runs the recogniser check"),
        out: Path = typer.Option(..., "--out", "-o", help="folder for meta.json, meta.md, probes and plots"),
        sequences: Optional[Path] = typer.Option(None, help="graded sequences (the shared sequences.json format)"),
        ratings: Optional[Path] = typer.Option(None, help="human ratings CSV: sample,rater,<fed|alignment|fidelity|reg>..."),
        ratings_scores: Optional[Path] = typer.Option(
            None, help="samples.jsonl of a `fedbench score` run the ratings refer to (default: meta's probe rows)"),
        labels: Optional[Path] = typer.Option(
            None, help="labelled faces CSV image,label (paths relative to the CSV) for the recogniser check"),
        columns: Optional[str] = typer.Option(None, help="map fields to your columns: source=img,target=emotion"),
        allow_outside: bool = typer.Option(False, "--allow-outside", help="let paths leave the manifest's folder"),
        blend_k: str = typer.Option("0.25,0.5,0.75,1,1.5,2", help="pixel-blend probes S + k (G - S)"),
        warp_strength: str = typer.Option("0.5,1,2", help="warp-editor probes, strengths"),
        workers: Optional[int] = typer.Option(None, help="processes (default: one per core)"),
        cache: Optional[Path] = typer.Option(None, help="feature cache file (default: ~/.cache/fedbench/features.sqlite)"),
        runtime: str = typer.Option("openvino", help="backbone runtime: openvino (fast) or reference"),
        fedscore_version: Optional[str] = typer.Option(None, help="FED-Score definition to apply (default: current)"),
        strict: bool = typer.Option(False, "--strict", help="exit 1 when a meta-evaluation check fails"),
        judge: Optional[Path] = typer.Option(None, "--judge", help="vision-language judge config (YAML); docs/judge.md"),
    ) -> None:
        """Meta-evaluate FED-Score on a benchmark: probes, single-metric bias, sequences, recogniser, humans."""
        from fedbench.data.manifest import ManifestError, parse_columns
        from fedbench.faces.perception import PerceptionConfig
        from fedbench.judge.config import load_judge_config
        from fedbench.meta.human import RatingsError
        from fedbench.meta.probes import default_probes
        from fedbench.meta.recogniser import LabelError
        from fedbench.meta.run import MetaOptions, run_meta
        from fedbench.meta.sequences import SequenceError
        from fedbench.models.store import ArtifactError

        err, console = Console(stderr=True), Console()
        if benchmark is None:
            if labels is None:
                err.print("[red]error[/] give --benchmark (the full meta-evaluation) or --labels (the recogniser alone)")
                raise typer.Exit(2)
            _labels_only(labels, out, PerceptionConfig(runtime=runtime), cache, err, console)
            return
        try:
            opts = MetaOptions(
                benchmark=benchmark, out=out, sequences=sequences, ratings=ratings, ratings_scores=ratings_scores,
                labels=labels, columns=parse_columns(columns), allow_outside=allow_outside,
                config=PerceptionConfig(runtime=runtime), workers=workers, cache_path=cache,
                probes=default_probes(_floats(blend_k, "--blend-k"), _floats(warp_strength, "--warp-strength")),
                progress=True, judge=load_judge_config(judge, check_key=True) if judge else None,
                **({"fedscore_version": fedscore_version} if fedscore_version else {}))
            result = run_meta(opts, console=err)
        except (ManifestError, SequenceError, LabelError, RatingsError, ValueError) as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2)
        except ArtifactError as exc:
            err.print(f"[red]model error[/] {exc}")
            raise typer.Exit(3)
        for name, check in result["checks"].items():
            mark = "[green]pass[/]" if check["passed"] else "[red]FAIL[/]"
            detail = ", ".join(f"{k} {v}" for k, v in check.items() if k != "passed")
            console.print(f"{mark} {name}: {detail}", soft_wrap=True)
        console.print(f"wrote {out / 'meta.json'} and {out / 'meta.md'}")
        if strict and not result["passed"]:
            raise typer.Exit(1)
