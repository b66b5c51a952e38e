import pytest

from fedbench.metrics.aggregate import summarise


def row(i, target, fed, status="ok", gain=1.0):
    comps = None if status in ("no_face_source",) else fed / 100
    return {"id": str(i), "target": target, "status": status, "reason": None, "edit_status": "ok",
            "fed": None if status in ("degenerate_gt", "no_face_source") else fed,
            "alignment": comps, "fidelity": comps, "reg": None if status == "degenerate_gt" else comps,
            "a_emo": comps, "a_act": comps, "id_score": comps, "bg": comps, "pq": comps,
            "gain": None if status != "ok" else gain}


def test_macro_mean_over_classes_not_samples():
    rows = [row(0, "happy", 100), row(1, "happy", 100), row(2, "happy", 100), row(3, "sad", 0)]
    s = summarise(rows, n_bootstrap=200)
    assert s["overall"]["fed"]["mean"] == pytest.approx(50.0)
    assert s["per_class"]["happy"]["fed"] == 100.0
    lo, hi = s["overall"]["fed"]["ci95"]
    assert lo <= 50.0 <= hi


def test_nulls_are_counted_not_averaged_and_dataset_errors_excluded():
    rows = [row(0, "happy", 80), row(1, "happy", 0, status="degenerate_gt"),
            row(2, "sad", 0, status="no_face_source")]
    s = summarise(rows, n_bootstrap=100)
    assert s["overall"]["fed"]["mean"] == 80.0 and s["overall"]["fed"]["n"] == 1
    assert s["status_counts"] == {"degenerate_gt": 1, "no_face_source": 1, "ok": 1}
    assert [e["id"] for e in s["excluded"]] == ["2"]
    assert s["n_scored"] == 2


def test_bootstrap_is_deterministic_and_gain_reported():
    rows = [row(i, "happy" if i % 2 else "angry", 10 * i, gain=0.1 * i) for i in range(10)]
    a, b = summarise(rows, seed=3), summarise(rows, seed=3)
    assert a == b
    assert a["gain"]["median"] == pytest.approx(0.45)
