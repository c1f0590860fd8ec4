"""A serving cluster: N replicas of one GPU type running one model, requests load-balanced.

Step times and power come from ``predict`` (the GPU's calibration profile or the prior). Results
carry per-request latencies, SLO attainment, busy and idle time, energy (idle floor included),
and operational and embodied carbon.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.predict.params import DEFAULT_STACK
from tokenprint.predict.shapes import MEMORY_FRACTION
from tokenprint.predict.step import step_costs
from tokenprint.ranges import Estimate
from tokenprint.simulate.replica import ReplicaCosts, simulate_replica
from tokenprint.traces import Trace
from tokenprint.units import S_PER_HOUR

BALANCERS = ("round-robin", "least-work")
MAX_REPLICAS = 100_000  # replicas are simulated one by one; beyond this a run would exhaust memory


@dataclass(frozen=True)
class ClusterSpec:
    """What to simulate."""

    model: str
    gpu: str
    replicas: int = 1
    tp: int = 1
    max_batch: int = 64
    dtype: str = "auto"
    balance: str = "least-work"
    memory_fraction: float = MEMORY_FRACTION
    stack: str = DEFAULT_STACK


def replica_costs(catalog: Catalog, spec: ClusterSpec) -> tuple[ReplicaCosts, dict[str, Any]]:
    """Model constants for one replica (from ``tokenprint.predict``) and where they came from."""
    return step_costs(catalog, spec.model, spec.gpu, spec.dtype, spec.tp, spec.stack,
                      spec.memory_fraction)


def assign(trace: Trace, replicas: int, balance: str, costs: ReplicaCosts) -> NDArray[np.int64]:
    """Replica index per request: round-robin, or least outstanding estimated work."""
    if balance not in BALANCERS:
        raise TokenprintError(f"unknown balancer {balance!r}; valid: {', '.join(BALANCERS)}")
    if replicas == 1:
        return np.zeros(trace.n, dtype=np.int64)
    if balance == "round-robin":
        return np.arange(trace.n, dtype=np.int64) % replicas
    # work estimate: prefill + decode seconds at a typical batch (relative weights suffice)
    est = (trace.input_len * costs.matmul_flops_per_token / costs.flops_per_s
           + trace.output_len * (costs.dense_weight_bytes / costs.bytes_per_s / 16.0))
    # Each replica's backlog drains at the same rate, so the least-loaded replica is the one
    # whose queued work would finish first: a heap of those finish times.
    heap = [(0.0, j) for j in range(replicas)]
    out = np.empty(trace.n, dtype=np.int64)
    arr = trace.arrival_s.tolist()
    w = est.tolist()
    for i in range(trace.n):
        free_at, j = heap[0]
        t = arr[i]
        heapq.heapreplace(heap, ((free_at if free_at > t else t) + w[i], j))
        out[i] = j
    return out


@dataclass(frozen=True)
class Percentiles:
    """p50, p95, p99 and mean of a latency over the requests served (None when none was)."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None

    @classmethod
    def of(cls, x: NDArray[np.float64]) -> Percentiles:
        """Percentiles of the finite values of ``x``."""
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(None, None, None, None)
        p50, p95, p99 = np.percentile(x, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(x.mean()))

    def to_dict(self) -> dict[str, float | None]:
        """As JSON."""
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99, "mean": self.mean}


@dataclass
class SimResult:
    """Outputs of a simulation."""

    spec: ClusterSpec
    trace_name: str
    n_requests: int
    ttft_s: NDArray[np.float64]
    tpot_s: NDArray[np.float64]
    e2e_s: NDArray[np.float64]
    output_tokens: int
    served: NDArray[np.bool_]
    output_len: NDArray[np.int64]
    duration_s: float
    busy_s: float
    idle_s: float
    busy_energy_j: float
    idle_energy_j: float
    hourly: dict[int, tuple[float, float]]
    hourly_span: dict[int, float]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        """Busy plus idle energy of every GPU in the cluster."""
        return self.busy_energy_j + self.idle_energy_j

    def slo_mask(self, slo_ttft_s: float, slo_tpot_s: float) -> NDArray[np.bool_]:
        """Requests served within both targets."""
        return self.served & (self.ttft_s <= slo_ttft_s) & (self.tpot_s <= slo_tpot_s)


