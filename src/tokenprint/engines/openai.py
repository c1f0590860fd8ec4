"""Any OpenAI-compatible HTTP server (vLLM serve, TGI, llama.cpp server, SGLang), client side.

A batch is ``batch`` concurrent streaming ``/completions`` requests whose prompts are exactly
``input_len`` token ids, asking for exactly ``output_len`` tokens (``ignore_eos`` and
``min_tokens``, which vLLM and llama.cpp honour). TTFT and inter-token latency are taken from the
client side as chunks arrive. Energy comes from a meter on this machine (meaningful when
tokenprint runs on the serving host): the prefill window ends when every request has its first
token, the decode window when the last one finishes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

from tokenprint.catalog import Catalog
from tokenprint.engines.base import OutOfMemory, RunResult, missing_extra
from tokenprint.errors import TokenprintError
from tokenprint.measure.base import EnergyMeter


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise missing_extra("openai", "serve", exc) from None
    return httpx


class OpenAIEngine:
    """Client for an OpenAI-compatible completions endpoint."""

    name = "openai"

    def __init__(self, base_url: str, model_name: str, device: str, dtype: str,
                 catalog: Catalog, seed: int = 0, gpu: str | None = None,
                 timeout_s: float = 600.0, vocab: int = 1000) -> None:
        httpx = _httpx()
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.device = device
        self.dtype = "unknown" if dtype == "auto" else dtype
        self.hardware_id = catalog.gpu(gpu).id if gpu else "remote"
        self.seed = seed
        self.timeout_s = timeout_s
        self.vocab = vocab
        try:
            r = httpx.get(f"{self.base_url}/models", timeout=10.0)
            r.raise_for_status()
            served = [m.get("id") for m in r.json().get("data", [])]
        except Exception as exc:
            raise TokenprintError(
                f"cannot reach an OpenAI-compatible server at {self.base_url}/models: {exc}"
            ) from None
        if served and model_name not in served:
            if len(served) == 1:
                self.model_name = str(served[0])
            else:
                raise TokenprintError(f"server {self.base_url} does not serve {model_name!r}; "
                                      f"it serves: {', '.join(map(str, served))}")
        self._server_versions = {"server_models": ",".join(map(str, served))}

    def versions(self) -> dict[str, str]:
        """Client library versions and what the server said it serves."""
        httpx = _httpx()
        return {"httpx": httpx.__version__, "python": sys.version.split()[0],
                "server": self.base_url, **self._server_versions}

    async def _one(self, client: Any, prompt: list[int], output_len: int,
                   on_first: Any) -> tuple[float, list[float], int]:
        body = {"model": self.model_name, "prompt": prompt, "max_tokens": output_len,
                "min_tokens": output_len, "ignore_eos": True, "temperature": 0.0,
                "stream": True, "stream_options": {"include_usage": True}}
        times: list[float] = []
        async with client.stream("POST", f"{self.base_url}/completions", json=body) as resp:
            if resp.status_code >= 400:
                text = (await resp.aread()).decode(errors="replace")[:300]
                if "out of memory" in text.lower() or resp.status_code == 507:
                    raise OutOfMemory(text)
                raise TokenprintError(f"server answered {resp.status_code}: {text}")
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                for choice in chunk.get("choices") or []:
                    if choice.get("text"):
                        times.append(time.perf_counter())
                        if len(times) == 1:
                            on_first()
        return (times[0] if times else float("nan")), times, len(times)

    def run(self, batch: int, input_len: int, output_len: int,
            meter: EnergyMeter | None) -> RunResult:
        """``batch`` concurrent streaming requests."""
        return asyncio.run(self._run(batch, input_len, output_len, meter))

    async def _run(self, batch: int, input_len: int, output_len: int,
                   meter: EnergyMeter | None) -> RunResult:
        httpx = _httpx()
        rng = np.random.default_rng(self.seed + batch * 7919 + input_len)
        prompts = [rng.integers(1, self.vocab, size=input_len).tolist() for _ in range(batch)]
        limits = httpx.Limits(max_connections=batch + 4)
        state: dict[str, Any] = {"started": 0, "m_pre": None}

        def on_first() -> None:
            state["started"] += 1
            if state["started"] == batch and meter is not None:
                state["m_pre"] = meter.end_window("prefill")
                meter.begin_window("decode")

        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            if meter is not None:
                meter.begin_window("prefill")
            t0 = time.perf_counter()
            results = await asyncio.gather(*(self._one(client, p, output_len, on_first)
                                             for p in prompts))
            t_end = time.perf_counter()
        m_pre = state["m_pre"]
        if meter is not None and m_pre is None:  # some request produced no token at all
            m_pre = meter.end_window("prefill")
            meter.begin_window("decode")
        m_dec = meter.end_window("decode") if meter is not None else None
        firsts = [r[0] - t0 for r in results]
        itl = [float(d) for r in results for d in np.diff(r[1])]
        steps = [(r[1][-1] - r[1][0]) / (len(r[1]) - 1) for r in results if len(r[1]) > 1]
        got = sum(r[2] for r in results)
        return RunResult(ttft_s=float(np.nanmean(firsts)), step_s=steps, prefill=m_pre,
                         decode=m_dec, e2e_s=t_end - t0, output_tokens=got, itl_s=itl)

    def close(self) -> None:
        """Nothing to release."""

