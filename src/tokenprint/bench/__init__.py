"""Benchmark sweeps: workloads, runner, results store, exports."""

from tokenprint.bench.runner import SweepSpec, run_sweep, validate_spec
from tokenprint.bench.store import ResultsStore

__all__ = ["ResultsStore", "SweepSpec", "run_sweep", "validate_spec"]
