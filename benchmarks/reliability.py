"""Reliability harness: bad inputs, SIGKILLs with resume, and runs that compete for one folder or cache.

    .venv/bin/python benchmarks/reliability.py [--work DIR] [--kills 3] [--seed 0] [--n 4] [--results PATH]
                                               [--src DIR]

`--src` runs another checkout's fedbench (its `src/` folder) against this corpus: a before / after.

Groups (each a row of the table it prints; every CLI run is a real `python -m fedbench.cli` process
with real models on the PixelSmile fixtures, from $FEDBENCH_FIXTURES or ../shared/fixtures/pixelsmile):

- bad edits: every bad edited file of tests/integration/test_bad_inputs.py (corrupt, empty, truncated,
  CMYK, 16-bit, RGBA, tiny, huge, faceless, two faces, GIF, missing) scored in one `fedbench score`.
- bad manifests: every bad manifest of that file and every bad row of tests/unit/test_manifest_validation.py
  (types, ids, UTF-8, paths) read with `read_manifest`: each must be a ManifestError naming its row.
- misuse: `--out` a file, `--cache` a folder or a text file: exit 2 and one line, no traceback.
- sigkill + resume: `fedbench eval` with a slow external editor, SIGKILLed (the whole process group)
  --kills times, resumed each time; each kill point is drawn (seeded): half of them right after the
  next generated row (while generating), the others at a random moment of a whole run (mostly while
  scoring). The end must match an uninterrupted run byte for byte.
- concurrency: a second eval on a busy --out (refused, naming the holder's PID), a third with --wait
  (waits, then resumes to the same bytes), a score on a feature cache another process holds locked
  for 12 s (waits, says so, finishes), and a full disk while writing summary.json (one message, no
  temporary file, then resumes).

A crash is a traceback, an unexpected exception or an unexpected exit code. Rows lost / duplicated
compare the ids of samples.jsonl (and generations.jsonl) with the manifest's. Exit 1 when any is non-zero.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures" / "pixelsmile"
ENV = dict(os.environ)


def use_source(src: Path) -> None:
    """Run the fedbench of `src` here (imports) and in every child process (PYTHONPATH)."""
    sys.path.insert(0, str(src))
    ENV["PYTHONPATH"] = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])

SLOW_EDITOR = """
    import sys, time
    import numpy as np
    from PIL import Image
    src, dst, seed = sys.argv[1:]
    time.sleep(0.6)
    rgb = np.asarray(Image.open(src).convert("RGB")).astype(np.int16)
    noise = np.random.default_rng(int(seed)).integers(-6, 7, rgb.shape)
    Image.fromarray(np.clip(rgb + noise + 8, 0, 255).astype(np.uint8)).save(dst)
"""

FULL_DISK_CHILD = """
import errno, os, sys
from pathlib import Path
from fedbench.store import atomic
real = os.replace
def replace(src, dst):
    if Path(str(dst)).name == "summary.json":
        raise OSError(errno.ENOSPC, "No space left on device")
    real(src, dst)
atomic.os.replace = replace
from fedbench.cli import app
sys.argv = ["fedbench", *sys.argv[1:]]
app()
"""


@dataclass
class Group:
    name: str
    tried: int = 0
    crashes: int = 0
    lost: int = 0
    duplicated: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def crash(self, what: str) -> None:
        self.crashes += 1
        self.notes.append(" ".join(what.split())[:300])


def _load(path: Path, name: str) -> Any:
    """A test module, imported by path: the harness reuses its corpus instead of copying it."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def cli(*args: str, timeout: float = 600, **popen: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedbench.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout, **popen)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedbench.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)


