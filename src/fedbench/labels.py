"""The seven expression classes of FED-Bench and the spellings people use for them."""

from __future__ import annotations

EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry")

_ALIASES: dict[str, str] = {
    "neutral": "neutral", "calm": "neutral", "none": "neutral",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy", "smiling": "happy",
    "sad": "sad", "sadness": "sad", "unhappy": "sad",
    "surprise": "surprise", "surprised": "surprise", "surprising": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "angry": "angry", "anger": "angry", "mad": "angry",
}


def normalise_expression(label: str) -> str | None:
    """Return the canonical class for a label, or None when it is not one of the seven."""
    return _ALIASES.get(str(label).strip().lower())


def expression_index(label: str) -> int:
    return EXPRESSIONS.index(label)
