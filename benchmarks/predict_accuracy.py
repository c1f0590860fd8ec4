"""Accuracy of the performance model as users meet it, on every public data set in shared/data.

Prints, per data set and stack: MAPE, bias and range coverage of energy per output token, TPOT
and throughput, for

* ``no-refit``: the shipped profiles exactly as ``tokenprint predict`` uses them (in-sample for
  calibrated (GPU, stack) pairs: the shipped fit saw these points);
* ``gpu held out``: each GPU predicted by its stack's prior built from the other GPUs of that
  stack (refit without it) — what a GPU with no profile gets;
* ``model held out``: each model predicted by a fit to the GPU's other models;
* ``parallel layout held out``: each GPU count of a (GPU, stack) predicted by a fit to its other
  GPU counts — a layout nobody measured;
* ``temporal``: a profile fitted on ML.ENERGY v2 (vLLM 2024) alone, predicting v3 (vLLM late
  2025) on the same H100 — what an out-of-date profile costs.

Usage: python benchmarks/predict_accuracy.py [SHARED_CALIBRATION_DIR]   (skips without the data)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from fit_shipped_profiles import (  # noqa: E402
    HELD_OUT_GPUS,
    HELD_OUT_MODELS,
    HELD_OUT_TASKS,
    kept_out,
    load_all,
)

from tokenprint.catalog import Catalog, load_catalog  # noqa: E402
from tokenprint.predict.datasets import Points  # noqa: E402
from tokenprint.predict.validate import validation_report  # noqa: E402

METRICS = ("energy_per_token", "tpot", "throughput", "ttft")


def _row(label: str, rep: dict) -> str:
    cells = []
    for m in METRICS:
        if rep["mape"][m] is None:
            cells.append("—")
        else:
            cells.append(f"{rep['mape'][m]:5.1f}% ({rep['bias'][m]:+5.1f}%) cov "
                         f"{rep['coverage'][m]:.0%} ±{rep['median_half_width_pct'][m]:.0f}%")
    return f"{label:44s} n={rep['n_points']:4d} | " + " | ".join(cells)


def _kept_out(v3: Points, cat: Catalog) -> None:
    """The v3 rows the shipped fit never saw, and the text rows, predicted with no refit."""
    t = v3.table
    task_out, model_out = t["task"].isin(HELD_OUT_TASKS), t["model"].isin(HELD_OUT_MODELS)
    print("\n== ML.ENERGY v3 rows kept out of the shipped fit (out of sample, no refit) ==")
    subsets = {"every row kept out": task_out | model_out,
               "text rows of the models kept out": model_out & ~task_out,
               **{f"  model {m}, every task": t["model"] == m for m in HELD_OUT_MODELS},
               **{f"task {k}": t["task"] == k for k in HELD_OUT_TASKS},
               "(in sample) the fitted rows": ~(task_out | model_out),
               "(mixed) every text row": ~task_out}
    for label, mask in subsets.items():
        if mask.any():
            sub = t[mask.to_numpy()].reset_index(drop=True)
            print(_row(label, validation_report(sub, cat, None, 0, v3.source)))


def _later_models(sets: list[Points], names: tuple[str, ...], cat: Catalog) -> None:
    """Rows of the other sets whose models joined the catalog after the shipped fit."""
    print("\n== models added to the catalog after the shipped fit (out of sample, no refit) ==")
    for name, s in zip(names, sets, strict=True):
        t = s.table
        mask = (t["model"].isin(HELD_OUT_MODELS) & ~t["task"].isin(HELD_OUT_TASKS)
                & ~t["gpu"].isin(HELD_OUT_GPUS))
        if "v3" in name or not mask.any():
            continue
        sub = t[mask.to_numpy()].reset_index(drop=True)
        rep = validation_report(sub, cat, None, 0, s.source)
        print(_row(name, rep))
        for model, part in rep["by_model"].items():
            print(_row(f"  model {model}", part))


def _unprofiled_gpus(sets: list[Points], names: tuple[str, ...], cat: Catalog) -> None:
    """Rows on GPUs that no shipped profile covers, predicted by their stack's prior."""
    print("\n== GPUs without a profile: the stack's prior transferred by specs (no refit) ==")
    for name, s in zip(names, sets, strict=True):
        t = s.table
        mask = t["gpu"].isin(HELD_OUT_GPUS)
        if not mask.any():
            continue
        sub = t[mask.to_numpy()].reset_index(drop=True)
        rep = validation_report(sub, cat, None, 0, s.source)
        for gpu, part in rep["by_gpu"].items():
            print(_row(f"{name}: {gpu}", part))
        for model, part in rep["by_model"].items():
            print(_row(f"  model {model}", part))
        for n_gpus in sorted(sub["tp"].unique()):
            part = sub[sub["tp"] == n_gpus].reset_index(drop=True)
            print(_row(f"  {n_gpus:g} GPU(s)", validation_report(part, cat, None, 0, s.source)))


