"""The HTML report escapes what manifests and runs bring (ids, instructions, file names, model
names, reasons) and keeps its embedded JSON inert; thumbnails are made once and reused.

Runs are synthetic (invented scores) over small generated images with hostile names and text.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedbench.report.html import build_report
from fedbench.report.runs import load_runs
from fedbench.testing.synthetic_runs import Behaviour, synthetic_rows, write_run

EVIL_INSTRUCTION = 'Make them happy </script><script>alert("x")</script> & "smile" \'wide\' <b>now</b>'
# Ids name files, so they cannot hold <>"/ (not valid on every OS; the manifest refuses them):
# the hostile id breaks out of single-quoted attributes and carries entities instead.
EVIL_ID = "q' onerror='alert(1)' &lt;img&gt; & x"
EVIL_FILE = 'src "quoted" <x> & \'y\'.png'
EVIL_MODEL = "<script>alert('model') & \"q\""  # a folder name: no '/'



class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        (self.scripts if self._in_script else self.data).append(data)


def _image(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def hostile(tmp_path) -> dict:
    bench = tmp_path / "bench"
    bench.mkdir()
    _image(bench / EVIL_FILE, 1)
    _image(bench / "gt.png", 2)
    _image(bench / "plain.png", 3)
    rows = [{"id": EVIL_ID, "source": EVIL_FILE, "instruction": EVIL_INSTRUCTION, "target": "happy",
             "ground_truth": "gt.png"},
            {"id": "plain", "source": "plain.png", "instruction": "Change the expression to sad.", "target": "sad",
             "ground_truth": "gt.png"}]
    manifest = bench / "triplets.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = []
    for m, name in enumerate((EVIL_MODEL, "plain-model")):
        edits = tmp_path / f"edits{m}"
        edits.mkdir()
        _image(edits / f"{EVIL_ID}.png", 10 + m)
        _image(edits / "plain.png", 20 + m)
        samples = synthetic_rows([(EVIL_ID, "happy"), ("plain", "sad")], Behaviour(), seed=m)
        samples[0]["reason"] = EVIL_INSTRUCTION  # a reason is free text too
        runs.append(write_run(tmp_path / "runs" / name, samples, manifest, edits))
    return {"runs": runs, "tmp": tmp_path}


def test_text_from_manifests_and_runs_is_escaped(hostile):
    out = hostile["tmp"] / "report"
    result = build_report(load_runs(hostile["runs"]), out, thumb_cache=hostile["tmp"] / "thumbs")
    page = result.index.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    # Exactly the page's own two script elements: the JSON data and the app; no injected element.
    assert [t for t, _ in parser.tags].count("script") == 2
    assert page.count("</script>") == 2
    assert not [t for t, _ in parser.tags if t in ("b", "x")]
    assert not any("onerror" in attrs for _, attrs in parser.tags)
    # The model name and the id were shown as text (the leaderboard, the heat map, the tables).
    text = "".join(parser.data)
    assert EVIL_MODEL in text
    assert "&lt;script&gt;alert(&#39;model&#39;) &amp; &#34;q&#34;" in page
    # The embedded JSON round-trips to the original strings and contains no raw '<'.
    data_src = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in data_src and "\\u003c/script\\u003e" in data_src
    data = json.loads(data_src)
    assert data["models"][0] in (EVIL_MODEL, "plain-model") and EVIL_MODEL in data["models"]
    assert data["triplets"][EVIL_ID]["i"] == EVIL_INSTRUCTION
    assert data["triplets"][EVIL_ID]["sf"] == EVIL_FILE
    assert any(it["r"] == EVIL_INSTRUCTION for it in data["items"])
    # A file name with quotes and spaces becomes a percent-encoded relative link.
    href = data["triplets"][EVIL_ID]["S"]
    assert href.endswith("src%20%22quoted%22%20%3Cx%3E%20%26%20%27y%27.png") and not href.startswith("/")
    assert "SYNTHETIC" in text


def test_thumbnails_are_made_once_and_reused(hostile):
    tmp = hostile["tmp"]
    runs = load_runs(hostile["runs"])
    first = build_report(runs, tmp / "r1", thumb_cache=tmp / "thumbs")
    t = first.thumbnails
    # Two triplets (source + ground truth each) and 2 models x 2 edits: 8 images asked for, and the
    # ground truth both triplets share is one content: 7 thumbnails, shown 2 x 2 x 3 = 12 times.
    assert t.requested == 4 + 4 and t.unique == 7 and t.made == 7 and not t.failed
    thumbs = sorted((tmp / "r1" / "thumbs").glob("*.jpg"))
    assert len(thumbs) == 7
    for f in thumbs:
        with Image.open(f) as im:
            assert im.format == "JPEG" and max(im.size) <= 160
    # Built again in place, and into a new folder: nothing is decoded again.
    again = build_report(runs, tmp / "r1", thumb_cache=tmp / "thumbs")
    other = build_report(runs, tmp / "r2", thumb_cache=tmp / "thumbs")
    for r in (again, other):
        assert r.thumbnails.made == 0 and r.thumbnails.reused == 7
    # Same content, same name: the thumbnail is named by content, not by path.
    assert sorted(p.name for p in (tmp / "r2" / "thumbs").glob("*.jpg")) == [p.name for p in thumbs]


def test_unreadable_images_and_missing_manifest_still_give_a_page(hostile):
    tmp = hostile["tmp"]
    edits = tmp / "edits0"
    (edits / "plain.png").write_bytes(b"not an image")
    manifest = tmp / "bench" / "triplets.jsonl"
    manifest.rename(tmp / "bench" / "moved.jsonl")
    result = build_report(load_runs(hostile["runs"]), tmp / "r", thumb_cache=tmp / "thumbs")
    assert any("could not be read" in w and "triplets.jsonl" in w for w in result.warnings)
    page = result.index.read_text(encoding="utf-8")
    assert "could not be read" in page
    # The scores are all there, without pictures for the first model's broken edit.
    data = json.loads(re.search(r'id="gallery-data">(.*?)</script>', page, re.S).group(1))
    assert len(data["items"]) == 4 and data["triplets"] == {}
    broken = [it for it in data["items"] if it["id"] == "plain" and it["ef"] == "plain.png" and it["e"] is None]
    assert len(broken) == 1
    # --manifest points the report at the moved file.
    fixed = build_report(load_runs(hostile["runs"]), tmp / "r", manifest=tmp / "bench" / "moved.jsonl",
                         thumb_cache=tmp / "thumbs")
    data = json.loads(re.search(r'id="gallery-data">(.*?)</script>', fixed.index.read_text(), re.S).group(1))
    assert set(data["triplets"]) == {EVIL_ID, "plain"}
