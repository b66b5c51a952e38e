"""Report tables (Markdown, CSV, LaTeX, JSON) agree with summary.json to the printed precision.

Run folders are synthetic (invented rows aggregated by the scorer's own `summarise`): the numbers do
not matter here, only that every table says what the summaries say. Each format is parsed back.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.labels import EXPRESSIONS
from fedbench.report import tables
from fedbench.report.runs import RunError, load_run, load_runs
from fedbench.testing.synthetic_runs import Behaviour, synthetic_rows, write_run

DIMS = ("fed", "alignment", "fidelity", "reg")
BEHAVIOURS = {
    "strong_editor": Behaviour(gain=1.05, alignment=0.85, keep=0.9),
    "lazy|editor": Behaviour(gain=0.1, alignment=0.2, keep=0.99),
    "over&editor%": Behaviour(gain=2.2, alignment=0.9, keep=0.6, failure_rate=0.1),
}


def _samples(n: int = 70) -> list[tuple[str, str]]:
    return [(f"s{i:03d}", EXPRESSIONS[i % len(EXPRESSIONS)]) for i in range(n)]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("runs")
    return [write_run(base / name, synthetic_rows(_samples(), b, seed=i), None, None)
            for i, (name, b) in enumerate(BEHAVIOURS.items())]


@pytest.fixture(scope="module")
def summaries(run_dirs) -> dict[str, dict]:
    return {p.name: json.loads((p / "summary.json").read_text()) for p in run_dirs}


def _close(printed: float, truth: float, metric: str) -> bool:
    """`printed` is `truth` rounded to the printed precision (half a unit in the last place)."""
    return abs(printed - truth) <= 0.5 * 10 ** -tables.digits(metric) + 1e-9


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def test_leaderboard_is_ordered_by_fed_and_keeps_every_run(run_dirs, summaries):
    entries = tables.leaderboard(load_runs(run_dirs))
    feds = [e.means["fed"] for e in entries]
    assert feds == sorted(feds, reverse=True)
    assert {e.name for e in entries} == set(BEHAVIOURS)
    # The over-editor's failures are counted per status, as in its summary.
    over = next(e for e in entries if e.name == "over&editor%")
    assert over.failures == {k: v for k, v in summaries["over&editor%"]["status_counts"].items() if k != "ok"}
    assert sum(over.failures.values()) > 0


def test_markdown_leaderboard_parses_back_to_the_summaries(run_dirs, summaries):
    text = tables.render(load_runs(run_dirs), "md")
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| model")]
    assert len(lines) == len(BEHAVIOURS)
    for line in lines:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        name = cells[0].replace("\\|", "|")
        s = summaries[name]
        for dim, cell in zip(DIMS, cells[1:5]):
            mean, lo, hi = _numbers(cell)
            o = s["overall"][dim]
            assert _close(mean, o["mean"], dim) and _close(lo, o["ci95"][0], dim) and _close(hi, o["ci95"][1], dim)
        assert _close(_numbers(cells[5])[0], s["gain"]["mean"], "gain")
        assert cells[5].endswith(f"({tables.gain_reading(s['gain']['mean'])})")
        assert _close(_numbers(cells[6])[0], s["gain"]["median"], "gain")
        assert cells[7] == f"{s['n_scored']} / {s['n_samples']}"
        assert cells[9] == s["fedscore_version"]


def test_csv_and_json_carry_the_summary_values_unrounded(run_dirs, summaries):
    runs = load_runs(run_dirs)
    csv_rows = list(csv.DictReader(io.StringIO(tables.render(runs, "csv"))))
    json_rows = json.loads(tables.render(runs, "json"))
    assert [r["model"] for r in csv_rows] == [r["model"] for r in json_rows]
    for c, j in zip(csv_rows, json_rows):
        s = summaries[c["model"]]
        for dim in DIMS:
            o = s["overall"][dim]
            assert float(c[dim]) == j[dim] == o["mean"]
            assert [float(c[f"{dim}_ci_lo"]), float(c[f"{dim}_ci_hi"])] == [j[f"{dim}_ci_lo"], j[f"{dim}_ci_hi"]] == o["ci95"]
        assert float(c["gain_mean"]) == j["gain_mean"] == s["gain"]["mean"]
        for status, n in s["status_counts"].items():
            assert int(c[f"status_{status}"]) == j[f"status_{status}"] == n
        # A status another run has but this one lacks is a 0, not a gap.
        assert all(int(c[k]) >= 0 for k in c if k.startswith("status_"))


def test_latex_leaderboard_parses_back_and_escapes_names(run_dirs, summaries):
    text = tables.render(load_runs(run_dirs), "latex")
    assert r"over\&editor\%" in text and r"strong\_editor" in text
    rows = [ln for ln in text.splitlines() if ln.endswith(r"\\") and not ln.startswith("Model")]
    assert len(rows) == len(BEHAVIOURS)
    unescape = {r"\&": "&", r"\%": "%", r"\_": "_"}
    best = {d: max(s["overall"][d]["mean"] for s in summaries.values()) for d in DIMS}
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)&", row[:-2])]
        name = cells[0]
        for k, v in unescape.items():
            name = name.replace(k, v)
        s = summaries[name]
        for dim, cell in zip(DIMS, cells[1:5]):
            mean, lo, hi = _numbers(cell)
            o = s["overall"][dim]
            assert _close(mean, o["mean"], dim) and _close(lo, o["ci95"][0], dim) and _close(hi, o["ci95"][1], dim)
            # Bold marks the best mean of the column, and only it.
            is_best = round(o["mean"], tables.digits(dim)) == round(best[dim], tables.digits(dim))
            assert (r"\textbf{" in cell) == is_best, (name, dim, cell)
        assert _close(_numbers(cells[5])[0], s["gain"]["mean"], "gain")


@pytest.mark.parametrize("fmt_", tables.FORMATS)
@pytest.mark.parametrize("metric", ["fed", "fidelity"])
def test_per_class_tables_agree_with_summaries(run_dirs, summaries, fmt_, metric):
    text = tables.render(load_runs(run_dirs), fmt_, table="classes", metric=metric)
    classes = [c for c in EXPRESSIONS]
    parsed: dict[str, dict[str, float]] = {}
    if fmt_ in ("csv", "json"):
        rows = list(csv.DictReader(io.StringIO(text))) if fmt_ == "csv" else json.loads(text)
        for r in rows:
            parsed[r["model"]] = {c: float(r[c]) for c in classes} | {"macro": float(r["macro"])}
            assert all(int(r[f"n_{c}"]) == summaries[r["model"]]["per_class"][c]["n"] for c in classes)
        tolerance = lambda got, want: got == want  # noqa: E731 - unrounded formats
    else:
        sep = r"(?<!\\)\|" if fmt_ == "md" else r"(?<!\\)&"
        body = [ln for ln in text.splitlines()
                if (ln.startswith("| ") and not ln.startswith("| model")) or (ln.endswith(r"\\") and not ln.startswith("Model"))]
        for ln in body:
            cells = [c.strip() for c in re.split(sep, ln.strip().removesuffix(r"\\"))]
            cells = [c for c in cells if c] if fmt_ == "md" else cells
            name = cells[0].replace("\\|", "|").replace(r"\&", "&").replace(r"\%", "%").replace(r"\_", "_")
            values = [_numbers(c)[0] for c in cells[1:]]
            parsed[name] = dict(zip([*classes, "macro"], values))
            if fmt_ == "md":  # the n in brackets
                assert [int(re.search(r"\((\d+)\)", c).group(1)) for c in cells[1:-1]] == \
                    [summaries[name]["per_class"][c]["n"] for c in classes]
        tolerance = lambda got, want: _close(got, want, metric)  # noqa: E731
    assert set(parsed) == set(BEHAVIOURS)
    for name, values in parsed.items():
        s = summaries[name]
        for c in classes:
            assert tolerance(values[c], s["per_class"][c][metric]), (name, c)
        assert tolerance(values["macro"], s["overall"][metric]["mean"])


def test_cli_prints_tables_and_writes_files(run_dirs, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["report", *map(str, run_dirs), "--format", "md"])
    assert res.exit_code == 0, res.output
    assert res.output == tables.render(load_runs(run_dirs), "md")
    out = tmp_path / "t" / "board.tex"
    res = runner.invoke(app, ["report", *map(str, run_dirs), "--format", "latex", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == tables.render(load_runs(run_dirs), "latex")
    res = runner.invoke(app, ["report", str(run_dirs[0]), "--format", "xml"])
    assert res.exit_code == 2 and "unknown format" in res.output


def test_a_folder_without_summary_is_refused_naming_the_file(run_dirs, tmp_path):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    with pytest.raises(RunError, match=re.escape(str(empty / "summary.json"))):
        load_run(empty)
    res = CliRunner().invoke(app, ["report", str(run_dirs[0]), str(empty), "--format", "csv"])
    assert res.exit_code == 2
    assert "summary.json" in res.output and "not-a-run" in res.output
    # A parent of run folders says where the runs are.
    with pytest.raises(RunError, match="run folders below it"):
        load_run(run_dirs[0].parent)


def test_broken_files_are_named_with_their_line(tmp_path, run_dirs):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text((run_dirs[0] / "summary.json").read_text())
    (bad / "samples.jsonl").write_text('{"id": "a", "target": "happy"}\n{not json\n')
    with pytest.raises(RunError, match=r"samples\.jsonl: line 2: invalid JSON"):
        load_run(bad)
    (bad / "summary.json").write_text("{")
    with pytest.raises(RunError, match=r"summary\.json: invalid JSON"):
        load_run(bad)
    (bad / "summary.json").write_text("{}")
    with pytest.raises(RunError, match="not a fedbench summary"):
        load_run(bad)


def test_same_folder_names_are_told_apart(tmp_path):
    rows = synthetic_rows(_samples(14), Behaviour(), seed=1)
    a = write_run(tmp_path / "exp1" / "model", rows, None, None)
    b = write_run(tmp_path / "exp2" / "model", rows, None, None)
    assert [r.name for r in load_runs([a, b])] == ["exp1/model", "exp2/model"]
    with pytest.raises(RunError, match="given twice"):
        load_runs([a, a])
