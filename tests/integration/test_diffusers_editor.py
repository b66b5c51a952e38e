"""The `diffusers` adapter end to end on a tiny random InstructPix2Pix pipeline built here, offline,
saved with save_pretrained and loaded by local path on the CPU: real diffusers code, no download."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: nothing may download

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch", reason="the diffusers extra is not installed: pip install 'fedbench[diffusers]'")
pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install 'fedbench[diffusers]'")
pytest.importorskip("transformers", reason="the diffusers extra is not installed: pip install 'fedbench[diffusers]'")

import torch  # noqa: E402

from fedbench.editors import build_editor, load_editor_config  # noqa: E402
from fedbench.editors.base import EditRequest, EditStatus  # noqa: E402
from fedbench.editors.config import EditorConfigError  # noqa: E402
from fedbench.editors.diffusers_editor import DiffusersEditor, DiffusersLoadError  # noqa: E402
from fedbench.testing.tiny_pipeline import build_tiny_instruct_pix2pix  # noqa: E402

pytestmark = [pytest.mark.slow,
              # diffusers' schedulers call np.array on tensors the numpy-2 way it warns about; not ours
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_instruct_pix2pix(tmp_path_factory.mktemp("tiny-ip2p") / "pipe")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Odd sizes (not multiples of 16) so the working-size rounding and the resize back are exercised.
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("src") / "face.png"
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(path)
    return path


def _request(source: Path, seed: int, sample_id: str = "s1") -> EditRequest:
    return EditRequest(sample_id=sample_id, source=source, instruction="make the person smile", target="happy",
                       seed=seed, source_expression="neutral")


def _editor(tiny: Path, **params: object) -> DiffusersEditor:
    base = {"model": str(tiny), "device": "cpu", "dtype": "float32", "steps": 2, "guidance": 7.5,
            "image_guidance": 1.5}
    return DiffusersEditor(**{**base, **params})


def test_tiny_pipeline_folder_is_complete(tiny: Path) -> None:
    index = (tiny / "model_index.json").read_text()
    assert "StableDiffusionInstructPix2PixPipeline" in index
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny / sub).is_dir(), sub


def test_tiny_builder_is_deterministic(tiny: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    again = build_tiny_instruct_pix2pix(tmp_path / "again")
    for sub in ("unet", "vae", "text_encoder"):
        (a_file,) = (tiny / sub).glob("*.safetensors")
        (b_file,) = (again / sub).glob("*.safetensors")
        a, b = load_file(a_file), load_file(b_file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), sub


def test_edit_size_and_seed_determinism(tiny: Path, source: Path) -> None:
    with _editor(tiny) as editor:
        a = editor.edit(_request(source, seed=11))
        b = editor.edit(_request(source, seed=11))
        c = editor.edit(_request(source, seed=12))
        assert editor.load_info["pipeline"] == "StableDiffusionInstructPix2PixPipeline"  # resolved from model_index
        assert editor.load_info["device"] == "cpu" and editor.load_info["ignored_params"] == []
    for r in (a, b, c):
        assert r.status is EditStatus.OK, r.reason
        assert r.image is not None and r.image.shape == (37, 53, 3) and r.image.dtype == np.uint8
    assert a.details["work_size"] == [48, 32]  # 53x37 -> nearest multiples of 16
    assert a.image.std() > 1.0  # a real decoded image, not a constant
    assert a.image.tobytes() == b.image.tobytes()  # same seed: same bytes
    assert a.image.tobytes() != c.image.tobytes()  # another seed: another image


def test_same_seed_same_bytes_across_fresh_loads(tiny: Path, source: Path) -> None:
    with _editor(tiny) as e1:
        first = e1.edit(_request(source, seed=5))
    with _editor(tiny) as e2:
        second = e2.edit(_request(source, seed=5))
    assert first.status is second.status is EditStatus.OK
    assert first.image.tobytes() == second.image.tobytes()


def test_resolution_resizes_and_comes_back(tiny: Path, tmp_path: Path) -> None:
    src = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(src)
    with _editor(tiny, resolution=32) as editor:
        r = editor.edit(_request(src, seed=1))
    assert r.status is EditStatus.OK, r.reason
    assert r.details["work_size"] == [32, 16]  # long side 32, short side 21.3 -> 16
    assert r.image.shape == (64, 96, 3)


def test_prompt_template_changes_the_conditioning(tiny: Path, source: Path) -> None:
    with _editor(tiny) as plain, _editor(tiny, prompt_template="a {target} face, was {source_expression}") as tmpl:
        assert tmpl.prompt_for(_request(source, 3)) == "a happy face, was neutral"
        a, b = plain.edit(_request(source, 3)), tmpl.edit(_request(source, 3))
    assert a.image.tobytes() != b.image.tobytes()


def test_lora_weights_load_and_change_the_output(tiny: Path, source: Path, tmp_path: Path) -> None:
    """The format a trainer writes: a peft adapter on the UNet, saved by the pipeline's save_lora_weights."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(tiny / "unet")
    torch.manual_seed(0)
    # init_lora_weights=False: B is random, not zero, so the adapter really changes the UNet.
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    lora_dir = tmp_path / "lora"
    StableDiffusionInstructPix2PixPipeline.save_lora_weights(lora_dir, unet_lora_layers=get_peft_model_state_dict(unet))
    assert (lora_dir / "pytorch_lora_weights.safetensors").is_file()

    with _editor(tiny) as base, _editor(tiny, lora=str(lora_dir)) as tuned, \
            _editor(tiny, lora=str(lora_dir), lora_scale=0.0) as off:
        assert len(tuned.params["lora_digest"]) == 16  # the weights' content enters the config hash
        assert "peft" in tuned.libraries()
        r0, r1, r2 = (e.edit(_request(source, seed=4)) for e in (base, tuned, off))
    assert r0.status is r1.status is r2.status is EditStatus.OK
    assert r0.image.tobytes() != r1.image.tobytes()
    assert r0.image.tobytes() == r2.image.tobytes()  # scale 0: exactly the base model again


