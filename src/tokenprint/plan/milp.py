"""A small mixed-integer linear program front end over HiGHS (highspy)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tokenprint.errors import TokenprintError


@dataclass
class LinearProgram:
    """minimize c·x subject to lower ≤ A x ≤ upper and bounds; some x integer."""

    cost: list[float] = field(default_factory=list)
    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[tuple[float, float, list[int], list[float]]] = field(default_factory=list)

    def var(self, cost: float, lb: float = 0.0, ub: float = float("inf"),
            integer: bool = False) -> int:
        """Add a variable; returns its index."""
        self.cost.append(cost)
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(integer)
        return len(self.cost) - 1

    def row(self, lower: float, upper: float, terms: dict[int, float]) -> None:
        """Add ``lower ≤ Σ coef·x ≤ upper``."""
        idx = list(terms)
        self.rows.append((lower, upper, idx, [terms[i] for i in idx]))

    def solve(self) -> NDArray[np.float64]:
        """Optimal x; raises when the program is infeasible."""
        try:
            import highspy
        except ImportError:
            raise TokenprintError("planning across regions needs highspy: pip install highspy"
                                  ) from None
        with _quiet_stdout():  # HiGHS prints a banner on stdout when created
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
        n = len(self.cost)
        inf = highspy.kHighsInf
        lb = np.array(self.lb, dtype=np.float64)
        ub = np.array([min(u, inf) for u in self.ub], dtype=np.float64)
        h.addVars(n, lb, ub)
        h.changeColsCost(n, np.arange(n, dtype=np.int32), np.array(self.cost, dtype=np.float64))
        for lo, up, idx, val in self.rows:
            h.addRow(max(lo, -inf), min(up, inf), len(idx), np.array(idx, dtype=np.int32),
                     np.array(val, dtype=np.float64))
        ints = [i for i, f in enumerate(self.integer) if f]
        if ints:
            h.changeColsIntegrality(len(ints), np.array(ints, dtype=np.int32),
                                    np.array([highspy.HighsVarType.kInteger] * len(ints)))
        h.run()
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise TokenprintError(
                f"the planning program has no solution ({h.modelStatusToString(status)}); "
                "loosen capacity limits or targets")
        return np.array(h.getSolution().col_value, dtype=np.float64)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null for the duration (C-level prints included)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
