"""The OpenAI-compatible gateway: forwards requests, adds each one's footprint, routes by carbon.

Each response carries the request's footprint (``usage.tokenprint`` and, for non-streaming
responses, the ``x-tokenprint-carbon-g`` header); each request gets one ledger record and
Prometheus counters; ``/dashboard`` shows the last hour per upstream.
"""

import asyncio
import contextlib
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tokenprint.catalog import Catalog
from tokenprint.gateway.accounting import WorkShareAttributor, carbon_of_request
from tokenprint.gateway.config import GatewayConfig, hash_key
from tokenprint.gateway.dashboard import DASHBOARD_HTML, dashboard_data
from tokenprint.gateway.intensity import IntensityProvider
from tokenprint.gateway.ledger import Ledger
from tokenprint.gateway.metrics import Metrics
from tokenprint.gateway.routing import Router, UpstreamState

# OpenAI request fields (plus the extensions vLLM, TGI and llama.cpp accept) that pass through.
COMMON_FIELDS = {
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "user", "seed", "logprobs",
    "top_k", "min_p", "repetition_penalty", "ignore_eos", "min_tokens", "best_of",
    "response_format", "metadata", "service_tier", "store",
}
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt", "suffix", "echo"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens", "tools", "tool_choice",
                               "parallel_tool_calls", "top_logprobs", "functions",
                               "function_call", "modalities", "reasoning_effort"}


def error(status: int, message: str, kind: str = "invalid_request_error",
          code: str | None = None, param: str | None = None) -> JSONResponse:
    """An OpenAI-style error object."""
    return JSONResponse(status_code=status, content={"error": {
        "message": message, "type": kind, "param": param, "code": code}})


class _UpstreamFailed(Exception):
    """Connect error, 5xx or timeout before the first byte: retry elsewhere."""


