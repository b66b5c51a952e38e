"""A scripted OpenAI-compatible chat-completions server on loopback, for the judge's tests
(the pattern of tests/unit/test_http_editor.py): POST /v1/chat/completions follows `script`, then
answers with `default` (a valid reply naming every action the prompt asks about)."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

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
                data = json.dumps(body).encode()
                try:
                    self.send_response(step.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in step.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
