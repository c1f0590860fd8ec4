"""Study figures (matplotlib, Agg): labelled axes with units, legends, consistent colours.

Colours are fixed per GPU and per region across every figure; line style is fixed per model;
filled markers are measured points, hollow markers predicted ones; shaded bands are ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.catalog import Catalog
from tokenprint.files import atomic_path
from tokenprint.report.study import StudyResult, best_rows

GPU_COLOURS = ["#1b6ca8", "#e07b00", "#2a9d55", "#b8336a", "#6a4c93", "#8a6d3b"]
REGION_COLOURS = ["#f2b705", "#5c5c5c", "#3a86ff", "#8ac926", "#ff595e", "#6a4c93"]
# eight models keep eight distinct lines and markers (with four, the fifth repeated the first)
MODEL_STYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 3)),
                (0, (3, 1, 1, 1))]
MODEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 10, "axes.titlesize": 11,
    "axes.labelsize": 10, "legend.fontsize": 8.5, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
})


def log_axis(ax: Axes, axis: str = "y") -> None:
    """A log scale read in plain numbers (0.5, 1, 2, 5, 10 …), not 2 × 10¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


PANELS_PER_ROW = 4


def _look(i: int) -> tuple[Any, str]:
    """The line style and marker of the i-th model."""
    return MODEL_STYLES[i % len(MODEL_STYLES)], MODEL_MARKERS[i % len(MODEL_MARKERS)]


