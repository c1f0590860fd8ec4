"""``tokenprint fleet report``: carbon by deployment × hour, after the fact, from Prometheus.

For each deployment (a label set mapped to a catalog model, GPU, count and region) the report
asks Prometheus's HTTP API (``query_range``) for the increase of the engine's token counters and
of the energy counter in each step (``increase()`` handles counter resets), and the share of the
step with requests running. Energy is measured where a counter is named (DCGM exporter in mJ,
Kepler in J) and predicted from the tokens otherwise. Carbon goes through ``tokenprint.carbon``:
operational at the step's grid intensity, embodied at the provisioned GPU count for every step.
A step with no samples is reported as such, never as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import load_intensity_csv
from tokenprint.carbon.scope2 import sci_g_per_unit
from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.files import read_toml_file
from tokenprint.fleet.exposition import ENERGY_SERIES, ENGINES
from tokenprint.fleet.fetch import bounded_get
from tokenprint.fleet.watch import WATCH_LABELS, PredictedEnergy

MAX_POINTS = 11_000   # Prometheus refuses a query_range of more points than this


class Deployment(BaseModel):
    """One deployment in the deployments file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._@:-]+$")
    match: dict[str, str] = Field(default_factory=dict)   # label = value on the engine series
    model: str
    gpu: str
    gpus: int = Field(ge=1)
    region: str
    energy: str = "predicted"          # predicted | dcgm | kepler
    energy_match: dict[str, str] = Field(default_factory=dict)
    intensity_file: str | None = None
    stack: str = "vllm-2025"
    team: str | None = None            # who it bills to, as the gateway's [[api_key]] tables
    project: str | None = None


def load_deployments(path: str | Path) -> list[Deployment]:
    """Deployments from a TOML file of ``[[deployment]]`` tables; errors name the table."""
    doc = read_toml_file(path, "deployments file")
    tables = doc.get("deployment")
    if not isinstance(tables, list) or not tables:
        raise TokenprintError(f"deployments file {str(path)!r} has no [[deployment]] tables")
    out = []
    for i, t in enumerate(tables):
        try:
            d = Deployment.model_validate(t)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise TokenprintError(f"deployments file {str(path)!r}, deployment {i + 1}: field "
                                  f"{'.'.join(map(str, e['loc']))!r}: {e['msg']}") from None
        if d.energy not in ("predicted", *ENERGY_SERIES):
            raise TokenprintError(f"deployment {d.name!r}: energy {d.energy!r} is invalid; "
                                  f"valid: predicted, {', '.join(ENERGY_SERIES)}")
        out.append(d)
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise TokenprintError("deployment names must be unique in the deployments file")
    return out


def selector(labels: dict[str, str]) -> str:
    """A PromQL label selector ``{a="b",…}`` with values escaped."""
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class _Answer(BaseModel):
    """Prometheus's HTTP API envelope."""

    status: Literal["success", "error"]
    data: Any = None
    error: str | None = None


class _RangeSeries(BaseModel):
    """One series of a range query: its labels and [time, "value"] pairs."""

    metric: dict[str, str]
    values: list[tuple[float, str]]


class _Matrix(BaseModel):
    resultType: Literal["matrix"]
    result: list[_RangeSeries]


