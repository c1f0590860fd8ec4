"""``tokenprint watch``: carbon of a running deployment from the metrics it already exports.

Every interval the watcher scrapes the engines' ``/metrics`` (token counters, requests running)
and an energy source, turns the counters' increases into the interval's tokens and joules, and
charges them through ``tokenprint.carbon``: operational at the grid's intensity over the interval,
embodied for the provisioned GPUs over its length. Each interval becomes one ledger row and
advances ``tokenprint_watch_*`` counters on the watcher's own ``/metrics``.

Counters that go backwards (a restarted server) restart from zero: the interval counts the new
value and says so. A scrape that fails leaves a ``gap`` row with no numbers (never zeros); the
next good interval spans from the last good reading and says how long the gap was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import ClassVar

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from tokenprint.carbon.amortize import check_lifetime
from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import check_scope, gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.carbon.resolver import IntensityResolver
from tokenprint.catalog import Catalog
from tokenprint.database import Database
from tokenprint.errors import TokenprintError
from tokenprint.fleet.exposition import read_energy_j, read_engine
from tokenprint.fleet.fetch import bounded_get
from tokenprint.measure.counter import EnergyCounter
from tokenprint.predict.params import DEFAULT_STACK
from tokenprint.predict.serving import ServingEnergy

DB_NAME = "watch.sqlite"
# the labels of every tokenprint_watch_* series (team and project empty when not given)
WATCH_LABELS = ("deployment", "model", "gpu", "region", "team", "project")


@dataclass(frozen=True)
class WatchInterval:
    """One interval of one deployment, as the ledger keeps it (numbers None in a gap)."""

    deployment: str
    model: str
    gpu: str
    gpus: int
    region: str
    start_utc: float
    end_utc: float
    status: str                       # "ok" or "gap"
    engine: str | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    running: float | None = None
    energy_j: float | None = None
    energy_method: str | None = None  # dcgm, kepler, nvml (measured) or predicted
    intensity_g_per_kwh: float | None = None
    intensity_source: str | None = None
    operational_g: float | None = None
    embodied_g: float | None = None
    total_g: float | None = None
    g_per_1k_tokens: float | None = None
    note: str = ""
    team: str | None = None           # who the deployment bills to (organisation accounts)
    project: str | None = None

    @property
    def duration_s(self) -> float:
        """Length of the interval."""
        return self.end_utc - self.start_utc


class ExporterEnergy:
    """Energy from a DCGM exporter's or Kepler's ``/metrics``."""

    def __init__(self, source: str, url: str, client: httpx.Client) -> None:
        self.method, self.url, self.client = source, url, client

    def read_j(self) -> float:
        """Joules so far, summed over the exporter's GPUs (DCGM) or containers (Kepler)."""
        return read_energy_j(_get(self.client, self.url), self.method, self.url)


SCRAPE_DEADLINE_S = 10.0        # one scrape, whole (a page dripping a byte at a time is cut)
MAX_SCRAPE_BYTES = 32 << 20     # an exposition past this is not a metrics page


def _get(client: httpx.Client, url: str) -> str:
    """A metrics page, whole within ``SCRAPE_DEADLINE_S`` and ``MAX_SCRAPE_BYTES``."""
    page = bounded_get(client, url, f"cannot scrape {url}", SCRAPE_DEADLINE_S, MAX_SCRAPE_BYTES)
    if page.status != 200:
        raise TokenprintError(f"cannot scrape {url}: HTTP {page.status}")
    return page.text


def increase(previous: float | None, current: float) -> tuple[float, bool]:
    """A counter's increase since ``previous``; a counter that went backwards was restarted
    and counts from zero (``True`` says so)."""
    if previous is None:
        return 0.0, False
    if current < previous:
        return current, True
    return current - previous, False


