"""What the gateway keeps of each forwarded request once it ends: one
:class:`~tokenprint.gateway.ledger_schema.RequestOutcome`, counted in ``/metrics`` (by upstream,
by team, Scope 2 both ways) and journaled in the ledger (the request's text only with
``store_text``)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from tokenprint.carbon.scope2 import RunningMarket
from tokenprint.gateway.accounts import MAX_PENDING_WHO, NOBODY, Who
from tokenprint.gateway.ledger import Ledger
from tokenprint.gateway.ledger_schema import RequestOutcome
from tokenprint.gateway.market import market_g
from tokenprint.gateway.metrics import Metrics, UpstreamMetrics
from tokenprint.gateway.routing import Router, UpstreamState


class Recorder:
    """Builds each request's record and writes it to the metrics and the ledger."""

    def __init__(self, ledger: Ledger, metrics: Metrics, router: Router,
                 market: RunningMarket | None = None, store_text: bool = False) -> None:
        self.ledger, self.metrics, self.router = ledger, metrics, router
        self.market = market   # market-based Scope 2 for /metrics (gateway.market), or None
        self.store_text = store_text
        self._who: dict[str, Who] = {}     # request id → its sender, until it is recorded
        self._by_upstream: dict[str, UpstreamMetrics] = {}

    def sent_by(self, rid: str, who: Who) -> None:
        """Remember who sent request ``rid`` until its record is written (bounded: a request
        that ended without a record is forgotten first)."""
        self._who[rid] = who
        while len(self._who) > MAX_PENDING_WHO:
            self._who.pop(next(iter(self._who)))

    def pending(self, rid: str) -> bool:
        """Whether request ``rid`` has no record yet (of those ``sent_by`` still remembers)."""
        return rid in self._who

    def outcome(self, st: UpstreamState, rid: str, endpoint: str, status: int,
                duration_s: float, attempts: int, usage: dict[str, Any] | None = None,
                **more: Any) -> RequestOutcome:
        """A forwarded request's record as it ended, with who sent it and the signal that
        routed it (``more``: ttft_s, footprint, added_s, usage_source, note)."""
        usage = usage or {}
        who = self._who.pop(rid, NOBODY)
        return RequestOutcome(
            id=rid, time_utc=time.time(), upstream=st.name, model=st.cfg.model,
            region=st.cfg.region.upper(), endpoint=endpoint, status=status,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0), duration_s=duration_s,
            attempts=attempts, routing_signal=self.router.signal(st), key_name=who.key_name,
            team=who.team, project=who.project, user_digest=who.user_digest, tags=who.tags,
            batch_id=who.batch_id, deferred_s=who.deferred_s, **more)

    def bare(self, st: UpstreamState, rid: str, endpoint: str, status: int, duration_s: float,
             attempts: int, body: dict[str, Any], note: str | None = None) -> None:
        """Record a request that ended without an answer of the upstream's tokens (no usage,
        no footprint): refused, failed, cut before its body, or passed through as an error."""
        self.record(st, self.outcome(st, rid, endpoint, status, duration_s, attempts, note=note),
                    body)

    def record(self, st: UpstreamState, rec: RequestOutcome, body: dict[str, Any],
               text: str | None = None) -> None:
        """Count ``rec`` in the metrics and journal it in the ledger."""
        m = self._by_upstream.get(st.name)
        if m is None:
            m = self._by_upstream[st.name] = self.metrics.of_upstream(st.name, rec.model,
                                                                      rec.region)
        m.request(rec.status).inc()
        m.prompt_tokens.inc(rec.prompt_tokens or 0)
        m.completion_tokens.inc(rec.completion_tokens or 0)
        if rec.ttft_s is not None:
            m.ttft.observe(rec.ttft_s)
        m.duration.observe(rec.duration_s or 0.0)
        if rec.added_s is not None:
            m.added.observe(rec.added_s)
        fp = rec.footprint
        self.metrics.charge_team(rec.team, fp.operational_g if fp else 0.0,
                                 fp.embodied_g if fp else 0.0,
                                 market_g(self.market, fp, rec.region, rec.time_utc))
        if fp is not None:
            m.energy.inc(fp.energy.energy_j)
            m.operational.inc(fp.operational_g)
            m.embodied.inc(fp.embodied_g)
        if self.store_text:
            rec = replace(rec, completion_text=text, prompt_text=json.dumps(
                body.get("messages") or body.get("prompt")))
        if not self.ledger.add(rec):
            self.metrics.ledger_dropped.inc()
