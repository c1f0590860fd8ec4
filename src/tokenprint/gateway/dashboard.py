"""The live dashboard: last hour's requests, tokens, energy and carbon per upstream."""

from __future__ import annotations

import time
from typing import Any

from tokenprint.gateway.ledger import Ledger
from tokenprint.units import S_PER_HOUR


def dashboard_data(ledger: Ledger, upstreams: list[str], window_s: float = S_PER_HOUR,
                   bin_s: float = 60.0) -> dict[str, Any]:
    """Per-upstream series in one-minute bins over the last hour (blocking: call it in a
    thread from the event loop)."""
    now = time.time()
    t0 = now - window_s
    n_bins = int(window_s // bin_s)
    series = {u: {k: [0.0] * n_bins for k in ("requests", "tokens", "energy_j", "carbon_g")}
              for u in upstreams}
    for upstream, b, requests, tokens, energy_j, carbon_g in ledger.binned(t0, bin_s):
        s = series.get(upstream)
        if s is None:
            continue
        i = min(max(int(b), 0), n_bins - 1)
        s["requests"][i] += requests
        s["tokens"][i] += tokens
        s["energy_j"][i] += energy_j
        s["carbon_g"][i] += carbon_g
    totals = {u: {k: sum(v) for k, v in s.items()} for u, s in series.items()}
    return {"now": now, "bin_s": bin_s, "series": series, "totals": totals}


DASHBOARD_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>tokenprint gateway</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}.up{margin:1em 0;padding:.5em 1em;border:1px solid #ddd;border-radius:6px}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{width:260px}
.chart h3{font-size:.85em;margin:.2em 0;color:#444}.chart svg{width:260px;height:70px;
background:#fafafa;border-bottom:1px solid #ccc}.total{font-size:.8em;color:#666}
</style></head><body>
<h1>tokenprint gateway — last hour</h1>
<p id="status">loading…</p><div id="ups"></div>
<script>
const KINDS=[["requests","requests / min",""],["tokens","tokens / min",""],
["energy_j","energy / min","J"],["carbon_g","carbon / min","g CO2e"]];
function bars(values,colour){
  const max=Math.max(...values,1e-12), w=260/values.length;
  return values.map((v,i)=>{const h=66*v/max;
    return `<rect class="bar" x="${(i*w).toFixed(2)}" y="${(70-h).toFixed(2)}" `+
           `width="${Math.max(w-1,1).toFixed(2)}" height="${h.toFixed(2)}" fill="${colour}"/>`;
  }).join("");
}
async function refresh(){
  try{
    const r=await fetch("/dashboard/data"); const d=await r.json();
    const root=document.getElementById("ups"); let html="";
    for(const [name,s] of Object.entries(d.series)){
      html+=`<div class="up" data-upstream="${name}"><b>${name}</b><div class="charts">`;
      KINDS.forEach(([k,label,unit],j)=>{
        const colour=["#1b6ca8","#2a9d55","#e07b00","#b8336a"][j];
        html+=`<div class="chart" data-kind="${k}"><h3>${label}</h3>`+
          `<svg viewBox="0 0 260 70" preserveAspectRatio="none">${bars(s[k],colour)}</svg>`+
          `<div class="total">last hour: ${d.totals[name][k].toPrecision(4)} ${unit}</div></div>`;
      });
      html+="</div></div>";
    }
    root.innerHTML=html;
    document.getElementById("status").textContent=
      "updated "+new Date(d.now*1000).toLocaleTimeString()+" · refreshes every 5 s";
  }catch(e){document.getElementById("status").textContent="cannot load data: "+e;}
}
refresh(); setInterval(refresh,5000);
</script></body></html>"""
