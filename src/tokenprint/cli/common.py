"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tokenprint.catalog import Catalog, get_catalog
from tokenprint.errors import TokenprintError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option("--catalog", help="Extra catalog TOML file(s) that extend or override entries "
                 "(also $TOKENPRINT_CATALOG).", show_default=False),
]
LedgerUrlOpt = Annotated[str | None, typer.Option(
    "--ledger", metavar="URL", callback=lambda v: v if v is None else _ledger_url(v),
    help="A shared PostgreSQL ledger (postgresql://USER@HOST:PORT/DB; password from "
         "PGPASSWORD or ~/.pgpass) instead of the SQLite file in --results.")]


def _ledger_url(url: str) -> str:
    from tokenprint.database import check_url

    return check_url(url)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV (one row per record; nested "
                                      "fields as dotted columns) instead of a table.")]


def load(catalog_files: list[Path] | None) -> Catalog:
    """The catalog with the user's files applied."""
    return get_catalog(list(catalog_files or []))


DURATION_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(text: str, what: str) -> float:
    """``15s``, ``30m``, ``1h``, ``7d`` → seconds (> 0); one clear error otherwise."""
    t = (text or "").strip()
    if t and t[-1] in DURATION_UNITS_S and t[:-1].replace(".", "", 1).isdigit() \
            and float(t[:-1]) > 0:
        return float(t[:-1]) * DURATION_UNITS_S[t[-1]]
    raise TokenprintError(f"{what} {text!r} is invalid; use a length such as 15s, 30m, 1h or 7d")


def cli_time(text: str, option: str) -> float:
    """An ISO-8601 time from the command line as epoch seconds; one without a time zone is read
    as UTC and a note on stderr says so (a local time would otherwise shift silently)."""
    import re

    from tokenprint.carbon.intensity import parse_time

    seconds = parse_time(text)
    if not re.search(r"(Z|[+-]\d{2}:?\d{2})$", text.strip(), re.IGNORECASE):
        err_console.print(f"note: {option} {text} has no time zone; read as UTC (add Z, or an "
                          "offset such as +02:00, to say which)", style="yellow",
                          highlight=False)
    return seconds


def print_csv(rows: list[dict[str, Any]]) -> None:
    """Write records as CSV to stdout: nested fields flattened to dotted columns
    (``ttft_s.p95``), lists as JSON text, non-finite numbers empty."""
    import io

    import pandas as pd

    flat = pd.json_normalize([_clean(r) for r in rows], sep=".")
    for col in flat.columns:
        if flat[col].map(lambda v: isinstance(v, list | dict)).any():
            flat[col] = flat[col].map(lambda v: json.dumps(v) if isinstance(v, list | dict)
                                      else v)
    buf = io.StringIO()
    flat.to_csv(buf, index=False)
    typer.echo(buf.getvalue(), nl=False)


def print_json(obj: Any) -> None:
    """Write JSON to stdout (plain, no colour codes), NaN as null."""
    typer.echo(json.dumps(_clean(obj), indent=2, sort_keys=False))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def split_list(text: str, what: str) -> list[str]:
    """Split a comma-separated option into a non-empty list."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise TokenprintError(f"{what} list {text!r} is empty")
    return items


def int_list(text: str, what: str, minimum: int = 1) -> list[int]:
    """Parse ``1,2,4`` into ints >= ``minimum``, naming a bad value."""
    out = []
    for item in split_list(text, what):
        try:
            v = int(item)
        except ValueError:
            raise TokenprintError(f"{what} {item!r} is not an integer") from None
        if v < minimum:
            raise TokenprintError(f"{what} {v} is invalid; it must be >= {minimum}")
        out.append(v)
    return out


def number(text: str | float | None, what: str) -> float:
    """Parse a finite number given on the command line, naming the option when it is not one."""
    if text is None:
        raise TokenprintError(f"{what} is required")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise TokenprintError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise TokenprintError(f"{what} {text!r} is invalid; it must be a finite number")
    return value


def in_range(value: str | float | None, what: str, low: float | None = None,
             high: float | None = None, low_open: bool = False,
             high_open: bool = False) -> float:
    """One validator for every numeric option: finite and within [low, high] (open ends as
    asked); the error names the option, the value and the valid range."""
    v = number(value, what)
    bad = ((low is not None and (v < low or (low_open and v == low)))
           or (high is not None and (v > high or (high_open and v == high))))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:.10g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:.10g}"
        rule = " and ".join(x for x in (lo, hi) if x)
        raise TokenprintError(f"{what} {value!r} is invalid; it must be a number {rule}")
    return v


def positive(value: float | str, what: str, allow_zero: bool = True) -> float:
    """Check a number is finite and >= 0 (or > 0)."""
    value = number(value, what)
    if not math.isfinite(value) or value < 0 or (not allow_zero and value == 0):
        rule = ">= 0" if allow_zero else "> 0"
        raise TokenprintError(f"{what} {value!r} is invalid; it must be a number {rule}")
    return value


def fmt_g(grams: float) -> str:
    """Human text for grams CO2e (g, kg or t)."""
    a = abs(grams)
    if a >= 1e6:
        return f"{grams / 1e6:.3g} t"
    if a >= 1e3:
        return f"{grams / 1e3:.3g} kg"
    if a >= 1:
        return f"{grams:.3g} g"
    return f"{grams * 1e3:.3g} mg"


def print_records(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Rows as a table where the terminal holds every cell whole, else one block per row:
    its first cell, then ``column value`` pairs packed into lines (no id or number is cut)."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    if sum(w + 3 for w in widths) + 1 <= console.width:   # cell, padding and border
        table = Table(title=title)
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    console.print(title, style="bold", highlight=False)
    for first, *rest in rows:
        console.print(first, style="bold", highlight=False)
        line = ""
        for pair in (f"{h} {v}" for h, v in zip(header[1:], rest, strict=True)):
            if line and len(line) + 3 + len(pair) > console.width - 2:
                console.print(f"  {line}", highlight=False)
                line = ""
            line = f"{line} · {pair}" if line else pair
        console.print(f"  {line}", highlight=False)