def main() -> None:
    cal = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared/data/calibration"
    if not cal.is_dir():
        print(f"skipped: {cal} not found (shared data absent)")
        return
    cat = load_catalog()
    sets = load_all(cal)
    names = ("ML.ENERGY v1 (HF, batch 1)", "ML.ENERGY v2 (vLLM 2024)",
             "ML.ENERGY v3 H100 (vLLM 2025)", "Argonne (vLLM 2024, TRT-LLM, DS-MII)",
             "Splitwise (Llama-2-70B, time only)")
    print("metric columns: MAPE (bias) coverage ±median half-width, for "
          + ", ".join(METRICS))
    print("\n== shipped profiles, no refit (in-sample for calibrated pairs) ==")
    for name, s in zip(names, sets, strict=True):
        print(_row(name, validation_report(s.table, cat, None, s.n_skipped, s.source)))
        fitted = ~kept_out(s.table)
        if not fitted.all():
            sub = s.table[fitted.to_numpy()].reset_index(drop=True)
            print(_row("  of which the fitted rows", validation_report(sub, cat, None, 0,
                                                                       s.source)))
    _kept_out(sets[2], cat)
    _later_models(sets, names, cat)
    _unprofiled_gpus(sets, names, cat)
    allp = pd.concat([s.table for s in sets], ignore_index=True)
    # the refits below are over the GPUs that have profiles; the others are scored above
    allp = allp[~allp["gpu"].isin(HELD_OUT_GPUS)].reset_index(drop=True)
    for holdout in ("gpu", "model"):
        rep = validation_report(allp, cat, holdout, 0, "all")
        print(f"\n== {holdout} held out (refit on the rest) ==")
        for stack, sub in rep["by_stack"].items():
            print(_row(f"stack {stack}", sub))
        for gpu, sub in rep["by_gpu"].items():
            print(_row(f"  gpu {gpu}", sub))
    print("\n== parallel layout held out (each GPU count predicted from a fit to the others) ==")
    for name, s in zip(names, sets, strict=True):
        table = s.table[~s.table["gpu"].isin(HELD_OUT_GPUS)].reset_index(drop=True)
        if table["tp"].nunique() < 2:
            continue
        rep = validation_report(table, cat, "tp", 0, s.source)
        print(_row(name, rep))
        for stack, sub in rep["by_stack"].items():
            if len(rep["by_stack"]) > 1:
                print(_row(f"  stack {stack}", sub))
    v2, v3 = sets[1].table, sets[2].table
    both = pd.concat([v2.assign(stack="vllm-2024"), v3.assign(stack="vllm-2025")],
                     ignore_index=True)
    h100 = both[both["gpu"] == "h100-sxm"].reset_index(drop=True)
    rep = validation_report(h100, cat, "stack", 0, "v2 -> v3")
    print("\n== temporal: fit on one stack's H100 data, predict the other's ==")
    for stack, sub in rep["by_stack"].items():
        print(_row(f"predict {stack} from the other", sub))


if __name__ == "__main__":
    main()
