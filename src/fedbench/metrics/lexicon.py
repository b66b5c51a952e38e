"""Facial actions named in an instruction ("raise the eyebrows", "drop the jaw") -> blendshapes + sign.

The instruction is split into clauses; in each, a body part and a verb must both appear. Bilateral
blendshapes are averaged. A clause that names a part without a verb we know adds nothing: when no
clause yields an action, Alignment falls back to the actions the ground truth shows (fedscore.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fedbench.faces.blendshapes import bilateral, indices


@dataclass(frozen=True)
class Action:
    name: str
    blendshapes: tuple[int, ...]
    sign: int  # +1: the blendshapes must rise; -1: fall


_GROUPS: dict[str, tuple[int, ...]] = {
    "brow_inner_up": indices("browInnerUp"),
    "brow_outer_up": bilateral("browOuterUp"),
    "brow_down": bilateral("browDown"),
    "eye_wide": bilateral("eyeWide"),
    "eye_squint": bilateral("eyeSquint"),
    "cheek_squint": bilateral("cheekSquint"),
    "nose_sneer": bilateral("noseSneer"),
    "upper_lip_up": bilateral("mouthUpperUp"),
    "lower_lip_down": bilateral("mouthLowerDown"),
    "mouth_smile": bilateral("mouthSmile"),
    "mouth_frown": bilateral("mouthFrown"),
    "mouth_stretch": bilateral("mouthStretch"),
    "mouth_press": bilateral("mouthPress"),
    "mouth_pucker": indices("mouthPucker"),
    "jaw_open": indices("jawOpen"),
}

_UP = r"\b(rais|lift|arch|pull\w* up|turn\w* up|curl\w* up|hitch)"
_DOWN = r"\b(lower|drop|pull\w* down|turn\w* down|droop|sag|depress|fall)"
_BROWS = r"(eye)?brows?"
_EYES = r"\beyes?\b|\beyelids?\b"
_CORNERS = r"(lip|mouth) corners|corners of (the |her |his |their )?(mouth|lips)"

# (clause pattern(s) that must all match, action, sign). Order matters only for readability.
_RULES: list[tuple[tuple[str, ...], str, int]] = [
    ((r"inner", _BROWS, _UP), "brow_inner_up", +1),
    ((_BROWS, _UP, r"^(?!.*inner)"), "brow_inner_up", +1),
    ((_BROWS, _UP, r"^(?!.*inner)"), "brow_outer_up", +1),
    ((_BROWS, r"\b(lower|furrow|knit|frown|scowl)"), "brow_down", +1),
    ((_BROWS, r"\b(draw|pull|knit|bring)\w*.*together", r"^(?!.*rais)"), "brow_down", +1),
    ((_EYES, r"\b(widen|wide|open\w* wide|bulg)"), "eye_wide", +1),
    ((_EYES, r"\b(narrow|squint|tighten)"), "eye_squint", +1),
    ((r"\bcheeks?", _UP), "cheek_squint", +1),
    ((r"\bnose", r"\b(wrinkl|scrunch|crinkl|sneer)"), "nose_sneer", +1),
    ((r"\bsneer",), "nose_sneer", +1),
    ((r"upper lip", r"\b(rais|lift|curl|pull\w* up)"), "upper_lip_up", +1),
    ((r"lower lip", r"\b(lower|pull\w* down|drop|push\w* down)"), "lower_lip_down", +1),
    ((_CORNERS, _DOWN), "mouth_frown", +1),
    ((_CORNERS, _UP), "mouth_smile", +1),
    ((r"\b(smil|grin|beam)",), "mouth_smile", +1),
    ((r"\bfrown",), "mouth_frown", +1),
    ((r"\blips?\b", r"\b(press|tighten|clench|compress)"), "mouth_press", +1),
    ((r"\blips?\b|\bmouth\b", r"\bstretch"), "mouth_stretch", +1),
    ((r"\blips?\b", r"\b(pucker|purse|pout)"), "mouth_pucker", +1),
    ((r"\bjaw", r"\b(drop|lower|open|fall|slack)"), "jaw_open", +1),
    ((r"\bmouth\b", r"\b(open|gap|agape)", r"^(?!.*corner)"), "jaw_open", +1),
]

_NEGATION = re.compile(r"\b(stop|no longer|don't|do not|without|remove|lose|drop the smile|wipe)\b")


_VERBS = (
    "raise|lower|widen|narrow|press|stretch|drop|wrinkle|open|pull|draw|let|tighten|purse|curl|lift|"
    "squint|furrow|knit|smile|frown|relax|bring|turn|part|show|push|close|pucker|arch|scrunch|clench"
)
_SPLIT = re.compile(rf"[.;:,!?]|\band then\b|\bwhile\b|\band\b(?=\s+(?:{_VERBS})\w*\b)")
_PART = re.compile(r"brow|eye|lid|cheek|nose|lip|mouth|jaw|chin|face|teeth|forehead|smil|grin|frown")


def _clauses(instruction: str) -> list[str]:
    """Split into one clause per action; a verb with no body part ("raise and pull the eyebrows
    together") is carried into the next clause, which names the part."""
    parts = [c.strip() for c in _SPLIT.split(instruction.lower()) if c and c.strip()]
    clauses: list[str] = []
    carry = ""
    for part in parts:
        text = f"{carry} and {part}" if carry else part
        if _PART.search(text):
            clauses.append(text)
            carry = ""
        else:
            carry = text
    return clauses


def parse_actions(instruction: str) -> list[Action]:
    """Actions named in the instruction, deduplicated, in first-mention order."""
    found: dict[str, Action] = {}
    for clause in _clauses(instruction):
        negated = bool(_NEGATION.search(clause))
        for patterns, name, sign in _RULES:
            if all(re.search(p, clause) for p in patterns) and name not in found:
                found[name] = Action(name, _GROUPS[name], -sign if negated else sign)
    return list(found.values())


def named_actions(entries: list[str]) -> list[Action]:
    """The manifest's `actions` field: each entry an action name ("mouth_smile", "-jaw_open" for one
    that must fall) or a phrase the instruction parser reads ("raise the eyebrows"). Raises ValueError
    naming every entry that names no known action."""
    found: dict[str, Action] = {}
    bad = []
    for entry in entries:
        text = entry.strip()
        name = text.lstrip("+-")
        if name in _GROUPS:
            found.setdefault(name, Action(name, _GROUPS[name], -1 if text.startswith("-") else 1))
            continue
        parsed = parse_actions(text)
        if not parsed:
            bad.append(entry)
        for a in parsed:
            found.setdefault(a.name, a)
    if bad:
        raise ValueError(f"actions {bad} name no known facial action (names: {', '.join(_GROUPS)}; "
                         "or a phrase such as 'raise the eyebrows')")
    return list(found.values())
