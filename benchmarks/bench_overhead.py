"""Decode-step time with and without tokenprint's measurement, same tiny model, one run.

Target (issue: bench): overhead below 2 %. "Without" is a bare greedy decode loop over the model;
"with" is the hf engine's run with the estimate meter's windows and per-step timing. Runs are
interleaved so drift affects both alike. Prints the ratio.
"""

from __future__ import annotations

import statistics
import time

import torch

from tokenprint.catalog import load_catalog
from tokenprint.engines.hf import HFEngine
from tokenprint.measure import EstimateMeter

BATCH, INPUT_LEN, OUTPUT_LEN, ROUNDS = 4, 64, 64, 15


def bare_decode(engine: HFEngine) -> float:
    """Mean decode-step seconds of a loop with no timing or meter inside."""
    model = engine.model
    ids = torch.randint(0, engine.vocab, (BATCH, INPUT_LEN))
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(OUTPUT_LEN - 1):
            out = model(input_ids=nxt, use_cache=True, **{engine._cache_kw: cache})
            nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        return (time.perf_counter() - t0) / (OUTPUT_LEN - 1)


def measured_decode(engine: HFEngine, meter: EstimateMeter) -> float:
    """Mean decode-step seconds of the engine's measured run (wall time of the decode phase)."""
    r = engine.run(BATCH, INPUT_LEN, OUTPUT_LEN, meter)
    assert r.decode is not None
    return r.decode.duration_s / (OUTPUT_LEN - 1)


def main() -> None:
    torch.set_num_threads(1)
    cat = load_catalog()
    engine = HFEngine(cat.model("tiny"), "cpu", "fp32", cat)
    meter = EstimateMeter("cpu")
    for _ in range(3):
        bare_decode(engine)
        measured_decode(engine, meter)
    bare, measured = [], []
    for _ in range(ROUNDS):
        bare.append(bare_decode(engine))
        measured.append(measured_decode(engine, meter))
    b, m = statistics.median(bare), statistics.median(measured)
    print(f"tiny model, batch {BATCH}, input {INPUT_LEN}, output {OUTPUT_LEN}, {ROUNDS} rounds")
    print(f"decode step without measurement: {b * 1e3:.3f} ms (median)")
    print(f"decode step with measurement:    {m * 1e3:.3f} ms (median)")
    print(f"overhead: {(m / b - 1) * 100:+.2f} % (target < 2 %)")


if __name__ == "__main__":
    main()