def simulate(trace: Trace, catalog: Catalog, spec: ClusterSpec, hourly: bool = False
             ) -> SimResult:
    """Replay ``trace`` through the cluster."""
    if not 1 <= spec.replicas <= MAX_REPLICAS:
        raise TokenprintError(f"replicas {spec.replicas} is invalid; it must be >= 1 and "
                              f"<= {MAX_REPLICAS:,}")
    if spec.max_batch < 1:
        raise TokenprintError(f"max batch {spec.max_batch} is invalid; it must be >= 1")
    model = catalog.model(spec.model)
    costs, info = replica_costs(catalog, spec)
    too_long = trace.input_len + trace.output_len > model.max_context
    owner = assign(trace, spec.replicas, spec.balance, costs)
    n = trace.n
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    busy = energy = 0.0
    hourly_acc: dict[int, list[float]] = {}
    iters = 0
    for j in range(spec.replicas):
        idx = np.nonzero((owner == j) & ~too_long)[0]
        if idx.size == 0:
            continue
        res = simulate_replica(trace.arrival_s[idx], trace.input_len[idx],
                               trace.output_len[idx], costs, spec.max_batch,
                               trace.start_s if hourly else None)
        first[idx] = res.first_token_s
        finish[idx] = res.finish_s
        busy += res.busy_s
        energy += res.busy_energy_j
        iters += res.iterations
        for h, (bs, e) in res.hourly_busy.items():
            slot = hourly_acc.setdefault(h, [0.0, 0.0])
            slot[0] += bs
            slot[1] += e
    served = np.isfinite(finish)
    end = float(np.nanmax(finish)) if served.any() else trace.duration_s
    duration = max(end, trace.duration_s) - float(trace.arrival_s[0])
    provisioned = duration * spec.replicas
    idle = max(provisioned - busy, 0.0)
    out_len = trace.output_len.astype(np.float64)
    ttft = first - trace.arrival_s
    tpot = np.where(out_len > 1, (finish - first) / np.maximum(out_len - 1, 1), 0.0)
    e2e = finish - trace.arrival_s
    span: dict[int, float] = {}
    if hourly:
        t0 = trace.start_s + float(trace.arrival_s[0])
        t1 = t0 + duration
        for h in range(int(t0 // S_PER_HOUR), int(t1 // S_PER_HOUR) + 1):
            overlap = min(t1, (h + 1) * S_PER_HOUR) - max(t0, h * S_PER_HOUR)
            if overlap > 0:
                span[h] = overlap * spec.replicas
    info.update({"iterations": iters, "n_rejected": int((~served).sum()),
                 "n_too_long": int(too_long.sum())})
    return SimResult(
        spec=spec, trace_name=trace.name, n_requests=n, ttft_s=ttft, tpot_s=tpot, e2e_s=e2e,
        output_tokens=int(trace.output_len[served].sum()), served=served,
        output_len=trace.output_len, duration_s=duration,
        busy_s=busy, idle_s=idle, busy_energy_j=energy, idle_energy_j=idle * costs.idle_w,
        hourly={h: (v[0], v[1]) for h, v in hourly_acc.items()}, hourly_span=span, info=info,
    )


@dataclass(frozen=True)
class SimCarbon:
    """Carbon of a simulation: operational and embodied with their ranges, and their sources."""

    operational_g: Estimate
    embodied_g: Estimate
    intensity_g_per_kwh: float   # the energy-weighted mean over the run
    output_tokens: int
    scope: str
    pue: float
    sources: dict[str, str]

    @property
    def total_g(self) -> Estimate:
        """Operational + embodied."""
        return self.operational_g + self.embodied_g

    @property
    def g_per_1k_tokens(self) -> float:
        """Total grams per 1,000 output tokens served."""
        return float(self.total_g.mid) / max(self.output_tokens, 1) * 1000

    def to_dict(self) -> dict[str, Any]:
        """As JSON (keys are a contract; see the README)."""
        op, emb, total = self.operational_g, self.embodied_g, self.total_g
        return {"operational_g": float(op.mid), "embodied_g": float(emb.mid),
                "total_g": float(total.mid),
                "operational_range_g": {"low": float(op.low), "high": float(op.high)},
                "embodied_range_g": {"low": float(emb.low), "high": float(emb.high)},
                "total_range_g": {"low": float(total.low), "high": float(total.high)},
                "intensity_g_per_kwh": self.intensity_g_per_kwh,
                "g_per_1k_tokens": self.g_per_1k_tokens,
                "scope": self.scope, "pue": self.pue, "sources": self.sources}


def carbon_of(res: SimResult, catalog: Catalog, region: str, *, scope: str = "device",
              lifetime_years: float = 5.0, pue: float = 1.0,
              intensity: IntensitySeries | None = None) -> SimCarbon:
    """Operational (constant or hourly intensity) and embodied carbon of a simulation, through
    ``tokenprint.carbon`` (so PUE and lifetime are validated there), with the range of the
    total and the sources of every factor.

    Embodied carbon is charged for provisioned time: every GPU of every replica for the whole
    simulated span, idle or not.
    """
    reg = catalog.region(region)
    gpu = catalog.gpu(res.spec.gpu)
    n_gpus = res.spec.replicas * res.spec.tp
    sources: dict[str, str] = {}
    if intensity is None:
        ci = reg.intensity_g_per_kwh.estimate
        op = Estimate(*(float(g) for g in charge(res.energy_j, [ci.low, ci.mid, ci.high],
                                                 pue=pue).operational_g))
        ci_mean = ci.mid
        sources["intensity"] = (f"{reg.id.upper()} annual ({reg.basis}, {reg.year}): "
                                f"{reg.intensity_g_per_kwh.source}")
    else:
        if not res.hourly_span:
            raise TokenprintError("hourly intensity needs the simulation run with hourly=True "
                                  "(give --start)")
        group_idle_w = res.idle_energy_j / res.idle_s if res.idle_s > 0 else 0.0
        hours = sorted(res.hourly_span)
        e_h = np.array([res.hourly.get(h, (0.0, 0.0))[1]
                        + max(res.hourly_span[h] - res.hourly.get(h, (0.0, 0.0))[0], 0.0)
                        * group_idle_w for h in hours])
        ci_h = intensity.at((np.array(hours, dtype=np.float64) + 0.5) * S_PER_HOUR)
        mid = float(charge(e_h, ci_h, pue=pue).operational_g.sum())
        op = Estimate.exact(mid)
        ci_mean = float(np.average(ci_h, weights=e_h)) if e_h.sum() > 0 else 0.0
        sources["intensity"] = f"{intensity.source} ({intensity.basis}), hour by hour"
    emb_one = gpu_embodied(gpu, catalog, scope)
    one = emb_one.total_g
    emb = Estimate(*(float(g) for g in charge(
        0.0, 0.0, [one.low * n_gpus, one.mid * n_gpus, one.high * n_gpus], res.duration_s,
        lifetime_years=lifetime_years).embodied_g))
    sources.update(emb_one.sources)
    sources["lifetime"] = (f"{lifetime_years:g} years over provisioned time ({n_gpus} GPUs × "
                           f"{res.duration_s:.0f} s)")
    return SimCarbon(op, emb, ci_mean, res.output_tokens, scope, pue, sources)


@dataclass(frozen=True)
class SimSummary:
    """What ``simulate`` reports for one configuration (``to_dict`` is its JSON)."""

    n_requests: int
    n_served: int
    n_too_long: int
    spec: ClusterSpec
    trace: str
    ttft_s: Percentiles
    tpot_s: Percentiles
    e2e_s: Percentiles
    slo_ttft_s: float
    slo_tpot_s: float
    slo_attainment: float
    output_tokens: int
    slo_output_tokens: int
    duration_s: float
    gpu_busy_s: float
    gpu_idle_s: float
    busy_energy_j: float
    idle_energy_j: float
    carbon: SimCarbon
    info: dict[str, Any]
    region: str | None = None
    ttft_first_tenth_s: float | None = None   # median TTFT of the earliest tenth of arrivals
    ttft_last_tenth_s: float | None = None    # ... and of the latest tenth

    @property
    def queue_grows(self) -> bool:
        """The replicas fall behind the arrivals: the latest requests wait far longer for their
        first token than the earliest (4× and past the TTFT target), so the wait keeps growing
        with the trace's length."""
        early, late = self.ttft_first_tenth_s, self.ttft_last_tenth_s
        if early is None or late is None:
            return False
        return late > max(4.0 * early, self.slo_ttft_s)

    @property
    def n_rejected(self) -> int:
        """Requests never served (too long for the context or the KV budget)."""
        return self.n_requests - self.n_served

    @property
    def energy_j(self) -> float:
        """Busy plus idle energy of every GPU."""
        return self.busy_energy_j + self.idle_energy_j

    @property
    def throughput_tok_s(self) -> float:
        """Output tokens per second over the simulated span."""
        return self.output_tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def g_per_1k_slo_tokens(self) -> float | None:
        """Total grams per 1,000 output tokens of requests that met both targets."""
        if not self.slo_output_tokens:
            return None
        return float(self.carbon.total_g.mid) / self.slo_output_tokens * 1000

    def to_dict(self) -> dict[str, Any]:
        """As JSON (keys are a contract; see the README)."""
        out: dict[str, Any] = {
            "n_requests": self.n_requests, "n_served": self.n_served,
            "n_rejected": self.n_rejected, "n_too_long": self.n_too_long,
            "model": self.spec.model, "gpu": self.spec.gpu, "replicas": self.spec.replicas,
            "tp": self.spec.tp, "max_batch": self.spec.max_batch, "trace": self.trace,
            "ttft_s": self.ttft_s.to_dict(), "tpot_s": self.tpot_s.to_dict(),
            "e2e_s": self.e2e_s.to_dict(),
            "slo": {"ttft_s": self.slo_ttft_s, "tpot_s": self.slo_tpot_s},
            "slo_attainment": self.slo_attainment,
            "output_tokens": self.output_tokens, "throughput_tok_s": self.throughput_tok_s,
            "duration_s": self.duration_s, "gpu_busy_s": self.gpu_busy_s,
            "gpu_idle_s": self.gpu_idle_s, "energy_j": self.energy_j,
            "busy_energy_j": self.busy_energy_j, "idle_energy_j": self.idle_energy_j,
            **self.carbon.to_dict(),
            "g_per_1k_slo_tokens": self.g_per_1k_slo_tokens,
            "queue": {"ttft_first_tenth_s": self.ttft_first_tenth_s,
                      "ttft_last_tenth_s": self.ttft_last_tenth_s, "grows": self.queue_grows},
            "source": "predicted",
            **{k: self.info.get(k) for k in ("stack", "profile", "calibrated", "calibration",
                                              "kv_budget_tokens", "iterations")},
        }
        if self.region is not None:
            out["region"] = self.region
        return out


def summary(res: SimResult, carbon: SimCarbon, slo_ttft_s: float, slo_tpot_s: float,
            region: str | None = None) -> SimSummary:
    """The summary of a simulation against latency targets."""
    ok = res.slo_mask(slo_ttft_s, slo_tpot_s)
    tenth = max(res.n_requests // 10, 1)
    early = res.ttft_s[:tenth][res.served[:tenth]]
    late = res.ttft_s[-tenth:][res.served[-tenth:]]
    return SimSummary(
        n_requests=res.n_requests, n_served=int(res.served.sum()),
        n_too_long=int(res.info.get("n_too_long", 0)), spec=res.spec, trace=res.trace_name,
        ttft_s=Percentiles.of(res.ttft_s), tpot_s=Percentiles.of(res.tpot_s),
        e2e_s=Percentiles.of(res.e2e_s), slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s,
        slo_attainment=float(ok.sum() / res.n_requests), output_tokens=res.output_tokens,
        slo_output_tokens=int(res.output_len[ok].sum()), duration_s=res.duration_s,
        gpu_busy_s=res.busy_s, gpu_idle_s=res.idle_s, busy_energy_j=res.busy_energy_j,
        idle_energy_j=res.idle_energy_j, carbon=carbon, info=res.info, region=region,
        ttft_first_tenth_s=float(np.median(early)) if early.size else None,
        ttft_last_tenth_s=float(np.median(late)) if late.size else None)
