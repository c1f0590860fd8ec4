"""``tokenprint catalog``: list and show reference data with its sources."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from tokenprint.catalog import entry_dict
from tokenprint.catalog.schema import Quantity
from tokenprint.cli.common import (
    CatalogOpt,
    JsonOpt,
    console,
    load,
    print_json,
    print_records,
)
from tokenprint.errors import TokenprintError

app = typer.Typer(help="List and show catalog entries (GPUs, regions, models, hosts) with sources.",
                  no_args_is_help=True)

_COLUMNS: dict[str, list[str]] = {
    "gpus": ["name", "die_area_mm2", "act_node", "memory_gb", "memory_type", "memory_bw_gb_s",
             "tdp_w", "fp16_tflops", "bf16", "release_year"],
    "regions": ["name", "intensity_g_per_kwh", "basis", "year", "mix", "study"],
    "models": ["name", "arch", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
               "params_b", "active_b"],
    "hosts": ["name", "gpu_slots", "cpu_count", "dram_gb", "ssd_gb"],
    "fab-nodes": ["name", "epa_kwh_per_cm2", "gpa95_g_per_cm2", "gpa99_g_per_cm2"],
    "memory": ["name", "kind", "g_per_gb"],
    "profiles": ["gpu", "stack", "n_points", "fit_rms_log", "energy_range", "at_bounds"],
    "stacks": ["name", "engine", "releases", "source"],
    "pcf": ["product", "scope", "total_g", "gpus", "applies_to", "boundary"],
}


def _model_kind(entry: Any) -> str:
    """What the model is made of: dense or MoE, and MLA, a hybrid SSM, a vision encoder."""
    parts = ["moe" if entry.is_moe else "dense"]
    if entry.attention == "mla":
        parts.append("mla")
    if entry.ssm_layers:
        parts.append("mamba")
    if entry.vision is not None:
        parts.append("vision")
    return "+".join(parts)


def _cell(entry: Any, col: str) -> str:
    if col == "arch":
        return _model_kind(entry)
    if col == "params_b":
        return f"{entry.params / 1e9:.3g}"
    if col == "active_b":
        return f"{entry.active_params / 1e9:.3g}" if entry.is_moe else ""
    if col == "energy_range":
        lo, hi = entry.error.get("energy_per_token.lo"), entry.error.get("energy_per_token.hi")
        return f"×{lo:.2f}–×{hi:.2f}" if lo and hi else "—"
    if col == "at_bounds":
        return ", ".join(entry.at_bounds) or "none"
    val = getattr(entry, col)
    if isinstance(val, Quantity):
        if val.low is not None and (val.low != val.value or val.high != val.value):
            return f"{val.value:g} ({val.low:g}–{val.high:g})"
        return f"{val.value:g}"
    if isinstance(val, bool):
        return "yes" if val else ""
    if isinstance(val, float):
        return f"{val:.3g}"
    return str(val)


def _with_derived(kind: str, entry: Any) -> dict[str, Any]:
    d = entry_dict(entry)
    if kind == "models":
        d["params"] = entry.params
        d["weight_bytes_bf16"] = entry.weight_bytes("bf16")
        d["kv_bytes_per_token_bf16"] = entry.kv_bytes_per_token("bf16")
        d["flops_per_token"] = entry.flops_per_token(0)
    return d


def _list(kind: str, catalog: CatalogOpt, as_json: bool) -> None:
    cat = load(catalog)
    entries = cat.by_kind(kind)
    if as_json:
        print_json([_with_derived(kind, e) for e in entries.values()])
        return
    rows = [(e.id.upper() if kind == "regions" else e.id, *(_cell(e, c) for c in _COLUMNS[kind]))
            for e in entries.values()]
    print_records(f"tokenprint catalog: {kind}", ("id", *_COLUMNS[kind]), rows)
    console.print("Sources: tokenprint catalog show KIND ID", style="dim")


@app.command("gpus")
def gpus(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List GPUs."""
    _list("gpus", catalog, as_json)


