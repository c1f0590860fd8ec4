"""What serving engines and GPU energy exporters put on their ``/metrics``, read into numbers.

Engines (their token counters and running requests; names from each project's docs):

* vLLM: ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total`` (counters),
  ``vllm:num_requests_running`` (gauge), label ``model_name``;
* SGLang: ``sglang:prompt_tokens_total``, ``sglang:generation_tokens_total``,
  ``sglang:num_running_reqs``, label ``model_name``;
* TGI: ``tgi_request_input_length`` and ``tgi_request_generated_tokens`` (histograms: their
  ``_sum`` counts tokens), ``tgi_batch_current_size`` (gauge).

Energy exporters (cumulative counters):

* NVIDIA DCGM exporter: ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``, millijoules per GPU;
* Kepler: ``kepler_container_gpu_joules_total``, joules per container.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tokenprint.errors import TokenprintError


@dataclass(frozen=True)
class EngineMetrics:
    """The series of one engine."""

    engine: str
    prompt_tokens: str
    generation_tokens: str
    running: str
    model_label: str | None


ENGINES = (
    EngineMetrics("vllm", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                  "vllm:num_requests_running", "model_name"),
    EngineMetrics("sglang", "sglang:prompt_tokens_total", "sglang:generation_tokens_total",
                  "sglang:num_running_reqs", "model_name"),
    EngineMetrics("tgi", "tgi_request_input_length_sum", "tgi_request_generated_tokens_sum",
                  "tgi_batch_current_size", None),
)

# energy exporters: series name and joules per unit
ENERGY_SERIES = {"dcgm": ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e-3),
                 "kepler": ("kepler_container_gpu_joules_total", 1.0)}


@dataclass(frozen=True)
class EngineReading:
    """One engine's counters at one scrape (summed over the models it serves)."""

    engine: str
    models: tuple[str, ...]
    prompt_tokens: float
    generation_tokens: float
    running: float


# a counter or gauge the watcher reads must lie in [0, MAX_SAMPLE]: 10¹⁵ tokens is a thousand
# years of a large fleet, 10¹⁵ J (after scaling) 280 GWh; past it a float can no longer count
# small increases (1e300 + 1000 == 1e300) and every later interval would read 0
MAX_SAMPLE = 1e15


def samples(text: str, where: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of an exposition, by its full name (``_total``, ``_sum`` kept). A counter
    exposed without ``_total`` (DCGM's) is found under both names: the parser adds the suffix.
    A series exposed twice (same name and labels; the format forbids it) counts once."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def put(name: str, labels: dict[str, str], value: float) -> None:
        key = (name, frozenset(labels.items()))
        if key not in seen:
            seen.add(key)
            out.setdefault(name, []).append((labels, value))

    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                put(s.name, dict(s.labels), float(s.value))
                if family.type == "counter" and s.name == f"{family.name}_total" \
                        and not family.name.endswith("_total"):
                    put(family.name, dict(s.labels), float(s.value))
    except ValueError as exc:
        raise TokenprintError(f"{where} is not Prometheus text exposition: {exc}") from None
    return out


def checked_total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, where: str,
                  scale: float = 1.0) -> float:
    """The sum of a series' samples (times ``scale``), refusing a sample that is not a finite
    number in [0, MAX_SAMPLE]: the caller records a gap with this reason, never a poisoned
    counter."""
    total = 0.0
    for labels, value in found.get(name, []):
        v = value * scale
        if not math.isfinite(v) or v < 0 or v > MAX_SAMPLE:
            lab = ",".join(f'{k}="{x}"' for k, x in sorted(labels.items()))
            raise TokenprintError(f"{where}: {name}{{{lab}}} is {value!r}; a counter or gauge "
                                  f"must be a finite number from 0 to {MAX_SAMPLE:g}: sample "
                                  "refused")
        total += v
    return total


def read_engine(text: str, where: str) -> EngineReading:
    """The token counters of whichever engine ``text`` comes from."""
    found = samples(text, where)
    for e in ENGINES:
        if e.generation_tokens in found:
            def total(name: str, found: dict = found) -> float:
                return checked_total(found, name, where)
            models = tuple(sorted({lab.get(e.model_label, "") for lab, _ in
                                   found[e.generation_tokens]} - {""})) if e.model_label else ()
            return EngineReading(e.engine, models, total(e.prompt_tokens),
                                 total(e.generation_tokens), total(e.running))
    names = sorted(found)[:8]
    raise TokenprintError(
        f"{where} exposes no serving engine's token counters (looked for "
        f"{', '.join(e.generation_tokens for e in ENGINES)}); it has {', '.join(names) or 'none'}"
        f"{' …' if len(found) > 8 else ''}")


def read_energy_j(text: str, source: str, where: str) -> float:
    """Joules so far of every GPU (DCGM) or container (Kepler) series in ``text``."""
    if source not in ENERGY_SERIES:
        raise TokenprintError(f"unknown energy exporter {source!r}; valid: "
                              f"{', '.join(ENERGY_SERIES)}")
    name, scale = ENERGY_SERIES[source]
    found = samples(text, where)
    if not found.get(name):
        raise TokenprintError(f"{where} has no {name} series ({source} energy counter)")
    return checked_total(found, name, where, scale)
