"""``tokenprint bench`` (measure sweeps) and ``tokenprint runs`` (list, show, export)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
from tokenprint.files import read_toml_file
from tokenprint.records import RunRecord

runs_app = typer.Typer(help="List, show and export measured runs from a results store.",
                       no_args_is_help=True)

_SWEEP_KEYS = {"engine", "models", "model", "device", "batch", "input_len", "output_len", "dtype",
               "meter", "warmup", "repeat", "min_seconds", "results", "weights", "trace",
               "base_url", "gpu", "tdp_w", "idle_s", "seed", "api_model"}


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return split_list(value, what)
    return [value]


def _read_sweep(path: Path) -> dict[str, Any]:
    doc = read_toml_file(path, "sweep file")
    unknown = set(doc) - _SWEEP_KEYS
    if unknown:
        raise TokenprintError(f"sweep file {str(path)!r}: unknown key(s) {sorted(unknown)}; "
                              f"valid: {', '.join(sorted(_SWEEP_KEYS))}")
    return doc


def bench(
    sweep: Annotated[Path | None, typer.Argument(help="Optional TOML sweep file (same keys as "
                                                 "the options, lists for lists).")] = None,
    engine: Annotated[str, typer.Option(help="hf|vllm|openai")] = "hf",
    model: Annotated[str, typer.Option(help="Model id(s), comma-separated.")] = "tiny",
    device: Annotated[str, typer.Option(help="cpu|cuda|cuda:N")] = "cpu",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,2,4",
    input_len: Annotated[str, typer.Option(help="Prompt length(s), comma-separated.")] = "128",
    output_len: Annotated[str, typer.Option(help="Output length(s), comma-separated.")] = "128",
    dtype: Annotated[str, typer.Option(help="auto|bf16|fp16|fp32")] = "auto",
    meter: Annotated[str, typer.Option(help="auto|nvml|rapl|estimate")] = "auto",
    warmup: Annotated[int, typer.Option(help="Warm-up runs per point (discarded).")] = 2,
    repeat: Annotated[int, typer.Option(help="Measured repetitions per point.")] = 5,
    min_seconds: Annotated[float | None, typer.Option(help="Repeat until this many seconds "
                                                      "were measured (at least --repeat).")
                           ] = None,
    results: Annotated[Path, typer.Option(help="Results directory (SQLite store).")] = Path(
        "tokenprint-results"),
    weights: Annotated[Path | None, typer.Option(help="Local weights directory (default: "
                                                 "random weights of the catalog shape).")] = None,
    trace: Annotated[Path | None, typer.Option(help="Draw (input, output) lengths from an "
                                               "Azure CSV or Mooncake JSONL trace.")] = None,
    trace_samples: Annotated[int, typer.Option(help="Length pairs drawn from --trace.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed for prompts and trace sampling.")] = 0,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server (engine "
                                                 "openai), e.g. http://127.0.0.1:8000/v1.")
                        ] = None,
    gpu: Annotated[str | None, typer.Option(help="Catalog GPU of the serving machine (engine "
                                            "openai).")] = None,
    tdp_w: Annotated[float | None, typer.Option(help="Power at full load for the estimate meter "
                                                "(default: 10 W per CPU core).")] = None,
    idle_s: Annotated[float, typer.Option(help="Seconds to measure the idle floor.")] = 2.0,
    executor: Annotated[str, typer.Option(help="local|ray (one sweep point per Ray task).")] =
        "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: "
                                                    "$RAY_ADDRESS or a local Ray).")] = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure latency, throughput and energy per prefill/decode phase over a sweep."""
    from tokenprint.bench import SweepSpec, run_sweep
    from tokenprint.bench.workload import fixed_pairs, sample_pairs

    cat = load(catalog)
    opts: dict[str, Any] = {
        "engine": engine, "models": model, "device": device, "batch": batch,
        "input_len": input_len, "output_len": output_len, "dtype": dtype, "meter": meter,
        "warmup": warmup, "repeat": repeat, "min_seconds": min_seconds, "results": results,
        "weights": weights, "trace": trace, "seed": seed, "base_url": base_url, "gpu": gpu,
        "tdp_w": tdp_w, "idle_s": idle_s,
    }
    if sweep is not None:
        doc = _read_sweep(sweep)
        if "model" in doc:
            doc["models"] = doc.pop("model")
        opts.update(doc)
    models = [str(m) for m in _as_list(opts["models"], "model")]
    batches = int_list(",".join(map(str, _as_list(opts["batch"], "batch"))), "batch")
    if opts.get("trace"):
        max_ctx = min(cat.model(m).max_context for m in models)
        pairs = sample_pairs(opts["trace"], trace_samples, int(opts["seed"]), max_ctx)
    else:
        pairs = fixed_pairs(
            int_list(",".join(map(str, _as_list(opts["input_len"], "input length"))),
                     "input length"),
            int_list(",".join(map(str, _as_list(opts["output_len"], "output length"))),
                     "output length"))
    spec = SweepSpec(
        engine=str(opts["engine"]), models=models, device=str(opts["device"]), batches=batches,
        pairs=pairs, dtype=str(opts["dtype"]), meter=str(opts["meter"]),
        warmup=int(opts["warmup"]), repeat=int(opts["repeat"]),
        min_seconds=None if opts["min_seconds"] is None else float(opts["min_seconds"]),
        results=Path(opts["results"]), weights=Path(opts["weights"]) if opts["weights"] else None,
        tdp_w=None if opts["tdp_w"] is None else float(opts["tdp_w"]),
        base_url=opts["base_url"], gpu=opts["gpu"], idle_s=float(opts["idle_s"]),
        seed=int(opts["seed"]),
    )
    from tokenprint.bench import validate_spec

    validate_spec(spec, cat)  # refuse bad input before anything runs or any bar is drawn
    n_points = len(models) * len(pairs) * len(batches)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[last]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("bench", total=n_points, last="")

        def on_point(label: str, rec: RunRecord | dict[str, str] | None) -> None:
            if rec is None:
                progress.update(task, description=label)
                return
            if rec["status"] == "skipped":
                progress.update(task, advance=1, last=f"{label}: already stored")
            elif rec["status"] == "oom":
                progress.update(task, advance=1, last=f"{label}: out of memory (recorded)")
            else:
                progress.update(task, advance=1, last=(
                    f"last: {rec['energy_per_output_token_j']:.3g} J/token "
                    f"({rec['energy_kind']})"))

        from tokenprint.distributed import check_executor

        if check_executor(executor) == "ray":
            from tokenprint.distributed.bench import run_sweep_ray

            progress.console.print(f"running {n_points} point(s) as Ray tasks", style="dim")
            written = run_sweep_ray(spec, cat, ray_address, on_point=on_point,
                                    catalog_files=[str(c) for c in (catalog or [])])
        else:
            written = run_sweep(spec, cat, on_point=on_point,
                                on_status=lambda s: progress.console.print(s, style="dim"))
    if as_json:
        print_json(written)
        return
    _runs_table(written, f"{len(written)} new point(s) in {spec.results} "
                f"({n_points - len(written)} already stored)")


