"""``tokenprint simulate`` and ``tokenprint plan``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tokenprint.carbon.amortize import MAX_LIFETIME_YEARS
from tokenprint.carbon.operational import MAX_PUE, kwh
from tokenprint.cli.common import (
    CatalogOpt,
    CsvOpt,
    JsonOpt,
    console,
    fmt_g,
    in_range,
    int_list,
    load,
    number,
    print_csv,
    print_json,
    print_records,
    split_list,
)
from tokenprint.errors import TokenprintError
from tokenprint.predict.params import check_stack

if TYPE_CHECKING:
    from tokenprint.simulate import SimSummary


def _check_numbers(time_scale: float, slo_ttft_s: float, slo_tpot_s: float,
                   lifetime_years: float, pue: float, seed: int) -> None:
    """The numeric options simulate and plan share: finite and in range, named in the error."""
    in_range(time_scale, "--time-scale", 1e-3, 1e3)   # a thousandth to a thousand times
    in_range(slo_ttft_s, "--slo-ttft-s", 0, low_open=True)
    in_range(slo_tpot_s, "--slo-tpot-s", 0, low_open=True)
    in_range(lifetime_years, "--lifetime-years", 0, MAX_LIFETIME_YEARS, low_open=True)
    in_range(pue, "--pue", 1.0, MAX_PUE)
    in_range(seed, "--seed", 0, 2**32 - 1)


def _trace(trace: Path | None, synthetic: str | None, time_scale: float, start: str | None,
           seed: int) -> Any:
    from tokenprint.cli.common import cli_time
    from tokenprint.simulate import load_trace, synthetic_poisson
    from tokenprint.traces import MAX_SYNTHETIC_REQUESTS

    if (trace is None) == (synthetic is None):
        raise TokenprintError("give exactly one of --trace FILE or --synthetic "
                              "N,RATE[,INPUT_MEAN,OUTPUT_MEAN]")
    if trace is not None:
        tr = load_trace(trace)
    else:
        parts = [number(x, "synthetic parameter") for x in split_list(str(synthetic),
                                                                       "synthetic")]
        if len(parts) not in (2, 4):
            raise TokenprintError("--synthetic takes N,RATE or N,RATE,INPUT_MEAN,OUTPUT_MEAN")
        in_mean, out_mean = (parts[2], parts[3]) if len(parts) == 4 else (512.0, 256.0)
        n = in_range(parts[0], "--synthetic N", 1, MAX_SYNTHETIC_REQUESTS)
        if n != int(n):
            raise TokenprintError(f"--synthetic N {parts[0]:g} is invalid; it must be a whole "
                                  "number of requests")
        tr = synthetic_poisson(int(n), parts[1], in_mean, out_mean, seed=seed)
    if time_scale != 1.0:
        tr = tr.scaled(time_scale)
    if start is not None:
        tr = tr.shifted(cli_time(start, "--start"))
    return tr


def simulate(
    model: Annotated[str, typer.Option(help="Model id.")],
    gpu: Annotated[str, typer.Option(help="GPU id (comma-separated: several configurations).")],
    region: Annotated[str, typer.Option(help="Grid region id.")],
    trace: Annotated[Path | None, typer.Option(help="Azure CSV or Mooncake JSONL trace.")] = None,
    synthetic: Annotated[str | None, typer.Option(help="Poisson trace: N,RATE[,IN,OUT] (means)."
                                                  )] = None,
    replicas: Annotated[str, typer.Option(help="Replicas (each tp GPUs); comma-separated for "
                                          "several configurations.")] = "1",
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree per replica.")] = 1,
    stack: Annotated[str, typer.Option(help="Serving stack the replicas run (speed and power "
                                       "profile): vllm-2025 (default), vllm-2024, tensorrt-llm, "
                                       "hf-transformers, deepspeed-mii.")] = "vllm-2025",
    max_batch: Annotated[str, typer.Option(help="Max requests in flight per replica "
                                           "(comma-separated: several).")] = "64",
    balance: Annotated[str, typer.Option(help="least-work|round-robin")] = "least-work",
    time_scale: Annotated[float, typer.Option(help="Replay at k× the trace's rate.")] = 1.0,
    start: Annotated[str | None, typer.Option(help="Place the trace at this UTC time (ISO 8601)."
                                              )] = None,
    intensity_file: Annotated[Path | None, typer.Option(help="Hourly intensity CSV (needs "
                                                        "--start).")] = None,
    slo_ttft_s: Annotated[float, typer.Option(help="TTFT target, s.")] = 1.0,
    slo_tpot_s: Annotated[float, typer.Option(help="TPOT target, s.")] = 0.2,
    scope: Annotated[str, typer.Option(help="Embodied scope.")] = "device",
    lifetime_years: Annotated[float, typer.Option(help="Lifetime, years.")] = 5.0,
    pue: Annotated[float, typer.Option(help="PUE.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for --synthetic.")] = 0,
    executor: Annotated[str, typer.Option(help="local|ray (several configurations in "
                                          "parallel).")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Replay a request trace through N replicas with continuous batching; latency and carbon.

    Several GPUs, replica counts or max batches (comma-separated) simulate every combination
    (in parallel with --executor ray) and print one result per configuration.
    """
    from tokenprint.carbon import load_intensity_csv
    from tokenprint.carbon.amortize import check_lifetime
    from tokenprint.carbon.embodied import check_scope
    from tokenprint.simulate import ClusterSpec, carbon_of, summary
    from tokenprint.simulate import simulate as run_sim

    cat = load(catalog)
    check_scope(scope)
    check_lifetime(lifetime_years)
    _check_numbers(time_scale, slo_ttft_s, slo_tpot_s, lifetime_years, pue, seed)
    if intensity_file is not None and start is None:
        raise TokenprintError("--intensity-file needs --start (when the trace begins)")
    from tokenprint.executor import check_executor, parallel_map

    check_executor(executor)
    tr = _trace(trace, synthetic, time_scale, start, seed)
    specs = [ClusterSpec(model=cat.model(model).id, gpu=cat.gpu(g).id, replicas=r, tp=tp,
                         max_batch=b, balance=balance, stack=check_stack(cat, stack))
             for g in split_list(gpu, "GPU") for r in int_list(replicas, "replicas")
             for b in int_list(max_batch, "max batch")]
    cat.region(region)
    series = (load_intensity_csv(intensity_file, fill=True, region=region) if intensity_file
              else None)
    files = [str(f) for f in (catalog or [])]

    def one(spec: ClusterSpec) -> SimSummary:
        from tokenprint.catalog import get_catalog

        c_ = cat if executor == "local" else get_catalog(list(files))
        res_ = run_sim(tr, c_, spec, hourly=series is not None)
        carbon_ = carbon_of(res_, c_, region, scope=scope, lifetime_years=lifetime_years,
                            pue=pue, intensity=series)
        return summary(res_, carbon_, slo_ttft_s, slo_tpot_s, c_.region(region).id.upper())

    with console.status(f"simulating {tr.n:,} requests × {len(specs)} configuration(s)…"):
        outs = parallel_map(one, specs, executor, ray_address)
    if as_csv:   # one row per configuration, however many
        print_csv([o.to_dict() for o in outs])
        return
    if len(outs) > 1:
        if as_json:
            print_json([o.to_dict() for o in outs])
            return
        _configs_table(outs)
        return
    spec = specs[0]
    if as_json:
        print_json(outs[0].to_dict())
        return
    out = outs[0].to_dict()
    table = Table(title=f"Simulated {out['n_requests']:,} requests ({tr.name}) on "
                  f"{spec.replicas} × {tp} × {spec.gpu}, {spec.model}, max batch "
                  f"{spec.max_batch}")
    table.add_column("metric")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    table.add_column("p99", justify="right")
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        v = out[key]
        table.add_row(key, *(f"{v[p]:.3g}" if v[p] is not None else "—"
                             for p in ("p50", "p95", "p99")))
    console.print(table)
    console.print(f"SLO attainment (TTFT ≤ {slo_ttft_s:g} s, TPOT ≤ {slo_tpot_s:g} s): "
                  f"{out['slo_attainment']:.1%}; throughput {out['throughput_tok_s']:.0f} tok/s; "
                  f"GPU busy {out['gpu_busy_s']:.0f} s, idle {out['gpu_idle_s']:.0f} s")
    idle_kwh = float(kwh(out["idle_energy_j"]))
    console.print(f"energy {float(kwh(out['energy_j'])):.3g} kWh (idle {idle_kwh:.3g}); carbon "
                  f"{fmt_g(out['total_g'])} = operational "
                  f"{fmt_g(out['operational_g'])} + embodied {fmt_g(out['embodied_g'])} in "
                  f"{out['region']}; {out['g_per_1k_tokens']:.3g} g per 1k tokens"
                  + (f", {out['g_per_1k_slo_tokens']:.3g} g per 1k SLO-compliant tokens"
                     if out["g_per_1k_slo_tokens"] else ""))
    rng = out["total_range_g"]
    console.print(f"total range {fmt_g(rng['low'])} – {fmt_g(rng['high'])} (intensity and "
                  f"embodied factors' spread; the performance model's own range is not in it)",
                  style="dim")
    _warn_queue(out)
    if out["n_rejected"]:
        too_long = out.get("n_too_long") or 0
        console.print(f"{out['n_rejected']} of {out['n_requests']} requests were not served"
                      + (f" ({too_long} longer than {spec.model}'s context)" if too_long else
                         " (longer than the KV-cache budget)") + "; see n_rejected in --json",
                      style="yellow")
    console.print(f"source: predicted ({out['calibration']})", style="dim")


