"""``tokenprint watch``: a sidecar that turns a deployment's own metrics into carbon."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tokenprint.carbon.amortize import MAX_LIFETIME_YEARS
from tokenprint.carbon.operational import MAX_PUE, kwh
from tokenprint.cli.common import (
    CatalogOpt,
    CsvOpt,
    JsonOpt,
    LedgerUrlOpt,
    console,
    fmt_g,
    in_range,
    load,
    parse_duration_s,
    print_csv,
    print_json,
    print_records,
    split_list,
)
from tokenprint.errors import TokenprintError

ENERGY_HELP = ("Energy source: predicted (the model, from token rates; the default), nvml "
               "(this host's GPU counters), rapl (this host's CPU package and DRAM, for "
               "serving on CPUs), dcgm=URL (an NVIDIA DCGM exporter's /metrics) or "
               "kepler=URL (Kepler's /metrics).")


def energy_reader(spec: str, catalog: object, model: str, gpu: str, gpus: int, stack: str,
                  client: object) -> object:
    """The energy source an --energy value names."""
    from tokenprint.fleet.exposition import ENERGY_SERIES
    from tokenprint.fleet.watch import ExporterEnergy, PredictedEnergy

    kind, _, url = spec.partition("=")
    if kind == "predicted" and not url:
        return PredictedEnergy(catalog, model, gpu, gpus, stack)  # type: ignore[arg-type]
    if kind == "nvml" and not url:
        from tokenprint.measure.base import MeterError
        from tokenprint.measure.nvml import NvmlEnergySource

        try:
            src = NvmlEnergySource()
        except MeterError as exc:
            raise TokenprintError(f"--energy nvml: {exc}") from None
        return src
    if kind == "rapl" and not url:
        from tokenprint.measure.base import MeterError
        from tokenprint.measure.counter import RaplCounter

        try:
            return RaplCounter()
        except MeterError as exc:
            raise TokenprintError(f"--energy rapl: {exc}") from None
    if kind in ENERGY_SERIES and url.startswith(("http://", "https://")):
        return ExporterEnergy(kind, url, client)  # type: ignore[arg-type]
    raise TokenprintError(f"--energy {spec!r} is invalid; valid: predicted, nvml, rapl, "
                          "dcgm=URL, kepler=URL (URL starting with http:// or https://)")


def watch(
    metrics: Annotated[str, typer.Option(metavar="URL[,URL...]",
        help="The serving engines' /metrics (vLLM, SGLang or TGI; told apart by their "
             "series), comma-separated: the replicas of one deployment.")],
    model: Annotated[str, typer.Option(help="Catalog model id the deployment serves.")],
    gpu: Annotated[str, typer.Option(help="Catalog GPU id of its hosts.")],
    region: Annotated[str, typer.Option(help="Grid region of its hosts.")],
    gpus: Annotated[str, typer.Option(metavar="N", help="GPUs provisioned in all (embodied "
                                                        "carbon is charged for every one).")]
    = "1",
    energy: Annotated[str, typer.Option(help=ENERGY_HELP)] = "predicted",
    intensity_file: Annotated[Path | None, typer.Option(help="Hourly intensity CSV for the "
        "region (else its annual average).")] = None,
    live_intensity: Annotated[bool, typer.Option(help="Electricity Maps' live intensity for "
        "the region, as the gateway takes it (token in $ELECTRICITYMAPS_TOKEN; cached 5 min; "
        "falls back to the annual average, saying why).")] = False,
    interval: Annotated[str, typer.Option(metavar="SECONDS", help="Seconds between scrapes.")]
    = "15",
    port: Annotated[str, typer.Option(metavar="PORT", help="Port of the watcher's own /metrics "
                                                           "(0: none).")] = "9464",
    host: Annotated[str, typer.Option(help="Address of the watcher's /metrics.")] = "127.0.0.1",
    results: Annotated[Path, typer.Option(help="Ledger directory (watch.sqlite: one row per "
                                               "interval).")] = Path("tokenprint-results"),
    deployment: Annotated[str | None, typer.Option(help="Name in the ledger and metrics "
                                                        "(default MODEL@GPU).")] = None,
    team: Annotated[str | None, typer.Option(help="Team the deployment bills to (a label on "
                                             "its rows and series, as the gateway's keys).")]
    = None,
    project: Annotated[str | None, typer.Option(help="Project it bills to.")] = None,
    ledger: LedgerUrlOpt = None,
    stack: Annotated[str, typer.Option(help="Serving stack of the predicted energy.")]
    = "vllm-2025",
    scope: Annotated[str, typer.Option(help="Embodied scope: die|device|card|server.")]
    = "device",
    lifetime_years: Annotated[str, typer.Option(metavar="NUMBER", help="Hardware lifetime.")]
    = "5",
    pue: Annotated[str, typer.Option(metavar="NUMBER", help="Data-centre PUE.")] = "1.0",
    iterations: Annotated[str, typer.Option(metavar="N", help="Stop after N intervals (0: run "
                                                              "until stopped).")] = "0",
    catalog: CatalogOpt = None,
) -> None:
    """Carbon of a running deployment from the metrics it already exports (no proxy in the
    request path): one ledger row per interval and tokenprint_watch_* counters on /metrics."""
    import httpx
    from prometheus_client import start_http_server

    from tokenprint.carbon import load_intensity_csv
    from tokenprint.fleet.watch import Watcher, WatchLedger, WatchMetrics, run_loop
    from tokenprint.predict.params import check_stack

    cat = load(catalog)
    n_gpus = int(in_range(gpus, "--gpus", 1, 100_000))
    every_s = in_range(interval, "--interval", 0.1, 86_400)
    port_n = int(in_range(port, "--port", 0, 65535))
    n_iter = int(in_range(iterations, "--iterations", 0, 10**9))
    urls = split_list(metrics, "--metrics URL")
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise TokenprintError(f"--metrics {u!r} is invalid; give a URL starting with "
                                  "http:// or https://")
    series = (load_intensity_csv(intensity_file, fill=True, region=region) if intensity_file
              else None)
    if live_intensity and series is not None:
        raise TokenprintError("give --intensity-file or --live-intensity, not both")
    live = None
    if live_intensity:
        from tokenprint.carbon.resolver import IntensityResolver

        live = IntensityResolver(cat, "electricitymaps")
    client = httpx.Client(timeout=min(every_s, 10.0))
    reader = energy_reader(energy, cat, model, gpu, n_gpus, check_stack(cat, stack), client)
    for flag, value in (("--team", team), ("--project", project)):
        if value is not None and not (0 < len(value) <= 64 and value.isprintable()):
            raise TokenprintError(f"{flag} {value!r} is invalid; give 1 to 64 printable "
                                  "characters (as a gateway key's team or project)")
    ledger_db = WatchLedger(results, url=ledger)
    board = WatchMetrics()
    watcher = Watcher(cat, endpoints=urls, model=model, gpu=gpu, gpus=n_gpus, region=region,
                      energy=reader, ledger=ledger_db, metrics=board,  # type: ignore[arg-type]
                      deployment=deployment, intensity=series, scope=scope,
                      lifetime_years=in_range(lifetime_years, "--lifetime-years", 0,
                                              MAX_LIFETIME_YEARS, low_open=True),
                      pue=in_range(pue, "--pue", 1.0, MAX_PUE), client=client, live=live,
                      team=team, project=project)
    if port_n:
        try:
            start_http_server(port_n, addr=host, registry=board.registry)
        except OSError as exc:
            raise TokenprintError(f"cannot serve /metrics on {host}:{port_n}: {exc}") from None
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    console.print(f"watching {watcher.deployment}: {len(urls)} endpoint(s), energy "
                  f"{reader.method}, every {every_s:g} s"  # type: ignore[attr-defined]
                  + (f"; /metrics on http://{host}:{port_n}/metrics" if port_n else "")
                  + f"; ledger {ledger_db.where}")
    recorded = [0]   # counted here too: a Ctrl-C inside the loop still reports the rows written

    def show(row: Any) -> None:
        recorded[0] += 1
        if row.status == "ok":
            console.print(f"{time.strftime('%H:%M:%S')} {row.generation_tokens:.0f} tok out, "
                          f"{row.prompt_tokens:.0f} in, {row.energy_j:.0f} J "
                          f"({row.energy_method}), {fmt_g(row.total_g or 0.0)}"
                          + (f", {row.g_per_1k_tokens:.3g} g/1k tok" if row.g_per_1k_tokens
                             else "") + (f" — {row.note}" if row.note else ""),
                          highlight=False)
        else:
            console.print(f"{time.strftime('%H:%M:%S')} gap: {row.note}", style="yellow",
                          highlight=False)

    try:
        run_loop(watcher, every_s, n_iter, lambda: stop["now"], show)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
        ledger_db.close()
    console.print(f"{recorded[0]} interval(s) recorded in {ledger_db.where}")


fleet_app = typer.Typer(help="Carbon of existing deployments from Prometheus, after the fact.",
                        no_args_is_help=True)


@fleet_app.command("report")
def fleet_report_cmd(
    prometheus: Annotated[str | None, typer.Option(metavar="URL",
        help="Prometheus server (its HTTP API), e.g. http://127.0.0.1:9090.")] = None,
    ledger: Annotated[str | None, typer.Option(
        "--ledger", metavar="URL", help="Instead of Prometheus: the intervals tokenprint watch "
        "wrote to this shared PostgreSQL ledger (watchers of many hosts, summed).")] = None,
    results: Annotated[Path | None, typer.Option(metavar="DIR",
        help="Instead of Prometheus: the intervals tokenprint watch wrote to DIR/watch.sqlite.")]
    = None,
    deployments: Annotated[Path | None, typer.Option(metavar="FILE",
        help="TOML \\[\\[deployment]] tables: name, match (labels), model, gpu, gpus, region, "
             "energy (predicted|dcgm|kepler), energy_match, intensity_file. Without it: the "
             "deployments tokenprint watch charged (its tokenprint_watch_* series).")] = None,
    since: Annotated[str | None, typer.Option(metavar="LENGTH",
        help="Window ending now: 30m, 24h, 7d (default 24h).")] = None,
    start: Annotated[str | None, typer.Option(help="Window start, ISO 8601 (with --end).")]
    = None,
    end: Annotated[str | None, typer.Option(help="Window end, ISO 8601.")] = None,
    step: Annotated[str, typer.Option(metavar="LENGTH", help="Report step.")] = "1h",
    scope: Annotated[str, typer.Option(help="Embodied scope: die|device|card|server.")]
    = "device",
    lifetime_years: Annotated[str, typer.Option(metavar="NUMBER", help="Hardware lifetime.")]
    = "5",
    pue: Annotated[str, typer.Option(metavar="NUMBER", help="Data-centre PUE.")] = "1.0",
    contracts: Annotated[Path | None, typer.Option(metavar="FILE",
        help="Contractual instruments and residual mixes (TOML, as ledger report takes) for "
             "market-based Scope 2 beside location-based; without it they are equal.")] = None,
    out: Annotated[Path | None, typer.Option(metavar="DIR",
        help="Write fleet.csv, fleet.json, fleet.png and fleet.html here.")] = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Carbon by deployment and step from a Prometheus server's history: tokens, energy
    (measured where a counter is named, else predicted), operational and embodied carbon."""

    from tokenprint.carbon.amortize import check_lifetime
    from tokenprint.carbon.embodied import check_scope
    from tokenprint.cli.common import cli_time
    from tokenprint.fleet.output import write_outputs
    from tokenprint.fleet.report import (
        SCI_BOUNDARY,
        Prometheus,
        ReportWindow,
        fleet_report,
        load_deployments,
        summary,
        watched_report,
    )

    cat = load(catalog)
    sources = [f for f, v in (("--prometheus", prometheus), ("--ledger", ledger),
                              ("--results", results)) if v is not None]
    if len(sources) != 1:
        raise TokenprintError("give one source: --prometheus URL, --ledger URL (a shared "
                              "watch ledger) or --results DIR (watch.sqlite)"
                              + (f"; got {', '.join(sources)}" if sources else ""))
    if prometheus is not None and not prometheus.startswith(("http://", "https://")):
        raise TokenprintError(f"--prometheus {prometheus!r} is invalid; give a URL starting with "
                              "http:// or https://")
    if ledger is not None:
        from tokenprint.database import check_url

        check_url(ledger)
    if deployments is not None and prometheus is None:
        raise TokenprintError("--deployments goes with --prometheus (a watch ledger names its "
                              "deployments itself)")
    if (start is None) != (end is None):
        raise TokenprintError("--start and --end go together")
    if start is not None and since is not None:
        raise TokenprintError("give --since or --start/--end, not both")
    step_s = parse_duration_s(step, "--step")
    if start is not None and end is not None:
        t0, t1 = cli_time(start, "--start"), cli_time(end, "--end")
    else:
        t1 = time.time()
        t0 = t1 - parse_duration_s(since or "24h", "--since")
    check_scope(scope)
    lifetime = check_lifetime(in_range(lifetime_years, "--lifetime-years", 0, MAX_LIFETIME_YEARS,
                                       low_open=True))
    pue_v = in_range(pue, "--pue", 1.0, MAX_PUE)
    window = ReportWindow(t0 + step_s, t1, step_s)
    if window.end_s < window.start_s:
        raise TokenprintError("the report window is shorter than one step; give a longer "
                              "window or a shorter --step")
    refused: list[str] = []
    if prometheus is None:
        from tokenprint.fleet.from_ledger import ledger_report
        from tokenprint.fleet.watch import WatchLedger

        if results is not None and not (results / "watch.sqlite").is_file():
            raise TokenprintError(f"no watch ledger in {str(results)!r} (watch.sqlite not "
                                  "found); give the --results tokenprint watch wrote to")
        book = WatchLedger(results or Path("."), url=ledger)
        try:
            table = ledger_report(book.rows(window.start_s - step_s, window.end_s), window)
        finally:
            book.close()
    elif deployments is None:
        prom = Prometheus(prometheus)
        refused = prom.refused
        table = watched_report(prom, window)
    else:
        prom = Prometheus(prometheus)
        refused = prom.refused
        deps = load_deployments(deployments)
        for d in deps:
            cat.model(d.model), cat.gpu(d.gpu), cat.region(d.region)
        table = fleet_report(prom, cat, deps, window, scope, lifetime, pue_v)
    from tokenprint.carbon.contracts import load_contracts
    from tokenprint.fleet.market import with_market

    deals = load_contracts(contracts) if contracts is not None else None
    table = with_market(table, deals, pue_v, window.start_s, window.end_s, step_s)
    totals = summary(table)
    if out is not None:
        files = write_outputs(table, totals, out, f"Fleet carbon, {start or since or '24h'}")
    if as_csv:   # one row per deployment and step (the totals are in --json and --out)
        print_csv(table.assign(end_utc=table["end_utc"].astype(str)).to_dict("records"))
        return
    if as_json:
        print_json({"totals": totals.to_dict("records"),
                    "steps": table.assign(end_utc=table["end_utc"].astype(str))
                    .to_dict("records"),
                    "refused_samples": refused, "sci_boundary": SCI_BOUNDARY})
        return

    _print_totals(totals, step)
    console.print(f"Scope 2 operational: location-based {fmt_g(totals['location_g'].sum())}, "
                  f"market-based {fmt_g(totals['market_g'].sum())}"
                  + (f" ({contracts})" if contracts else " (no --contracts: equal)")
                  + f". g / 1k tok is the SCI per 1,000 output tokens. {SCI_BOUNDARY}.",
                  style="dim")
    if refused:
        console.print(f"{len(refused)} sample(s) from Prometheus refused (their steps count "
                      f"as without data); first: {refused[0]}", style="yellow")
    if out is not None:
        console.print(f"wrote {', '.join(str(f) for f in files)}")


