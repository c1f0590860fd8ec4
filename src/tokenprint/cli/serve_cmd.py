"""``tokenprint serve`` (the gateway) and ``tokenprint ledger summary``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenprint.carbon.operational import kwh
from tokenprint.cli.common import (
    CatalogOpt,
    CsvOpt,
    JsonOpt,
    LedgerUrlOpt,
    console,
    fmt_g,
    load,
    print_csv,
    print_json,
    print_records,
    split_list,
)
from tokenprint.errors import TokenprintError

if TYPE_CHECKING:
    from tokenprint.gateway.config import GatewayConfig

# configuration fields as the serve flags name them, for error messages
FLAG_NAMES = {"host": "--host", "port": "--port", "workers": "--workers", "results": "--results",
              **{f"upstream.0.{k}": f"--{k.replace('_', '-')}" for k in (
                  "model", "served_model", "gpu", "gpus_per_replica", "stack", "region",
                  "intensity_file", "meter")},
              "upstream.0.url": "--upstream"}

ledger_app = typer.Typer(help="Per-request carbon ledger of the gateway.", no_args_is_help=True)


def serve(
    config: Annotated[Path | None, typer.Option(help="Gateway TOML (several upstreams).")] = None,
    upstream: Annotated[str | None, typer.Option(help="One upstream's base URL, e.g. "
                                                 "http://127.0.0.1:8000/v1.")] = None,
    model: Annotated[str | None, typer.Option(help="Catalog model id of that upstream.")] = None,
    served_model: Annotated[str | None, typer.Option(help="Model name the upstream serves, if "
                                                     "not the catalog id.")] = None,
    gpu: Annotated[str | None, typer.Option(help="Catalog GPU id of that upstream.")] = None,
    gpus_per_replica: Annotated[int, typer.Option(help="GPUs behind that upstream.")] = 1,
    stack: Annotated[str, typer.Option(help="Serving stack of that upstream (predictions): "
                                       "vllm-2025 (default), vllm-2024, tensorrt-llm, "
                                       "hf-transformers, ...")] = "vllm-2025",
    region: Annotated[str | None, typer.Option(help="Grid region of that upstream.")] = None,
    intensity_file: Annotated[Path | None, typer.Option(help="Hourly intensity CSV.")] = None,
    meter: Annotated[str, typer.Option(help="none|nvml (when serving on this host).")] = "none",
    host: Annotated[str | None, typer.Option(help="Listen address (default loopback).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8080).")] = None,
    results: Annotated[Path | None, typer.Option(help="Ledger directory.")] = None,
    workers: Annotated[int | None, typer.Option(help="Gateway processes sharing the port "
                                                "(default 1; for more streams than one core "
                                                "relays).")] = None,
    hash_key: Annotated[str | None, typer.Option(help="Print the SHA-256 of an API key for "
                                                 "api_keys_sha256, and exit.")] = None,
    catalog: CatalogOpt = None,
) -> None:
    """Start the OpenAI-compatible gateway that adds each request's carbon and routes by it."""
    from tokenprint.gateway.config import hash_key as digest
    from tokenprint.gateway.config import load_config, parse_config

    if hash_key is not None:
        if not hash_key.strip():
            raise TokenprintError("--hash-key '' is invalid: an empty API key would let anyone "
                                  "in; give the key clients will send")
        typer.echo(digest(hash_key))
        return
    cat = load(catalog)
    if config is not None:
        doc = load_config(config).model_dump()
    else:
        missing = [n for n, v in (("--upstream", upstream), ("--model", model), ("--gpu", gpu),
                                  ("--region", region)) if not v]
        if missing:
            raise TokenprintError(f"give --config FILE, or {', '.join(missing)} for one upstream")
        assert upstream and model and gpu and region
        doc = {"intensity": "file" if intensity_file else "annual", "upstream": [{
            "name": "upstream", "url": upstream, "model": cat.model(model).id,
            "served_model": served_model, "gpu": cat.gpu(gpu).id,
            "gpus_per_replica": gpus_per_replica, "stack": cat.stack(stack).id,
            "region": cat.region(region).id,
            "intensity_file": str(intensity_file) if intensity_file else None,
            "meter": meter}]}
    updates = {k: v for k, v in (("host", host), ("port", port), ("workers", workers),
                                 ("results", str(results) if results else None))
               if v is not None}
    cfg = parse_config(doc | updates, "serve", FLAG_NAMES)
    for u in cfg.upstream:
        cat.model(u.model)
        cat.gpu(u.gpu)
        cat.stack(u.stack)
        cat.region(u.region)
    try:
        import uvicorn

        from tokenprint.gateway.app import create_app
    except ImportError as exc:
        raise TokenprintError(f"the gateway needs the serve extra: pip install "
                              f"'tokenprint[serve]' ({exc.name} missing)") from None
    # everything that can refuse the config (intensity files, the ledger) runs before the banner
    app = create_app(cfg, cat) if cfg.workers == 1 else None
    console.print(f"tokenprint gateway on http://{cfg.host}:{cfg.port}/v1 → "
                  + ", ".join(f"{u.name} ({u.url}, {u.gpu}, {u.region})" for u in cfg.upstream)
                  + f"; policy {cfg.policy}; ledger in {cfg.results}; dashboard /dashboard"
                  + (f"; {cfg.workers} worker processes" if cfg.workers > 1 else ""))
    from tokenprint.gateway.server import LimitedHttpToolsProtocol, set_limits

    set_limits(cfg.max_header_bytes, cfg.header_timeout_s, cfg.body_timeout_s,
               cfg.max_connections_per_client)
    limits: dict[str, Any] = {
              "http": LimitedHttpToolsProtocol, "limit_concurrency": cfg.max_connections,
              "timeout_keep_alive": cfg.keepalive_timeout_s, "timeout_graceful_shutdown": 10,
              "h11_max_incomplete_event_size": cfg.max_header_bytes}
    if app is not None:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", **limits)
        return
    _serve_workers(cfg, [str(Path(p).resolve()) for p in catalog or []], limits)


