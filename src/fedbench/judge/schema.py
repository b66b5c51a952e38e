"""The judge's prompt (a versioned file in the package) and its structured reply, validated with pydantic.

The judge sees one image (the edited face E, or G when the role needs G's answer) and answers, for
each facial action it is asked about, whether the face *shows* it. An action that must rise
(`mouth_smile`) is performed when the face shows it; one that must fall (`-mouth_smile`) when it does not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from fedbench.labels import EXPRESSIONS, normalise_expression

PROMPT_FILE = "fed_v1.txt"
PROMPT_VERSION = "fed_v1"  # bump with a new file when the wording changes: cached answers are then not reused

# What each lexicon action looks like, in words a vision-language model reads (metrics/lexicon.py names).
ACTION_WORDS: dict[str, str] = {
    "brow_inner_up": "inner ends of the eyebrows raised", "brow_outer_up": "outer eyebrows raised",
    "brow_down": "eyebrows lowered / drawn together", "eye_wide": "eyes opened wide",
    "eye_squint": "eyes narrowed / squinting", "cheek_squint": "cheeks raised",
    "nose_sneer": "nose wrinkled", "upper_lip_up": "upper lip raised", "lower_lip_down": "lower lip pulled down",
    "mouth_smile": "lip corners pulled up (smile)", "mouth_frown": "lip corners pulled down (frown)",
    "mouth_stretch": "lips stretched sideways", "mouth_press": "lips pressed together",
    "mouth_pucker": "lips puckered", "jaw_open": "jaw dropped / mouth open",
}
_TOL = 0.02  # a distribution may sum to 1 +- this before it is renormalised; further off is malformed


def prompt_template() -> str:
    return resources.files("fedbench.judge").joinpath("prompts", PROMPT_FILE).read_text(encoding="utf-8")


def askable(action_names: list[str]) -> list[str]:
    """The actions a judge can be asked about: lexicon actions. Those the ground truth alone defines
    (`bs12`, one blendshape) have no words; A_act stays rule-based for them."""
    return sorted({n for n in action_names if n in ACTION_WORDS})


def render_prompt(actions: list[str]) -> str:
    listed = "; ".join(f"{a} ({ACTION_WORDS[a]})" for a in actions) or "(none)"
    keys = ", ".join(f'"{a}": true' for a in actions)
    return prompt_template().format(actions=listed, action_keys=keys)


class JudgeReply(BaseModel):
    """What the judge must answer. The expression distribution covers the seven classes (aliases
    accepted) and sums to 1; `actions` has a boolean for every action asked, and nothing else."""

    model_config = ConfigDict(extra="ignore")

    expression: dict[str, float]
    actions: dict[str, bool] = {}

    @field_validator("expression")
    @classmethod
    def _seven(cls, v: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, p in v.items():
            canon = normalise_expression(label)
            if canon is None:
                raise ValueError(f"unknown expression {label!r}")
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"probability of {label!r} is {p}, outside [0, 1]")
            out[canon] = out.get(canon, 0.0) + float(p)
        missing = [e for e in EXPRESSIONS if e not in out]
        if missing:
            raise ValueError(f"no probability for {', '.join(missing)}")
        total = sum(out.values())
        if abs(total - 1.0) > _TOL:
            raise ValueError(f"probabilities sum to {total:.3f}, not 1")
        return {e: out[e] / total for e in EXPRESSIONS}


def _json_object(text: str) -> Any:
    """The reply's JSON object: the whole text, or the first {...} block (models wrap it in ``` fences)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    m = re.search(r"\{.*\}", text, re.S)
    if m is None:
        raise ValueError("the reply has no JSON object")
    return json.loads(m.group(0))


def parse_reply(text: str, actions: list[str]) -> JudgeReply:
    """Validate a reply against the actions asked; raises ValueError saying what is wrong."""
    try:
        data = _json_object(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    try:
        reply = JudgeReply.model_validate(data)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    missing = [a for a in actions if a not in reply.actions]
    if missing:
        raise ValueError(f"no answer for action(s) {', '.join(missing)}")
    return JudgeReply(expression=reply.expression, actions={a: reply.actions[a] for a in actions})


@dataclass
class JudgeAnswer:
    """One image's verdict: status "ok" with a reply, or "judge_failed" / "judge_refused" with the reason."""

    status: str
    reason: str | None = None
    reply: JudgeReply | None = None
    calls: int = 0  # HTTP requests made (0: answered from the cache)
    tokens: int = 0
    seconds: float = 0.0
    cached: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.reply is not None

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "reason": self.reason,
                           "reply": None if self.reply is None else self.reply.model_dump()})

    @classmethod
    def from_json(cls, text: str) -> "JudgeAnswer":
        d = json.loads(text)
        reply = None if d["reply"] is None else JudgeReply.model_validate(d["reply"])
        return cls(d["status"], d["reason"], reply, cached=True)
