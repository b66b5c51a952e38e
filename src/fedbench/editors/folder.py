"""`folder`: images already generated elsewhere, `<path>/<id>.<png|jpg|jpeg|webp|avif>`.

A missing or unreadable file is a failed generation (scored as an edit failure, every component 0),
so a model cannot gain by leaving hard cases out.
"""

from __future__ import annotations

from pathlib import Path

from fedbench.data.images import ImageReadError
from fedbench.editors.base import EditRequest, EditResult, Editor, decode_full
from fedbench.scoring.edits import EDIT_EXTENSIONS


class FolderEditor(Editor):
    description = "images already generated elsewhere: <path>/<id>.<ext>"
    thread_safe = True  # each call is independent (its own request, process or file)
    cacheable = False  # the folder may change between runs; reading it again is cheap

    def __init__(self, path: str) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise ValueError(f"folder editor: {root} is not a folder")
        super().__init__(path=str(root.resolve()))
        self.root = root

    def edit(self, request: EditRequest) -> EditResult:
        # one listing, extensions compared case-blind (X.JPG counts, as `fedbench score` accepts it)
        found = sorted(p for p in self.root.iterdir() if p.stem == request.sample_id
                       and p.suffix.lower() in EDIT_EXTENSIONS and p.is_file())
        if not found:
            return EditResult.failed(f"no image for this id in {self.root}")
        if len(found) > 1:
            return EditResult.failed(f"several images for this id: {', '.join(p.name for p in found)}")
        try:
            return EditResult.ok(decode_full(found[0].read_bytes()), file=found[0].name)
        except ImageReadError as exc:
            return EditResult.failed(f"{found[0].name}: {exc}")
