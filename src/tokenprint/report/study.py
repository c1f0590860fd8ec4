"""The seed study, re-run: performance, energy and carbon of LLaMA serving on an old and a new GPU
in grids with different energy mixes, and the findings that follow from the numbers.

Everything here is computed; no sentence is written in advance. Each finding carries the numbers
behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tokenprint.carbon.charge import charge
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.scope2 import sci_g_per_unit
from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.predict import predict_records, resolve_dtype
from tokenprint.predict.shapes import kv_token_budget
from tokenprint.records import RunRecord
from tokenprint.report.config import (  # noqa: F401  (re-exported: the study's public names)
    CHAT_MIX,
    DEFAULT_BATCHES,
    DEFAULT_GPUS,
    DEFAULT_MODELS,
    DEFAULT_REGIONS,
    REALISTIC_UTILIZATION,
    SEED_SCOPE,
    STUDY_STACK,
    TPOT_TARGET_S,
    UTILIZATION_SOURCE,
    VENDOR_SCOPE,
    StudyConfig,
)
from tokenprint.report.findings import (  # noqa: F401
    Finding,
    crossover_intensity,
    findings,
    hourly_findings,
    separable,
)


def _measured_lookup(records: list[RunRecord]) -> dict[tuple[str, str, int, int, int],
                                                      RunRecord]:
    out = {}
    for r in records:
        if r.get("status") != "ok" or r.get("source", "measured") != "measured":
            continue
        key = (str(r["model"]), str(r["hardware_id"]), int(r["batch"]), int(r["input_len"]),
               int(r["output_len"]))
        out[key] = r
    return out


def class_batches(cfg: StudyConfig, catalog: Catalog, model_id: str, gpu_id: str
                  ) -> tuple[dict[int, list[int]], str]:
    """For each requested batch, the batch each length class of the mix runs at.

    Paged-KV stacks (vLLM, TensorRT-LLM) hold the requests in flight, not the longest request
    times the batch: the batch fits while batch × the mix's mean tokens in flight (prompt plus
    half the output) fits the KV budget. Static stacks (HF transformers) pad every request of a
    batch to its length class: each class runs at the largest batch whose full length fits,
    up to the requested one. A requested batch no class reaches adds nothing and is dropped.
    """
    model, gpu = catalog.model(model_id), catalog.gpu(gpu_id)
    budget = kv_token_budget(model, gpu.memory_gb.value, resolve_dtype("auto", gpu))
    w = np.array([x for _, _, x in cfg.mix], dtype=float)
    full = np.array([i + o for i, o, _ in cfg.mix], dtype=float)
    paged = catalog.stack(cfg.stack).paged_kv
    if paged:
        in_flight = float(np.dot(w, [i + o / 2 for i, o, _ in cfg.mix]) / w.sum())
        caps = [int(budget // in_flight) if f <= budget else 0 for f in full]
        rule = (f"paged KV: batch × {in_flight:.0f} mean tokens in flight ≤ {budget} KV tokens")
    else:
        caps = [int(budget // f) for f in full]
        rule = "static batches: each length class padded to its own length (" + ", ".join(
            f"{i}/{o}: ≤ {c}" for (i, o, _), c in zip(cfg.mix, caps, strict=True)) + ")"
    out: dict[int, list[int]] = {}
    for b in cfg.batches:
        per = [min(b, c) for c in caps]
        if min(per) < 1 or max(per) < b:
            continue
        out[b] = per
    return out, rule


def performance_table(cfg: StudyConfig, catalog: Catalog,
                      progress: Any = None) -> pd.DataFrame:
    """One row per (model, GPU, batch): the mix's performance and energy, measured or predicted.

    Each length class runs at the batch memory allows it (``class_batches``); a batch no class
    reaches is dropped.
    """
    measured = _measured_lookup(cfg.results_records)
    weights = np.array([w for _, _, w in cfg.mix], dtype=float)
    weights = weights / weights.sum()
    rows = []
    for model_id in cfg.models:
        model = catalog.model(model_id)
        for gpu_id in cfg.gpus:
            gpu = catalog.gpu(gpu_id)
            plan, rule = class_batches(cfg, catalog, model.id, gpu.id)
            by_class = []
            for ci, (li, lo, _w) in enumerate(cfg.mix):
                wanted = sorted({per[ci] for per in plan.values()})
                recs = predict_records(catalog, model, gpu, wanted, li, lo,
                                       stack=cfg.stack) if wanted else []
                by_class.append({r["batch"]: r for r in recs})
            for batch, per in plan.items():
                recs = []
                sources = []
                for ci, (li, lo, _w) in enumerate(cfg.mix):
                    m = measured.get((model.id, gpu.id, per[ci], li, lo))
                    if m is not None:
                        recs.append(m)
                        sources.append("measured")
                    else:
                        recs.append(by_class[ci][per[ci]])
                        sources.append("predicted")
                row = _combine(model.id, gpu.id, batch, recs, sources, weights, cfg)
                row["class_batches"] = "/".join(str(x) for x in per)
                row["memory_rule"] = rule
                rows.append(row)
                if progress is not None:
                    progress()
    if not rows:
        raise TokenprintError("no batch size fits any GPU for these models and lengths; try "
                              "smaller batches or shorter lengths")
    return pd.DataFrame(rows)


def _combine(model: str, gpu: str, batch: int, recs: list[RunRecord], sources: list[str],
             w: np.ndarray, cfg: StudyConfig) -> dict[str, Any]:
    """Request-weighted totals over the length mix (each class at its own batch)."""
    views: list[Mapping[str, Any]] = list(recs)

    def arr(key: str, suffix: str = "") -> np.ndarray:
        vals = []
        for r in views:
            v = r.get(key + suffix)
            if v is None:  # measured records carry p5/p95, not low/high
                alt = {"_low": "_p5", "_high": "_p95"}.get(suffix)
                v = r.get(key + alt) if alt else None
            vals.append(float(r[key] if v is None else v))
        return np.array(vals)

    b = np.array([r["batch"] for r in recs], dtype=float)
    in_tok = np.array([r["input_len"] for r in recs], dtype=float)
    out_tok = np.array([r["output_len"] for r in recs], dtype=float)
    row: dict[str, Any] = {"model": model, "gpu": gpu, "batch": batch, "stack": cfg.stack}
    src = set(sources)
    row["source"] = src.pop() if len(src) == 1 else "mixed"
    row["energy_kind"] = ",".join(sorted({str(r.get("energy_kind")) for r in recs}))
    row["calibration"] = "; ".join(sorted({str(r.get("calibration", "measured"))
                                           for r in recs}))
    row["calibrated"] = all(bool(r.get("calibrated", r.get("source") == "measured"))
                            for r in recs)
    for sfx, tag in (("", ""), ("_low", "_low"), ("_high", "_high")):
        # per request of each class: a batch's energy and GPU time shared by its requests
        pre = arr("prefill_energy_j", sfx) / b
        dec = arr("decode_energy_j", sfx) / b
        gpu_s = arr("e2e_s", sfx) / b
        row[f"ttft_s{tag}"] = float(np.dot(w, arr("ttft_s", sfx)))
        row[f"tpot_s{tag}"] = float(np.dot(w, arr("tpot_s", sfx)))
        row[f"prefill_j_per_token{tag}"] = float(np.dot(w, pre) / np.dot(w, in_tok))
        row[f"decode_j_per_token{tag}"] = float(np.dot(w, dec) / np.dot(w, out_tok))
        row[f"energy_j_per_output_token{tag}"] = float(np.dot(w, pre + dec) / np.dot(w, out_tok))
        row[f"seconds_per_output_token{tag}"] = float(np.dot(w, gpu_s) / np.dot(w, out_tok))
    # throughput: higher is better, so its low comes from the slow (high-time) end
    row["throughput_tok_s"] = 1.0 / row["seconds_per_output_token"]
    row["throughput_tok_s_low"] = 1.0 / row["seconds_per_output_token_high"]
    row["throughput_tok_s_high"] = 1.0 / row["seconds_per_output_token_low"]
    row["meets_tpot_target"] = bool(row["tpot_s"] <= cfg.tpot_target_s)
    return row


def carbon_table(perf: pd.DataFrame, cfg: StudyConfig, catalog: Catalog) -> pd.DataFrame:
    """Per (model, GPU, batch, region): operational and embodied grams per 1k output tokens.

    Embodied carbon is charged for provisioned time: the busy GPU-seconds per token divided by
    the utilization. The main columns use ``cfg.scope``; ``*_seed`` (packaged GPU + memory)
    and ``*_vendor`` (card + host share) show both boundaries, and
    ``embodied_share_at_full_utilization`` the seed study's 100 %-busy assumption.
    """
    rows = []
    emb_cache = {g: {scope: gpu_embodied(catalog.gpu(g), catalog, scope).total_g
                     for scope in {cfg.scope, SEED_SCOPE, VENDOR_SCOPE}} for g in cfg.gpus}
    life, u = cfg.lifetime_years, cfg.utilization
    for region_id in cfg.regions:
        region = catalog.region(region_id)
        ci = region.intensity_g_per_kwh.estimate
        for rec in perf.to_dict("records"):
            embs = emb_cache[rec["gpu"]]
            emb = embs[cfg.scope]
            e_mid = rec["energy_j_per_output_token"] * 1000
            e_lo = rec["energy_j_per_output_token_low"] * 1000
            e_hi = rec["energy_j_per_output_token_high"] * 1000
            t_mid = rec["seconds_per_output_token"] * 1000
            t_lo = rec["seconds_per_output_token_low"] * 1000
            t_hi = rec["seconds_per_output_token_high"] * 1000
            bill = charge([e_mid, e_lo, e_hi], [ci.mid, ci.low, ci.high],
                          [emb.mid, emb.low, emb.high], [t_mid, t_lo, t_hi], pue=cfg.pue,
                          lifetime_years=life, utilization=u)
            op, em = tuple(bill.operational_g), tuple(bill.embodied_g)
            total = op[0] + em[0]
            em_full = float(charge(0.0, 0.0, emb.mid, t_mid, lifetime_years=life).embodied_g)
            seed, vendor = charge(0.0, 0.0, [embs[SEED_SCOPE].mid, embs[VENDOR_SCOPE].mid],
                                  t_mid, lifetime_years=life, utilization=u).embodied_g
            rows.append({
                **{k: rec[k] for k in ("model", "gpu", "batch", "source", "meets_tpot_target")},
                "region": region.id.upper(), "intensity_g_per_kwh": ci.mid,
                "operational_g_per_1k": op[0], "operational_g_per_1k_low": op[1],
                "operational_g_per_1k_high": op[2],
                "embodied_g_per_1k": em[0], "embodied_g_per_1k_low": em[1],
                "embodied_g_per_1k_high": em[2],
                "total_g_per_1k": total, "total_g_per_1k_low": op[1] + em[1],
                "total_g_per_1k_high": op[2] + em[2],
                "embodied_share": em[0] / total if total > 0 else 0.0,
                "embodied_share_at_full_utilization": em_full / (op[0] + em_full)
                if op[0] + em_full > 0 else 0.0,
                "embodied_seed_g_per_1k": seed,
                "embodied_share_seed": seed / (op[0] + seed) if op[0] + seed > 0 else 0.0,
                "embodied_vendor_g_per_1k": vendor,
                "embodied_share_vendor": vendor / (op[0] + vendor) if op[0] + vendor > 0
                else 0.0,
            })
    out = pd.DataFrame(rows)
    if len(out):   # SCI (ISO/IEC 21031): (E × I + M) / R, R = 1,000 output tokens
        out["sci_g_per_1k_tokens"] = sci_g_per_unit(out["operational_g_per_1k"],
                                                    out["embodied_g_per_1k"], 1.0)
    return out


# what a study's SCI covers (E, I, M and R of ISO/IEC 21031:2024)
SCI_BOUNDARY = ("SCI = (E × I + M) / R: E the GPUs' energy per output token (measured or "
                "predicted) × PUE, I the region's annual location-based intensity, M the GPUs' "
                "embodied carbon at the study's scope for the provisioned time (busy time / "
                "utilization, amortized over the lifetime), R 1,000 output tokens; networking, "
                "storage and idle spares are outside")


def sci_summary(res: StudyResult) -> dict[str, Any]:
    """``study.json``'s SCI block: the boundary and, per model, GPU and region, the SCI of the
    lowest-carbon batch meeting the TPOT target (with its range)."""
    best = best_rows(res)
    return {"standard": "ISO/IEC 21031:2024", "functional_unit": "1,000 output tokens",
            "boundary": SCI_BOUNDARY,
            "best": [{"model": r["model"], "gpu": r["gpu"], "region": r["region"],
                      "batch": int(r["batch"]),
                      "sci_g_per_1k_tokens": float(r["sci_g_per_1k_tokens"]),
                      "range": [float(r["total_g_per_1k_low"]),
                                float(r["total_g_per_1k_high"])]}
                     for r in best.to_dict("records")]}


def best_rows(res: StudyResult) -> pd.DataFrame:
    """Per (model, GPU, region): the lowest-carbon batch meeting the TPOT target."""
    ok = res.carbon[res.carbon["meets_tpot_target"]]
    return ok.loc[ok.groupby(["model", "gpu", "region"])["total_g_per_1k"].idxmin()]


def hourly_profile(perf: pd.DataFrame, cfg: StudyConfig, catalog: Catalog) -> pd.DataFrame:
    """Carbon of the same serving load by UTC hour of day with an hourly intensity series.

    The load: each model on each GPU at its most efficient batch under the TPOT target, serving
    1k output tokens; operational carbon uses the mean intensity of each hour of day.
    """
    if cfg.intensity is None:
        return pd.DataFrame()
    by_hour = cfg.intensity.hour_of_day_mean()
    rows = []
    for (model, gpu), grp in perf[perf["meets_tpot_target"]].groupby(["model", "gpu"]):
        best = grp.loc[grp["energy_j_per_output_token"].idxmin()]
        bill = charge(best["energy_j_per_output_token"] * 1000, by_hour,
                      gpu_embodied(catalog.gpu(gpu), catalog, cfg.scope).total_g.mid,
                      best["seconds_per_output_token"] * 1000, pue=cfg.pue,
                      lifetime_years=cfg.lifetime_years, utilization=cfg.utilization)
        emb, ops = float(bill.embodied_g), bill.operational_g
        for hour, (ci, op) in enumerate(zip(by_hour, ops, strict=True)):
            rows.append({"model": model, "gpu": gpu, "batch": int(best["batch"]),
                         "hour_utc": hour, "intensity_g_per_kwh": float(ci),
                         "operational_g_per_1k": float(op), "embodied_g_per_1k": emb,
                         "total_g_per_1k": float(op) + emb})
    return pd.DataFrame(rows)



@dataclass
class StudyResult:
    """Everything a study produces."""

    config: StudyConfig
    performance: pd.DataFrame
    carbon: pd.DataFrame
    hourly: pd.DataFrame
    findings: list[Finding]

    def to_json(self, catalog: Catalog) -> dict[str, Any]:
        """``study.json``: inputs, sources and findings."""
        return {
            "inputs": self.config.to_dict(),
            "sources": _sources(self.config, catalog),
            "findings": [f.to_dict() for f in self.findings],
            "sci": sci_summary(self),
            "points": {"measured": int((self.performance["source"] == "measured").sum()),
                       "predicted": int((self.performance["source"] == "predicted").sum()),
                       "mixed": int((self.performance["source"] == "mixed").sum())},
        }

    def table(self) -> pd.DataFrame:
        """``study.csv``: one row per (model, GPU, batch, region) with every number."""
        return self.carbon.merge(
            self.performance.drop(columns=["source", "meets_tpot_target"]),
            on=["model", "gpu", "batch"])


def _sources(cfg: StudyConfig, catalog: Catalog) -> dict[str, Any]:
    out: dict[str, Any] = {"regions": {}, "gpus": {}}
    for r in cfg.regions:
        reg = catalog.region(r)
        out["regions"][reg.id.upper()] = {
            "intensity_g_per_kwh": reg.intensity_g_per_kwh.value,
            "range": [reg.intensity_g_per_kwh.estimate.low, reg.intensity_g_per_kwh.estimate.high],
            "basis": reg.basis, "year": reg.year, "mix": reg.mix,
            "source": reg.intensity_g_per_kwh.source}
    for g in cfg.gpus:
        b = gpu_embodied(catalog.gpu(g), catalog, cfg.scope)
        out["gpus"][g] = {"embodied_g": b.total_g.as_dict(), "sources": b.sources,
                          "notes": b.notes}
    return out


def run_study(cfg: StudyConfig, catalog: Catalog, progress: Any = None) -> StudyResult:
    """Compute the whole study (pure: no files written here)."""
    if not cfg.models or not cfg.gpus or not cfg.regions or not cfg.batches or not cfg.mix:
        raise TokenprintError("models, GPUs, regions, batch sizes and lengths must be non-empty")
    for m in cfg.models:
        catalog.model(m)
    for g in cfg.gpus:
        catalog.gpu(g)
    for r in cfg.regions:
        catalog.region(r)
    perf = performance_table(cfg, catalog, progress)
    carbon = carbon_table(perf, cfg, catalog)
    hourly = hourly_profile(perf, cfg, catalog)
    found = findings(perf, carbon, cfg, catalog) + hourly_findings(hourly, cfg)
    return StudyResult(cfg, perf, carbon, hourly, found)
