"""`fedbench meta --labels` alone, on real labelled faces in the wild (the shared dev fixture)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.labels import EXPRESSIONS

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def labels_csv(tmp_path_factory, faces_in_the_wild: Path) -> Path:
    rows = list(csv.DictReader(open(faces_in_the_wild / "labels.csv", encoding="utf-8")))
    picked = []
    for c in EXPRESSIONS:  # two faces of each class, the first in file order
        picked += [r for r in rows if r["label"] == c][:2]
    d = tmp_path_factory.mktemp("labels")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(d / "blank.png")  # no face in it
    with open(d / "labels.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "identity"])
        for r in picked:
            w.writerow([str(faces_in_the_wild / r["image"]), r["label"], r["identity"]])
        w.writerow(["blank.png", "happy", "nobody"])
    return d / "labels.csv"


def test_meta_labels_alone_reports_every_recogniser(labels_csv, tmp_path):
    feature_cache = tmp_path / "features.sqlite"
    out = tmp_path / "m"
    res = CliRunner().invoke(app, ["meta", "--labels", str(labels_csv), "--out", str(out), "--cache", str(feature_cache)])
    assert res.exit_code == 0, res.output
    assert "balanced accuracy" in res.output
    meta = json.loads((out / "meta.json").read_text())
    st = meta["recogniser"]["sets"]["csv"]
    assert st["images"] == 15
    assert [Path(u["image"]).name for u in st["no_face"]] == ["blank.png"]
    assert set(st["by_recogniser"]) == {"ensemble", "fer-cnn", "facex-cnn", "faceapi-cnn", "blendshape-prototype"}
    for rep in st["by_recogniser"].values():
        assert rep["n"] == 15 and rep["per_class"]["happy"]["n"] == 3
        assert rep["per_class"]["happy"]["no_face"] == 1  # the blank counts, and is never right
        cm = np.array(rep["confusion"]["rows_true_columns_predicted"])
        assert cm.shape == (7, 8) and cm.sum() == 15 and cm[:, -1].sum() == 1
        per = [v["correct"] / v["n"] for v in rep["per_class"].values()]
        assert rep["balanced_accuracy"] == pytest.approx(np.mean(per), abs=1e-4)
    assert "## Emotion recogniser" in (out / "meta.md").read_text()
