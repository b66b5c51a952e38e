"""`fedbench train warp` on real portraits: fitted on a seeded split of the PixelSmile triplets (plus
the slider pairs), the warp beats the untrained warp on the held-out triplets' FED-Score, with the
paired bootstrap interval of the difference above 0 (benchmarks/warp_finetune.py, seed 0). The
command counts the rows it skips, names bad rows, and its checkpoint loads into the editor."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.editors import build_editor, load_editor_config
from fedbench.editors.warp import WarpFields

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("warp_finetune", REPO / "benchmarks" / "warp_finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(pixelsmile: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("warp-ft")
    return _benchmark().run_seed(0, pixelsmile, work, test_per_class=2, sequences=True, n_bootstrap=2000,
                                 workers=None)


def test_fitted_warp_beats_the_reference_on_held_out_fed(result: dict) -> None:
    dims = {d["dimension"]: d for d in result["comparison"]["dimensions"]}
    fed = dims["fed"]
    print("fitted - reference FED:", round(fed["diff"], 2), fed["ci95"], "p", fed["p_value"])
    assert fed["n"] >= 10 and result["comparison"]["n_shared"] == result["split"]["test_rows"] == 12
    assert fed["mean_a"] > fed["mean_b"]  # a = fitted, b = reference
    assert fed["ci95"][0] > 0, fed  # the paired 95 % interval lies above 0
    assert fed["p_value"] < 0.05
    # the gain comes from moving the expression the right way, not from leaving the face alone
    assert dims["reg"]["ci95"][0] > 0 and dims["alignment"]["diff"] > 0
    assert result["summaries"]["fitted"]["status_counts"].get("generation_failed", 0) == 0


def test_fit_lowers_the_held_out_landmark_error(result: dict) -> None:
    lm = result["test_landmark_error"]
    assert lm["n"] == 12
    assert lm["fitted"] < 0.5 * lm["reference"], lm
    ck = result["checkpoint"]
    # cross-validation on the training side saw the same: the fit beats the reference fields there too
    assert ck["validation_loss"] < ck["validation_baselines"]["reference_editor"]
    assert ck["pairs"] == 18 + 3  # 18 blend triplets left for training, 3 slider pairs (contempt skipped)
    assert result["split"]["skipped_sequences"] == {"target 'contempt' is not one of the seven classes": 1}


def _copy(pixelsmile: Path, dest: Path, names: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(pixelsmile / "blend" / n, dest / n)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_counts_skipped_rows_and_the_checkpoint_loads(pixelsmile: Path, tmp_path: Path) -> None:
    from PIL import Image

    _copy(pixelsmile, tmp_path, ["happy.jpg", "sad.jpg", "angry.jpg", "fear.jpg"])
    Image.fromarray(np.full((160, 160, 3), 90, np.uint8)).save(tmp_path / "blank.png")
    row = lambda i, s, se, t, g: {"id": i, "source": s, "source_expression": se, "target": t,  # noqa: E731
                                  "ground_truth": g, "instruction": f"make it {t}"}
    data = _write(tmp_path / "train.jsonl", [
        row("h-s", "happy.jpg", "happy", "sad", "sad.jpg"),
        row("s-a", "sad.jpg", "sad", "angry", "angry.jpg"),
        row("a-f", "angry.jpg", "angry", "fear", "fear.jpg"),
        row("f-h", "fear.jpg", "fear", "happy", "happy.jpg"),
        row("blank-src", "blank.png", "happy", "sad", "sad.jpg"),
        row("blank-gt", "happy.jpg", "happy", "angry", "blank.png"),
        row("same", "sad.jpg", "sad", "sad", "sad.jpg"),
    ])
    out = tmp_path / "ckpt"
    res = CliRunner().invoke(app, ["train", "warp", "--data", str(data), "--out", str(out), "--folds", "2"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["data"]["skipped"] == {"no_face_source": 1, "no_face_ground_truth": 1, "same_expression": 1}
    assert {(r["id"], r["row"]) for r in meta["data"]["skipped_rows"]} == {("blank-src", 5), ("blank-gt", 6),
                                                                             ("same", 7)}
    assert meta["data"]["pairs"] == 4 and len(meta["data"]["sha256"]) == 64
    assert meta["key_stats"]["happy>sad"]["n_pairs"] == 1 and "sad" not in meta["key_stats"]  # no neutral data
    assert meta["validation"]["folds"] == 2 and meta["validation"]["mode"] == "pair"
    fields = WarpFields.load(out)
    editor = build_editor(load_editor_config("warp", {"checkpoint": str(out)}))
    assert editor.params["fields"] == fields.digest()
    # a second run into the same folder needs --overwrite
    res = CliRunner().invoke(app, ["train", "warp", "--data", str(data), "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_cli_names_bad_rows_before_any_work(pixelsmile: Path, tmp_path: Path) -> None:
    _copy(pixelsmile, tmp_path, ["happy.jpg", "sad.jpg"])
    data = _write(tmp_path / "bad.jsonl", [
        {"id": "ok", "source": "happy.jpg", "target": "sad", "ground_truth": "sad.jpg", "instruction": "x"},
        {"id": "gone", "source": "missing.jpg", "target": "sad", "ground_truth": "sad.jpg", "instruction": "x"},
        {"id": "odd", "source": "happy.jpg", "target": "smug", "ground_truth": "sad.jpg", "instruction": "x"},
    ])
    res = CliRunner().invoke(app, ["train", "warp", "--data", str(data), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "bad.jsonl" in text and "row 2 (id 'gone')" in text and "missing.jpg" in text
    assert "row 3 (id 'odd')" in text and "smug" in text
    assert not (tmp_path / "o").exists()
