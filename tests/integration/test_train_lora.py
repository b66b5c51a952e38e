"""`fedbench train diffusers-lora` on a tiny random InstructPix2Pix pipeline, on the CPU: a few
steps with a finite loss, checkpoints, a validation pass scored by the core scorer, a resume that
continues the step count and ends bit-identical to an uninterrupted run, and a LoRA that loads into
the `diffusers` editor and changes its output."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fedbench.editors import EditRequest, EditStatus, build_editor, load_editor_config  # noqa: E402
from fedbench.testing.tiny_pipeline import build_tiny_instruct_pix2pix  # noqa: E402
from fedbench.train.lora import LORA_FILE, LoraTrainConfig, LoraTrainError, train_lora  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SIDE = 192  # small copies of the fixtures: cheap to decode, still faces for the validation scorer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the tiny model gains nothing from more, and on a shared, busy machine two
    spinning OpenMP threads make each step 10-30 times slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_instruct_pix2pix(tmp_path_factory.mktemp("tiny") / "pipe")


@pytest.fixture(scope="module")
def data(pixelsmile: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight triplets with downsized images, in a folder of their own: six of the blend person and one
    of each of two slider people (validation holds out whole people: it takes those two)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("lora-data")
    rows = [json.loads(line) for line in (pixelsmile / "triplets.jsonl").read_text().splitlines()][::4][:6]
    rows += [{"id": f"slider-{t}", "source": f"slider/{t}/00.avif", "ground_truth": f"slider/{t}/27.avif",
              "target": t, "instruction": f"Change the expression to {t}.", "identity": f"slider-{t}"}
             for t in ("happy", "sad")]
    for r in rows:
        for key in ("source", "ground_truth"):
            src = Path(r[key])  # blend/happy.jpg -> happy.png; slider/sad/27.avif -> sad-27.png
            name = (src.stem if src.parts[0] == "blend" else f"{src.parent.name}-{src.stem}") + ".png"
            if not (root / name).exists():
                Image.open(pixelsmile / r[key]).convert("RGB").resize((SIDE, SIDE)).save(root / name)
            r[key] = name
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


def _config(tiny: Path, data: Path, out: Path, **kw) -> LoraTrainConfig:
    base = dict(base=str(tiny), data=data, out=out, resolution=32, batch_size=2, grad_accum=2, max_steps=4,
                checkpoint_every=2, val_size=0, rank=4, lr=1e-3, progress=False, score_workers=1)
    return LoraTrainConfig(**{**base, **kw})


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_trains_checkpoints_and_validates(tiny: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = train_lora(_config(tiny, data, out, val_size=2, val_steps=2, cache_path=tmp_path / "features.sqlite"))
    assert res.steps == 4 and res.resumed_from == 0 and len(res.losses) == 4
    assert all(math.isfinite(v) and v > 0 for v in res.losses)
    assert (out / LORA_FILE).is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    state = json.loads((out / "checkpoints" / "step-000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["micro_step"] == 8  # grad_accum 2: two micro-batches per step
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", LORA_FILE):
        assert (out / "checkpoints" / "step-000004" / name).is_file(), name
    assert [int(r["step"]) for r in _rows(out / "train_log.csv")] == [1, 2, 3, 4]
    # validation: the held-out triplets went through the diffusers editor with the saved LoRA and the
    # core scorer (the tiny model paints noise: no face in the edits, every sample scored 0)
    (val,) = _rows(out / "validation.csv")
    assert int(val["step"]) == 4 and int(val["n"]) == 2 and int(val["failed"]) == 0
    samples = [json.loads(line) for line in (out / "validation" / "step-000004" / "run" / "samples.jsonl").open()]
    assert len(samples) == 2 and {s["status"] for s in samples} <= {"ok", "no_face_edit", "degenerate_gt"}
    gen = json.loads((out / "validation" / "step-000004" / "run" / "generations.jsonl").read_text().splitlines()[0])
    assert gen["params"]["lora"].endswith("lora") and len(gen["params"]["lora_digest"]) == 16
    meta = json.loads((out / "training.json").read_text())
    assert meta["settings"]["mixed_precision"] == "no" and len(meta["settings"]["data_sha256"]) == 64
    assert meta["data"]["train"] == 6 and meta["data"]["validation"] == 2 and meta["steps"] == 4


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(tiny: Path, data: Path,
                                                                           tmp_path: Path) -> None:
    whole = train_lora(_config(tiny, data, tmp_path / "whole"))
    cfg = _config(tiny, data, tmp_path / "parts", max_steps=2)
    first = train_lora(cfg)
    # as if the run had gone on to log step 3 and been killed before its next checkpoint
    with open(tmp_path / "parts" / "train_log.csv", "a") as fh:
        fh.write("3,0,9.9,0.001,9.9\n")
    # a resumed run must keep the settings that shape the weights
    with pytest.raises(LoraTrainError, match="lr"):
        train_lora(dataclasses.replace(cfg, max_steps=4, resume=True, lr=5e-4))
    second = train_lora(dataclasses.replace(cfg, max_steps=4, resume=True))
    assert (first.steps, second.resumed_from, second.steps) == (2, 2, 4)
    assert [int(r["step"]) for r in _rows(tmp_path / "parts" / "train_log.csv")] == [1, 2, 3, 4]
    assert first.losses + second.losses == whole.losses
    a, b = load_file(tmp_path / "whole" / LORA_FILE), load_file(tmp_path / "parts" / LORA_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the adapter did train: B started at zero
    assert any(k.endswith("lora_B.weight") and a[k].abs().max() > 0 for k in a)
    # starting again over a run needs --overwrite; resuming past the end is refused
    with pytest.raises(LoraTrainError, match="--overwrite"):
        train_lora(cfg)
    with pytest.raises(LoraTrainError, match="already at step 4"):
        train_lora(dataclasses.replace(cfg, max_steps=4, resume=True))


def test_lora_loads_into_the_diffusers_editor_and_changes_its_output(tiny: Path, data: Path,
                                                                      tmp_path: Path, pixelsmile: Path) -> None:
    out = tmp_path / "run"
    train_lora(_config(tiny, data, out, lr=1e-2))
    common = {"model": str(tiny), "steps": 2, "resolution": 32}
    tuned = build_editor(load_editor_config("diffusers", {**common, "lora": str(out)}))
    plain = build_editor(load_editor_config("diffusers", common))
    req = EditRequest("x", data.parent / "happy.png", "Change the expression to sad.", "sad", 7)
    with tuned, plain:
        a, b = tuned.edit(req), plain.edit(req)
        assert tuned.load_info["pipeline"] == "StableDiffusionInstructPix2PixPipeline"
    assert a.status == b.status == EditStatus.OK
    assert a.image.shape == b.image.shape == (SIDE, SIDE, 3)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() > 0.5


def test_cli_trains_and_names_bad_rows(tiny: Path, data: Path, tmp_path: Path) -> None:
    from fedbench.cli import app

    out = tmp_path / "cli"
    args = ["train", "diffusers-lora", "--base", str(tiny), "--data", str(data), "--out", str(out),
            "--resolution", "32", "--batch-size", "2", "--max-steps", "1", "--val-size", "0", "--rank", "4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / LORA_FILE).is_file() and "lora=" in res.output
    bad = data.parent / "bad.jsonl"  # beside the images its rows name
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[1]["target"] = "bored"
    rows[2]["source"] = "nowhere.png"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, [*args[:4], "--data", str(bad), "--out", str(tmp_path / "bad-run")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "row 2" in text and "bored" in text and "row 3" in text and "nowhere.png" in text
    assert not (tmp_path / "bad-run").exists()  # nothing started
    # a model that is not InstructPix2Pix-shaped is refused by name
    res = CliRunner().invoke(app, ["train", "diffusers-lora", "--base", str(tmp_path / "no-model"), "--data",
                                   str(data), "--out", str(tmp_path / "x"), "--val-size", "0"])
    assert res.exit_code == 2 and "cannot load" in " ".join(res.output.split())


def test_validation_holds_out_whole_identities_without_emptying_training() -> None:
    from fedbench.data.manifest import Triplet
    from fedbench.train.lora import split_validation

    def rows(spec: list[tuple[str, str | None]]) -> list[Triplet]:
        return [Triplet(id=f"r{i}", source=Path("s.png"), instruction="", target=t, ground_truth=Path("g.png"),
                        identity=ident, row=i + 1) for i, (t, ident) in enumerate(spec)]

    # one person with 30 rows beside three with one each: the big one stays in training
    data = rows([("happy", "big")] * 30 + [("sad", "p1"), ("sad", "p2"), ("angry", "p3")])
    train, val, how = split_validation(data, 2, seed=0)
    assert how.startswith("identity") and {t.identity for t in val} <= {"p1", "p2", "p3"} and len(val) == 2
    assert not {t.identity for t in val} & {t.identity for t in train}
    # no identities: whole source images, never single rows (two pairs of one photo stay together)
    data = [Triplet(id=f"r{i}", source=Path(f"s{i % 5}.png"), instruction="", target=("happy", "sad")[i % 2],
                    ground_truth=Path(f"g{i}.png"), row=i + 1) for i in range(10)]
    train, val, how = split_validation(data, 4, seed=0)
    assert how.startswith("identity, else source image") and len(val) == 4
    assert not {t.source for t in val} & {t.source for t in train}
    assert len(train) == 6 and split_validation(data, 4, seed=0)[1] == val
    with pytest.raises(LoraTrainError, match="--val-data"):  # one photo only: no face to hold out
        split_validation(rows([("happy", None), ("sad", None)] * 5), 2, seed=0)
    # one person only: whole photos of that person, and the mode says so
    one = [t.model_copy(update={"identity": "solo"}) for t in data]
    train, val, how = split_validation(one, 4, seed=0)
    assert how.startswith("source image (one person only)") and not {t.source for t in val} & {t.source for t in train}
    with pytest.raises(LoraTrainError, match="no training data"):
        split_validation(data, 10, seed=0)
