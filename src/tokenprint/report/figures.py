"""Study figures (matplotlib, Agg): labelled axes with units, legends, consistent colours.

Colours are fixed per GPU and per region across every figure; line style is fixed per model;
filled markers are measured points, hollow markers predicted ones; shaded bands are ranges.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.catalog import Catalog
from tokenprint.report.study import StudyResult, crossover_intensity
from tokenprint.units import J_PER_KWH, S_PER_YEAR

GPU_COLOURS = ["#1b6ca8", "#e07b00", "#2a9d55", "#b8336a", "#6a4c93", "#8a6d3b"]
REGION_COLOURS = ["#f2b705", "#5c5c5c", "#3a86ff", "#8ac926", "#ff595e", "#6a4c93"]
MODEL_STYLES = ["-", "--", ":", "-."]
MODEL_MARKERS = ["o", "s", "^", "D"]

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 10, "axes.titlesize": 11,
    "axes.labelsize": 10, "legend.fontsize": 8.5, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
})


def _styles(res: StudyResult) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
    cfg = res.config
    gpu_c = {g: GPU_COLOURS[i % len(GPU_COLOURS)] for i, g in enumerate(cfg.gpus)}
    reg_c = {r.upper(): REGION_COLOURS[i % len(REGION_COLOURS)]
             for i, r in enumerate(cfg.regions)}
    model_i = {m: i for i, m in enumerate(cfg.models)}
    return gpu_c, reg_c, model_i


def _series(ax: plt.Axes, df: pd.DataFrame, y: str, colour: str, style: str, marker: str,
            label: str, scale: float = 1.0) -> None:
    df = df.sort_values("batch")
    x = df["batch"].to_numpy()
    ax.plot(x, df[y] * scale, style, color=colour, lw=1.8, label=label)
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


def _legend_note(fig: plt.Figure) -> None:
    fig.text(0.01, 0.01, "filled markers: measured · hollow: predicted · bands: range",
             fontsize=8, color="#555555")


def fig_throughput_latency(res: StudyResult, path: Path) -> Path:
    """Throughput and TPOT against batch size."""
    gpu_c, _, model_i = _styles(res)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    for (model, gpu), df in res.performance.groupby(["model", "gpu"]):
        i = model_i[model]
        label = f"{model} · {gpu}"
        _series(axes[0], df, "throughput_tok_s", gpu_c[gpu], MODEL_STYLES[i % 4],
                MODEL_MARKERS[i % 4], label)
        _series(axes[1], df, "tpot_s", gpu_c[gpu], MODEL_STYLES[i % 4], MODEL_MARKERS[i % 4],
                label, scale=1e3)
    axes[0].set_ylabel("throughput (output tokens/s)")
    axes[0].set_title("Throughput")
    axes[1].set_ylabel("time per output token (ms)")
    axes[1].set_title("Decode latency (TPOT)")
    axes[1].axhline(res.config.tpot_target_s * 1e3, color="#aa0000", lw=1, ls="--")
    axes[1].annotate(f"TPOT target {res.config.tpot_target_s * 1e3:.0f} ms",
                     (0.02, 0.93), xycoords="axes fraction", color="#aa0000", fontsize=8)
    for ax in axes:
        _batch_axis(ax, res.config.batches)
        ax.set_yscale("log")
    axes[0].legend(loc="lower right", ncol=1, frameon=False)
    _legend_note(fig)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def fig_energy_per_token(res: StudyResult, path: Path) -> Path:
    """Energy per token against batch size, prefill and decode apart."""
    gpu_c, _, model_i = _styles(res)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    for (model, gpu), df in res.performance.groupby(["model", "gpu"]):
        i = model_i[model]
        for ax, y in zip(axes, ("prefill_j_per_token", "decode_j_per_token"), strict=True):
            _series(ax, df, y, gpu_c[gpu], MODEL_STYLES[i % 4], MODEL_MARKERS[i % 4],
                    f"{model} · {gpu}", scale=1e3)
    axes[0].set_title("Prefill: energy per input token")
    axes[1].set_title("Decode: energy per output token")
    for ax in axes:
        _batch_axis(ax, res.config.batches)
        ax.set_yscale("log")
        ax.set_ylabel("energy (mJ per token)")
    axes[1].legend(loc="upper right", frameon=False)
    _legend_note(fig)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def best_rows(res: StudyResult) -> pd.DataFrame:
    """Per (model, GPU, region): the lowest-carbon batch meeting the TPOT target."""
    ok = res.carbon[res.carbon["meets_tpot_target"]]
    return ok.loc[ok.groupby(["model", "gpu", "region"])["total_g_per_1k"].idxmin()]


def fig_carbon_stacked(res: StudyResult, path: Path) -> Path:
    """Operational + embodied grams per 1k tokens, stacked, by region and GPU, per model."""
    gpu_c, reg_c, _ = _styles(res)
    best = best_rows(res)
    models = [m for m in res.config.models if m in set(best["model"])]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(4.2 * max(len(models), 1), 4.4),
                             squeeze=False)
    regions = [r.upper() for r in res.config.regions]
    gpus = res.config.gpus
    width = 0.8 / max(len(gpus), 1)
    for ax, model in zip(axes[0], models, strict=False):
        sub = best[best["model"] == model]
        for j, gpu in enumerate(gpus):
            s = sub[sub["gpu"] == gpu].set_index("region").reindex(regions)
            x = np.arange(len(regions)) + (j - (len(gpus) - 1) / 2) * width
            op = s["operational_g_per_1k"].to_numpy() * 1e3
            em = s["embodied_g_per_1k"].to_numpy() * 1e3
            ax.bar(x, op, width * 0.95, color=gpu_c[gpu], label=f"{gpu}: operational")
            ax.bar(x, em, width * 0.95, bottom=op, color=gpu_c[gpu], alpha=0.45, hatch="//",
                   edgecolor="white", label=f"{gpu}: embodied")
            lo = s["total_g_per_1k_low"].to_numpy() * 1e3
            hi = s["total_g_per_1k_high"].to_numpy() * 1e3
            tot = op + em
            ax.errorbar(x, tot, yerr=[tot - lo, hi - tot], fmt="none", ecolor="#333333",
                        capsize=2, lw=0.8)
        ax.set_xticks(np.arange(len(regions)))
        ax.set_xticklabels(regions, fontsize=8.5)
        for lbl, r in zip(ax.get_xticklabels(), regions, strict=True):
            lbl.set_color(reg_c[r])
        ax.set_yscale("log")
        ax.set_title(model)
        ax.set_ylabel("mg CO2e per 1k output tokens")
    axes[0][0].legend(loc="upper left", frameon=False, fontsize=8)
    fig.text(0.01, 0.01, "each GPU at its lowest-carbon batch meeting the TPOT target · "
             "whiskers: total range", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def fig_embodied_share(res: StudyResult, catalog: Catalog, path: Path) -> Path:
    """Embodied share of total carbon against grid intensity, with the GPUs' crossover marked."""
    gpu_c, reg_c, _ = _styles(res)
    cfg = res.config
    perf = res.performance[res.performance["meets_tpot_target"]]
    models = [m for m in cfg.models if m in set(perf["model"])]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(4.2 * max(len(models), 1), 4.2),
                             squeeze=False)
    ci = np.geomspace(5, 1000, 400)
    life_s = cfg.lifetime_years * S_PER_YEAR
    for ax, model in zip(axes[0], models, strict=False):
        lines = {}
        for gpu in cfg.gpus:
            s = perf[(perf["model"] == model) & (perf["gpu"] == gpu)]
            if s.empty:
                continue
            best = s.loc[s["energy_j_per_output_token"].idxmin()]
            e_kwh = best["energy_j_per_output_token"] * 1000 / J_PER_KWH * cfg.pue
            emb = gpu_embodied(catalog.gpu(gpu), catalog, cfg.scope).total_g.mid * \
                best["seconds_per_output_token"] * 1000 / life_s
            lines[gpu] = (e_kwh, emb)
            ax.plot(ci, emb / (emb + e_kwh * ci) * 100, color=gpu_c[gpu], lw=1.8,
                    label=f"{gpu} (batch {int(best['batch'])})")
        for r in cfg.regions:
            reg = catalog.region(r)
            ax.axvline(reg.intensity_g_per_kwh.value, color=reg_c[r.upper()], lw=1, ls=":")
            ax.annotate(reg.id.upper(), (reg.intensity_g_per_kwh.value, 0.03),
                        xycoords=("data", "axes fraction"), rotation=90, fontsize=7.5,
                        color=reg_c[r.upper()], ha="right", va="bottom")
        if len(lines) >= 2:
            (_g1, (e1, m1)), (_g2, (e2, m2)) = list(lines.items())[:2]
            x = crossover_intensity(e1, m1, e2, m2)
            if x is not None and ci[0] <= x <= ci[-1]:
                share = m1 / (m1 + e1 * x) * 100
                ax.plot([x], [share], "k*", ms=11, zorder=4,
                        label=f"crossover {x:.0f} g/kWh")
        ax.set_xscale("log")
        ax.set_xlabel("grid carbon intensity (g CO2e/kWh, log scale)")
        ax.set_ylabel("embodied share of total carbon (%)")
        ax.set_title(model)
        ax.set_ylim(0, 100)
        ax.legend(loc="upper right", frameon=False, fontsize=8)
    fig.text(0.01, 0.01, "each GPU at its most energy-efficient batch meeting the TPOT target; "
             "star: intensity where both GPUs emit the same per token", fontsize=8,
             color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
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
        ax.plot(df["hour_utc"], df["total_g_per_1k"] * 1e3, MODEL_STYLES[i % 4],
                color=gpu_c[gpu], marker=MODEL_MARKERS[i % 4], ms=3.5, label=f"{model} · {gpu}")
    ax.set_xlabel("hour of day (UTC)")
    ax.set_ylabel("mg CO2e per 1k output tokens")
    ax.set_yscale("log")
    ax.set_xticks(range(0, 24, 3))
    ax.set_title(f"Same load by hour: {res.config.intensity_region or 'hourly grid'}")
    ax.legend(frameon=False, fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
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
