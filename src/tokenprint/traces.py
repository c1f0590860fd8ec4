"""Request traces: Azure LLM inference CSV, Mooncake JSONL, synthetic Poisson; scaling, shifting.

Arrival times are seconds from the trace's first request; ``start_s`` (epoch seconds, UTC) places
the trace on the calendar so that hourly grid intensity applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tokenprint.errors import TokenprintError


@dataclass(frozen=True)
class Trace:
    """Arrivals and lengths of requests, sorted by arrival."""

    arrival_s: NDArray[np.float64]
    input_len: NDArray[np.int64]
    output_len: NDArray[np.int64]
    name: str
    start_s: float = 0.0

    def __post_init__(self) -> None:
        n = self.arrival_s.size
        if not (self.input_len.size == n == self.output_len.size):
            raise TokenprintError("trace arrays must have the same length")
        if n == 0:
            raise TokenprintError(f"trace {self.name!r} has no requests")

    @property
    def n(self) -> int:
        """Number of requests."""
        return int(self.arrival_s.size)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival."""
        return float(self.arrival_s[-1] - self.arrival_s[0])

    def scaled(self, rate_factor: float) -> Trace:
        """Replay at ``rate_factor`` × the original rate (inter-arrival times divided)."""
        if not rate_factor > 0:
            raise TokenprintError(f"time scale {rate_factor!r} is invalid; it must be > 0")
        return replace(self, arrival_s=self.arrival_s / rate_factor,
                       name=f"{self.name} ×{rate_factor:g}")

    def shifted(self, start_s: float) -> Trace:
        """Place the first request at ``start_s`` (epoch seconds, UTC)."""
        return replace(self, start_s=float(start_s))

    def head(self, n: int) -> Trace:
        """The first ``n`` requests."""
        return replace(self, arrival_s=self.arrival_s[:n], input_len=self.input_len[:n],
                       output_len=self.output_len[:n])


# the longest request a trace can hold: 10⁷ tokens each way (past every model's context)
MAX_TOKENS = 10_000_000
MAX_SYNTHETIC_REQUESTS = 1_000_000
MAX_SYNTHETIC_RATE = 1e5


def _lengths_in_range(path: Path, col: str, vals: NDArray[np.float64], row_offset: int) -> None:
    """Token counts must be whole numbers from 1 to ``MAX_TOKENS`` (before any int64 cast)."""
    bad = np.nonzero(~np.isfinite(vals) | (vals < 1) | (vals > MAX_TOKENS)
                     | (vals != np.floor(vals)))[0]
    if bad.size:
        i = int(bad[0])
        raise TokenprintError(f"trace {str(path)!r} row {i + row_offset}: {col} {vals[i]:g} is "
                              f"not a whole number of tokens from 1 to {MAX_TOKENS:,}")


def _check(path: Path, times: NDArray[np.float64], ins: NDArray[np.int64],
           outs: NDArray[np.int64], row_offset: int, allow_equal_times: bool) -> None:
    bad = np.nonzero((ins < 1) | (outs < 1))[0]
    if bad.size:
        i = int(bad[0])
        raise TokenprintError(
            f"trace {str(path)!r} row {i + row_offset}: lengths must be >= 1 (input {ins[i]}, "
            f"output {outs[i]})")
    d = np.diff(times)
    back = np.nonzero(d < 0)[0]
    if back.size:
        i = int(back[0]) + 1
        raise TokenprintError(
            f"trace {str(path)!r} row {i + row_offset}: timestamp is earlier than the row "
            "before; rows must be sorted by time")
    if not allow_equal_times:
        dup = np.nonzero(d == 0)[0]
        if dup.size:
            i = int(dup[0]) + 1
            raise TokenprintError(
                f"trace {str(path)!r} row {i + row_offset}: duplicate timestamp (same as the "
                "row before)")


