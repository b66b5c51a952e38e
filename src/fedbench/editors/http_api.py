"""`openai-images`: an OpenAI-compatible image-edit endpoint, `POST {base_url}/images/edits`.

    adapter: openai-images
    params: {base_url: https://api.openai.com/v1, model: gpt-image-1, api_key_env: OPENAI_API_KEY}

One multipart request per sample (image as PNG, prompt, model, n=1, size, response_format and any
`extra` form fields); the answer's `data[0].b64_json` or `data[0].url` is the edited image, brought
back to the source's size. Retries: 429, 5xx, timeouts and connection errors are retried up to
`max_retries` times, waiting `Retry-After` when the server gives one, else an exponential backoff
with jitter drawn from the sample's seed (the same run waits the same way). A content-filter answer
is `refused`, its own status, never a low score. Every attempt's code and seconds go into the
result's details. The API key is read from the environment variable named by `api_key_env` and never
enters the parameters (nor the config hash, nor provenance); every reason and detail the adapter returns
is scrubbed of it and of any Authorization / api-key value a server echoes (`fedbench.editors.secrets`).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import io
import os
import random
import threading
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from fedbench.data.images import ImageReadError
from fedbench.editors.base import EditRequest, EditResult, Editor, decode_full
from fedbench.editors.config import EditorConfigError

INSTALL_HINT = "pip install 'fedbench[api]'"
_PROMPT_FIELDS = ("instruction", "target", "source_expression")
# Error codes/types that mean "the provider declined this content": OpenAI's gpt-image models
# (moderation_blocked), DALL-E (content_policy_violation), Azure OpenAI (content_filter).
# (Matched on the error's code or type; a type such as image_generation_user_error alone is not enough:
# it also covers plain bad requests.)
REFUSAL_CODES = frozenset({"content_policy_violation", "moderation_blocked", "content_filter",
                           "content_policy", "safety_violation"})
_RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx: what OpenAI's own SDK retries
_NO_RETRY_429_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})  # waiting will not help


class TokenBucket:
    """At most `rate_per_min` acquisitions a minute, `burst` at once; thread-safe.

    A caller reserves its token under the lock (the balance may go negative) and sleeps outside it,
    so concurrent callers queue fairly and are spaced 60 / rate_per_min seconds apart.
    """

    def __init__(self, rate_per_min: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate_per_min <= 0:
            raise ValueError(f"rate_per_min must be > 0, got {rate_per_min}")
        self.rate = rate_per_min / 60.0
        self.burst = max(1.0, float(burst))
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting for it when needed; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


def _retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(code, type, message) of an OpenAI-style error body, as far as it has them."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or ""), str(err.get("type") or ""), str(err.get("message") or "")
    if isinstance(err, str):
        return "", "", err
    return "", "", ""


def _refusal_text(body: Any) -> str | None:
    """A `refusal` field at the top or in data[0] (providers that answer 200 with a refusal)."""
    if not isinstance(body, dict):
        return None
    if body.get("refusal"):
        return str(body["refusal"])
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("refusal"):
        return str(data[0]["refusal"])
    return None


class OpenAIImagesEditor(Editor):
    """Params:

    base_url           https://api.openai.com/v1 (any OpenAI-compatible server)
    model              gpt-image-1
    api_key_env        name of the environment variable with the key (null: send no Authorization)
    prompt_template    "{instruction}"; may use {instruction} {target} {source_expression}
    size               form field `size` ("1024x1024", "auto", ...); null: not sent
    response_format    "b64_json" (null for gpt-image models, which always answer base64 and refuse the field)
    timeout_s          per network phase (connect, send, each read)
    max_retries        retries after the first attempt, for 429 / 5xx / timeouts / connection errors
    backoff_s          first backoff; doubles per retry, times a jitter in [0.5, 1) seeded by the sample seed
    max_backoff_s      cap on one wait, Retry-After included
    rate_limit_per_min requests a minute for this editor (all threads together); null: no limit
    max_upload_side    sources larger than this are downscaled before upload (null: never)
    extra              further form fields (quality, input_fidelity, background, ...)
    """

    description = "an OpenAI-compatible image-edit HTTP endpoint (POST {base_url}/images/edits)"
    thread_safe = True  # each call is independent (its own request, process or file)
    version = "1"

    def __init__(self, base_url: str = "https://api.openai.com/v1", model: str = "gpt-image-1",
                 api_key_env: str | None = "OPENAI_API_KEY", prompt_template: str = "{instruction}",
                 size: str | None = None, response_format: str | None = "b64_json", timeout_s: float = 120.0,
                 max_retries: int = 4, backoff_s: float = 2.0, max_backoff_s: float = 60.0,
                 rate_limit_per_min: float | None = None, max_upload_side: int | None = 2048,
                 extra: dict[str, Any] | None = None) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise EditorConfigError(f"openai-images editor needs httpx: {INSTALL_HINT}") from exc
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise EditorConfigError(f"openai-images: base_url {base_url!r} is not an http(s) URL")
        try:
            prompt_template.format(**{f: "" for f in _PROMPT_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            raise EditorConfigError(f"openai-images: prompt_template {prompt_template!r}: unknown placeholder {exc}; "
                                    f"known: {', '.join('{' + f + '}' for f in _PROMPT_FIELDS)}") from exc
        if extra is not None and not isinstance(extra, dict):
            raise EditorConfigError(f"openai-images: extra must be a mapping of form fields, "
                                    f"got {type(extra).__name__}")
        if int(max_retries) < 0 or float(timeout_s) <= 0 or float(backoff_s) < 0:
            raise EditorConfigError("openai-images: max_retries >= 0, timeout_s > 0 and backoff_s >= 0 please")
        if rate_limit_per_min is not None and float(rate_limit_per_min) <= 0:
            raise EditorConfigError(f"openai-images: rate_limit_per_min must be > 0, got {rate_limit_per_min}")
        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env, "").strip()
            if not api_key:
                raise EditorConfigError(f"openai-images: the API key variable ${api_key_env} is not set "
                                        f"(export {api_key_env}=...; or set api_key_env: null for a server "
                                        "without authentication)")
        super().__init__(base_url=base_url, model=model, api_key_env=api_key_env, prompt_template=prompt_template,
                         size=size, response_format=response_format, timeout_s=float(timeout_s),
                         max_retries=int(max_retries), backoff_s=float(backoff_s), max_backoff_s=float(max_backoff_s),
                         rate_limit_per_min=rate_limit_per_min, max_upload_side=max_upload_side,
                         extra=dict(extra or {}))
        self.url = base_url.rstrip("/") + "/images/edits"
        self.model, self.prompt_template = model, prompt_template
        self.size, self.response_format = size, response_format
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.max_upload_side = int(max_upload_side) if max_upload_side else None
        self.extra = dict(extra or {})
        self._api_key = api_key or None
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.bucket = TokenBucket(float(rate_limit_per_min)) if rate_limit_per_min else None
        self._sleep: Callable[[float], None] = time.sleep  # the one place the retry waits happen
        # One client per editor: pooled connections, thread-safe for concurrent requests. Redirects are
        # not followed, so the key is never sent to another host.
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s), follow_redirects=False)
        self._httpx = httpx

    # --- one request ------------------------------------------------------------------------------

    def prompt_for(self, request: EditRequest) -> str:
        return self.prompt_template.format(instruction=request.instruction, target=request.target,
                                           source_expression=request.source_expression or "")

    def _form(self, prompt: str) -> dict[str, str]:
        fields: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1}
        if self.size:
            fields["size"] = self.size
        if self.response_format:
            fields["response_format"] = self.response_format
        fields.update(self.extra)
        # Multipart fields are text: YAML's true/false become the JSON spellings servers expect.
        return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in fields.items() if v is not None}

    def _upload_png(self, rgb: np.ndarray) -> bytes:
        image = Image.fromarray(rgb)
        if self.max_upload_side and max(image.size) > self.max_upload_side:
            scale = self.max_upload_side / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()

    def _image_from_answer(self, body: Any) -> tuple[bytes | None, str]:
        """(image bytes, "") or (None, why not). A `url` is fetched without the API key."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return None, "the answer has no data[0]"
        item = data[0]
        if item.get("b64_json"):
            try:
                return base64.b64decode(item["b64_json"], validate=True), ""
            except (binascii.Error, ValueError) as exc:
                return None, f"data[0].b64_json is not base64: {exc}"
        if item.get("url"):
            url = str(item["url"])
            if url.startswith("data:"):  # some compatible servers inline the image as a data URL
                try:
                    return base64.b64decode(url.partition(",")[2], validate=True), ""
                except (binascii.Error, ValueError) as exc:
                    return None, f"data[0].url is a data URL that is not base64: {exc}"
            if urlsplit(url).scheme not in ("http", "https"):
                return None, f"data[0].url {url[:80]!r} is not an http(s) URL"
            got = self._client.get(url)  # transport errors propagate: the caller retries them
            if got.status_code != 200:
                return None, f"fetching data[0].url gave HTTP {got.status_code}"
            return got.content, ""
        return None, "data[0] has neither b64_json nor url"

    # --- the retry loop ---------------------------------------------------------------------------

    def secret_values(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key else ()

    def edit(self, request: EditRequest) -> EditResult:
        # Servers echo the key in error messages ("Incorrect API key provided: ..."): every text that
        # leaves the adapter is scrubbed of it and of any Authorization / api-key header value.
        return self._edit(request).scrubbed(self.secret_values())

    def _edit(self, request: EditRequest) -> EditResult:
        httpx = self._httpx
        try:
            source = request.source_rgb()
        except Exception as exc:  # the editor never raises for one sample
            return EditResult.failed(f"cannot read the source: {exc}")
        h, w = source.shape[:2]
        png = self._upload_png(source)
        form = self._form(self.prompt_for(request))
        rng = random.Random(int(request.seed))  # jitter drawn from the sample's seed: reproducible waits
        attempts: list[dict[str, Any]] = []
        started = time.monotonic()

        def details(**more: Any) -> dict[str, Any]:
            return {"attempts": attempts, "codes": [a["code"] for a in attempts],
                    "seconds": round(time.monotonic() - started, 3), **more}

        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            waited_for_rate = self.bucket.acquire() if self.bucket else 0.0
            t0 = time.monotonic()
            record: dict[str, Any] = {"attempt": attempt + 1}
            if waited_for_rate:
                record["rate_wait_s"] = round(waited_for_rate, 3)
            retry_after: float | None = None
            body: Any = None
            raw: bytes | None = None
            why = ""
            code: int | str
            try:
                resp = self._client.post(self.url, data=form, files={"image": ("image.png", png, "image/png")},
                                         headers=self._auth)
                code = resp.status_code
                try:
                    body = resp.json()
                except ValueError:
                    body = None
                if resp.status_code == 200 and body is not None and _refusal_text(body) is None:
                    # A `url` answer is fetched here, so a failed download is retried like the request.
                    raw, why = self._image_from_answer(body)
            except httpx.TimeoutException:
                code, last = "timeout", f"timed out (timeout_s={self.timeout_s:g})"
            except httpx.TransportError as exc:
                code, last = "connection_error", f"connection error: {type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:  # a garbled answer (bad encoding, ...): worth another try
                code, last = "request_error", f"request error: {type(exc).__name__}: {exc}"
            except httpx.InvalidURL as exc:  # a url answer that is no URL: asking again will not fix it
                record.update(code="invalid_url", seconds=round(time.monotonic() - t0, 3))
                attempts.append(record)
                return EditResult.failed(f"the answer's data[0].url is invalid: {exc}", **details())
            record.update(code=code, seconds=round(time.monotonic() - t0, 3))
            attempts.append(record)

            if isinstance(code, int):
                err_code, err_type, message = _error_fields(body)
                refusal = _refusal_text(body)
                if refusal is not None:
                    return EditResult.refused(refusal[:500], **details(http_status=code))
                if code == 200:
                    if body is None:
                        return EditResult.failed("HTTP 200 with a body that is not JSON", **details())
                    if raw is None:
                        return EditResult.failed(f"HTTP 200 but {why}", **details())
                    try:
                        image = decode_full(raw)
                    except ImageReadError as exc:
                        return EditResult.failed(f"the returned image is unreadable: {exc}", **details())
                    returned = [image.shape[1], image.shape[0]]
                    if image.shape[:2] != (h, w):
                        image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS))
                    return EditResult.ok(image, **details(returned_size=returned))
                if code in (400, 403, 422) and (err_code in REFUSAL_CODES or err_type in REFUSAL_CODES):
                    return EditResult.refused(message[:500] or err_code or err_type,
                                              **details(http_status=code, error_code=err_code or err_type))
                last = f"HTTP {code}" + (f" {err_code}" if err_code else "") + (f": {message[:300]}" if message else "")
                retryable = (code in _RETRY_STATUSES or code >= 500) and err_code not in _NO_RETRY_429_CODES
                if not retryable:
                    return EditResult.failed(last, **details())
                retry_after = _retry_after_seconds(resp.headers.get("retry-after"))

            if attempt == self.max_retries:
                break
            if retry_after is not None:
                wait = min(retry_after, self.max_backoff_s)
                record["retry_after_s"] = retry_after
            else:
                wait = min(self.backoff_s * (2 ** attempt) * (0.5 + 0.5 * rng.random()), self.max_backoff_s)
            record["wait_s"] = round(wait, 3)
            self._sleep(wait)
        return EditResult.failed(f"gave up after {len(attempts)} attempts; last: {last}", **details())

    # --- provenance and cleanup -------------------------------------------------------------------

    def libraries(self) -> dict[str, str]:
        # The model behind a remote API is not ours to version: the model name (a param) and the
        # client library are what we can record.
        try:
            return {"httpx": metadata.version("httpx")}
        except metadata.PackageNotFoundError:
            return {}

    def close(self) -> None:
        self._client.close()
