"""The OpenAI-compatible gateway: forwards requests, adds each one's footprint, routes by carbon.

Each response carries the request's footprint (``usage.tokenprint`` and, for non-streaming
responses, the ``x-tokenprint-carbon-g`` header); each request gets one ledger record and
Prometheus counters; ``/dashboard`` shows the last hour per upstream.

Completion requests take the plain-ASGI hot path in ``proxy``; everything else (models, health,
metrics, dashboard) is a small FastAPI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tokenprint.catalog import Catalog
from tokenprint.gateway.accounting import UpstreamModel, WorkShareAttributor
from tokenprint.gateway.accounts import user_salt
from tokenprint.gateway.batch_api import register as register_batches
from tokenprint.gateway.batch_runner import BatchRunner, through
from tokenprint.gateway.batch_store import BatchStore
from tokenprint.gateway.config import GatewayConfig
from tokenprint.gateway.dashboard import DASHBOARD_HTML, dashboard_data
from tokenprint.gateway.intensity import IntensityProvider
from tokenprint.gateway.ledger import Ledger
from tokenprint.gateway.market import market_meter
from tokenprint.gateway.metrics import Metrics
from tokenprint.gateway.proxy import Proxy
from tokenprint.gateway.requests import ENDPOINTS, Receive, Scope, Send, error_body, send_error
from tokenprint.gateway.routing import Router, UpstreamState
from tokenprint.gateway.upstream import UpstreamClient

TICK_S = 0.5  # metered intervals close at least this often


def error(status: int, message: str, kind: str = "invalid_request_error",
          code: str | None = None, param: str | None = None) -> Response:
    """An OpenAI-style error response (FastAPI side)."""
    return Response(error_body(message, kind, code, param), status_code=status,
                    media_type="application/json")


class GatewayApp:
    """The ASGI app: completion POSTs go to the proxy, the rest to FastAPI.

    ``state`` is the FastAPI app's state (``ledger``, ``upstreams``, ``metrics``)."""

    def __init__(self, api: FastAPI, proxy: Proxy) -> None:
        self.api = api
        self.proxy = proxy
        self.state = api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ENDPOINTS:
            if scope["method"] != "POST":
                await send_error(send, 405, f"{scope['method']} is not allowed on "
                                 f"{scope['path']}; use POST")
                return
            await self.proxy(scope, receive, send)
            return
        await self.api(scope, receive, send)


def _states(cfg: GatewayConfig, catalog: Catalog, provider: IntensityProvider,
            energy_sources: dict[str, Any] | None) -> list[UpstreamState]:
    states: list[UpstreamState] = []
    for u in cfg.upstream:
        model = UpstreamModel(catalog, u.model, u.gpu, u.gpus_per_replica, cfg.scope,
                              cfg.lifetime_years, u.stack)
        st = UpstreamState(u, model)
        st.intensity, st.intensity_method = provider.latest(u.region)
        src = (energy_sources or {}).get(u.name)
        if src is None and u.meter == "nvml":
            from tokenprint.measure.nvml import NvmlEnergySource

            src = NvmlEnergySource()
        if src is not None:
            p_cost, d_cost = model.cost_per_token()
            st.attributor = WorkShareAttributor(p_cost, d_cost, src, cfg.idle)
        states.append(st)
    return states


