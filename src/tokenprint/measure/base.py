"""The energy-meter interface: windows of time whose energy a meter reports.

A meter is used like a stopwatch that also reads joules::

    meter.begin_window("prefill")
    ...                                # the work
    m = meter.end_window("prefill")    # Measurement(duration_s, energy_j, ...)

Every measurement says how it was obtained: ``kind`` is ``measured`` (a hardware counter or
sampled power) or ``estimated`` (a model of power, e.g. TDP × utilization). A meter that reads
nothing raises :class:`MeterError`, never returns a silent zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tokenprint.errors import TokenprintError

EnergyKind = Literal["measured", "estimated"]


class MeterError(TokenprintError):
    """A meter could not read energy (missing device, permission, zero reading)."""


@dataclass(frozen=True)
class Measurement:
    """Energy and time of one window; per-device energies where the meter has several."""

    duration_s: float
    energy_j: float
    meter: str
    kind: EnergyKind
    per_device_j: dict[str, float] = field(default_factory=dict)
    peak_power_w: float | None = None
    sampled_energy_j: float | None = None  # from integrated power samples, where also taken

    @property
    def mean_power_w(self) -> float:
        """Mean power over the window."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0


class EnergyMeter(Protocol):
    """What every meter provides."""

    name: str
    kind: EnergyKind

    def begin_window(self, key: str) -> None:
        """Start a named window."""
        ...

    def end_window(self, key: str) -> Measurement:
        """End a named window and return its measurement."""
        ...

    def close(self) -> None:
        """Release devices and threads."""
        ...


def measure_idle(meter: EnergyMeter, duration_s: float = 2.0) -> Measurement:
    """Energy over a quiet interval: the idle floor, recorded before a sweep."""
    meter.begin_window("__idle__")
    time.sleep(duration_s)
    return meter.end_window("__idle__")


def check_positive(m: Measurement) -> Measurement:
    """Refuse a window that read no energy at all: that is a broken meter, not free work."""
    if not m.energy_j > 0:
        raise MeterError(
            f"meter {m.meter!r} read {m.energy_j} J over {m.duration_s:.3f} s; a meter that reads "
            "nothing is an error (try --meter estimate, or check device permissions)"
        )
    return m
