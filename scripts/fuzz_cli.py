"""Fuzz every CLI command with hostile option values (tests/cli_fuzz.py) and print the figures.

Usage: python scripts/fuzz_cli.py [--cases 1200] [--seed 7]
Prints cases, exit codes, tracebacks and runaways (a case over 60 s), and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import cli_fuzz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenprint-fuzz-") as tmp:
        out = cli_fuzz.run(args.cases, Path(tmp), seed=args.seed)
    print(f"{out.cases} cases over {len(cli_fuzz.commands()) - len(cli_fuzz.SKIP)} commands in "
          f"{out.seconds:.0f} s; exit codes {dict(sorted(out.by_exit.items()))}; "
          f"{len(out.tracebacks)} tracebacks, {len(out.runaways)} runaways")
    for t in out.tracebacks + out.runaways:
        print("  ", t)
    print(json.dumps({"cases": out.cases, "by_exit": out.by_exit, "tracebacks": len(out.tracebacks),
                      "runaways": len(out.runaways), "seconds": round(out.seconds, 1)}))
    sys.exit(1 if out.tracebacks or out.runaways else 0)


if __name__ == "__main__":
    main()
