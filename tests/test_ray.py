from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tokenprint[ray]')")
pytest.importorskip("torch")

from tokenprint.bench import SweepSpec  # noqa: E402
from tokenprint.bench.store import ResultsStore  # noqa: E402
from tokenprint.bench.workload import fixed_pairs  # noqa: E402
from tokenprint.distributed.bench import run_sweep_ray  # noqa: E402
from tokenprint.executor import init_ray, parallel_map  # noqa: E402
from tokenprint.plan import PlanInputs, plan  # noqa: E402
from tokenprint.simulate import Trace  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def _spec(results: Path, **kw) -> SweepSpec:
    base = dict(engine="hf", models=["tiny"], device="cpu", batches=[1, 2],
                pairs=fixed_pairs([16], [4]), warmup=0, repeat=1, results=results, idle_s=0.1)
    base.update(kw)
    return SweepSpec(**base)


def test_sweep_on_ray_records_each_point_once(tmp_path: Path, catalog):
    recs = run_sweep_ray(_spec(tmp_path), catalog)
    assert sorted(r["batch"] for r in recs) == [1, 2]
    assert all(r["executor"] == "ray" and r["status"] == "ok" for r in recs)
    assert all(r["energy_kind"] == "estimated" for r in recs)
    # stored points are not scheduled again
    statuses = []
    again = run_sweep_ray(_spec(tmp_path, batches=[1, 2, 3]), catalog,
                          on_point=lambda label, rec: statuses.append(rec and rec["status"]))
    assert [r["batch"] for r in again] == [3]
    assert statuses.count("skipped") == 2
    assert sorted(r["batch"] for r in ResultsStore.open_existing(tmp_path).records()) == [1, 2, 3]


def test_killed_worker_is_retried_and_recorded_once(tmp_path: Path, catalog):
    marker = tmp_path / "crashed-once"
    spec = _spec(tmp_path / "r", batches=[1],
                 extra={"fault_injection_crash_once": str(marker)})
    recs = run_sweep_ray(spec, catalog)
    assert marker.exists()                       # the first attempt's worker died mid-task
    assert len(recs) == 1 and recs[0]["status"] == "ok"
    stored = ResultsStore.open_existing(tmp_path / "r").records()
    assert len(stored) == 1


def _trace(n=120, rate=4.0) -> Trace:
    rng = np.random.default_rng(7)
    arr = np.cumsum(rng.exponential(1 / rate, n))
    return Trace(arr - arr[0], rng.integers(50, 600, n), rng.integers(5, 150, n), "t")


def test_plan_on_ray_equals_local(catalog):
    inp = PlanInputs(_trace(), ["llama-3.2-1b"], ["l4", "a100-sxm4-80gb"], ["FR", "PL"],
                     max_batches=[8, 32], slo_ttft_s=2.0, slo_tpot_s=0.2, max_replicas=8)
    local = plan(inp, catalog).to_dict()
    distributed = plan(inp, catalog, executor="ray").to_dict()
    for key in ("best", "baselines", "savings_pct", "pareto", "candidates_simulated"):
        assert local[key] == distributed[key], key


def test_parallel_map_order():
    assert parallel_map(lambda x: x * x, range(6), "ray") == [0, 1, 4, 9, 16, 25]
    assert parallel_map(lambda x: x + 1, [1, 2], "local") == [2, 3]


def test_unknown_executor():
    from tokenprint.errors import TokenprintError

    with pytest.raises(TokenprintError, match="unknown executor 'slurm'"):
        parallel_map(lambda x: x, [1], "slurm")
