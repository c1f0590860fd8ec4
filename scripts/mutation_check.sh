#!/usr/bin/env bash
# Mutation testing of the formulas every number rests on (carbon/, predict/model.py,
# predict/shapes.py, simulate/, gateway/accounting.py, gateway/routing.py; pyproject [tool.mutmut]).
# Prints the share of mutants the test suite kills. Long (tens of minutes on 2 cores): not in CI.
# Usage: [MAX_CHILDREN=2] bash scripts/mutation_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "mutmut>=3.3" >/dev/null
rm -rf mutants
mutmut run --max-children "${MAX_CHILDREN:-2}" || true
python - <<'PY'
import json, subprocess
subprocess.run(["mutmut", "export-cicd-stats"], check=True, capture_output=True)
s = json.load(open("mutants/mutmut-cicd-stats.json"))
killed = s["killed"] + s.get("timeout", 0)
judged = killed + s["survived"] + s.get("no_tests", 0)   # a mutant no test runs is not killed
print(f"mutants: {s['total']}; killed {s['killed']}, timeout {s.get('timeout', 0)}, "
      f"survived {s['survived']}, no tests {s.get('no_tests', 0)}, skipped {s.get('skipped', 0)}")
print(f"killed: {killed / judged:.1%} of {judged} judged mutants (target >= 90 %)")
PY
