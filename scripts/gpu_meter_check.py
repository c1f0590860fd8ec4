"""NVML meter against a known load: idle floor, then a bf16 matmul loop; counter vs power samples.

Usage: python scripts/gpu_meter_check.py OUT.json
"""

from __future__ import annotations

import json
import sys
import time

import torch

from tokenprint.measure.nvml import NvmlMeter


def main() -> None:
    out = sys.argv[1]
    meter = NvmlMeter([0], sample_hz=20)
    result: dict[str, object] = {"gpu": meter.device_names()[0],
                                 "has_energy_counter": meter.has_counter[0]}
    meter.begin_window("idle")
    time.sleep(10)
    idle = meter.end_window("idle")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    meter.begin_window("load")
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 15:
        for _ in range(50):
            a @ b
        torch.cuda.synchronize()
        n += 50
    load = meter.end_window("load")
    meter.close()
    flops = 2 * 8192**3 * n
    for name, m in (("idle", idle), ("load", load)):
        result[name] = {
            "duration_s": m.duration_s, "energy_counter_j": m.energy_j,
            "energy_power_integrated_j": m.sampled_energy_j, "mean_power_w": m.mean_power_w,
            "peak_power_w": m.peak_power_w,
            "counter_vs_integration": (m.energy_j / m.sampled_energy_j
                                       if m.sampled_energy_j else None),
        }
    result["load_tflops"] = flops / load.duration_s / 1e12
    result["load_j_per_tflop"] = load.energy_j / (flops / 1e12)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
