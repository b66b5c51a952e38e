"""The `openai-images` adapter against a real HTTP server on loopback that plays the endpoint:
success, 429 + Retry-After, 5xx until give-up, timeouts, refusals, bad keys, and the rate limit."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loopback import LoopbackServer, QuietHandler
from PIL import Image

pytest.importorskip("httpx", reason="the api extra is not installed: pip install 'fedbench[api]'")

from fedbench.editors import build_editor, load_editor_config  # noqa: E402
from fedbench.editors.base import EditRequest, EditStatus  # noqa: E402
from fedbench.editors.config import EditorConfigError  # noqa: E402
from fedbench.editors.http_api import OpenAIImagesEditor, TokenBucket, _retry_after_seconds  # noqa: E402

KEY_ENV = "FEDBENCH_TEST_IMAGES_KEY"


def _png(w: int, h: int, value: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Step:
    """What the fake endpoint does for one POST."""

    status: int = 200
    body: Any = None  # dict -> JSON; None -> a b64 image answer
    headers: dict[str, str] = field(default_factory=dict)
    sleep_s: float = 0.0


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]
    fields: dict[str, str]
    image: bytes | None


class FakeImagesAPI:
    """ThreadingHTTPServer on 127.0.0.1: POST /v1/images/edits follows `script` (then repeats `default`);
    GET /files/out.png serves an image for url answers. Every request is logged."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.default = Step()
        self.seen: list[Seen] = []
        self.answer_png = _png(64, 48, 120)  # another size than the sources: the adapter resizes back
        self._lock = threading.Lock()
        api = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with api._lock:
                    api.seen.append(Seen(time.monotonic(), self.path, dict(self.headers), {}, None))
                self.send(200, api.answer_png, "image/png")

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                msg = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw)
                fields, image = {}, None
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name == "image":
                        image = part.get_payload(decode=True)
                    else:
                        fields[name] = part.get_content().strip()
                with api._lock:
                    api.seen.append(Seen(time.monotonic(), self.path, dict(self.headers), fields, image))
                    step = api.script.pop(0) if api.script else api.default
                if step.sleep_s:
                    time.sleep(step.sleep_s)
                body = step.body if step.body is not None else {
                    "created": 0, "data": [{"b64_json": base64.b64encode(api.answer_png).decode()}]}
                self.send(step.status, json.dumps(body).encode(), "application/json", step.headers)

        self.loopback = LoopbackServer(Handler)
        self.base_url = self.loopback.base_url

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/images/edits")]

    def close(self) -> None:
        self.loopback.close()


@pytest.fixture
def api() -> Iterator[FakeImagesAPI]:
    server = FakeImagesAPI()
    yield server
    server.close()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "test-key-123")
    return "test-key-123"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def _request(source: Path, seed: int = 1) -> EditRequest:
    return EditRequest(sample_id="s1", source=source, instruction="make the person smile", target="happy",
                       seed=seed, source_expression="neutral")


