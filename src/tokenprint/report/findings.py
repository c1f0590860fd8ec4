"""The study's findings: sentences computed from the numbers, claiming only what the ranges allow.

A comparison is worded as a difference only when the two ranges do not overlap (``separable``);
each finding names the stack and calibration status it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.operational import crossover_intensity, kwh
from tokenprint.catalog import Catalog
from tokenprint.report.config import SEED_SCOPE, VENDOR_SCOPE, StudyConfig


@dataclass
class Finding:
    """One sentence computed from the data, with the numbers behind it."""

    kind: str
    sentence: str
    numbers: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"kind": self.kind, "sentence": self.sentence, "numbers": self.numbers}


def _best_under_target(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, gpu, region): the row with least total carbon among those meeting TPOT."""
    ok = df[df["meets_tpot_target"]]
    if ok.empty:
        return ok
    idx = ok.groupby(["model", "gpu", "region"])["total_g_per_1k"].idxmin()
    return ok.loc[idx]


def _pct(a: float, b: float) -> float:
    return (1.0 - a / b) * 100.0 if b else 0.0


def separable(a_low: float, a_high: float, b_low: float, b_high: float) -> bool:
    """True when two ranges do not overlap: only then is a difference claimed."""
    return bool(a_high < b_low or b_high < a_low)


def _basis(perf: pd.DataFrame, cfg: StudyConfig, model: str, gpus: list[str]) -> dict[str, Any]:
    """The stack and calibration status a finding rests on."""
    sub = perf[(perf["model"] == model) & perf["gpu"].isin(gpus)]
    calibrated = {g: bool(sub[sub["gpu"] == g]["calibrated"].all()) for g in gpus}
    return {"stack": cfg.stack, "calibrated": calibrated,
            "sources": sorted(set(sub["source"]))}


def _basis_text(basis: dict[str, Any]) -> str:
    unc = [g for g, c in basis["calibrated"].items() if not c]
    where = (f"; {' and '.join(unc)} not calibrated under it (the stack's prior)" if unc else "")
    return f" [{'/'.join(basis['sources'])}, {basis['stack']} stack{where}]"


def findings(perf: pd.DataFrame, carbon: pd.DataFrame, cfg: StudyConfig,
             catalog: Catalog) -> list[Finding]:
    """Findings as sentences produced from the numbers: which GPU emits less per token in each
    region, the crossover intensity, the embodied share and its boundary, and the carbon-optimal
    batch of each model and GPU.

    A comparison is stated as a difference only when the two ranges do not overlap
    (``separable``); otherwise it is called indistinguishable within the model's uncertainty.
    """
    out: list[Finding] = []
    best = _best_under_target(carbon)
    if len(cfg.gpus) >= 2:
        out.extend(f for f in (_gpu_choice(perf, best, cfg, m) for m in cfg.models)
                   if f is not None)
    out.extend(_crossovers(perf, cfg, catalog))
    for model in cfg.models:
        out.extend(_embodied(perf, carbon, cfg, model))
    out.extend(_batch_choices(perf, carbon, cfg, catalog.region(cfg.regions[0]).id.upper()))
    return out


