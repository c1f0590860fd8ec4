"""Market-based Scope 2 on the gateway's ``/metrics``: the instruments of ``contracts`` in
``gateway.toml`` (the file ``ledger report --contracts`` reads) charged as each request's energy
arrives (:class:`tokenprint.carbon.scope2.RunningMarket`). The reporting figure stays
``ledger report``'s, prorated to its period; without ``contracts`` market-based equals
location-based, and ``/metrics`` says so in its help text."""

from __future__ import annotations

from tokenprint.carbon.operational import kwh
from tokenprint.carbon.scope2 import RunningMarket
from tokenprint.gateway.accounting import RequestFootprint
from tokenprint.gateway.config import GatewayConfig


def market_meter(cfg: GatewayConfig) -> RunningMarket | None:
    """The running meter of ``cfg.contracts`` (None without one). Each of ``cfg.workers``
    processes takes 1/N of every instrument's volume, as it takes 1/N of each upstream; an
    upstream region without a residual mix is refused at start."""
    if cfg.contracts is None:
        return None
    from tokenprint.carbon.contracts import load_contracts

    deals = load_contracts(cfg.contracts)
    meter = RunningMarket(deals.contracts, deals.residual_g_per_kwh, deals.matching,
                          share=1.0 / cfg.workers)
    meter.check_regions([u.region for u in cfg.upstream])
    return meter


def market_g(meter: RunningMarket | None, fp: RequestFootprint | None, region: str,
             time_s: float) -> float:
    """A request's market-based operational grams (its location-based ones without a meter)."""
    if fp is None:
        return 0.0
    if meter is None:
        return fp.operational_g
    return meter.grams(float(kwh(fp.energy.energy_j)), time_s, region)