class PredictedEnergy:
    """Energy the model predicts for the tokens seen, never below the GPUs' idle floor
    (:class:`tokenprint.predict.serving.ServingEnergy`, as the gateway predicts it)."""

    method = "predicted"

    def __init__(self, catalog: Catalog, model: str, gpu: str, gpus: int,
                 stack: str = DEFAULT_STACK) -> None:
        self.catalog, self.model, self.gpu, self.gpus = catalog, model, gpu, gpus
        self.serving = ServingEnergy(catalog, model, gpu, gpus, stack)

    def joules(self, prompt_tokens: float, generation_tokens: float, running: float,
               duration_s: float) -> float:
        """Prefill and decode joules per token at the running batch (nominal 512/128
        lengths), times the tokens; at least the idle floor over the interval."""
        return self.serving.interval_j(prompt_tokens, generation_tokens, running, duration_s)


class WatchLedger:
    """One row per interval in ``DIR/watch.sqlite`` (WAL; each row committed at once), or in
    the ``intervals`` table of a shared PostgreSQL ledger (``url``) that the watchers of many
    hosts write and ``fleet report --ledger`` sums."""

    COLUMNS = tuple(f.name for f in fields(WatchInterval))
    NEWER: ClassVar[dict[str, str]] = {"team": "TEXT", "project": "TEXT"}   # added later

    def __init__(self, results_dir: str | Path, url: str | None = None) -> None:
        d = Path(results_dir)
        try:
            if url is None:
                d.mkdir(parents=True, exist_ok=True)
            self.db = Database(url if url is not None else d / DB_NAME, timeout_s=5.0)
            kinds = {"str": "TEXT", "str | None": "TEXT", "int": "INTEGER"}
            cols = ", ".join(f"{f.name} {kinds.get(str(f.type), 'REAL')}"
                             for f in fields(WatchInterval) if f.name not in self.NEWER)
            self.db.ensure_schema(f"CREATE TABLE IF NOT EXISTS intervals ({cols});",
                                  {"intervals": self.NEWER})
        except OSError as exc:
            raise TokenprintError(f"cannot open the watch ledger in {str(d)!r}: {exc}") from None
        except self.db.errors as exc:
            raise TokenprintError(f"cannot open the watch ledger {self.db.where!r}: "
                                  f"{exc}") from None
        self.where = self.db.where
        self._insert = (f"INSERT INTO intervals ({', '.join(self.COLUMNS)}) VALUES "
                        f"({', '.join('?' * len(self.COLUMNS))})")

    def add(self, row: WatchInterval) -> None:
        """Append one interval."""
        with self.db.transaction():
            self.db.run(self._insert, astuple(row))

    def rows(self, start_s: float = float("-inf"), end_s: float = float("inf")
             ) -> list[WatchInterval]:
        """The intervals ending in ``[start_s, end_s]``, oldest first."""
        got = self.db.rows(f"SELECT {', '.join(self.COLUMNS)} FROM intervals WHERE end_utc >= ? "
                           "AND end_utc <= ? ORDER BY start_utc, end_utc, deployment",
                           (max(start_s, -1e300), min(end_s, 1e300)))
        return [WatchInterval(*r) for r in got]

    def gaps_since(self, deployment: str, t0: float) -> list[float]:
        """Start times of the deployment's gap rows written since ``t0``."""
        return [r[0] for r in self.db.rows("SELECT start_utc FROM intervals WHERE status = "
                                           "'gap' AND deployment = ? AND start_utc >= ?",
                                           (deployment, t0))]

    def close(self) -> None:
        """Close the database."""
        self.db.close()


