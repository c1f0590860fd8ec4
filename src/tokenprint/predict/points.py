"""The *points* table every loader of measured data fills (one row per measured
configuration; columns in :mod:`tokenprint.predict.datasets`), and the helpers loaders share."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError

METRICS = ("energy_per_output_token_j", "tpot_s", "throughput_tok_s", "ttft_s")
COLUMNS = ("gpu", "model", "stack", "tp", "batch", "input_len", "output_len", "dtype", "mode",
           "energy_total", "idle_tail_s", "tpot_includes_prefill", *METRICS, "task",
           "encoder_flops")
FORMATS = ("tokenprint", "mlenergy", "mlenergy-v3", "mlenergy-v1", "argonne", "splitwise")


@dataclass(frozen=True)
class Points:
    """Points usable with the catalog, and how many rows were skipped (and why)."""

    table: pd.DataFrame
    n_skipped: int
    skipped_reasons: dict[str, int]
    source: str


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.strip().lower()).strip("-")


def _resolve(catalog: Catalog, kind: str, name: str) -> str | None:
    try:
        if kind == "gpu":
            return catalog.gpu(_slug(name)).id
        return catalog.model(name).id
    except TokenprintError:
        return None


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise TokenprintError(f"{what} file {str(path)!r} does not exist")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TokenprintError(f"{what} {str(path)!r} is not a readable CSV: {exc}") from None


def _require(df: pd.DataFrame, cols: tuple[str, ...], path: Path, fmt: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise TokenprintError(
            f"calibration data {str(path)!r} lacks the {fmt} columns {missing}; has "
            f"{list(df.columns)} (is --format right? valid: {', '.join(FORMATS)})"
        )


class _Collector:
    """Rows kept and rows skipped by reason."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.reasons: dict[str, int] = {}

    def skip(self, why: str) -> None:
        self.reasons[why] = self.reasons.get(why, 0) + 1

    def add(self, **row: Any) -> None:
        """Keep a row; one whose numbers are infinite or negative (a corrupt cell) is skipped
        and counted instead (NaN stays: a metric the source did not measure)."""
        base = {"energy_total": False, "idle_tail_s": 0.0, "tpot_includes_prefill": False,
                "ttft_s": np.nan, "task": "", "encoder_flops": 0.0}
        for key, v in row.items():
            if isinstance(v, float | int) and not isinstance(v, bool) and (
                    math.isinf(v) or v < 0):
                self.skip(f"{key} is not a finite number >= 0")
                return
        self.rows.append({**base, **row})

    def points(self, source: str) -> Points:
        table = pd.DataFrame(self.rows, columns=list(COLUMNS))
        return Points(table, sum(self.reasons.values()), dict(self.reasons), source)
