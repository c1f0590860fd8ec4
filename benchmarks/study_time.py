"""Wall time of the default ``tokenprint study`` (target: under 30 s on a 2-core laptop)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "tokenprint", "study", "--out", out],
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr)
        raise SystemExit(proc.returncode)
    print(f"tokenprint study (defaults, new process, figures and report): {wall:.1f} s "
          "(target < 30 s)")


if __name__ == "__main__":
    main()
