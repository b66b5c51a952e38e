"""The `command` and `folder` adapters, and the probes, on small generated images."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedbench.editors import EditRequest, EditStatus, build_editor, load_editor_config


def _image(path: Path, value: int, size: tuple[int, int] = (48, 40)) -> Path:
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[..., 0] = value
    rgb[5:15, 5:25] = 255 - value
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture()
def request_(tmp_path: Path) -> EditRequest:
    return EditRequest("s-1", _image(tmp_path / "src.png", 30), 'make it "happy" <now>; rm -rf /', "happy", 1234,
                       ground_truth=_image(tmp_path / "gt.png", 200))


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "editor_prog.py"
    path.write_text(textwrap.dedent(body))
    return path


def _command(tmp_path: Path, body: str, **params: object):
    prog = _script(tmp_path, body)
    return build_editor(load_editor_config("command", {
        "command": f"{sys.executable} {prog} {{input}} {{output}} {{instruction}} {{seed}}", **params}))


def test_command_editor_passes_each_placeholder_as_one_argument(tmp_path: Path, request_: EditRequest) -> None:
    editor = _command(tmp_path, """
        import sys
        from PIL import Image, ImageOps
        src, dst, instruction, seed = sys.argv[1:]
        assert len(sys.argv) == 5, sys.argv
        open(dst + ".args", "w").write(instruction + "|" + seed)
        ImageOps.invert(Image.open(src).convert("RGB")).save(dst)
    """)
    result = editor.edit(request_)
    assert result.status == EditStatus.OK, result.reason
    source = np.asarray(Image.open(request_.source).convert("RGB"))
    assert np.array_equal(result.image, 255 - source)


@pytest.mark.parametrize("body, params, status, reason", [
    ("import sys; sys.exit(3)", {}, EditStatus.FAILED, "exit code 3"),
    ("import sys; print('blocked by policy', file=sys.stderr); sys.exit(9)", {"refusal_exit_code": 9},
     EditStatus.REFUSED, "blocked by policy"),
    ("pass", {}, EditStatus.FAILED, "wrote no"),
    ("import sys; open(sys.argv[2], 'wb').write(b'not an image')", {}, EditStatus.FAILED, "not a readable image"),
    ("import time; time.sleep(5)", {"timeout_s": 0.5}, EditStatus.FAILED, "timed out"),
])
def test_command_editor_failures_become_statuses(tmp_path: Path, request_: EditRequest, body: str,
                                                 params: dict, status: EditStatus, reason: str) -> None:
    result = _command(tmp_path, body, **params).edit(request_)
    assert result.status == status
    assert reason in (result.reason or "")


def test_command_config_errors_are_caught_when_built() -> None:
    with pytest.raises(ValueError, match="output"):
        build_editor(load_editor_config("command", {"command": "cp {input} /tmp/x.png"}))
    with pytest.raises(ValueError, match="unknown placeholder"):
        build_editor(load_editor_config("command", {"command": "tool {input} {output} {instrution}"}))


def test_folder_editor(tmp_path: Path, request_: EditRequest) -> None:
    folder = tmp_path / "made"
    folder.mkdir()
    editor = build_editor(load_editor_config("folder", {"path": str(folder)}))
    missing = editor.edit(request_)
    assert missing.status == EditStatus.FAILED and "no image" in missing.reason
    _image(folder / "s-1.jpg", 90)
    assert editor.edit(request_).status == EditStatus.OK
    _image(folder / "s-1.png", 90)
    assert "several" in editor.edit(request_).reason
    (folder / "s-1.png").unlink()
    (folder / "s-1.jpg").write_bytes(b"\xff\xd8 broken")
    assert editor.edit(request_).status == EditStatus.FAILED
    with pytest.raises(ValueError, match="not a folder"):
        build_editor(load_editor_config("folder", {"path": str(tmp_path / "nope")}))


def test_probes(request_: EditRequest) -> None:
    s = np.asarray(Image.open(request_.source).convert("RGB")).astype(int)
    g = np.asarray(Image.open(request_.ground_truth).convert("RGB")).astype(int)
    assert np.array_equal(build_editor(load_editor_config("identity")).edit(request_).image, s)
    assert np.array_equal(build_editor(load_editor_config("oracle")).edit(request_).image, g)
    half = build_editor(load_editor_config("pixel-blend", {"k": 0.5})).edit(request_).image.astype(int)
    assert np.abs(half - (s + g) / 2).max() <= 0.5
    double = build_editor(load_editor_config("pixel-blend", {"k": 2})).edit(request_).image.astype(int)
    assert np.array_equal(double, np.clip(2 * g - s, 0, 255))
