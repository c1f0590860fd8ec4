"""``tokenprint predict``, ``calibrate`` and ``validate``: the performance and power model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tokenprint.cli.common import (
    CatalogOpt,
    JsonOpt,
    console,
    int_list,
    load,
    print_json,
)
from tokenprint.errors import TokenprintError

FORMATS = ("tokenprint", "mlenergy")


def predict(
    model: Annotated[str, typer.Option(help="Model id (tokenprint catalog models).")],
    gpu: Annotated[str, typer.Option(help="GPU id (tokenprint catalog gpus).")],
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,2,4,8,16,32,64",
    input_len: Annotated[int, typer.Option(help="Prompt tokens per request.")] = 512,
    output_len: Annotated[int, typer.Option(help="Generated tokens per request.")] = 128,
    dtype: Annotated[str, typer.Option(help="auto|bf16|fp16|fp32 (auto: bf16 where supported)."
                                       )] = "auto",
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree (GPUs per replica).")] = 1,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict latency, throughput, power and energy per phase for a static batch."""
    from tokenprint.predict import predict_records

    cat = load(catalog)
    recs = predict_records(cat, cat.model(model), cat.gpu(gpu), int_list(batch, "batch"),
                           input_len, output_len, dtype, tp)
    if as_json:
        print_json(recs)
        return
    r0 = recs[0]
    table = Table(title=f"Predicted: {r0['model']} on {tp} × {r0['hardware_id']} ({r0['dtype']}), "
                  f"input {input_len}, output {output_len}")
    for col in ("batch", "TTFT s", "TPOT ms", "tok/s", "prefill J/tok", "decode J/tok",
                "power W", "status"):
        table.add_column(col, justify="right")

    def rng(r: dict, key: str, scale: float = 1.0, fmt: str = ".3g") -> str:
        return (f"{r[key] * scale:{fmt}} ({r[key + '_low'] * scale:{fmt}}–"
                f"{r[key + '_high'] * scale:{fmt}})")

    for r in recs:
        status = "ok" if r["status"] == "ok" else f"does not fit (max {r['max_batch_fits']})"
        table.add_row(str(r["batch"]), rng(r, "ttft_s"), rng(r, "tpot_s", 1e3),
                      rng(r, "throughput_tok_s", 1.0, ".4g"), rng(r, "energy_per_input_token_j"),
                      rng(r, "energy_per_output_token_j"), f"{r['mean_power_w']:.0f}", status)
    console.print(table)
    kind = "calibrated profile" if r0["calibrated"] else "prior (GPU not calibrated)"
    console.print(f"source: predicted ({r0['model_version']}); {kind}: {r0['calibration']}",
                  style="dim")
    console.print(f"largest batch whose KV cache fits: {r0['max_batch_fits']}", style="dim")


def _load_points(data: Path, fmt: str, catalog: CatalogOpt, input_len: int):  # type: ignore[no-untyped-def]
    from tokenprint.predict.datasets import load_mlenergy, points_from_records

    cat = load(catalog)
    if fmt not in FORMATS:
        raise TokenprintError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "mlenergy":
        return cat, load_mlenergy(data, cat, input_len=input_len)
    from tokenprint.bench.export import read_records

    return cat, points_from_records(read_records(data), cat, f"tokenprint results {data}")


def calibrate(
    data: Annotated[Path, typer.Option(help="Measured runs: a tokenprint results directory or "
                                       "export, or an ML.ENERGY runs CSV.")],
    fmt: Annotated[str, typer.Option("--format", help="tokenprint|mlenergy")] = "tokenprint",
    out: Annotated[Path, typer.Option(help="Profile TOML to write (load it with --catalog).")
                   ] = Path("tokenprint-profiles.toml"),
    engine: Annotated[str, typer.Option(help="Engine the measurements used (label).")] = "any",
    mlenergy_input_len: Annotated[int, typer.Option(help="Assumed prompt length for ML.ENERGY "
                                                    "data (it records none).")] = 512,
    catalog: CatalogOpt = None,
) -> None:
    """Fit per-GPU profiles to measured runs and write them as catalog TOML."""
    from tokenprint.predict.calibrate import calibrate_with_errors, profiles_toml

    cat, pts = _load_points(data, fmt, catalog, mlenergy_input_len)
    with console.status("fitting profiles (with held-out errors)…"):
        profiles = calibrate_with_errors(pts.table, cat, pts.source, engine)
    out.write_text(profiles_toml(profiles, f"Fitted by tokenprint calibrate from {data}"))
    table = Table(title=f"Profiles written to {out}")
    for col in ("gpu", "points", "eff compute", "eff memory", "idle W", "peak W",
                "p90 err energy/tok"):
        table.add_column(col)
    for p in profiles:
        table.add_row(p.gpu, str(p.n_points), f"{p.eff_compute:.2f}", f"{p.eff_memory:.2f}",
                      f"{p.idle_w:.0f}", f"{p.peak_w:.0f}",
                      f"{p.error.get('energy_per_token', float('nan')):.1%}")
    console.print(table)
    console.print(f"{len(pts.table)} points used, {pts.n_skipped} skipped; use with "
                  f"--catalog {out}", style="dim")


def validate(
    data: Annotated[Path, typer.Option(help="Measured runs (as for calibrate).")],
    fmt: Annotated[str, typer.Option("--format", help="tokenprint|mlenergy")] = "tokenprint",
    holdout: Annotated[str, typer.Option(help="Held-out dimension: gpu|model|batch.")] = "batch",
    mlenergy_input_len: Annotated[int, typer.Option(help="Assumed prompt length for ML.ENERGY "
                                                    "data.")] = 512,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Leave-one-out accuracy (MAPE, bias) of energy per token, TPOT and throughput."""
    from tokenprint.predict.validate import validation_report

    cat, pts = _load_points(data, fmt, catalog, mlenergy_input_len)
    with console.status(f"validating with {holdout} held out…"):
        report = validation_report(pts.table, cat, holdout, pts.n_skipped, pts.source)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"Validation, {holdout} held out: {report['n_points']} points "
                  f"({report['n_skipped']} skipped)")
    table.add_column("scope")
    for m in ("energy_per_token", "tpot", "throughput"):
        table.add_column(f"{m} MAPE (bias)", justify="right")

    def row(name: str, s: dict) -> None:
        table.add_row(name, *(f"{s['mape'][m]:.1f}% ({s['bias'][m]:+.1f}%)"
                              for m in ("energy_per_token", "tpot", "throughput")))

    row("all", report)
    for g, s in report["by_gpu"].items():
        row(f"gpu {g}", s)
    for m, s in report["by_model"].items():
        row(f"model {m}", s)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command("predict")(predict)
    app.command("calibrate")(calibrate)
    app.command("validate")(validate)
