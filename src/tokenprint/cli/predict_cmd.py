"""``tokenprint predict``, ``calibrate`` and ``validate``: the performance and power model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tokenprint.cli.common import (
    CatalogOpt,
    CsvOpt,
    JsonOpt,
    console,
    int_list,
    load,
    print_csv,
    print_json,
    print_records,
    split_list,
)
from tokenprint.errors import TokenprintError

RANGE_WIDTH = 120   # terminal columns the table needs to show every range whole
STACK_HELP = ("Serving stack (engine and release): vllm-2025 (default), vllm-2024, tensorrt-llm, "
              "deepspeed-mii, hf-transformers.")


def predict(
    model: Annotated[str, typer.Option(help="Model id (tokenprint catalog models).")],
    gpu: Annotated[str, typer.Option(help="GPU id(s), comma-separated (tokenprint catalog "
                                     "gpus).")],
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,2,4,8,16,32,64",
    input_len: Annotated[int, typer.Option(help="Prompt tokens per request.")] = 512,
    output_len: Annotated[int, typer.Option(help="Generated tokens per request.")] = 128,
    dtype: Annotated[str, typer.Option(help="Weights: auto|bf16|fp16|fp32|fp8|mxfp4|nvfp4 "
                                       "(auto: bf16 where supported).")] = "auto",
    kv_dtype: Annotated[str, typer.Option(help="KV cache: auto|bf16|fp16|fp8 (auto: 16-bit).")
                        ] = "auto",
    tp: Annotated[int, typer.Option(help="GPUs per replica (tensor or expert parallel).")] = 1,
    stack: Annotated[str, typer.Option(help=STACK_HELP)] = "vllm-2025",
    images: Annotated[int, typer.Option(help="Images in each prompt (multimodal models).")] = 0,
    image_size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT in pixels.")
                          ] = "1024x1024",
    videos: Annotated[int, typer.Option(help="Videos in each prompt (multimodal models).")] = 0,
    video_frames: Annotated[int, typer.Option(help="Frames sampled from each video (vLLM's "
                                              "default: 32).")] = 32,
    frame_size: Annotated[str, typer.Option(help="Video frame size WIDTHxHEIGHT in pixels.")
                          ] = "640x360",
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Predict latency, throughput, power and energy per phase for a static batch.

    Images and video add their prompt tokens and the vision encoder's work to the prefill
    (--input-len counts the text tokens only).
    """
    from tokenprint.predict import predict_records
    from tokenprint.predict.media import Media

    cat = load(catalog)
    gpus = [cat.gpu(g) for g in split_list(gpu, "gpu")]
    media = Media(images=images, image_px=_pixels(image_size, "--image-size"), videos=videos,
                  video_frames=video_frames, frame_px=_pixels(frame_size, "--frame-size"))
    per_gpu = [predict_records(cat, cat.model(model), g, int_list(batch, "batch"), input_len,
                               output_len, dtype, tp, stack=stack, kv_dtype=kv_dtype,
                               media=media)
               for g in gpus]
    if as_json or as_csv:
        rows = [dict(r) for recs in per_gpu for r in recs]
        print_csv(rows) if as_csv else print_json(rows)
        return
    for recs in per_gpu:
        _print_table(recs, tp, input_len, output_len)