def load_azure(path: str | Path) -> Trace:
    """Azure LLM inference trace: ``TIMESTAMP,ContextTokens,GeneratedTokens``."""
    p = Path(path)
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TokenprintError(f"trace {str(p)!r} is not a readable CSV: {exc}") from None
    need = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    if list(df.columns[:3]) != need and not set(need) <= set(df.columns):
        raise TokenprintError(f"trace {str(p)!r} has columns {list(df.columns)}; Azure format "
                              f"needs {','.join(need)}")
    ts = pd.to_datetime(df["TIMESTAMP"], errors="coerce", utc=True)
    bad = np.nonzero(ts.isna().to_numpy())[0]
    if bad.size:
        i = int(bad[0])
        raise TokenprintError(f"trace {str(p)!r} row {i + 2}: cannot read timestamp "
                              f"{df['TIMESTAMP'].iloc[i]!r}")
    out = []
    for col in ("ContextTokens", "GeneratedTokens"):
        vals = pd.to_numeric(df[col], errors="coerce")
        bad = np.nonzero(vals.isna().to_numpy())[0]
        if bad.size:
            i = int(bad[0])
            raise TokenprintError(f"trace {str(p)!r} row {i + 2}: {col} {df[col].iloc[i]!r} "
                                  "is not a number")
        _lengths_in_range(p, col, vals.to_numpy(dtype=np.float64), 2)
        out.append(vals.to_numpy().astype(np.int64))
    t = np.array([x.timestamp() for x in ts], dtype=np.float64)
    if t.size == 0:
        raise TokenprintError(f"trace {str(p)!r} has no requests (a header and no rows)")
    _check(p, t, out[0], out[1], 2, allow_equal_times=False)
    return Trace(t - t[0], out[0], out[1], f"azure:{p.name}", float(t[0]))


def load_mooncake(path: str | Path) -> Trace:
    """Mooncake JSONL: ``timestamp`` (ms), ``input_length``, ``output_length`` per line.

    Millisecond resolution makes equal timestamps normal here, so they are allowed.
    """
    p = Path(path)
    times, ins, outs = [], [], []
    with p.open() as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                times.append(float(rec["timestamp"]) / 1000.0)
                ins.append(float(rec["input_length"]))
                outs.append(float(rec["output_length"]))
            except (ValueError, KeyError, TypeError, OverflowError) as exc:
                raise TokenprintError(
                    f"trace {str(p)!r} line {i} (row {i}): needs numeric 'timestamp' (ms), "
                    f"'input_length', 'output_length' ({exc.__class__.__name__}: {exc})"
                ) from None
    t = np.array(times)
    if t.size == 0:
        raise TokenprintError(f"trace {str(p)!r} has no requests")
    bad_t = np.nonzero(~np.isfinite(t) | (t < 0) | (t > 7.3e9))[0]   # up to the year 2200
    if bad_t.size:
        raise TokenprintError(f"trace {str(p)!r} line {int(bad_t[0]) + 1}: timestamp "
                              f"{t[bad_t[0]] * 1000:g} ms is not a time from 1970 to 2200")
    fa, fb = np.array(ins, dtype=np.float64), np.array(outs, dtype=np.float64)
    _lengths_in_range(p, "input_length", fa, 1)
    _lengths_in_range(p, "output_length", fb, 1)
    a, b = fa.astype(np.int64), fb.astype(np.int64)
    _check(p, t, a, b, 1, allow_equal_times=True)
    return Trace(t - t[0], a, b, f"mooncake:{p.name}")


def load_trace(path: str | Path) -> Trace:
    """Azure CSV or Mooncake JSONL, told apart by extension."""
    from tokenprint.files import existing_file

    p = existing_file(path, "trace file")
    return load_mooncake(p) if p.suffix in (".jsonl", ".json") else load_azure(p)


def synthetic_poisson(n: int, rate_per_s: float, input_mean: float = 512,
                      output_mean: float = 256, seed: int = 0,
                      max_len: int = 8192) -> Trace:
    """Poisson arrivals with log-normal input and output lengths (σ = 0.8) around the means."""
    if not 1 <= n <= MAX_SYNTHETIC_REQUESTS:
        raise TokenprintError(f"synthetic trace of {n} requests is invalid; give 1 to "
                              f"{MAX_SYNTHETIC_REQUESTS:,}")
    if not 0 < rate_per_s <= MAX_SYNTHETIC_RATE:
        raise TokenprintError(f"synthetic rate {rate_per_s!r}/s is invalid; it must be > 0 and "
                              f"<= {MAX_SYNTHETIC_RATE:g}")
    for name, mean in (("input", input_mean), ("output", output_mean)):
        if not 1 <= mean <= max_len:
            raise TokenprintError(f"synthetic {name} mean {mean!r} is invalid; it must be from 1 "
                                  f"to {max_len} tokens")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_per_s, size=n)
    arrivals = np.cumsum(gaps) - gaps[0]

    def lengths(mean: float) -> NDArray[np.int64]:
        sigma = 0.8
        mu = np.log(mean) - sigma**2 / 2
        return np.clip(rng.lognormal(mu, sigma, size=n), 1, max_len).astype(np.int64)

    return Trace(arrivals, lengths(input_mean), lengths(output_mean),
                 f"poisson:{rate_per_s:g}/s,n={n},seed={seed}")