def _runs_table(records: Sequence[Mapping[str, Any]], title: str) -> None:
    rows = []
    for r in records:
        ok = r.get("status") == "ok"

        def num(key: str, scale: float = 1.0, r: Mapping[str, Any] = r, ok: bool = ok) -> str:
            v = r.get(key)
            return f"{v * scale:.3g}" if ok and v is not None else "—"

        rows.append((r["run_id"], r["model"], r["hardware_id"], r["dtype"], str(r["batch"]),
                     f"{r['input_len']}/{r['output_len']}", num("ttft_s"), num("tpot_s", 1e3),
                     num("throughput_tok_s"), num("energy_per_input_token_j"),
                     num("energy_per_output_token_j"),
                     f"{r.get('energy_kind')} ({r.get('meter')})", r["status"]))
    print_records(title, ("run", "model", "hw", "dtype", "batch", "in/out", "TTFT s",
                          "TPOT ms", "tok/s", "J/in tok", "J/out tok", "energy", "status"),
                  rows)
    if any(r.get("energy_kind") == "estimated" for r in records):
        console.print("energy marked 'estimated' comes from the TDP × utilization model: no "
                      "energy counter on this machine", style="yellow")


ResultsOpt = Annotated[Path, typer.Option(help="Results directory.")]


@runs_app.command("list")
def runs_list(results: ResultsOpt = Path("tokenprint-results"), as_json: JsonOpt = False,
              as_csv: CsvOpt = False) -> None:
    """List stored runs."""
    from tokenprint.bench.store import ResultsStore

    store = ResultsStore.open_existing(results)
    recs = store.records()
    store.close()
    if as_json or as_csv:
        print_csv([dict(r) for r in recs]) if as_csv else print_json(recs)
        return
    _runs_table(recs, f"{len(recs)} run(s) in {results}")


@runs_app.command("show")
def runs_show(run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
              results: ResultsOpt = Path("tokenprint-results")) -> None:
    """Show one run's full record (JSON)."""
    from tokenprint.bench.store import ResultsStore

    store = ResultsStore.open_existing(results)
    rec = store.get(run_id)
    store.close()
    print_json(rec)


@runs_app.command("export")
def runs_export(results: ResultsOpt = Path("tokenprint-results"),
                fmt: Annotated[str, typer.Option("--format", help="csv|parquet|json")] = "csv",
                out: Annotated[Path | None, typer.Option(help="Output file (default: stdout; "
                                                         "parquet needs a file).")] = None
                ) -> None:
    """Export all runs as CSV (the default: one row per run, flat columns), Parquet or JSON (a
    list of records)."""
    from tokenprint.bench.export import export, read_records

    text = export(read_records(results), fmt, out)
    if text is not None:
        typer.echo(text)
    else:
        console.print(f"wrote {out}", style="dim")


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command("bench")(bench)
    app.add_typer(runs_app, name="runs")
