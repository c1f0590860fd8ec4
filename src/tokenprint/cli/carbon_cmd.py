"""``tokenprint carbon``: the footprint of an amount of energy on some GPUs in a region."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tokenprint.carbon import Intensity, compute_footprint, load_intensity_csv
from tokenprint.carbon.amortize import check_lifetime
from tokenprint.carbon.bom import bom_dict, reconcile_card
from tokenprint.carbon.embodied import COMPONENTS, check_scope
from tokenprint.carbon.footprint import Footprint
from tokenprint.carbon.operational import MAX_PUE, joules, kwh
from tokenprint.cli.common import (
    CatalogOpt,
    JsonOpt,
    cli_time,
    console,
    fmt_g,
    in_range,
    load,
    number,
    print_json,
)
from tokenprint.cli.embodied_view import print_bom
from tokenprint.errors import TokenprintError
from tokenprint.units import S_PER_HOUR


def carbon(
    energy_kwh: Annotated[str | None, typer.Option(metavar="NUMBER",
        help="Energy drawn, kWh.")] = None,
    duration_h: Annotated[str | None, typer.Option(metavar="NUMBER",
        help="Time the GPUs were held, hours.")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU id (tokenprint catalog gpus).")] = None,
    count: Annotated[int, typer.Option(help="Number of GPUs.")] = 1,
    region: Annotated[str | None, typer.Option(help="Grid region id (tokenprint catalog regions)."
                                               )] = None,
    start: Annotated[str | None, typer.Option(help="Start time, ISO 8601 (with --intensity-file)."
                                              )] = None,
    intensity_file: Annotated[Path | None, typer.Option(help="Hourly intensity CSV (Electricity "
                              "Maps export, EIA-930 avg_CI, or timestamp,intensity_g_per_kwh).")
                              ] = None,
    basis: Annotated[str, typer.Option(help="Intensity basis read from the file: lifecycle|direct."
                                       )] = "lifecycle",
    fill: Annotated[bool, typer.Option(help="Interpolate gaps in the intensity file.")] = False,
    scope: Annotated[str, typer.Option(help="Embodied scope: die|device|card|server.")] = "device",
    host: Annotated[str | None, typer.Option(help="Host archetype for server scope (default: the "
                                             "GPU's usual host).")] = None,
    lifetime_years: Annotated[str, typer.Option(metavar="NUMBER",
        help="Hardware lifetime for amortization.")
                              ] = "5",
    pue: Annotated[str, typer.Option(metavar="NUMBER",
        help="Data-centre PUE (1.0 = device-level).")] = "1.0",
    utilization: Annotated[str, typer.Option(metavar="NUMBER",
        help="Share of provisioned time the GPUs serve "
                                             "(0-1]: embodied is charged for duration / U. "
                                             "Default 1: the duration is all the time they are "
                                             "held (with --from-run: the run's own wall time).")
                           ] = "1",
    from_run: Annotated[str | None, typer.Option(metavar="RUN_ID",
        help="Use a measured run's energy and duration: a run id, a unique prefix of one, or "
             "'latest' (from --results).")] = None,
    results: Annotated[Path, typer.Option(help="Results directory for --from-run.")] = Path(
        "tokenprint-results"),
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also show every public source of the GPU's embodied carbon side by "
        "side (as `catalog show gpu ID --embodied`); with --json adds 'embodied_sources'.")
                       ] = False,
) -> None:
    """Operational + embodied carbon of energy drawn on GPUs in a grid region."""
    cat = load(catalog)
    energy_kind = "given"
    if from_run is not None:
        from tokenprint.bench.store import ResultsStore

        given = [f for f, v in (("--energy-kwh", energy_kwh), ("--duration-h", duration_h)) if v]
        if given:
            raise TokenprintError(f"--from-run takes energy and duration from the run; drop "
                                  f"{' and '.join(given)}")

        rec = ResultsStore.open_existing(results).get(from_run)
        energy_j = float(rec["prefill_energy_j"] or 0) + float(rec["decode_energy_j"] or 0)
        duration_s = float(rec["e2e_s"])
        energy_kind = str(rec["energy_kind"])
        gpu = gpu or rec.get("hardware_id")
        if not gpu or gpu == "cpu":
            raise TokenprintError(
                f"run {from_run!r} was measured on {rec.get('hardware_id')!r}, not a catalog GPU; "
                "name the GPU to charge embodied carbon to with --gpu"
            )
    else:
        if energy_kwh is None or duration_h is None:
            raise TokenprintError("give --energy-kwh and --duration-h (or --from-run RUN_ID)")
        # bounds far above any serving fleet (all data centres use ~4e11 kWh a year), so a
        # typo cannot overflow into an infinite footprint
        energy_j = float(joules(in_range(energy_kwh, "--energy-kwh", 0, 1e12)))
        duration_s = in_range(duration_h, "--duration-h", 0, 1e6, low_open=True) * S_PER_HOUR
    if gpu is None:
        raise TokenprintError("give --gpu (see: tokenprint catalog gpus)")
    if region is None:
        raise TokenprintError("give --region (see: tokenprint catalog regions)")
    if count < 1:
        raise TokenprintError(f"--count {count} is invalid; it must be >= 1")
    check_scope(scope)
    lifetime = check_lifetime(number(lifetime_years, "lifetime (years)"))
    pue_value = in_range(pue, "--pue", 1.0, MAX_PUE)
    intensity: Intensity | None = None
    start_s = None
    if intensity_file is not None:
        intensity = load_intensity_csv(intensity_file, basis=basis, fill=fill, region=region)
        if start is None:
            raise TokenprintError("--intensity-file needs --start (ISO 8601 time of the run)")
        start_s = cli_time(start, "--start")
    elif start is not None:
        raise TokenprintError("--start needs --intensity-file (an hourly intensity series)")
    fp = compute_footprint(
        cat, gpu=gpu, region=region, energy_j=energy_j, duration_s=duration_s, gpu_count=count,
        scope=scope, lifetime_years=lifetime, pue=pue_value, intensity=intensity,
        start_s=start_s, host=host, energy_kind=energy_kind,
        utilization=number(utilization, "utilization"),
    )
    bom = reconcile_card(cat.gpu(gpu), cat) if explain else None
    if as_json:
        out = fp.to_dict()
        if bom is not None:
            out["embodied_sources"] = bom_dict(bom)
        print_json(out)
        return
    print_footprint(fp)
    if bom is not None:
        print_bom(bom, console)


def print_footprint(fp: Footprint) -> None:
    """Rich table of a footprint with ranges and the main sources."""
    table = Table(title=f"Carbon footprint — {fp.gpu_count} × {fp.gpu} in {fp.region}, "
                  f"{fp.scope} scope, {fp.lifetime_years:g}-year lifetime")
    table.add_column("part", style="bold")
    table.add_column("grams CO2e", justify="right")
    table.add_column("range", justify="right")
    for name, est in (("operational", fp.operational_g), ("embodied (amortized)", fp.embodied_g),
                      ("total", fp.total_g)):
        table.add_row(name, fmt_g(float(est.mid)),
                      f"{fmt_g(float(est.low))} – {fmt_g(float(est.high))}")
    for comp in COMPONENTS:
        est = fp.embodied.components_g[comp]
        if float(est.high) > 0:
            table.add_row(f"  embodied: {comp}", fmt_g(float(est.mid)),
                          f"{fmt_g(float(est.low))} – {fmt_g(float(est.high))}", style="dim")
    console.print(table)
    console.print(
        f"energy {float(kwh(fp.energy_j)):.4g} kWh ({fp.energy_kind}), PUE {fp.pue:g}, intensity "
        f"{float(fp.intensity_g_per_kwh.mid):.4g} g/kWh — {fp.intensity_source}")
    console.print(f"embodied share {fp.embodied_share:.1%}; amortized over {fp.amortization} "
                  f"time at {fp.utilization:.0%} utilization")
    for note in fp.notes:
        console.print(f"note: {note}", style="yellow")


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command("carbon")(carbon)
