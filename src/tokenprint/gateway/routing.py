"""Upstream state, health and routing policies: carbon, latency, round-robin."""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tokenprint.carbon.charge import charge
from tokenprint.gateway.accounting import UpstreamModel, WorkShareAttributor
from tokenprint.gateway.config import UpstreamConfig

P95_REFRESH_S = 0.5


@dataclass
class UpstreamState:
    """One upstream at run time."""

    cfg: UpstreamConfig
    model: UpstreamModel
    inflight: int = 0
    conc_start: dict[str, int] = field(default_factory=dict)  # in flight at each start
    latencies: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=256))
    failures: int = 0
    open_until: float = 0.0
    healthy: bool = True
    intensity: float = 0.0
    intensity_method: str = ""
    attributor: WorkShareAttributor | None = None
    _p95: float | None = None
    _p95_at: float = float("-inf")

    @property
    def name(self) -> str:
        """Upstream name."""
        return self.cfg.name

    def auth_headers(self) -> dict[str, str]:
        """The upstream's own credentials (never sent back to clients)."""
        env = self.cfg.api_key_env
        if env and os.environ.get(env):
            return {"Authorization": f"Bearer {os.environ[env]}"}
        return {}

    def served_names(self) -> set[str]:
        """Model names a client may ask this upstream for."""
        names = {self.cfg.model}
        if self.cfg.served_model:
            names.add(self.cfg.served_model)
        return names

    def p95_latency_s(self, window_s: float = 300.0) -> float | None:
        """Recent p95 end-to-end latency (None without recent requests); recomputed at most
        every ``P95_REFRESH_S`` so routing stays cheap under load."""
        now = time.monotonic()
        if now - self._p95_at < P95_REFRESH_S:
            return self._p95
        recent = [lat for t, lat in self.latencies if now - t <= window_s]
        self._p95 = float(np.percentile(recent, 95)) if recent else None
        self._p95_at = now
        return self._p95

    def available(self, now: float) -> bool:
        """Healthy and not held out by the circuit breaker."""
        return self.healthy and now >= self.open_until

    def record_success(self, latency_s: float) -> None:
        """A request finished well."""
        self.failures = 0
        self.latencies.append((time.monotonic(), latency_s))

    def record_failure(self, threshold: int, open_s: float) -> None:
        """A connect error, 5xx or timeout: open the breaker after ``threshold`` in a row."""
        self.failures += 1
        if self.failures >= threshold:
            self.open_until = time.monotonic() + open_s
            self.failures = 0

    def expected_carbon_g(self, pue: float) -> float:
        """Expected grams for a typical request (512 in / 128 out) at the current load."""
        e = self.model.energy(512, 128, min(self.inflight + 1, 1024))
        nominal_duration_s = 128 * 0.05 + 0.2  # a nominal request, for the embodied share
        return float(charge(e.energy_j, self.intensity, self.model.embodied_g,
                            nominal_duration_s / (self.inflight + 1), pue=pue,
                            lifetime_years=self.model.lifetime_years).total_g)


class Router:
    """Orders candidate upstreams for a request under a policy."""

    def __init__(self, policy: str, latency_target_s: float, pue: float) -> None:
        self.policy = policy
        self.latency_target_s = latency_target_s
        self.pue = pue
        self._rr = itertools.count()

    def signal(self, st: UpstreamState) -> str:
        """What the policy ranks ``st`` by, for the ledger row (the accounts' own intensity may
        be another signal: ``routing_intensity``)."""
        if self.policy != "carbon":
            return self.policy
        return f"carbon: {st.intensity:.0f} g/kWh ({st.intensity_method})"

    def order(self, candidates: list[UpstreamState]) -> list[UpstreamState]:
        """Best first; unavailable and full upstreams go last."""
        now = time.monotonic()
        usable = [u for u in candidates if u.available(now)]
        rest = [u for u in candidates if not u.available(now)]
        roomy = [u for u in usable if u.inflight < u.cfg.capacity]
        full = [u for u in usable if u.inflight >= u.cfg.capacity]
        if self.policy == "round-robin":
            k = next(self._rr)
            ranked = roomy[k % len(roomy):] + roomy[:k % len(roomy)] if roomy else []
        elif self.policy == "latency":
            ranked = sorted(roomy, key=lambda u: (u.p95_latency_s() or 0.0, u.inflight))
        else:
            meets = [u for u in roomy if (u.p95_latency_s() or 0.0) <= self.latency_target_s]
            slow = [u for u in roomy if u not in meets]
            ranked = sorted(meets, key=lambda u: u.expected_carbon_g(self.pue)) + \
                sorted(slow, key=lambda u: u.p95_latency_s() or 0.0)
        return ranked + sorted(full, key=lambda u: u.inflight) + rest
