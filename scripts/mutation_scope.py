"""Helpers of ``scripts/mutation_widened.sh``, run in a throwaway clone:

``configure MODULES [EXTRA_TESTS]`` rewrites the clone's ``[tool.mutmut]`` to mutate MODULES
(paths under ``src/tokenprint/``) with the widened test selection (plus ``tests/test_X.py`` for
each X in EXTRA_TESTS); ``sample N MODULE...`` prints a random sample (seed ``$SEED``, 0 by
default) of N mutant names of each module (all of them with N = 0) for ``mutmut run``;
``summary DIR...`` prints the share of mutants killed per module and in all over the clones'
``mutmut results``. A module only part of whose mutants ran (a sample) is given with its 95 %
(Wilson) interval, apart from the exact figure.
"""

from __future__ import annotations

import collections
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

# the tests each mutant may run: pyproject's own, the by-hand tests of the widened modules, and
# the fleet and gateway tests that run in-process
TESTS = ["charge", "measure", "params_by_hand", "shift_by_hand", "plan_figure", "plan_answer",
         "planner_by_hand", "findings_by_hand", "study_headline_by_hand", "fleet_by_hand",
         "fleet_output_by_hand", "watch_by_hand", "exposition_by_hand", "report_html_by_hand",
         "proxy_by_hand", "study_by_hand", "study_figures_by_hand",
         "fleet", "fleet_page",
         "fleet_hostile", "watch_ledger", "gateway", "gateway_hostile", "gateway_slow_clients",
         "organisation_accounts", "scope2_live", "disagreeing_inputs"]
# tests that start vLLM, Prometheus, Chromium, PostgreSQL or several processes: seconds each
SLOW = ["test_gateway.py::test_gateway_over_vllm_upstream",
        "test_gateway.py::test_prometheus_over_real_vllm_and_a_watcher",
        "test_gateway.py::test_two_worker_processes_share_one_ledger_and_metrics",
        "test_gateway.py::test_watch_and_gateway_agree_over_real_vllm",
        "test_gateway.py::test_dashboard_charts_in_chromium",
        "test_gateway.py::test_carbon_routing_prefers_clean_grid",
        "test_gateway_hostile.py::test_a_stream_longer_than_the_shutdown_grace_is_a_503_row_"
        "without_traceback",
        "test_fleet.py::test_fleet_report_from_a_real_prometheus",
        "test_fleet.py::test_hf_server_metrics_are_what_watch_reads",
        "test_study.py::test_report_renders_in_chromium",
        "test_watch_ledger.py::test_fleet_report_sums_the_watch_ledger_per_team[postgresql]"]
KEEP = ("tests/test_simulate.py::test_plan_headline_keeps_the_capacities_and_breaks_near_"
        "ties")


def configure(modules: list[str], extra: list[str]) -> None:
    """Point ``pyproject.toml``'s ``[tool.mutmut]`` at ``modules`` with the widened tests."""
    p = Path("pyproject.toml")
    s = p.read_text()
    s = re.sub(r"only_mutate = \[[^\]]*\]", "only_mutate = [\n" + "".join(
        f'    "src/tokenprint/{m}",\n' for m in modules) + "]", s, count=1)
    s = s.replace('source_paths = ["src/"]', 'source_paths = ["src/"]\nalso_copy = ["grafana", '
                  '"README.md", "docs", "scripts", "benchmarks", "CHANGELOG.md", "pyproject.toml"]')
    sel = re.search(r"pytest_add_cli_args_test_selection = \[[^\]]*\]", s)
    assert sel, "pyproject.toml has no pytest_add_cli_args_test_selection"
    have = sel.group(0)
    more = "".join(f'    "tests/test_{t}.py",\n' for t in TESTS + extra
                   if f'"tests/test_{t}.py"' not in have)
    s = s.replace(have, have[:-1] + more + "]")
    s = s.replace(f'"{KEEP}"', f'"{KEEP}"' + "".join(
        f',\n                       "--deselect", "tests/{t}"' for t in SLOW))
    p.write_text(s)


def _results(where: str = ".") -> list[tuple[str, str]]:
    out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True,
                         text=True, check=True, cwd=where).stdout
    return [tuple(line.strip().rsplit(": ", 1)) for line in out.splitlines()  # type: ignore[misc]
            if ": " in line]


def sample(n: int, modules: list[str]) -> list[str]:
    """``n`` mutant names of each module (all where n is 0), drawn with seed ``$SEED`` (0): a
    new seed judges tests written against an earlier sample's survivors on mutants they were
    not written for."""
    names = [name for name, _ in _results()]
    seed = int(os.environ.get("SEED", "0"))
    picked: list[str] = []
    for mod in modules:
        mine = sorted(m for m in names if m.startswith(f"tokenprint.{mod}.x"))
        picked += random.Random(seed).sample(mine, min(n, len(mine))) if n else mine
    return picked


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % interval of a share k / n."""
    p, z = k / n, 1.96
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mid - half, mid + half


def summary(dirs: list[str]) -> None:
    """Print the table over the clones in ``dirs``."""
    by: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for name, status in (r for d in dirs for r in _results(d)):
        by[name.split(".x")[0].removeprefix("tokenprint.")][status] += 1
    exact_k = exact_n = 0
    est_k = est_n = 0.0
    for mod, c in sorted(by.items()):
        killed = c["killed"] + c["timeout"]
        judged = killed + c["survived"] + c["no tests"]
        total = judged + c["not checked"]
        if not judged:
            print(f"{mod:24s} not run ({total} mutants)")
        elif c["not checked"]:
            lo, hi = wilson(killed, judged)
            print(f"{mod:24s} sample of {judged} of {total}: {killed} killed "
                  f"({killed / judged:.1%}, 95 % interval {lo:.0%}-{hi:.0%})")
            est_k, est_n = est_k + total * killed / judged, est_n + total
        else:
            print(f"{mod:24s} {killed:5d} of {judged:5d} killed ({killed / judged:.1%}); "
                  f"{c['survived']} survived, {c['no tests']} with no test")
            exact_k, exact_n = exact_k + killed, exact_n + judged
    print(f"every mutant run: {exact_k} of {exact_n} killed "
          f"({exact_k / max(exact_n, 1):.1%}; target >= 90 %)")
    if est_n:
        both = (exact_k + est_k) / (exact_n + est_n)
        print(f"with the sampled modules weighted by their size: {both:.1%} of "
              f"{exact_n + est_n:.0f} mutants (an estimate)")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "configure":
        configure(args[0].split(), args[1].split() if len(args) > 1 else [])
    elif cmd == "sample":
        print("\n".join(sample(int(args[0]), args[1:])))
    else:
        summary(args or ["."])
