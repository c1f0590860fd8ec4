"""Measured vs predicted per point for TTFT, TPOT and energy per output token.

Usage: python scripts/gpu_compare.py bench_records.json OUT.csv
"""

from __future__ import annotations

import csv
import json
import sys

from tokenprint.catalog import load_catalog
from tokenprint.predict import predict_records

METRICS = ("ttft_s", "tpot_s", "energy_per_output_token_j", "energy_per_input_token_j",
           "throughput_tok_s")


def main() -> None:
    with open(sys.argv[1]) as f:
        records = [r for r in json.load(f) if r.get("status") == "ok"]
    cat = load_catalog()
    rows = []
    for r in records:
        try:
            gpu = cat.gpu(r["hardware_id"])
        except Exception:
            print(f"skip {r['run_id']}: hardware {r['hardware_id']!r} is not a catalog GPU")
            continue
        p = predict_records(cat, cat.model(r["model"]), gpu, [int(r["batch"])],
                            int(r["input_len"]), int(r["output_len"]), r["dtype"])[0]
        row = {"model": r["model"], "gpu": gpu.id, "batch": r["batch"],
               "calibrated": p["calibrated"]}
        for m in METRICS:
            row[f"measured_{m}"] = r.get(m)
            row[f"predicted_{m}"] = p.get(m)
            row[f"ratio_{m}"] = (p[m] / r[m]) if r.get(m) else None
        rows.append(row)
    if not rows:
        print("no comparable points")
        return
    with open(sys.argv[2], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        print(row["model"], row["batch"], {m: round(row[f"ratio_{m}"], 3)
                                           for m in METRICS if row[f"ratio_{m}"]})


if __name__ == "__main__":
    main()
