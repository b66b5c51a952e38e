"""The vision-language judge against a real HTTP server on loopback with scripted replies: success,
malformed JSON (retried, then judge_failed), 429 + Retry-After, 5xx until give-up, a timeout, refusals,
key scrubbing, and a cache hit that makes no call; plus the ready configs and the Alignment mixing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("httpx", reason="the api extra is not installed: pip install 'fedbench[api]'")

from judge_fake import FakeJudge, Step  # noqa: E402

from fedbench.data.manifest import Triplet  # noqa: E402
from fedbench.judge.cache import JudgeCache  # noqa: E402
from fedbench.judge.client import JudgeClient  # noqa: E402
from fedbench.judge.config import JudgeConfig, JudgeConfigError, load_judge_config  # noqa: E402
from fedbench.judge.run import judge_triplets  # noqa: E402
from fedbench.judge.schema import PROMPT_VERSION, parse_reply, render_prompt  # noqa: E402
from fedbench.labels import EXPRESSIONS  # noqa: E402
from fedbench.metrics import core  # noqa: E402
from fedbench.metrics.lexicon import named_actions  # noqa: E402
from fedbench.metrics.reg import Gain  # noqa: E402
from fedbench.metrics.spec import get_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "FEDBENCH_TEST_JUDGE_KEY"


@pytest.fixture
def server() -> Iterator[FakeJudge]:
    s = FakeJudge()
    yield s
    s.close()


@pytest.fixture
def face(tmp_path: Path) -> Path:
    p = tmp_path / "e.png"
    Image.fromarray(np.full((40, 30, 3), 128, dtype=np.uint8)).save(p)
    return p


def _config(server: FakeJudge, **kw: object) -> JudgeConfig:
    base = {"name": "fake", "base_url": server.base_url, "model": "fake-vl", "revision": "r1", "max_retries": 2,
            "backoff_s": 0.0, "timeout_s": 5.0}
    return JudgeConfig.model_validate({**base, **kw})


class Sleeps(list):
    def __call__(self, s: float) -> None:
        self.append(s)


# --- configs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted((REPO / "configs" / "judges").glob("*.yaml")), ids=lambda p: p.stem)
def test_ready_configs_parse(path: Path) -> None:
    c = load_judge_config(path)
    assert c.temperature == 0.0 and c.model and c.role in ("emotion-member", "actions")
    assert "api_key" not in json.dumps(c.public()).replace("api_key_env", "")


def test_ready_configs_cover_the_three_judges() -> None:
    models = {load_judge_config(p).model for p in (REPO / "configs" / "judges").glob("*.yaml")}
    assert {"Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-72B-Instruct"} <= models and len(models) >= 3


def test_bad_config_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "hot.yaml"
    p.write_text("base_url: http://x/v1\nmodel: m\ntemperature: 0.7\n")
    with pytest.raises(JudgeConfigError, match=r"hot\.yaml.*temperature"):
        load_judge_config(p)
    p.write_text("base_url: ftp://x\nmodel: m\n")
    with pytest.raises(JudgeConfigError, match="base_url"):
        load_judge_config(p)


def test_hash_follows_what_changes_answers(server: FakeJudge) -> None:
    a = _config(server)
    assert a.config_hash() == _config(server, max_retries=5, role="actions").config_hash()
    assert a.config_hash() != _config(server, revision="r2").config_hash()


# --- the reply schema -------------------------------------------------------------------------------

def test_reply_schema() -> None:
    dist = {"neutral": 0.1, "happiness": 0.5, "sad": 0.1, "surprised": 0.1, "fear": 0.1, "disgust": 0.05, "anger": 0.05}
    r = parse_reply("```json\n" + json.dumps({"expression": dist, "actions": {"jaw_open": False}}) + "\n```",
                    ["jaw_open"])
    assert r.expression["happy"] == pytest.approx(0.5) and r.actions == {"jaw_open": False}
    with pytest.raises(ValueError, match="jaw_open"):
        parse_reply(json.dumps({"expression": dist, "actions": {}}), ["jaw_open"])
    with pytest.raises(ValueError, match="sum"):
        parse_reply(json.dumps({"expression": {**dist, "happy": 0.9}}), [])
    with pytest.raises(ValueError, match="angry"):
        parse_reply(json.dumps({"expression": {k: v for k, v in dist.items() if k != "anger"}}), [])
    assert "jaw_open" in render_prompt(["jaw_open"]) and PROMPT_VERSION == "fed_v1"


# --- the client against the loopback server ---------------------------------------------------------

def test_success_sends_a_pinned_request(server: FakeJudge, face: Path) -> None:
    client = JudgeClient(_config(server, seed=7))
    a = client.judge(face, ["jaw_open", "mouth_smile"])
    client.close()
    assert a.status == "ok" and a.calls == 1 and a.tokens == 100
    assert a.reply.actions == {"jaw_open": True, "mouth_smile": True}
    assert a.reply.expression["sad"] == pytest.approx(0.3)
    req = server.requests[0]
    assert req["temperature"] == 0.0 and req["seed"] == 7 and req["model"] == "fake-vl"
    assert req["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "Authorization" not in server.headers[0]  # api_key_env: null sends no key


def test_malformed_is_retried_then_judge_failed(server: FakeJudge, face: Path) -> None:
    server.script = [Step(content="I think the person looks sad.")] * 3
    a = JudgeClient(_config(server), sleep=Sleeps()).judge(face, [])
    assert a.status == "judge_failed" and a.reply is None and a.calls == 3
    assert "malformed reply" in a.reason and "gave up after 3" in a.reason


def test_malformed_once_then_ok(server: FakeJudge, face: Path) -> None:
    server.script = [Step(content='{"expression": {"happy": 1.0}}')]  # six classes missing
    a = JudgeClient(_config(server), sleep=Sleeps()).judge(face, [])
    assert a.status == "ok" and a.calls == 2


def test_429_retry_after_is_honoured(server: FakeJudge, face: Path) -> None:
    server.script = [Step(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "1.5"})]
    sleeps = Sleeps()
    a = JudgeClient(_config(server), sleep=sleeps).judge(face, [])
    assert a.status == "ok" and a.calls == 2 and sleeps == [1.5]


def test_5xx_until_give_up(server: FakeJudge, face: Path) -> None:
    server.default = Step(status=503, body={"error": {"message": "overloaded"}})
    sleeps = Sleeps()
    a = JudgeClient(_config(server, max_retries=3, backoff_s=1.0), sleep=sleeps).judge(face, [])
    assert a.status == "judge_failed" and a.calls == 4 and len(server.requests) == 4
    assert "HTTP 503" in a.reason and len(sleeps) == 3 and sleeps[1] > sleeps[0]


def test_an_odd_200_body_is_retried_then_judge_failed(server: FakeJudge, face: Path) -> None:
    server.default = Step(body={"choices": {"0": "not a list"}, "usage": {"total_tokens": "many"}})
    a = JudgeClient(_config(server, max_retries=1), sleep=Sleeps()).judge(face, [])
    assert a.status == "judge_failed" and a.calls == 2 and a.tokens == 0
    assert "without choices[0].message.content" in a.reason


def test_timeout_is_judge_failed(server: FakeJudge, face: Path) -> None:
    server.default = Step(sleep_s=1.5)
    a = JudgeClient(_config(server, timeout_s=0.3, max_retries=1), sleep=Sleeps()).judge(face, [])
    assert a.status == "judge_failed" and "timed out" in a.reason and a.calls == 2


@pytest.mark.parametrize("step", [
    Step(status=400, body={"error": {"code": "content_policy_violation", "message": "blocked: faces"}}),
    Step(body={"choices": [{"finish_reason": "content_filter", "message": {"content": None}}]}),
    Step(body={"choices": [{"finish_reason": "stop", "message": {"content": None, "refusal": "I can't judge faces"}}]}),
], ids=["error-code", "finish-reason", "refusal-field"])
def test_refusal_is_judge_refused(server: FakeJudge, face: Path, step: Step) -> None:
    server.script = [step]
    a = JudgeClient(_config(server), sleep=Sleeps()).judge(face, [])
    assert a.status == "judge_refused" and a.calls == 1 and a.reply is None and a.reason


def test_key_is_sent_and_scrubbed(server: FakeJudge, face: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-secret-999")
    server.script = [Step(status=401, body={"error": {"message": "bad key sk-secret-999"}})]
    a = JudgeClient(_config(server, api_key_env=KEY_ENV)).judge(face, [])
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-999"
    assert a.status == "judge_failed" and "sk-secret-999" not in a.reason and "[REDACTED]" in a.reason and a.calls == 1
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(JudgeConfigError, match=KEY_ENV):
        JudgeClient(_config(server, api_key_env=KEY_ENV))


def test_commands_check_the_key_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "hosted.yaml"
    p.write_text(f"base_url: https://example.invalid/v1\nmodel: m\napi_key_env: {KEY_ENV}\n")
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert load_judge_config(p).api_key_env == KEY_ENV  # parsing alone does not need the key
    with pytest.raises(JudgeConfigError, match=KEY_ENV):
        load_judge_config(p, check_key=True)


# --- the judge pass and its cache -------------------------------------------------------------------

def _triplets(tmp_path: Path, n: int) -> tuple[list[Triplet], dict[str, Path]]:
    ts, edits = [], {}
    for i in range(n):
        p = tmp_path / f"e{i}.png"
        Image.fromarray(np.full((20, 20, 3), 10 * i, dtype=np.uint8)).save(p)
        ts.append(Triplet(id=f"t{i}", source=p, ground_truth=p, target="sad", row=i + 1,
                          instruction="Make them sad: lower the lip corners."))
        edits[f"t{i}"] = p
    return ts, edits


def test_cache_hit_makes_no_call_and_failures_are_retried_next_run(server: FakeJudge, tmp_path: Path) -> None:
    ts, edits = _triplets(tmp_path, 3)
    cfg = _config(server, max_retries=0, role="actions")
    db = tmp_path / "features.sqlite"
    server.script = [Step(status=500, body={"error": {"message": "boom"}})]  # the first image fails
    verdicts, stats = judge_triplets(cfg, ts, edits, "2.0", db)
    assert stats.calls == 3 and stats.cached == 0 and stats.tokens == 200
    assert sorted(v.status for v, _ in verdicts.values()) == ["judge_failed", "ok", "ok"]
    failed = [r for v, r in verdicts.values() if v.status == "judge_failed"]
    assert "HTTP 500" in failed[0]
    assert len(JudgeCache(db)) == 2  # the failure is not kept
    verdicts2, stats2 = judge_triplets(cfg, ts, edits, "2.0", db)
    assert stats2.cached == 2 and stats2.calls == 1 and len(server.requests) == 4
    assert all(v.status == "ok" for v, _ in verdicts2.values())
    verdicts3, stats3 = judge_triplets(cfg, ts, edits, "2.0", db)
    assert stats3.calls == 0 and stats3.cached == 3 and len(server.requests) == 4  # nothing paid twice
    ok = verdicts3["t0"][0]
    assert ok.shows == {"mouth_frown": True} and ok.role == "actions"
    # A new revision is another judge: it pays for every image again.
    _, stats4 = judge_triplets(_config(server, revision="r2", role="actions"), ts, edits, "2.0", db)
    assert stats4.calls == 3


def test_relative_emotion_member_judges_the_ground_truth(server: FakeJudge, tmp_path: Path) -> None:
    ts, edits = _triplets(tmp_path, 2)
    gt = tmp_path / "g.png"
    Image.fromarray(np.full((20, 20, 3), 250, dtype=np.uint8)).save(gt)
    ts = [t.model_copy(update={"ground_truth": gt}) for t in ts]
    verdicts, stats = judge_triplets(_config(server), ts, edits, "2.0", tmp_path / "f.sqlite")
    assert stats.images == 3  # two edits + one shared G
    v = verdicts["t1"][0]
    assert v.gt_probs is not None and v.edit_probs[EXPRESSIONS.index("sad")] == pytest.approx(0.3)
    _, stats_abs = judge_triplets(_config(server), ts, edits, "1.0", tmp_path / "f2.sqlite")
    assert stats_abs.images == 2  # an absolute A_emo needs no G


# --- how answers enter Alignment (metrics/core.py) --------------------------------------------------

def _ref(actions: list[str]) -> core.Reference:
    acts = named_actions(actions)
    return core.Reference("sad", acts, "manifest", [a.name for a in acts], Gain(1.0, 0.0, 1.0, False))


def test_actions_role_mixes_the_share_performed() -> None:
    spec = get_spec("1.0")
    ref = _ref(["mouth_frown", "-mouth_smile"])
    v = core.JudgeVerdict("ok", "actions", 0.5, shows={"mouth_frown": True, "mouth_smile": True})
    emo, act, n = core.judged_alignment(spec, ref, SimpleNamespace(), None, 0.4, 0.8, v)
    assert (emo, n) == (0.4, 2) and act == pytest.approx(0.5 * 0.8 + 0.5 * 0.5)  # the smile was to fall
    failed = core.JudgeVerdict("judge_failed", "actions", 0.5)
    assert core.judged_alignment(spec, ref, SimpleNamespace(), None, 0.4, 0.8, failed) == (0.4, None, 0)


def test_emotion_member_mixes_distributions() -> None:
    spec = get_spec("1.0")  # absolute A_emo = p_t(E)
    e = SimpleNamespace(emotion=np.eye(7)[EXPRESSIONS.index("happy")])
    judge_p = np.eye(7)[EXPRESSIONS.index("sad")]
    v = core.JudgeVerdict("ok", "emotion-member", 0.25, edit_probs=judge_p)
    emo, act, _ = core.judged_alignment(spec, _ref([]), e, None, 0.0, None, v)
    assert emo == pytest.approx(0.25) and act is None
    refused = core.JudgeVerdict("judge_refused", "emotion-member", 0.25)
    assert core.judged_alignment(spec, _ref([]), e, None, 0.0, None, refused)[0] is None


# --- agreement (fedbench meta --judge) --------------------------------------------------------------

def test_cohen_kappa_textbook_case() -> None:
    from fedbench.judge.agreement import cohen_kappa, kappa_with_interval

    # 50 items: both yes 20, both no 15, A yes / B no 5, A no / B yes 10: po 0.7, pe 0.5, kappa 0.4.
    a = np.array([1] * 20 + [0] * 15 + [1] * 5 + [0] * 10)
    b = np.array([1] * 20 + [0] * 15 + [0] * 5 + [1] * 10)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    k = kappa_with_interval(a, b, 200)
    assert k["kappa"] == 0.4 and k["n"] == 50 and k["ci95"][0] < 0.4 < k["ci95"][1]
    assert cohen_kappa(np.ones(5), np.ones(5)) is None  # chance agreement is total: undefined, not 1 or 0


def test_score_cli_rejects_a_bad_judge_config_before_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedbench.cli import app

    bad = tmp_path / "j.yaml"
    bad.write_text("base_url: http://127.0.0.1:9/v1\nmodel: m\nrole: vibes\n")
    m = tmp_path / "m.jsonl"
    m.write_text("")
    res = CliRunner().invoke(app, ["score", "-m", str(m), "-e", str(tmp_path), "-o", str(tmp_path / "o"),
                                   "--judge", str(bad)])
    assert res.exit_code == 2 and "j.yaml" in res.output and "role" in res.output
    assert not (tmp_path / "o").exists()
