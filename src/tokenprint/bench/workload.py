"""Workloads: fixed length pairs, or (input, output) pairs drawn from a trace with a seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenprint.errors import TokenprintError
from tokenprint.traces import load_trace


@dataclass(frozen=True)
class LengthPair:
    """One (input, output) length pair and the workload it came from."""

    input_len: int
    output_len: int
    workload: str = "fixed"


def read_trace_lengths(path: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Input and output lengths from an Azure CSV or Mooncake JSONL trace."""
    trace = load_trace(path)
    return trace.input_len, trace.output_len, trace.name


def sample_pairs(path: str | Path, n: int, seed: int = 0,
                 max_context: int | None = None) -> list[LengthPair]:
    """``n`` (input, output) pairs drawn from a trace with a seed (pairs kept together)."""
    ins, outs, name = read_trace_lengths(path)
    ok = (ins > 0) & (outs > 0)
    if max_context is not None:
        ok &= ins + outs <= max_context
    if not ok.any():
        raise TokenprintError(f"trace {str(path)!r} has no usable length pair")
    idx = np.random.default_rng(seed).choice(np.nonzero(ok)[0], size=n, replace=True)
    return [LengthPair(int(ins[i]), int(outs[i]), f"{name}#seed{seed}") for i in idx]


def fixed_pairs(input_lens: list[int], output_lens: list[int]) -> list[LengthPair]:
    """Every combination of the given lengths."""
    return [LengthPair(i, o) for i in input_lens for o in output_lens]
