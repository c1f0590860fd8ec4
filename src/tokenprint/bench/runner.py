"""Sweeps: every (model, lengths, batch) point, warmed up, repeated, metered, stored as it ends."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tokenprint import __version__
from tokenprint.bench.store import ResultsStore
from tokenprint.bench.workload import LengthPair
from tokenprint.catalog import Catalog, ModelArch
from tokenprint.engines.base import ENGINES, Engine, OutOfMemory, RunResult
from tokenprint.errors import TokenprintError
from tokenprint.measure import METERS, EnergyMeter, Measurement, make_meter, measure_idle
from tokenprint.records import RunRecord, run_record


@dataclass
class SweepSpec:
    """What to run. Validated in full before anything runs."""

    engine: str
    models: list[str]
    device: str
    batches: list[int]
    pairs: list[LengthPair]
    dtype: str = "auto"
    meter: str = "auto"
    warmup: int = 2
    repeat: int = 5
    min_seconds: float | None = None
    results: Path = Path("tokenprint-results")
    weights: Path | None = None
    tdp_w: float | None = None
    base_url: str | None = None
    api_model: str | None = None
    gpu: str | None = None
    idle_s: float = 2.0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def validate_spec(spec: SweepSpec, catalog: Catalog) -> list[ModelArch]:
    """Refuse bad input (unknown model or engine, lengths beyond context, batch < 1, missing
    device) with a clear message, before anything runs."""
    if spec.engine not in ENGINES:
        raise TokenprintError(f"unknown engine {spec.engine!r}; valid: {', '.join(ENGINES)}")
    if spec.meter not in METERS:
        raise TokenprintError(f"unknown meter {spec.meter!r}; valid: {', '.join(METERS)}")
    if not spec.models:
        raise TokenprintError("no model given")
    if not spec.batches:
        raise TokenprintError("no batch size given")
    if not spec.pairs:
        raise TokenprintError("no input/output length given")
    for b in spec.batches:
        if b < 1:
            raise TokenprintError(f"batch {b} is invalid; it must be >= 1")
    if spec.warmup < 0:
        raise TokenprintError(f"warmup {spec.warmup} is invalid; it must be >= 0")
    if spec.repeat < 1:
        raise TokenprintError(f"repeat {spec.repeat} is invalid; it must be >= 1")
    if spec.min_seconds is not None and spec.min_seconds <= 0:
        raise TokenprintError(f"min-seconds {spec.min_seconds} is invalid; it must be > 0")
    models = [catalog.model(m) for m in spec.models]
    for m in models:
        for pair in spec.pairs:
            if pair.input_len < 1 or pair.output_len < 1:
                raise TokenprintError(
                    f"lengths must be >= 1 (got input {pair.input_len}, output {pair.output_len})")
            if pair.input_len + pair.output_len > m.max_context:
                raise TokenprintError(
                    f"input {pair.input_len} + output {pair.output_len} tokens exceed "
                    f"{m.id}'s context of {m.max_context}"
                )
    if spec.engine == "hf":
        from tokenprint.engines.hf import check_device

        check_device(spec.device)
    if spec.engine == "openai" and not spec.base_url:
        raise TokenprintError("engine 'openai' needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    return models


def point_key(spec: SweepSpec, model: str, pair: LengthPair, batch: int, hardware: str,
              dtype: str) -> str:
    """The identity of a sweep point in the store."""
    where = spec.base_url or spec.device
    return (f"{spec.engine}|{model}|{where}|{hardware}|{dtype}|b{batch}|i{pair.input_len}|"
            f"o{pair.output_len}|{pair.workload}|w{spec.weights or 'random'}")


def _run_id(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def aggregate(runs: list[RunResult], batch: int, pair: LengthPair, idle: Measurement | None,
              ) -> dict[str, Any]:
    """Median and p5/p95 over repetitions, ITL percentiles over every step."""
    ttft = [r.ttft_s for r in runs]
    tpot = [float(np.mean(r.step_s)) for r in runs if r.step_s]
    e2e = [r.e2e_s for r in runs]
    itl = [s for r in runs for s in r.itl_s]
    pre = [r.prefill.energy_j for r in runs if r.prefill is not None]
    dec = [r.decode.energy_j for r in runs if r.decode is not None]
    out_tokens = batch * pair.output_len
    in_tokens = batch * pair.input_len
    e2e_med = float(np.median(e2e))
    pre_med = float(np.median(pre)) if pre else None
    dec_med = float(np.median(dec)) if dec else (0.0 if pre else None)
    rec: dict[str, Any] = {
        "ttft_s": float(np.median(ttft)), "ttft_s_p5": _pct(ttft, 5), "ttft_s_p95": _pct(ttft, 95),
        "tpot_s": float(np.median(tpot)) if tpot else None,
        "tpot_s_p5": _pct(tpot, 5), "tpot_s_p95": _pct(tpot, 95),
        "itl_p50_s": _pct(itl, 50), "itl_p90_s": _pct(itl, 90), "itl_p99_s": _pct(itl, 99),
        "e2e_s": e2e_med, "e2e_s_p5": _pct(e2e, 5), "e2e_s_p95": _pct(e2e, 95),
        "throughput_tok_s": out_tokens / e2e_med,
        "input_tokens": in_tokens, "output_tokens": out_tokens, "decode_tokens": out_tokens,
        "decode_steps": pair.output_len - 1,
        "prefill_energy_j": pre_med, "decode_energy_j": dec_med,
        "repeats": len(runs),
    }
    if pre_med is not None and dec_med is not None:
        per_out = [r.decode.energy_j / out_tokens for r in runs if r.decode is not None]
        rec.update({
            "energy_per_input_token_j": pre_med / in_tokens,
            "energy_per_output_token_j": dec_med / out_tokens,
            "energy_per_output_token_j_p5": _pct(per_out, 5),
            "energy_per_output_token_j_p95": _pct(per_out, 95),
            "energy_per_token_total_j": (pre_med + dec_med) / out_tokens,
            "mean_power_w": (pre_med + dec_med) / e2e_med,
        })
        peaks = [m.peak_power_w for r in runs for m in (r.prefill, r.decode)
                 if m is not None and m.peak_power_w is not None]
        rec["peak_power_w"] = max(peaks) if peaks else None
        sampled = [r.decode.sampled_energy_j for r in runs
                   if r.decode is not None and r.decode.sampled_energy_j is not None]
        rec["decode_energy_sampled_j"] = float(np.median(sampled)) if sampled else None
    mems = [r.peak_memory_bytes for r in runs if r.peak_memory_bytes is not None]
    rec["peak_memory_bytes"] = max(mems) if mems else None
    rec["idle_power_w"] = idle.mean_power_w if idle is not None else None
    return rec


def make_engine(spec: SweepSpec, model: ModelArch, catalog: Catalog) -> Engine:
    """Open the engine for one model."""
    if spec.engine == "hf":
        from tokenprint.engines.hf import HFEngine

        return HFEngine(model, spec.device, spec.dtype, catalog, spec.weights, spec.seed)
    if spec.engine == "vllm":
        from tokenprint.engines.vllm import VllmEngine

        return VllmEngine(model, spec.device, spec.dtype, catalog, spec.weights, spec.seed)
    from tokenprint.engines.openai import OpenAIEngine

    assert spec.base_url is not None
    return OpenAIEngine(spec.base_url, spec.api_model or model.id, spec.device, spec.dtype,
                        catalog, spec.seed)


def iter_points(spec: SweepSpec) -> Iterator[tuple[str, LengthPair, int]]:
    """Every (model, lengths, batch) point in order."""
    for m in spec.models:
        for pair in spec.pairs:
            for b in spec.batches:
                yield m, pair, b


ProgressFn = Callable[[str, RunRecord | dict[str, str] | None], None]


def target_of(spec: SweepSpec, catalog: Catalog) -> tuple[str, str]:
    """Hardware id and dtype of the points, known without loading any model."""
    if spec.engine in ("hf", "vllm"):
        from tokenprint.engines.hf import TORCH_DTYPES, engine_dtype, hardware_id

        return hardware_id(spec.device, catalog), engine_dtype(
            spec.engine, spec.device, spec.dtype, tuple(TORCH_DTYPES))
    hw = catalog.gpu(spec.gpu).id if spec.gpu else "remote"
    return hw, ("unknown" if spec.dtype == "auto" else spec.dtype)


@dataclass(frozen=True)
class PendingPoint:
    """A sweep point not yet in the store, with its identity there."""

    model: str
    pair: LengthPair
    batch: int
    key: str

    @property
    def label(self) -> str:
        """Short text for progress displays."""
        return (f"{self.model} b={self.batch} in={self.pair.input_len} "
                f"out={self.pair.output_len}")


def prepare_spec(spec: SweepSpec, catalog: Catalog
                 ) -> tuple[SweepSpec, dict[str, ModelArch]]:
    """Validate a sweep; return it with catalog model ids, and the models by id."""
    models = {m.id: m for m in validate_spec(spec, catalog)}
    return replace(spec, models=list(models)), models


def pending_points(spec: SweepSpec, catalog: Catalog, store: ResultsStore,
                   on_point: ProgressFn | None = None) -> list[PendingPoint]:
    """The points of a prepared sweep not yet stored, in order (stored ones are reported to
    ``on_point`` with ``{"status": "skipped"}``)."""
    hardware, dtype = target_of(spec, catalog)
    pending = []
    for model_id, pair, batch in iter_points(spec):
        point = PendingPoint(model_id, pair, batch,
                             point_key(spec, model_id, pair, batch, hardware, dtype))
        if store.has(point.key):
            if on_point:
                on_point(point.label, {"status": "skipped"})
        else:
            pending.append(point)
    return pending


def finish_record(rec: RunRecord, key: str, meter_reason: str) -> RunRecord:
    """Add the store identity and the meter's reason to a measured record."""
    rec.update({"point_key": key, "run_id": _run_id(key), "meter_reason": meter_reason})
    return rec


