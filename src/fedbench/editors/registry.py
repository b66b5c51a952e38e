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
E = TypeVar("E", bound=type[Editor])


class UnknownEditorError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateEditorError(ValueError):
    """A name registered twice: the second would silently replace the first (lm-eval refuses this too)."""


def _check_editor(cls: object, what: str) -> type[Editor]:
    if not (isinstance(cls, type) and issubclass(cls, Editor)):
        raise TypeError(f"{what} is not an Editor subclass")
    return cls


class EditorRegistry:
    """Names -> Editor classes: built-ins (imported on first use), classes registered in this process,
    then the `fedbench.editors` entry points. Classes are never modified; a name is taken once."""

    def __init__(self, builtin: dict[str, str], entry_point_group: str = ENTRY_POINT_GROUP) -> None:
        self._builtin = dict(builtin)
        self._group = entry_point_group
        self._registered: dict[str, type[Editor]] = {}

    def register(self, name: str, cls: type[Editor]) -> None:
        _check_editor(cls, repr(cls))
        taken = self._registered.get(name)
        if taken is cls:  # the same class again (a module imported twice under one name): harmless
            return
        if taken is not None or name in self._builtin:
            was = (f"{taken.__module__}.{taken.__qualname__}" if taken is not None
                   else f"the built-in {self._builtin[name]}")
            raise DuplicateEditorError(
                f"editor name {name!r} is already registered ({was}); "
                f"cannot register {cls.__module__}.{cls.__qualname__} under it: choose another name")
        self._registered[name] = cls

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group=self._group)}

    def available(self) -> dict[str, str]:
        """name -> where it comes from ("builtin", "registered", or the entry point's distribution)."""
        names = {n: "builtin" for n in self._builtin}
        for n, ep in self._entry_points().items():
            names.setdefault(n, f"entry point ({ep.dist.name if ep.dist else ep.value})")
        for n in self._registered:
            names.setdefault(n, "registered")
        return dict(sorted(names.items()))

    def get(self, name: str) -> type[Editor]:
        if name in self._registered:
            return self._registered[name]
        if name in self._builtin:
            target = self._builtin[name]
            module, _, attr = target.partition(":")
            return _check_editor(getattr(import_module(module), attr), target)
        eps = self._entry_points()
        if name not in eps:
            known = ", ".join(self.available())
            raise UnknownEditorError(f"unknown editor {name!r}; known: {known} (or a YAML config path)")
        return _check_editor(eps[name].load(), f"entry point {name!r} ({eps[name].value})")


REGISTRY = EditorRegistry(_BUILTIN)


def register_editor(name: str) -> Callable[[E], E]:
    """Class decorator: make an Editor available under `name` (in this process). A name already taken
    (a built-in or another class) raises DuplicateEditorError."""

    def wrap(cls: E) -> E:
        REGISTRY.register(name, cls)
        return cls

    return wrap


def available_editors() -> dict[str, str]:
    return REGISTRY.available()


def get_editor_class(name: str) -> type[Editor]:
    return REGISTRY.get(name)


def build_editor(config: EditorConfig) -> Editor:
    cls = get_editor_class(config.adapter)
    return cls(**config.params)
