"""The predicted energy of live serving, for the gateway and ``watch`` alike.

One deployment (model × GPU × GPUs per replica × serving stack) set up once: its shape, the
hardware at the dtype the GPU serves it in, and the stack's fitted profile. The gateway asks for
one request's prefill and decode joules among the requests beside it; ``watch`` asks for the
joules per prompt and per generated token at the batch it saw running. Both come from the same
static prediction (:func:`tokenprint.predict.model.predict_static`).
"""

from __future__ import annotations

import functools

import numpy as np

from tokenprint.catalog import Catalog
from tokenprint.predict.model import predict_static
from tokenprint.predict.params import (
    DEFAULT_STACK,
    ProfileArrays,
    hardware_arrays,
    idle_w,
    resolve_profile,
)
from tokenprint.predict.predictor import resolve_dtype
from tokenprint.predict.shapes import ShapeArrays

NOMINAL_INPUT, NOMINAL_OUTPUT = 512.0, 128.0   # lengths of the per-token energies


class ServingEnergy:
    """Predicted energy of one deployment's serving (answers memoized per batch)."""

    def __init__(self, catalog: Catalog, model: str, gpu: str, gpus: int = 1,
                 stack: str = DEFAULT_STACK) -> None:
        m, g = catalog.model(model), catalog.gpu(gpu)
        self.dtype = resolve_dtype("auto", g)
        self.shape = ShapeArrays.of([m], [self.dtype])
        self.hw = hardware_arrays([g], [self.dtype])
        prof = resolve_profile(g, catalog, stack)
        self.prof = ProfileArrays.from_values(prof.values)
        self.calibration = prof.calibration
        self.stack = prof.stack
        self.gpus = gpus
        self.idle_w = idle_w(g) * gpus              # the deployment's idle floor, watts
        self.max_context = m.max_context

    def static(self, batch: float, input_tokens: float, output_tokens: float
               ) -> dict[str, np.ndarray]:
        """The deployment's static prediction at ``batch`` and these lengths."""
        return predict_static(self.shape, self.hw, self.prof, batch, input_tokens,
                              output_tokens, self.gpus)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one per deployment, kept for its life
    def request_j(self, prompt_tokens: int, completion_tokens: int, concurrency: int
                  ) -> tuple[float, float]:
        """Prefill and decode joules of one request among ``concurrency`` (a whole number of
        requests); one completion token comes from the prefill, so it has no decode."""
        b = float(concurrency)
        out = self.static(b, max(prompt_tokens, 1), max(completion_tokens, 1))
        pre = float(out["prefill_energy_j"][0]) / b
        dec = float(out["decode_energy_j"][0]) / b if completion_tokens > 1 else 0.0
        return pre, dec

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def per_token_j(self, batch: int) -> tuple[float, float]:
        """Joules per prompt token and per generated token at ``batch`` (nominal 512/128
        lengths)."""
        out = self.static(float(batch), NOMINAL_INPUT, NOMINAL_OUTPUT)
        return (float(np.asarray(out["energy_per_input_token_j"]).reshape(-1)[0]),
                float(np.asarray(out["energy_per_output_token_j"]).reshape(-1)[0]))

    def interval_j(self, prompt_tokens: float, generation_tokens: float, running: float,
                   duration_s: float) -> float:
        """Joules of an interval that served these tokens at this running batch: per-token
        energies times the tokens, never below the idle floor over the interval."""
        e_in, e_out = self.per_token_j(max(round(running), 1))
        return max(prompt_tokens * e_in + generation_tokens * e_out, self.idle_w * duration_s)
