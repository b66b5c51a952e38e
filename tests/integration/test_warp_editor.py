"""`warp`, the training-free baseline, moves the expression the right way on real portraits: through
`fedbench eval` on the shared blend triplets it beats the lazy edit and its mean gain is above 0 for
every target class."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from fedbench.editors import EditRequest, EditStatus, build_editor, load_editor_config
from fedbench.editors.warp import WarpFields, reference_field
from fedbench.evaluate import evaluate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def runs(pixelsmile: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("warp-eval")
    cache = root / "features.sqlite"
    return {name: evaluate(name, pixelsmile / "triplets.jsonl", root / name, cache_path=cache, progress=False)
            for name in ("warp", "identity")}


def test_warp_beats_the_lazy_edit(runs: dict) -> None:
    warp, lazy = runs["warp"].summary["overall"], runs["identity"].summary["overall"]
    assert lazy["fed"]["mean"] == 0.0
    assert warp["fed"]["ci95"][0] > lazy["fed"]["mean"]  # above the lazy edit beyond its 95 % interval
    assert runs["warp"].counts["failed"] == 0


def test_warp_gain_is_positive_for_every_target_class(runs: dict) -> None:
    gains: dict[str, list[float]] = defaultdict(list)
    for row in runs["warp"].score.samples:
        if row["gain"] is not None:
            gains[row["target"]].append(row["gain"])
    targets = {row["target"] for row in runs["warp"].score.samples}
    assert set(gains) == targets
    means = {t: float(np.mean(v)) for t, v in gains.items()}
    print("warp mean gain per class:", {t: round(m, 3) for t, m in means.items()})
    assert all(m > 0 for m in means.values()), means


def test_warp_provenance_and_checkpoint_round_trip(runs: dict, pixelsmile: Path, tmp_path: Path) -> None:
    row = runs["warp"].generations[0]
    assert row["status"] == "ok" and row["params"]["fitted"] is False and row["libraries"]["mediapipe"]
    # a checkpoint changes the images only where its fields differ from the reference
    fields = WarpFields.reference()
    fields.fields["surprise"] = 2 * reference_field("surprise")
    fields.save(tmp_path / "ckpt")
    editor = build_editor(load_editor_config("warp", {"checkpoint": str(tmp_path / "ckpt")}))
    reference = build_editor(load_editor_config("warp"))
    src = pixelsmile / "blend" / "happy.jpg"
    same = [e.edit(EditRequest("x", src, "", "sad", 0)).image for e in (editor, reference)]
    differ = [e.edit(EditRequest("x", src, "", "surprise", 0)).image for e in (editor, reference)]
    assert np.array_equal(*same) and not np.array_equal(*differ)
    assert editor.params["fields"] != reference.params["fields"] == WarpFields.reference().digest()
    (tmp_path / "ckpt" / "checkpoint.json").write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(ValueError, match="format"):
        WarpFields.load(tmp_path / "ckpt")


def test_warp_reports_a_faceless_source(tmp_path: Path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(blank)
    result = build_editor(load_editor_config("warp")).edit(EditRequest("x", blank, "smile", "happy", 0))
    assert result.status == EditStatus.FAILED and "no face" in result.reason
