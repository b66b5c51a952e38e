"""OpenAI-compatible chat completions with an image: one call per image, retried, never a made-up value.

Retries (up to `max_retries` after the first attempt): 429 (waiting Retry-After when given), 408/409,
5xx, timeouts, connection errors, and replies that do not validate (malformed JSON, a missing class or
action). After the last attempt the answer is `judge_failed` with the reason. A content-filter answer
(an OpenAI-style error code, `finish_reason: content_filter`, or a `refusal` message) is
`judge_refused`. The rate limiter, Retry-After parser and refusal codes are the HTTP editor's
(editors/http_api.py). The API key is read from the named environment variable and scrubbed from
every reason text.
"""

from __future__ import annotations

import base64
import io
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from fedbench.editors.secrets import scrub
from fedbench.editors.http_api import (REFUSAL_CODES, TokenBucket, _error_fields, _retry_after_seconds)
from fedbench.judge.config import JudgeConfig, JudgeConfigError
from fedbench.judge.schema import JudgeAnswer, parse_reply, render_prompt

_RETRY_STATUSES = frozenset({408, 409, 429})


def api_key(config: JudgeConfig) -> str | None:
    """The key from the config's environment variable (None without one); raises JudgeConfigError when
    the variable is named but empty. Commands call this up front, before any other work."""
    if not config.api_key_env:
        return None
    key = os.environ.get(config.api_key_env, "").strip()
    if not key:
        raise JudgeConfigError(f"judge {config.name}: the API key variable ${config.api_key_env} is not set "
                               f"(export {config.api_key_env}=...; or api_key_env: null for a server "
                               "without authentication)")
    return key


def image_data_url(path: Path, max_side: int | None) -> str:
    image = Image.open(path)
    image.load()
    image = image.convert("RGB")
    if max_side and max(image.size) > max_side:
        s = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class JudgeClient:
    def __init__(self, config: JudgeConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise JudgeConfigError("the judge needs httpx: pip install 'fedbench[api]'") from exc
        self.config = config
        self._key = api_key(config)
        self._auth = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self.url = config.base_url + "/chat/completions"
        self.bucket = TokenBucket(config.rate_limit_per_min) if config.rate_limit_per_min else None
        self._sleep = sleep
        # Redirects are not followed: the key never goes to another host.
        self._client = httpx.Client(timeout=httpx.Timeout(config.timeout_s), follow_redirects=False)
        self._httpx = httpx

    def _payload(self, image_url: str, prompt: str) -> dict[str, Any]:
        c = self.config
        return {
            "model": c.model, "temperature": c.temperature, "seed": c.seed, "max_tokens": c.max_tokens,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": image_url}},
            ]}],
        }

    def judge(self, image: Path, actions: list[str], seed_key: str = "") -> JudgeAnswer:
        """One image. `seed_key` seeds the backoff jitter, so a rerun waits the same way."""
        httpx, c = self._httpx, self.config
        try:
            url = image_data_url(Path(image), c.max_upload_side)
        except (OSError, ValueError) as exc:
            return JudgeAnswer("judge_failed", f"cannot read {Path(image).name}: {exc}")
        payload = self._payload(url, render_prompt(actions))
        rng = random.Random(f"{c.seed}:{seed_key}")
        attempts: list[dict[str, Any]] = []
        tokens = 0
        started = time.monotonic()

        def done(status: str, reason: str | None = None, reply: Any = None) -> JudgeAnswer:
            return JudgeAnswer(status, None if reason is None else scrub(reason, [self._key] if self._key else [])[:500], reply,
                               calls=len(attempts), tokens=tokens, seconds=round(time.monotonic() - started, 3),
                               attempts=attempts)

        last = "no attempt"
        for attempt in range(c.max_retries + 1):
            if self.bucket:
                self.bucket.acquire()
            t0 = time.monotonic()
            retry_after: float | None = None
            code: int | str
            try:
                resp = self._client.post(self.url, json=payload, headers=self._auth)
                code = resp.status_code
                try:
                    body = resp.json()
                except ValueError:
                    body = None
            except httpx.TimeoutException:
                code, body, last = "timeout", None, f"timed out (timeout_s={c.timeout_s:g})"
            except httpx.TransportError as exc:
                code, body, last = "connection_error", None, f"connection error: {type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:  # a garbled answer (bad encoding, ...): worth another try
                code, body, last = "request_error", None, f"request error: {type(exc).__name__}: {exc}"
            attempts.append({"attempt": attempt + 1, "code": code, "seconds": round(time.monotonic() - t0, 3)})
            if isinstance(code, int):
                err_code, err_type, message = _error_fields(body)
                if code in (400, 403, 422) and (err_code in REFUSAL_CODES or err_type in REFUSAL_CODES):
                    return done("judge_refused", message or err_code or err_type)
                if code == 200:
                    usage = body.get("usage") if isinstance(body, dict) else None
                    if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
                        tokens += usage["total_tokens"]
                    choices = body.get("choices") if isinstance(body, dict) else None
                    choice = choices[0] if isinstance(choices, list) and choices else None
                    msg = choice.get("message") if isinstance(choice, dict) else None
                    if isinstance(choice, dict) and choice.get("finish_reason") == "content_filter":
                        return done("judge_refused", "finish_reason: content_filter")
                    if isinstance(msg, dict) and msg.get("refusal"):
                        return done("judge_refused", str(msg["refusal"]))
                    text = msg.get("content") if isinstance(msg, dict) else None
                    if not isinstance(text, str):
                        last = "HTTP 200 without choices[0].message.content"
                    else:
                        try:
                            return done("ok", reply=parse_reply(text, actions))
                        except ValueError as exc:
                            last = f"malformed reply: {exc}"
                else:
                    last = f"HTTP {code}" + (f" {err_code}" if err_code else "") + (f": {message[:300]}" if message else "")
                    if not (code in _RETRY_STATUSES or code >= 500):
                        return done("judge_failed", last)
                    retry_after = _retry_after_seconds(resp.headers.get("retry-after"))
            if attempt == c.max_retries:
                break
            if retry_after is not None:
                wait = min(retry_after, c.max_backoff_s)
            else:
                wait = min(c.backoff_s * (2 ** attempt) * (0.5 + 0.5 * rng.random()), c.max_backoff_s)
            attempts[-1]["wait_s"] = round(wait, 3)
            self._sleep(wait)
        return done("judge_failed", f"gave up after {len(attempts)} attempts; last: {last}")

    def close(self) -> None:
        self._client.close()