def _serve_workers(cfg: GatewayConfig, catalog_files: list[str], limits: dict[str, Any]
                   ) -> None:
    """Run ``cfg.workers`` uvicorn worker processes; metrics are summed across them through
    prometheus_client's multiprocess files in a directory made (and removed) here."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from tokenprint.gateway.app import WORKER_ENV, worker_spec
    from tokenprint.gateway.ledger import Ledger

    # create or migrate the ledger once, before the workers race
    Ledger(cfg.results, register_run=False, url=cfg.ledger_url).close()
    prom_dir = tempfile.mkdtemp(prefix="tokenprint-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    os.environ[WORKER_ENV] = worker_spec(cfg, catalog_files)
    try:
        uvicorn.run("tokenprint.gateway.app:app_from_env", factory=True, host=cfg.host,
                    port=cfg.port, workers=cfg.workers, log_level="warning", **limits)
    finally:
        shutil.rmtree(prom_dir, ignore_errors=True)


def _since(text: str) -> float:
    """'1h', '30m', '2d' (back from now) or an ISO time → epoch seconds."""
    from tokenprint.carbon import parse_time
    from tokenprint.cli.common import parse_duration_s

    try:
        return time.time() - parse_duration_s(text, "--since")
    except TokenprintError:
        pass
    try:
        return parse_time(text)
    except TokenprintError:
        raise TokenprintError(f"--since {text!r} is not a window or a time; use 30m, 24h, 7d "
                              "or an ISO 8601 time such as 2026-11-01T00:00:00Z") from None


@ledger_app.command("summary")
def ledger_summary(
    since: Annotated[str, typer.Option(help="Window: 1h, 30m, 7d or an ISO time.")] = "24h",
    results: Annotated[Path, typer.Option(help="Ledger directory.")] = Path("tokenprint-results"),
    ledger: LedgerUrlOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Totals of requests, tokens, energy and carbon per upstream since a time."""
    from tokenprint.gateway.ledger import Ledger
    from tokenprint.gateway.ledger_recovery import open_existing

    open_existing(results, ledger).close()   # one clear error when there is no ledger
    led = Ledger(results, register_run=False, url=ledger)
    rows = led.summary(_since(since))
    led.close()
    if as_json or as_csv:
        print_csv(rows) if as_csv else print_json(rows)
        return
    print_records(f"Ledger since {since}",
                  ("upstream", "model", "region", "requests", "errors", "tokens in",
                   "tokens out", "energy", "operational", "embodied", "total"),
                  [(r["upstream"], r["model"], r["region"], str(r["requests"]), str(r["errors"]),
                    str(r["prompt_tokens"] or 0), str(r["completion_tokens"] or 0),
                    _or_dash(r["energy_j"], lambda j: f"{float(kwh(j)) * 1000:.3g} Wh"),
                    _or_dash(r["operational_g"], fmt_g), _or_dash(r["embodied_g"], fmt_g),
                    _or_dash(r["total_g"], fmt_g)) for r in rows])


def _or_dash(value: float | None, fmt: Callable[[float], str]) -> str:
    """A figure the ledger has, or — where no row of the group carries one (not 0)."""
    return "—" if value is None else fmt(value)


