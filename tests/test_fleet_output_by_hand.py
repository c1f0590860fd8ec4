"""The fleet report's files, read back: the JSON and CSV hold the table, the headline's three
sentences come from the numbers, the page lists what the tables hold, the figure draws them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokenprint.fleet import output
from tokenprint.fleet.report import summary
from tokenprint.units import J_PER_KWH

T0 = pd.Timestamp("2026-11-30T10:00:00Z")


def _table() -> pd.DataFrame:
    """Two deployments over three hourly steps; b's last step had no samples."""
    rows = []
    for dep, op, tokens, method, team in (("a", 30.0, 2000.0, "dcgm", "search"),
                                          ("b", 6.0, 500.0, "predicted", None)):
        for h in range(3):
            gap = dep == "b" and h == 2
            rows.append({"deployment": dep, "team": team, "project": None,
                         "model": "llama-3.1-8b", "gpu": "l4", "gpus": 2, "region": "FR",
                         "end_utc": T0 + pd.Timedelta(hours=h),
                         "generation_tokens": np.nan if gap else tokens,
                         "energy_j": np.nan if gap else 0.75 * J_PER_KWH,
                         "energy_method": method, "operational_g": np.nan if gap else op,
                         "embodied_g": 4.0, "total_g": np.nan if gap else op + 4.0,
                         "status": "no data" if gap else "ok"})
    return pd.DataFrame(rows)


def test_headline_from_the_numbers():
    t = _table()
    lines = output.headline(t, summary(t))
    # a: 3 × 30 + 3 × 4 = 102 g; b: 2 × 6 + 3 × 4 = 24 g; 7,000 tokens
    assert lines == [
        "126 g CO2e over the window (102 g operational + 24 g embodied) for 7,000 output tokens, "
        "18 g per 1,000 (the SCI, ISO/IEC 21031).",
        "The largest is a (llama-3.1-8b on 2 × l4 in FR): 102 g, 81% of the total.",
        "Energy is measured (DCGM or Kepler) in 3 of 6 deployment-steps and predicted from "
        "tokens in the rest; 1 step had no samples and is counted, not filled with zeros."]
    one = t[t["deployment"] == "a"]
    lines = output.headline(one, summary(one))
    assert lines == [
        "102 g CO2e over the window (90 g operational + 12 g embodied) for 6,000 output tokens, "
        "17 g per 1,000 (the SCI, ISO/IEC 21031).",
        "Energy is measured (DCGM or Kepler) in 3 of 3 deployment-steps and predicted from "
        "tokens in the rest; 0 steps had no samples and are counted, not filled with zeros."]
    idle = one.assign(generation_tokens=0.0, energy_method="kepler")
    assert output.headline(idle, summary(idle))[0] == (
        "102 g CO2e over the window (90 g operational + 12 g embodied) for 0 output tokens.")
    assert "in 3 of 3 deployment-steps" in output.headline(idle, summary(idle))[1]
    assert output.headline(t.iloc[:0], summary(t).iloc[:0]) == ["No deployment in the window."]


