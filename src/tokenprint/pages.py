"""What the HTML pages share (the study's ``report.html`` and the fleet's ``fleet.html``): one
style that reads on a laptop and on a phone, figures embedded so a page travels as one file,
and numbers written for people (units, no ``NaN``, no ``7.209e+04``, readable times)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1120px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.5}
h1{margin-bottom:.2em}.sub{color:#666;margin-top:0}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
ol.findings li{margin:.5em 0}
details{margin:.2em 0 .6em 0;color:#444;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border-bottom:1px solid #e4e4e4;padding:.25em .6em;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
.tag{display:inline-block;padding:0 .4em;border-radius:3px;font-size:.8em}
.measured{background:#d8f0dc}.predicted{background:#e8eefc}.mixed{background:#fbf0d0}
code{background:#f4f4f4;padding:0 .2em}
ul.headline{font-size:1.1em;padding-left:1.2em}ul.headline li{margin:.4em 0}
.scroll{overflow-x:auto;max-width:100%}.key td,.key th{white-space:nowrap}
@media (max-width:600px){body{margin:1em auto}table{font-size:.75em}h1{font-size:1.5em}}
"""

# shows every <time> in the reader's own time zone (the UTC text stays where scripts are off)
LOCAL_TIMES = ("<script>document.querySelectorAll('time[datetime]').forEach(function(t){"
               "var d=new Date(t.getAttribute('datetime'));if(!isNaN(d)){t.title=t.textContent;"
               "t.textContent=d.toLocaleString();}});</script>")


def img(path: Path) -> str:
    """An ``<img>`` carrying the PNG itself (the page needs no other file)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def grams(g: float | None) -> str:
    """``412 mg``, ``3.1 g``, ``72.1 kg``, ``1.2 t``; ``—`` where there is no figure."""
    if g is None or not math.isfinite(g):
        return "—"
    a = abs(g)
    if a >= 1e6:
        return f"{g / 1e6:.3g} t"
    if a >= 1e3:
        return f"{g / 1e3:.3g} kg"
    if a >= 1 or a == 0:
        return f"{g:.3g} g"
    return f"{g * 1e3:.3g} mg"


def number(v: float | None, unit: str = "") -> str:
    """A plain number with thousands separators (never ``e+04``), ``—`` for none."""
    if v is None or not math.isfinite(v):
        return "—"
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{text} {unit}".strip()


def time_tag(iso_utc: str, text: str) -> str:
    """A time shown as ``text`` (UTC) and, in a browser, in the reader's own zone."""
    return f'<time datetime="{html.escape(iso_utc)}">{html.escape(text)}</time>'
