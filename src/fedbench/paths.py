"""Where fedbench keeps model weights and cached features (XDG cache, overridable)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`FEDBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/fedbench`, else `~/.cache/fedbench`."""
    explicit = os.environ.get("FEDBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fedbench"


def models_dir() -> Path:
    return cache_root() / "models"


def features_db() -> Path:
    return cache_root() / "features.sqlite"