def _print_totals(totals: Any, step: str) -> None:
    """Totals per deployment; a deployment without data shows —, not 0."""
    def num(v: float, fmt: str) -> str:
        return "—" if v != v else format(v, fmt)

    def grams(v: float) -> str:
        return "—" if v != v else fmt_g(v)

    rows = []
    for r in totals.to_dict("records"):
        n_gpus = "" if r["gpus"] != r["gpus"] else f" × {r['gpus']:.0f}"
        team = f" ({r['team']})" if isinstance(r.get("team"), str) else ""
        rows.append((r["deployment"] + team, r["model"], f"{r['gpu']}{n_gpus}", r["region"],
                     num(r["generation_tokens"], ".0f"), num(float(kwh(r["energy_j"])), ".3g"),
                     grams(r["operational_g"]), grams(r["embodied_g"]),
                     num(r["g_per_1k_tokens"], ".3g"),
                     f"{r['steps_without_data']} of {r['steps']}"))
    print_records(f"Fleet carbon, {len(totals)} deployment(s), step {step}",
                  ("deployment (team)", "model", "gpu × n", "region", "tokens out", "energy kWh",
                   "operational", "embodied", "g / 1k tok", "steps w/o data"), rows)


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command("watch")(watch)
    app.add_typer(fleet_app, name="fleet")
