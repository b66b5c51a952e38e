"""Editors produce edited images, never scores: probes, the training-free `warp` baseline, and
adapters for diffusers pipelines, OpenAI-compatible image APIs, external commands and folders.

    >>> from fedbench.editors import build_editor, load_editor_config
    >>> editor = build_editor(load_editor_config("warp", {"strength": 2}))
"""

from fedbench.editors.base import EditRequest, EditResult, Editor, EditStatus
from fedbench.editors.config import EditorConfig, load_editor_config
from fedbench.editors.registry import (DuplicateEditorError, available_editors, build_editor, get_editor_class,
                                       register_editor)

__all__ = [
    "DuplicateEditorError", "EditRequest", "EditResult", "EditStatus", "Editor", "EditorConfig",
    "available_editors", "build_editor", "get_editor_class", "load_editor_config", "register_editor",
]