def _editor(api: FakeImagesAPI, **params: Any) -> OpenAIImagesEditor:
    base = {"base_url": api.base_url, "model": "test-image-model", "api_key_env": KEY_ENV, "size": "1024x1024",
            "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.05, "max_backoff_s": 2.0}
    return OpenAIImagesEditor(**{**base, **params})


def test_success_sends_the_form_and_returns_the_image_at_source_size(api: FakeImagesAPI, key: str,
                                                                    source: Path) -> None:
    with _editor(api, extra={"quality": "high", "input_fidelity": "high", "stream": False},
                 prompt_template="{instruction} ({source_expression} -> {target})") as editor:
        r = editor.edit(_request(source))
    assert r.status is EditStatus.OK, r.reason
    assert r.image.shape == (40, 56, 3)
    assert r.image.mean() == pytest.approx(120, abs=1)  # the server's image, resized back
    assert r.details["codes"] == [200] and r.details["returned_size"] == [64, 48]
    (post,) = api.posts()
    assert post.headers["Authorization"] == f"Bearer {key}"
    assert post.fields == {"model": "test-image-model", "prompt": "make the person smile (neutral -> happy)",
                           "n": "1", "size": "1024x1024", "response_format": "b64_json", "quality": "high",
                           "input_fidelity": "high", "stream": "false"}
    sent = np.asarray(Image.open(io.BytesIO(post.image)))
    assert sent.shape == (40, 56, 3)  # the source itself, as PNG
    assert np.array_equal(sent, np.asarray(Image.open(source)))


def test_url_answer_is_fetched_without_the_key(api: FakeImagesAPI, key: str, source: Path) -> None:
    api.script = [Step(body={"data": [{"url": api.base_url.replace("/v1", "/files/out.png")}]})]
    with _editor(api, response_format="url") as editor:
        r = editor.edit(_request(source))
    assert r.status is EditStatus.OK, r.reason
    get = [s for s in api.seen if s.path == "/files/out.png"]
    assert len(get) == 1 and "Authorization" not in get[0].headers


def test_data_url_answer_is_decoded(api: FakeImagesAPI, key: str, source: Path) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(_png(50, 40, 30)).decode()
    api.script = [Step(body={"data": [{"url": data_url}]}),
                  Step(body={"data": [{"url": "file:///etc/passwd"}]})]
    with _editor(api) as editor:
        ok, bad = editor.edit(_request(source)), editor.edit(_request(source))
    assert ok.status is EditStatus.OK and ok.details["returned_size"] == [50, 40]
    assert ok.image.mean() == pytest.approx(30, abs=1)
    assert bad.status is EditStatus.FAILED and "not an http(s) URL" in bad.reason
    assert [s.path for s in api.seen] == ["/v1/images/edits"] * 2  # nothing else was fetched


def test_429_then_success_waits_retry_after(api: FakeImagesAPI, key: str, source: Path) -> None:
    api.script = [Step(429, {"error": {"code": "rate_limit_exceeded", "message": "slow down"}},
                       {"Retry-After": "0.4"})]
    # A backoff of 5 s would show if Retry-After were ignored.
    with _editor(api, backoff_s=5.0, max_backoff_s=5.0) as editor:
        r = editor.edit(_request(source))
    assert r.status is EditStatus.OK, r.reason
    assert r.details["codes"] == [429, 200]
    first = r.details["attempts"][0]
    assert first["retry_after_s"] == pytest.approx(0.4) and first["wait_s"] == pytest.approx(0.4)
    t = [p.at for p in api.posts()]
    assert 0.35 <= t[1] - t[0] < 2.0


def test_5xx_until_give_up_with_reproducible_backoff(api: FakeImagesAPI, key: str, source: Path) -> None:
    api.default = Step(503, {"error": {"message": "overloaded"}})

    def run(seed: int) -> Any:
        with _editor(api, max_retries=2, backoff_s=0.05) as editor:
            return editor.edit(_request(source, seed=seed))

    a, b, c = run(7), run(7), run(8)
    assert a.status is EditStatus.FAILED and a.image is None
    assert "gave up after 3 attempts" in a.reason and "HTTP 503" in a.reason and "overloaded" in a.reason
    assert a.details["codes"] == [503, 503, 503]
    waits = [x["wait_s"] for x in a.details["attempts"][:-1]]
    assert 0.025 <= waits[0] < 0.05 and 0.05 <= waits[1] < 0.1  # exponential, jitter in [0.5, 1)
    assert waits == [x["wait_s"] for x in b.details["attempts"][:-1]]  # same seed, same waits
    assert waits != [x["wait_s"] for x in c.details["attempts"][:-1]]
    assert len(api.posts()) == 9


def test_timeout_is_retried_then_given_up(api: FakeImagesAPI, key: str, source: Path) -> None:
    api.default = Step(sleep_s=1.5)
    t0 = time.monotonic()
    with _editor(api, timeout_s=0.3, max_retries=1) as editor:
        r = editor.edit(_request(source))
    assert r.status is EditStatus.FAILED
    assert r.details["codes"] == ["timeout", "timeout"] and "timed out" in r.reason
    assert time.monotonic() - t0 < 1.5  # the client stopped waiting; it did not sit out the server


def test_timeout_then_success(api: FakeImagesAPI, key: str, source: Path) -> None:
    api.script = [Step(sleep_s=1.0)]
    with _editor(api, timeout_s=0.3) as editor:
        r = editor.edit(_request(source))
    assert r.status is EditStatus.OK and r.details["codes"] == ["timeout", 200]


def test_connection_errors_are_retried(key: str, source: Path) -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    editor = OpenAIImagesEditor(base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV, max_retries=2,
                                backoff_s=0.01)
    r = editor.edit(_request(source))
    editor.close()
    assert r.status is EditStatus.FAILED and r.details["codes"] == ["connection_error"] * 3
    assert "connection error" in r.reason


@pytest.mark.parametrize("step", [
    Step(400, {"error": {"code": "moderation_blocked", "type": "image_generation_user_error",
                         "message": "Your request was rejected by the safety system."}}),
    Step(400, {"error": {"code": "content_policy_violation", "type": "invalid_request_error",
                         "message": "This request has been blocked by our content filters."}}),
    Step(200, {"refusal": "I can't edit this image."}),
])
def test_refusals_are_refused_not_retried(api: FakeImagesAPI, key: str, source: Path, step: Step) -> None:
    api.script = [step]
    with _editor(api) as editor:
        r = editor.edit(_request(source))
    assert r.status is EditStatus.REFUSED and r.image is None
    assert r.details["codes"] == [step.status] and len(api.posts()) == 1
    assert r.reason


@pytest.mark.parametrize("step, expect", [
    (Step(401, {"error": {"code": "invalid_api_key", "message": "Incorrect API key provided"}}), "HTTP 401"),
    (Step(400, {"error": {"code": "invalid_value", "type": "image_generation_user_error",
                          "message": "Invalid size"}}), "Invalid size"),
    (Step(429, {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}),
     "insufficient_quota"),
    (Step(200, {"data": [{"b64_json": base64.b64encode(b"not an image").decode()}]}), "unreadable"),
    (Step(200, {"data": []}), "no data[0]"),
])
def test_hard_errors_fail_at_once(api: FakeImagesAPI, key: str, source: Path, step: Step, expect: str) -> None:
    api.script = [step]
    with _editor(api) as editor:
        r = editor.edit(_request(source))
    assert r.status is EditStatus.FAILED and expect in r.reason
    assert len(api.posts()) == 1


def test_rate_limit_spaces_requests_across_threads(api: FakeImagesAPI, key: str, source: Path) -> None:
    with _editor(api, rate_limit_per_min=300) as editor:  # one request every 0.2 s
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(editor.edit(_request(source))))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert len(results) == 4 and all(r.status is EditStatus.OK for r in results)
    times = sorted(p.at for p in api.posts())
    gaps = np.diff(times)
    assert gaps.min() >= 0.17, gaps  # spaced by the bucket (a little slack for the clock and the thread start)


