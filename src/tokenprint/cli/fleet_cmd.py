"""``tokenprint watch``: a sidecar that turns a deployment's own metrics into carbon."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from tokenprint.cli.common import CatalogOpt, console, fmt_g, in_range, load, split_list
from tokenprint.errors import TokenprintError

ENERGY_HELP = ("Energy source: predicted (the model, from token rates; the default), nvml "
               "(this host's GPU counters), dcgm=URL (an NVIDIA DCGM exporter's /metrics) or "
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
        src.method = "nvml"  # type: ignore[attr-defined]
        return src
    if kind in ENERGY_SERIES and url.startswith(("http://", "https://")):
        return ExporterEnergy(kind, url, client)  # type: ignore[arg-type]
    raise TokenprintError(f"--energy {spec!r} is invalid; valid: predicted, nvml, dcgm=URL, "
                          "kepler=URL (URL starting with http:// or https://)")


def watch(
    metrics: Annotated[str, typer.Option(metavar="URL[,URL…]",
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
    interval: Annotated[str, typer.Option(metavar="SECONDS", help="Seconds between scrapes.")]
    = "15",
    port: Annotated[str, typer.Option(metavar="PORT", help="Port of the watcher's own /metrics "
                                                           "(0: none).")] = "9464",
    host: Annotated[str, typer.Option(help="Address of the watcher's /metrics.")] = "127.0.0.1",
    results: Annotated[Path, typer.Option(help="Ledger directory (watch.sqlite: one row per "
                                               "interval).")] = Path("tokenprint-results"),
    deployment: Annotated[str | None, typer.Option(help="Name in the ledger and metrics "
                                                        "(default MODEL@GPU).")] = None,
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
    from tokenprint.fleet.watch import Watcher, WatchLedger, WatchMetrics
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
    series = load_intensity_csv(intensity_file, fill=True) if intensity_file else None
    client = httpx.Client(timeout=min(every_s, 10.0))
    reader = energy_reader(energy, cat, model, gpu, n_gpus, check_stack(cat, stack), client)
    ledger = WatchLedger(results)
    board = WatchMetrics()
    watcher = Watcher(cat, endpoints=urls, model=model, gpu=gpu, gpus=n_gpus, region=region,
                      energy=reader, ledger=ledger, metrics=board,  # type: ignore[arg-type]
                      deployment=deployment, intensity=series, scope=scope,
                      lifetime_years=in_range(lifetime_years, "--lifetime-years", 0, None,
                                              low_open=True),
                      pue=in_range(pue, "--pue", 1.0, None), client=client)
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
                  + f"; ledger {results / 'watch.sqlite'}")
    done = 0
    next_t = time.monotonic()
    try:
        while not stop["now"]:
            row = watcher.step()
            if row is not None:
                done += 1
                if row.status == "ok":
                    console.print(
                        f"{time.strftime('%H:%M:%S')} {row.generation_tokens:.0f} tok out, "
                        f"{row.prompt_tokens:.0f} in, {row.energy_j:.0f} J "
                        f"({row.energy_method}), {fmt_g(row.total_g or 0.0)}"
                        + (f", {row.g_per_1k_tokens:.3g} g/1k tok" if row.g_per_1k_tokens
                           else "") + (f" — {row.note}" if row.note else ""),
                        highlight=False)
                else:
                    console.print(f"{time.strftime('%H:%M:%S')} gap: {row.note}",
                                  style="yellow", highlight=False)
                if n_iter and done >= n_iter:
                    break
            next_t += every_s
            while not stop["now"] and time.monotonic() < next_t:
                time.sleep(min(0.2, max(next_t - time.monotonic(), 0.0)))
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
        ledger.close()
    console.print(f"{done} interval(s) recorded in {results / 'watch.sqlite'}")


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command("watch")(watch)
