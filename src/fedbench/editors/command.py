"""`command`: an external program edits each image.

    params: {command: "python my_editor.py --in {input} --out {output} --prompt {instruction} --seed {seed}"}

Placeholders: {input} (the source, PNG), {output} (where the program writes its image), {instruction},
{target}, {source_expression}, {seed}, {id}. The command is split like a shell line first and each
placeholder fills one argument, so an instruction with spaces or quotes stays one argument and is
never interpreted by a shell. Exit code `refusal_exit_code` (when set) marks a refusal.

A program wrapped in a POSIX shell (`sh -c '... {instruction} ...'`, bash, dash, zsh, ksh; also behind
`env`) gets each placeholder value shell-quoted inside the script, so `$(...)`, backticks and `;` in a
manifest's text stay text. A placeholder that the script itself puts inside quotes cannot be quoted
safely and is refused when the editor is built; so are placeholders in `cmd /c` and PowerShell scripts.

The program runs in its own process group (session): on a timeout, on Ctrl-C or SIGTERM (in any
thread: `eval --jobs N`), and once it has exited, the whole group is killed, so no grandchild (a
`sleep`, a server the script started) is left running. The values of `env` (tokens) are scrubbed from every reason, and the temporary folder's
path never enters a reason (the same run gives the same text).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from fedbench.data.images import ImageReadError
from fedbench.editors.base import EditRequest, EditResult, Editor, decode_full

_PLACEHOLDERS = ("input", "output", "instruction", "target", "source_expression", "seed", "id")
_POSIX_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox"})
_OTHER_SHELLS = frozenset({"cmd", "cmd.exe", "powershell", "powershell.exe", "pwsh", "pwsh.exe"})
_KILL_GRACE_S = 2.0  # SIGTERM first, then SIGKILL for what is still alive after this


class CommandTemplateError(ValueError):
    """The command template cannot be run safely as written."""


def _program_index(argv: list[str]) -> int:
    """Index of the real program: past `env` and its VAR=value / -flag arguments."""
    i = 0
    if argv and Path(argv[0]).name == "env":
        i = 1
        while i < len(argv) and ("=" in argv[i] or argv[i].startswith("-")):
            i += 1
    return i


def shell_script_index(argv: list[str]) -> int | None:
    """Index of the script argument when `argv` runs a shell with -c (or cmd /c), else None."""
    i = _program_index(argv)
    if i >= len(argv):
        return None
    name = Path(argv[i]).name.lower()
    if name not in _POSIX_SHELLS and name not in _OTHER_SHELLS:
        return None
    for j in range(i + 1, len(argv)):
        arg = argv[j]
        low = arg.lower()
        if name in _POSIX_SHELLS and arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
            return j + 1 if j + 1 < len(argv) else None  # -c, -ec, -lc: the next argument is the script
        if name in _OTHER_SHELLS and low in ("/c", "/k", "-c", "-command", "/command"):
            return j + 1 if j + 1 < len(argv) else None
    return None


def _quoted_placeholders(script: str) -> list[str]:
    """Placeholders that sit inside '...' or "..." in a POSIX shell script (where quoting cannot help)."""
    found, quote, i = [], "", 0
    while i < len(script):
        ch = script[i]
        if ch == "\\" and quote != "'":
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        elif ch == "{" and quote:
            end = script.find("}", i)
            if end > 0 and script[i + 1:end] in _PLACEHOLDERS:
                found.append(script[i:end + 1])
        i += 1
    return found


def _check_shell_template(argv: list[str]) -> int | None:
    idx = shell_script_index(argv)
    if idx is None:
        return None
    script = argv[idx]
    used = [p for p in _PLACEHOLDERS if "{" + p + "}" in script]
    if not used:
        return idx
    program = Path(argv[_program_index(argv)]).name.lower()
    if program in _OTHER_SHELLS:
        raise CommandTemplateError(
            f"command: placeholders ({', '.join('{' + p + '}' for p in used)}) inside a {program} script cannot be "
            "quoted safely; call the program directly (placeholders as their own arguments) instead")
    inside = _quoted_placeholders(script)
    if inside:
        raise CommandTemplateError(
            f"command: {', '.join(sorted(set(inside)))} sits inside quotes in the shell script {script!r}; "
            "fedbench shell-quotes every placeholder value itself, so write it bare (sh -c 'tool {instruction}')")
    return idx


def _kill_group(proc: subprocess.Popen, grace_s: float = _KILL_GRACE_S) -> None:
    """Terminate the child's whole process group: SIGTERM, then SIGKILL after `grace_s`."""
    if sys.platform == "win32":  # no process groups to signal: taskkill /T walks the tree
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # start_new_session: the group id is the child's pid
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren that ignored SIGTERM, or outlived the child
    except ProcessLookupError:
        pass


