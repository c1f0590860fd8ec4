"""Fit calibration profiles, one per (GPU, serving stack), by robust least squares in log space.

Each point is predicted on its own measurement boundary: serving or static batches, energy with
or without the prefill, and an idle tail inside the power window where the benchmark had one.
Parameters are bounded by the hardware (efficiencies below the datasheet peaks, power levels
between the idle floor and the TDP); a parameter that ends on a bound is listed in the profile's
``at_bounds`` so that ``calibrate`` and ``catalog profiles`` can say so. The fit itself is in
:mod:`tokenprint.predict.fit`, the held-out refits in :mod:`tokenprint.predict.holdout`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tokenprint.catalog import Catalog
from tokenprint.catalog.schema import CalibrationProfile
from tokenprint.errors import TokenprintError
from tokenprint.predict.fit import (  # noqa: F401  (fit_params … re-exported for callers)
    ERROR_KEYS,
    PARAM_NAMES,
    PRIOR_RANGE_QUANTILES,
    Fit,
    PointArrays,
    fit_params,
    group_mask,
    groups,
    point_arrays,
    predict_points,
    range_factors,
)
from tokenprint.predict.holdout import heldout_predictions


def fit_profiles(points: pd.DataFrame, catalog: Catalog, source: str) -> list[CalibrationProfile]:
    """One profile per (GPU, stack) in the points, without held-out ranges."""
    if points.empty:
        raise TokenprintError("no usable points to calibrate on (none matches the catalog)")
    pa_all = point_arrays(points, catalog)
    profiles = []
    for gpu_id, stack in groups(points):
        mask = group_mask(points, gpu_id, stack)
        fit = fit_params(pa_all.take(np.nonzero(mask)[0]))
        profiles.append(CalibrationProfile.model_validate({
            "id": f"{gpu_id}-{stack}", "gpu": gpu_id, "stack": stack,
            "source": f"fitted by tokenprint calibrate to {int(mask.sum())} points: {source}",
            "n_points": int(mask.sum()), "at_bounds": fit.at_bounds,
            "tp_sizes": sorted({int(t) for t in points.loc[mask, "tp"]}),
            "fit_rms_log": round(fit.rms_log, 4),
            **{n: float(v) for n, v in zip(PARAM_NAMES, fit.values, strict=True)},
        }))
    return profiles


def heldout_errors(points: pd.DataFrame, catalog: Catalog,
                   profiles: list[CalibrationProfile]) -> list[CalibrationProfile]:
    """Profiles with ranges from held-out ratios.

    ``{metric}.lo/.hi``: a model of the GPU held out (batch sizes where the GPU saw one model);
    ``gpu_holdout.{metric}.lo/.hi``: a whole GPU held out and predicted by its stack's prior from
    the other GPUs, pooled over every stack with several calibrated GPUs (transfer by specs errs
    in much the same way whatever the engine, and pooling gives the quantiles enough points; a
    stack with a single GPU could not measure its own), widened to the stack's own errors where
    they are larger.
    ``tp_holdout.{metric}.lo/.hi``: each GPU count of the (GPU, stack) predicted from a fit to its
    other counts — what a layout outside ``tp_sizes`` gets; pooled over every (GPU, stack) with
    several counts where its own data has one.
    """
    by_model = heldout_predictions(points, catalog, "model", fallback_batch=True)
    by_tp = heldout_predictions(points, catalog, "tp")
    multi = [s for s in points["stack"].unique() if points.loc[points["stack"] == s,
                                                                "gpu"].nunique() > 1]
    by_gpu = heldout_predictions(points[points["stack"].isin(multi)].reset_index(drop=True),
                                 catalog, "gpu") if multi else None
    out = []
    for prof in profiles:
        error = dict(prof.error)
        source = prof.source
        m_mask = group_mask(by_model, prof.gpu, prof.stack)
        t_mask = group_mask(by_tp, prof.gpu, prof.stack)
        for m, key in ERROR_KEYS.items():
            if f"ratio_{m}" not in by_model:
                continue
            rng = range_factors(by_model.loc[m_mask, f"ratio_{m}"].to_numpy(float))
            if rng is not None:
                error[f"{key}.lo"], error[f"{key}.hi"] = rng
            rng = (range_factors(by_tp.loc[t_mask, f"ratio_{m}"].to_numpy(float))
                   or range_factors(by_tp[f"ratio_{m}"].to_numpy(float), PRIOR_RANGE_QUANTILES))
            if rng is not None:
                error[f"tp_holdout.{key}.lo"], error[f"tp_holdout.{key}.hi"] = rng
            if by_gpu is None:
                continue
            rng = range_factors(by_gpu[f"ratio_{m}"].to_numpy(float), PRIOR_RANGE_QUANTILES)
            own = range_factors(by_gpu.loc[by_gpu["stack"] == prof.stack, f"ratio_{m}"]
                                .to_numpy(float), PRIOR_RANGE_QUANTILES)
            if rng is not None:
                # the pooled range, widened to the stack's own where its GPUs err more
                lo, hi = (rng if own is None else (min(rng[0], own[0]), max(rng[1], own[1])))
                error[f"gpu_holdout.{key}.lo"], error[f"gpu_holdout.{key}.hi"] = lo, hi
        if by_gpu is not None:
            source += ("; GPU-held-out ranges pooled over the stacks with several calibrated "
                       "GPUs (" + ", ".join(sorted(multi)) + ")")
        out.append(prof.model_copy(update={"error": error, "source": source}))
    return out


def calibrate_with_errors(points: pd.DataFrame, catalog: Catalog,
                          source: str) -> list[CalibrationProfile]:
    """Fitted profiles whose ``error`` holds the held-out ranges used by predictions."""
    return heldout_errors(points, catalog, fit_profiles(points, catalog, source))


def profiles_toml(profiles: list[CalibrationProfile], header: str = "") -> str:
    """Catalog TOML text (``[[profile]]`` tables) for profiles."""
    import tomli_w

    doc = {"profile": [p.model_dump(exclude={"aliases", "name"}, exclude_none=True)
                       for p in profiles]}
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    return ("\n".join(lines) + "\n\n" if lines else "") + tomli_w.dumps(doc)