def create_app(cfg: GatewayConfig, catalog: Catalog,
               energy_sources: dict[str, Any] | None = None) -> FastAPI:
    """Build the gateway. ``energy_sources`` maps upstream names to cumulative energy readers
    (NVML on the serving host); without one, an upstream's energy is predicted."""
    from tokenprint.gateway.accounting import UpstreamModel

    ledger = Ledger(cfg.results)
    metrics = Metrics.create()
    files = {u.region: u.intensity_file for u in cfg.upstream if u.intensity_file}
    provider = IntensityProvider(catalog, cfg.intensity, files, cfg.electricitymaps_token_env,
                                 cfg.electricitymaps_url, cfg.intensity_cache_s)
    states: list[UpstreamState] = []
    for u in cfg.upstream:
        model = UpstreamModel(catalog, u.model, u.gpu, u.gpus_per_replica, cfg.scope,
                              cfg.lifetime_years)
        st = UpstreamState(u, model)
        st.intensity, st.intensity_method = provider.annual(u.region)
        src = (energy_sources or {}).get(u.name)
        if src is None and u.meter == "nvml":
            from tokenprint.measure.nvml import NvmlEnergySource

            src = NvmlEnergySource()
        if src is not None:
            p_cost, d_cost = model.cost_per_token()
            st.attributor = WorkShareAttributor(p_cost, d_cost, src, cfg.idle)
        states.append(st)
    router = Router(cfg.policy, cfg.latency_target_s, cfg.pue)
    key_hashes = [bytes.fromhex(h) for h in cfg.api_keys_sha256]
    timeout = httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s)
    client_box: dict[str, httpx.AsyncClient] = {}
    tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client_box["c"] = httpx.AsyncClient(timeout=timeout,
                                            limits=httpx.Limits(max_connections=1000))
        tasks.append(asyncio.create_task(_background()))
        yield
        for t in tasks:
            t.cancel()
        await client_box["c"].aclose()
        ledger.close()

    app = FastAPI(title="tokenprint gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ledger = ledger
    app.state.upstreams = states
    app.state.metrics = metrics

    async def _background() -> None:
        """Health checks, intensity refresh and metered-interval ticks."""
        last_health = 0.0
        while True:
            now = time.monotonic()
            for st in states:
                if st.attributor is not None:
                    before = st.attributor.idle_j
                    st.attributor.tick()
                    if st.attributor.idle_j > before:
                        metrics.idle_energy.labels(st.name).inc(st.attributor.idle_j - before)
            if cfg.health_interval_s and now - last_health >= cfg.health_interval_s:
                last_health = now
                for st in states:
                    st.intensity, st.intensity_method = await provider.current(st.cfg.region)
                    try:
                        r = await client_box["c"].get(f"{st.cfg.url}/models",
                                                      headers=_auth(st), timeout=5.0)
                        st.healthy = r.status_code < 500
                    except httpx.HTTPError:
                        st.healthy = False
            await asyncio.sleep(0.5)

    def _auth(st: UpstreamState) -> dict[str, str]:
        if st.cfg.api_key_env and os.environ.get(st.cfg.api_key_env):
            return {"Authorization": f"Bearer {os.environ[st.cfg.api_key_env]}"}
        return {}

    def _check_key(request: Request) -> JSONResponse | None:
        if not key_hashes:
            return None
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        digest = bytes.fromhex(hash_key(token))
        ok = False
        for h in key_hashes:  # compare with every key, in constant time
            ok |= hmac.compare_digest(digest, h)
        if not ok:
            return error(401, "Incorrect or missing API key.", "invalid_request_error",
                         "invalid_api_key")
        return None

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error in the gateway ({exc.__class__.__name__})",
                     "server_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "upstreams": {s.name: {"healthy": s.healthy,
                                                        "inflight": s.inflight} for s in states}}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if (denied := _check_key(request)) is not None:
            return denied
        names = sorted({n for s in states for n in s.served_names()})
        return {"object": "list", "data": [{"id": n, "object": "model",
                                            "owned_by": "tokenprint-gateway"} for n in names]}

    @app.get("/metrics")
    async def prom() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/dashboard")
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(DASHBOARD_HTML)

    @app.get("/dashboard/data")
    async def dash_data() -> dict[str, Any]:
        return dashboard_data(ledger, [s.name for s in states])

    async def handle(request: Request, endpoint: str, allowed: set[str]) -> Any:
        if (denied := _check_key(request)) is not None:
            return denied
        body_bytes = await request.body()
        if len(body_bytes) > cfg.max_body_bytes:
            return error(413, f"request body of {len(body_bytes)} bytes exceeds the limit of "
                         f"{cfg.max_body_bytes}")
        try:
            body = json.loads(body_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return error(400, "The request body must be a JSON object.")
        unknown = sorted(set(body) - allowed)
        if unknown:
            return error(400, f"Unrecognized request argument supplied: {', '.join(unknown)}",
                         param=unknown[0])
        name = body.get("model")
        if not isinstance(name, str) or not name:
            return error(400, "you must provide a model parameter", param="model")
        candidates = [s for s in states if name in s.served_names()]
        if not candidates:
            return error(404, f"The model `{name}` does not exist.", code="model_not_found")
        stream = bool(body.get("stream"))
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        rid = f"tp-{uuid.uuid4().hex}"
        ordered = router.order(candidates)[:2]  # first choice, then one retry elsewhere
        last_exc: Exception | None = None
        for attempt, st in enumerate(ordered, start=1):
            fwd = dict(body)
            fwd["model"] = st.cfg.served_model or st.cfg.model
            if stream:
                fwd["stream_options"] = {**(body.get("stream_options") or {}),
                                         "include_usage": True}
            try:
                if stream:
                    return await _stream(st, endpoint, fwd, rid, want_usage, attempt, body)
                return await _unary(st, endpoint, fwd, rid, attempt, body)
            except _UpstreamFailed as exc:
                st.record_failure(cfg.breaker_failures, cfg.breaker_open_s)
                last_exc = exc
                continue
        return error(502, f"no upstream could serve the request ({last_exc})", "server_error",
                     "upstream_unavailable")

    async def _open(st: UpstreamState, endpoint: str, fwd: dict[str, Any]
                    ) -> httpx.Response:
        req = client_box["c"].build_request("POST", f"{st.cfg.url}/{endpoint}", json=fwd,
                                            headers=_auth(st))
        try:
            resp = await client_box["c"].send(req, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
                httpx.RemoteProtocolError, httpx.PoolTimeout) as exc:
            raise _UpstreamFailed(f"{st.name}: {exc.__class__.__name__}") from None
        if resp.status_code >= 500:
            await resp.aclose()
            raise _UpstreamFailed(f"{st.name}: HTTP {resp.status_code}")
        return resp

    async def _footprint(st: UpstreamState, rid: str, prompt_tokens: int,
                         completion_tokens: int, duration_s: float, concurrency: float
                         ) -> dict[str, Any]:
        intensity, isrc = await provider.current(st.cfg.region)
        if st.attributor is not None:
            energy = st.attributor.finish(rid, completion_tokens)
            method = "measured"
        else:
            energy = st.model.energy(prompt_tokens, completion_tokens, concurrency)
            method = "predicted"
        fp: dict[str, Any] = dict(carbon_of_request(
            energy, intensity, cfg.pue, st.model.embodied_g_per_s, duration_s, concurrency))
        fp["method"] = method
        fp["intensity_source"] = isrc
        fp["region"] = st.cfg.region.upper()
        return fp

    def _record(st: UpstreamState, rid: str, endpoint: str, status: int, usage: dict[str, Any],
                ttft: float | None, duration: float, fp: dict[str, Any] | None, attempts: int,
                body: dict[str, Any], text: str | None) -> None:
        model = st.cfg.model
        labels = (st.name, model, st.cfg.region.upper())
        metrics.requests.labels(*labels, str(status)).inc()
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        metrics.tokens.labels(*labels, "prompt").inc(pt)
        metrics.tokens.labels(*labels, "completion").inc(ct)
        if ttft is not None:
            metrics.ttft.labels(st.name, model).observe(ttft)
        metrics.duration.labels(st.name, model).observe(duration)
        if fp is not None:
            metrics.energy.labels(*labels).inc(fp["energy_j"])
            metrics.carbon.labels(*labels, "operational").inc(fp["operational_g"])
            metrics.carbon.labels(*labels, "embodied").inc(fp["embodied_g"])
        ledger.add({
            "id": rid, "time_utc": time.time(), "upstream": st.name, "model": model,
            "region": st.cfg.region.upper(), "endpoint": endpoint, "status": status,
            "prompt_tokens": pt, "completion_tokens": ct, "ttft_s": ttft,
            "duration_s": duration, "attempts": attempts,
            **({k: fp[k] for k in ("energy_j", "prefill_j", "decode_j", "operational_g",
                                   "embodied_g", "total_g", "intensity_g_per_kwh", "method")}
               if fp else {}),
            "prompt_text": json.dumps(body.get("messages") or body.get("prompt"))
            if cfg.store_text else None,
            "completion_text": text if cfg.store_text else None,
        })

    async def _open_tracked(st: UpstreamState, endpoint: str, fwd: dict[str, Any], rid: str
                            ) -> tuple[httpx.Response, float, int]:
        """Count the request in flight (and in the meter's attribution), then open upstream;
        undo both if opening fails. Returns the response, start time and concurrency."""
        t0 = time.monotonic()
        st.inflight += 1
        conc_start = st.inflight
        if st.attributor is not None:
            st.attributor.start(rid, 0)
        try:
            return await _open(st, endpoint, fwd), t0, conc_start
        except BaseException:
            _release(st, rid)
            raise

    def _release(st: UpstreamState, rid: str) -> None:
        """The request left the upstream without a footprint."""
        if st.attributor is not None:
            st.attributor.finish(rid, 0)
        st.inflight -= 1

    def _passthrough(st: UpstreamState, rid: str, endpoint: str, resp: httpx.Response,
                     raw: bytes, duration: float, attempt: int, body: dict[str, Any]
                     ) -> Response:
        """An upstream error (4xx, or a body that is not JSON) goes back as it came, recorded."""
        _record(st, rid, endpoint, resp.status_code, {}, None, duration, None, attempt, body,
                None)
        return Response(raw, status_code=resp.status_code,
                        media_type=resp.headers.get("content-type", "application/json"))

    async def _unary(st: UpstreamState, endpoint: str, fwd: dict[str, Any], rid: str,
                     attempt: int, body: dict[str, Any]) -> Any:
        resp, t0, conc_start = await _open_tracked(st, endpoint, fwd, rid)
        try:
            raw = await resp.aread()
        except BaseException:
            _release(st, rid)
            raise
        finally:
            await resp.aclose()
        duration = time.monotonic() - t0
        concurrency = (conc_start + st.inflight) / 2
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            data = None
        if resp.status_code >= 400 or not isinstance(data, dict):
            _release(st, rid)
            return _passthrough(st, rid, endpoint, resp, raw, duration, attempt, body)
        st.inflight -= 1
        usage = dict(data.get("usage") or {})
        fp = await _footprint(st, rid, int(usage.get("prompt_tokens") or 0),
                              int(usage.get("completion_tokens") or 0), duration, concurrency)
        usage["tokenprint"] = fp
        data["usage"] = usage
        st.record_success(duration)
        text = _text_of(data)
        _record(st, rid, endpoint, 200, usage, None, duration, fp, attempt, body, text)
        return JSONResponse(data, headers={"x-tokenprint-carbon-g": f"{fp['total_g']:.6g}",
                                           "x-tokenprint-request-id": rid,
                                           "x-tokenprint-upstream": st.name})

    async def _stream(st: UpstreamState, endpoint: str, fwd: dict[str, Any], rid: str,
                      want_usage: bool, attempt: int, body: dict[str, Any]) -> Any:
        resp, t0, conc_start = await _open_tracked(st, endpoint, fwd, rid)
        if resp.status_code >= 400:
            raw = await resp.aread()
            await resp.aclose()
            _release(st, rid)
            return _passthrough(st, rid, endpoint, resp, raw, time.monotonic() - t0, attempt,
                                body)

        async def events() -> AsyncIterator[bytes]:
            ttft: float | None = None
            usage: dict[str, Any] = {}
            pieces = 0
            usage_chunk: dict[str, Any] | None = None
            finished = False
            try:
                buf = b""
                done = False
                async for raw in resp.aiter_raw():
                    # SSE allows CRLF line ends (sse-starlette sends them): normalize first
                    buf = (buf + raw).replace(b"\r\n", b"\n")
                    out: list[bytes] = []
                    # forward every complete SSE event of this read in one write
                    while not done and b"\n\n" in buf:
                        event, buf = buf.split(b"\n\n", 1)
                        line = event.strip()
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            done = True
                            break
                        if b'"usage"' not in data:
                            if _bytes_has_text(data):
                                pieces += 1
                                if ttft is None:
                                    ttft = time.monotonic() - t0
                                if st.attributor is not None:
                                    st.attributor.progress(rid, pieces)
                            out.append(b"data: " + data + b"\n\n")
                            continue
                        try:
                            chunk = json.loads(data)
                        except json.JSONDecodeError:
                            continue
                        if chunk.get("usage") and not chunk.get("choices"):
                            usage = dict(chunk["usage"])
                            usage_chunk = chunk
                            continue
                        if chunk.get("usage"):
                            usage = dict(chunk["usage"])
                            chunk = {k: v for k, v in chunk.items()
                                     if k != "usage" or want_usage}
                        if any(_has_text(c) for c in chunk.get("choices") or []):
                            pieces += 1
                            if ttft is None:
                                ttft = time.monotonic() - t0
                            if st.attributor is not None:
                                st.attributor.progress(rid, pieces)
                        out.append(f"data: {json.dumps(chunk)}\n\n".encode())
                    if out:
                        yield b"".join(out)
                    if done:
                        break
                finished = True
            finally:
                await resp.aclose()
                duration = time.monotonic() - t0
                concurrency = (conc_start + st.inflight) / 2
                st.inflight -= 1
                usage.setdefault("completion_tokens", pieces)
                usage.setdefault("prompt_tokens", 0)
                fp = await _footprint(st, rid, int(usage["prompt_tokens"]),
                                      int(usage["completion_tokens"]), duration, concurrency)
                st.record_success(duration)
                _record(st, rid, endpoint, 200 if finished else 499, usage, ttft, duration,
                        fp, attempt, body, None)
            if want_usage:
                usage["tokenprint"] = fp
                final = usage_chunk or {"id": rid, "object": "chunk", "choices": []}
                final["usage"] = usage
                final["choices"] = []
                yield f"data: {json.dumps(final)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"x-tokenprint-request-id": rid,
                                          "x-tokenprint-upstream": st.name})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, "completions", COMPLETION_FIELDS)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await handle(request, "chat/completions", CHAT_FIELDS)

    return app


def _bytes_has_text(data: bytes) -> bool:
    """Whether a raw chunk carries generated text (a non-empty ``text`` or ``content``)."""
    if b'"text"' in data:
        return b'"text": ""' not in data and b'"text":""' not in data
    if b'"content"' in data:
        return not any(x in data for x in (b'"content": ""', b'"content":""',
                                           b'"content": null', b'"content":null'))
    return False


def _has_text(choice: dict[str, Any]) -> bool:
    if choice.get("text"):
        return True
    delta = choice.get("delta") or {}
    return bool(delta.get("content"))


def _text_of(data: dict[str, Any]) -> str:
    out = []
    for c in data.get("choices") or []:
        if "text" in c:
            out.append(str(c["text"]))
        elif isinstance(c.get("message"), dict):
            out.append(str(c["message"].get("content") or ""))
    return "".join(out)


__all__ = ["create_app"]
