"""Runs Batch API work when the grid is cleanest, inside each batch's window.

**When.** A batch starts at the hour its upstreams' regions are forecast cleanest, among the
hours that leave time to finish before the window ends (:func:`choose_start`). The forecast
comes from the routing intensity resolver: an hourly file's own values where it covers the
window, else a persistence forecast (the same hour a day earlier) from it; a source that only
knows the present (annual averages, a live API without a forecast) forecasts every hour equal,
and the batch starts at once. The batch records which forecast it used.

**Where and how fast.** Each line goes through the gateway's own request path (routing by
carbon, accounting, a ledger row marked ``batch_id`` and ``deferred_s``). Live requests go
first: a line is sent only while an upstream serving its model has room under
``batch_share`` of its capacity, so a batch never pushes a live upstream past its capacity.

**Durable.** Lines, results and batch state live in the ledger's database
(:mod:`tokenprint.gateway.batch_store`): a restarted gateway resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from tokenprint.carbon.resolver import FileSource, IntensityResolver, LiveSource
from tokenprint.gateway.accounts import Who
from tokenprint.gateway.batch_store import BatchStore, new_id
from tokenprint.gateway.routing import UpstreamState
from tokenprint.units import S_PER_HOUR

log = logging.getLogger("tokenprint.gateway")

LINE_BUDGET_S = 30.0      # a line's planned duration (lines run ``concurrency`` at a time)
RETRIES = 2               # a line that fails with 5xx or 429 is tried this many times more


def choose_start(now_s: float, deadline_s: float, duration_s: float,
                 forecast: np.ndarray | None) -> float:
    """The start (now, or an hour boundary) whose forecast hour is cleanest among those that
    leave ``duration_s`` before ``deadline_s``; ``forecast`` is g/kWh per hour from the hour
    of ``now_s`` (NaN: an hour past the forecast's horizon, never chosen; None or all equal:
    start now). The earliest of equal hours wins."""
    if forecast is None or not np.isfinite(forecast).any():
        return now_s
    known = forecast[np.isfinite(forecast)]
    if known.max() == known.min():
        return now_s
    h0 = math.floor(now_s / S_PER_HOUR) * S_PER_HOUR
    starts = np.maximum(h0 + S_PER_HOUR * np.arange(forecast.size), now_s)
    ok = (starts + duration_s <= deadline_s) & np.isfinite(forecast)
    if not ok.any():
        return now_s
    return float(starts[int(np.argmin(np.where(ok, forecast, np.inf)))])


async def forecast_hours(resolver: IntensityResolver, region: str, now_s: float, hours: int
                         ) -> tuple[np.ndarray | None, str]:
    """g/kWh for each hour from the hour of ``now_s``, and the forecast's name: a live API's
    own forecast, an hourly file (or persistence from it), else none."""
    src = resolver.source
    if isinstance(src, LiveSource):
        f = await src.forecast(region.upper(), now_s, hours)
        if f is not None:
            return f, f"{src.name} forecast"
        why = src.why.get(region.upper(), "no forecast")
        f = src.persistence(region.upper(), now_s, hours)
        if f is not None:
            return f, f"persistence (the same hour a day earlier, {src.name} readings; {why})"
        return None, f"none ({why}, and no readings a day old; starts at once)"
    series = src.series.get(region.upper()) if isinstance(src, FileSource) else None
    if series is None:
        return None, f"none ({resolver.mode}: one intensity for every hour; starts at once)"
    mids = math.floor(now_s / S_PER_HOUR) * S_PER_HOUR + S_PER_HOUR * (np.arange(hours) + 0.5)
    if series.start_s <= mids[0] and mids[-1] < series.end_s:
        return series.at(mids), "hourly file"
    past = mids - 86_400.0 * np.ceil(np.maximum(mids - series.end_s + 1, 0) / 86_400.0)
    if (past >= series.start_s).all():
        return series.at(past), "persistence (the same hour a day earlier, hourly file)"
    return None, "none (the hourly file does not cover the window)"


Call = Callable[[str, dict[str, Any], Who, str], Awaitable[tuple[int, dict[str, Any]]]]


def through(handler: Callable[..., Awaitable[None]]) -> Call:
    """A call into the gateway's own request path (the proxy's ASGI handler) for one batch
    line, as its sender (``who``): no key is checked again, the answer is collected whole."""

    async def call(endpoint: str, body: dict[str, Any], who: Who, request_id: str
                   ) -> tuple[int, dict[str, Any]]:
        raw = json.dumps(body).encode()
        scope = {"type": "http", "method": "POST", "path": endpoint, "query_string": b"",
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(raw)).encode())],
                 "client": ("127.0.0.1", 0), "tokenprint.who": who,
                 "tokenprint.request_id": request_id}
        sent, status, chunks = False, 0, []
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await never.wait()            # the gateway itself never hangs up
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await handler(scope, receive, send)
        try:
            answer = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            answer = {"error": {"message": "the gateway's answer was not JSON"}}
        return status, answer if isinstance(answer, dict) else {"body": answer}

    return call


class BatchRunner:
    """The gateway's batch loop: validate, schedule, run, finish (one per gateway process)."""

    def __init__(self, store: BatchStore, states: list[UpstreamState],
                 resolver: IntensityResolver, call: Call, concurrency: int = 16,
                 batch_share: float = 0.8) -> None:
        self.store, self.states, self.resolver, self.call = store, states, resolver, call
        self.concurrency, self.batch_share = concurrency, batch_share
        self.inflight: dict[str, int] = {}
        self.clock: Callable[[], float] = time.time   # what "now" is (tests move it)

    # ---- scheduling -----------------------------------------------------------------------

    async def plan(self, doc: dict[str, Any], model: str, n_lines: int) -> dict[str, Any]:
        """The batch's start, and what it was forecast to emit then and at submission."""
        now, deadline = doc["created_at"], doc["expires_at"]
        hours = max(math.ceil((deadline - now) / S_PER_HOUR), 1)
        regions = sorted({s.cfg.region for s in self.states if model in s.served_names()})
        options = [(*await forecast_hours(self.resolver, r, now, hours), r) for r in regions]
        known = [o for o in options if o[0] is not None]
        if known:   # the region forecast to be cleanest: where the carbon policy will route
            fc, name, region = min(known, key=lambda o: float(np.nanmin(o[0])))  # type: ignore[arg-type]
        else:
            fc, name, region = None, options[0][1] if options else "none", ""
        label = f"{name}, {region}" if region else name
        duration = math.ceil(n_lines / self.concurrency) * LINE_BUDGET_S
        start = choose_start(now, deadline, duration, fc)
        k = int((math.floor(start / S_PER_HOUR) * S_PER_HOUR - math.floor(now / S_PER_HOUR)
                 * S_PER_HOUR) // S_PER_HOUR)
        at_sub = _finite(fc[0]) if fc is not None else None
        at_start = _finite(fc[k]) if fc is not None else None
        return {"forecast": label,
                "scheduled_start": start, "deferred_s": max(start - now, 0.0),
                "forecast_g_per_kwh_at_submission": at_sub, "forecast_g_per_kwh_at_start": at_start,
                # what waiting was forecast to save on operational carbon
                "forecast_saving_pct": (1 - at_start / at_sub) * 100 if at_sub and at_start
                is not None else 0.0}

    # ---- the loop -------------------------------------------------------------------------

    async def run_forever(self, tick_s: float = 1.0) -> None:
        while True:
            try:
                await self.step()
            except Exception:   # a bad batch must not stop the others
                log.exception("batch runner step failed")
            await asyncio.sleep(tick_s)

    async def step(self, now: float | None = None) -> None:
        """One pass over the open batches."""
        t = self.clock() if now is None else now
        for doc in self.store.open_batches():
            if doc["status"] == "cancelling":
                await self._finish(doc, t, cancelled=True)
            elif t >= doc["expires_at"]:
                await self._finish(doc, t, expired=True)
            elif doc["status"] == "in_progress" and t >= doc["tokenprint"]["scheduled_start"]:
                await self._run(doc, t)

    def _room(self, model: str) -> int:
        """Lines that may be sent now: room under ``batch_share`` of the capacity of the
        upstreams serving ``model`` (live requests counted), within ``concurrency``."""
        room = sum(max(math.floor(s.cfg.capacity * self.batch_share) - s.inflight, 0)
                   for s in self.states if model in s.served_names())
        return max(min(room, self.concurrency - sum(self.inflight.values())), 0)

    async def _run(self, doc: dict[str, Any], t: float) -> None:
        bid = doc["id"]
        if doc.get("in_progress_at") is None:
            doc["in_progress_at"] = int(t)
            self.store.save(doc)
        room = self._room(doc["tokenprint"]["model"])
        lines = self.store.pending(bid, room) if room else []
        if lines:
            who = Who(**doc["tokenprint"]["who"], batch_id=bid,
                      deferred_s=doc["tokenprint"]["deferred_s"])
            self.inflight[bid] = self.inflight.get(bid, 0) + len(lines)
            try:
                await asyncio.gather(*(self._line(bid, doc["endpoint"], ln, who)
                                       for ln in lines))
            finally:
                self.inflight[bid] -= len(lines)
        c = self.store.counts(bid)
        doc["request_counts"] = {k: c[k] for k in ("total", "completed", "failed")}
        if c["pending"] == 0:
            await self._finish(doc, self.clock())
        else:
            self.store.save(doc)

    async def _line(self, bid: str, endpoint: str, line: tuple[int, str | None, str],
                    who: Who) -> None:
        number, custom_id, body = line
        status, answer = 0, dict[str, Any]()
        for attempt in range(RETRIES + 1):
            # one ledger id per line and attempt: a line sent again after a kill (its answer
            # lost with the process) is not recorded twice
            status, answer = await self.call(endpoint, json.loads(body), who,
                                             f"tp-{bid}-{number}-{attempt}")
            if status < 500 and status != 429:
                break
        request_id = answer.get("id", "") if isinstance(answer, dict) else ""
        result = {"id": new_id("batch_req_"), "custom_id": custom_id,
                  "response": {"status_code": status, "request_id": request_id,
                               "body": answer}, "error": None}
        self.store.finish(bid, number, "done" if status == 200 else "failed", result)

    async def _finish(self, doc: dict[str, Any], t: float, cancelled: bool = False,
                      expired: bool = False) -> None:
        """Write the output and error files and close the batch."""
        bid = doc["id"]
        if self.inflight.get(bid):
            return                      # lines still running: finish on a later pass
        if cancelled or expired:
            self.store.fail_pending(bid, "batch_cancelled" if cancelled else "batch_expired",
                                    "the batch was cancelled before this line ran" if cancelled
                                    else "the batch's window ended before this line ran")
        doc["finalizing_at"] = int(t)
        done, failed = self.store.results(bid, "done"), self.store.results(bid, "failed")
        if done:
            doc["output_file_id"] = self.store.add_file(
                "batch_output", f"{bid}_output.jsonl", _jsonl(done))["id"]
        if failed:
            doc["error_file_id"] = self.store.add_file(
                "batch_output", f"{bid}_error.jsonl", _jsonl(failed))["id"]
        c = self.store.counts(bid)
        doc["request_counts"] = {k: c[k] for k in ("total", "completed", "failed")}
        doc["tokenprint"].update(_savings(done, doc["tokenprint"]))
        status = "cancelled" if cancelled else "expired" if expired else "completed"
        doc["status"] = status
        doc[f"{status}_at"] = int(t)
        self.store.save(doc)


def _finite(x: float) -> float | None:
    """A forecast value for JSON (None past the forecast's horizon)."""
    return float(x) if np.isfinite(x) else None


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)


def _savings(done: list[dict[str, Any]], tp: dict[str, Any]) -> dict[str, Any]:
    """Carbon charged to the batch's lines, what they would have emitted at submission (their
    operational carbon at the intensity forecast for then), and the saving."""
    charged = op_then = 0.0
    for r in done:
        usage = ((r.get("response") or {}).get("body") or {}).get("usage") or {}
        fp = usage.get("tokenprint") or {}
        ci = fp.get("intensity_g_per_kwh") or 0.0
        charged += float(fp.get("total_g") or 0.0)
        then = tp.get("forecast_g_per_kwh_at_submission")
        op = float(fp.get("operational_g") or 0.0)
        op_then += (op * then / ci if then is not None and ci else op) + float(
            fp.get("embodied_g") or 0.0)
    return {"carbon_g": charged, "carbon_at_submission_g": op_then,
            "saving_g": op_then - charged}