def test_safety_checker_blackout_is_refused(tiny: Path, source: Path) -> None:
    editor = _editor(tiny)
    editor.load()
    # The pipeline's own safety-checker hook flags the image; diffusers then blacks it out and says so.
    editor._pipe.run_safety_checker = lambda image, device, dtype: (torch.zeros_like(image), [True])
    r = editor.edit(_request(source, seed=1))
    editor.close()
    assert r.status is EditStatus.REFUSED and r.image is None
    assert "safety checker" in r.reason


def test_pipeline_error_is_that_samples_failure(tiny: Path, source: Path, tmp_path: Path) -> None:
    editor = _editor(tiny)
    editor.load()
    unet = editor._pipe.unet
    original = unet.forward

    def boom(*args: object, **kwargs: object) -> object:
        raise RuntimeError("simulated kernel failure")

    unet.forward = boom
    failed = editor.edit(_request(source, seed=1))
    unet.forward = original
    recovered = editor.edit(_request(source, seed=1))  # the editor goes on with the next sample
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    unreadable = editor.edit(_request(bad, seed=1))
    editor.close()
    assert failed.status is EditStatus.FAILED and "simulated kernel failure" in failed.reason
    assert recovered.status is EditStatus.OK
    assert unreadable.status is EditStatus.FAILED and "source" in unreadable.reason


def test_load_errors_are_raised_once_and_clearly(tiny: Path, source: Path) -> None:
    missing = DiffusersEditor(model="nobody-here/no-such-model", device="cpu")  # construction: no download
    with pytest.raises(DiffusersLoadError, match="no-such-model"):
        missing.edit(_request(source, seed=1))
    with pytest.raises(DiffusersLoadError, match="no-such-model"):  # remembered, not retried per sample
        missing.edit(_request(source, seed=1))
    wrong_class = _editor(tiny, pipeline="NoSuchEditPipeline")
    with pytest.raises(DiffusersLoadError, match="NoSuchEditPipeline"):
        wrong_class.load()
    bad_extra = _editor(tiny, extra={"no_such_argument": 1}, pipeline="StableDiffusionInstructPix2PixPipeline")
    bad_extra.load()  # the InstructPix2Pix call takes **kwargs, so an unknown argument cannot be refused here
    bad_extra.close()


@pytest.mark.parametrize("params, message", [
    ({"model": "/definitely/not/here"}, "neither a local folder"),
    ({"model": "a/b", "dtype": "float8"}, "dtype"),
    ({"model": "a/b", "device": "tpu"}, "device"),
    ({"model": "a/b", "prompt_template": "{instrution}"}, "placeholder"),
    ({"model": "a/b", "lora": "/no/such/lora.safetensors"}, "lora"),
    ({"model": "a/b", "extra": [1, 2]}, "extra"),
])
def test_bad_params_are_config_errors(params: dict, message: str) -> None:
    with pytest.raises(EditorConfigError, match=message):
        DiffusersEditor(**params)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import fedbench.editors.diffusers_editor as mod

    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name: None if name == "diffusers" else object())
    with pytest.raises(EditorConfigError, match=r"pip install 'fedbench\[diffusers\]'"):
        DiffusersEditor(model="a/b")


def test_built_through_the_registry_and_close_frees(tiny: Path, source: Path) -> None:
    editor = build_editor(load_editor_config("diffusers", {"model": str(tiny), "device": "cpu", "steps": 1}))
    assert isinstance(editor, DiffusersEditor) and editor._pipe is None  # lazy: nothing loaded yet
    assert editor.edit(_request(source, seed=0)).status is EditStatus.OK
    libs = editor.libraries()
    assert {"torch", "diffusers", "transformers"} <= set(libs)
    editor.close()
    assert editor._pipe is None