class WatchMetrics:
    """The watcher's own ``/metrics``: running totals per deployment and model."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = list(WATCH_LABELS)
        r = self.registry
        self.energy = Counter("tokenprint_watch_energy_joules", "Energy of the deployment's "
                              "GPUs", labels, registry=r)
        self.operational = Counter("tokenprint_watch_operational_grams", "Operational carbon",
                                   labels, registry=r)
        self.embodied = Counter("tokenprint_watch_embodied_grams", "Embodied carbon of the "
                                "provisioned GPUs", labels, registry=r)
        self.tokens = Counter("tokenprint_watch_tokens", "Tokens served", [*labels, "kind"],
                              registry=r)
        self.per_1k = Gauge("tokenprint_watch_grams_per_1k_tokens", "Total carbon per 1,000 "
                            "generated tokens over the last interval", labels, registry=r)
        self.gaps = Counter("tokenprint_watch_gaps", "Intervals lost to failed scrapes", labels,
                            registry=r)
        self.resets = Counter("tokenprint_watch_counter_resets", "Source counters seen going "
                              "backwards (restarts)", labels, registry=r)

    def record(self, row: WatchInterval, resets: int) -> None:
        """Advance the counters by one interval."""
        lab = (row.deployment, row.model, row.gpu, row.region, row.team or "",
               row.project or "")
        if resets:
            self.resets.labels(*lab).inc(resets)
        if row.status != "ok":
            self.gaps.labels(*lab).inc()
            return
        self.energy.labels(*lab).inc(row.energy_j or 0.0)
        self.operational.labels(*lab).inc(row.operational_g or 0.0)
        self.embodied.labels(*lab).inc(row.embodied_g or 0.0)
        self.tokens.labels(*lab, "prompt").inc(row.prompt_tokens or 0.0)
        self.tokens.labels(*lab, "generation").inc(row.generation_tokens or 0.0)
        if row.g_per_1k_tokens is not None:
            self.per_1k.labels(*lab).set(row.g_per_1k_tokens)


@dataclass
class _Last:
    t: float
    prompt: list[float]
    generation: list[float]
    energy: float | None


class Watcher:
    """Scrape, difference and charge one deployment, interval by interval."""

    def __init__(self, catalog: Catalog, *, endpoints: list[str], model: str, gpu: str,
                 gpus: int, region: str, energy: EnergyCounter | PredictedEnergy,
                 ledger: WatchLedger, metrics: WatchMetrics, deployment: str | None = None,
                 intensity: IntensitySeries | None = None, scope: str = "device",
                 lifetime_years: float = 5.0, pue: float = 1.0, timeout_s: float = 5.0,
                 client: httpx.Client | None = None,
                 live: IntensityResolver | None = None, team: str | None = None,
                 project: str | None = None) -> None:
        if not endpoints:
            raise TokenprintError("--metrics needs at least one URL")
        if gpus < 1:
            raise TokenprintError(f"--gpus {gpus} is invalid; it must be >= 1")
        self.catalog = catalog
        self.model_id = catalog.model(model).id
        self.gpu_id = catalog.gpu(gpu).id
        self.region = catalog.region(region)
        self.endpoints, self.gpus, self.energy = endpoints, gpus, energy
        self.deployment = deployment or f"{self.model_id}@{self.gpu_id}"
        self.ledger, self.metrics, self.intensity = ledger, metrics, intensity
        self.team, self.project = team, project
        self.live = live   # the live intensity (tokenprint.carbon.resolver), or None
        self.scope, self.pue = check_scope(scope), pue
        self.lifetime_years = check_lifetime(lifetime_years)
        self.client = client or httpx.Client(timeout=timeout_s)
        one = gpu_embodied(catalog.gpu(self.gpu_id), catalog, scope).total_g.mid
        self.embodied_one_g = float(one)
        self._last: _Last | None = None

    def _intensity(self, t0: float, t1: float) -> tuple[float, str]:
        if self.live is not None:   # the live value at the interval's end (cached, with fallback)
            value, source = asyncio.run(self.live.current(self.region.id.upper(), t1))
            return float(value), f"{source}, at the interval's end"
        if self.intensity is None:
            q = self.region.intensity_g_per_kwh
            return q.value, f"{self.region.id.upper()} annual ({self.region.basis}): {q.source}"
        mean = float(self.intensity.mean_over(t0, t1))
        return mean, f"{self.intensity.source} ({self.intensity.basis}), interval mean"

    def _row(self, t0: float, t1: float, status: str, **values: object) -> WatchInterval:
        return WatchInterval(self.deployment, self.model_id, self.gpu_id, self.gpus,
                             self.region.id.upper(), t0, t1, status, team=self.team,
                             project=self.project, **values)  # type: ignore[arg-type]

    def step(self, now: float | None = None) -> WatchInterval | None:
        """Scrape once; the interval since the last good scrape, written and returned (None for
        the first scrape, which only sets the baseline)."""
        t = time.time() if now is None else now
        try:
            # the energy counter first: a reading taken at ``t``, before the scrapes' latency
            e_now = None if isinstance(self.energy, PredictedEnergy) else self.energy.read_j()
            readings = [read_engine(_get(self.client, url), url) for url in self.endpoints]
        except TokenprintError as exc:
            if self._last is None:
                raise
            row = self._row(self._last.t, t, "gap", note=str(exc))
            self.ledger.add(row)
            self.metrics.record(row, 0)
            return row
        cur = _Last(t, [r.prompt_tokens for r in readings],
                    [r.generation_tokens for r in readings], e_now)
        last, self._last = self._last, cur
        if last is None:
            return None
        notes, resets = [], 0
        prompt = gen = 0.0
        for url, p0, p1, g0, g1 in zip(self.endpoints, last.prompt, cur.prompt, last.generation,
                                       cur.generation, strict=True):
            dp, rp = increase(p0, p1)
            dg, rg = increase(g0, g1)
            prompt, gen = prompt + dp, gen + dg
            if rp or rg:
                resets += 1
                notes.append(f"{url}: token counters went backwards (engine restarted); counted "
                             "from zero")
        running = float(sum(r.running for r in readings))
        duration = t - last.t
        if isinstance(self.energy, PredictedEnergy):
            energy = self.energy.joules(prompt, gen, running, duration)
        else:
            assert e_now is not None
            energy, reset = increase(last.energy, e_now)
            if reset:
                resets += 1
                notes.append(f"{self.energy.method} energy counter went backwards; counted from "
                             "zero")
        gap = [r for r in self.ledger_gaps_since(last.t)]
        if gap:
            notes.append(f"spans a gap of {duration:.0f} s ({len(gap)} failed scrape(s))")
        ci, source = self._intensity(last.t, t)
        bill = charge(energy, ci, self.embodied_one_g * self.gpus, duration, pue=self.pue,
                      lifetime_years=self.lifetime_years, intensity_source=source)
        op, emb = float(bill.operational_g), float(bill.embodied_g)
        row = self._row(last.t, t, "ok", engine=",".join(sorted({r.engine for r in readings})),
                        prompt_tokens=prompt, generation_tokens=gen, running=running,
                        energy_j=energy, energy_method=self.energy.method,
                        intensity_g_per_kwh=ci, intensity_source=source, operational_g=op,
                        embodied_g=emb, total_g=op + emb,
                        g_per_1k_tokens=(op + emb) / gen * 1000 if gen > 0 else None,
                        note="; ".join(notes))
        self.ledger.add(row)
        self.metrics.record(row, resets)
        return row

    def ledger_gaps_since(self, t0: float) -> list[float]:
        """Start times of gap rows written since ``t0`` (the last good reading)."""
        return self.ledger.gaps_since(self.deployment, t0)

    def close(self) -> None:
        """Close the HTTP client."""
        with contextlib.suppress(Exception):
            self.client.close()


def run_loop(watcher: Watcher, every_s: float, iterations: int, stopped: Callable[[], bool],
             on_row: Callable[[WatchInterval], None]) -> int:
    """The sidecar's loop: one interval every ``every_s`` seconds (steady, not drifting with the
    time a step takes) until ``stopped()`` or ``iterations`` rows (0: no limit); each recorded
    row goes to ``on_row``. Returns how many were recorded."""
    done = 0
    next_t = time.monotonic()
    while not stopped():
        row = watcher.step()
        if row is not None:
            done += 1
            on_row(row)
            if iterations and done >= iterations:
                break
        next_t += every_s
        while not stopped() and time.monotonic() < next_t:
            time.sleep(min(0.2, max(next_t - time.monotonic(), 0.0)))
    return done