def create_app(cfg: GatewayConfig, catalog: Catalog,
               energy_sources: dict[str, Any] | None = None) -> GatewayApp:
    """Build the gateway (one process of ``cfg.workers``: it takes its share of every
    upstream's capacity). ``energy_sources`` maps upstream names to cumulative energy readers
    (NVML on the serving host); without one, an upstream's energy is predicted."""
    if cfg.workers > 1:
        cfg = cfg.model_copy(update={"upstream": [
            u.model_copy(update={"capacity": math.ceil(u.capacity / cfg.workers)})
            for u in cfg.upstream]})
    market = market_meter(cfg)   # refused here, before anything opens, when it cannot work
    ledger = Ledger(cfg.results, max_pending=cfg.ledger_max_pending, private=cfg.store_text,
                    url=cfg.ledger_url)
    metrics = Metrics.create(cfg.metrics_max_teams)
    files = {u.region: u.intensity_file for u in cfg.upstream if u.intensity_file}
    provider = IntensityProvider(catalog, cfg.intensity, files, cfg.electricitymaps_token_env,
                                 cfg.electricitymaps_url, cfg.intensity_cache_s,
                                 **cfg.intensity_options)
    # the carbon policy may route by another signal (a marginal one) than the accounts use
    routing = provider if cfg.routing_intensity is None else IntensityProvider(
        catalog, cfg.routing_intensity, files, cfg.electricitymaps_token_env,
        cfg.electricitymaps_url, cfg.intensity_cache_s, **cfg.routing_intensity_options)
    states = _states(cfg, catalog, routing, energy_sources)
    client = UpstreamClient(cfg.request_timeout_s, cfg.connect_timeout_s)
    router = Router(cfg.policy, cfg.latency_target_s, cfg.pue)
    proxy = Proxy(cfg, states, router, client, provider, ledger, metrics,
                  user_salt(cfg.results), market)
    store = BatchStore(cfg.results, cfg.ledger_url)
    runner = BatchRunner(store, states, routing, through(proxy), cfg.batch_concurrency,
                         cfg.batch_share)
    tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await client.start()
        tasks.append(asyncio.create_task(_background()))
        lock = runner_lock(cfg.results) if cfg.batch_runner else None
        if lock is not None:   # one process per results folder runs the batches
            tasks.append(asyncio.create_task(runner.run_forever()))
        # The catalog, numpy and pandas leave a large heap of long-lived objects; every full
        # collection would walk it. Freezing it keeps the collector to what requests allocate.
        gc.collect()
        gc.freeze()
        yield
        for t in tasks:
            t.cancel()
        await client.close()
        if lock is not None:
            lock.close()
        store.close()
        ledger.close()

    async def _background() -> None:
        """Metered-interval ticks, intensity refresh and health checks."""
        last_health = last_intensity = float("-inf")
        refresh_s = min(max(cfg.intensity_cache_s, 1.0), 300.0)
        while True:
            now = time.monotonic()
            for st in states:
                if st.attributor is not None:
                    before = st.attributor.idle_j
                    st.attributor.tick()
                    if st.attributor.idle_j > before:
                        metrics.idle_energy.labels(st.name).inc(st.attributor.idle_j - before)
            if now - last_intensity >= refresh_s:
                last_intensity = now
                for source in {id(provider): provider, id(routing): routing}.values():
                    await source.refresh([st.cfg.region for st in states])
                for st in states:
                    st.intensity, st.intensity_method = routing.latest(st.cfg.region)
            if cfg.health_interval_s and now - last_health >= cfg.health_interval_s:
                last_health = now
                for st in states:
                    st.healthy = await client.healthy(f"{st.cfg.url}/models",
                                                      st.auth_headers())
            await asyncio.sleep(TICK_S)

    keyed = cfg.open_endpoints == "key"
    api = FastAPI(title="tokenprint gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None if keyed else "/openapi.json")
    api.state.ledger = ledger
    api.state.upstreams = states
    api.state.metrics = metrics
    api.state.batches = runner

    @api.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error in the gateway ({exc.__class__.__name__})",
                     "server_error")

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # 404/405 and friends in the OpenAI error shape the completion paths use
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                     kind)

    def denied(request: Request) -> Response | None:
        """With open_endpoints = "key", the operational endpoints take the API keys too."""
        if keyed and not proxy.accounts.key(request.scope) is not None:
            return error(401, "Incorrect or missing API key.", code="invalid_api_key")
        return None

    @api.get("/health")
    async def health(request: Request) -> Any:
        if (no := denied(request)) is not None:
            return no
        led = ledger.status()
        body = {"status": "ok" if led["ok"] else "degraded", "ledger": led,
                "upstreams": {s.name: {"healthy": s.healthy, "inflight": s.inflight}
                              for s in states}}
        return JSONResponse(body, status_code=200 if led["ok"] else 503)

    @api.get("/v1/models")
    async def models(request: Request) -> Any:
        if not proxy.accounts.key(request.scope) is not None:
            return error(401, "Incorrect or missing API key.", code="invalid_api_key")
        names = sorted({n for s in states for n in s.served_names()})
        return {"object": "list", "data": [{"id": n, "object": "model",
                                            "owned_by": "tokenprint-gateway"} for n in names]}

    @api.get("/metrics")
    async def prom(request: Request) -> Response:
        if (no := denied(request)) is not None:
            return no
        return Response(generate_latest(metrics.collected()), media_type=CONTENT_TYPE_LATEST)

    @api.get("/dashboard")
    async def dashboard(request: Request) -> Response:
        if (no := denied(request)) is not None:
            return no
        return HTMLResponse(DASHBOARD_HTML)

    @api.get("/dashboard/data")
    async def dash_data(request: Request) -> Response:
        if (no := denied(request)) is not None:
            return no
        # off the event loop: an hour of a busy gateway is a large query
        return JSONResponse(await asyncio.to_thread(dashboard_data, ledger,
                                                    [s.name for s in states]))

    register_batches(api, cfg, proxy.accounts, store, runner)
    return GatewayApp(api, proxy)


def runner_lock(results: str) -> Any:
    """The lock that makes this process the one running the batches of ``results`` (the
    first of several workers to take it), held open until the gateway stops; None when
    another process holds it."""
    import fcntl

    Path(results).mkdir(parents=True, exist_ok=True)
    fh = open(Path(results) / "batch-runner.lock", "a")   # noqa: SIM115 - held open
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


WORKER_ENV = "TOKENPRINT_GATEWAY_WORKER"  # what ``serve --workers N`` hands each worker


def worker_spec(cfg: GatewayConfig, catalog_files: list[str]) -> str:
    """The environment value ``app_from_env`` reads in each worker process."""
    return json.dumps({"config": cfg.model_dump(mode="json"), "catalog": catalog_files})


def app_from_env() -> GatewayApp:
    """The app factory uvicorn calls in each worker process of ``tokenprint serve --workers``."""
    from tokenprint.catalog import get_catalog

    spec = json.loads(os.environ[WORKER_ENV])
    cfg = GatewayConfig.model_validate(spec["config"])
    return create_app(cfg, get_catalog([Path(p) for p in spec["catalog"]]))


__all__ = ["WORKER_ENV", "GatewayApp", "app_from_env", "create_app", "worker_spec"]
