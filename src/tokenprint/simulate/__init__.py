"""Trace replay of a serving cluster with continuous batching, energy and carbon."""

from tokenprint.simulate.cluster import (
    ClusterSpec,
    Percentiles,
    SimCarbon,
    SimResult,
    SimSummary,
    carbon_of,
    simulate,
    summary,
)
from tokenprint.traces import Trace, load_trace, synthetic_poisson

__all__ = ["ClusterSpec", "Percentiles", "SimCarbon", "SimResult", "SimSummary", "Trace",
           "carbon_of", "load_trace", "simulate", "summary", "synthetic_poisson"]
