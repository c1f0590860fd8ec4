"""``tokenprint study``: the seed study end to end, as a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from tokenprint.carbon.operational import MAX_PUE
from tokenprint.cli.common import (
    CatalogOpt,
    JsonOpt,
    console,
    fmt_g,
    in_range,
    int_list,
    load,
    number,
    print_json,
    split_list,
)
from tokenprint.errors import TokenprintError


def study(
    models: Annotated[str, typer.Option(help="Model ids, comma-separated.")] =
        "llama-3.2-1b,llama-3.2-3b,llama-2-7b",
    gpus: Annotated[str, typer.Option(help="GPU ids, comma-separated.")] = "t4,rtx-6000-ada",
    regions: Annotated[str, typer.Option(help="Grid region ids, comma-separated.")] =
        "US-CAL-CISO,US-MIDW-MISO,CA-QC",
    batch: Annotated[str, typer.Option(help="Batch sizes (those that fit are kept).")] =
        "1,2,4,8,16,32,64",
    input_len: Annotated[int | None, typer.Option(help="One prompt length instead of the "
                                                  "chat-like mix.")] = None,
    output_len: Annotated[int | None, typer.Option(help="One output length instead of the "
                                                   "chat-like mix.")] = None,
    scope: Annotated[str, typer.Option(help="Embodied scope: die|device|card|server.")] =
        "device",
    lifetime_years: Annotated[str, typer.Option(metavar="NUMBER",
        help="Hardware lifetime, years.")] = "5",
    pue: Annotated[str, typer.Option(metavar="NUMBER", help="Data-centre PUE.")] = "1.0",
    tpot_target_ms: Annotated[str, typer.Option(metavar="NUMBER",
        help="TPOT target for the findings, ms.")] =
        "200",
    results: Annotated[Path | None, typer.Option(help="Use measured runs from this results "
                                                 "directory where they exist.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("tokenprint-study"),
    intensity_file: Annotated[Path | None, typer.Option(help="Hourly intensity CSV: carbon by "
                                                        "hour of day and the best hours.")] = None,
    intensity_region: Annotated[str | None, typer.Option(help="Name of the grid of "
                                                         "--intensity-file (for the report).")
                                ] = None,
    utilization: Annotated[str, typer.Option(metavar="NUMBER",
        help="Share of provisioned time the GPUs serve "
                                             "(0-1]; embodied carbon per token scales with 1/U. "
                                             "Default 0.6: the Azure LLM trace's mean over its "
                                             "busiest 5 minutes. 1 = the seed study's "
                                             "always-busy assumption.")] = "0.6",
    stack: Annotated[str, typer.Option(help="Serving stack of the predictions: hf-transformers "
                                       "(the seed study's engine; default), vllm-2025, vllm-2024, "
                                       "tensorrt-llm. Several, comma-separated, compare stacks: "
                                       "one study each in OUT/STACK/.")] = "hf-transformers",
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-run the seed study: performance, energy, operational and embodied carbon, findings."""
    from tokenprint.carbon import load_intensity_csv
    from tokenprint.carbon.amortize import check_lifetime
    from tokenprint.carbon.embodied import check_scope
    from tokenprint.report.study import CHAT_MIX, StudyConfig, run_study

    cat = load(catalog)
    if (input_len is None) != (output_len is None):
        raise TokenprintError("give both --input-len and --output-len (or neither for the mix)")
    mix = list(CHAT_MIX) if input_len is None else [(int(input_len), int(output_len or 0), 1.0)]
    for i, o, _ in mix:
        if i < 1 or o < 1:
            raise TokenprintError(f"lengths must be >= 1 (got input {i}, output {o})")
    pue_v = in_range(pue, "--pue", 1.0, MAX_PUE)
    # a minute per token is past any service; beyond it the figures' target line overflows
    target = in_range(tpot_target_ms, "--tpot-target-ms", 0, 60_000, low_open=True)
    from tokenprint.carbon.amortize import check_utilization

    util = check_utilization(number(utilization, "utilization"))
    cfg = StudyConfig(
        models=[cat.model(m).id for m in split_list(models, "model")],
        gpus=[cat.gpu(g).id for g in split_list(gpus, "GPU")],
        regions=[cat.region(r).id.upper() for r in split_list(regions, "region")],
        batches=int_list(batch, "batch"), mix=mix, scope=check_scope(scope),
        lifetime_years=check_lifetime(number(lifetime_years, "lifetime (years)")), pue=pue_v,
        tpot_target_s=target / 1e3, utilization=util,
    )
    from tokenprint.predict.params import check_stack

    stacks = [check_stack(cat, st) for st in split_list(stack, "stack")]
    if results is not None:
        from tokenprint.bench.export import read_records

        cfg.results_records = read_records(results)
    if intensity_file is not None:
        cfg.intensity = load_intensity_csv(intensity_file, fill=True)
        cfg.intensity_region = intensity_region or intensity_file.stem
    total = len(cfg.models) * len(cfg.gpus) * len(cfg.batches)
    for st in stacks:
        cfg.stack = st
        folder = out if len(stacks) == 1 else out / st
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task(f"study ({st}): performance and energy", total=total)
            res = run_study(cfg, cat, progress=lambda t=task: progress.advance(t))
            progress.update(task, description="study: figures and report", completed=total)
            paths = write_outputs(res, cat, folder)
        if as_json:
            print_json(json.loads(paths["json"].read_text()))
            continue
        if len(stacks) > 1:
            console.print(f"[bold]stack {st}[/bold]")
        _summary(res, paths)


