"""The `command` adapter's safety: manifest text never runs as shell code, no process outlives a
timeout or Ctrl-C, and env values (tokens) never reach a reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedbench.editors import EditRequest, EditStatus, build_editor, load_editor_config
from fedbench.editors.command import CommandTemplateError, shell_script_index

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells and process groups")

PAYLOADS = ["$(touch {canary})", "`touch {canary}`", "x; touch {canary}", "x && touch {canary}",
            "x | touch {canary}", "$(touch {canary}) 'quote\" \\", "\ntouch {canary}\n"]


def _request(tmp_path: Path, instruction: str, sample_id: str = "s-1") -> EditRequest:
    src = tmp_path / "src.png"
    if not src.exists():
        Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(src)
    return EditRequest(sample_id, src, instruction, "happy", 7)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (it only waits for its parent to reap it)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("payload", PAYLOADS)
def test_shell_template_quotes_every_placeholder(tmp_path: Path, payload: str) -> None:
    canary = tmp_path / "pwned"
    instruction = payload.format(canary=canary)
    script = "printf '%s' {instruction} > {output}.txt; cp {input} {output}"
    editor = build_editor(load_editor_config("command", {"command": ["sh", "-c", script]}))
    result = editor.edit(_request(tmp_path, instruction))
    assert result.status is EditStatus.OK, result.reason
    assert not canary.exists(), f"{payload!r} ran as shell code"


def test_shell_template_passes_the_instruction_verbatim(tmp_path: Path) -> None:
    out = tmp_path / "seen.txt"
    instruction = "make it \"happy\" $(id) `id`; rm -rf / 'x'"
    script = f"printf '%s' {{instruction}} > {out}; cp {{input}} {{output}}"
    editor = build_editor(load_editor_config("command", {"command": f"/usr/bin/env bash -c \"{script}\""}))
    assert editor.edit(_request(tmp_path, instruction)).status is EditStatus.OK
    assert out.read_text() == instruction


@pytest.mark.parametrize("command", [
    ["sh", "-c", "tool --prompt '{instruction}' --out {output}"],
    ["bash", "-lc", 'tool --prompt "{instruction}" --out {output}'],
    ["cmd", "/c", "tool {instruction} {output}"],
])
def test_placeholders_that_cannot_be_quoted_are_refused_when_built(command: list[str]) -> None:
    with pytest.raises(CommandTemplateError, match="instruction"):
        build_editor(load_editor_config("command", {"command": command}))


def test_shell_detection() -> None:
    assert shell_script_index(["sh", "-c", "x {output}"]) == 2
    assert shell_script_index(["/usr/bin/env", "A=1", "bash", "-ec", "x"]) == 4
    assert shell_script_index(["python", "-c", "x"]) is None  # not a shell: each placeholder is one argument


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! >> {pids}; sleep 30 & echo $! >> {pids}; wait; cp {{input}} {{output}}"
    editor = build_editor(load_editor_config("command", {"command": ["sh", "-c", script], "timeout_s": 1.0}))
    t0 = time.monotonic()
    result = editor.edit(_request(tmp_path, "smile"))
    assert result.status is EditStatus.FAILED and "timed out" in result.reason
    assert time.monotonic() - t0 < 10
    grandchildren = [int(p) for p in pids.read_text().split()]
    assert len(grandchildren) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in grandchildren) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in grandchildren), "a grandchild outlived the timeout"


def test_ctrl_c_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A real SIGINT to a process running the editor: its program's grandchildren die with it."""
    pids = tmp_path / "pids"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import numpy as np
        from PIL import Image
        from fedbench.editors import EditRequest, build_editor, load_editor_config
        src = Path({str(tmp_path)!r}) / "src.png"
        Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(src)
        script = "sleep 60 & echo $! >> {pids}; wait; cp {{input}} {{output}}"
        editor = build_editor(load_editor_config("command", {{"command": ["sh", "-c", script]}}))
        try:
            editor.edit(EditRequest("s", src, "smile", "happy", 1))
        except KeyboardInterrupt:
            sys.exit(130)
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(driver)], env=env)
    deadline = time.monotonic() + 60
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids.exists(), "the program never started"
    grandchild = int(pids.read_text().split()[0])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the program's child outlived Ctrl-C"


THREADED_DRIVER = """
    import sys, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    import numpy as np
    from PIL import Image
    from fedbench.editors import EditRequest, build_editor, load_editor_config
    root = Path(sys.argv[1])
    src = root / "src.png"
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(src)
    script = "sleep 60 & echo $! >> " + str(root / "pids") + "; wait; cp {input} {output}"
    editor = build_editor(load_editor_config("command", {"command": ["sh", "-c", script]}))
    pool = ThreadPoolExecutor(2)
    futures = [pool.submit(editor.edit, EditRequest(f"s{i}", src, "smile", "happy", i)) for i in range(2)]
    try:
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pool.shutdown(wait=True)  # what eval does: the worker threads' programs must end for this to return
        print("statuses", [f.result().status.value for f in futures], flush=True)
        sys.exit(130)
"""


def test_ctrl_c_reaches_programs_in_worker_threads(tmp_path: Path) -> None:
    """`eval --jobs N`: programs run in worker threads, in groups of their own that the terminal's
    Ctrl-C does not reach; the SIGINT handler ends them so the run stops at once."""
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(THREADED_DRIVER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(driver), str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    pids = tmp_path / "pids"
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    grandchildren = [int(p) for p in pids.read_text().split()]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    assert time.monotonic() - t0 < 10  # not the 60 s the programs would have taken
    assert "generation_failed" in proc.stdout.read()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in grandchildren) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in grandchildren)


def test_env_values_and_temp_paths_never_reach_a_reason(tmp_path: Path) -> None:
    script = ": {output}; echo token=$MY_TOKEN in {input} >&2; exit 4"
    editor = build_editor(load_editor_config("command", {"command": ["sh", "-c", script],
                                                         "env": {"MY_TOKEN": "s3cr3t-value-42"}}))
    first = editor.edit(_request(tmp_path, "smile"))
    second = editor.edit(_request(tmp_path, "smile"))
    assert first.status is EditStatus.FAILED
    assert "s3cr3t-value-42" not in first.reason and "[REDACTED]" in first.reason
    assert "fedbench-cmd-" not in first.reason and "{input}" in first.reason
    assert first.reason == second.reason  # reproducible: no per-call temp folder in it
