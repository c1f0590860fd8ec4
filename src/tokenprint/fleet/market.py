"""Scope 2 both ways in ``fleet report``: each step's operational carbon location-based (as
charged) and market-based under the organisation's contracts (``--contracts``, the file
``ledger report`` reads), through :func:`tokenprint.carbon.scope2.market_based`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tokenprint.carbon.contracts import Contracts
from tokenprint.carbon.operational import facility_kwh
from tokenprint.carbon.scope2 import market_based


def with_market(table: pd.DataFrame, contracts: Contracts | None, pue: float,
                start_s: float, end_s: float, step_s: float) -> pd.DataFrame:
    """``table`` with ``location_g`` (its operational grams) and ``market_g``: the facility's
    energy of each step (GPU energy × PUE) at the instruments that cover it, else the residual
    mix; equal to location-based without contracts. Steps without energy stay without."""
    out = table.assign(location_g=table["operational_g"])
    if contracts is None or out.empty:
        return out.assign(market_g=out["operational_g"])
    have = out["energy_j"].notna().to_numpy()
    # seconds since the epoch whatever the column's resolution (pandas 3 keeps microseconds,
    # where an int64 view read as nanoseconds put every step in January 1970)
    since_epoch = pd.to_datetime(out["end_utc"], utc=True) - pd.Timestamp(0, tz="UTC")
    step_end_s = (since_epoch / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
    mid_s = step_end_s - step_s / 2
    e_kwh = np.where(have, facility_kwh(out["energy_j"].fillna(0.0).to_numpy(), pue), 0.0)
    mb = market_based(e_kwh, mid_s, out["region"].astype(str).tolist(), contracts.contracts,
                      contracts.residual_g_per_kwh, (start_s - step_s, end_s),
                      contracts.matching)
    return out.assign(market_g=np.where(have, mb.grams, np.nan))