def write_outputs(res, catalog, out: Path) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """Write report.html, figures/*.png, study.csv and study.json into ``out``."""
    from tokenprint.files import atomic_path, write_text_atomic
    from tokenprint.report.figures import render_all
    from tokenprint.report.html import write_report

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TokenprintError(f"cannot create output folder {str(out)!r}: {exc}") from None
    figs = render_all(res, catalog, out / "figures")
    csv_path = out / "study.csv"
    with atomic_path(csv_path) as tmp:
        res.table().to_csv(tmp, index=False)
    json_path = out / "study.json"
    write_text_atomic(json_path, json.dumps(res.to_json(catalog), indent=2, default=float))
    if not res.hourly.empty:
        with atomic_path(out / "study_hourly.csv") as tmp:
            res.hourly.to_csv(tmp, index=False)
    report = write_report(res, catalog, figs, out)
    return {"report": report, "csv": csv_path, "json": json_path, "figures": out / "figures"}


def _summary(res, paths: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from tokenprint.report.html import key_table

    kt = key_table(res)
    regions = list(dict.fromkeys(kt["region"]))
    from rich import box

    sources = set(kt["source"])
    one_source = len(sources) == 1
    table = Table(title="Carbon per 1k output tokens, mg CO2e (embodied share), each GPU at its "
                  f"lowest-carbon batch meeting TPOT ≤ {res.config.tpot_target_s * 1e3:.0f} ms",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=(f"all {next(iter(sources))}" if one_source else
                           "src: P predicted, M measured, P+M mixed"))
    # ids are never cut: the first column holds the longest model or (indented) GPU id whole
    id_width = max([len(m) for m in kt["model"]] + [len(g) + 2 for g in kt["GPU"]])
    table.add_column("model / GPU", overflow="fold", min_width=id_width)
    for col in ("batch", "tok/s", *([] if one_source else ["src"]), *regions):
        table.add_column(col, justify="left" if col == "src" else "right", overflow="fold",
                         min_width=len(col) if col in regions else None)
    code = {"predicted": "P", "measured": "M", "mixed": "P+M"}
    for model, mgrp in kt.groupby("model", sort=False):
        table.add_row(f"[bold]{model}[/bold]", *[""] * (len(table.columns) - 1))
        for gpu, grp in mgrp.groupby("GPU", sort=False):
            by_region = grp.set_index("region")
            first = grp.iloc[0]
            cells = [f"{by_region.loc[r, 'total mg/1k']:.3g} "
                     f"({by_region.loc[r, 'embodied %']:.0f}%)"
                     if r in by_region.index else "—" for r in regions]
            src = [] if one_source else [code.get(str(first["source"]), str(first["source"]))]
            table.add_row(f"  {gpu}", str(first["batch"]), f"{first['tok/s']:.0f}", *src, *cells)
    console.print(table)
    from rich.markup import escape

    from tokenprint.report.headline import headline, title
    from tokenprint.report.study import sci_summary

    console.print(title(res), style="bold", highlight=False)
    console.print(Panel("\n".join(escape(s) for s in headline(res)), title="Headline",
                        border_style="blue"))
    shown = [f for f in res.findings if f.kind != "batch_choice"]
    left = len(res.findings) - len(shown)
    console.print(Panel("\n".join(f"• {escape(f.sentence)}" for f in shown),
                        title=f"Findings ({len(shown)} of {len(res.findings)})",
                        border_style="green"))
    if left:
        console.print(f"{left} more findings (the carbon-optimal batch of each model and GPU) "
                      f"are in {paths['report']} and study.json", style="dim")
    sci = [b["sci_g_per_1k_tokens"] for b in sci_summary(res)["best"]]
    if sci:
        console.print(f"SCI (ISO/IEC 21031) per 1,000 output tokens at each model and GPU's "
                      f"lowest-carbon batch: {fmt_g(min(sci))} to {fmt_g(max(sci))} across "
                      "regions (location-based E × I plus the GPUs' embodied share; boundary "
                      "in study.json)", highlight=False)
    console.print(f"report: {paths['report']}  ·  data: {paths['csv']}, {paths['json']}  ·  "
                  f"figures: {paths['figures']}/", style="bold")
    if (res.performance["source"] != "measured").any():
        console.print("predicted figures come from tokenprint's performance model; measure "
                      "your own GPUs with tokenprint bench and pass --results", style="dim")


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command("study")(study)
