"""Per-request energy and carbon inside the gateway.

* **predicted** (no meter on the serving host): the request's prefill and decode energy come from
  ``predict`` for its token counts at the concurrency observed on its upstream while it ran;
  embodied carbon is the upstream's provisioned hardware per second × the request's duration,
  shared with the requests running beside it.
* **measured** (NVML on the serving host): the GPUs' energy in each interval (a sampler closes
  intervals every ``interval_s`` and at every request's end) is split among the requests in flight
  by their share of work in that interval — prefill tokens and decode tokens, each weighted by
  the predicted cost of its phase. Energy when nothing is in flight is idle: kept unattributed
  (reported on its own) or spread over the next requests, by option.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.catalog import Catalog
from tokenprint.measure.counter import EnergyCounter
from tokenprint.predict.params import DEFAULT_STACK
from tokenprint.predict.serving import ServingEnergy


@dataclass(frozen=True)
class RequestEnergy:
    """Energy of one request by phase, and how it was obtained."""

    prefill_j: float
    decode_j: float
    method: str

    @property
    def energy_j(self) -> float:
        """Prefill + decode."""
        return self.prefill_j + self.decode_j


class UpstreamModel:
    """Predicted costs for one upstream (model × GPU × GPUs per replica): its serving energy
    (:class:`tokenprint.predict.serving.ServingEnergy`, as ``watch`` predicts it) and its
    embodied carbon."""

    def __init__(self, catalog: Catalog, model: str, gpu: str, gpus: int, scope: str,
                 lifetime_years: float, stack: str = DEFAULT_STACK) -> None:
        self.serving = ServingEnergy(catalog, model, gpu, gpus, stack)
        self.stack = self.serving.stack
        self.tp = gpus
        self.max_context = self.serving.max_context   # bounds an upstream's prompt tokens
        # the replica's embodied carbon, charged through tokenprint.carbon.charge (which checks
        # the lifetime's bounds, as the CLI does); per second of use for routing estimates
        self.embodied_g = float(gpu_embodied(catalog.gpu(gpu), catalog, scope).total_g.mid
                                * gpus)
        self.lifetime_years = lifetime_years
        self.embodied_g_per_s = float(charge(0.0, 0.0, self.embodied_g, 1.0,
                                             lifetime_years=lifetime_years).embodied_g)
        self.idle_w = self.serving.idle_w

    def energy(self, prompt_tokens: int, completion_tokens: int, concurrency: float
               ) -> RequestEnergy:
        """Predicted prefill and decode joules of one request among ``concurrency`` others
        (concurrency rounded to a whole request; answers are memoized)."""
        pre, dec = self.serving.request_j(int(prompt_tokens), int(completion_tokens),
                                          max(round(float(concurrency)), 1))
        return RequestEnergy(pre, dec, "predicted")

    def footprint(self, energy: RequestEnergy, intensity_g_per_kwh: float, pue: float,
                  duration_s: float, concurrency: float, intensity_source: str = "",
                  region: str = "") -> RequestFootprint:
        """One request's footprint on this upstream (:func:`carbon_of_request`)."""
        return carbon_of_request(energy, intensity_g_per_kwh, pue, self.embodied_g,
                                 self.lifetime_years, duration_s, concurrency, intensity_source,
                                 region)

    def cost_per_token(self) -> tuple[float, float]:
        """Predicted joules per prefill token and per decode token (batch 8, 512/128)."""
        return self.serving.per_token_j(8)


@dataclass
class _Live:
    start_s: float
    prompt_tokens: int
    first_token_s: float | None = None
    tokens: int = 0            # tokens seen so far (the first comes from the prefill)
    last_tokens: int = 0       # decode tokens counted at the last interval close
    prefill_j: float = 0.0
    decode_j: float = 0.0
    tpot_guess_s: float = 0.02
    ttft_guess_s: float = 0.2