@ledger_app.command("report")
def ledger_report_cmd(
    by: Annotated[str, typer.Option(help="Group by: team, project, model, key, upstream, "
                                    "region, user, batch (comma-separated).")] = "team",
    period: Annotated[str, typer.Option(help="day | month")] = "month",
    start: Annotated[str | None, typer.Option(help="ISO time (default: 30 days ago).")] = None,
    end: Annotated[str | None, typer.Option(help="ISO time (default: now).")] = None,
    contracts: Annotated[Path | None, typer.Option(metavar="FILE",
        help="Contractual instruments and residual mixes (TOML) for market-based Scope 2; "
             "without it market_g equals location_g.")] = None,
    results: Annotated[Path, typer.Option(help="Ledger directory.")] = Path("tokenprint-results"),
    ledger: LedgerUrlOpt = None,
    out: Annotated[Path | None, typer.Option(metavar="DIR",
        help="Write report.csv, report.json, report.png and report.html here.")] = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Carbon accounts per team, project, model or key and per day or month: Scope 2
    location- and market-based, embodied, total and SCI per 1,000 output tokens."""
    from tokenprint.files import write_text_atomic
    from tokenprint.gateway.ledger_recovery import open_existing
    from tokenprint.gateway.ledger_report import (
        SCI_BOUNDARY,
        as_records,
        ledger_rows,
        load_contracts,
        report,
        report_window,
        write_page,
    )

    t0, t1 = report_window(start, end, time.time())
    deals = load_contracts(contracts) if contracts is not None else None
    db = open_existing(results, ledger)
    try:
        rows_in = ledger_rows(db, t0, t1)
    finally:
        db.close()
    table = report(rows_in, split_list(by, "--by"), period, t0, t1, deals)
    rows = as_records(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "report.csv", table.to_csv(index=False))
        write_text_atomic(out / "report.json", json.dumps(rows, indent=2))
        write_page(table, split_list(by, "--by"), out,
                   f"Carbon accounts by {by}, {period}")
    if as_json or as_csv:
        print_csv(rows) if as_csv else print_json(rows)
        return
    keys = split_list(by, "--by")
    print_records(f"Carbon accounts by {', '.join(keys)} and {period}",
                  (*keys, period, "requests", "tokens out", "energy", "location", "market",
                   "embodied", "total", "g/1k tok"),
                  [(*(str(r[k]) for k in keys), r["period"], str(r["requests"]),
                    str(int(r["completion_tokens"] or 0)),
                    f"{r['energy_kwh'] * 1000:.3g} Wh", fmt_g(r["location_g"]),
                    fmt_g(r["market_g"]), fmt_g(r["embodied_g"]), fmt_g(r["total_g"]),
                    "—" if r["g_per_1k_tokens"] is None else f"{r['g_per_1k_tokens']:.3g}")
                   for r in rows])
    basis = (f"market-based: {contracts}" if contracts else
             "market-based = location-based (no --contracts)")
    console.print(f"total = location-based operational + embodied; SCI per 1k output tokens and "
                  f"per request in --json/--csv; {basis}. {SCI_BOUNDARY}.", style="dim")


@ledger_app.command("check")
def ledger_check(
    results: Annotated[Path, typer.Option(help="Ledger directory (and its crash journals).")
                       ] = Path("tokenprint-results"),
    ledger: LedgerUrlOpt = None,
    as_json: JsonOpt = False,
    recover: Annotated[bool, typer.Option(
        "--recover", help="First write the rows that killed runs journaled but did not commit "
        "(a gateway start does the same).")] = False,
) -> None:
    """Gaps in the ledger: per gateway run, requests answered vs rows recorded, rows dropped,
    and whether it stopped cleanly or is still running (exit 1 when any run has a gap)."""
    from tokenprint.database import redact
    from tokenprint.gateway.ledger import check, recover_folder

    if recover:
        added = recover_folder(results, ledger)
        if not as_json:
            console.print(f"recovered {added} journaled row(s) of killed runs")
    runs = check(results, ledger)
    if as_json:
        print_json(runs)
    else:
        _print_check(redact(ledger) if ledger else str(results), runs)
    if any(not r["ok"] for r in runs):
        raise typer.Exit(1)


def _print_check(where: str, runs: list[dict[str, Any]]) -> None:
    """One block per gateway run (a run id and a time never cut, at any width), then what the
    runs add up to."""
    console.print(f"Ledger check: {where}", style="bold")
    for r in runs:
        state = ("stopped cleanly" if r["stopped_cleanly"] else "running" if r["running"]
                 else "KILLED")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started_utc"]))
        host = f"  on {r['host']}" if r.get("host") else ""
        console.print(f"{r['run_id']}{host}  started {started} UTC  {state}",
                      style=None if r["ok"] else "red", highlight=False)
        journal = f" ({r['recoverable']} in its journal)" if r["recoverable"] else ""
        console.print(f"  answered {r['answered']} · recorded {r['recorded']} · dropped "
                      f"{r['dropped']} · missing {r['missing']}{journal}", highlight=False)
    gaps = [r for r in runs if r["missing"] or r["dropped"]]
    killed = [r for r in runs if not r["ok"] and r not in gaps]
    if not runs:
        console.print("no gateway runs recorded in this ledger (older than 0.2?)")
    if gaps:
        console.print(f"{len(gaps)} run(s) with a gap: rows missing or dropped. A killed run's "
                      "missing rows are in its journal: the next gateway start or `ledger "
                      "check --recover` writes them.", style="red")
    if killed:
        console.print(f"{len(killed)} run(s) killed without a gap: every request they answered "
                      "has its row.", style="yellow")
    if runs and not gaps and not killed:
        console.print("every answered request has its row; every run stopped cleanly or "
                      "is running")


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command("serve")(serve)
    app.add_typer(ledger_app, name="ledger")