def _height(res: StudyResult) -> float:
    """Inches for a two-panel figure whose legend lists every model × GPU below it: the panels
    keep their height, the figure grows with the legend."""
    series = res.performance[["model", "gpu"]].drop_duplicates().shape[0]
    return 4.3 + 0.24 * max(-(-series // 3) - 1, 0)


def _panels(n: int, width_in: float, height_in: float, min_width_in: float
            ) -> tuple[plt.Figure, list[Axes]]:
    """One panel per model, at most four a row (eight models are two rows, not one figure 35
    inches wide that a page shrinks to nothing); panels left over are hidden."""
    cols = min(max(n, 1), PANELS_PER_ROW)
    rows = -(-max(n, 1) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(max(width_in * cols, min_width_in),
                                                  height_in * rows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[max(n, 1):]:
        ax.set_visible(False)
    return fig, axes[:max(n, 1)]


def _styles(res: StudyResult) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
    cfg = res.config
    gpu_c = {g: GPU_COLOURS[i % len(GPU_COLOURS)] for i, g in enumerate(cfg.gpus)}
    reg_c = {r.upper(): REGION_COLOURS[i % len(REGION_COLOURS)]
             for i, r in enumerate(cfg.regions)}
    model_i = {m: i for i, m in enumerate(cfg.models)}
    return gpu_c, reg_c, model_i


def _series(ax: plt.Axes, df: pd.DataFrame, y: str, colour: str, style: Any, marker: str,
            label: str, scale: float = 1.0) -> None:
    df = df.sort_values("batch")
    x = df["batch"].to_numpy()
    ax.plot(x, df[y] * scale, linestyle=style, color=colour, lw=1.8, label=label)
    if f"{y}_low" in df:
        ax.fill_between(x, df[f"{y}_low"] * scale, df[f"{y}_high"] * scale, color=colour,
                        alpha=0.12, lw=0)
    meas = (df["source"] == "measured").to_numpy()
    ax.scatter(x[meas], df[y].to_numpy()[meas] * scale, color=colour, marker=marker, s=28,
               zorder=3)
    ax.scatter(x[~meas], df[y].to_numpy()[~meas] * scale, facecolors="white",
               edgecolors=colour, marker=marker, s=28, zorder=3)


def _batch_axis(ax: plt.Axes, batches: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size (requests)")


def _footnote(fig: plt.Figure, text: str) -> float:
    """A note under everything, wrapped to the figure's width (never cut at its edges);
    returns the share of the figure's height it takes."""
    import textwrap

    width_in, height_in = fig.get_size_inches()
    lines = textwrap.wrap(text, max(int(width_in * 15), 30))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, color="#555555", va="bottom")
    return (0.16 * len(lines) + 0.08) / height_in


def _legend_note(fig: plt.Figure, extra: str = "") -> float:
    return _footnote(fig, "filled markers: measured · hollow: predicted · bands: range" + extra)


def _legend_below(fig: plt.Figure, ax: plt.Axes, ncol: int = 3, above: float = 0.0) -> float:
    """One legend for the figure, below the panels and above a footnote taking ``above`` of
    the height, so it never covers data and is never cut: as many columns as the figure's
    width holds. Returns the share of the height legend and footnote take."""
    handles, labels = ax.get_legend_handles_labels()
    width_in, height_in = fig.get_size_inches()
    col_in = 0.6 + 0.075 * max((len(lb) for lb in labels), default=10)
    ncol = max(1, min(ncol, len(labels) or 1, int(width_in * 0.95 // col_in)))
    rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False,
               bbox_to_anchor=(0.5, above))
    return above + (0.24 * rows + 0.12) / height_in


def _memory_limits(ax: plt.Axes, res: StudyResult, y: str, scale: float = 1.0) -> bool:
    """Mark the last batch that fits where a line stops short of the largest batch asked."""
    largest = max(res.config.batches)
    marked = False
    for _, df in res.performance.groupby(["model", "gpu"]):
        last = df.sort_values("batch").iloc[-1]
        if int(last["batch"]) < largest:
            ax.scatter([last["batch"]], [last[y] * scale], marker="x", color="#aa0000", s=46,
                       zorder=5, lw=1.6)
            marked = True
    return marked


def fig_throughput_latency(res: StudyResult, path: Path) -> Path:
    """Throughput and TPOT against batch size."""
    gpu_c, _, model_i = _styles(res)
    fig, axes = plt.subplots(1, 2, figsize=(11, _height(res)))
    for (model, gpu), df in res.performance.groupby(["model", "gpu"]):
        i = model_i[model]
        label = f"{model} · {gpu}"
        _series(axes[0], df, "throughput_tok_s", gpu_c[gpu], *_look(i), label)
        _series(axes[1], df, "tpot_s", gpu_c[gpu], *_look(i), label, scale=1e3)
    axes[0].set_ylabel("throughput (output tokens/s)")
    axes[0].set_title("Throughput")
    axes[1].set_ylabel("time per output token (ms)")
    axes[1].set_title("Decode latency (TPOT)")
    target_ms = res.config.tpot_target_s * 1e3
    axes[1].axhline(target_ms, color="#aa0000", lw=1, ls="--")
    for ax in axes:
        _batch_axis(ax, res.config.batches)
        log_axis(ax)
    # the label sits under the line at the right edge, on white, never struck through
    axes[1].text(0.98, target_ms / 1.08, f"TPOT target {target_ms:.0f} ms",
                 transform=axes[1].get_yaxis_transform(), ha="right", va="top", fontsize=8,
                 color="#aa0000", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    marked = _memory_limits(axes[0], res, "throughput_tok_s")
    _memory_limits(axes[1], res, "tpot_s", 1e3)
    note = _legend_note(fig, " · ×: largest batch that fits memory" if marked else "")
    bottom = _legend_below(fig, axes[0], above=note)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def fig_energy_per_token(res: StudyResult, path: Path) -> Path:
    """Energy per token against batch size, prefill and decode apart."""
    gpu_c, _, model_i = _styles(res)
    fig, axes = plt.subplots(1, 2, figsize=(11, _height(res)))
    for (model, gpu), df in res.performance.groupby(["model", "gpu"]):
        i = model_i[model]
        for ax, y in zip(axes, ("prefill_j_per_token", "decode_j_per_token"), strict=True):
            _series(ax, df, y, gpu_c[gpu], *_look(i), f"{model} · {gpu}", scale=1e3)
    axes[0].set_title("Prefill: energy per input token")
    axes[1].set_title("Decode: energy per output token")
    for ax in axes:
        _batch_axis(ax, res.config.batches)
        log_axis(ax)
        ax.set_ylabel("energy (mJ per token)")
    marked = _memory_limits(axes[0], res, "prefill_j_per_token", 1e3)
    _memory_limits(axes[1], res, "decode_j_per_token", 1e3)
    note = _legend_note(fig, " · ×: largest batch that fits memory" if marked else "")
    bottom = _legend_below(fig, axes[0], above=note)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def fig_carbon_stacked(res: StudyResult, path: Path) -> Path:
    """Operational and embodied grams per 1k tokens side by side (log axis: each part keeps its
    own bar, so the smaller is never hidden), by region and GPU, per model."""
    gpu_c, reg_c, _ = _styles(res)
    best = best_rows(res)
    models = [m for m in res.config.models if m in set(best["model"])]
    # one model still gets room for its legend and note
    fig, axes = _panels(len(models), 4.4, 4.8, 7.0)
    regions = [r.upper() for r in res.config.regions]
    gpus = res.config.gpus
    width = 0.8 / max(2 * len(gpus), 1)
    for ax, model in zip(axes, models, strict=False):
        sub = best[best["model"] == model]
        for j, gpu in enumerate(gpus):
            s = sub[sub["gpu"] == gpu].set_index("region").reindex(regions)
            centre = np.arange(len(regions)) + (2 * j + 0.5 - len(gpus)) * width
            parts = (("operational", 1.0, None), ("embodied", 0.45, "//"))
            for k, (part, alpha, hatch) in enumerate(parts):
                x = centre + k * width
                v = s[f"{part}_g_per_1k"].to_numpy() * 1e3
                lo = s[f"{part}_g_per_1k_low"].to_numpy() * 1e3
                hi = s[f"{part}_g_per_1k_high"].to_numpy() * 1e3
                ax.bar(x, v, width * 0.92, color=gpu_c[gpu], alpha=alpha, hatch=hatch,
                       edgecolor="white", label=f"{gpu}: {part}")
                ax.errorbar(x, v, yerr=[v - lo, hi - v], fmt="none", ecolor="#333333",
                            capsize=1.5, lw=0.7)
        ax.set_xticks(np.arange(len(regions)))
        ax.set_xticklabels(regions, fontsize=8.5)
        for lbl, r in zip(ax.get_xticklabels(), regions, strict=True):
            lbl.set_color(reg_c[r])
        log_axis(ax)
        ax.set_title(model)
        ax.set_ylabel("mg CO2e per 1k output tokens")
    cfg = res.config
    note = _footnote(fig, f"each GPU at its lowest-carbon batch meeting the TPOT target · "
                     f"embodied: {cfg.scope} scope at {cfg.utilization:.0%} utilization · "
                     "whiskers: range of each part")
    bottom = _legend_below(fig, axes[0], ncol=2 * len(gpus), above=note)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def fig_embodied_share(res: StudyResult, catalog: Catalog, path: Path) -> Path:
    """Embodied share of total carbon against grid intensity, with the GPUs' crossover marked."""
    gpu_c, reg_c, _ = _styles(res)
    cfg = res.config
    perf = res.performance[res.performance["meets_tpot_target"]]
    models = [m for m in cfg.models if m in set(perf["model"])]
    fig, axes = _panels(len(models), 4.2, 4.2, 6.4)
    ci = np.geomspace(5, 1000, 400)
    for ax, model in zip(axes, models, strict=False):
        lines = {}
        for gpu in cfg.gpus:
            s = perf[(perf["model"] == model) & (perf["gpu"] == gpu)]
            if s.empty:
                continue
            best = s.loc[s["energy_j_per_output_token"].idxmin()]
            # grams per 1k tokens per g/kWh of intensity (operational), and embodied grams
            bill = charge(best["energy_j_per_output_token"] * 1000, 1.0,
                          gpu_embodied(catalog.gpu(gpu), catalog, cfg.scope).total_g.mid,
                          best["seconds_per_output_token"] * 1000, pue=cfg.pue,
                          lifetime_years=cfg.lifetime_years, utilization=cfg.utilization)
            e_kwh, emb = float(bill.operational_g), float(bill.embodied_g)
            lines[gpu] = (e_kwh, emb)
            ax.plot(ci, emb / (emb + e_kwh * ci) * 100, color=gpu_c[gpu], lw=1.8,
                    label=f"{gpu} (batch {int(best['batch'])})")
        for r in cfg.regions:
            reg = catalog.region(r)
            x_r = reg.intensity_g_per_kwh.value
            ax.axvline(x_r, color=reg_c[r.upper()], lw=1, ls=":")
            # beside its line, just above where the share curves cross it (never on them)
            top = max((emb / (emb + e_kwh * x_r) for e_kwh, emb in lines.values()), default=0.0)
            ax.annotate(reg.id.upper(), (x_r, min(top + 0.04, 0.6)),
                        xycoords=("data", "axes fraction"), xytext=(3, 0),
                        textcoords="offset points", rotation=90, fontsize=7.5,
                        color=reg_c[r.upper()], ha="left", va="bottom",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
        # the crossover is an intensity, not a point on either curve: a vertical line, drawn
        # only where the study's finding says the two GPUs are separable
        cross = next((f.numbers for f in res.findings if f.kind == "crossover"
                      and f.numbers.get("model") == model), None)
        x = cross.get("crossover_g_per_kwh") if cross and cross.get("separable") else None
        if x is not None and ci[0] <= x <= ci[-1]:
            ax.axvline(x, color="black", lw=1.2, ls="--",
                       label=f"equal carbon per token at {x:.0f} g/kWh")
        log_axis(ax, "x")
        ax.set_xlabel("grid carbon intensity (g CO2e/kWh, log scale)")
        ax.set_ylabel("embodied share of total carbon (%)")
        ax.set_title(model)
        ax.set_ylim(0, 100)
        ax.legend(loc="upper right", frameon=True, framealpha=0.9, edgecolor="none",
                  fontsize=8)
    note = _footnote(fig, "each GPU at its most energy-efficient batch meeting the TPOT "
                     f"target, {cfg.scope} scope at {cfg.utilization:.0%} utilization; dashed: "
                     "the intensity where both GPUs emit the same per token (drawn only where "
                     "the ranges separate them)")
    fig.tight_layout(rect=(0, note, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def fig_hourly(res: StudyResult, path: Path) -> Path | None:
    """Carbon of the same load by hour of day (with an hourly intensity file)."""
    if res.hourly.empty:
        return None
    gpu_c, _, model_i = _styles(res)
    fig, ax = plt.subplots(figsize=(8, 4))
    for (model, gpu), df in res.hourly.groupby(["model", "gpu"]):
        i = model_i[model]
        style, marker = _look(i)
        ax.plot(df["hour_utc"], df["total_g_per_1k"] * 1e3, linestyle=style, color=gpu_c[gpu],
                marker=marker, ms=3.5, label=f"{model} · {gpu}")
    ax.set_xlabel("hour of day (UTC)")
    ax.set_ylabel("mg CO2e per 1k output tokens")
    log_axis(ax)
    ax.set_xticks(range(0, 24, 3))
    ax.set_title(f"Same load by hour: {res.config.intensity_region or 'hourly grid'}")
    bottom = _legend_below(fig, ax, ncol=2)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def render_all(res: StudyResult, catalog: Catalog, fig_dir: Path) -> list[Path]:
    """Write every figure; return their paths."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        fig_throughput_latency(res, fig_dir / "throughput_latency.png"),
        fig_energy_per_token(res, fig_dir / "energy_per_token.png"),
        fig_carbon_stacked(res, fig_dir / "carbon_per_1k_tokens.png"),
        fig_embodied_share(res, catalog, fig_dir / "embodied_share_vs_intensity.png"),
    ]
    hourly = fig_hourly(res, fig_dir / "carbon_by_hour.png")
    if hourly is not None:
        paths.append(hourly)
    return paths
