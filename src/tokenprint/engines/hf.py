"""Hugging Face transformers engine: catalog shapes with random weights, or local weights.

Prefill is timed and metered on a prefill-only forward pass (producing the first token); decode on
the ``output_len - 1`` following single-token steps with the KV cache, greedy, with no stop on
EOS, so every run generates exactly ``output_len`` tokens per sequence.
"""

from __future__ import annotations

import inspect
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from tokenprint.catalog import Catalog, ModelArch
from tokenprint.engines.base import OutOfMemory, RunResult, missing_extra
from tokenprint.errors import TokenprintError
from tokenprint.measure.base import EnergyMeter

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _imports() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise missing_extra("hf", "hf", exc) from None
    return torch, transformers


def check_device(device: str) -> None:
    """Refuse a device that is not there, before anything runs."""
    torch, _ = _imports()
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise TokenprintError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise TokenprintError(f"device {device!r} is not available: torch sees no CUDA GPU")
    if ":" in device:
        idx = int(device.split(":", 1)[1])
        if idx >= torch.cuda.device_count():
            raise TokenprintError(
                f"device {device!r} is not available: {torch.cuda.device_count()} CUDA GPU(s)"
            )


def auto_dtype(device: str) -> str:
    """bf16 on GPUs that support it, fp16 on older GPUs (T4), fp32 on CPU."""
    torch, _ = _imports()
    if device == "cpu":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def engine_dtype(engine: str, device: str, dtype: str, valid: tuple[str, ...]) -> str:
    """The dtype an engine runs (``auto`` resolved for the device), refused if it has none."""
    resolved = auto_dtype(device) if dtype == "auto" else dtype
    if resolved not in valid:
        raise TokenprintError(f"dtype {resolved!r} is not supported by the {engine} engine; "
                              f"valid: auto, {', '.join(valid)}")
    return resolved


def hardware_id(device: str, catalog: Catalog) -> str:
    """The catalog GPU id of a CUDA device (or its product name), ``cpu`` for the CPU."""
    if device == "cpu":
        return "cpu"
    torch, _ = _imports()
    name = torch.cuda.get_device_name(torch.device(device))
    try:
        return catalog.gpu(name.lower().replace(" ", "-")).id
    except TokenprintError:
        try:
            return catalog.gpu(name).id
        except TokenprintError:
            return name


def llama_config(model: ModelArch) -> Any:
    """A transformers ``LlamaConfig`` with the catalog architecture's shape."""
    _, transformers = _imports()
    return transformers.LlamaConfig(
        hidden_size=model.hidden_size, num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads, num_key_value_heads=model.num_kv_heads,
        head_dim=model.head_dim, intermediate_size=model.ffn_size, vocab_size=model.vocab_size,
        max_position_embeddings=model.max_context, tie_word_embeddings=model.tied_embeddings,
    )


class HFEngine:
    """transformers ``*ForCausalLM`` on CPU or CUDA."""

    name = "hf"

    def __init__(self, model: ModelArch, device: str, dtype: str, catalog: Catalog,
                 weights: Path | None = None, seed: int = 0) -> None:
        torch, transformers = _imports()
        check_device(device)
        self.torch = torch
        self.device = device
        self.dtype = engine_dtype("hf", device, dtype, tuple(TORCH_DTYPES))
        if self.dtype == "bf16" and device.startswith("cuda") and \
                not torch.cuda.is_bf16_supported():
            raise TokenprintError(f"device {device} has no bf16 support; use fp16 or auto")
        self.hardware_id = hardware_id(device, catalog)
        self.model_arch = model
        self.seed = seed
        tdtype = getattr(torch, TORCH_DTYPES[self.dtype])
        torch.manual_seed(seed)
        if weights is not None:
            if not Path(weights).is_dir():
                raise TokenprintError(f"weights directory {str(weights)!r} does not exist")
            self.model = self._from_pretrained(transformers, weights, tdtype)
        else:
            cfg = llama_config(model)
            with torch.device(device):
                self.model = self._from_config(transformers, cfg, tdtype)
        self.model.eval()
        self.vocab = int(self.model.config.vocab_size)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @staticmethod
    def _from_config(transformers: Any, cfg: Any, tdtype: Any) -> Any:
        auto = transformers.AutoModelForCausalLM
        try:
            return auto.from_config(cfg, dtype=tdtype)
        except TypeError:
            return auto.from_config(cfg, torch_dtype=tdtype)

    def _from_pretrained(self, transformers: Any, path: Path, tdtype: Any) -> Any:
        auto = transformers.AutoModelForCausalLM
        try:
            return auto.from_pretrained(str(path), dtype=tdtype, local_files_only=True).to(
                self.device)
        except TypeError:
            return auto.from_pretrained(str(path), torch_dtype=tdtype,
                                        local_files_only=True).to(self.device)

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize(self.device)

    def versions(self) -> dict[str, str]:
        """torch, transformers, python and CUDA versions."""
        torch, transformers = _imports()
        out = {"torch": torch.__version__, "transformers": transformers.__version__,
               "python": sys.version.split()[0], "platform": platform.platform()}
        if self.device.startswith("cuda"):
            out["cuda"] = str(torch.version.cuda)
            out["gpu_name"] = torch.cuda.get_device_name(torch.device(self.device))
        return out

    def run(self, batch: int, input_len: int, output_len: int,
            meter: EnergyMeter | None) -> RunResult:
        """One timed, metered batch. Raises :class:`OutOfMemory` when it does not fit."""
        torch = self.torch
        gen = torch.Generator().manual_seed(self.seed + batch * 7919 + input_len)
        ids = torch.randint(0, self.vocab, (batch, input_len), generator=gen).to(self.device)
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
        steps: list[float] = []
        try:
            with torch.inference_mode():
                self._sync()
                if meter is not None:
                    meter.begin_window("prefill")
                t0 = time.perf_counter()
                out = self.model(input_ids=ids, use_cache=True)
                nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
                cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
                self._sync()
                t1 = time.perf_counter()
                m_pre = meter.end_window("prefill") if meter is not None else None
                m_dec = None
                if output_len > 1:
                    if meter is not None:
                        meter.begin_window("decode")
                    for _ in range(output_len - 1):
                        s0 = time.perf_counter()
                        out = self.model(input_ids=nxt, use_cache=True,
                                         **{self._cache_kw: cache})
                        nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
                        cache = getattr(out, "cache", None) or \
                            getattr(out, "past_key_values", None) or cache
                        self._sync()
                        steps.append(time.perf_counter() - s0)
                    m_dec = meter.end_window("decode") if meter is not None else None
                t2 = time.perf_counter()
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            self._free()
            raise OutOfMemory(str(exc).splitlines()[0] if str(exc) else "out of memory") from None
        if self.device.startswith("cuda"):
            peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        return RunResult(ttft_s=t1 - t0, step_s=steps, prefill=m_pre, decode=m_dec, e2e_s=t2 - t0,
                         output_tokens=batch * output_len, peak_memory_bytes=peak,
                         itl_s=list(steps))

    def _free(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the model and free device memory."""
        del self.model
        self._free()
