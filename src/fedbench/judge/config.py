"""Judge configuration: a YAML file validated with pydantic. The API key is never in it, only the
name of the environment variable that holds it (so the config hash and summary.json carry no secret)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Role = Literal["emotion-member", "actions"]


class JudgeConfigError(ValueError):
    """A judge config that cannot be used; the message names the file."""


class JudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    base_url: str
    model: str
    revision: str | None = None  # the served weights' revision: part of the hash, so a new one is judged afresh
    api_key_env: str | None = None  # null: a local server without authentication
    temperature: float = Field(0.0, ge=0.0, le=0.0)  # pinned: a grade must be reproducible
    seed: int = 0
    max_tokens: int = Field(400, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)  # retries after the first attempt (5xx, 429, timeouts, malformed replies)
    backoff_s: float = Field(2.0, ge=0)
    max_backoff_s: float = Field(60.0, ge=0)
    rate_limit_per_min: float | None = Field(None, gt=0)
    concurrency: int = Field(4, ge=1)  # threads calling the endpoint together (the rate limit is shared)
    max_upload_side: int | None = Field(1024, gt=0)
    role: Role = "emotion-member"
    # emotion-member: the judge's distribution weighs `weight` against the rule ensemble's (1 - weight).
    # actions: A_act = (1 - weight) * rules + weight * the judge's share of required actions performed.
    weight: float = Field(0.5, ge=0.0, le=1.0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")

    def config_hash(self) -> str:
        """What changes an answer: endpoint model, revision, sampling, upload size. Not the timeouts,
        retries, rate limit, concurrency, role or weight (they change how answers are used, not what they are)."""
        keyed = self.model_dump(include={"base_url", "model", "revision", "temperature", "seed", "max_tokens",
                                         "max_upload_side"})
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]

    def public(self) -> dict[str, object]:
        """For summary.json: everything but secrets (there are none in the config; the key stays in the env)."""
        return {**self.model_dump(mode="json"), "config_hash": self.config_hash()}


def load_judge_config(path: str | Path, check_key: bool = False) -> JudgeConfig:
    """The config at `path`; with `check_key`, also that its API key variable is set (commands check
    this before any work, so a run does not stop after generating or perceiving everything)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JudgeConfigError(f"judge config {path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise JudgeConfigError(f"judge config {path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise JudgeConfigError(f"judge config {path}: expected a mapping of fields")
    data.setdefault("name", path.stem)
    try:
        config = JudgeConfig.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise JudgeConfigError(f"judge config {path}: {errors}") from None
    if check_key:
        from fedbench.judge.client import api_key

        api_key(config)
    return config
