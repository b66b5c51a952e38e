"""Editor registry: built-in adapters, plus third-party editors found through the
`fedbench.editors` entry-point group (`name = "package.module:EditorClass"`)."""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Callable, TypeVar

from fedbench.editors.base import Editor

if TYPE_CHECKING:
    from fedbench.editors.config import EditorConfig

ENTRY_POINT_GROUP = "fedbench.editors"

# Built-ins are imported on first use so `fedbench editors list` does not load torch or MediaPipe.
_BUILTIN: dict[str, str] = {
    "identity": "fedbench.editors.probes:IdentityEditor",
    "oracle": "fedbench.editors.probes:OracleEditor",
    "pixel-blend": "fedbench.editors.probes:PixelBlendEditor",
    "warp": "fedbench.editors.warp:WarpEditor",
    "diffusers": "fedbench.editors.diffusers_editor:DiffusersEditor",
    "openai-images": "fedbench.editors.http_api:OpenAIImagesEditor",
    "command": "fedbench.editors.command:CommandEditor",
    "folder": "fedbench.editors.folder:FolderEditor",
}
_REGISTERED: dict[str, type[Editor]] = {}

E = TypeVar("E", bound=type[Editor])


class UnknownEditorError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register_editor(name: str) -> Callable[[E], E]:
    """Class decorator: make an Editor available under `name` (in this process)."""

    def wrap(cls: E) -> E:
        if not (isinstance(cls, type) and issubclass(cls, Editor)):
            raise TypeError(f"{cls!r} is not an Editor subclass")
        cls.adapter = name
        _REGISTERED[name] = cls
        return cls

    return wrap


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_editors() -> dict[str, str]:
    """name -> where it comes from ("builtin", "registered", or the entry point's distribution)."""
    names = {n: "builtin" for n in _BUILTIN}
    for n, ep in _entry_points().items():
        names.setdefault(n, f"entry point ({ep.dist.name if ep.dist else ep.value})")
    for n in _REGISTERED:
        names.setdefault(n, "registered")
    return dict(sorted(names.items()))


def _load(target: str) -> type[Editor]:
    module, _, attr = target.partition(":")
    cls = getattr(import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Editor)):
        raise TypeError(f"{target} is not an Editor subclass")
    return cls


def get_editor_class(name: str) -> type[Editor]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        cls = _load(_BUILTIN[name])
    else:
        eps = _entry_points()
        if name not in eps:
            known = ", ".join(available_editors())
            raise UnknownEditorError(f"unknown editor {name!r}; known: {known} (or a YAML config path)")
        cls = eps[name].load()
        if not (isinstance(cls, type) and issubclass(cls, Editor)):
            raise TypeError(f"entry point {name!r} ({eps[name].value}) is not an Editor subclass")
    cls.adapter = name
    _REGISTERED[name] = cls
    return cls


def build_editor(config: EditorConfig) -> Editor:
    cls = get_editor_class(config.adapter)
    return cls(**config.params)