def _warn_queue(out: dict[str, Any], label: str = "") -> None:
    """Say so when the replicas fall behind the arrivals (the wait grows with the trace)."""
    q = out.get("queue") or {}
    if not q.get("grows"):
        return
    console.print(f"{label}the queue grows without bound: the latest tenth of requests waits "
                  f"{q['ttft_last_tenth_s']:.3g} s for its first token against "
                  f"{q['ttft_first_tenth_s']:.3g} s for the earliest, so a longer trace would "
                  "wait longer still; add replicas or a larger max batch", style="yellow",
                  highlight=False)


def _g3(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def _configs_table(outs: list[SimSummary]) -> None:
    rows = [(f"{o.spec.replicas} × {o.spec.gpu}", str(o.spec.max_batch), _g3(o.ttft_s.p95),
             _g3(o.tpot_s.p95), f"{o.slo_attainment:.1%}", f"{float(kwh(o.energy_j)):.3g}",
             fmt_g(o.carbon.total_g.mid), f"{o.carbon.g_per_1k_tokens:.3g}") for o in outs]
    print_records("Simulated configurations",
                  ("replicas × gpu", "max batch", "p95 TTFT s", "p95 TPOT s", "SLO",
                   "energy kWh", "total", "g/1k tok"), rows)
    for o in outs:
        _warn_queue(o.to_dict(), f"{o.spec.replicas} × {o.spec.gpu}: ")


def plan(
    models: Annotated[str, typer.Option(help="Candidate model ids.")],
    gpus: Annotated[str, typer.Option(help="Candidate GPU ids.")],
    regions: Annotated[str, typer.Option(help="Candidate regions (first = home region).")],
    trace: Annotated[Path | None, typer.Option(help="Azure CSV or Mooncake JSONL trace.")] = None,
    synthetic: Annotated[str | None, typer.Option(help="Poisson trace: N,RATE[,IN,OUT].")] = None,
    max_batch: Annotated[str, typer.Option(help="Candidate max batch sizes.")] = "16,32,64,128",
    stack: Annotated[str, typer.Option(help="Serving stack the replicas run (speed and power "
                                       "profile): vllm-2025 (default), vllm-2024, tensorrt-llm, "
                                       "hf-transformers, deepspeed-mii.")] = "vllm-2025",
    slo_ttft_s: Annotated[float, typer.Option(help="TTFT target, s.")] = 1.0,
    slo_tpot_s: Annotated[float, typer.Option(help="TPOT target, s.")] = 0.2,
    percentile: Annotated[str, typer.Option(help="p95|p99")] = "p95",
    max_replicas: Annotated[int, typer.Option(help="Largest replica count to try.")] = 64,
    deferrable: Annotated[float, typer.Option(help="Share of the load that may be deferred.")
                          ] = 0.0,
    deadline_h: Annotated[float, typer.Option(help="Deadline for deferred work, hours.")] = 0.0,
    intensity_dir: Annotated[Path | None, typer.Option(help="Folder of hourly intensity CSVs "
                                                       "named REGION.csv (needs --start).")
                             ] = None,
    region_capacity: Annotated[str | None, typer.Option(help="GPU limits per region: "
                                                        "FR=16,PL=8 (enables the MILP split).")
                               ] = None,
    tie_tolerance: Annotated[float, typer.Option(help="Plans within this share of the lowest "
                                                 "carbon count as tied; among them the lowest "
                                                 "p95 latency, then fewest GPUs, wins.")
                             ] = 0.01,
    time_scale: Annotated[float, typer.Option(help="Replay at k× the trace's rate.")] = 1.0,
    start: Annotated[str | None, typer.Option(help="Trace start, UTC ISO 8601.")] = None,
    scope: Annotated[str, typer.Option(help="Embodied scope.")] = "device",
    lifetime_years: Annotated[float, typer.Option(help="Lifetime, years.")] = 5.0,
    pue: Annotated[float, typer.Option(help="PUE.")] = 1.0,
    out: Annotated[Path, typer.Option(help="Folder for plan.json and pareto.png.")] = Path(
        "tokenprint-plan"),
    seed: Annotated[int, typer.Option(help="Seed for --synthetic.")] = 0,
    executor: Annotated[str, typer.Option(help="local|ray (candidates in parallel).")] =
        "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Find the lowest-carbon deployment (GPU, replicas, region, batch) meeting latency targets."""
    import json

    from tokenprint.plan import PlanInputs
    from tokenprint.plan import plan as run_plan
    from tokenprint.simulate.cluster import MAX_REPLICAS

    cat = load(catalog)
    caps: dict[str, int] = {}
    if region_capacity:
        for item in split_list(region_capacity, "region capacity"):
            if "=" not in item:
                raise TokenprintError(f"region capacity {item!r} must look like REGION=GPUS")
            k, v = item.split("=", 1)
            caps[cat.region(k).id.upper()] = int_list(v, "GPU capacity", minimum=0)[0]
    _check_numbers(time_scale, slo_ttft_s, slo_tpot_s, lifetime_years, pue, seed)
    in_range(max_replicas, "--max-replicas", 1, MAX_REPLICAS)
    in_range(deferrable, "--deferrable", 0, 1)
    in_range(deadline_h, "--deadline-h", 0)
    if deferrable > 0 and intensity_dir is None:
        raise TokenprintError("--deferrable needs --intensity-dir (hourly intensity to move the "
                              "deferrable share into) and --start")
    if deferrable > 0 and deadline_h <= 0:
        raise TokenprintError("--deferrable needs --deadline-h > 0 (how long work may wait)")
    tr = _trace(trace, synthetic, time_scale, start, seed)
    inp = PlanInputs(
        trace=tr, models=split_list(models, "model"), gpus=split_list(gpus, "GPU"),
        regions=split_list(regions, "region"), max_batches=int_list(max_batch, "max batch"),
        slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, percentile=percentile, scope=scope,
        lifetime_years=lifetime_years, pue=pue, max_replicas=max_replicas,
        intensity_dir=intensity_dir, deferrable=deferrable, deadline_h=deadline_h,
        region_capacity=caps, stack=check_stack(cat, stack),
        tie_tolerance=in_range(tie_tolerance, "--tie-tolerance", 0, 1))
    n = len(inp.models) * len(inp.gpus) * len(inp.max_batches)
    with console.status(f"planning over {n} candidates × {len(inp.regions)} regions…"):
        answer = run_plan(inp, cat, executor=executor, address=ray_address)
    out.mkdir(parents=True, exist_ok=True)
    from tokenprint.files import write_text_atomic

    doc = answer.to_dict()
    write_text_atomic(out / "plan.json", json.dumps(doc, indent=2, default=float))
    figure = None
    if answer.feasible:
        from tokenprint.report.plan_figure import pareto_figure

        figure = str(pareto_figure(answer, out / "pareto.png"))
        doc["figure"] = figure
    if as_csv:   # every feasible candidate placed in every region, lowest carbon first
        print_csv(answer.table or ([answer.infeasible.closest] if answer.infeasible else []))
    elif as_json:
        print_json(doc)
    else:
        from tokenprint.cli.plan_view import print_plan

        print_plan(answer, figure)
    if not answer.feasible:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command("simulate")(simulate)
    app.command("plan")(plan)