def _gpu_choice(perf: pd.DataFrame, best: pd.DataFrame, cfg: StudyConfig, model: str
                ) -> Finding | None:
    """Which GPU emits less per 1k tokens for ``model`` in each region, each at its best batch
    under the TPOT target (None where no region has two GPUs)."""
    target_ms = cfg.tpot_target_s * 1e3
    mgrp = best[best["model"] == model]
    per_region = []
    for region, grp in mgrp.groupby("region"):
        if grp["gpu"].nunique() < 2:
            continue
        g = grp.sort_values("total_g_per_1k")
        win, lose = g.iloc[0], g.iloc[-1]
        per_region.append({
            "region": region, "winner": win["gpu"], "loser": lose["gpu"],
            "winner_g_per_1k": float(win["total_g_per_1k"]),
            "loser_g_per_1k": float(lose["total_g_per_1k"]),
            "winner_range_g_per_1k": [float(win["total_g_per_1k_low"]),
                                      float(win["total_g_per_1k_high"])],
            "loser_range_g_per_1k": [float(lose["total_g_per_1k_low"]),
                                     float(lose["total_g_per_1k_high"])],
            "separable": separable(win["total_g_per_1k_low"],
                                   win["total_g_per_1k_high"],
                                   lose["total_g_per_1k_low"],
                                   lose["total_g_per_1k_high"]),
            "saving_pct": _pct(win["total_g_per_1k"], lose["total_g_per_1k"]),
            "winner_batch": int(win["batch"]), "loser_batch": int(lose["batch"])})
    if not per_region:
        return None
    basis = _basis(perf, cfg, model, list(cfg.gpus))

    def mg(p: dict[str, Any], who: str) -> str:
        lo, hi = p[f"{who}_range_g_per_1k"]
        return f"{lo * 1e3:.3g}–{hi * 1e3:.3g}"

    clear = [p for p in per_region if p["separable"]]
    close = [p for p in per_region if not p["separable"]]
    parts = []
    if clear:
        parts.append("; ".join(
            f"in {p['region']} the {p['winner']} emits {p['saving_pct']:.0f} % less "
            f"({mg(p, 'winner')} vs {mg(p, 'loser')} mg)" for p in clear))
    if close:
        parts.append("; ".join(
            f"in {p['region']} the two are indistinguishable within the model's "
            f"uncertainty ({p['winner']} {mg(p, 'winner')} vs {p['loser']} "
            f"{mg(p, 'loser')} mg)" for p in close))
    sentence = (f"{model}, per 1k output tokens, each GPU at its lowest-carbon batch "
                f"meeting TPOT ≤ {target_ms:.0f} ms: " + "; ".join(parts) + "."
                + _basis_text(basis))
    return Finding("gpu_choice", sentence, {
        "model": model, "regions": per_region, **basis,
        "separable": all(p["separable"] for p in per_region)})


def _embodied(perf: pd.DataFrame, carbon: pd.DataFrame, cfg: StudyConfig, model: str
              ) -> list[Finding]:
    """The embodied share by batch size and grid, at realistic and full utilization, and by
    boundary, for the GPU with the most batch sizes."""
    out: list[Finding] = []
    sub = carbon[carbon["model"] == model]
    if sub.empty:
        return []
    counts = sub.groupby("gpu")["batch"].nunique()
    for gpu in sorted(cfg.gpus, key=lambda g: -int(counts.get(g, 0))):
        s = sub[sub["gpu"] == gpu]
        if s.empty:
            continue
        clean = s[s["intensity_g_per_kwh"] == s["intensity_g_per_kwh"].min()]
        dirty = s[s["intensity_g_per_kwh"] == s["intensity_g_per_kwh"].max()]
        b_lo, b_hi = int(clean["batch"].min()), int(clean["batch"].max())
        sh = clean.set_index("batch")["embodied_share"]
        shd = dirty.set_index("batch")["embodied_share"]
        full = clean.set_index("batch")["embodied_share_at_full_utilization"]
        u = cfg.utilization
        out.append(Finding("embodied_share", (
            f"{model} on the {gpu}, GPUs serving {u:.0%} of provisioned time: the embodied "
            f"share of total carbon is {sh[b_lo] * 100:.0f} % at batch {b_lo} and "
            f"{sh[b_hi] * 100:.0f} % at batch {b_hi} in {clean['region'].iloc[0]} "
            f"({clean['intensity_g_per_kwh'].iloc[0]:.0f} g/kWh), against "
            f"{shd[b_lo] * 100:.0f} % and {shd[b_hi] * 100:.0f} % in "
            f"{dirty['region'].iloc[0]} ({dirty['intensity_g_per_kwh'].iloc[0]:.0f} "
            f"g/kWh); busy 100 % of the time (the seed study's assumption, a lower bound) "
            f"it would be {full[b_lo] * 100:.0f} % and {full[b_hi] * 100:.0f} % in "
            f"{clean['region'].iloc[0]}." + _basis_text(_basis(perf, cfg, model, [gpu]))),
            {"model": model, "gpu": gpu, "clean_region": clean["region"].iloc[0],
             "dirty_region": dirty["region"].iloc[0], "utilization": u,
             "share_clean": {int(b): float(v) for b, v in sh.items()},
             "share_dirty": {int(b): float(v) for b, v in shd.items()},
             "share_clean_at_full_utilization": {int(b): float(v) for b, v in full.items()},
             **_basis(perf, cfg, model, [gpu])}))
        seed = clean.set_index("batch")["embodied_share_seed"]
        vendor = clean.set_index("batch")["embodied_share_vendor"]
        out.append(Finding("embodied_boundary", (
            f"{model} on the {gpu} in {clean['region'].iloc[0]} at batch {b_hi}: the "
            f"embodied share is {seed[b_hi] * 100:.0f} % counting the packaged GPU and its "
            f"memory (the seed's boundary) and {vendor[b_hi] * 100:.0f} % counting "
            f"the whole card and the host's share — the answer depends on "
            f"the boundary by {vendor[b_hi] / max(seed[b_hi], 1e-12):.1f}×."),
            {"model": model, "gpu": gpu, "region": clean["region"].iloc[0],
             "batch": b_hi, "share_seed_boundary": float(seed[b_hi]),
             "share_vendor_boundary": float(vendor[b_hi]),
             "seed_scope": SEED_SCOPE, "vendor_scope": VENDOR_SCOPE}))
        return out  # one GPU per model keeps the list readable; the CSV has every number
    return out


