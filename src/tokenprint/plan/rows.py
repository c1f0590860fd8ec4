"""What a plan is made of: its inputs, each simulated configuration, and a configuration
placed in a region with its carbon there."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenprint.predict.params import DEFAULT_STACK
from tokenprint.simulate.cluster import SimCarbon, SimResult
from tokenprint.traces import Trace


@dataclass
class PlanInputs:
    """What to plan for."""

    trace: Trace
    models: list[str]
    gpus: list[str]
    regions: list[str]
    max_batches: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    slo_ttft_s: float = 1.0
    slo_tpot_s: float = 0.2
    percentile: str = "p95"
    scope: str = "device"
    lifetime_years: float = 5.0
    pue: float = 1.0
    max_replicas: int = 64
    intensity_dir: Path | None = None
    deferrable: float = 0.0
    deadline_h: float = 0.0
    region_capacity: dict[str, int] = field(default_factory=dict)
    stack: str = DEFAULT_STACK
    tie_tolerance: float = 0.01


@dataclass
class Evaluated:
    """One simulated configuration (independent of region)."""

    model: str
    gpu: str
    tp: int
    max_batch: int
    replicas: int
    result: SimResult
    ttft_q: float
    tpot_q: float
    e2e_q: float
    feasible: bool

    @property
    def n_gpus(self) -> int:
        """GPUs provisioned."""
        return self.replicas * self.tp

    def label(self) -> dict[str, Any]:
        """The configuration as JSON."""
        return {"model": self.model, "gpu": self.gpu, "tp": self.tp, "replicas": self.replicas,
                "max_batch": self.max_batch, "gpus_total": self.n_gpus,
                "ttft_s": self.ttft_q, "tpot_s": self.tpot_q, "e2e_s": self.e2e_q}


@dataclass(frozen=True)
class PlanRow:
    """One simulated configuration placed in one region, with its carbon there."""

    config: Evaluated
    region: str
    carbon: SimCarbon

    @property
    def total_g(self) -> float:
        """Operational + embodied grams (central estimate)."""
        return float(self.carbon.total_g.mid)

    @property
    def e2e_s(self) -> float:
        """End-to-end latency at the planned percentile."""
        return self.config.e2e_q

    @property
    def energy_j(self) -> float:
        """Energy of every provisioned GPU over the trace."""
        return self.config.result.energy_j

    @property
    def gpus_total(self) -> int:
        """GPUs provisioned."""
        return self.config.n_gpus

    @property
    def feasible(self) -> bool:
        """Meets the latency targets with every request served."""
        return self.config.feasible

    def to_dict(self) -> dict[str, Any]:
        """As JSON; sources are given once at the top of the answer."""
        carbon = self.carbon.to_dict()
        carbon.pop("sources")
        return {**self.config.label(), "region": self.region, "feasible": self.feasible,
                "energy_j": self.energy_j, **carbon}
