"""Trace replay of a serving cluster with continuous batching, energy and carbon."""

from tokenprint.simulate.cluster import ClusterSpec, SimResult, carbon_of, simulate, summary
from tokenprint.traces import Trace, load_trace, synthetic_poisson

__all__ = ["ClusterSpec", "SimResult", "Trace", "carbon_of", "load_trace", "simulate", "summary",
           "synthetic_poisson"]
