"""The sources of a card's embodied carbon side by side (``catalog show gpu ID --embodied``,
``carbon --explain``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tokenprint.carbon.bom import RULE, CardBom


def _kg(grams: float) -> str:
    return f"{grams / 1e3:.3g}" if grams < 1e5 else f"{grams / 1e3:.0f}"


def print_bom(bom: CardBom, console: Console) -> None:
    """One table of every witness per part, the value the rule took, and the sources' totals."""
    table = Table(title=f"embodied carbon of one {bom.gpu} card, by source (kg CO2e)",
                  caption="✓ used by the rule · – outside the part's boundary (shown, not used)")
    table.add_column("part", style="bold", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("kg", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("how")
    for part, v in bom.parts.items():
        for w in v.witnesses:
            table.add_row(part, w.source_id, _kg(w.value_g), "✓" if w.matched else "–", w.basis)
        table.add_row(part, "→ central", _kg(v.central_g), "",
                      f"{v.rule}; range {_kg(v.low_g)}–{_kg(v.high_g)}", style="bold green",
                      end_section=True)
    console.print(table)
    totals = bom.source_totals_g()
    card = bom.total()
    console.print("card totals by source (each source's parts, the central value for the parts "
                  "it does not give):")
    for sid, grams in sorted(totals.items(), key=lambda kv: kv[1]):
        console.print(f"  {sid:<20} {_kg(grams):>7} kg")
    console.print(f"  {'central':<20} {_kg(card.mid):>7} kg   range {_kg(card.low)}–"
                  f"{_kg(card.high)} kg", style="bold")
    for key, w in bom.outside_g.items():
        console.print(f"outside the cradle-to-gate boundary: {key.replace('_', ' ')} "
                      f"{_kg(w.value_g)} kg ({w.source_id}, {w.basis})", style="dim")
    console.print(f"rule: {RULE}", style="dim")
