"""`fedbench train warp` on real portraits, held out by person: the slider people of the PixelSmile
fixtures are held out one at a time (benchmarks/warp_finetune.py's leave-one-person-out, FED-Score's
default version), the strength model is fitted on everyone else (slider pairs at four intensities)
and the fitted warp beats the reference warp on them,
pooled, with the largest gain significant; the shipped `checkpoint=fitted` preset is refitted bit
for bit. The command counts the rows it skips, names bad rows, and its checkpoints load into the
editor."""

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
from fedbench.editors.warp import PRESETS, WarpFields, reference_field
from fedbench.metrics.fedscore import FEDSCORE_VERSION
from fedbench.train.warp_strength import RULES

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SLIDERS = ("slider-happy", "slider-sad", "slider-angry")


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("warp_finetune", REPO / "benchmarks" / "warp_finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lopo(pixelsmile: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("warp-lopo")
    res = _benchmark().leave_one_person_out(pixelsmile, work, seeds=[0], version=FEDSCORE_VERSION, n_bootstrap=2000,
                                            workers=None, models=("strength",), only=SLIDERS)
    res["workdir"] = work
    return res


def test_fit_never_sees_the_held_out_person(lopo: dict) -> None:
    assert lopo["people"] == ["blend-000001", *SLIDERS, "slider-contempt"]
    for person in SLIDERS:
        train = [json.loads(x) for x in (lopo["workdir"] / person / "train.jsonl").read_text().splitlines()]
        test = [json.loads(x) for x in (lopo["workdir"] / person / "test.jsonl").read_text().splitlines()]
        assert {r["identity"] for r in test} == {person} and person not in {r["identity"] for r in train}
        assert [r["meta"]["frame"] for r in test] == [14, 27]  # tested at the middle and the last frame
        assert sorted({r["meta"]["frame"] for r in train if "meta" in r}) == [7, 14, 21, 27]  # trained on four
        (v,) = next(e for e in lopo["per_person"] if e["person"] == person)["variants"]
        # 30 blend pairs and 4 pairs of each other slider person; folds by person (4 of them: one each)
        assert v["train_pairs"] == 38 and all(r["n"] > 0 for r in v["fit"]["validation"])


def test_fitted_warp_beats_the_reference_on_held_out_people(lopo: dict) -> None:
    (pooled,) = lopo["pooled"]
    fed = pooled["all"]["dimensions"]["fed"]
    print("held-out sliders, fitted - reference FED:", round(fed["diff"], 2), fed["ci95"], "p", fed["p_value"])
    for e in lopo["per_person"]:
        if "variants" in e:
            c = e["variants"][0]["comparison"]["dimensions"]["fed"]
            print(e["person"], round(c["mean_b"], 2), "->", round(c["mean_a"], 2), c["ci95"])
    assert pooled["test_people"] == 3 and pooled["test_triplets"] == 6 and fed["n"] == 6
    assert fed["mean_a"] > fed["mean_b"]  # a = fitted, b = reference
    happy = next(e for e in lopo["per_person"] if e["person"] == "slider-happy")["variants"][0]["comparison"]
    assert happy["dimensions"]["fed"]["ci95"][0] > 0  # the strength learnt from others carries over
    assert happy["dimensions"]["reg"]["diff"] > 0  # by moving the expression as far as the ground truth does


def _split_figures(node: object, figures: dict[str, float], path: str = "") -> object:
    """`node` with the FED means the fit measured (training_fed, validation: floats under a key naming
    fed) taken out into `figures` by their path; settings such as the grid and strengths stay in."""
    if isinstance(node, dict):
        return {k: _split_figures(v, figures, f"{path}/{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_split_figures(v, figures, f"{path}/{i}") for i, v in enumerate(node)]
    if isinstance(node, float) and "fed" in path:
        figures[path] = node
        return None
    return node


def test_shipped_preset_refits_bit_for_bit(lopo: dict, pixelsmile: Path, tmp_path: Path) -> None:
    """The fitted fields refit byte for byte. The FED means the checkpoint records beside them come
    through OpenVINO, whose CPU kernels round differently on other processors (the preset was fitted on
    an Intel Xeon; an AMD EPYC moves them by ~2e-3): same machine, same bytes; elsewhere within 0.01,
    and every other field, the strengths and the chosen rule included, identical."""
    out = tmp_path / "fitted"
    res = _benchmark().refit_preset(pixelsmile, out, FEDSCORE_VERSION, table=lopo["_table"])
    shipped = PRESETS["fitted"]
    assert (out / "warp_fields.npz").read_bytes() == (shipped / "warp_fields.npz").read_bytes()
    refit, meta = (json.loads((d / "checkpoint.json").read_text()) for d in (out, shipped))
    figures: dict[str, float] = {}
    shipped_figures: dict[str, float] = {}
    assert _split_figures(refit, figures) == _split_figures(meta, shipped_figures)
    assert figures.keys() == shipped_figures.keys() and len(figures) > 10
    for key, value in figures.items():
        assert value == pytest.approx(shipped_figures[key], abs=0.01), key
    assert meta["data"]["identities"] == ["blend-000001", *SLIDERS, "slider-contempt"]
    assert meta["data"]["pairs"] == 42 and meta["data"]["people"] == 4  # contempt: no usable pair
    assert meta["fedscore_version"] == FEDSCORE_VERSION
    editor = build_editor(load_editor_config("warp", {"checkpoint": "fitted"}))
    assert editor.params["fields"] == res.fields.digest() == WarpFields.load(shipped).digest()
    assert editor.params["fitted"] is True


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
    res = CliRunner().invoke(app, ["train", "warp", "--model", "additive", "--data", str(data), "--out", str(out),
                                   "--folds", "2"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["data"]["skipped"] == {"no_face_source": 1, "no_face_ground_truth": 1, "same_expression": 1}
    assert {(r["id"], r["row"]) for r in meta["data"]["skipped_rows"]} == {("blank-src", 5), ("blank-gt", 6),
                                                                             ("same", 7)}
    assert meta["data"]["pairs"] == 4 and len(meta["data"]["sha256"]) == 64
    assert meta["key_stats"]["happy>sad"]["n_pairs"] == 1 and "sad" not in meta["key_stats"]  # no neutral data
    # no identity column: whole source images are held out, never single pairs
    assert meta["validation"]["folds"] == 2 and meta["validation"]["mode"] == "source image"
    fields = WarpFields.load(out)
    editor = build_editor(load_editor_config("warp", {"checkpoint": str(out)}))
    assert editor.params["fields"] == fields.digest()
    # a second run into the same folder needs --overwrite
    res = CliRunner().invoke(app, ["train", "warp", "--data", str(data), "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    # the default model (strength) skips the same rows, scores the rest at every strength, and loads
    out = tmp_path / "strength"
    res = CliRunner().invoke(app, ["train", "warp", "--data", str(data), "--out", str(out), "--folds", "2",
                                   "--strengths", "1,2", "--fedscore-version", "1.2"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["data"]["skipped"] == {"no_face_source": 1, "no_face_ground_truth": 1, "same_expression": 1}
    assert meta["data"]["pairs"] == 4 and meta["grid"] == [1.0, 2.0] and meta["rule"] in RULES
    assert set(meta["strengths"]) == {"happy", "sad", "surprise", "fear", "disgust", "angry"}
    assert [r["rule"] for r in meta["validation"]["rules"]] == list(RULES)
    editor = build_editor(load_editor_config("warp", {"checkpoint": str(out)}))
    for source in (None, "happy"):  # the strength model's field is the same for every source
        np.testing.assert_allclose(editor.fields.lookup("sad", source), meta["strengths"]["sad"] * reference_field("sad"))


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


def test_cli_trains_on_a_hub_dataset_and_records_its_rows(pixelsmile: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`--data hf://datasets/...` (a save_to_disk snapshot; only the download faked): read as `fedbench
    score` reads it, and the checkpoint records the URL and the rows' content sha256, not a folder's."""
    datasets = pytest.importorskip("datasets")
    import huggingface_hub

    monkeypatch.setenv("FEDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    img = lambda n: {"bytes": (pixelsmile / "blend" / n).read_bytes(), "path": n}  # noqa: E731
    pairs = [("happy", "sad"), ("sad", "angry"), ("angry", "fear"), ("fear", "happy")]
    feats = datasets.Features({"id": datasets.Value("string"), "source": datasets.Image(),
                               "source_expression": datasets.Value("string"), "instruction": datasets.Value("string"),
                               "target": datasets.Value("string"), "ground_truth": datasets.Image()})
    datasets.Dataset.from_dict({
        "id": [f"{s}-{t}" for s, t in pairs], "source": [img(f"{s}.jpg") for s, _ in pairs],
        "source_expression": [s for s, _ in pairs], "instruction": [f"make it {t}" for _, t in pairs],
        "target": [t for _, t in pairs], "ground_truth": [img(f"{t}.jpg") for _, t in pairs],
    }, features=feats).save_to_disk(tmp_path / "snapshot")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tmp_path / "snapshot"))
    url = "hf://datasets/org/warp-pairs"
    out = tmp_path / "ckpt"
    res = CliRunner().invoke(app, ["train", "warp", "--model", "additive", "--data", url, "--out", str(out),
                                   "--folds", "2"])
    assert res.exit_code == 0, res.output
    from fedbench.train.data import load_training_manifest, rows_sha256

    data = json.loads((out / "checkpoint.json").read_text())["data"]
    assert data["path"] == url and data["sha256_of"] == "rows" and data["pairs"] == 4
    assert data["sha256"] == rows_sha256(load_training_manifest(tmp_path / "snapshot"))
    WarpFields.load(out)
