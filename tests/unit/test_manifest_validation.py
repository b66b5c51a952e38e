"""Bad manifest rows are ManifestErrors naming the file and the row, before any work: wrong types
(NaN, bool, dict ids; int or int-list actions), ids that cannot name a file on every OS, invalid UTF-8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fedbench.data.manifest import ManifestError, read_manifest


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    return tmp_path


def _row(**over: Any) -> dict[str, Any]:
    return {"id": "r1", "source": "a.png", "instruction": "smile", "target": "happy", "ground_truth": "a.png", **over}


def _jsonl(folder: Path, rows: list[Any]) -> Path:
    path = folder / "m.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _refused(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(path) in str(info.value)
    return info.value


BAD_ROWS: dict[str, tuple[Any, str]] = {
    "actions_int": (_row(id="x", actions=5), "actions must be a list of strings"),
    "actions_int_list": (_row(id="x", actions=[1, 2]), "got an item of type int"),
    "actions_dict": (_row(id="x", actions={"a": 1}), "actions must be a list"),
    "id_nan": ('{"id": NaN, "source": "a.png", "instruction": "s", "target": "happy", "ground_truth": "a.png"}',
               "id must be a string or an integer, got NaN"),
    "id_dict": (_row(id={"a": 1}), "id must be a string or an integer, got dict"),
    "id_bool": (_row(id=True), "got bool"),
    "id_float": (_row(id=1.5), "got float"),
    "id_too_long": (_row(id="a" * 250), "too long"),
    "id_too_many_bytes": (_row(id="é" * 110), "too long"),
    "id_colon": (_row(id="a:b"), "':'"),
    "id_question": (_row(id="why?"), "'?'"),
    "id_control": (_row(id="a\tb"), "'\\t'"),
    "id_trailing_dot": (_row(id="abc."), "may not end with"),
    "id_windows_device": (_row(id="CON"), "reserved device name"),
    "id_windows_device_ext": (_row(id="lpt1.txt"), "reserved device name"),
    "id_slash": (_row(id="a/b"), "'/'"),
    "id_dot": (_row(id=".hidden"), "start with '.'"),
    "instruction_nan": ('{"id": "x", "source": "a.png", "instruction": NaN, "target": "happy", '
                        '"ground_truth": "a.png"}', "instruction must be a string, got NaN"),
    "instruction_list": (_row(id="x", instruction=["smile"]), "instruction must be a string, got list"),
    "target_int": (_row(id="x", target=3), "target must be a string"),
    "meta_list": (_row(id="x", meta=[1]), "meta must be a JSON object"),
    "source_nul": (_row(id="x", source="a\u0000.png"), "cannot be opened"),
    "source_long": (_row(id="x", source="d" * 5000 + ".png"), "source:"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_row_is_refused_naming_the_row(folder: Path, case: str) -> None:
    bad, expect = BAD_ROWS[case]
    error = _refused(_jsonl(folder, [_row(id="ok1"), bad, _row(id="ok2")]))
    assert [p.row for p in error.problems] == [2], [str(p) for p in error.problems]
    assert expect in error.problems[0].message, error.problems[0].message
    assert "row 2" in str(error)


def test_good_types_are_accepted(folder: Path) -> None:
    man = read_manifest(_jsonl(folder, [_row(id=7, identity=12, actions=["AU12", "AU6"], meta={"k": 1}),
                                        _row(id="b", actions="AU12; AU6", meta='{"k": 2}'),
                                        _row(id="é" * 60)]))
    first, second, third = man.triplets
    assert (first.id, first.identity, first.actions, first.meta) == ("7", "12", ["AU12", "AU6"], {"k": 1})
    assert (second.actions, second.meta) == (["AU12", "AU6"], {"k": 2})
    assert third.id == "é" * 60


def test_invalid_utf8_names_the_file_and_line(folder: Path) -> None:
    path = folder / "m.jsonl"
    path.write_bytes(json.dumps(_row(id="a")).encode() + b"\n" + b'{"id": "b\xff\xfe", "source": "a.png"}\n')
    error = _refused(path)
    assert [p.row for p in error.problems] == [2] and "not valid UTF-8" in error.problems[0].message


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_invalid_utf8_in_a_whole_file_format_names_the_line(folder: Path, suffix: str) -> None:
    path = folder / f"m{suffix}"
    head = (b"id,source,instruction,target,ground_truth\nr1,a.png,smile,happy,a.png\n" if suffix == ".csv"
            else b'[\n{"id": "r1"},\n')
    path.write_bytes(head + b"r2,a.png,sm\xe9le,happy,a.png\n")
    error = _refused(path)
    assert [p.row for p in error.problems] == [3] and "not valid UTF-8" in error.problems[0].message


def test_parquet_int_columns_are_row_errors(folder: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [_row(id="a"), _row(id="b")]
    table = pa.table({**{k: [r[k] for r in rows] for k in rows[0]}, "actions": pa.array([5, 6], pa.int64())})
    pq.write_table(table, folder / "m.parquet")
    error = _refused(folder / "m.parquet")
    assert [p.row for p in error.problems] == [1, 2]
    assert all("actions must be a list of strings" in p.message for p in error.problems)
    table = table.set_column(table.schema.get_field_index("actions"), "actions", pa.array([[1], [2]]))
    pq.write_table(table, folder / "m.parquet")
    assert "got an item of type int" in _refused(folder / "m.parquet").problems[0].message


def test_a_file_that_is_not_parquet_is_one_error(folder: Path) -> None:
    pytest.importorskip("pyarrow")
    (folder / "m.parquet").write_text("id,source\n")
    assert "not a readable Parquet" in _refused(folder / "m.parquet").problems[0].message
