"""What ``plan`` answers, as one typed record built once (not a dict patched as it goes).

:meth:`PlanAnswer.to_dict` is ``plan.json`` and ``plan --json``: its keys and their order are a
contract users script against. Rows inside (the best plan, baselines, the Pareto front, the
table) are :meth:`tokenprint.plan.planner.PlanRow.to_dict` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlanHeader:
    """The inputs an answer echoes, and its basis."""

    trace: str
    n_requests: int
    targets: dict[str, Any]
    candidates_simulated: int
    skipped: list[str]
    scope: str
    lifetime_years: float
    pue: float
    intensity: str
    intensity_basis: str
    trace_duration_s: float


@dataclass(frozen=True)
class Infeasible:
    """Why no candidate meets the targets, and the closest one."""

    failing_targets: list[str]
    closest: dict[str, Any]
    message: str


@dataclass(frozen=True)
class RegionSplit:
    """The load split across regions under GPU capacities (HiGHS), and whether it took the
    headline from the best single-region plan (``best_kind``) or none keeps the capacities."""

    multi_region: dict[str, Any]
    constraints: dict[str, Any]
    best_kind: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class PlanAnswer:
    """A plan: the header, then either :class:`Infeasible` or the best placement with its
    baselines, savings, Pareto front and table (and a region split and a time shift where
    asked)."""

    header: PlanHeader
    infeasible: Infeasible | None = None
    best: dict[str, Any] | None = None
    tie_break: dict[str, Any] | None = None
    total_range_g: dict[str, float] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    home_region: str = ""
    baselines: dict[str, float] = field(default_factory=dict)
    baseline_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    savings_pct: dict[str, float] = field(default_factory=dict)
    savings_pct_same_region: dict[str, float] = field(default_factory=dict)
    pareto: list[dict[str, Any]] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    all_feasible: list[dict[str, Any]] = field(default_factory=list)
    split: RegionSplit | None = None
    time_shift: dict[str, Any] | None = None

    @property
    def feasible(self) -> bool:
        """Whether some candidate meets the targets."""
        return self.infeasible is None

    def to_dict(self) -> dict[str, Any]:
        """``plan.json``."""
        h = self.header
        out: dict[str, Any] = {
            "trace": h.trace, "n_requests": h.n_requests, "targets": h.targets,
            "candidates_simulated": h.candidates_simulated, "skipped": h.skipped,
            "scope": h.scope, "lifetime_years": h.lifetime_years, "pue": h.pue,
            "intensity": h.intensity, "intensity_basis": h.intensity_basis,
            "trace_duration_s": h.trace_duration_s, "feasible": self.feasible}
        if self.infeasible is not None:
            f = self.infeasible
            out.update({"best": None, "failing_targets": f.failing_targets,
                        "closest": f.closest, "message": f.message})
            return out
        out.update({
            "best": self.best, "tie_break": self.tie_break, "total_range_g": self.total_range_g,
            "sources": self.sources, "home_region": self.home_region,
            "baselines": self.baselines, "baseline_configs": self.baseline_configs,
            "savings_pct": self.savings_pct,
            "savings_pct_same_region": self.savings_pct_same_region,
            "pareto": self.pareto, "table": self.table, "all_feasible": self.all_feasible})
        if self.split is not None:
            out["multi_region"] = self.split.multi_region
            out["constraints"] = self.split.constraints
            if self.split.best_kind is not None:
                out["best_kind"] = self.split.best_kind
            if self.split.message is not None:
                out["message"] = self.split.message
        if self.time_shift is not None:
            out["time_shift"] = self.time_shift
        return out
