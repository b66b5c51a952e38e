"""Bad inputs end to end: `fedbench.score` never crashes on them.

Every triplet ends with a named status (and a reason when it is not ``ok``), or the manifest is
refused up front with a `ManifestError` that names the row. The bad corpus is generated into
pytest's tmp folders at run time from the shared PixelSmile fixtures; nothing is written into the
repository. Real-model runs are grouped: one run for every bad edit, one for the broken references,
one pair (CSV + Parquet) for foreign manifests. Manifest refusals need no model: they run on the tiny
generated fixture in tests/unit/test_manifest_refusals.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from fedbench.data.manifest import ManifestError, read_manifest
from fedbench.metrics.fedscore import COMPONENTS, DATASET_ERRORS, EDIT_FAILURES, STATUSES
from fedbench.scoring.runner import ScoreResult, score

from conftest import fixtures_root, manifest_rows

FIXTURES = fixtures_root()

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _needs_pixelsmile(pixelsmile: Path) -> None:
    """Every test here copies real faces from the shared fixtures: skipped without them, failed under CI."""


# ----------------------------------------------------------------------------------------------
# helpers


def _fixture_triplets() -> list[dict[str, Any]]:
    return manifest_rows(FIXTURES)


def _copy_references(root: Path, triplets: list[dict[str, Any]]) -> None:
    """Copy each source / ground truth the triplets name into `root` (a tmp folder), same relative path."""
    for t in triplets:
        for key in ("source", "ground_truth"):
            src = FIXTURES / t[key]
            if src.is_file():  # rows may deliberately name files that do not exist
                dest = root / t[key]
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)


def _write_jsonl(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def _corpus(root: Path, triplets: list[dict[str, Any]]) -> Path:
    """A manifest folder in `root` holding copies of the references and `manifest.jsonl`."""
    root.mkdir(parents=True, exist_ok=True)
    _copy_references(root, triplets)
    return _write_jsonl(root / "manifest.jsonl", triplets)


def _score(manifest: Path, edits: Path, work: Path, **kwargs: Any) -> ScoreResult:
    """Score in-process with a feature cache private to `work`."""
    return score(manifest, edits, cache_path=work / "features.sqlite", workers=1, n_bootstrap=50, **kwargs)


def _check_invariants(result: ScoreResult, ids: list[str]) -> None:
    """What must hold for any run: one row per triplet in manifest order, named statuses, reasons."""
    rows = result.samples
    assert [r["id"] for r in rows] == ids
    for r in rows:
        assert r["status"] in STATUSES, f"{r['id']}: unnamed status {r['status']!r}"
        if r["status"] != "ok":
            assert isinstance(r["reason"], str) and r["reason"].strip(), f"{r['id']}: {r['status']} without a reason"
    counts = result.summary["status_counts"]
    assert set(counts) <= set(STATUSES)
    assert sum(counts.values()) == len(ids)
    assert result.summary["n_samples"] == len(ids)


def _all_components_zero(row: dict[str, Any]) -> None:
    assert {c: row[c] for c in COMPONENTS} == {c: 0.0 for c in COMPONENTS}, row


# ----------------------------------------------------------------------------------------------
# the bad edits: one real-model run for all of them


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _save(im: Image.Image, dest: Path, **kw: Any) -> Path:
    im.save(dest, **kw)
    return dest


def _corrupt(gt: Path, stem: Path) -> Path:
    dest = stem.with_suffix(".jpg")
    dest.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    return dest


def _empty(gt: Path, stem: Path) -> Path:
    dest = stem.with_suffix(".jpg")
    dest.write_bytes(b"")
    return dest


def _truncated(gt: Path, stem: Path) -> Path:
    data = gt.read_bytes()
    dest = stem.with_suffix(".jpg")
    dest.write_bytes(data[: len(data) // 2])
    return dest


def _trailing_data(gt: Path, stem: Path) -> Path:
    """A complete JPEG followed by 64 KB of appended data, as in phone "motion photos" (JPEG + MP4)."""
    dest = stem.with_suffix(".jpg")
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(64 * 1024)
    dest.write_bytes(gt.read_bytes() + video)
    return dest


def _cmyk(gt: Path, stem: Path) -> Path:
    dest = _save(_open_rgb(gt).convert("CMYK"), stem.with_suffix(".jpg"), quality=95)
    with Image.open(dest) as im:
        assert im.mode == "CMYK"
    return dest


def _png16(gt: Path, stem: Path) -> Path:
    grey = np.asarray(_open_rgb(gt).convert("L"), dtype=np.uint16) * 257
    dest = _save(Image.fromarray(grey), stem.with_suffix(".png"))
    with Image.open(dest) as im:
        assert im.mode.startswith("I"), im.mode  # 16-bit grey on disk
    return dest


def _rgba(gt: Path, stem: Path) -> Path:
    rgba = np.asarray(_open_rgb(gt).convert("RGBA")).copy()
    h, w = rgba.shape[:2]
    rgba[..., 3] = 160  # translucent everywhere...
    rgba[: h // 10, :, 3] = 0  # ...and fully transparent along the top
    dest = _save(Image.fromarray(rgba), stem.with_suffix(".png"))
    with Image.open(dest) as im:
        assert im.mode == "RGBA"
    return dest


def _grey(gt: Path, stem: Path) -> Path:
    return _save(_open_rgb(gt).convert("L"), stem.with_suffix(".png"))


def _tiny(gt: Path, stem: Path) -> Path:
    return _save(_open_rgb(gt).resize((8, 8), Image.BILINEAR), stem.with_suffix(".png"))


def _huge(gt: Path, stem: Path) -> Path:
    return _save(_open_rgb(gt).resize((8000, 8000), Image.BILINEAR), stem.with_suffix(".jpg"), quality=70)


def _noise(gt: Path, stem: Path) -> Path:
    pixels = np.random.default_rng(11).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    return _save(Image.fromarray(pixels), stem.with_suffix(".png"))


def _corner(gt: Path, stem: Path) -> Path:
    return _save(_open_rgb(gt).crop((0, 0, 256, 256)), stem.with_suffix(".png"))


def _two_faces(gt: Path, stem: Path) -> Path:
    left = _open_rgb(gt).resize((1024, 1024), Image.BILINEAR)
    right = _open_rgb(FIXTURES / "slider" / "happy" / "00.avif").resize((1024, 1024), Image.BILINEAR)
    canvas = Image.new("RGB", (2048, 1024))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (1024, 0))
    return _save(canvas, stem.with_suffix(".jpg"), quality=92)


def _missing(gt: Path, stem: Path) -> None:
    return None


def _gif(gt: Path, stem: Path) -> Path:
    return _save(_open_rgb(gt), stem.with_suffix(".gif"))


# case -> (builder, expected status of the edit). "scored" = a readable face: ok / degenerate_gt.
EDIT_CASES: dict[str, tuple[Callable[[Path, Path], Path | None], str]] = {
    "corrupt_bytes": (_corrupt, "unreadable_edit"),
    "empty_file": (_empty, "unreadable_edit"),
    "truncated_jpeg": (_truncated, "unreadable_edit"),
    "jpeg_trailing_data": (_trailing_data, "scored"),
    "cmyk_jpeg": (_cmyk, "scored"),
    "png_16bit_grey": (_png16, "scored"),
    "png_rgba_alpha": (_rgba, "scored"),
    "png_grey": (_grey, "scored"),
    "tiny_8px": (_tiny, "unreadable_edit"),
    "huge_8000px": (_huge, "scored"),
    "no_face_noise": (_noise, "no_face_edit"),
    "no_face_background_corner": (_corner, "no_face_edit"),
    "two_faces": (_two_faces, "scored"),
    "missing": (_missing, "missing_edit"),
    "gif": (_gif, "unreadable_edit"),
}


@pytest.fixture(scope="module")
def bad_edit_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Score one manifest whose edits are every kind of bad file; shared by the tests below."""
    work = tmp_path_factory.mktemp("bad_edits")
    triplets = _fixture_triplets()[: len(EDIT_CASES)]
    assert len(triplets) == len(EDIT_CASES), "the fixture manifest has too few triplets"
    manifest = _corpus(work / "corpus", triplets)
    edits = work / "edits"
    edits.mkdir()
    case_of: dict[str, str] = {}
    files: dict[str, Path | None] = {}
    for (case, (build, _)), t in zip(EDIT_CASES.items(), triplets):
        case_of[case] = t["id"]
        files[case] = build(FIXTURES / t["ground_truth"], edits / t["id"])
    result = _score(manifest, edits, work, out=work / "out")
    return {"result": result, "ids": [t["id"] for t in triplets], "case_of": case_of, "files": files,
            "work": work}


