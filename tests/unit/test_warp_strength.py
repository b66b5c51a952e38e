"""The strength model's choices from a FED table (no images): per-person means, the grid strength
with the best mean, the rules, and the person-grouped cross-validation that picks among them."""

from __future__ import annotations

import numpy as np
import pytest

from fedbench.editors.warp import WarpFields, reference_field
from fedbench.train.warp_strength import (RULES, StrengthTable, cross_validate_rules, fields_from_strengths,
                                          fit_rule, rule_fed)

GRID = (0.5, 1.0, 2.0)


def _table(rows: list[tuple[str, str, list[float]]]) -> StrengthTable:
    """rows: (person, target, FED at each GRID strength)."""
    return StrengthTable(ids=[f"r{i}" for i in range(len(rows))], targets=[t for _, t, _ in rows],
                         groups=[f"identity:{p}" for p, _, _ in rows], identities=[p for p, _, _ in rows],
                         sources=[f"{p}.png" for p, _, _ in rows], strengths=GRID,
                         fed=np.array([f for _, _, f in rows], dtype=np.float64))


def test_per_target_rule_takes_each_targets_best_strength_per_person() -> None:
    table = _table([
        # person a has two happy pairs that prefer 2.0; person b one that prefers 1.0: per person
        # first, a's mean at 2.0 is 60 and at 1.0 is 20; b's 10 and 50 -> 2.0: 35, 1.0: 35 -> tie
        ("a", "happy", [0, 20, 60]), ("a", "happy", [0, 20, 60]), ("b", "happy", [0, 50, 10]),
        ("a", "sad", [40, 10, 0]), ("b", "sad", [30, 20, 0]),
    ])
    strengths = fit_rule(table, "per_target")
    assert strengths["happy"] == 1.0  # the tie goes to the strength nearest the reference
    assert strengths["sad"] == 0.5
    # a target without pairs takes the global strength
    assert strengths["angry"] == fit_rule(table, "global")["angry"]
    assert fit_rule(table, "reference") == {t: 1.0 for t in strengths}
    assert rule_fed(table, strengths) == [20.0, 20.0, 50.0, 40.0, 30.0]
    with pytest.raises(ValueError, match="unknown rule"):
        fit_rule(table, "best")


def test_nan_rows_are_ignored() -> None:
    table = _table([("a", "happy", [np.nan, np.nan, np.nan]), ("b", "happy", [10, 0, 50])])
    assert fit_rule(table, "per_target")["happy"] == 2.0


def test_shrunk_rule_pulls_a_target_seen_on_one_person_towards_the_global_strength() -> None:
    # four people prefer 1.0 on sad; one of them alone has happy pairs, mildly preferring 2.0
    rows = [(p, "sad", [5, 40, 10]) for p in "abcd"] + [("a", "happy", [0, 30, 35])]
    table = _table(rows)
    assert fit_rule(table, "per_target")["happy"] == 2.0
    assert fit_rule(table, "shrunk")["happy"] == 1.0 == fit_rule(table, "global")["happy"]
    # a clear preference survives the shrinkage: (1 x 80 + 2 x 13.1) / 3 at 2.0 beats 1.0's 35.8
    rows[-1] = ("a", "happy", [0, 30, 80])
    assert fit_rule(_table(rows), "shrunk")["happy"] == 2.0


def test_cross_validation_holds_out_people_and_prefers_the_simpler_rule_on_ties() -> None:
    # every person's happy pairs prefer 2.0: the fitted rules win on held-out people
    rows = [(p, "happy", [5, 10, 70]) for p in "abcd"] + [(p, "sad", [5, 40, 10]) for p in "abcd"]
    v = cross_validate_rules(_table(rows), k=4, seed=0)
    assert v.folds.mode == "identity" and v.folds.k == 4
    by = {r["rule"]: r["held_out_fed"] for r in v.table}
    assert by["reference"] == pytest.approx(25.0) and by["per_target"] == pytest.approx(55.0)
    # every target is seen on three training people: shrinking towards the global curve changes
    # nothing, and the tie goes to the simpler rule
    assert by["shrunk"] == by["per_target"] and v.best == "shrunk" and by["global"] < by["per_target"]
    # people disagree (each prefers its own strength): nothing beats the reference on held-out people
    rows = [("a", "happy", [0, 30, 60]), ("b", "happy", [60, 30, 0]), ("c", "happy", [0, 30, 60]),
            ("d", "happy", [60, 30, 0])]
    v = cross_validate_rules(_table(rows), k=4, seed=0)
    assert v.best == "reference", v.table
    assert [r["rule"] for r in v.table] == list(RULES)


def test_fields_are_scaled_reference_fields_for_every_source() -> None:
    fields = WarpFields(fields_from_strengths({"happy": 2.0, "sad": 0.5}), {"fitted": True})
    np.testing.assert_allclose(fields.lookup("happy", "sad"), 2.0 * reference_field("happy"))
    np.testing.assert_allclose(fields.lookup("sad"), 0.5 * reference_field("sad"))
    np.testing.assert_allclose(fields.lookup("fear", "happy"), reference_field("fear"))  # not fitted: reference


def test_checkpoints_are_byte_stable_and_the_preset_loads(tmp_path) -> None:
    import time

    from fedbench.editors.warp import PRESETS, resolve_checkpoint

    fields = WarpFields(fields_from_strengths({"happy": 2.0, "sad": 0.5}), {"fitted": True})
    fields.save(tmp_path / "a")
    time.sleep(1.1)  # np.savez would stamp another time into the zip
    fields.save(tmp_path / "b")
    for name in ("warp_fields.npz", "checkpoint.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert WarpFields.load(tmp_path / "a").digest() == fields.digest()
    assert resolve_checkpoint("fitted") == PRESETS["fitted"] and resolve_checkpoint("./fitted") != PRESETS["fitted"]
    shipped = WarpFields.load(PRESETS["fitted"])
    assert shipped.meta["fitted"] and shipped.meta["rule"] in RULES
    for target, a in shipped.meta["strengths"].items():  # the shipped fields are what their metadata says
        np.testing.assert_allclose(shipped.lookup(target), a * reference_field(target))
