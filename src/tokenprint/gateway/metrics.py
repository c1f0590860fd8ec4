"""Prometheus metrics of the gateway (one registry per app; summed over worker processes in
prometheus_client's multiprocess mode when ``serve --workers`` runs several)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
ADDED_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)


@dataclass
class UpstreamMetrics:
    """One upstream's metric children (see ``Metrics.of_upstream``)."""

    requests: Callable[[str], Counter]
    prompt_tokens: Counter
    completion_tokens: Counter
    energy: Counter
    operational: Counter
    embodied: Counter
    ttft: Histogram
    duration: Histogram
    added: Histogram
    _by_status: dict[str, Counter] = field(default_factory=dict)

    def request(self, status: int) -> Counter:
        """The request counter for one status."""
        key = str(status)
        c = self._by_status.get(key)
        if c is None:
            c = self._by_status[key] = self.requests(key)
        return c


@dataclass
class Metrics:
    """Counters and histograms by upstream, model, region and kind."""

    registry: CollectorRegistry
    requests: Counter
    tokens: Counter
    energy: Counter
    carbon: Counter
    idle_energy: Counter
    ttft: Histogram
    duration: Histogram
    added: Histogram
    ledger_dropped: Counter
    team_requests: Counter
    team_carbon: Counter
    scope2: Counter
    max_teams: int = 50
    _teams: set[str] = field(default_factory=set)

    def charge_team(self, team: str | None, operational_g: float, embodied_g: float,
                    market_g: float | None = None) -> None:
        """Count a request and its carbon under its team, operational both ways (Scope 2
        location- and market-based); past ``max_teams`` distinct teams the rest count as
        ``other`` (a label per team must not grow without bound)."""
        name = team or "none"
        if name not in self._teams:
            if len(self._teams) >= self.max_teams:
                name = "other"
            else:
                self._teams.add(name)
        self.team_requests.labels(name).inc()
        self.team_carbon.labels(name, "operational").inc(operational_g)
        self.team_carbon.labels(name, "embodied").inc(embodied_g)
        self.scope2.labels(name, "location").inc(operational_g)
        self.scope2.labels(name, "market").inc(operational_g if market_g is None else market_g)

    def of_upstream(self, upstream: str, model: str, region: str) -> UpstreamMetrics:
        """The children of every metric for one upstream, resolved once (``labels()`` costs a
        lock and a lookup on each call)."""
        labels = (upstream, model, region)
        return UpstreamMetrics(
            requests=lambda status: self.requests.labels(*labels, status),
            prompt_tokens=self.tokens.labels(*labels, "prompt"),
            completion_tokens=self.tokens.labels(*labels, "completion"),
            energy=self.energy.labels(*labels),
            operational=self.carbon.labels(*labels, "operational"),
            embodied=self.carbon.labels(*labels, "embodied"),
            ttft=self.ttft.labels(upstream, model),
            duration=self.duration.labels(upstream, model),
            added=self.added.labels(upstream),
        )

    def collected(self) -> CollectorRegistry:
        """What ``/metrics`` exposes: this process's registry, or, when the gateway runs
        several worker processes (``$PROMETHEUS_MULTIPROC_DIR`` set), all of theirs summed."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg

    @classmethod
    def create(cls, max_teams: int = 50) -> Metrics:
        """A fresh registry with every metric (``max_teams`` distinct team labels at most)."""
        reg = CollectorRegistry()
        labels = ["upstream", "model", "region"]
        return cls(
            registry=reg,
            requests=Counter("tokenprint_requests", "Requests served", [*labels, "status"],
                             registry=reg),
            tokens=Counter("tokenprint_tokens", "Tokens processed", [*labels, "kind"],
                           registry=reg),
            energy=Counter("tokenprint_energy_joules", "Energy attributed to requests", labels,
                           registry=reg),
            carbon=Counter("tokenprint_carbon_grams", "Carbon attributed to requests (g CO2e)",
                           [*labels, "kind"], registry=reg),
            idle_energy=Counter("tokenprint_idle_energy_joules", "Metered energy with no request "
                                "in flight (unattributed)", ["upstream"], registry=reg),
            ttft=Histogram("tokenprint_ttft_seconds", "Time to first token", ["upstream", "model"],
                           buckets=LATENCY_BUCKETS, registry=reg),
            duration=Histogram("tokenprint_request_duration_seconds", "Request duration",
                               ["upstream", "model"], buckets=LATENCY_BUCKETS, registry=reg),
            added=Histogram("tokenprint_gateway_added_seconds", "The gateway's own time on a "
                            "request's critical path, outside the upstream call", ["upstream"],
                            buckets=ADDED_BUCKETS, registry=reg),
            ledger_dropped=Counter("tokenprint_ledger_dropped", "Ledger rows dropped because "
                                   "the write queue was full (the database refused writes too "
                                   "long)", registry=reg),
            team_requests=Counter("tokenprint_team_requests", "Requests by the team of their "
                                  "API key (none: an unnamed key)", ["team"], registry=reg),
            team_carbon=Counter("tokenprint_team_carbon_grams", "Carbon by the team of the "
                                "request's API key (g CO2e)", ["team", "kind"], registry=reg),
            scope2=Counter("tokenprint_scope2_grams", "Operational carbon by team, Scope 2 "
                           "location-based (grid average) and market-based (contracts in "
                           "gateway.toml, else equal to location-based) (g CO2e)",
                           ["team", "basis"], registry=reg),
            max_teams=max_teams,
        )