def _batch_choices(perf: pd.DataFrame, carbon: pd.DataFrame, cfg: StudyConfig, home: str
                   ) -> list[Finding]:
    """The carbon-optimal batch under the TPOT target of each model and GPU, in the home
    region (the optimum barely moves with the grid)."""
    out: list[Finding] = []
    target_ms = cfg.tpot_target_s * 1e3
    for (model, gpu, region), grp in carbon.groupby(["model", "gpu", "region"]):
        if region != home:
            continue  # the batch optimum barely moves with the grid; report it for one region
        ok = grp[grp["meets_tpot_target"]]
        basis = _basis(perf, cfg, model, [gpu])
        if ok.empty:
            out.append(Finding("batch_choice", (
                f"{model} on the {gpu} in {region}: no batch size meets TPOT ≤ "
                f"{target_ms:.0f} ms." + _basis_text(basis)),
                {"model": model, "gpu": gpu, "region": region, **basis}))
            continue
        b = ok.loc[ok["total_g_per_1k"].idxmin()]
        b1 = grp[grp["batch"] == grp["batch"].min()].iloc[0]
        sep = separable(b["total_g_per_1k_low"], b["total_g_per_1k_high"],
                        b1["total_g_per_1k_low"], b1["total_g_per_1k_high"])
        largest = int(grp["batch"].max())
        rule = str(perf[(perf["model"] == model) & (perf["gpu"] == gpu)]["memory_rule"].iloc[0])
        if int(b["batch"]) == int(b1["batch"]):
            sentence = (f"{model} on the {gpu} in {region}: only batch {int(b['batch'])} fits "
                        f"memory ({rule}) and meets TPOT ≤ {target_ms:.0f} ms, at "
                        f"{b['total_g_per_1k'] * 1e3:.3g} mg per 1k tokens."
                        if len(grp) == 1 else
                        f"{model} on the {gpu} in {region}: batch {int(b['batch'])} already "
                        f"gives the least carbon per token under TPOT ≤ {target_ms:.0f} ms.")
        elif sep:
            sentence = (f"{model} on the {gpu} in {region}: batch {int(b['batch'])} minimizes "
                        f"carbon per token under TPOT ≤ {target_ms:.0f} ms, at "
                        f"{b['total_g_per_1k'] * 1e3:.3g} mg per 1k tokens, "
                        f"{_pct(b['total_g_per_1k'], b1['total_g_per_1k']):.0f} % below batch "
                        f"{int(b1['batch'])} (batches up to {largest} fit).")
        else:
            sentence = (f"{model} on the {gpu} in {region}: batch {int(b['batch'])} and batch "
                        f"{int(b1['batch'])} are indistinguishable within the model's "
                        f"uncertainty ({b['total_g_per_1k_low'] * 1e3:.3g}–"
                        f"{b['total_g_per_1k_high'] * 1e3:.3g} vs "
                        f"{b1['total_g_per_1k_low'] * 1e3:.3g}–"
                        f"{b1['total_g_per_1k_high'] * 1e3:.3g} mg per 1k tokens).")
        out.append(Finding("batch_choice", sentence + _basis_text(basis),
            {"model": model, "gpu": gpu, "region": region, "batch": int(b["batch"]),
             "g_per_1k": float(b["total_g_per_1k"]), "batch_1_g_per_1k":
             float(b1["total_g_per_1k"]), "separable": sep, "largest_batch_fitting": largest,
             "memory_rule": rule, **basis}))
    return out