def ids_of(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def count_rows(group: Group, expected: list[str], path: Path) -> None:
    got = ids_of(path)
    group.lost += len(set(expected) - set(got))
    group.duplicated += len(got) - len(set(got))


# ---- groups -----------------------------------------------------------------------------------------

def bad_edits(work: Path, fixtures: Path) -> Group:
    g = Group("bad edits (score)")
    bad = _load(REPO / "tests" / "integration" / "test_bad_inputs.py", "fedbench_bad_inputs")
    triplets = bad._fixture_triplets()[: len(bad.EDIT_CASES)]
    manifest = bad._corpus(work / "bad_edits" / "corpus", triplets)
    edits = work / "bad_edits" / "edits"
    edits.mkdir(parents=True, exist_ok=True)
    for (_, (build, _)), t in zip(bad.EDIT_CASES.items(), triplets):
        build(fixtures / t["ground_truth"], edits / t["id"])
    g.tried = len(bad.EDIT_CASES)
    out = work / "bad_edits" / "out"
    proc = cli("score", "-m", manifest, "-e", edits, "-o", out, "--cache", work / "cache.sqlite", "--workers", "2")
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        g.crash(f"score exited {proc.returncode}: {proc.stderr[-300:]}")
    count_rows(g, [t["id"] for t in triplets], out / "samples.jsonl")
    return g


def bad_manifests(work: Path, fixtures: Path) -> Group:
    g = Group("bad manifests (read)")
    from fedbench.data.manifest import ManifestError, read_manifest

    bad = _load(REPO / "tests" / "integration" / "test_bad_inputs.py", "fedbench_bad_inputs")
    rows = _load(REPO / "tests" / "unit" / "test_manifest_validation.py", "fedbench_manifest_validation")
    cases: list[tuple[str, Path]] = []
    for case in bad.MANIFEST_CASES:
        folder = work / "manifests" / case
        folder.mkdir(parents=True, exist_ok=True)
        cases.append((case, bad._bad_manifest(folder, case)))
    for case, (row, _) in rows.BAD_ROWS.items():
        folder = work / "manifests" / f"row-{case}"
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image
        import numpy as np

        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "a.png")
        cases.append((f"row {case}", rows._jsonl(folder, [rows._row(id="ok1"), row, rows._row(id="ok2")])))
    for case, path in cases:
        g.tried += 1
        try:
            read_manifest(path)
            g.crash(f"{case}: accepted")
        except ManifestError as exc:
            if not any(p.row == 2 for p in exc.problems) or str(path) not in str(exc):
                g.crash(f"{case}: the error names no row 2 or no file: {exc}")
        except Exception as exc:  # noqa: BLE001 - what the harness counts
            g.crash(f"{case}: {type(exc).__name__}: {exc}")
    return g


def misuse(work: Path, fixtures: Path) -> Group:
    g = Group("misuse (--out / --cache)")
    triplets = [json.loads(line) for line in (fixtures / "triplets.jsonl").read_text().splitlines()][:1]
    root = work / "misuse"
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "m.jsonl"
    manifest.write_text("".join(json.dumps({**t, "source": str(fixtures / t["source"]),
                                            "ground_truth": str(fixtures / t["ground_truth"])}) + "\n" for t in triplets))
    (root / "edits").mkdir(exist_ok=True)
    (root / "out.txt").write_text("a file")
    (root / "notes.txt").write_text("not a database\n" * 100)
    for label, out, cache in (("--out a file", root / "out.txt", work / "cache.sqlite"),
                              ("--cache a folder", root / "o1", root),
                              ("--cache a text file", root / "o2", root / "notes.txt")):
        g.tried += 1
        proc = cli("score", "-m", manifest, "-e", root / "edits", "-o", out, "--cache", cache, "--allow-outside")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        if proc.returncode != 2 or len(lines) != 1 or "Traceback" in proc.stderr:
            g.crash(f"{label}: exit {proc.returncode}, {len(lines)} lines: {proc.stderr[-200:]}")
    return g


def _eval_bench(work: Path, fixtures: Path, n: int) -> tuple[Path, Path, list[str]]:
    rows = [json.loads(line) for line in (fixtures / "triplets.jsonl").read_text().splitlines()][::4][:n]
    manifest = work / "bench.jsonl"
    manifest.write_text("".join(json.dumps({**r, "source": str(fixtures / r["source"]),
                                            "ground_truth": str(fixtures / r["ground_truth"])}) + "\n" for r in rows))
    program = work / "slow_editor.py"
    program.write_text(textwrap.dedent(SLOW_EDITOR))
    config = work / "slow.yaml"
    config.write_text("adapter: command\nseed: 3\nparams:\n"
                      f"  command: {json.dumps(f'{sys.executable} {program} {{input}} {{output}} {{seed}}')}\n")
    return manifest, config, [r["id"] for r in rows]