def _pixels(text: str, option: str) -> tuple[int, int]:
    """``1024x768`` → (1024, 768), or one clear error."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise TokenprintError(f"{option} {text!r} is invalid; give WIDTHxHEIGHT in pixels, "
                              "e.g. 1024x768") from None
    return width, height


def _print_table(recs: list[Any], tp: int, input_len: int, output_len: int) -> None:
    """One GPU's predicted records as a table, with the profile they came from."""
    r0 = recs[0]
    media = (f" + {r0['media']} ({r0['media_tokens']} tokens)" if r0.get("media") else "")
    dtype = (f"fp8, {r0['fp8_scales']}-scaled" if r0.get("fp8_scales") else r0["dtype"])
    table = Table(title=f"Predicted: {r0['model']} on {tp} × {r0['hardware_id']} ({dtype}), "
                  f"{r0['stack']}, input {input_len}{media}, output {output_len}")
    for col in ("batch", "TTFT s", "TPOT ms", "tok/s", "prefill J/tok", "decode J/tok",
                "power W", "status"):
        table.add_column(col, justify="right")

    # a range such as (0.0536–0.0993) cannot wrap in a narrow column without being cut or
    # broken mid-number: below RANGE_WIDTH columns the table shows values, and says so
    with_ranges = console.width >= RANGE_WIDTH

    def rng(r: Mapping[str, Any], key: str, scale: float = 1.0, fmt: str = ".3g") -> str:
        value = f"{r[key] * scale:{fmt}}"
        if not with_ranges:
            return value
        return (f"{value}\n({r[key + '_low'] * scale:{fmt}}–"
                f"{r[key + '_high'] * scale:{fmt}})")

    for r in recs:
        status = "ok" if r["status"] == "ok" else f"does not fit (max {r['max_batch_fits']})"
        table.add_row(str(r["batch"]), rng(r, "ttft_s"), rng(r, "tpot_s", 1e3),
                      rng(r, "throughput_tok_s", 1.0, ".4g"), rng(r, "energy_per_input_token_j"),
                      rng(r, "energy_per_output_token_j"), f"{r['mean_power_w']:.0f}", status)
    console.print(table)
    if not with_ranges:
        console.print(f"ranges (low–high) left out at {console.width} columns: widen the "
                      f"terminal to {RANGE_WIDTH} or use --json", style="dim")
    kind = (f"calibrated profile {r0['profile']}" if r0["calibrated"] else
            f"{r0['stack']} prior ({r0['hardware_id']} not calibrated under this stack)")
    console.print(f"source: predicted ({r0['model_version']}); {kind}: {r0['calibration']}",
                  style="dim")
    console.print(f"largest batch whose KV cache fits: {r0['max_batch_fits']}", style="dim")


def _load_points(data: Path, fmt: str, catalog: CatalogOpt, stack: str | None):  # type: ignore[no-untyped-def]
    from tokenprint.predict.datasets import load_points
    from tokenprint.predict.params import check_stack

    cat = load(catalog)
    return cat, load_points(fmt, data, cat, check_stack(cat, stack) if stack else None)


FORMAT_HELP = ("tokenprint (results dir or export) | mlenergy (v2 CSV) | mlenergy-v3 (v3 configs "
               "CSV) | mlenergy-v1 (v1 directory) | argonne (LLM-Inference-Bench directory) | "
               "splitwise (Splitwise perf-model CSV)")


def calibrate(
    data: Annotated[Path, typer.Option(help="Measured runs: a tokenprint results directory or "
                                       "export, or a public benchmark file (see --format).")],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "tokenprint",
    out: Annotated[Path, typer.Option(help="Profile TOML to write (load it with --catalog).")
                   ] = Path("tokenprint-profiles.toml"),
    stack: Annotated[str | None, typer.Option(help="Keep only this stack's points; for "
                                              "tokenprint records, the stack they ran on.")
                     ] = None,
    catalog: CatalogOpt = None,
) -> None:
    """Fit one profile per (GPU, serving stack) to measured runs and write catalog TOML."""
    from tokenprint.files import write_text_atomic
    from tokenprint.predict.calibrate import calibrate_with_errors, profiles_toml

    cat, pts = _load_points(data, fmt, catalog, stack)
    with console.status("fitting profiles (with held-out ranges)…"):
        profiles = calibrate_with_errors(pts.table, cat, pts.source)
    write_text_atomic(out, profiles_toml(profiles, f"Fitted by tokenprint calibrate from {data}"))
    rows = []
    for p in profiles:
        lo, hi = p.error.get("energy_per_token.lo"), p.error.get("energy_per_token.hi")
        rows.append((p.gpu, p.stack, str(p.n_points), f"{p.eff_compute:.2f}",
                     f"{p.eff_memory:.2f}", f"{p.fit_rms_log or 0:.3f}",
                     f"×{lo:.2f}–×{hi:.2f}" if lo and hi else "—",
                     ", ".join(p.at_bounds) or "none"))
    print_records(f"Profiles written to {out}",
                  ("gpu", "stack", "points", "eff compute", "eff memory", "fit rms (log)",
                   "energy/tok range", "on a bound"), rows)
    if any(p.at_bounds for p in profiles):
        console.print("parameters on a bound: the data pins them at a physical limit (or cannot "
                      "separate them); treat those profiles' extrapolations with care",
                      style="yellow")
    console.print(f"{len(pts.table)} points used, {pts.n_skipped} skipped", style="dim")
    # a profile is for one stack: say which, so that the next predict asks for it
    for st in sorted({p.stack for p in profiles}):
        gpus_st = ", ".join(sorted(p.gpu for p in profiles if p.stack == st))
        console.print(f"profiles for stack {st} ({gpus_st}): use them with --catalog {out} "
                      f"--stack {st}")