def test_no_rate_limit_does_not_space(api: FakeImagesAPI, key: str, source: Path) -> None:
    with _editor(api) as editor:
        for _ in range(3):
            assert editor.edit(_request(source)).status is EditStatus.OK
    times = [p.at for p in api.posts()]
    assert times[-1] - times[0] < 0.4


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(EditorConfigError, match=KEY_ENV):
        OpenAIImagesEditor(api_key_env=KEY_ENV)
    monkeypatch.setenv(KEY_ENV, "   ")
    with pytest.raises(EditorConfigError, match=KEY_ENV):
        OpenAIImagesEditor(api_key_env=KEY_ENV)


def test_no_key_mode_sends_no_authorization(api: FakeImagesAPI, source: Path) -> None:
    with _editor(api, api_key_env=None) as editor:
        assert editor.edit(_request(source)).status is EditStatus.OK
    assert "Authorization" not in api.posts()[0].headers


def test_key_never_enters_params(api: FakeImagesAPI, key: str) -> None:
    editor = build_editor(load_editor_config("openai-images", {"base_url": api.base_url, "api_key_env": KEY_ENV}))
    assert isinstance(editor, OpenAIImagesEditor)
    assert key not in json.dumps(editor.params, default=str)
    assert "httpx" in editor.libraries()
    editor.close()


@pytest.mark.parametrize("params, message", [
    ({"base_url": "ftp://example.invalid"}, "base_url"),
    ({"prompt_template": "{instrution}"}, "placeholder"),
    ({"rate_limit_per_min": 0}, "rate_limit_per_min"),
    ({"extra": ["quality"]}, "extra"),
])
def test_bad_params_are_config_errors(key: str, params: dict, message: str) -> None:
    with pytest.raises(EditorConfigError, match=message):
        OpenAIImagesEditor(api_key_env=KEY_ENV, **params)


