"""An organisation's contractual instruments for market-based Scope 2, read from a TOML file
(``ledger report --contracts``, ``fleet report --contracts``, ``contracts`` in gateway.toml)::

    matching = "annual"                  # or "hourly" (gives the 24/7 carbon-free share)
    [residual_mix]                       # g CO2e/kWh where no instrument covers the energy
    FR = 60.0
    [[contract]]
    kind = "ppa"                         # certificate | ppa | supplier
    region = "FR"
    start = "2026-01-01T00:00:00Z"
    end = "2027-01-01T00:00:00Z"
    mwh = 120.0                          # none for a supplier's factor on all the rest
    g_per_kwh = 0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenprint.carbon.intensity import parse_time
from tokenprint.carbon.scope2 import MATCHING, Contract
from tokenprint.errors import TokenprintError
from tokenprint.files import read_toml_file


@dataclass(frozen=True)
class Contracts:
    """The organisation's instruments, residual mixes and matching rule."""

    contracts: tuple[Contract, ...]
    residual_g_per_kwh: dict[str, float]
    matching: str = "annual"


def load_contracts(path: str | Path) -> Contracts:
    """A contracts TOML file (module docstring); errors name the entry and the field."""
    doc = read_toml_file(path, "contracts file")
    matching = str(doc.get("matching", "annual"))
    if matching not in MATCHING:
        raise TokenprintError(f"contracts file {str(path)!r}: matching {matching!r} is "
                              f"invalid; valid: {', '.join(MATCHING)}")
    mix = doc.get("residual_mix", {})
    if not isinstance(mix, dict) or not all(isinstance(v, int | float) and 0 <= v <= 2000
                                            for v in mix.values()):
        raise TokenprintError(f"contracts file {str(path)!r}: [residual_mix] must map regions "
                              "to g/kWh from 0 to 2000")
    out = []
    for i, c in enumerate(doc.get("contract", []), 1):
        try:
            out.append(Contract(kind=str(c["kind"]), region=str(c["region"]).upper(),
                                start_s=parse_time(str(c["start"])),
                                end_s=parse_time(str(c["end"])),
                                g_per_kwh=float(c["g_per_kwh"]),
                                mwh=None if c.get("mwh") is None else float(c["mwh"])))
        except KeyError as exc:
            raise TokenprintError(f"contracts file {str(path)!r}, contract {i}: missing "
                                  f"{exc.args[0]!r}") from None
        except TokenprintError as exc:
            raise TokenprintError(f"contracts file {str(path)!r}, contract {i}: {exc}") from None
    return Contracts(tuple(out), {str(k).upper(): float(v) for k, v in mix.items()}, matching)