def _eval_args(manifest: Path, config: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["eval", "--editor", str(config), "--benchmark", str(manifest), "--out", str(out), "--allow-outside",
            "--cache", str(cache), "--workers", "2", *extra]


def sigkills(work: Path, fixtures: Path, n: int, kills: int, seed: int) -> Group:
    g = Group(f"sigkill + resume ({kills} kills)")
    (work / "kill").mkdir(exist_ok=True)
    manifest, config, ids = _eval_bench(work / "kill", fixtures, n)
    cache = work / "cache.sqlite"
    ref = work / "kill" / "ref"
    t0 = time.monotonic()
    proc = cli(*_eval_args(manifest, config, ref, cache))
    full = time.monotonic() - t0  # kill moments spread over a whole run: generation and scoring alike
    if proc.returncode != 0:
        g.crash(f"reference run exited {proc.returncode}: {proc.stderr[-300:]}")
        return g
    out = work / "kill" / "run"
    rng = random.Random(seed)
    for k in range(kills):
        g.tried += 1
        rows_before = len(ids_of(out / "generations.jsonl"))
        # the first kill (and about half of the others) right after the next generated row, while rows are
        # left to generate; else at a random moment of a whole run (model loading or scoring, mostly)
        at_row = rows_before < len(ids) and (k == 0 or rng.random() < 0.5)
        moment = rng.uniform(0.5, max(1.0, full * 0.9))
        run = start(*_eval_args(manifest, config, out, cache, "--resume"))
        t0 = time.monotonic()
        while run.poll() is None and time.monotonic() - t0 < moment:
            if at_row and len(ids_of(out / "generations.jsonl")) > rows_before:
                break
            time.sleep(0.02)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(60)
            rows = len(ids_of(out / "generations.jsonl"))
            where = ("while scoring the edits" if any(out.glob(".samples.jsonl.*.tmp")) else
                     "while generating" if rows < len(ids) else "after generating (loading or scoring references)")
            g.notes.append(f"kill {k + 1} after {time.monotonic() - t0:.1f} s, {rows} of {len(ids)} generated, {where}")
        else:
            err = run.stderr.read() if run.stderr else ""
            if run.returncode != 0:
                g.crash(f"resume {k + 1} exited {run.returncode}: {err[-300:]}")
            g.notes.append(f"run {k + 1} finished before its kill point")
    g.tried += 1
    final = cli(*_eval_args(manifest, config, out, cache, "--resume"))
    if final.returncode != 0 or "Traceback" in final.stderr:
        g.crash(f"final resume exited {final.returncode}: {final.stderr[-300:]}")
    count_rows(g, ids, out / "samples.jsonl")
    count_rows(g, ids, out / "generations.jsonl")
    temps = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    if temps:
        g.crash(f"temporary files left after the final resume: {temps}")
    same = (out / "samples.jsonl").exists() and \
        (out / "samples.jsonl").read_bytes() == (ref / "samples.jsonl").read_bytes()
    g.notes.append("samples.jsonl byte-identical to the uninterrupted run" if same else "samples.jsonl DIFFERS")
    if not same:
        g.crash("samples.jsonl differs from the uninterrupted run")
    return g


def concurrency(work: Path, fixtures: Path, n: int) -> Group:
    g = Group("concurrency + full disk")
    (work / "conc").mkdir(exist_ok=True)
    manifest, config, ids = _eval_bench(work / "conc", fixtures, n)
    cache = work / "cache.sqlite"
    out = work / "conc" / "run"

    # 1-2: a busy folder refuses (naming the holder), --wait waits and resumes to the same bytes
    first = start(*_eval_args(manifest, config, out, cache, "--resume"))
    lock = out / ".fedbench.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    g.tried += 1
    second = cli(*_eval_args(manifest, config, out, cache, "--resume"))
    if second.returncode != 2 or f"process {first.pid} " not in second.stderr or "Traceback" in second.stderr:
        g.crash(f"busy folder: exit {second.returncode}: {second.stderr[-300:]}")
    g.tried += 1
    waiting = start(*_eval_args(manifest, config, out, cache, "--resume", "--wait"))
    if first.wait(600) != 0:
        g.crash(f"first run exited {first.returncode}: {first.stderr.read()[-300:]}")
    first_bytes = (out / "samples.jsonl").read_bytes() if (out / "samples.jsonl").exists() else b""
    if waiting.wait(600) != 0:
        g.crash(f"--wait run exited {waiting.returncode}: {waiting.stderr.read()[-300:]}")
    elif (out / "samples.jsonl").read_bytes() != first_bytes:
        g.crash("the --wait run changed samples.jsonl")
    count_rows(g, ids, out / "samples.jsonl")
    count_rows(g, ids, out / "generations.jsonl")

    # 3: a feature cache held locked by another process for 12 s: the score waits, says so, finishes
    g.tried += 1
    busy = work / "conc" / "busy.sqlite"
    holder = sqlite3.connect(busy, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(12.0, lambda: holder.execute("COMMIT"))
    timer.start()
    scored = cli("score", "-m", manifest, "-e", out / "generated", "-o", work / "conc" / "busy_out", "--cache", busy,
                 "--allow-outside", "--workers", "1")
    timer.join()
    holder.close()
    if scored.returncode != 0 or "locked by another process" not in scored.stderr:
        g.crash(f"busy cache: exit {scored.returncode}: {scored.stderr[-300:]}")
    count_rows(g, ids, work / "conc" / "busy_out" / "samples.jsonl")

    # 4: a full disk while writing summary.json: one message, no temporary file, then a resume
    g.tried += 1
    disk = work / "conc" / "disk"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, *_eval_args(manifest, config, disk, cache)],
                          capture_output=True, text=True, env=ENV, timeout=600)
    temps = [p for p in disk.rglob("*") if p.name.endswith(".tmp")]
    lines = [line for line in proc.stderr.splitlines() if "disk full" in line]
    if proc.returncode != 4 or len(lines) != 1 or "Traceback" in proc.stderr or temps:
        g.crash(f"full disk: exit {proc.returncode}, temps {temps}: {proc.stderr[-300:]}")
    resumed = cli(*_eval_args(manifest, config, disk, cache, "--resume"))
    if resumed.returncode != 0:
        g.crash(f"resume after a full disk exited {resumed.returncode}: {resumed.stderr[-300:]}")
    count_rows(g, ids, disk / "samples.jsonl")
    return g


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=4, help="triplets in the eval runs")
    ap.add_argument("--results", type=Path, default=None, help="also write the table as JSON here")
    ap.add_argument("--src", type=Path, default=REPO / "src", help="the fedbench source to test (default: this one)")
    args = ap.parse_args()
    use_source(args.src.resolve())
    fixtures = Path(os.environ.get("FEDBENCH_FIXTURES", DEFAULT_FIXTURES))
    if not (fixtures / "triplets.jsonl").is_file():
        print(f"fixtures not found at {fixtures} (set FEDBENCH_FIXTURES)", file=sys.stderr)
        return 2
    os.environ.setdefault("FEDBENCH_FIXTURES", str(fixtures))
    ENV["FEDBENCH_FIXTURES"] = str(fixtures)
    tmp = tempfile.TemporaryDirectory(prefix="fedbench-reliability-") if args.work is None else None
    work = Path(tmp.name) if tmp else args.work
    work.mkdir(parents=True, exist_ok=True)
    groups: list[Group] = []
    for fn, extra in ((bad_manifests, ()), (misuse, ()), (bad_edits, ()), (sigkills, (args.n, args.kills, args.seed)),
                      (concurrency, (args.n,))):
        t0 = time.monotonic()
        print(f"running {fn.__name__} ...", file=sys.stderr, flush=True)
        group = fn(work, fixtures, *extra)
        group.seconds = round(time.monotonic() - t0, 1)
        groups.append(group)

    from rich.console import Console
    from rich.table import Table

    table = Table(title="fedbench reliability")
    for col in ("group", "cases tried", "crashes", "rows lost", "rows duplicated", "seconds"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for grp in groups:
        table.add_row(grp.name, str(grp.tried), str(grp.crashes), str(grp.lost), str(grp.duplicated), f"{grp.seconds:.0f}")
    total = Group("total", *(sum(getattr(x, f) for x in groups) for f in ("tried", "crashes", "lost", "duplicated")))
    table.add_row("[bold]total", str(total.tried), str(total.crashes), str(total.lost), str(total.duplicated),
                  f"{sum(x.seconds for x in groups):.0f}", end_section=True)
    console = Console(width=120)
    console.print(table)
    for grp in groups:
        for note in grp.notes:
            console.print(f"  {grp.name}: {note}", soft_wrap=True)
    if args.results:
        args.results.write_text(json.dumps([asdict(x) for x in groups], indent=2) + "\n")
    if tmp:
        tmp.cleanup()
    return 1 if total.crashes or total.lost or total.duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