def test_files_hold_the_table_and_the_page_lists_it(tmp_path: Path, monkeypatch):
    import matplotlib.pyplot as plt

    t = _table()
    totals = summary(t)
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    paths = output.write_outputs(t, totals, tmp_path / "a" / "out", "Fleet <test>")
    assert [p.name for p in paths] == ["fleet.csv", "fleet.json", "fleet.png", "fleet.html"]
    doc = json.loads(paths[1].read_text())
    assert doc["title"] == "Fleet <test>" and len(doc["steps"]) == 6
    assert [r["deployment"] for r in doc["totals"]] == ["a", "b"]
    assert doc["steps"][0]["end_utc"] == "2026-11-30 10:00:00+00:00"
    back = pd.read_csv(paths[0])
    assert list(back.columns) == list(t.columns)
    assert back["total_g"].tolist()[:3] == [34.0, 34.0, 34.0] and len(back) == 6
    page = paths[3].read_text()
    assert "<title>Fleet &lt;test&gt;</title>" in page and "<h1>Fleet &lt;test&gt;</h1>" in page
    assert "2026-11-30 10:00 – 2026-11-30 12:00 UTC, 3 steps · 2 deployments" in page
    assert ("<tr><td>a</td><td>search</td><td>llama-3.1-8b</td><td>2 × l4</td><td>FR</td>"
            "<td>6,000</td><td>2.25 kWh</td><td>90 g</td><td>12 g</td><td>102 g</td>"
            "<td>17</td><td>3 (0)</td></tr>") in page
    assert ("<tr><td>b</td><td>—</td><td>llama-3.1-8b</td><td>2 × l4</td><td>FR</td>"
            "<td>1,000</td><td>1.5 kWh</td><td>12 g</td><td>12 g</td><td>24 g</td>"
            "<td>24</td><td>3 (1)</td></tr>") in page
    assert ('<td><time datetime="2026-11-30T12:00:00+00:00">2026-11-30 12:00:00 UTC</time></td>'
            "<td>b</td><td>—</td><td>—</td><td>predicted</td><td>—</td><td>4 g</td><td>—</td>"
            "<td>no data</td></tr>") in page
    assert "<td>750 Wh</td>" in page and "<h2>Steps</h2>" in page
    assert ("<td>750 Wh</td><td>dcgm</td><td>30 g</td><td>4 g</td><td>34 g</td><td>ok</td></tr>"
            in page)
    assert page.startswith("<!doctype html><html lang='en'><head><meta charset='utf-8'><meta "
                           "name='viewport' content='width=device-width, initial-scale=1'>"
                           "<title>") and page.endswith("</body></html>")
    assert ("<figcaption>Carbon per step of the largest deployments, and each one's total "
            "split into operational and embodied.</figcaption></figure><h2>Totals</h2><div "
            "class='scroll key'><table><thead><tr><th>deployment</th><th>team</th><th>model"
            "</th><th>GPUs</th><th>region</th><th>output tokens</th><th>energy</th><th>"
            "operational</th><th>embodied</th><th>total</th><th>g/1k tokens</th><th>steps "
            "(no data)</th></tr></thead><tbody><tr><td>a</td>") in page
    assert ("</tr></tbody></table></div><p class='sub'>Energy is measured where a DCGM or "
            "Kepler counter is named, else predicted from the tokens; steps without samples are "
            "counted, never zero-filled. Embodied carbon is charged for the provisioned GPUs in "
            "every step. SCI = ") in page
    assert ("<h2>Steps</h2><div class='scroll key'><table><thead><tr><th>step end</th><th>"
            "deployment</th><th>output tokens</th><th>energy</th><th>method</th><th>operational"
            "</th><th>embodied</th><th>total</th><th>status</th></tr></thead><tbody><tr><td>"
            "<time") in page
    assert "</td></tr><tr><td><time" in page and "</tr></tbody></table></div><script" in page
    assert page.count("<li>") == 3 and 'src="data:image/png;base64,' in page
    # the figure: one line per deployment with dots, the window padded by a step each side,
    # and the totals stacked operational under embodied
    (fig,) = figs
    assert list(fig.get_size_inches()) == [11.0, 4.8]
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
    a1, a2 = fig.axes
    leg = a1.get_legend()
    assert (leg._ncols, leg.get_frame_on(), leg.get_texts()[0].get_fontsize()) == (3, False, 8)
    assert leg._loc == 9 and tuple(leg.get_bbox_to_anchor().transformed(
        a1.transAxes.inverted()).bounds[:2]) == pytest.approx((0.5, -0.22))
    leg2 = a2.get_legend()
    assert [x.get_text() for x in leg2.get_texts()] == ["operational", "embodied"]
    assert leg2._loc == 1 and not leg2.get_frame_on()
    assert a2.get_ylabel() == "g CO2e"
    tick = a2.get_xticklabels()[0]
    assert (tick.get_rotation(), tick.get_fontsize(), tick.get_horizontalalignment()) == (
        30.0, 8.0, "right")
    assert [ln.get_label() for ln in a1.lines] == ["a", "b"]
    assert a1.lines[0].get_marker() == "." and list(a1.lines[0].get_ydata()) == [34.0] * 3
    lo, hi = a1.get_xlim()
    assert hi - lo == pytest.approx(4 / 24)                  # 2 h of steps + 1 h each side
    assert a1.get_title() == "Carbon per step (operational + embodied)"
    assert a1.get_ylabel() == "g CO2e" and a1.get_xlabel() == "step end (UTC)"
    ops, embs = a2.containers
    assert [b.get_height() for b in ops] == [90.0, 12.0]
    assert [b.get_height() for b in embs] == [12.0, 12.0]
    assert [b.get_y() for b in embs] == [90.0, 12.0]
    assert a2.get_title() == "Total over the window"
    assert [x.get_text() for x in a2.get_xticklabels()] == ["a", "b"]


def test_a_long_report_is_capped_on_the_page(tmp_path: Path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(output, "MAX_HTML_ROWS", 5)
    monkeypatch.setattr(output, "TOP", 1)
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    t = _table()
    page = output.write_outputs(t, summary(t), tmp_path, "F")[3].read_text()
    assert "<p>6 steps: see fleet.csv (the page lists up to 5).</p>" in page
    assert "<h2>Steps</h2>" not in page
    a1, a2 = figs[0].axes
    assert a1.get_title() == "Carbon per step (operational + embodied), the 1 largest of 2"
    assert a2.get_title() == "Total over the window (the 1 largest)"
    assert [ln.get_label() for ln in a1.lines] == ["a"]
    assert output._kwh(None) == "—" and output._kwh(float("nan")) == "—"
    monkeypatch.setattr(output, "MAX_HTML_ROWS", 6)                # exactly at the cap: listed
    assert "<h2>Steps</h2>" in output.write_outputs(t, summary(t), tmp_path, "F")[3].read_text()
    empty = output.write_outputs(t.iloc[:0], summary(t).iloc[:0], tmp_path / "e", "F")
    assert "no steps · 0 deployments" in empty[3].read_text()
    (blank,) = figs[-1].axes                    # an empty window's figure says so, no axes
    assert not blank.axison and [t.get_text() for t in blank.texts] == [
        "No deployment in the window."]