class _SeriesName(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    name: str = Field(alias="__name__")


MAX_ANSWER_BYTES = 256 << 20   # one query_range answer (11,000 points × thousands of series)
# an increase() per step above this (tokens or joules) is no measurement: 10¹⁸ is a million
# years of a large fleet in one step
MAX_STEP_VALUE = 1e18


def _shape_error(url: str, what: str, exc: ValidationError) -> TokenprintError:
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "the answer"
    return TokenprintError(f"{url} answered {what} in a shape that is not Prometheus's: {where}: "
                           f"{first['msg']}")


@dataclass
class Prometheus:
    """The HTTP API of a Prometheus server; every answer's shape is checked (pydantic) and a
    sample that is not a finite number in [0, MAX_STEP_VALUE] is refused: that step has no
    data, and ``refused`` counts it with the reason."""

    url: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))
    deadline_s: float = 60.0
    refused: list[str] = field(default_factory=list)

    def _get(self, path: str, params: dict[str, str]) -> Any:
        what = params.get("query", path)
        # Prometheus answers its errors as JSON with a 4xx status: the body is read either way
        raw = bounded_get(self.client, f"{self.url.rstrip('/')}{path}",
                          f"cannot reach Prometheus at {self.url}", self.deadline_s,
                          MAX_ANSWER_BYTES, params).body
        try:
            body = _Answer.model_validate_json(raw)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise TokenprintError(f"{self.url} is not a Prometheus API (its answer to "
                                      f"{what!r} is not JSON)") from None
            raise _shape_error(self.url, repr(what), exc) from None
        if body.status != "success":
            raise TokenprintError(f"Prometheus refused {what!r}: {body.error or 'no reason'}")
        return body.data

    def names(self, match: str) -> set[str]:
        """Series names matching a selector."""
        data = self._get("/api/v1/series", {"match[]": match})
        try:
            return {s.name for s in TypeAdapter(list[_SeriesName]).validate_python(data)}
        except ValidationError as exc:
            raise _shape_error(self.url, f"series of {match!r}", exc) from None

    def _matrix(self, query: str, start: float, end: float, step_s: float) -> list[_RangeSeries]:
        data = self._get("/api/v1/query_range", {"query": query, "start": f"{start:.3f}",
                                                 "end": f"{end:.3f}", "step": f"{step_s:g}s"})
        try:
            return _Matrix.model_validate(data).result
        except ValidationError as exc:
            raise _shape_error(self.url, repr(query), exc) from None

    def _points(self, query: str, series: _RangeSeries, start: float, step_s: float, n: int
                ) -> list[tuple[int, float]]:
        """(step, value) of one series' valid samples; the others are refused and counted."""
        out = []
        for t, raw in series.values:
            k = round((t - start) / step_s)
            if not 0 <= k < n:
                continue
            try:
                v = float(raw)
            except ValueError:
                v = math.nan
            if math.isnan(v) and raw.lower() == "nan":
                continue   # Prometheus's own "no value" (0/0): no data, not a fault
            if not math.isfinite(v) or v < 0 or v > MAX_STEP_VALUE:
                self.refused.append(f"{query} at {t:.0f}: {raw!r} refused (a finite number "
                                    f"from 0 to {MAX_STEP_VALUE:g} is valid)")
                continue
            out.append((k, v))
        return out

    def range_by(self, query: str, labels: tuple[str, ...], start: float, end: float,
                 step_s: float) -> dict[tuple[str, ...], pd.Series]:
        """A query's values at each step, one series per combination of ``labels``."""
        n = self._steps(start, end, step_s)
        out: dict[tuple[str, ...], pd.Series] = {}
        times = start + step_s * np.arange(n)
        for series in self._matrix(query, start, end, step_s):
            key = tuple(series.metric.get(k, "") for k in labels)
            values = np.full(n, np.nan)
            for k, v in self._points(query, series, start, step_s, n):
                values[k] = v
            out[key] = pd.Series(values, index=times)
        return out

    @staticmethod
    def _steps(start: float, end: float, step_s: float) -> int:
        n = int((end - start) // step_s) + 1
        if n > MAX_POINTS:
            raise TokenprintError(f"{n} steps is more than Prometheus returns in one query "
                                  f"({MAX_POINTS}); use a longer --step or a shorter window")
        return n

    def range_sum(self, query: str, start: float, end: float, step_s: float) -> pd.Series:
        """A query's values at each step, summed over the series it returns (NaN where none
        had a sample)."""
        n = self._steps(start, end, step_s)
        times = start + step_s * np.arange(n)
        total = np.full(n, np.nan)
        for series in self._matrix(query, start, end, step_s):
            for k, v in self._points(query, series, start, step_s, n):
                total[k] = (0.0 if np.isnan(total[k]) else total[k]) + v
        return pd.Series(total, index=times)


@dataclass(frozen=True)
class ReportWindow:
    """What to report on: ``[start, end]`` in steps of ``step_s`` (each step ends at its time)."""

    start_s: float
    end_s: float
    step_s: float = 3600.0


def engine_of(prom: Prometheus, d: Deployment) -> tuple[str, str, str, str]:
    """(engine, prompt series, generation series, running series) the deployment exposes."""
    sel = selector(d.match)
    wanted = "|".join(e.generation_tokens for e in ENGINES)
    names = prom.names(f'{{__name__=~"{wanted}"' + (f",{sel[1:]}" if d.match else "}"))
    for e in ENGINES:
        if e.generation_tokens in names:
            return e.engine, e.prompt_tokens, e.generation_tokens, e.running
    raise TokenprintError(f"deployment {d.name!r}: no engine token counters match {sel} in "
                          f"Prometheus (looked for {wanted.replace('|', ', ')})")


def deployment_table(prom: Prometheus, catalog: Catalog, d: Deployment, w: ReportWindow,
                     scope: str, lifetime_years: float, pue: float) -> pd.DataFrame:
    """One row per step of one deployment: tokens, energy, carbon, utilization."""
    engine, prompt_s, gen_s, running_s = engine_of(prom, d)
    sel, rng = selector(d.match), f"[{w.step_s:g}s]"
    gen = prom.range_sum(f"sum(increase({gen_s}{sel}{rng}))", w.start_s, w.end_s, w.step_s)
    prompt = prom.range_sum(f"sum(increase({prompt_s}{sel}{rng}))", w.start_s, w.end_s,
                            w.step_s)
    running = prom.range_sum(f"sum(avg_over_time({running_s}{sel}{rng}))", w.start_s, w.end_s,
                             w.step_s)
    busy = prom.range_sum(f"avg_over_time((sum({running_s}{sel}) > bool 0){rng[:-1]}:])",
                          w.start_s, w.end_s, w.step_s)
    if d.energy == "predicted":
        pred = PredictedEnergy(catalog, d.model, d.gpu, d.gpus, d.stack)
        energy = pd.Series([pred.joules(p, g, r, w.step_s) if not np.isnan(g) else np.nan
                            for p, g, r in zip(prompt.fillna(0), gen, running.fillna(0),
                                               strict=True)], index=gen.index)
        method = "predicted"
    else:
        name, scale = ENERGY_SERIES[d.energy]
        energy = prom.range_sum(f"sum(increase({name}{selector(d.energy_match)}{rng}))",
                                w.start_s, w.end_s, w.step_s) * scale
        method = d.energy
    region = catalog.region(d.region)
    if d.intensity_file:
        series = load_intensity_csv(d.intensity_file, fill=True, region=d.region)
        ci = pd.Series(series.mean_over(gen.index - w.step_s, gen.index), index=gen.index)
        ci_source = f"{series.source} ({series.basis})"
    else:
        ci = pd.Series(region.intensity_g_per_kwh.value, index=gen.index)
        ci_source = f"{region.id.upper()} annual ({region.basis})"
    emb_one = float(gpu_embodied(catalog.gpu(d.gpu), catalog, scope).total_g.mid)
    bill = charge(energy.fillna(0).to_numpy(), ci.to_numpy(), emb_one * d.gpus, w.step_s,
                  pue=pue, lifetime_years=lifetime_years)
    embodied = pd.Series(np.broadcast_to(bill.embodied_g, gen.shape), index=gen.index)
    op = pd.Series(bill.operational_g, index=gen.index).where(energy.notna())
    total = op + embodied
    df = pd.DataFrame({
        "deployment": d.name, "team": d.team, "project": d.project,
        "model": catalog.model(d.model).id, "gpu": catalog.gpu(d.gpu).id,
        "gpus": d.gpus, "region": region.id.upper(), "engine": engine,
        "end_utc": pd.to_datetime(gen.index, unit="s", utc=True),
        "prompt_tokens": prompt, "generation_tokens": gen, "mean_running": running,
        "utilization": busy, "energy_j": energy, "energy_method": method,
        "intensity_g_per_kwh": ci, "operational_g": op, "embodied_g": embodied,
        "total_g": total,
        "g_per_1k_tokens": (total / gen * 1000).where(gen > 0),
        "status": np.where(gen.isna(), "no data", np.where(energy.isna(), "no energy", "ok")),
        "intensity_source": ci_source,
    })
    return df.reset_index(drop=True)


def fleet_report(prom: Prometheus, catalog: Catalog, deployments: list[Deployment],
                 w: ReportWindow, scope: str = "device", lifetime_years: float = 5.0,
                 pue: float = 1.0) -> pd.DataFrame:
    """Every deployment's steps, stacked."""
    if w.end_s < w.start_s:
        raise TokenprintError("the report window is shorter than one step; give a longer "
                              "window or a shorter --step")
    if w.step_s <= 0:
        raise TokenprintError(f"--step {w.step_s:g} s is invalid; it must be > 0")
    return pd.concat([deployment_table(prom, catalog, d, w, scope, lifetime_years, pue)
                      for d in deployments], ignore_index=True)


WATCH_KEYS = WATCH_LABELS


def watched_report(prom: Prometheus, w: ReportWindow) -> pd.DataFrame:
    """Deployments charged by ``tokenprint watch`` (its ``tokenprint_watch_*`` series), step by
    step: the carbon watch computed, summed per step (no deployments file needed)."""
    rng = f"[{w.step_s:g}s]"
    by = ", ".join(WATCH_KEYS)

    def q(metric: str, extra: str = "") -> dict[tuple[str, ...], pd.Series]:
        return prom.range_by(f"sum by ({by}) (increase(tokenprint_watch_{metric}_total{extra}"
                             f"{rng}))", WATCH_KEYS, w.start_s, w.end_s, w.step_s)

    op, emb, energy = q("operational_grams"), q("embodied_grams"), q("energy_joules")
    gen, prompt = q("tokens", '{kind="generation"}'), q("tokens", '{kind="prompt"}')
    if not op:
        raise TokenprintError("Prometheus has no tokenprint_watch_* series in the window; run "
                              "tokenprint watch beside the deployments, or give --deployments")
    frames = []
    for key, o in op.items():
        nan = pd.Series(np.nan, index=o.index)
        e, g = emb.get(key, nan), gen.get(key, nan)
        frames.append(pd.DataFrame({
            "deployment": key[0], "team": key[4] or None, "project": key[5] or None,
            "model": key[1], "gpu": key[2], "gpus": np.nan, "region": key[3], "engine": "watch",
            "end_utc": pd.to_datetime(o.index, unit="s", utc=True),
            "prompt_tokens": prompt.get(key, nan), "generation_tokens": g,
            "mean_running": np.nan, "utilization": np.nan,
            "energy_j": energy.get(key, nan), "energy_method": "tokenprint watch",
            "intensity_g_per_kwh": np.nan, "operational_g": o, "embodied_g": e,
            "total_g": o + e, "g_per_1k_tokens": ((o + e) / g * 1000).where(g > 0),
            "status": np.where(o.isna(), "no data", "ok"),
            "intensity_source": "as tokenprint watch charged it"}).reset_index(drop=True))
    return pd.concat(frames, ignore_index=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Totals per deployment over the window (steps without data left out, and counted)."""
    table = table.assign(**{c: None for c in ("team", "project") if c not in table},
                         **{c: table["operational_g"] for c in ("location_g", "market_g")
                            if c not in table})
    g = table.groupby("deployment", sort=False)
    def total(col: pd.Series) -> float:   # a deployment with no data has no total, not 0
        return float(col.sum(min_count=1))

    out = g.agg(team=("team", "first"), project=("project", "first"),
                model=("model", "first"), gpu=("gpu", "first"), gpus=("gpus", "first"),
                region=("region", "first"), generation_tokens=("generation_tokens", total),
                energy_j=("energy_j", total), operational_g=("operational_g", total),
                location_g=("location_g", total), market_g=("market_g", total),
                embodied_g=("embodied_g", "sum"), total_g=("total_g", total),
                steps=("status", "size"),
                steps_without_data=("status", lambda s: int((s != "ok").sum())))
    # the GPUs were provisioned in every step: embodied counts them all, operational the steps
    # with data (their number is given)
    out["total_g"] = out["operational_g"] + out["embodied_g"]
    out["g_per_1k_tokens"] = (out["total_g"] / out["generation_tokens"] * 1000).where(
        out["generation_tokens"] > 0)
    out["sci_g_per_1k_tokens"] = sci_g_per_unit(out["operational_g"], out["embodied_g"],
                                                out["generation_tokens"] / 1000.0)
    return out.reset_index()


# what the SCI figure of a fleet report covers (ISO/IEC 21031:2024's E, I, M and R)
SCI_BOUNDARY = ("SCI = (E × I + M) / R: E the serving GPUs' energy (measured where a counter is "
                "named, else predicted) × PUE, I the location-based grid intensity, M the "
                "embodied carbon of the provisioned GPUs amortized over their lifetime, R 1,000 "
                "generated tokens; hosts' CPUs, networking and idle spares are outside")