def run_sweep(spec: SweepSpec, catalog: Catalog, on_point: ProgressFn | None = None,
              on_status: Callable[[str], None] | None = None) -> list[RunRecord]:
    """Run every point not yet in the store; return the records written in this run.

    ``on_point(label, record)`` is called before (record None) and after each point; a point
    already stored is reported with ``{"status": "skipped"}``.
    """
    spec, models = prepare_spec(spec, catalog)
    store = ResultsStore(spec.results)
    written: list[RunRecord] = []
    meter: EnergyMeter | None = None
    idle: Measurement | None = None
    meter_reason = ""
    engine: Engine | None = None
    loaded = ""
    try:
        # points come grouped by model: one engine per model
        for point in pending_points(spec, catalog, store, on_point):
            if engine is None or loaded != point.model:
                if engine is not None:
                    engine.close()
                    engine = None
                if on_status:
                    on_status(f"loading {point.model} on {spec.device} ({spec.engine})")
                engine = make_engine(spec, models[point.model], catalog)
                loaded = point.model
            if meter is None:
                meter, meter_reason = make_meter(spec.meter, spec.device, spec.tdp_w)
                if on_status:
                    on_status(f"meter {meter.name} ({meter_reason}); measuring the idle "
                              f"floor for {spec.idle_s:g} s")
                idle = measure_idle(meter, spec.idle_s) if spec.idle_s > 0 else None
            if on_point:
                on_point(point.label, None)
            rec = finish_record(run_point(spec, engine, meter, idle, point.model, point.pair,
                                          point.batch), point.key, meter_reason)
            store.add(rec)
            written.append(rec)
            if on_point:
                on_point(point.label, rec)
    finally:
        if engine is not None:
            engine.close()
        if meter is not None:
            meter.close()
        store.close()
    return written


