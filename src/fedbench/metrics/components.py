"""The component registry: every number FED-Score reports per sample and aggregates per run.

Summaries, tables, the HTML report, `compare` and `meta` read this list instead of repeating
("fed", "alignment", ...) tuples, so a component added to a FED-Score version shows up everywhere,
with its range and direction, or nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Aggregation = Literal["macro_mean"]


@dataclass(frozen=True)
class Component:
    name: str  # key in samples.jsonl and summary.json
    label: str  # column title in tables and the report
    low: float
    high: float
    higher_is_better: bool
    aggregation: Aggregation  # per class mean, then macro mean over target classes
    headline: bool  # one of the four leaderboard numbers (bootstrap interval, compare, meta)
    description: str


REGISTRY: tuple[Component, ...] = (
    Component("fed", "FED", 0.0, 100.0, True, "macro_mean", True, "100 x the combination of Alignment, Fidelity, REG"),
    Component("alignment", "Alignment", 0.0, 1.0, True, "macro_mean", True, "did the edit follow the instruction"),
    Component("fidelity", "Fidelity", 0.0, 1.0, True, "macro_mean", True, "identity, background, face quality kept"),
    Component("reg", "REG", 0.0, 1.0, True, "macro_mean", True, "expression change relative to the ground truth"),
    Component("a_emo", "A_emo", 0.0, 1.0, True, "macro_mean", False, "target emotion reached"),
    Component("a_act", "A_act", 0.0, 1.0, True, "macro_mean", False, "required facial actions performed"),
    Component("id_score", "ID", 0.0, 1.0, True, "macro_mean", False, "identity kept"),
    Component("bg", "BG", 0.0, 1.0, True, "macro_mean", False, "background kept"),
    Component("pq", "PQ", 0.0, 1.0, True, "macro_mean", False, "face quality kept"),
)
BY_NAME: dict[str, Component] = {c.name: c for c in REGISTRY}
NAMES: tuple[str, ...] = tuple(c.name for c in REGISTRY)
HEADLINE: tuple[str, ...] = tuple(c.name for c in REGISTRY if c.headline)
LABELS: dict[str, str] = {c.name: c.label for c in REGISTRY}


def component(name: str) -> Component:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown FED-Score component {name!r}; known: {', '.join(NAMES)}") from None
