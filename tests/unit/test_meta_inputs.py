"""The meta-evaluation's inputs and sequence statistics, without models: bad files are refused with
the file and the entry or row named; the gain-curve figures follow their definitions."""

from __future__ import annotations

import json
import math

import pytest

from fedbench.meta.recogniser import NO_FACE, LabelError, accuracy_report, read_labels_csv
from fedbench.meta.sequences import SequenceError, analyse, read_sequences


def _frames(tmp_path, name: str, n: int) -> list[str]:
    (tmp_path / name).mkdir()
    for k in range(n):
        (tmp_path / name / f"{k:02d}.png").write_bytes(b"x")  # existence is all the reader checks
    return [f"{name}/{k:02d}.png" for k in range(n)]


def test_sequences_are_validated_and_foreign_targets_skipped(tmp_path):
    good = _frames(tmp_path, "a", 6)
    data = [{"id": "a", "frames": good, "target": "surprised"},
            {"id": "c", "frames": good, "target": "contempt"}]
    (tmp_path / "s.json").write_text(json.dumps(data))
    seqs = read_sequences(tmp_path / "s.json")
    assert [s.id for s in seqs.sequences] == ["a"] and seqs.sequences[0].target == "surprise"
    assert seqs.sequences[0].middle == 3
    assert seqs.skipped[0]["id"] == "c" and "contempt" in seqs.skipped[0]["reason"]
    bad = [{"id": "a", "frames": good[:2], "target": "happy"},
           {"id": "b", "frames": good[:5] + ["a/missing.png"], "target": "happy"},
           {"id": "b", "frames": good, "target": "happy"}, "nope"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(SequenceError) as exc:
        read_sequences(tmp_path / "bad.json")
    msg = str(exc.value)
    assert "bad.json" in msg and "4 problem(s)" in msg
    assert "entry 1 (id 'a'): 2 frames" in msg and "entry 2 (id 'b'): file not found: frame 5 'a/missing.png'" in msg
    assert "entry 3 (id 'b'): duplicate id" in msg and "entry 4: not a JSON object" in msg


def test_labels_csv_names_each_bad_row(tmp_path):
    (tmp_path / "f.png").write_bytes(b"x")
    (tmp_path / "ok.csv").write_text("image,label\nf.png,Happiness\n")
    faces = read_labels_csv(tmp_path / "ok.csv")
    assert faces[0].label == "happy" and faces[0].where == "ok.csv row 2"
    (tmp_path / "bad.csv").write_text("image,label\nf.png,smug\ngone.png,sad\n,angry\n")
    with pytest.raises(LabelError) as exc:
        read_labels_csv(tmp_path / "bad.csv")
    msg = str(exc.value)
    assert "bad.csv" in msg and "row 2: unknown label 'smug'" in msg and "row 3: file not found" in msg
    assert "row 4: empty image" in msg
    (tmp_path / "cols.csv").write_text("path,emotion\n")
    with pytest.raises(LabelError, match="image,label"):
        read_labels_csv(tmp_path / "cols.csv")


def test_accuracy_report_counts_per_class():
    rep = accuracy_report(["happy", "happy", "sad", "fear"], ["happy", "sad", "sad", "angry"])
    assert rep["accuracy"] == 0.5 and rep["per_class"]["happy"] == {"n": 2, "correct": 1, "no_face": 0, "accuracy": 0.5}
    assert rep["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0) / 3, abs=1e-4)
    assert sum(map(sum, rep["confusion"]["rows_true_columns_predicted"])) == 4


def test_accuracy_report_counts_a_face_not_found_as_wrong():
    rep = accuracy_report(["happy", "happy", "sad", "sad"], ["happy", NO_FACE, "sad", NO_FACE])
    assert rep["per_class"]["happy"] == {"n": 2, "correct": 1, "no_face": 1, "accuracy": 0.5}
    assert rep["balanced_accuracy"] == pytest.approx(0.5) and rep["accuracy"] == pytest.approx(0.5)
    cm = rep["confusion"]
    assert cm["columns"][-1] == NO_FACE and [row[-1] for row in cm["rows_true_columns_predicted"]][1:3] == [1, 1]


def test_meta_labels_alone_is_a_clear_error_without_either_input(tmp_path):
    from typer.testing import CliRunner

    from fedbench.cli import app

    res = CliRunner().invoke(app, ["meta", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--labels" in res.output


def test_meta_labels_bad_row_is_named(tmp_path):
    from typer.testing import CliRunner

    from fedbench.cli import app

    (tmp_path / "l.csv").write_text("image,label\nmissing.png,happy\n")
    res = CliRunner().invoke(app, ["meta", "--labels", str(tmp_path / "l.csv"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "row 2" in res.output and "missing.png" in res.output


def _rows(gains, regs=None):
    return {k: {"gain": g, "reg": (regs or gains)[k - 1], "status": "ok" if g is not None else "no_face_edit"}
            for k, g in enumerate(gains, 1)}


def test_analyse_follows_the_window_definitions(tmp_path):
    names = _frames(tmp_path, "s", 12)  # frames 0..11: edits 1..10 before the ground truth 11
    (tmp_path / "s.json").write_text(json.dumps([{"id": "s", "frames": names, "target": "happy"}]))
    seq = read_sequences(tmp_path / "s.json").sequences[0]
    gains = [0.1 * k for k in range(1, 11)] + [1.0]
    middle = [0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 0.95, 0.5, 0.3, 0.2, 0.1]  # frame 6 is the middle ground truth
    res = analyse(seq, {"last": _rows(gains), "middle": _rows(gains, middle)})
    assert res["early_frames"] == [1, 2] and res["late_frames"] == [8, 10]
    assert res["rise"] == pytest.approx(0.9 - 0.15) and res["late_median"] == pytest.approx(0.9)
    assert res["spearman_gain_vs_frame"] == pytest.approx(1.0)
    assert res["middle_gt_frame"] == 6 and res["reg_peak_frame"] == 7 and res["reg_peak_offset"] == 1
    missing = analyse(seq, {"last": _rows([None] * 11), "middle": _rows([None] * 11)})
    assert missing["rise"] is None and not missing["rise_ok"] and missing["reg_peak_frame"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in missing.values())


def test_scored_samples_for_ratings_are_read_by_id_and_bad_lines_named(tmp_path):
    from fedbench.meta.run import _read_scores

    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"id": "a", "fed": 50.0, "alignment": 0.5, "fidelity": 1.0, "reg": None}) + "\n\n"
                    + json.dumps({"id": "b", "fed": None}) + "\n")
    scores = _read_scores(path)
    assert scores["a"] == {"fed": 50.0, "alignment": 0.5, "fidelity": 1.0, "reg": None}
    assert scores["b"]["fed"] is None
    path.write_text('{"id": "a"}\n{"fed": 1}\n')
    with pytest.raises(ValueError, match="samples.jsonl: line 2"):
        _read_scores(path)