def _crossovers(perf: pd.DataFrame, cfg: StudyConfig, catalog: Catalog) -> list[Finding]:
    if len(cfg.gpus) < 2:
        return []
    years = {g: catalog.gpu(g).release_year for g in cfg.gpus}
    old, new = min(cfg.gpus, key=lambda g: years[g]), max(cfg.gpus, key=lambda g: years[g])
    if old == new:
        return []
    out = []
    for model in cfg.models:
        sub = perf[(perf["model"] == model) & perf["meets_tpot_target"]]
        pick = {}
        for g in (old, new):
            s = sub[sub["gpu"] == g]
            if s.empty:
                break
            # each GPU at its most energy-efficient batch meeting the target
            pick[g] = s.loc[s["energy_j_per_output_token"].idxmin()]
        if len(pick) < 2:
            continue
        emb = {g: gpu_embodied(catalog.gpu(g), catalog, cfg.scope).total_g.mid for g in pick}
        e = {g: float(kwh(pick[g]["energy_j_per_output_token"] * 1000)) for g in pick}
        m = {g: float(charge(0.0, 0.0, emb[g], pick[g]["seconds_per_output_token"] * 1000,
                             lifetime_years=cfg.lifetime_years, utilization=cfg.utilization)
                      .embodied_g) for g in pick}
        ci = crossover_intensity(e[old], m[old], e[new], m[new], cfg.pue)
        sep = separable(pick[old]["energy_j_per_output_token_low"],
                        pick[old]["energy_j_per_output_token_high"],
                        pick[new]["energy_j_per_output_token_low"],
                        pick[new]["energy_j_per_output_token_high"])
        nums = {"model": model, "old_gpu": old, "new_gpu": new, "separable": sep,
                **_basis(perf, cfg, model, [old, new]),
                "old_kwh_per_1k": e[old], "new_kwh_per_1k": e[new],
                "old_embodied_g_per_1k": m[old], "new_embodied_g_per_1k": m[new],
                "old_batch": int(pick[old]["batch"]), "new_batch": int(pick[new]["batch"]),
                "crossover_g_per_kwh": ci}
        if not sep:
            sentence = (f"For {model}, the energy per token of the {old} and the {new} is "
                        f"indistinguishable within the model's uncertainty, so no crossover "
                        f"intensity can be claimed ({old}: {e[old] * 1e3:.3g} Wh, {new}: "
                        f"{e[new] * 1e3:.3g} Wh per 1k tokens, ranges overlapping)."
                        + _basis_text(nums))
        elif ci is None:
            winner = old if e[old] <= e[new] and m[old] <= m[new] else new
            sentence = (f"For {model}, the {winner} emits less per token at every grid "
                        f"intensity: its lines of carbon against intensity never cross "
                        f"({old}: {e[old] * 1e3:.3g} Wh and {m[old] * 1e3:.3g} mg embodied per "
                        f"1k tokens; {new}: {e[new] * 1e3:.3g} Wh and {m[new] * 1e3:.3g} mg).")
        else:
            cleaner_low = old if m[old] < m[new] else new
            other = new if cleaner_low == old else old
            sentence = (f"For {model}, the {old} and the {new} emit the same per token at a grid "
                        f"intensity of {ci:.0f} g/kWh: below it the {cleaner_low} (less "
                        f"embodied carbon per token) is lower-carbon, above it the {other} (less "
                        f"energy per token).")
        if sep and not sentence.endswith("]"):
            sentence += _basis_text(nums)
        out.append(Finding("crossover", sentence, nums))
    return out



def hourly_findings(hourly: pd.DataFrame, cfg: StudyConfig) -> list[Finding]:
    """Best and worst hours of the day for the same load."""
    if hourly.empty:
        return []
    g = hourly.groupby("hour_utc")["intensity_g_per_kwh"].mean()
    best3 = [int(h) for h in g.nsmallest(3).index]
    worst = int(g.idxmax())
    first = hourly[(hourly["model"] == hourly["model"].iloc[0]) &
                   (hourly["gpu"] == hourly["gpu"].iloc[0])].set_index("hour_utc")
    saving = _pct(first.loc[best3[0], "total_g_per_1k"], first.loc[worst, "total_g_per_1k"])
    region = cfg.intensity_region or "the given grid"
    return [Finding("best_hours", (
        f"With the hourly intensity of {region}, the cleanest hours of the day are "
        f"{', '.join(f'{h:02d}:00' for h in best3)} UTC ({g[best3[0]]:.0f} g/kWh at best, "
        f"{g[worst]:.0f} at {worst:02d}:00); serving {first['model'].iloc[0]} on the "
        f"{first['gpu'].iloc[0]} then emits {saving:.0f} % less per token than at the worst "
        "hour."),
        {"region": region, "best_hours_utc": best3, "worst_hour_utc": worst,
         "best_g_per_kwh": float(g[best3[0]]), "worst_g_per_kwh": float(g[worst]),
         "saving_pct": saving})]


