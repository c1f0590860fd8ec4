"""List the mutants that survived the last ``scripts/mutation_check.sh`` run, grouped by kind.

Usage: python scripts/mutation_survivors.py [--out docs/mutation.md]

Two kinds are equivalent by construction and are counted apart: a dtype left to numpy where the
input is already float64 or becomes float in the next operation (``np.asarray(x, dtype=None)``),
and ``zip(..., strict=...)`` changed on lists built to the same length. Everything else is listed
with its diff line, as work for the next round of hand-derived tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = [
    ("dtype left to numpy (inputs are float64 already or become float at once): equivalent",
     re.compile(r"dtype=None|np\.asarray\([^()]*, \)|astype\(None\)|np\.(empty|zeros|arange)"
                r"\([^()]*, \)")),
    ("zip strictness on lists of equal length: equivalent",
     re.compile(r"strict=(None|False)\)|, \)\]\),|zip\([^()]*, \)")),
    ("text of a source, note, message or key not pinned by a test",
     re.compile(r"XX|\"[A-Z_ ]{3,}\"|'[A-Z_ ]{3,}'|\(None\)$")),
]


def survivors() -> list[tuple[str, str]]:
    out = subprocess.run(["mutmut", "results"], capture_output=True, text=True, cwd=ROOT).stdout
    names = [ln.split(":")[0].strip() for ln in out.splitlines() if ln.endswith("survived")]
    rows = []
    for name in names:
        diff = subprocess.run(["mutmut", "show", name], capture_output=True, text=True,
                              cwd=ROOT).stdout
        plus = [ln[2:].strip() for ln in diff.splitlines() if ln.startswith("+ ")]
        rows.append((name, plus[0] if plus else "(removed a line)"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "mutation.md")
    a = ap.parse_args()
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    killed = stats["killed"] + stats.get("timeout", 0)
    judged = killed + stats["survived"] + stats.get("no_tests", 0)
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, line in survivors():
        kind = next((k for k, rx in KINDS if rx.search(line)), "other: to kill or to argue")
        groups[kind].append((name, line))
    equivalent = sum(len(v) for k, v in groups.items() if k.endswith("equivalent"))
    lines = [
        "# Mutation testing: what survives\n\n",
        f"Run of {dt.date.today().isoformat()} (`bash scripts/mutation_check.sh`): "
        f"{stats['total']:,} mutants of `carbon/`, `predict/model.py`, `predict/shapes.py`, "
        f"`simulate/`, `gateway/accounting.py` and `gateway/routing.py`; **{killed:,} killed "
        f"({killed / judged:.1%})**, {stats['survived']} survived, of which {equivalent} are "
        f"equivalent by construction ({killed / (judged - equivalent):.1%} of the "
        "non-equivalent ones killed).\n\n",
        "Tests used: the fast hand-derived unit tests listed in `pyproject.toml` "
        "`[tool.mutmut]`.\n",
    ]
    for kind in sorted(groups, key=lambda k: (not k.endswith("equivalent"), k)):
        rows = groups[kind]
        lines.append(f"\n## {kind} ({len(rows)})\n\n")
        if kind.endswith("equivalent"):
            by_fn: dict[str, int] = defaultdict(int)
            for name, _ in rows:
                by_fn[name.split("__mutmut_")[0]] += 1
            lines += [f"- `{fn}`: {n}\n" for fn, n in sorted(by_fn.items())]
            continue
        lines.append("\n| mutant | mutated line |\n|---|---|\n")
        lines += [f"| `{name.split('.', 1)[1]}` | `{line.replace('|', '/')[:110]}` |\n"
                  for name, line in rows]
    a.out.write_text("".join(lines))
    print(f"{stats['survived']} survivors, {equivalent} equivalent by construction: {a.out}")


if __name__ == "__main__":
    main()
