"""The gateway's hot path: forward one completion request and account for it.

A plain ASGI handler (no framework routing or middleware here), so the gateway's own time per
request stays small next to the upstream's: body read with a size limit, validation, routing,
one retry elsewhere before the first byte, the stream relayed per upstream read, then the
footprint, metrics and one ledger record per request (journaled before the answer's last bytes).

Each record carries ``added_s``: the gateway's own time on the request's critical path, outside
the upstream call — from the request's arrival to the upstream request, plus relaying the first
token (or the whole unary response), plus closing the stream after the upstream's last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from tokenprint.carbon.scope2 import RunningMarket
from tokenprint.gateway.accounting import RequestFootprint
from tokenprint.gateway.accounts import Accounts, BadTags
from tokenprint.gateway.config import GatewayConfig
from tokenprint.gateway.intensity import IntensityProvider
from tokenprint.gateway.ledger import Ledger, RequestOutcome
from tokenprint.gateway.metrics import Metrics
from tokenprint.gateway.recording import Recorder
from tokenprint.gateway.requests import (
    CHARS_PER_TOKEN,
    ENDPOINTS,
    Message,
    Receive,
    Refused,
    Scope,
    Send,
    error_body,
    prompt_chars,
    read_request,
    send_bytes,
    send_error,
    text_of,
)
from tokenprint.gateway.routing import Router, UpstreamState
from tokenprint.gateway.sse import SseError, SseRelay, bounded_usage, valid_usage
from tokenprint.gateway.upstream import UpstreamClient, UpstreamFailed, UpstreamResponse

log = logging.getLogger("tokenprint.gateway")


@dataclass
class _Timing:
    """Monotonic instants of one attempt."""

    arrived: float
    sent: float = 0.0        # just before the upstream request


class Proxy:
    """Forwards completion requests; one instance per gateway."""

    def __init__(self, cfg: GatewayConfig, states: list[UpstreamState], router: Router,
                 client: UpstreamClient, provider: IntensityProvider, ledger: Ledger,
                 metrics: Metrics, salt: bytes = b"", market: RunningMarket | None = None
                 ) -> None:
        self.cfg = cfg
        self.states = states
        self.router = router
        self.client = client
        self.provider = provider
        self.ledger = ledger
        self.accounts = Accounts(cfg, salt)
        self.recorder = Recorder(ledger, metrics, router, market, cfg.store_text)

    # ---- ASGI entry -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.monotonic()
        endpoint, allowed = ENDPOINTS[scope["path"]]
        try:
            await self._handle(scope, receive, send, endpoint, allowed, arrived)
        except ConnectionResetError:
            return
        except Exception as exc:  # never a traceback to the client; the log gets it
            log.exception("gateway error on %s", scope["path"])
            with contextlib.suppress(Exception):  # fails if the response had started
                await send_error(send, 500, f"internal error in the gateway "
                                 f"({exc.__class__.__name__})", "server_error")

    async def _handle(self, scope: Scope, receive: Receive, send: Send, endpoint: str,
                      allowed: frozenset[str], arrived: float) -> None:
        batch_line = scope.get("tokenprint.who")   # a batch line the gateway runs itself
        key = self.accounts.key(scope) if batch_line is None else None
        if key is None and batch_line is None:
            await send_error(send, 401, "Incorrect or missing API key.", code="invalid_api_key")
            return
        try:
            body = await read_request(receive, allowed, self.cfg.max_body_bytes,
                                      self.cfg.body_timeout_s)
            candidates = [s for s in self.states if body["model"] in s.served_names()]
            if not candidates:
                raise Refused(404, f"The model `{body['model']}` does not exist.",
                              code="model_not_found")
            who = batch_line or self.accounts.who(key, scope, body)  # type: ignore[arg-type]
        except (Refused, BadTags) as exc:
            await send_error(send, getattr(exc, "status", 400), str(exc),
                             code=getattr(exc, "code", None), param=getattr(exc, "param", None))
            return
        stream = bool(body.get("stream"))
        opts = body.get("stream_options")
        want_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
        rid = scope.get("tokenprint.request_id") or f"tp-{os.urandom(16).hex()}"
        self.recorder.sent_by(rid, who)
        guess = max(round(prompt_chars(body) / CHARS_PER_TOKEN), 1)
        last_exc: Exception | None = None
        tried: list[UpstreamState] = []
        for attempt, st in enumerate(self.router.order(candidates)[:2], start=1):
            tried.append(st)
            fwd = dict(body)
            fwd["model"] = st.cfg.served_model or st.cfg.model
            if stream:
                fwd["stream_options"] = {**(opts if isinstance(opts, dict) else {}),
                                         "include_usage": True}
            timing = _Timing(arrived)
            try:
                resp = await self._open(st, endpoint, json.dumps(fwd).encode(), rid, guess,
                                        timing)
                if stream and resp.status < 400:
                    await self._stream(st, resp, endpoint, rid, want_usage, attempt, body,
                                       timing, receive, send)
                else:
                    await self._unary(st, resp, endpoint, rid, attempt, body, timing, send)
            except UpstreamFailed as exc:
                st.record_failure(self.cfg.breaker_failures, self.cfg.breaker_open_s)
                last_exc = exc
                continue
            except Exception as exc:
                if self.recorder.pending(rid):   # the gateway's own fault: still its one row
                    why = f"internal error in the gateway ({exc.__class__.__name__})"
                    self.recorder.bare(st, rid, endpoint, 500, time.monotonic() - arrived,
                                       attempt, body, why)
                raise
            return
        # its one record too, against the last upstream tried (journaled before the answer)
        self.recorder.bare(tried[-1], rid, endpoint, 502, time.monotonic() - arrived,
                           len(tried), body)
        await send_error(send, 502, f"no upstream could serve the request ({last_exc})",
                         "server_error", "upstream_unavailable", request_id=rid)

    # ---- upstream ---------------------------------------------------------------------------

    async def _open(self, st: UpstreamState, endpoint: str, payload: bytes, rid: str,
                    prompt_guess: int, timing: _Timing) -> UpstreamResponse:
        """Count the request in flight (and in the meter's attribution), then open upstream;
        undo both if opening fails."""
        st.inflight += 1
        st.conc_start[rid] = st.inflight
        if st.attributor is not None:
            st.attributor.start(rid, prompt_guess)
        timing.sent = time.monotonic()
        try:
            resp = await self.client.open(st.name, f"{st.cfg.url}/{endpoint}", payload,
                                          st.auth_headers())
        except BaseException:
            self._release(st, rid)
            raise
        return resp

    def _release(self, st: UpstreamState, rid: str) -> None:
        """The request left the upstream without a footprint."""
        if st.attributor is not None:
            st.attributor.finish(rid, 0)
        st.inflight -= 1
        st.conc_start.pop(rid, None)

    def _footprint(self, st: UpstreamState, rid: str, prompt_tokens: int,
                   completion_tokens: int, duration_s: float) -> RequestFootprint:
        """The request's footprint; ends its accounting on the upstream."""
        concurrency = (st.conc_start.pop(rid, st.inflight) + st.inflight) / 2
        st.inflight -= 1
        intensity, isrc = self.provider.latest(st.cfg.region)
        if st.attributor is not None:
            energy = st.attributor.finish(rid, completion_tokens, prompt_tokens=prompt_tokens)
        else:
            energy = st.model.energy(prompt_tokens, completion_tokens, concurrency)
        return st.model.footprint(energy, intensity, self.cfg.pue, duration_s, concurrency,
                                  isrc, st.cfg.region.upper())

    # ---- unary ------------------------------------------------------------------------------

    async def _unary(self, st: UpstreamState, resp: UpstreamResponse, endpoint: str, rid: str,
                     attempt: int, body: dict[str, Any], timing: _Timing, send: Send) -> None:
        try:
            raw = await resp.read(self.cfg.max_upstream_body_bytes)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # the upstream stalled or cut the body after its headers: nothing usable arrived
            self._release(st, rid)
            resp.close()
            timed_out = isinstance(exc, TimeoutError)
            status = 504 if timed_out else 502
            why = (f"upstream {st.name} {'stalled' if timed_out else 'cut'} the response "
                   f"after its headers ({exc.__class__.__name__})")
            st.record_failure(self.cfg.breaker_failures, self.cfg.breaker_open_s)
            self.recorder.bare(st, rid, endpoint, status, time.monotonic() - timing.sent,
                               attempt, body, why)
            await send_error(send, status, why, "server_error", "upstream_cut", request_id=rid)
            return
        except BaseException:
            self._release(st, rid)
            resp.close()
            raise
        resp.close()
        t_read = time.monotonic()
        duration = t_read - timing.sent
        data = None
        if raw is not None:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):
                data = None
        if raw is not None and resp.status >= 400:
            # an upstream's own error (4xx) goes back as it came, recorded
            self._release(st, rid)
            self.recorder.bare(st, rid, endpoint, resp.status, duration, attempt, body)
            await send_bytes(send, resp.status, raw, resp.content_type,
                             headers={"x-tokenprint-request-id": rid})
            return
        if not isinstance(data, dict):
            # a 2xx that is no completion (an HTML page, a proxy's banner) or past the limit:
            # never recorded as an answer with no footprint
            self._release(st, rid)
            why = (f"upstream {st.name} answered more than the limit of "
                   f"{self.cfg.max_upstream_body_bytes} bytes" if raw is None else
                   f"upstream {st.name} answered HTTP {resp.status} with a body that is not JSON "
                   f"({resp.content_type})")
            st.record_failure(self.cfg.breaker_failures, self.cfg.breaker_open_s)
            self.recorder.bare(st, rid, endpoint, 502, duration, attempt, body, why)
            await send_error(send, 502, why, "server_error", "upstream_invalid", request_id=rid)
            return
        counted = bounded_usage(valid_usage(data.get("usage")), len(raw or b""),
                                st.model.max_context)
        source = "upstream" if counted is not None else "gateway"
        if counted is None:  # the upstream's counts are missing or nonsense: count ourselves
            text = text_of(data)
            counted = {"prompt_tokens": max(round(prompt_chars(body) / CHARS_PER_TOKEN), 1),
                       "completion_tokens": max(round(len(text) / CHARS_PER_TOKEN), 0)}
            counted["total_tokens"] = counted["prompt_tokens"] + counted["completion_tokens"]
        fp = self._footprint(st, rid, counted["prompt_tokens"], counted["completion_tokens"],
                             duration)
        usage: dict[str, Any] = {**counted,
                                 "tokenprint": {**fp.to_dict(), "usage_source": source}}
        data["usage"] = usage
        st.record_success(duration)
        out = json.dumps(data).encode()
        added = (timing.sent - timing.arrived) + (time.monotonic() - t_read)
        rec = self.recorder.outcome(st, rid, endpoint, 200, duration, attempt, usage,
                                    footprint=fp, added_s=added, usage_source=source)
        self.recorder.record(st, rec, body, text_of(data))
        await send_bytes(send, 200, out, headers={
            "x-tokenprint-carbon-g": f"{fp.total_g:.6g}", "x-tokenprint-request-id": rid,
            "x-tokenprint-upstream": st.name})

    # ---- streaming --------------------------------------------------------------------------

    async def _stream(self, st: UpstreamState, resp: UpstreamResponse, endpoint: str,
                      rid: str, want_usage: bool, attempt: int, body: dict[str, Any],
                      timing: _Timing, receive: Receive, send: Send) -> None:
        relay = SseRelay(want_usage, self.cfg.max_event_bytes, collect_text=self.cfg.store_text)
        ttft: float | None = None
        first_relay_s: float | None = None
        status = 499  # until the stream ends well: cut by the client, or cancelled
        cut: str | None = None
        # The client hanging up shows as receive() returning http.disconnect; the upstream
        # request is then dropped at once (so the server stops generating for nobody), not at
        # its next token, which may be a long prefill away.
        gone = asyncio.ensure_future(receive())

        def hang_up(_: asyncio.Future[Message]) -> None:
            resp.close()

        gone.add_done_callback(hang_up)
        # journaled before the client sees the request id: a gateway killed mid-stream leaves
        # this row (500) for the replay, never none; the stream's own end replaces it
        self.ledger.open(RequestOutcome(
            id=rid, time_utc=time.time(), upstream=st.name, model=st.cfg.model,
            region=st.cfg.region.upper(), endpoint=endpoint, status=500, attempts=attempt,
            note="the answer never ended (the gateway was killed or failed while answering): "
                 "tokens and carbon unknown"))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                (b"x-tokenprint-request-id", rid.encode()),
                (b"x-tokenprint-upstream", st.name.encode())]})
            try:
                while raw := await resp.next_chunk():
                    t_in = time.monotonic()
                    out, pieces = relay.feed(raw)
                    if pieces:
                        if ttft is None:
                            ttft = t_in - timing.sent
                        if st.attributor is not None:
                            st.attributor.progress(rid, relay.pieces)
                    if out:
                        try:
                            async with asyncio.timeout(self.cfg.client_send_timeout_s):
                                await send({"type": "http.response.body", "body": out,
                                            "more_body": True})
                        except TimeoutError:
                            cut = (f"the client stopped reading: one write waited "
                                   f"{self.cfg.client_send_timeout_s:g} s")
                            break
                        if first_relay_s is None:
                            first_relay_s = time.monotonic() - t_in
                    if relay.done or gone.done():
                        break
                if gone.done() or cut is not None:
                    pass   # the client hung up or stopped reading: 499
                elif relay.done:
                    status = 200
                else:  # the body ended without [DONE]: truncated, never reported as whole
                    cut = (f"upstream {st.name} cut the stream: it ended without [DONE] after "
                           f"{relay.pieces} tokens")
                    status = 502
            except (TimeoutError, aiohttp.ClientError) as exc:
                if not gone.done():  # else: closed by hang_up, the client's doing
                    cut = f"upstream {st.name} cut the stream ({exc.__class__.__name__})"
                    status = 502
            except asyncio.CancelledError:
                # the gateway is stopping (SIGTERM's grace period is over): the stream ends
                # with an error event and a 503 row that says so, not a traceback in the log
                cut = "the gateway stopped before the stream ended (shutdown)"
                status = 503
            except SseError as exc:
                cut = f"upstream {st.name} broke the stream: {exc}"
                status = 502
                if exc.forward and not gone.done():  # the complete events before the fault
                    await send({"type": "http.response.body", "body": exc.forward,
                                "more_body": True})
                    if exc.pieces and ttft is None:
                        ttft = time.monotonic() - timing.sent
        finally:
            t_up_done = time.monotonic()
            gone.remove_done_callback(hang_up)
            resp.close()
            if not gone.done():
                gone.cancel()
            duration = t_up_done - timing.sent
            counted = bounded_usage(valid_usage(relay.usage) if relay.usage else None,
                                    relay.bytes_in, st.model.max_context)
            source = "upstream" if counted is not None else "gateway"
            if counted is None:  # missing (a cut stream) or nonsense: the gateway's own count
                pt = max(round(prompt_chars(body) / CHARS_PER_TOKEN), 1)
                counted = {"prompt_tokens": pt, "completion_tokens": relay.pieces,
                           "total_tokens": pt + relay.pieces}
            usage: dict[str, Any] = dict(counted)
            fp = self._footprint(st, rid, usage["prompt_tokens"], usage["completion_tokens"],
                                 duration)
            if status != 200:  # recorded at once: nothing more will be sent
                rec = self.recorder.outcome(st, rid, endpoint, status, duration, attempt, usage,
                                            ttft_s=ttft, footprint=fp, usage_source=source,
                                            note=cut)
                self.recorder.record(st, rec, body)
        if status == 502:
            await send({"type": "http.response.body", "more_body": False, "body":
                        b"data: " + error_body(str(cut), "server_error", "upstream_cut")
                        + b"\n\n"})
        elif status == 503:
            with contextlib.suppress(Exception):   # the connection may already be going
                await send({"type": "http.response.body", "more_body": False, "body":
                            b"data: " + error_body(str(cut), "server_error", "shutting_down")
                            + b"\n\n"})
        if status != 200:
            return
        st.record_success(duration)
        tail = b""
        if want_usage:
            usage["tokenprint"] = {**fp.to_dict(), "usage_source": source}
            final = relay.usage_chunk or {"id": rid, "object": "chunk", "choices": []}
            final["usage"] = usage
            final["choices"] = []
            tail = f"data: {json.dumps(final)}\n\n".encode()
        added = ((timing.sent - timing.arrived) + (first_relay_s or 0.0)
                 + (time.monotonic() - t_up_done))
        # journaled before [DONE]: a client that saw the whole answer has its row, even if the
        # gateway is killed the next instant
        rec = self.recorder.outcome(st, rid, endpoint, 200, duration, attempt, usage,
                                    ttft_s=ttft, footprint=fp, added_s=added,
                                    usage_source=source)
        self.recorder.record(st, rec, body,
                             "".join(relay.text) if self.cfg.store_text else None)
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n",
                    "more_body": False})


__all__ = ["Proxy"]