# Programs running now (any thread). A group of its own does not get the terminal's Ctrl-C, and
# `eval --jobs N` runs programs in worker threads that a KeyboardInterrupt never reaches: the SIGINT /
# SIGTERM handlers below terminate every live group first, then do what the signal did before.
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_forwarding = False


def _terminate_live_groups() -> None:
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # each thread's run_in_group then SIGKILLs what is left
        except (ProcessLookupError, PermissionError):
            pass


def _forward_signals() -> None:
    """Install the SIGINT / SIGTERM forwarding once, from the main thread (where handlers live)."""
    global _forwarding
    if _forwarding or sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)

        def handler(sig: int, frame: Any, previous: Any = previous) -> None:
            _terminate_live_groups()
            if callable(previous):
                previous(sig, frame)  # SIGINT: Python's default raises KeyboardInterrupt in the main thread
            elif previous == signal.SIG_DFL:
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)

        signal.signal(signum, handler)
    _forwarding = True


def run_in_group(argv: list[str], timeout_s: float, cwd: str | None, env: dict[str, str]) -> tuple[int | None, str, str]:
    """Run `argv` in a new process group; (exit code or None on timeout, stdout, stderr). The group is
    killed on timeout, on any exception (Ctrl-C included) and after the child exits."""
    kwargs: dict[str, Any] = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32"
                              else {"start_new_session": True})
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", cwd=cwd, env=env, **kwargs)
    with _live_lock:
        _live.add(proc)
    try:
        return _communicate(proc, timeout_s)
    finally:
        with _live_lock:
            _live.discard(proc)


def _communicate(proc: subprocess.Popen, timeout_s: float) -> tuple[int | None, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:  # a grandchild in another group still holds the pipes
            out, err = "", ""
        return None, out or "", err or ""
    except BaseException:  # Ctrl-C (KeyboardInterrupt), SystemExit: nothing of the program outlives us
        _kill_group(proc, grace_s=0.5)
        raise
    _kill_group(proc, grace_s=0.0)  # background jobs the program left behind
    return proc.returncode, out or "", err or ""


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
        self.script_index = _check_shell_template(argv)
        # Only the names of `env` are recorded and hashed: its values may be secrets (tokens), and
        # rotating one must not invalidate the cache. The program itself is not hashed: change `tag`
        # (any text, recorded and hashed) when you change the program.
        super().__init__(command=argv, timeout_s=float(timeout_s), env=sorted(env or {}),
                         refusal_exit_code=refusal_exit_code, cwd=cwd, tag=tag)
        self.argv, self.timeout_s, self.env = argv, float(timeout_s), {str(k): str(v) for k, v in (env or {}).items()}
        self.refusal_exit_code, self.cwd = refusal_exit_code, cwd
        _forward_signals()

    def secret_values(self) -> tuple[str, ...]:
        return tuple(self.env.values())

    def argv_for(self, values: dict[str, str]) -> list[str]:
        """The command line for one request: a shell script gets its values shell-quoted."""
        quoted = {k: shlex.quote(v) for k, v in values.items()}
        return [a.format(**(quoted if i == self.script_index else values)) for i, a in enumerate(self.argv)]

    def edit(self, request: EditRequest) -> EditResult:
        return self._edit(request).scrubbed(self.secret_values())

    def _edit(self, request: EditRequest) -> EditResult:
        with tempfile.TemporaryDirectory(prefix="fedbench-cmd-") as tmp:
            src, dst = Path(tmp) / "input.png", Path(tmp) / "output.png"
            Image.fromarray(request.source_rgb()).save(src)
            values = {"input": str(src), "output": str(dst), "instruction": request.instruction,
                      "target": request.target, "source_expression": request.source_expression or "",
                      "seed": str(request.seed), "id": request.sample_id}
            argv = self.argv_for(values)

            def clean(text: str) -> str:  # the temp folder differs per call: keep reasons reproducible
                return text.replace(str(dst), "{output}").replace(str(src), "{input}").replace(tmp, "{tmp}")

            try:
                code, stdout, stderr = run_in_group(argv, self.timeout_s, self.cwd, {**os.environ, **self.env})
            except OSError as exc:
                return EditResult.failed(f"cannot run {self.argv[0]!r}: {exc.strerror or exc}")
            if code is None:
                return EditResult.failed(f"timed out after {self.timeout_s:g} s (its process group was killed)")
            details: dict[str, Any] = {"exit_code": code}
            tail = clean((stderr or stdout or "").strip()[-500:])
            if self.refusal_exit_code is not None and code == self.refusal_exit_code:
                return EditResult.refused(tail or f"exit code {code}", **details)
            if code != 0:
                return EditResult.failed(f"exit code {code}: {tail}", **details)
            if not dst.is_file():
                return EditResult.failed("the command exited 0 but wrote no {output} image", **details)
            try:
                image = decode_full(dst.read_bytes())
            except ImageReadError as exc:
                return EditResult.failed(f"the command's output is not a readable image: {clean(str(exc))}",
                                         **details)
            return EditResult.ok(image, **details)