@dataclass
class WorkShareAttributor:
    """Splits metered interval energy among in-flight requests by their work in the interval."""

    prefill_cost_j: float
    decode_cost_j: float
    source: EnergyCounter
    idle_mode: str = "unattributed"
    live: dict[str, _Live] = field(default_factory=dict)
    idle_j: float = 0.0
    _pool_j: float = 0.0
    _last_t: float = field(default_factory=time.monotonic)
    _last_e: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._last_e = self.source.read_j()

    def start(self, rid: str, prompt_tokens: int, now: float | None = None,
              tpot_guess_s: float = 0.02, ttft_guess_s: float = 0.2) -> None:
        """A request entered the upstream. The guesses place the work of requests whose tokens
        are not seen as they come (non-streaming)."""
        with self._lock:
            self._close(now)
            self.live[rid] = _Live(self._last_t, prompt_tokens, tpot_guess_s=tpot_guess_s,
                                   ttft_guess_s=ttft_guess_s)

    def progress(self, rid: str, tokens: int, now: float | None = None) -> None:
        """A streaming request has produced ``tokens`` tokens so far."""
        t = time.monotonic() if now is None else now
        with self._lock:
            r = self.live.get(rid)
            if r is not None:
                if r.first_token_s is None and tokens > 0:
                    r.first_token_s = t
                r.tokens = tokens

    def finish(self, rid: str, tokens: int, now: float | None = None,
               prompt_tokens: int | None = None) -> RequestEnergy:
        """The request ended: close the interval now and return its attributed energy.
        ``prompt_tokens``, when the upstream reported it, replaces the count guessed at start
        for this last interval."""
        with self._lock:
            r = self.live.get(rid)
            if r is not None:
                r.tokens = max(r.tokens, tokens)
                if prompt_tokens:
                    r.prompt_tokens = prompt_tokens
            self._close(now)
            r = self.live.pop(rid, None)
        if r is None:
            return RequestEnergy(0.0, 0.0, "measured")
        return RequestEnergy(r.prefill_j, r.decode_j, "measured")

    def tick(self, now: float | None = None) -> None:
        """Close an interval (called by a sampler every few hundred ms)."""
        with self._lock:
            self._close(now)

    def _close(self, now: float | None) -> None:
        t = time.monotonic() if now is None else now
        e = self.source.read_j()
        de = max(e - self._last_e, 0.0)
        t0, t1 = self._last_t, t
        self._last_t, self._last_e = t, e
        if t1 <= t0 and de == 0:
            return
        if not self.live:
            if self.idle_mode == "spread":
                self._pool_j += de
            else:
                self.idle_j += de
            return
        de += self._pool_j
        self._pool_j = 0.0
        weights_p, weights_d = {}, {}
        for rid, r in self.live.items():
            # prefill work: the part of [start, first token] inside this interval; without
            # streamed tokens the first token is placed at the predicted TTFT
            seen = r.first_token_s is not None
            pre_end = r.first_token_s if seen else r.start_s + r.ttft_guess_s
            pre_end = float(pre_end) if pre_end is not None else t1
            overlap = max(0.0, min(pre_end, t1) - max(r.start_s, t0))
            pre_span = max(pre_end - r.start_s, 1e-9)
            weights_p[rid] = self.prefill_cost_j * r.prompt_tokens * overlap / pre_span
            if seen:
                decoded = max(r.tokens - 1, 0)
                new_tokens = float(decoded - r.last_tokens)
                r.last_tokens = decoded
            else:  # decode tokens guessed from the predicted time per token
                new_tokens = max(0.0, t1 - max(t0, pre_end)) / max(r.tpot_guess_s, 1e-6)
            weights_d[rid] = self.decode_cost_j * max(new_tokens, 0.0)
        total = sum(weights_p.values()) + sum(weights_d.values())
        for rid, r in self.live.items():
            if total > 0:
                r.prefill_j += de * weights_p[rid] / total
                r.decode_j += de * weights_d[rid] / total
            else:  # no work recorded yet: share evenly as prefill
                r.prefill_j += de / len(self.live)


@dataclass(frozen=True)
class RequestFootprint:
    """Energy and carbon of one request, and where the intensity came from."""

    energy: RequestEnergy
    operational_g: float
    embodied_g: float
    intensity_g_per_kwh: float
    intensity_source: str = ""
    region: str = ""

    @property
    def total_g(self) -> float:
        """Operational + embodied."""
        return self.operational_g + self.embodied_g

    def to_dict(self) -> dict[str, float | str]:
        """As the ``usage.tokenprint`` object of a response (keys are a contract)."""
        e = self.energy
        return {"energy_j": e.energy_j, "prefill_j": e.prefill_j, "decode_j": e.decode_j,
                "operational_g": self.operational_g, "embodied_g": self.embodied_g,
                "total_g": self.total_g, "intensity_g_per_kwh": self.intensity_g_per_kwh,
                "method": e.method, "intensity_source": self.intensity_source,
                "region": self.region}


def carbon_of_request(energy: RequestEnergy, intensity_g_per_kwh: float, pue: float,
                      embodied_g: float, lifetime_years: float, duration_s: float,
                      concurrency: float, intensity_source: str = "", region: str = ""
                      ) -> RequestFootprint:
    """Operational and embodied grams of one request: its energy at the grid's intensity, and
    the upstream's embodied carbon (``embodied_g`` over ``lifetime_years``) for its duration
    shared with the requests beside it."""
    bill = charge(energy.energy_j, intensity_g_per_kwh, embodied_g,
                  duration_s / max(concurrency, 1.0), pue=pue, lifetime_years=lifetime_years)
    return RequestFootprint(energy, float(bill.operational_g), float(bill.embodied_g),
                            intensity_g_per_kwh, intensity_source, region)
