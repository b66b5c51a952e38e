"""Scrub secrets out of every text an editor hands back (reasons, refusal messages, details).

Servers echo keys ("Incorrect API key provided: Bearer sk-...") and programs print their
environment; such text goes to generations.jsonl, samples.jsonl and the HTML report, so it is
cleaned before it leaves the adapter: the known secret values themselves, and whatever follows an
`Authorization` / `api-key` / `Bearer` marker, whoever the key belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_LEN = 4  # shorter values (a "1" in env) would blank out ordinary text
# `Authorization: Bearer xyz`, `api-key=xyz`, `"x-api-key": "xyz"`, `Bearer xyz`: keep the name, drop the value.
_HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization|\b(?:x-)?api[-_]?key|\bx-goog-api-key)"
                     r"""(["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^\s"',;}]+""")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
# Well-known key shapes (OpenAI sk-..., Anthropic sk-ant-..., Google AIza..., HF hf_...), echoed partially or whole.
_KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_*.-]{8,}|AIza[0-9A-Za-z_-]{20,}|hf_[A-Za-z0-9]{20,})")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secret values, header values and key-shaped tokens."""
    for value in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_SHAPES.sub(REDACTED, text)


def scrub_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`scrub` applied to every string inside dicts, lists and tuples (keys included)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub_value(k, secrets): scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_value(v, secrets) for v in value)
    return value