def test_bad_edits_run_ends_with_a_named_status_per_sample(bad_edit_run: dict[str, Any]) -> None:
    result: ScoreResult = bad_edit_run["result"]
    ids = bad_edit_run["ids"]
    _check_invariants(result, ids)
    # Edit failures are the editor's fault: they count (score 0), nothing is excluded.
    assert result.summary["excluded"] == []
    assert result.summary["n_scored"] == len(ids)
    edit_counts = result.summary["edit_status_counts"]
    assert sum(edit_counts.values()) == len(ids)
    assert set(edit_counts) <= {"ok", *EDIT_FAILURES}
    # The result files agree with the returned rows.
    out = bad_edit_run["work"] / "out"
    written = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert written == result.samples
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["status_counts"] == \
        result.summary["status_counts"]
    assert not list(out.glob(".*.tmp"))  # the streamed samples file was renamed into place


@pytest.mark.parametrize("case", list(EDIT_CASES))
def test_bad_edit_case(bad_edit_run: dict[str, Any], case: str) -> None:
    expected = EDIT_CASES[case][1]
    sample_id = bad_edit_run["case_of"][case]
    row = next(r for r in bad_edit_run["result"].samples if r["id"] == sample_id)
    edit_file: Path | None = bad_edit_run["files"][case]
    if expected == "scored":
        assert row["edit_status"] == "ok", row
        assert row["status"] in ("ok", "degenerate_gt"), row
        assert row["faces_edit"] >= (2 if case == "two_faces" else 1), row
        for c in ("alignment", "fidelity", "id_score", "bg", "pq"):
            assert row[c] is not None and 0.0 <= row[c] <= 1.0, (c, row)
        if row["status"] == "ok":
            assert row["fed"] is not None and 0.0 <= row["fed"] <= 100.0
            assert row["reason"] is None
        else:
            assert row["reason"]
        return
    # The GIF case lands on a triplet whose ground truth barely changes: the row's status says so
    # (degenerate_gt), while the edit's own status and the reason are the edit's.
    assert row["status"] == expected or (case == "gif" and row["status"] == "degenerate_gt"), row
    assert row["edit_status"] == expected, row
    assert isinstance(row["reason"], str) and row["reason"].strip(), row
    if row["status"] == expected:
        _all_components_zero(row)
    if expected == "unreadable_edit":
        assert edit_file is not None
        assert edit_file.name in row["reason"], f"the reason should name the file: {row['reason']!r}"
        assert row["faces_edit"] is None
        if case == "truncated_jpeg":
            assert "truncated" in row["reason"].lower()
        if case == "tiny_8px":
            assert "8x8" in row["reason"]
        if case == "gif":
            assert "unsupported format GIF" in row["reason"]
        assert " object at 0x" not in row["reason"]  # reproducible: no object address in a reason
    elif expected == "no_face_edit":
        assert row["faces_edit"] == 0
    elif expected == "missing_edit":
        assert edit_file is None
        assert row["faces_edit"] is None


