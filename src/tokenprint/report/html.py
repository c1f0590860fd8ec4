"""The study report: one self-contained HTML file (figures embedded), readable offline."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from tokenprint import __version__
from tokenprint.catalog import Catalog
from tokenprint.files import write_text_atomic
from tokenprint.pages import CSS, img
from tokenprint.report.headline import headline, title
from tokenprint.report.study import StudyResult, best_rows

CAPTIONS = {
    "throughput_latency.png": "Throughput and time per output token against batch size.",
    "energy_per_token.png": "Energy per token against batch size: prefill (per input token) "
                            "and decode (per output token).",
    "carbon_per_1k_tokens.png": "Operational (solid) and embodied (hatched) carbon per 1,000 "
                                "output tokens, by region and GPU.",
    "embodied_share_vs_intensity.png": "Embodied share of total carbon against grid intensity; "
                                       "a dashed line marks the intensity where the two GPUs "
                                       "emit the same per token (only where their ranges "
                                       "separate them).",
    "carbon_by_hour.png": "The same load's carbon by hour of day with hourly grid intensity.",
}


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.to_dict("records"):
        cells = []
        for v in rec.values():
            if isinstance(v, float):
                text = f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
            else:
                text = str(v)
                if text in ("measured", "predicted", "mixed"):
                    text = f'<span class="tag {text}">{text}</span>'
                    cells.append(f"<td>{text}</td>")
                    continue
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _numbers(numbers: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, dict):
            return ", ".join(f"{k}: {fmt(x)}" for k, x in v.items())
        if isinstance(v, list):
            return "; ".join(fmt(x) for x in v)
        return str(v)

    return "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(fmt(v))}</td></tr>"
                   for k, v in numbers.items())


def key_table(res: StudyResult) -> pd.DataFrame:
    """Per model, GPU and region: the lowest-carbon batch meeting the TPOT target."""
    best = best_rows(res)
    perf = res.performance.set_index(["model", "gpu", "batch"])
    rows = []
    for rec in best.to_dict("records"):
        p = perf.loc[(rec["model"], rec["gpu"], rec["batch"])]
        rows.append({
            "model": rec["model"], "GPU": rec["gpu"], "region": rec["region"],
            "batch": int(rec["batch"]), "source": rec["source"],
            "tok/s": p["throughput_tok_s"], "TPOT ms": p["tpot_s"] * 1e3,
            "mJ/in tok": p["prefill_j_per_token"] * 1e3,
            "mJ/out tok": p["decode_j_per_token"] * 1e3,
            "op mg/1k": rec["operational_g_per_1k"] * 1e3,
            "emb mg/1k": rec["embodied_g_per_1k"] * 1e3,
            "total mg/1k": rec["total_g_per_1k"] * 1e3,
            "range mg/1k": f"{rec['total_g_per_1k_low'] * 1e3:.3g}–"
                           f"{rec['total_g_per_1k_high'] * 1e3:.3g}",
            "embodied %": rec["embodied_share"] * 100,
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    cfg = res.config
    order = {"model": cfg.models, "GPU": cfg.gpus, "region": [r.upper() for r in cfg.regions]}
    for col, cats in order.items():
        df[col] = pd.Categorical(df[col], categories=cats, ordered=True)
    df = df.sort_values(["model", "GPU", "region"]).reset_index(drop=True)
    for col in order:
        df[col] = df[col].astype(str)
    return df


def write_report(res: StudyResult, catalog: Catalog, figures: list[Path], out: Path) -> Path:
    """Write ``report.html``."""
    cfg = res.config
    study = res.to_json(catalog)
    pts = study["points"]
    findings_html = "".join(
        f"<li>{html.escape(f.sentence)}<details><summary>numbers</summary><table>"
        f"{_numbers(f.numbers)}</table></details></li>" for f in res.findings)
    figs_html = "".join(
        f"<figure>{img(p)}<figcaption>{html.escape(CAPTIONS.get(p.name, p.name))}"
        "</figcaption></figure>" for p in figures)
    mix = ", ".join(f"{i} in / {o} out tokens ({w:.0%})" for i, o, w in cfg.mix)
    src_rows = []
    for rid, r in study["sources"]["regions"].items():
        src_rows.append(f"<tr><td>{rid}</td><td>{r['intensity_g_per_kwh']:g} g/kWh "
                        f"({r['range'][0]:g}–{r['range'][1]:g}), {r['basis']}, {r['year']}; "
                        f"{html.escape(r['mix'])}</td><td>{html.escape(r['source'])}</td></tr>")
    for gid, g in study["sources"]["gpus"].items():
        e = g["embodied_g"]
        src_rows.append(
            f"<tr><td>{gid}</td><td>{cfg.scope} scope embodied {e['mid'] / 1e3:.3g} kg "
            f"({e['low'] / 1e3:.3g}–{e['high'] / 1e3:.3g})</td><td>"
            + html.escape("; ".join(f"{k}: {v}" for k, v in g["sources"].items()))
            + (" — " + html.escape("; ".join(g["notes"])) if g["notes"] else "")
            + "</td></tr>")
    calib = sorted({str(c) for c in res.performance.get("calibration", pd.Series(dtype=str))})
    head = html.escape(title(res))
    lead = "".join(f"<li>{html.escape(s)}</li>" for s in headline(res))
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{head} — tokenprint study</title><style>{CSS}</style></head><body>
<h1>{head}</h1>
<p class="sub">tokenprint {__version__}, after “Towards Sustainable Large Language Model
Serving” (Nguyen, Zhou, Ding, Liu, HotCarbon 2024) · {len(res.performance)} configurations
({pts['measured']} measured, {pts['predicted']} predicted, {pts['mixed']} mixed) · serving stack
{html.escape(cfg.stack)}</p>
<ul class="headline" id="headline">{lead}</ul>
<div class="scroll key">{_table(key_table(res))}</div>
<p class="sub">Each GPU at its lowest-carbon batch size meeting TPOT ≤
{cfg.tpot_target_s * 1e3:.0f} ms; mg CO2e per 1,000 output tokens; every number is in
<code>study.csv</code>.</p>
<h2>Findings ({len(res.findings)})</h2><ol class="findings" id="findings">{findings_html}</ol>
<h2>Figures</h2>{figs_html}
<h2>Method</h2>
<ul>
<li><b>Workload.</b> Models {', '.join(cfg.models)}; GPUs {', '.join(cfg.gpus)}; batch sizes
{', '.join(map(str, cfg.batches))}; length mix {mix}. Figures are request-weighted over the
mix. Memory: {html.escape(_memory_rule(res))}. Serving stack of the predictions:
<b>{html.escape(cfg.stack)}</b>.</li>
<li><b>Performance and energy.</b> Measured runs from a tokenprint results store where they exist
for that model, GPU, batch and lengths (<span class="tag measured">measured</span>); otherwise
tokenprint's calibrated roofline + power model (<span class="tag predicted">predicted</span>;
model version and calibration in <code>study.csv</code>). Ranges come from the model's held-out
errors (predicted) or p5–p95 over repetitions (measured).</li>
<li><b>Functional unit.</b> {study['inputs']['functional_unit']}. The total per 1,000 output
tokens is the Software Carbon Intensity (ISO/IEC 21031:2024; <code>sci_g_per_1k_tokens</code>
in <code>study.csv</code>, the <code>sci</code> block of <code>study.json</code>):
{html.escape(study['sci']['boundary'])}.</li>
<li><b>Operational carbon.</b> energy × PUE ({cfg.pue:g}) × annual grid intensity
(lifecycle basis); range from the low/high intensity across sources.</li>
<li><b>Embodied carbon</b> at <b>{cfg.scope}</b> scope, amortized linearly over a
{cfg.lifetime_years:g}-year lifetime and charged for provisioned time: the GPUs serve
<b>{cfg.utilization:.0%}</b> of it ({html.escape(study['inputs']['utilization_source'])}), so
embodied carbon per token is its busy-time share divided by {cfg.utilization:g}. The seed study
assumed 100 % (<code>embodied_share_at_full_utilization</code> in <code>study.csv</code>), a lower
bound. Two boundaries side by side: the seed's chip area and memory size (the packaged GPU and its
memory; <code>embodied_share_seed</code>) and the whole card plus the host's share
(<code>embodied_share_vendor</code>). Each part of a card is reconciled across every public
life-cycle assessment (NVIDIA's HGX H100 footprint, the ADEME/Hubblo teardown, ACT, LLMCarbon,
Boavizta, the Dell R740 LCA): the vendor's figure where one covers the card, else the median of
the boundary-matched sources, their envelope as range; hosts from manufacturers' server
footprints.
</li>
<li><b>Findings</b> are computed from these numbers; none is written in advance. Each lists the
numbers behind it. A comparison is worded as a difference only when the two ranges do not
overlap (<code>separable</code> in <code>study.json</code>); otherwise it says the two are
indistinguishable within the model's uncertainty.</li>
<li><b>Calibration used:</b> {html.escape('; '.join(calib) or 'measured data only')}.</li>
</ul>
<h2>Sources</h2><div class="scroll"><table><thead><tr><th>item</th><th>value</th>
<th>source</th></tr></thead><tbody>{''.join(src_rows)}</tbody></table></div>
<p class="sub">Files: <code>study.csv</code> (every number), <code>study.json</code> (inputs,
sources, findings), <code>figures/*.png</code>.</p>
</body></html>"""
    path = out / "report.html"
    write_text_atomic(path, page)
    return path


def _memory_rule(res: StudyResult) -> str:
    """How the study decided which batches fit: the rule said once, then each model and GPU's
    own limits (every one of them; none left out)."""
    perf = res.performance.drop_duplicates(["model", "gpu"])
    parsed = []
    for rec in perf.to_dict("records"):
        kind, _, rest = str(rec["memory_rule"]).partition(": ")
        text, _, limits = rest.partition(" (")
        parsed.append((kind, text, limits.rstrip(")"), rest, f"{rec['model']} on {rec['gpu']}"))
    if not parsed:
        return "—"
    kinds = {(k, t) for k, t, *_ in parsed}
    if len(kinds) == 1 and all(lim for _, _, lim, _, _ in parsed):
        kind, text = next(iter(kinds))
        return (f"{kind}, {text}; the largest batch of each length class — "
                + "; ".join(f"{who}: {lim}" for _, _, lim, _, who in parsed))
    return "; ".join(f"{who}: {kind}, {rest}" for kind, _, _, rest, who in parsed)
