"""README's quoted study figures equal what the tool prints today: a test fails when a change
moves a number and README keeps the old one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    from tokenprint.cli.main import main

    out = tmp_path_factory.mktemp("readme-study")
    with pytest.raises(SystemExit) as exc:
        main(["study", "--out", str(out), "--json"])
    assert exc.value.code in (0, None)
    return json.loads((out / "study.json").read_text())


def _readme() -> str:
    return re.sub(r"\s+", " ", README.read_text())


def _finding(study: dict, kind: str, model: str) -> dict:
    return next(f["numbers"] for f in study["findings"]
                if f["kind"] == kind and f["numbers"].get("model") == model)


def test_gpu_choice_figures(study):
    one = _finding(study, "gpu_choice", "llama-3.2-1b")
    qc = next(r for r in one["regions"] if r["region"] == "CA-QC")
    w = {qc["winner"]: qc["winner_range_g_per_1k"], qc["loser"]: qc["loser_range_g_per_1k"]}
    t4, ada = w["t4"], w["rtx-6000-ada"]
    quoted = (f"1B in CA-QC: T4 {t4[0] * 1e3:.3g}–{t4[1] * 1e3:.3g} vs RTX 6000 Ada "
              f"{ada[0] * 1e3:.3g}–{ada[1] * 1e3:.3g} mg per 1k tokens")
    assert quoted in _readme(), quoted
    assert not qc["separable"]
    seven = _finding(study, "gpu_choice", "llama-2-7b")
    cuts = [r["saving_pct"] for r in seven["regions"]]
    assert all(r["separable"] and r["winner"] == "rtx-6000-ada" for r in seven["regions"])
    quoted = f"({min(cuts):.0f}–{max(cuts):.0f} % less, ranges apart)"
    assert quoted in _readme(), quoted


def test_crossover_figures(study):
    c = _finding(study, "crossover", "llama-2-7b")
    assert c["crossover_g_per_kwh"] is None            # the lines never cross
    quoted = (f"T4 {c['old_embodied_g_per_1k'] * 1e3:.3g} mg vs RTX 6000 Ada "
              f"{c['new_embodied_g_per_1k'] * 1e3:.3g} mg embodied per 1k tokens")
    assert quoted in _readme(), quoted


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_contents_lists_every_section_and_every_link_lands():
    text = README.read_text()
    heads = [h for h in re.findall(r"^#{2,3} (.+)$", text, re.M) if h != "Contents"]
    toc = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\(#([^)]+)\)", toc)
    assert links == [_slug(h) for h in heads]
