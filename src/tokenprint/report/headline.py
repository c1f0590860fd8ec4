"""The study's title and headline: what its own inputs were, and three sentences a reader takes
away before the details (the grid, the GPU, the embodied share), all from the study's numbers."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tokenprint.report.study import StudyResult, best_rows


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def title(res: StudyResult) -> str:
    """``Carbon of serving qwen3-8b on h100-sxm and h200 in FR``, from the study's inputs."""
    cfg = res.config
    return (f"Carbon of serving {_and(list(cfg.models))} on {_and(list(cfg.gpus))} in "
            f"{_and([r.upper() for r in cfg.regions])}")


def _mg(g: float) -> str:
    return f"{g * 1e3:.3g} mg"


def headline(res: StudyResult) -> list[str]:
    """Up to three sentences: how much the grid moves the footprint, whether the GPU choice is
    told apart by the ranges, and the embodied share. Empty when nothing meets the target."""
    best = best_rows(res)
    if best.empty:
        return ["No configuration meets the TPOT target: see the findings."]
    out = []
    low = best.loc[best["total_g_per_1k"].idxmin()]
    out.append(_grid(best, low))
    gpu = _gpus(best, low)
    if gpu:
        out.append(gpu)
    lo, hi = best["embodied_share"].min(), best["embodied_share"].max()
    where = best.loc[best["embodied_share"].idxmax()]
    share = f"{lo:.0%}–{hi:.0%}" if round(lo * 100) != round(hi * 100) else f"{hi:.0%}"
    out.append(f"Embodied carbon is {share} of the total across these configurations (GPUs "
               f"serving {res.config.utilization:.0%} of their provisioned time); the largest "
               f"share is {where['model']} on the {where['gpu']} in {where['region']} "
               f"({where['intensity_g_per_kwh']:.0f} g/kWh).")
    return out


def _grid(best: pd.DataFrame, low: Any) -> str:
    """The lowest-carbon configuration, and what the dirtiest region makes of the same one."""
    same = best[(best["model"] == low["model"]) & (best["gpu"] == low["gpu"])]
    head = (f"Lowest carbon: {low['model']} on the {low['gpu']} in {low['region']}, "
            f"{_mg(low['total_g_per_1k'])} CO2e per 1,000 output tokens (range "
            f"{low['total_g_per_1k_low'] * 1e3:.3g}–{_mg(low['total_g_per_1k_high'])}) at "
            f"batch {int(low['batch'])}")
    if len(same) < 2:
        return head + "."
    high = same.loc[same["total_g_per_1k"].idxmax()]
    return (f"{head}; the same deployment in {high['region']} emits "
            f"{high['total_g_per_1k'] / low['total_g_per_1k']:.3g}× as much "
            f"({_mg(high['total_g_per_1k'])}).")


def _gpus(best: pd.DataFrame, low: Any) -> str | None:
    """The other GPUs against the lowest one, for the same model and region."""
    rivals = best[(best["model"] == low["model"]) & (best["region"] == low["region"])
                  & (best["gpu"] != low["gpu"])]
    if rivals.empty:
        return None
    parts = []
    for rec in rivals.to_dict("records"):
        if rec["total_g_per_1k_low"] <= low["total_g_per_1k_high"]:
            parts.append(f"the {rec['gpu']} ({_mg(rec['total_g_per_1k'])}) is indistinguishable "
                         "within the model's uncertainty")
        else:
            cut = 1 - low["total_g_per_1k"] / rec["total_g_per_1k"]
            ratio = rec["total_g_per_1k"] / low["total_g_per_1k"]
            parts.append(f"the {rec['gpu']} emits {ratio:.3g}× as much "
                         f"({_mg(rec['total_g_per_1k'])}; the {low['gpu']} cuts {cut:.0%})")
    return f"For {low['model']} in {low['region']}, " + "; ".join(parts) + "."