def run_point(spec: SweepSpec, engine: Engine, meter: EnergyMeter, idle: Measurement | None,
              model_id: str, pair: LengthPair, batch: int) -> RunRecord:
    """Warm up, repeat, aggregate one point; an out-of-memory batch is recorded as ``oom``."""
    base: dict[str, Any] = {
        "source": "measured", "model": model_id, "engine": spec.engine, "device": spec.device,
        "hardware_id": engine.hardware_id, "dtype": engine.dtype, "batch": batch,
        "input_len": pair.input_len, "output_len": pair.output_len, "tp": 1,
        "workload": pair.workload, "weights": str(spec.weights) if spec.weights else "random",
        "meter": meter.name, "energy_kind": meter.kind, "warmup": spec.warmup,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"tokenprint": __version__, **engine.versions()},
    }
    try:
        for _ in range(spec.warmup):
            engine.run(batch, pair.input_len, pair.output_len, None)
        runs: list[RunResult] = []
        t0 = time.perf_counter()
        while len(runs) < spec.repeat or (
                spec.min_seconds is not None and time.perf_counter() - t0 < spec.min_seconds):
            runs.append(engine.run(batch, pair.input_len, pair.output_len, meter))
            if spec.min_seconds is not None and len(runs) >= 1000:
                break
    except OutOfMemory as exc:
        return run_record({**base, "status": "oom", "error": str(exc)})
    return run_record({**base, "status": "ok", **aggregate(runs, batch, pair, idle)})
