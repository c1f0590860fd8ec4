#!/usr/bin/env bash
# Mutation testing of the scope issue #24 widens to: report/, plan/, fleet/, predict/step.py,
# predict/params.py, measure/estimate.py, gateway/proxy.py (and the modules the redesign added:
# carbon/charge.py, predict/serving.py). Runs in a throwaway clone so pyproject's own scope (the
# one scripts/mutation_check.sh measures) stays as it is. Prints the share of mutants killed, per
# module and in all (scripts/mutation_scope.py).
#
# Each mutant runs the tests that reach its function, from this selection: pyproject's
# hand-derived tests, the by-hand tests of the widened modules, and the fleet and gateway tests
# that run in-process (servers in threads; those that start vLLM, Prometheus, Chromium or several
# processes are left out: seconds each).
#   phase 1: every mutant of plan/, fleet/, report/findings, headline, config, plan_figure, and
#            the predict, measure and carbon modules (about 25 minutes on 2 cores);
#   phase 2: gateway/proxy.py (its tests start servers: ~8 s a mutant) and report/study.py,
#            figures.py, html.py (only an end-to-end study reaches them, so tests/test_study.py
#            joins the selection). All of them take hours on 2 cores, so SAMPLE=n (default 150)
#            runs a random sample (seed SEED, default 0) of n mutants of each, printed with its
#            95 % interval; SAMPLE=0 runs them all; PHASES=1 skips phase 2, PHASES=only2 phase 1.
# Usage: [MAX_CHILDREN=2] [PHASES=1|2|only2] [SAMPLE=150] [SEED=0]
#        bash scripts/mutation_widened.sh [KEEP_DIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-}"
if [ -z "$work" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
# setup DIR MODULES [EXTRA_TESTS]: a clone in DIR whose [tool.mutmut] mutates MODULES
setup() {
    rm -rf "$1"
    git clone -q "$repo" "$1"
    cp "$repo"/tests/*.py "$1/tests/"        # the working tree's tests, committed or not
    cp "$repo"/scripts/mutation_scope.py "$1/scripts/"
    (cd "$1" && python scripts/mutation_scope.py configure "$2" "${3:-}")
}
python -m pip install -q "mutmut>=3.3" >/dev/null 2>&1
kids="${MAX_CHILDREN:-2}"
dirs=()
if [ "${PHASES:-2}" != "only2" ]; then
    setup "$work/repo" "carbon/charge.py predict/serving.py predict/step.py predict/params.py
        measure/estimate.py plan/* report/findings.py report/headline.py report/config.py
        report/plan_figure.py fleet/*"
    (cd "$work/repo" && mutmut run --max-children "$kids" >/dev/null 2>&1) || true
    dirs+=("$work/repo")
fi
if [ "${PHASES:-2}" != "1" ]; then
    setup "$work/repo2" "gateway/proxy.py report/study.py report/figures.py report/html.py" study
    cd "$work/repo2"
    # generate the mutants (a pattern that matches none), then run the sample
    mutmut run --max-children "$kids" "tokenprint.nothing.*" >/dev/null 2>&1 || true
    python scripts/mutation_scope.py sample "${SAMPLE:-150}" gateway.proxy report.study \
        report.figures report.html > "$work/phase2.txt"
    xargs -a "$work/phase2.txt" mutmut run --max-children "$kids" >"$work/phase2.log" 2>&1 \
        || echo "phase 2 stopped early: see $work/phase2.log"
    dirs+=("$work/repo2")
fi
python "$repo/scripts/mutation_scope.py" summary "${dirs[@]}"
