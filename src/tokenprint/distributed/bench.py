"""Benchmark sweeps on Ray: one sweep point per task, records committed by the driver."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tokenprint.bench.runner import (
    ProgressFn,
    SweepSpec,
    finish_record,
    pending_points,
    prepare_spec,
    run_point,
)
from tokenprint.bench.store import ResultsStore
from tokenprint.bench.workload import LengthPair
from tokenprint.catalog import Catalog
from tokenprint.executor import init_ray
from tokenprint.records import RunRecord


def _point_task(spec: SweepSpec, catalog_files: list[str], model_id: str, pair: LengthPair,
                batch: int, key: str) -> RunRecord:
    """Runs on a worker: open the engine and a meter there, measure one point, return it."""
    from tokenprint.bench.runner import make_engine
    from tokenprint.catalog import load_catalog
    from tokenprint.measure import make_meter, measure_idle

    marker = spec.extra.get("fault_injection_crash_once")
    if marker and not os.path.exists(marker):  # fault injection (tests): die once mid-task
        Path(marker).write_text("crashed")
        os._exit(1)
    cat = load_catalog(list[str | Path](catalog_files))
    engine = make_engine(spec, cat.model(model_id), cat)
    meter, reason = make_meter(spec.meter, spec.device, spec.tdp_w)
    try:
        idle = measure_idle(meter, spec.idle_s) if spec.idle_s > 0 else None
        rec = run_point(spec, engine, meter, idle, model_id, pair, batch)
    finally:
        meter.close()
        engine.close()
    rec.update({"executor": "ray", "worker_node": os.uname().nodename})
    return finish_record(rec, key, reason)


def run_sweep_ray(spec: SweepSpec, catalog: Catalog, address: str | None = None,
                  on_point: ProgressFn | None = None,
                  catalog_files: list[str] | None = None) -> list[RunRecord]:
    """Schedule every point not yet stored as a Ray task; store records as they return."""
    spec, _ = prepare_spec(spec, catalog)
    store = ResultsStore(spec.results)
    refs: dict[Any, str] = {}
    written: list[RunRecord] = []
    try:
        pending = pending_points(spec, catalog, store, on_point)
        ray = init_ray(address)
        num_gpus = 1.0 if spec.device.startswith("cuda") else 0.0
        task = ray.remote(num_gpus=num_gpus, max_retries=3)(_point_task)
        for p in pending:
            refs[task.remote(spec, list(catalog_files or []), p.model, p.pair, p.batch,
                             p.key)] = p.label
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                rec = ray.get(ref)
                if not store.has(rec["point_key"]):
                    store.add(rec)
                    written.append(rec)
                if on_point:
                    on_point(refs[ref], rec)
    finally:
        store.close()
    return written
