"""One replica under continuous batching, simulated event by event.

Each iteration decodes one token for every running request and prefills the requests admitted at
its start (FCFS, up to ``max_batch`` requests and the KV-cache token budget, which reserves each
request's full length so nothing is ever preempted). Between events (an admission, a completion,
an arrival that can be admitted) the batch is constant, so the simulator jumps over whole runs of
decode iterations at once: their times form two linear series (compute and memory time grow with
the cached context) whose maximum is summed in closed form. This is what makes a million requests
take seconds.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tokenprint.predict.step import StepCosts
from tokenprint.units import S_PER_HOUR

# The replica's costs are the performance model's (``tokenprint.predict.step``).
ReplicaCosts = StepCosts


@dataclass
class ReplicaResult:
    """Per-request times (seconds from trace start) and the replica's busy time and energy."""

    first_token_s: NDArray[np.float64]
    finish_s: NDArray[np.float64]
    busy_s: float
    busy_energy_j: float
    iterations: int
    hourly_busy: dict[int, tuple[float, float]]  # hour index → (busy s, energy J)


def _sum_max_linear(a0: float, a1: float, b0: float, b1: float, k: int) -> float:
    """Σ_{j=0}^{k-1} max(a0 + a1 j, b0 + b1 j), exactly."""
    if k <= 0:
        return 0.0
    d1 = a1 - b1
    d0 = a0 - b0
    if d1 == 0.0:
        x0, x1 = (a0, a1) if d0 >= 0 else (b0, b1)
        return k * x0 + x1 * (k - 1) * k * 0.5
    cut = math.ceil(-d0 / d1)
    if cut < 0:
        cut = 0
    elif cut > k:
        cut = k
    if d1 > 0:  # a below b before the crossing, above after
        lo0, lo1, hi0, hi1 = b0, b1, a0, a1
    else:
        lo0, lo1, hi0, hi1 = a0, a1, b0, b1
    n2 = k - cut
    return (cut * lo0 + lo1 * (cut - 1) * cut * 0.5
            + n2 * hi0 + hi1 * (cut + k - 1) * n2 * 0.5)


def simulate_replica(arrival_s: NDArray[np.float64], input_len: NDArray[np.int64],
                     output_len: NDArray[np.int64], costs: ReplicaCosts, max_batch: int,
                     hour0_s: float | None = None) -> ReplicaResult:
    """Simulate the requests routed to one replica (arrivals sorted).

    ``hour0_s``: epoch seconds of the trace start; when given, busy time and energy are also
    binned by UTC hour (for hourly grid intensity).
    """
    n = int(arrival_s.size)
    arr = arrival_s.tolist()
    lin_ = input_len.tolist()
    lout = output_len.tolist()
    first = [0.0] * n
    finish = [0.0] * n
    c = costs
    fp, mb = c.flops_per_s, c.bytes_per_s
    mm, at = c.matmul_flops_per_token, c.attn_flops_per_ctx
    kvb = c.kv_bytes_per_token
    sb2 = 2.0 * c.state_bytes_per_seq     # a hybrid's state, read and written every pass
    st = c.state_tokens                   # ... and the cache budget it holds per request
    so, sq, cs, cf = c.step_overhead_s, c.seq_overhead_s, c.comm_s_per_token, c.comm_fixed_s
    budget = c.kv_budget_tokens
    hourly: dict[int, list[float]] = {}
    t = 0.0
    it = 0
    busy = 0.0
    energy = 0.0
    b = 0                # running requests
    ctx = 0.0            # cached tokens over running requests
    kv_used = 0
    running: list[tuple[int, int]] = []  # (finish iteration, request)
    queue: deque[int] = deque()
    p = 0

    def account(t0: float, dt: float, e: float) -> None:
        if hour0_s is None:
            return
        h = int((hour0_s + t0 + dt / 2) // S_PER_HOUR)
        slot = hourly.get(h)
        if slot is None:
            hourly[h] = [dt, e]
        else:
            slot[0] += dt
            slot[1] += e

    while p < n or queue or running:
        while p < n and arr[p] <= t:
            queue.append(p)
            p += 1
        if not running and not queue:
            t = arr[p]
            continue

        # admissions at the start of this iteration
        new_tokens = 0
        new_sq = 0.0
        n_new = 0
        admitted: list[int] = []
        while queue and b + n_new < max_batch:
            r = queue[0]
            need = lin_[r] + lout[r] + st
            if kv_used + need > budget:
                if b + n_new == 0 and need > budget:  # can never fit: rejected, not served
                    queue.popleft()
                    first[r] = finish[r] = float("nan")
                    continue
                break
            queue.popleft()
            admitted.append(r)
            kv_used += need
            n_new += 1
            li = lin_[r]
            new_tokens += li
            new_sq += li * (li + 1) / 2.0
            heapq.heappush(running, (it + lout[r], r))  # token k at the end of iteration it+k
        if not n_new and not running:
            continue  # only rejected requests were in the queue
        if n_new:
            comp = (mm * (b + new_tokens) + at * (ctx + b + new_sq)) / fp
            mem = (c.weight_bytes(b + new_tokens) + kvb * (ctx + b + new_tokens)
                   + sb2 * (b + n_new)) / mb
            bound = comp if comp > mem else mem
            ovh = so + sq * (b + n_new) + (cs * (b + new_tokens) + cf if cf else 0.0)
            dt = bound + ovh
            e = c.power(dt, comp, so + cf) * dt   # waits: fixed costs, all-reduce latency
            account(t, dt, e)
            t += dt
            it += 1
            busy += dt
            energy += e
            ctx += b + new_tokens + n_new
            b += n_new
            for r in admitted:
                first[r] = t
        else:
            # bulk: constant batch until the next completion or admissible arrival
            k = running[0][0] - it
            can_admit = b < max_batch and p < n and not queue
            a0 = (mm * b + at * (ctx + b)) / fp
            a1 = at * b / fp
            m0 = (c.weight_bytes(b) + kvb * (ctx + b) + sb2 * b) / mb
            m1 = kvb * b / mb
            ovh = so + sq * b + (cs * b + cf if cf else 0.0)
            if can_admit and k > 1:
                # smallest k' >= 1 whose elapsed time reaches the next arrival: steps only grow,
                # so wait / first step bounds it from above; walk down from there (1-2 steps)
                wait = arr[p] - t
                step0 = (a0 if a0 > m0 else m0) + ovh
                guess = math.ceil(wait / step0) if step0 > 0 else k
                if guess < k:
                    k = guess if guess > 1 else 1
                    while k > 1 and _sum_max_linear(a0, a1, m0, m1, k - 1) + (k - 1) * ovh \
                            >= wait:
                        k -= 1
            bound_sum = _sum_max_linear(a0, a1, m0, m1, k)
            dt = bound_sum + k * ovh
            e = c.power(dt, k * a0 + a1 * (k - 1) * k * 0.5, k * (so + cf)) * dt
            account(t, dt, e)
            t += dt
            it += k
            busy += dt
            energy += e
            ctx += b * k
        while running and running[0][0] <= it:
            _, r = heapq.heappop(running)
            finish[r] = t
            b -= 1
            ctx -= lin_[r] + lout[r]
            kv_used -= lin_[r] + lout[r] + st
    hb = {h: (v[0], v[1]) for h, v in hourly.items()}
    return ReplicaResult(np.array(first), np.array(finish), busy, energy, it, hb)