def test_token_bucket_on_a_fake_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)

    bucket = TokenBucket(rate_per_min=60, clock=lambda: now[0], sleep=sleep)  # 1 a second
    assert bucket.acquire() == 0.0  # the first one is free
    assert bucket.acquire() == pytest.approx(1.0)  # reserved: the next slot is a second away
    assert bucket.acquire() == pytest.approx(2.0)  # queued behind it
    now[0] += 10.0  # a long idle time refills only up to the burst (1)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(1.0)
    assert slept == pytest.approx([1.0, 2.0, 1.0])


def test_retry_after_parsing() -> None:
    assert _retry_after_seconds("2") == 2.0
    assert _retry_after_seconds("0.5") == 0.5
    assert _retry_after_seconds(None) is None and _retry_after_seconds("soon") is None
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


def test_eval_generation_sends_requests_at_once_with_jobs(api: FakeImagesAPI, key: str, tmp_path: Path) -> None:
    """`fedbench eval --jobs 4`: four requests in flight; the log still ends one row per sample, in order."""
    from fedbench.data.manifest import read_manifest
    from fedbench.editors.config import EditorConfig, resolved_hash
    from fedbench.evaluate import GENERATED, generate

    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"s{i}.png")
        rows.append({"id": f"s{i}", "source": f"s{i}.png", "instruction": "smile", "target": "happy",
                     "ground_truth": f"s{i}.png"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = read_manifest(tmp_path / "m.jsonl")
    api.default = Step(sleep_s=0.5)
    config = EditorConfig(name="api", adapter="openai-images")
    with _editor(api) as editor:
        out = tmp_path / "run"
        (out / GENERATED).mkdir(parents=True)
        log, counts = generate(editor, config, resolved_hash(config, editor), manifest, out, progress=False, jobs=4)
    assert counts["generated"] == 8 and [r["id"] for r in log] == [f"s{i}" for i in range(8)]
    arrivals = sorted(s.at for s in api.posts())
    assert arrivals[3] - arrivals[0] < 0.5  # the first four arrived while the first was still being answered


@pytest.mark.parametrize("step", [
    Step(401, {"error": {"code": "invalid_api_key",
                         "message": "Incorrect API key provided: Bearer test-key-123. Find your key at ..."}}),
    Step(500, {"error": {"message": "upstream said: headers={'Authorization': 'Bearer test-key-123', "
                                    "'api-key': 'test-key-123'}"}}),
    Step(400, {"error": {"code": "content_policy_violation", "message": "blocked for key test-key-123"}}),
    Step(200, {"refusal": "refused; your key was test-key-123"}),
])
def test_an_echoed_key_never_leaves_the_adapter(api: FakeImagesAPI, key: str, source: Path, step: Step) -> None:
    api.script = [step]
    with _editor(api, max_retries=0) as editor:
        r = editor.edit(_request(source))
    assert r.status is not EditStatus.OK
    text = json.dumps({"reason": r.reason, "details": r.details})
    assert key not in text and "[REDACTED]" in text


def test_an_echoed_key_stays_out_of_the_generation_log(api: FakeImagesAPI, key: str, tmp_path: Path) -> None:
    """End to end through `generate`: generations.jsonl never holds the key, whatever the server echoes."""
    from fedbench.data.manifest import read_manifest
    from fedbench.editors.config import EditorConfig, resolved_hash
    from fedbench.evaluate import GENERATED, generate

    Image.fromarray(np.full((40, 40, 3), 9, np.uint8)).save(tmp_path / "s.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "s", "source": "s.png", "instruction": "smile",
                                                  "target": "happy", "ground_truth": "s.png"}) + "\n")
    api.default = Step(401, {"error": {"message": f"Incorrect API key provided: {key}"}})
    config = EditorConfig(name="api", adapter="openai-images")
    out = tmp_path / "run"
    (out / GENERATED).mkdir(parents=True)
    with _editor(api) as editor:
        rows, _ = generate(editor, config, resolved_hash(config, editor), read_manifest(tmp_path / "m.jsonl"), out,
                           progress=False)
    assert rows[0]["status"] == "generation_failed"
    assert key not in (out / "generations.jsonl").read_text()
