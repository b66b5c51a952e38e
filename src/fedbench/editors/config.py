"""Editor configs: YAML files that name an adapter and its parameters.

    name: instructpix2pix            # the run's editor name (default: the file's stem)
    adapter: diffusers               # a registered editor
    seed: 0                          # base seed; each sample's seed derives from it and the sample id
    params: {model: timbrooks/instruct-pix2pix, steps: 20, guidance: 7.5}

A bare adapter name (`warp`) is a config with default parameters. `--editor-arg k=v` overrides
parameters (values parsed as YAML scalars: 2 -> int, 0.5 -> float, true -> bool).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:  # the registry imports this module; only type checkers need the reverse
    from fedbench.editors.base import Editor


class EditorConfigError(ValueError):
    pass


class EditorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    adapter: str
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    source: str | None = None  # the file it came from, when any (not hashed)


def resolved_hash(config: EditorConfig, editor: Editor) -> str:
    """What decides the images: the adapter, its version, its resolved parameters (a checkpoint's
    content digest rather than its path, say) and the base seed — not the run's name."""
    payload = {"adapter": config.adapter, "version": editor.version, "params": editor.params, "seed": config.seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_editor_args(args: list[str] | None) -> dict[str, Any]:
    """["k=v", ...] -> {k: yaml-parsed v}."""
    out: dict[str, Any] = {}
    for item in args or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EditorConfigError(f"--editor-arg {item!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def load_editor_config(spec: str | Path, overrides: dict[str, Any] | None = None, seed: int | None = None) -> EditorConfig:
    """A YAML file, or the name of a registered editor, plus parameter overrides."""
    from fedbench.editors.registry import available_editors

    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise EditorConfigError(f"{path}: editor config not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise EditorConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise EditorConfigError(f"{path}: expected a mapping with 'adapter' and 'params'")
        raw.setdefault("name", path.stem)
        raw["source"] = str(path)
    else:
        name = str(spec)
        if name not in available_editors():
            known = ", ".join(available_editors())
            raise EditorConfigError(f"unknown editor {name!r}: not a YAML file and not one of {known}")
        raw = {"name": name, "adapter": name}
    try:
        config = EditorConfig.model_validate(raw)
    except ValidationError as exc:
        where = raw.get("source") or spec
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise EditorConfigError(f"{where}: {problems}") from exc
    if overrides:
        config = config.model_copy(update={"params": {**config.params, **overrides}})
    if seed is not None:
        config = config.model_copy(update={"seed": seed})
    return config


def sample_seed(base_seed: int, sample_id: str) -> int:
    """Per-sample seed: stable across runs, machines and orders (recorded in generations.jsonl)."""
    digest = hashlib.sha256(f"{base_seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
