"""The HTML report in a real browser: headless Chromium (Debian's package) driven by Playwright.

The report is built from runs scored on the shared fixtures (oracle, lazy and an over-edit), opened
from disk (file://), and used as a reader would: sort the leaderboard, filter the gallery to one
class, open a sample's full-size view. No request may leave the disk. A screenshot is saved under
pytest's tmp_path. Without Chromium the test fails in CI (CI=true) and is skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fedbench.data.manifest import Manifest, read_manifest
from fedbench.testing.probe_files import pixel_blend_files
from fedbench.report.html import build_report
from fedbench.report.runs import load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _require_browser():
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "the playwright package is not installed (pip install -e '.[test]')"
    if why is None and not CHROMIUM.exists():
        why = f"{CHROMIUM} not found (apt-get install -y chromium; .ci/run installs it)"
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test cannot run in CI: {why}")
        pytest.skip(why)
    return sync_playwright


@pytest.fixture(scope="module")
def browser_api():
    """Checked before anything is scored: no browser, no reason to spend the time."""
    return _require_browser()


@pytest.fixture(scope="module")
def report(pixelsmile, tmp_path_factory) -> dict:
    """Three real runs on eight fixture triplets (several targets) and their report."""
    from fedbench.scoring.runner import score

    base = tmp_path_factory.mktemp("browser")
    full = read_manifest(pixelsmile / "triplets.jsonl")
    man = Manifest(full.path, full.root, full.triplets[::4])
    runs = []
    for probe in ("oracle", "lazy", "over-edit"):
        edits = base / "edits" / probe
        edits.mkdir(parents=True)
        for t in man:
            if probe == "over-edit":
                pixel_blend_files(t.source, t.ground_truth, 2.0, edits / f"{t.id}.png")
            else:
                shutil.copy(t.ground_truth if probe == "oracle" else t.source, edits / f"{t.id}.jpg")
        score(man, edits, base / "runs" / probe, workers=1, cache_path=base / "features.sqlite", n_bootstrap=200)
        runs.append(base / "runs" / probe)
    loaded = load_runs(runs)
    result = build_report(loaded, base / "report", thumb_cache=base / "thumbs")
    return {"result": result, "runs": loaded, "manifest": man}


def test_report_in_chromium(browser_api, report, tmp_path):
    sync_playwright = browser_api
    runs = report["runs"]
    index: Path = report["result"].index
    summaries = {r.name: r.summary for r in runs}
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(index.as_uri())

            # Leaderboard: FED order first; sorting by Alignment puts the oracle on top, then the lazy
            # edit at the bottom (Fidelity would tie: both keep what the ground truth keeps).
            names = lambda: page.locator("#leaderboard-table tbody tr td.model").all_inner_texts()  # noqa: E731
            by_fed = sorted(summaries, key=lambda n: -summaries[n]["overall"]["fed"]["mean"])
            assert names() == by_fed
            head = page.locator("#leaderboard-table th", has_text="Alignment")
            head.locator("button").click()
            by_align = sorted(summaries, key=lambda n: -summaries[n]["overall"]["alignment"]["mean"])
            assert len({summaries[n]["overall"]["alignment"]["mean"] for n in summaries}) == len(summaries)
            assert names() == by_align and by_align[0] == "oracle" and by_align[-1] == "lazy"
            assert head.get_attribute("aria-sort") == "descending"
            head.locator("button").click()
            assert names() == by_align[::-1] and head.get_attribute("aria-sort") == "ascending"
            shown = page.locator("#leaderboard-table tbody tr").first.locator("td[data-dim=alignment] .mean").inner_text()
            assert shown == f"{summaries[by_align[-1]]['overall']['alignment']['mean']:.3f}"

            # Gallery: every model x sample at first, then one class only.
            total = sum(len(r.samples) for r in runs)
            page.locator("#gallery").scroll_into_view_if_needed()
            assert page.locator("#gallery-count").inner_text().startswith(f"{total} of {total}")
            targets = [t.target for t in report["manifest"]]
            cls = max(set(targets), key=targets.count)
            expected = targets.count(cls) * len(runs)
            assert 0 < expected < total
            page.select_option("#f-class", cls)
            cards = page.locator("#gallery-grid .card")
            assert cards.count() == expected
            assert set(cards.evaluate_all("cs => cs.map(c => c.dataset.class)")) == {cls}
            assert page.locator("#gallery-count").inner_text().startswith(f"{expected} of {total}")
            # Sorted by FED, high first: the oracle's cards lead; thumbnails decoded from thumbs/.
            feds = cards.evaluate_all("cs => cs.map(c => c.querySelector('td[data-key=fed]').textContent)")
            values = [float(v) for v in feds if v != "—"]
            assert values == sorted(values, reverse=True)
            assert cards.first.get_attribute("data-model") == "oracle"
            first_imgs = cards.first.locator("img")
            first_imgs.first.scroll_into_view_if_needed()
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('#gallery-grid .card')[0].querySelectorAll('img'))"
                ".every(i => i.complete && i.naturalWidth > 0)")
            assert first_imgs.count() == 3
            page.screenshot(path=str(tmp_path / "report-gallery.png"))

            # Model and status filters narrow further; a FED floor hides the lazy edit's zeros.
            page.select_option("#f-model", "lazy")
            assert cards.count() == targets.count(cls)
            page.fill("#f-min", "1")
            assert cards.count() == 0
            page.fill("#f-min", "")
            page.select_option("#f-model", "")

            # Full-size view of one sample: the original images, every component.
            sample_id = cards.first.get_attribute("data-id")
            cards.first.locator("header a").click()
            viewer = page.locator("#viewer")
            viewer.wait_for(state="visible")
            assert sample_id in page.locator("#viewer-title").inner_text()
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('#viewer-images img')).every(i => i.complete && i.naturalWidth > 160)")
            row = runs[[r.name for r in runs].index("oracle")].by_id[sample_id]
            table = page.locator("#viewer-table").inner_text()
            assert f"{row['fed']:.2f}" in table and "Alignment" in table
            page.screenshot(path=str(tmp_path / "report-viewer.png"))
            page.keyboard.press("Escape")
            viewer.wait_for(state="hidden")

            page.goto(index.as_uri())
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    offline = [u for u in requests if not u.startswith(("file:", "data:", "about:"))]
    assert not offline, offline
    assert (tmp_path / "report.png").stat().st_size > 10_000
    print(json.dumps({"screenshots": str(tmp_path)}))
