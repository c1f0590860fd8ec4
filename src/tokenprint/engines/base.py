"""One interface for every inference engine: run a fixed-length batch, timed and metered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tokenprint.measure.base import EnergyMeter, Measurement

ENGINES = ("hf", "vllm", "openai")


class OutOfMemory(Exception):
    """The batch did not fit on the device (recorded as ``oom``; the sweep goes on)."""


@dataclass
class RunResult:
    """Timings and energy of one fixed-length batch: prefill then decode steps."""

    ttft_s: float
    step_s: list[float]
    prefill: Measurement | None
    decode: Measurement | None
    e2e_s: float
    output_tokens: int
    peak_memory_bytes: int | None = None
    itl_s: list[float] = field(default_factory=list)  # inter-token latencies, where per-token


class Engine(Protocol):
    """What the bench runner needs from an engine."""

    name: str
    device: str
    hardware_id: str
    dtype: str

    def run(self, batch: int, input_len: int, output_len: int,
            meter: EnergyMeter | None) -> RunResult:
        """Prefill ``batch`` prompts of ``input_len`` tokens, then decode to ``output_len``."""
        ...

    def versions(self) -> dict[str, str]:
        """Library versions that produced the numbers."""
        ...

    def close(self) -> None:
        """Free the model and device memory."""
        ...


def missing_extra(engine: str, extra: str, exc: ImportError) -> Exception:
    """The error for an engine whose optional dependency is not installed."""
    from tokenprint.errors import TokenprintError

    return TokenprintError(
        f"engine {engine!r} needs the optional extra: pip install 'tokenprint[{extra}]' "
        f"({exc.name or exc} is not installed)"
    )