# ----------------------------------------------------------------------------------------------
# broken references: one real-model run


def test_corrupt_source_is_excluded_and_the_rest_is_scored(tmp_path: Path) -> None:
    base = _fixture_triplets()
    triplets = [dict(t) for t in base[:5]]
    # Rows 1 and 2 share one corrupt source; row 3 has a truncated ground truth; rows 4, 5 are fine.
    triplets[0]["source"] = triplets[1]["source"] = "broken/source.jpg"
    triplets[2]["ground_truth"] = "broken/ground_truth.jpg"
    manifest = _corpus(tmp_path / "corpus", triplets)
    broken = tmp_path / "corpus" / "broken"
    broken.mkdir()
    (broken / "source.jpg").write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    gt_bytes = (FIXTURES / base[2]["ground_truth"]).read_bytes()
    (broken / "ground_truth.jpg").write_bytes(gt_bytes[: len(gt_bytes) // 2])
    edits = tmp_path / "edits"
    edits.mkdir()
    for t, orig in zip(triplets, base):  # a perfect edit: the intended ground truth itself
        shutil.copyfile(FIXTURES / orig["ground_truth"], edits / f"{t['id']}.jpg")

    result = _score(manifest, edits, tmp_path)

    ids = [t["id"] for t in triplets]
    _check_invariants(result, ids)
    by_id = {r["id"]: r for r in result.samples}
    for sid in ids[:2]:
        assert by_id[sid]["status"] == "unreadable_source", by_id[sid]
        assert "source.jpg" in by_id[sid]["reason"]
        assert by_id[sid]["fed"] is None  # excluded, not zero
    assert by_id[ids[2]]["status"] == "unreadable_ground_truth", by_id[ids[2]]
    assert "ground_truth.jpg" in by_id[ids[2]]["reason"]
    excluded = {e["id"]: e for e in result.summary["excluded"]}
    assert set(excluded) == set(ids[:3])
    assert excluded[ids[0]]["status"] == "unreadable_source" and excluded[ids[0]]["reason"]
    assert all(e["status"] in DATASET_ERRORS for e in excluded.values())
    assert result.summary["n_scored"] == 2
    for sid in ids[3:]:
        row = by_id[sid]
        assert row["edit_status"] == "ok", row
        assert row["status"] in ("ok", "degenerate_gt"), row
        assert row["fidelity"] is not None and row["alignment"] is not None
    assert result.summary["overall"]["fed"]["n"] == sum(by_id[s]["fed"] is not None for s in ids[3:])


# ----------------------------------------------------------------------------------------------
# foreign manifests: CSV and Parquet with a column mapping


COLUMNS = {"source": "img", "target": "emotion"}


def _foreign_rows(triplets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"id": t["id"], "img": t["source"], "instruction": t["instruction"], "emotion": t["target"],
         "ground_truth": t["ground_truth"], "identity": t.get("identity")}
        for t in triplets
    ]


def test_csv_and_parquet_manifests_with_column_mapping_score(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    triplets = [dict(t) for t in _fixture_triplets()[:3]]
    root = tmp_path / "corpus"
    root.mkdir()
    _copy_references(root, triplets)
    rows = _foreign_rows(triplets)
    csv_path = root / "manifest.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    parquet_path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    edits = tmp_path / "edits"
    edits.mkdir()
    for t in triplets:
        shutil.copyfile(FIXTURES / t["ground_truth"], edits / f"{t['id']}.jpg")

    # Without the mapping the required columns are missing: refused, naming the first data row.
    with pytest.raises(ManifestError) as info:
        read_manifest(csv_path)
    assert info.value.problems[0].row == 2 and "'source'" in info.value.problems[0].message

    ids = [t["id"] for t in triplets]
    from_csv = _score(csv_path, edits, tmp_path, columns=COLUMNS)
    from_parquet = _score(parquet_path, edits, tmp_path, columns=COLUMNS)
    for result in (from_csv, from_parquet):
        _check_invariants(result, ids)
        assert [r["target"] for r in result.samples] == [t["target"] for t in triplets]
        assert all(r["edit_status"] == "ok" and r["status"] in ("ok", "degenerate_gt") for r in result.samples)
        assert result.summary["excluded"] == []
    assert from_csv.samples == from_parquet.samples
