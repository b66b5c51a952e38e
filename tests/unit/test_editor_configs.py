"""Every shipped editor config (configs/editors/*.yaml) parses and builds its adapter, without loading
a model or downloading anything; diffusers configs name a pipeline class the installed diffusers has,
and pass it only arguments its call takes."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedbench.editors import build_editor, load_editor_config
from fedbench.editors.config import resolved_hash
from fedbench.editors.registry import available_editors, get_editor_class

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "editors").glob("*.yaml"))
_HAS_DIFFUSERS = all(importlib.util.find_spec(m) for m in ("torch", "diffusers", "transformers"))
_HAS_HTTPX = importlib.util.find_spec("httpx") is not None


def test_configs_are_shipped() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"instructpix2pix", "magicbrush", "flux-kontext", "qwen-image-edit", "openai-gpt-image"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses(path: Path) -> None:
    config = load_editor_config(path)
    assert config.name == path.stem  # the file name is the editor's name on the leaderboard
    assert config.adapter in available_editors()
    assert config.description


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_its_adapter(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_editor_config(path)
    if config.adapter == "diffusers" and not _HAS_DIFFUSERS:
        pytest.skip("the diffusers extra is not installed")
    if config.adapter == "openai-images":
        if not _HAS_HTTPX:
            pytest.skip("the api extra is not installed")
        monkeypatch.setenv(config.params["api_key_env"], "sk-test-not-a-real-key")
    editor = build_editor(config)
    try:
        assert type(editor) is get_editor_class(config.adapter)  # the class the registry names, unmodified
        assert len(resolved_hash(config, editor)) == 16
        assert "sk-test-not-a-real-key" not in json.dumps(editor.params, default=str)  # keys stay out of hashes
        if config.adapter == "diffusers":
            assert editor._pipe is None  # construction is lazy: nothing loaded, nothing downloaded
    finally:
        editor.close()


DIFFUSERS_CONFIGS = [p for p in CONFIGS if load_editor_config(p).adapter == "diffusers"]


@pytest.mark.skipif(not _HAS_DIFFUSERS, reason="the diffusers extra is not installed")
@pytest.mark.parametrize("path", DIFFUSERS_CONFIGS, ids=[p.stem for p in DIFFUSERS_CONFIGS])
def test_diffusers_config_matches_the_installed_pipeline(path: Path) -> None:
    import diffusers

    params = load_editor_config(path).params
    cls = getattr(diffusers, params["pipeline"], None)
    assert cls is not None, f"diffusers {diffusers.__version__} has no {params['pipeline']}"
    accepted = set(inspect.signature(cls.__call__).parameters)
    # Arguments the adapter would drop silently, or the pipeline would reject, are config bugs.
    for param, arg in (("steps", "num_inference_steps"), ("guidance", "guidance_scale"),
                       ("image_guidance", "image_guidance_scale"), ("negative_prompt", "negative_prompt")):
        if params.get(param) is not None:
            assert arg in accepted, f"{params['pipeline']} takes no {arg} ({param} in {path.name})"
    for key in params.get("extra", {}):
        assert key in accepted, f"{params['pipeline']} takes no {key} (extra in {path.name})"
    assert {"prompt", "image", "generator"} <= accepted
    if params.get("scheduler"):
        assert hasattr(diffusers, params["scheduler"])


def test_building_every_config_imports_no_torch(tmp_path: Path) -> None:
    """Construction must not load a model: in a fresh interpreter, building every config leaves torch
    and diffusers unimported (so no weights can have been fetched)."""
    code = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from fedbench.editors import build_editor, load_editor_config\n"
        "built = []\n"
        f"for p in sorted(Path({str(REPO / 'configs' / 'editors')!r}).glob('*.yaml')):\n"
        "    c = load_editor_config(p)\n"
        "    os.environ[c.params.get('api_key_env') or 'UNUSED'] = 'sk-test'\n"
        "    try:\n"
        "        build_editor(c).close(); built.append(p.stem)\n"
        "    except Exception as exc:\n"
        "        built.append(f'{p.stem}: {type(exc).__name__}')\n"
        "loaded = {m: m in sys.modules for m in ('torch', 'diffusers')}\n"
        "print(json.dumps({'built': built, **loaded}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["torch"] is False and result["diffusers"] is False
    if _HAS_DIFFUSERS and _HAS_HTTPX:
        assert result["built"] == [p.stem for p in CONFIGS]
