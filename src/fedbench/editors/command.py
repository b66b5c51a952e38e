"""`command`: an external program edits each image.

    params: {command: "python my_editor.py --in {input} --out {output} --prompt {instruction} --seed {seed}"}

Placeholders: {input} (the source, PNG), {output} (where the program writes its image), {instruction},
{target}, {source_expression}, {seed}, {id}. The command is split like a shell line first and each
placeholder fills one argument, so an instruction with spaces or quotes stays one argument and is
never interpreted by a shell. Exit code `refusal_exit_code` (when set) marks a refusal.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from fedbench.data.images import ImageReadError
from fedbench.editors.base import EditRequest, EditResult, Editor, decode_full

_PLACEHOLDERS = ("input", "output", "instruction", "target", "source_expression", "seed", "id")


class CommandEditor(Editor):
    description = "an external program with {input} {output} {instruction} {seed} placeholders"
    thread_safe = True  # each call is independent (its own request, process or file)

    def __init__(self, command: str | list[str], timeout_s: float = 600.0, env: dict[str, str] | None = None,
                 refusal_exit_code: int | None = None, cwd: str | None = None, tag: str | None = None) -> None:
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ValueError("command: empty command line")
        if not any("{output}" in a for a in argv):
            raise ValueError(f"command {command!r}: needs an {{output}} placeholder for the edited image")
        for arg in argv:  # catch typos such as {instrution} at config time, not on every sample
            try:
                arg.format(**{p: "" for p in _PLACEHOLDERS})
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"command argument {arg!r}: unknown placeholder {exc}; "
                                 f"known: {', '.join('{' + p + '}' for p in _PLACEHOLDERS)}") from exc
        # Only the names of `env` are recorded and hashed: its values may be secrets (tokens), and
        # rotating one must not invalidate the cache. The program itself is not hashed: change `tag`
        # (any text, recorded and hashed) when you change the program.
        super().__init__(command=argv, timeout_s=float(timeout_s), env=sorted(env or {}),
                         refusal_exit_code=refusal_exit_code, cwd=cwd, tag=tag)
        self.argv, self.timeout_s, self.env = argv, float(timeout_s), env or {}
        self.refusal_exit_code, self.cwd = refusal_exit_code, cwd

    def edit(self, request: EditRequest) -> EditResult:
        with tempfile.TemporaryDirectory(prefix="fedbench-cmd-") as tmp:
            src, dst = Path(tmp) / "input.png", Path(tmp) / "output.png"
            Image.fromarray(request.source_rgb()).save(src)
            values = {"input": str(src), "output": str(dst), "instruction": request.instruction,
                      "target": request.target, "source_expression": request.source_expression or "",
                      "seed": str(request.seed), "id": request.sample_id}
            argv = [a.format(**values) for a in self.argv]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s, cwd=self.cwd,
                                      env={**os.environ, **self.env}, check=False)
            except subprocess.TimeoutExpired:
                return EditResult.failed(f"timed out after {self.timeout_s:g} s")
            except OSError as exc:
                return EditResult.failed(f"cannot run {argv[0]!r}: {exc.strerror or exc}")
            details: dict[str, Any] = {"exit_code": proc.returncode}
            tail = (proc.stderr or proc.stdout or "").strip()[-500:]
            if self.refusal_exit_code is not None and proc.returncode == self.refusal_exit_code:
                return EditResult.refused(tail or f"exit code {proc.returncode}", **details)
            if proc.returncode != 0:
                return EditResult.failed(f"exit code {proc.returncode}: {tail}", **details)
            if not dst.is_file():
                return EditResult.failed("the command exited 0 but wrote no {output} image", **details)
            try:
                image = decode_full(dst.read_bytes())
            except ImageReadError as exc:
                return EditResult.failed(f"the command's output is not a readable image: {exc}", **details)
            return EditResult.ok(image, **details)
