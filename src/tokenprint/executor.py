"""Executors: ``local`` (default, no Ray needed) or ``ray`` (an existing or a local Ray cluster).

Work is farmed out as Ray tasks and the results come back to the driver, which alone writes the
results store: a point is never recorded twice, and a task whose worker dies is retried by Ray.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tokenprint.errors import TokenprintError

EXECUTORS = ("local", "ray")
T = TypeVar("T")
R = TypeVar("R")


def check_executor(name: str) -> str:
    """Return the executor name if valid."""
    if name not in EXECUTORS:
        raise TokenprintError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    return name


def ray_module() -> Any:
    """Import Ray or explain how to get it."""
    try:
        import ray
    except ImportError:
        raise TokenprintError("the ray executor needs Ray: pip install 'tokenprint[ray]'"
                              ) from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to a Ray cluster (``address``, or $RAY_ADDRESS), or start a local one."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    addr = address or os.environ.get("RAY_ADDRESS")
    try:
        if addr:
            ray.init(address=addr, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True,
                     log_to_driver=False)
    except Exception as exc:  # ConnectionError and Ray's own errors
        raise TokenprintError(f"cannot start or reach Ray ({addr or 'local'}): {exc}") from None
    return ray


def parallel_map(fn: Callable[[T], R], items: Iterable[T], executor: str = "local",
                 address: str | None = None, num_gpus: float = 0.0,
                 on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]``, locally or as Ray tasks (results in input order)."""
    check_executor(executor)
    xs = list(items)
    if executor == "local":
        out = []
        for i, x in enumerate(xs):
            r = fn(x)
            if on_result:
                on_result(i, r)
            out.append(r)
        return out
    ray = init_ray(address)
    task = ray.remote(num_gpus=num_gpus, max_retries=3)(fn)
    refs = [task.remote(x) for x in xs]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = index[ref]
            results[i] = ray.get(ref)
            if on_result:
                on_result(i, results[i])
    return results