def validate(
    data: Annotated[Path, typer.Option(help="Measured runs (as for calibrate).")],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "tokenprint",
    stack: Annotated[str | None, typer.Option(help="Keep only this stack's points.")] = None,
    no_refit: Annotated[bool, typer.Option("--no-refit", help="Predict every point with the "
                                           "shipped profiles, exactly as predict does (what a "
                                           "user gets).")] = False,
    holdout: Annotated[str, typer.Option(help="With refitting, the held-out dimension: "
                                         "gpu|model|batch|stack|tp.")] = "gpu",
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy (MAPE, bias) and range coverage of energy per token, TPOT and throughput."""
    from tokenprint.predict.validate import HOLDOUTS, validation_report

    if holdout not in HOLDOUTS:
        raise TokenprintError(f"unknown holdout {holdout!r}; valid: {', '.join(HOLDOUTS)}")
    cat, pts = _load_points(data, fmt, catalog, stack)
    what = "shipped profiles, no refit" if no_refit else f"{holdout} held out"
    with console.status(f"validating ({what})…"):
        report = validation_report(pts.table, cat, None if no_refit else holdout, pts.n_skipped,
                                   pts.source, pts.skipped_reasons)
    if as_json:
        print_json(report)
        return
    labels = {"energy_per_token": "energy/token", "tpot": "TPOT", "throughput": "throughput",
              "ttft": "TTFT"}
    names = [m for m in labels if report["mape"].get(m) is not None]   # what the data measures

    def cell(s: dict, m: str) -> str:
        if s["mape"][m] is None:
            return "—"
        return f"{s['mape'][m]:.1f}% ({s['bias'][m]:+.1f}%) {s['coverage'][m]:.0%}"

    rows = [("all", *(cell(report, m) for m in names))]
    for key, label in (("by_stack", "stack"), ("by_gpu", "gpu"), ("by_task", "task"),
                       ("by_model", "model")):
        rows += [(f"{label} {name}", *(cell(s, m) for m in names))
                 for name, s in report[key].items()]
    print_records(f"Validation ({what}): {report['n_points']} points "
                  f"({report['n_skipped']} skipped)", ("scope", *(labels[m] for m in names)),
                  rows)
    console.print("each cell: MAPE (bias) coverage, the share of measured values inside the "
                  "predicted [low, high]", style="dim", markup=False)
    reasons = sorted(report["skipped_reasons"].items(), key=lambda kv: -kv[1])
    for why, n in reasons[:SKIP_REASONS_SHOWN]:
        console.print(f"skipped {n}: {why}", style="dim", markup=False)
    if len(reasons) > SKIP_REASONS_SHOWN:
        console.print(f"and {len(reasons) - SKIP_REASONS_SHOWN} more reasons: "
                      "skipped_reasons in --json", style="dim", markup=False)


SKIP_REASONS_SHOWN = 5   # the commonest reasons rows were skipped, under the validate table


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command("predict")(predict)
    app.command("calibrate")(calibrate)
    app.command("validate")(validate)
