"""Build-engine stages that need no models: instructions, target balancing, dedupe and the split."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fedbench.engine.config import BuildConfig
from fedbench.engine.stage import Rejected
from fedbench.engine.stages.instructions import ACTIONS, COARSE, Instruction, compose
from fedbench.engine.stages.split import identity_clusters, near_duplicates, split
from fedbench.engine.stages.targets import TargetChoice
from fedbench.metrics.lexicon import parse_actions

# The EMFACS actions FED-Score expects for each target (docs/fedscore.md).
EXPECTED = {
    "happy": {"mouth_smile", "cheek_squint"},
    "sad": {"mouth_frown", "brow_inner_up"},
    "surprise": {"brow_inner_up", "brow_outer_up", "eye_wide", "jaw_open"},
    "fear": {"brow_inner_up", "eye_wide", "mouth_stretch"},
    "disgust": {"nose_sneer", "upper_lip_up"},
    "angry": {"brow_down", "eye_squint", "mouth_press"},
}


@pytest.mark.parametrize("target", sorted(EXPECTED))
def test_every_phrasing_reads_back_as_the_targets_actions(target: str) -> None:
    for combo in itertools.product(*ACTIONS[target]):
        for coarse in COARSE:
            text = f"{coarse.format(adj=target)}: " + ", ".join(combo[:-1]) + " and " + combo[-1] + "."
            found = {a.name for a in parse_actions(text) if a.sign > 0}
            assert EXPECTED[target] <= found | {"brow_outer_up"} and found <= EXPECTED[target] | {"brow_outer_up"}, (text, found)


def test_instructions_vary_and_are_stable() -> None:
    texts = {compose(f"s{i}-to-happy", "happy") for i in range(40)}
    assert len(texts) > 4
    assert compose("s1-to-sad", "sad") == compose("s1-to-sad", "sad")
    stage = Instruction(BuildConfig(), Path("."))
    stage.setup()
    row = stage.process({"id": "x-to-fear", "target": "fear"})[0]
    assert row["instruction"] == row["instruction_template"] and "paraphrase_error" not in row


def test_targets_are_balanced_and_never_the_source_class() -> None:
    stage = TargetChoice(BuildConfig(per_class=1, train_per_class=9), Path("."))
    stage.setup()
    labels = ["happy"] * 30 + ["sad"] * 10 + ["unknown"] * 5
    out = [stage.process({"id": f"s{i}", "source_expression": lab}) for i, lab in enumerate(labels)]
    rows = [r for o in out if not isinstance(o, Rejected) for r in o]
    assert all(r["target"] != r["source_expression"] for r in rows)
    counts = Counter(r["target"] for r in rows)
    assert max(counts.values()) <= 15  # the cap: 1.5 x (1 + 9)
    assert max(counts.values()) - min(counts.values()) <= 2 or max(counts.values()) == 15
    assert any(isinstance(o, Rejected) for o in out) or sum(counts.values()) == 2 * len(labels)


def test_near_duplicates_and_identity_clusters() -> None:
    dupes = near_duplicates([("a", 0b1111), ("b", 0b1110), ("c", (1 << 63) | 0xFFFF0000)], bits=2)
    assert dupes == {"b": "a"}
    rng = np.random.default_rng(0)
    people = rng.normal(size=(3, 128))
    emb = np.vstack([people[i] + 0.1 * rng.normal(size=128) for i in (0, 0, 1, 2, 2, 2)])
    clusters = identity_clusters(list("uvwxyz"), emb, 0.8)
    assert clusters["u"] == clusters["v"] != clusters["w"] != clusters["x"] == clusters["y"] == clusters["z"]


def test_split_keeps_identities_apart_and_respects_quotas() -> None:
    rng = np.random.default_rng(1)
    people = rng.normal(size=(8, 128))
    records = []
    for p in range(8):
        for k in range(3):
            sid = f"p{p}-photo{k}"
            for target in ("happy", "sad"):
                records.append({"id": f"{sid}-to-{target}", "source_id": sid, "target": target,
                                "phash": f"{int(rng.integers(0, 2**62)):016x}",
                                "identity_embedding": list(people[p] + 0.05 * rng.normal(size=128))})
    config = BuildConfig.model_validate({"per_class": 4, "train_per_class": 5, "split": {"max_test_share": 0.5}})
    result = split(records, config)
    test_ids = {r["identity"] for r in result.test}
    train_ids = {r["identity"] for r in result.train}
    assert test_ids and train_ids and test_ids.isdisjoint(train_ids)
    assert max(Counter(r["target"] for r in result.test).values()) <= 4
    assert max(Counter(r["target"] for r in result.train).values()) <= 5
    assert len(result.test) + len(result.train) + len(result.rejected) == len(records)
    assert all("quota" in reason for _, reason in result.rejected)
    assert split(records, config).test == result.test  # seeded: the same split every time