@app.command("regions")
def regions(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List grid regions and their annual intensity."""
    _list("regions", catalog, as_json)


@app.command("models")
def models(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List model architectures."""
    _list("models", catalog, as_json)


@app.command("hosts")
def hosts(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List host server archetypes."""
    _list("hosts", catalog, as_json)


@app.command("fab-nodes")
def fab_nodes(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List ACT fab nodes."""
    _list("fab-nodes", catalog, as_json)


@app.command("memory")
def memory(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List memory and storage embodied factors."""
    _list("memory", catalog, as_json)


@app.command("profiles")
def profiles(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List calibration profiles (GPU × serving stack) with their data, fit quality and ranges."""
    _list("profiles", catalog, as_json)


@app.command("pcf")
def pcf(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List vendors' product carbon footprints (what card/server scope is anchored to)."""
    _list("pcf", catalog, as_json)


@app.command("stacks")
def stacks(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """List serving stacks (engine and release family) that profiles are keyed by."""
    _list("stacks", catalog, as_json)


@app.command("show")
def show(
    kind: Annotated[str, typer.Argument(help="gpus|regions|models|hosts|fab-nodes|memory "
                                        "(singular works too)")],
    entry_id: Annotated[str, typer.Argument(metavar="ID")],
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
    embodied: Annotated[bool, typer.Option(
        "--embodied", help="For a GPU: every public source of its embodied carbon, part by "
        "part, side by side, and which value the reconciliation rule took.")] = False,
) -> None:
    """Show one entry with every field and its source."""
    cat = load(catalog)
    k = kind.lower()
    if embodied:
        if k not in ("gpu", "gpus"):
            raise TokenprintError(f"--embodied applies to GPUs, not {kind!r}; try: tokenprint "
                                  f"catalog show gpu {entry_id} --embodied")
        from tokenprint.carbon.bom import bom_dict, reconcile_card
        from tokenprint.cli.embodied_view import print_bom

        bom = reconcile_card(cat.gpu(entry_id), cat)
        if as_json:
            print_json(bom_dict(bom))
        else:
            print_bom(bom, console)
        return
    plural = {"gpu": "gpus", "region": "regions", "model": "models", "host": "hosts",
              "fab-node": "fab-nodes", "profile": "profiles", "stack": "stacks"}.get(k, k)

    def profile(pid: str) -> Any:
        from tokenprint.errors import unknown_choice

        if pid.lower() not in cat.profiles:
            raise unknown_choice("profile", pid, cat.profiles)
        return cat.profiles[pid.lower()]

    getter = {"gpus": cat.gpu, "regions": cat.region, "models": cat.model, "hosts": cat.host,
              "fab-nodes": cat.fab_node, "memory": cat.memory_factor, "profiles": profile,
              "stacks": cat.stack, "pcf": cat.pcf}
    if plural not in getter:
        cat.by_kind(plural)  # raises the error listing valid kinds
    entry = getter[plural](entry_id)
    data = _with_derived(plural, entry)
    if as_json:
        print_json(data)
        return
    table = Table(title=f"{plural[:-1] if plural.endswith('s') else plural}: {entry.id}")
    # long ids and sources fold onto the next line; nothing is cut
    table.add_column("field", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")
    table.add_column("source", style="dim", overflow="fold")
    if data.get("source"):
        table.add_row("(entry source)", "", str(data["source"]))
    for key, val in data.items():
        if key == "source":
            continue
        if isinstance(val, dict) and "value" in val:
            rng = f" ({val['low']:g}–{val['high']:g})" if "low" in val else ""
            note = f" — {val['note']}" if "note" in val else ""
            table.add_row(key, f"{val['value']:g}{rng}{note}", val["source"])
        elif isinstance(val, dict):
            for sub, q in val.items():
                if isinstance(q, dict):
                    table.add_row(f"{key}.{sub}", f"{q['value']:g}", q["source"])
                else:
                    table.add_row(f"{key}.{sub}", str(q), "")
        else:
            table.add_row(key, str(val), "")
    console.print(table)


def register(main: typer.Typer) -> None:
    """Add the command group to the main app."""
    main.add_typer(app, name="catalog")
