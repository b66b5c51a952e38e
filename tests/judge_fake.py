"""A scripted OpenAI-compatible chat-completions server on loopback, for the judge's tests
(served by tests/loopback.py, as the images API of tests/unit/test_http_editor.py is): POST /v1/chat/completions follows `script`, then
answers with `default` (a valid reply naming every action the prompt asks about)."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from loopback import LoopbackServer, QuietHandler

DEFAULT_EXPRESSION = {"neutral": 0.1, "happy": 0.1, "sad": 0.3, "surprise": 0.1, "fear": 0.1, "disgust": 0.1,
                      "angry": 0.2}


@dataclass
class Step:
    status: int = 200
    content: str | None = None  # the message content; None: a valid reply for the prompt
    body: Any = None  # a whole JSON body instead (errors, refusals)
    headers: dict[str, str] = field(default_factory=dict)
    sleep_s: float = 0.0


def asked(prompt: str) -> list[str]:
    """The action keys the prompt's answer template lists."""
    template = prompt.rsplit('"actions":', 1)[-1]
    return re.findall(r'"(\w+)": true', template)


def valid_reply(prompt: str, expression: dict[str, float] | None = None, shows: bool = True) -> str:
    return json.dumps({"expression": expression or DEFAULT_EXPRESSION, "actions": {a: shows for a in asked(prompt)}})


class FakeJudge:
    def __init__(self) -> None:
        self.script: list[Step] = []
        self.default = Step()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        api = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with api._lock:
                    api.requests.append(payload)
                    api.headers.append(dict(self.headers))
                    api.times.append(time.monotonic())
                    step = api.script.pop(0) if api.script else api.default
                if step.sleep_s:
                    time.sleep(step.sleep_s)
                prompt = payload["messages"][0]["content"][0]["text"]
                body = step.body if step.body is not None else {
                    "id": "x", "object": "chat.completion",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": step.content if step.content is not None else valid_reply(prompt)}}],
                    "usage": {"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100}}
                self.send(step.status, json.dumps(body).encode(), "application/json", step.headers)

        self.loopback = LoopbackServer(Handler)
        self.base_url = self.loopback.base_url

    def close(self) -> None:
        self.loopback.close()
