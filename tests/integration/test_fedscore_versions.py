"""FED-Score 1.0, 1.1 and 1.2 give on the shared blend triplets exactly the figures docs/fedscore.md's
history table quotes (they were measured before the metric core and 2.0 existed); 2.0 keeps the
lazy probe at 0 and the oracle at 100 and first. The same computation as benchmarks/fedscore_probes.py."""

from __future__ import annotations

import numpy as np
import pytest

from fedbench.meta import MetaOptions, default_probes, read_probe_rows, run_meta

pytestmark = pytest.mark.integration

PROBES = ("oracle", "lazy", "blend-0.5", "blend-0.75", "blend-2")
# docs/fedscore.md, "History": oracle first (of 28) and mean FED oracle / k=0.75 / k=2 / k=0.5 / lazy
DOCUMENTED = {
    "1.0": (13, (71.33, 68.94, 63.72, 44.45, 0.00)),
    "1.1": (26, (99.79, 94.92, 84.60, 58.36, 0.00)),
    "1.2": (28, (100.00, 95.05, 84.77, 58.40, 0.00)),
}


@pytest.fixture(scope="module")
def rows_by_version(pixelsmile, tmp_path_factory):
    base = tmp_path_factory.mktemp("versions")
    out = {}
    for version in (*DOCUMENTED, "2.0"):
        run_meta(MetaOptions(benchmark=pixelsmile / "triplets.jsonl", out=base / version, cache_path=base / "c.sqlite",
                             probes=default_probes(blend_ks=(0.5, 0.75, 2.0), warp_strengths=(), processed_seeds=()),
                             fedscore_version=version, plots=False))
        out[version] = read_probe_rows(base / version)
    return out


def _figures(rows):
    ids = [i for i, r in rows["oracle"].items() if all(rows[p][i]["status"] == "ok" for p in PROBES)]
    first = sum(rows["oracle"][i]["fed"] > max(rows[p][i]["fed"] for p in PROBES[1:]) for i in ids)
    means = tuple(round(float(np.mean([rows[p][i]["fed"] for i in ids])), 2)
                  for p in ("oracle", "blend-0.75", "blend-2", "blend-0.5", "lazy"))
    return len(ids), first, means


@pytest.mark.parametrize("version", list(DOCUMENTED))
def test_1x_versions_reproduce_the_documented_figures(rows_by_version, version):
    n, first, means = _figures(rows_by_version[version])
    assert n == 28
    assert (first, means) == DOCUMENTED[version]


def test_2_0_lazy_zero_oracle_first(rows_by_version):
    n, first, means = _figures(rows_by_version["2.0"])
    assert first == n and means[0] == 100.0 and means[-1] == 0.0
