"""`fedbench score --judge` end to end: real backbones on four shared PixelSmile triplets, a scripted
judge on loopback (one refusal, one missing edit). The judged rows carry the rule-based figures beside
the judge's, the summary counts the refusal, and the rule-based figures equal a run without a judge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("httpx", reason="the api extra is not installed: pip install 'fedbench[api]'")

from judge_fake import DEFAULT_EXPRESSION, FakeJudge, Step  # noqa: E402

from fedbench.cli import app  # noqa: E402
from fedbench.metrics.core import _target_tolerance  # noqa: E402
from fedbench.metrics.spec import get_spec  # noqa: E402

pytestmark = pytest.mark.integration
IDS = ("blend-happy-to-sad", "blend-happy-to-angry", "blend-happy-to-surprised", "blend-happy-to-disgust")


def _rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_score_with_a_judge(pixelsmile: Path, tmp_path: Path) -> None:
    rows = {r["id"]: r for r in map(json.loads, (pixelsmile / "triplets.jsonl").read_text().splitlines())}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**rows[i], "source": str(pixelsmile / rows[i]["source"]),
                                            "ground_truth": str(pixelsmile / rows[i]["ground_truth"])}) + "\n"
                                for i in IDS))
    edits = tmp_path / "edits"
    edits.mkdir()
    for i, field in zip(IDS[:3], ("ground_truth", "ground_truth", "source")):  # oracle, oracle, lazy E = S
        f = pixelsmile / rows[i][field]
        shutil.copy(f, edits / f"{i}{f.suffix}")  # the last triplet has no edit
    server = FakeJudge()
    # concurrency 1: images are judged in manifest order (E, then its G): the first call is refused.
    server.script = [Step(status=400, body={"error": {"code": "content_filter", "message": "faces are blocked"}})]
    cfg = tmp_path / "judge.yaml"
    cfg.write_text(f"name: fake\nbase_url: {server.base_url}\nmodel: fake-vl\nrevision: r1\napi_key_env: null\n"
                   "concurrency: 1\nbackoff_s: 0\nrole: emotion-member\nweight: 0.5\n")
    cache = tmp_path / "features.sqlite"
    common = ["--manifest", str(manifest), "--edits", str(edits), "--cache", str(cache), "--workers", "1",
              "--allow-outside"]
    runner = CliRunner()
    try:
        plain = runner.invoke(app, ["score", *common, "--out", str(tmp_path / "plain")])
        assert plain.exit_code == 0, plain.output
        judged = runner.invoke(app, ["score", *common, "--out", str(tmp_path / "judged"), "--judge", str(cfg)])
        assert judged.exit_code == 0, judged.output
        calls = len(server.requests)
        again = runner.invoke(app, ["score", *common, "--out", str(tmp_path / "again"), "--judge", str(cfg)])
        assert again.exit_code == 0, again.output
    finally:
        server.close()

    # Three edits and their ground truths (relative A_emo under 2.0 judges G too); an oracle E is a
    # byte copy of G and the cache is keyed by content, so an oracle pair costs one call, the lazy
    # pair two. The refusal is kept in the cache, so the rerun pays for nothing.
    assert calls == 4 and len(server.requests) == 4
    p, j = _rows(tmp_path / "plain" / "samples.jsonl"), _rows(tmp_path / "judged" / "samples.jsonl")
    assert j == _rows(tmp_path / "again" / "samples.jsonl")
    refused, oracle, lazy, missing = (j[i] for i in IDS)
    assert refused["judge_status"] == "judge_refused" and "faces are blocked" in refused["judge_reason"]
    assert refused["alignment"] is None and refused["fed"] is None and refused["a_emo"] is None  # never a 0
    assert missing["judge_status"] is None and missing["status"] == "missing_edit"
    for i in IDS:  # the rule-based figures are those of the run without a judge
        assert j[i]["alignment_rules"] == p[i]["alignment"] and j[i]["fed_rules"] == p[i]["fed"], i
        assert j[i]["a_emo_rules"] == p[i]["a_emo"] and j[i]["a_act_rules"] == p[i]["a_act"], i
        assert (j[i]["fidelity"], j[i]["reg"]) == (p[i]["fidelity"], p[i]["reg"]), i
    for r in (oracle, lazy):
        assert r["judge_status"] == "ok" and r["a_act"] == r["a_act_rules"]  # emotion-member: A_act is the rules'
        assert r["alignment"] == pytest.approx((r["a_emo"] + r["a_act"]) / 2, abs=2e-4)
    assert oracle["a_emo"] == pytest.approx(1.0)  # E = G: the mix is the same on both sides
    # Lazy: the scripted judge gives the target q on E and on G, so A_emo = min(1, (p_mix(E) + tol) / p_mix(G))
    # with p_mix = (p_rules + q) / 2.
    tol, q = _target_tolerance(get_spec("2.0"), "surprise"), DEFAULT_EXPRESSION["surprise"]
    want = min(1.0, (0.5 * lazy["p_target_edit"] + 0.5 * q + tol) / (0.5 * lazy["p_target_gt"] + 0.5 * q))
    assert lazy["a_emo"] == pytest.approx(want, abs=1e-3) and lazy["a_emo"] != lazy["a_emo_rules"]
    s = json.loads((tmp_path / "judged" / "summary.json").read_text())
    sp = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert s["judge"]["judge_refused"] == 1 and s["judge"]["judge_failed"] == 0
    assert s["judge"]["status_counts"] == {"ok": 2, "judge_failed": 0, "judge_refused": 1, "not_judged": 1}
    assert s["judge"]["prompt_version"] == "fed_v1" and s["judge"]["role"] == "emotion-member"
    assert s["judge"]["config"]["model"] == "fake-vl" and s["judge"]["config"]["api_key_env"] is None
    assert s["judge"]["rules_overall"]["alignment_rules"] == sp["overall"]["alignment"]["mean"]
    assert s["overall"]["fidelity"] == sp["overall"]["fidelity"] and s["overall"]["reg"] == sp["overall"]["reg"]
    run = json.loads((tmp_path / "judged" / "run.json").read_text())
    assert run["judge"]["calls"] == 4 and run["judge"]["tokens"] == 300 and run["judge"]["cached"] == 0
    run2 = json.loads((tmp_path / "again" / "run.json").read_text())
    assert run2["judge"]["calls"] == 0 and run2["judge"]["cached"] == 4


def test_meta_with_a_judge_reports_agreement(pixelsmile: Path, tmp_path: Path) -> None:
    from fedbench.judge.config import JudgeConfig
    from fedbench.meta import MetaOptions, run_meta
    from fedbench.meta.probes import Probe

    rows = [json.loads(line) for line in (pixelsmile / "triplets.jsonl").read_text().splitlines()][:4]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**r, "source": str(pixelsmile / r["source"]),
                                            "ground_truth": str(pixelsmile / r["ground_truth"])}) + "\n"
                                for r in rows))
    server = FakeJudge()  # always answers "sad" on top (0.3): kappa against any other labelling is 0
    try:
        judge = JudgeConfig(name="fake", base_url=server.base_url, model="fake-vl", backoff_s=0.0)
        meta = run_meta(MetaOptions(benchmark=manifest, out=tmp_path / "meta", cache_path=tmp_path / "f.sqlite",
                                    workers=1, n_bootstrap=50, plots=False, judge=judge, allow_outside=True,
                                    probes=[Probe("lazy", "lazy"), Probe("oracle", "oracle"),
                                            Probe("blend-0.5", "under", 0.5)]))
    finally:
        server.close()
    j = meta["judge"]
    assert j["prompt_version"] == "fed_v1" and j["status_counts"]["ok"] == 12
    tops = [r["top_emotion_edit"] for r in map(json.loads, (tmp_path / "meta" / "samples.jsonl").read_text().splitlines())]
    assert j["agreement"]["all_classes"]["n"] == 12
    assert j["agreement"]["raw_agreement"] == pytest.approx(tops.count("sad") / 12, abs=1e-4)
    if set(tops) != {"sad"}:
        assert j["agreement"]["all_classes"]["kappa"] == 0.0
    assert j["agreement"]["per_class"]["sad"]["judge_positive"] == 12
    assert set(j["probes"]) == {"lazy", "oracle", "blend-0.5"}
    assert all(p["judge_statuses"] == {"ok": 4} and p["alignment_rules"] is not None for p in j["probes"].values())
    assert json.loads((tmp_path / "meta" / "meta.json").read_text())["judge"]["role"] == "emotion-member"
