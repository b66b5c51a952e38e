"""The processed-probe section and checks of `fedbench meta`, on constructed rows (the real run is in
tests/integration/test_meta.py), and the processing itself: seeded, and it changes the pixels."""

import numpy as np

from fedbench.meta.probes import Probe, default_probes, processed
from fedbench.meta.run import _checks, _probe_section


def _row(fed, gain=0.0, status="ok"):
    return {"id": "x", "target": "happy", "status": status, "edit_status": "ok", "fed": fed, "gain": gain,
            "alignment": 1.0, "fidelity": 1.0, "reg": fed / 100, "a_emo": 1.0, "a_act": 1.0, "id_score": 1.0,
            "bg": 1.0, "pq": 1.0}


def _section(lazy_fed, oracle_fed, rival_fed):
    probes = [Probe("lazy", "lazy"), Probe("oracle", "oracle"), Probe("blend-0.75", "under", 0.75),
              Probe("processed-lazy", "processed-lazy", 0.0), Probe("processed-oracle", "processed-oracle", 0.0)]
    rows = {"lazy": {"t": _row(0.0)}, "oracle": {"t": _row(100.0, 1.0)}, "blend-0.75": {"t": _row(rival_fed, 0.9)},
            "processed-lazy": {"t": _row(lazy_fed, 0.1)}, "processed-oracle": {"t": _row(oracle_fed, 0.95)}}
    sec = _probe_section(probes, rows, n_bootstrap=0)
    return sec, _checks(sec, {"biased_single_metrics": ["x"], "fed_lazy_or_over_edit_above_oracle": 0}, [])


def test_processed_checks_pass_and_fail_on_their_thresholds():
    sec, checks = _section(lazy_fed=3.0, oracle_fed=95.0, rival_fed=90.0)
    assert "processed-oracle" not in sec["oracle_first"]["against"]  # G in other pixels is no rival
    assert checks["processed_lazy_at_most_5"]["passed"] and checks["processed_oracle_at_least_90_and_first"]["passed"]
    assert checks["oracle_first"]["passed"]
    _, checks = _section(lazy_fed=6.0, oracle_fed=95.0, rival_fed=90.0)
    assert not checks["processed_lazy_at_most_5"]["passed"]
    _, checks = _section(lazy_fed=0.0, oracle_fed=89.0, rival_fed=50.0)
    assert not checks["processed_oracle_at_least_90_and_first"]["passed"]  # below 90
    _, checks = _section(lazy_fed=0.0, oracle_fed=92.0, rival_fed=93.0)
    assert not checks["processed_oracle_at_least_90_and_first"]["passed"]  # a rival above it


def test_default_probes_include_one_processed_lazy_and_oracle():
    kinds = [p.kind for p in default_probes()]
    assert kinds.count("processed-lazy") == kinds.count("processed-oracle") == 1


def test_processing_is_seeded_and_changes_pixels():
    rgb = np.random.default_rng(0).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    a, b = processed(rgb, "t1", 0, "source"), processed(rgb, "t1", 0, "source")
    assert np.array_equal(a, b)
    c = processed(rgb, "t1", 1, "source")
    assert not (a.shape == c.shape and np.array_equal(a, c))
    assert not (a.shape == rgb.shape and np.array_equal(a, rgb))
