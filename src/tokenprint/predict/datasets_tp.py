"""The shared data that varies the GPU count: Argonne's LLM-Inference-Bench (1–8 A100/H100,
vLLM, TensorRT-LLM, DeepSpeed-MII) and Splitwise's profiling data (Llama-2-70B at TP 2/4/8),
as points tables (:mod:`tokenprint.predict.points`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.predict.plausible import drop_beyond_hardware
from tokenprint.predict.points import Points, _Collector, _read_csv, _require, _resolve

ARGONNE_STACKS = {"vllm": "vllm-2024", "tensorrt-llm": "tensorrt-llm",
                  "deepspeed-mii": "deepspeed-mii"}
ARGONNE_GPUS = {"nvidia a100 gpu": "a100-sxm4-40gb", "nvidia h100 gpu": "h100-sxm",
                "nvidia gh200 gpu": "gh200",
                # vLLM's ROCm build of the same releases: no profile, its stack's prior
                # transferred by specs, as a user on an MI300X gets (scored, never fitted)
                "amd mi300x gpu": "mi300x"}
ARGONNE_MODELS = {"meta-llama/meta-llama-3-8b": "llama-3.1-8b",
                  "meta-llama/meta-llama-3-70b": "llama-3.1-70b",
                  "huggyllama/llama-7b": "llama-7b"}
ARGONNE_IDLE_TAIL_S = 1.0
ARGONNE_SOURCE = ("Argonne LLM-Inference-Bench (github argonne-lcf/LLM-Inference-Bench @4211f5d4, "
                  "BSD-3-Clause): offline static batches, input = output length, fp16; throughput "
                  "converted from input+output to output tokens/s; average power (GPU 0, NVML) "
                  f"includes ~{ARGONNE_IDLE_TAIL_S:g} s of idle after the run, modelled as such; "
                  "A100 taken as SXM4 40 GB (Polaris), H100 as SXM, MI300X under vLLM's ROCm "
                  "build of the same releases; Llama-3 8B/70B share "
                  "Llama-3.1's shapes; vLLM there is 0.5-0.6 (stack vllm-2024)")


SPLITWISE_GPUS = {"a100-80gb": "a100-sxm4-80gb", "h100-80gb": "h100-sxm"}
SPLITWISE_SOURCE = ("Splitwise profiling data (github Mutinifni/splitwise-sim data/perf_model.csv, "
                    "MIT; Patel et al. ISCA 2024): Llama-2-70B on DGX-A100 / DGX-H100, TP 2/4/8, "
                    "fp16 assumed; TTFT = prefill time of the batch, TPOT = decode iteration "
                    "time; power-capped H100 rows skipped; the engine is not documented (stack "
                    "splitwise-2023)")


def _argonne_row(out: _Collector, catalog: Catalog, rec: dict[str, Any], n_gpus: int,
                 energy: float, power_tail: bool) -> None:
    hw = str(rec["hardware"]).strip().lower()
    fw = str(rec["framework"]).strip().lower()
    name = str(rec["model"]).strip().lower()
    gpu = ARGONNE_GPUS.get(hw)
    stack = ARGONNE_STACKS.get(fw)
    if gpu is None:
        out.skip(f"hardware not in the catalog: {rec['hardware']}")
        return
    if stack is None:
        out.skip(f"framework not a modelled stack: {rec['framework']}")
        return
    model = ARGONNE_MODELS.get(name) or _resolve(catalog, "model", name)
    if model is None:
        out.skip(f"model not in catalog: {rec['model']}")
        return
    li, lo, b = (float(rec["input_len_tokens"]), float(rec["output_len_tokens"]),
                 float(rec["batch_size"]))
    if li + lo > catalog.model(model).max_context:
        out.skip("input + output beyond the model's context (the run cannot have generated "
                 "those tokens)")
        return
    total_tput = float(rec["throughput_total_tok_per_s_source"])
    out.add(gpu=gpu, model=model, stack=stack, tp=n_gpus, batch=b, input_len=li,
            output_len=lo, dtype="fp16", mode="static", energy_total=True,
            idle_tail_s=ARGONNE_IDLE_TAIL_S if power_tail else 0.0,
            energy_per_output_token_j=energy, tpot_s=np.nan,
            throughput_tok_s=total_tput * lo / (li + lo), task="argonne")


def load_argonne(path: str | Path, catalog: Catalog) -> Points:
    """Read the Argonne LLM-Inference-Bench directory (power and throughput files)."""
    p = Path(path)
    power_f = p / "power_results_tidy.csv"
    tput_f = p / "throughput_all_results_tidy.csv"
    if not p.is_dir() or not power_f.is_file():
        raise TokenprintError(f"Argonne data {str(p)!r} must be the directory holding "
                              "power_results_tidy.csv (and throughput_all_results_tidy.csv)")
    out = _Collector()
    power = _read_csv(power_f, "Argonne power file")
    _require(power, ("hardware", "num_gpus", "framework", "model", "input_len_tokens",
                     "output_len_tokens", "batch_size", "throughput_total_tok_per_s_source",
                     "energy_per_output_token_J_derived"), power_f, "Argonne power")
    seen = set()
    for rec in power.to_dict("records"):
        seen.add((rec["hardware"], rec["framework"], rec["model"], int(rec["num_gpus"]),
                  int(rec["input_len_tokens"]), int(rec["batch_size"])))
        _argonne_row(out, catalog, rec, int(rec["num_gpus"]),
                     float(rec["energy_per_output_token_J_derived"]), True)
    if tput_f.is_file():
        tput = _read_csv(tput_f, "Argonne throughput file")
        _require(tput, ("hardware", "num_devices", "framework", "model", "input_len_tokens",
                        "output_len_tokens", "batch_size", "throughput_total_tok_per_s_source"),
                 tput_f, "Argonne throughput")
        for rec in tput.to_dict("records"):
            key = (rec["hardware"], rec["framework"], rec["model"], int(rec["num_devices"]),
                   int(rec["input_len_tokens"]), int(rec["batch_size"]))
            if key in seen:
                out.skip("throughput row already in the power file")
                continue
            _argonne_row(out, catalog, rec, int(rec["num_devices"]), np.nan, False)
    return drop_beyond_hardware(out.points(ARGONNE_SOURCE), catalog)


def load_splitwise(path: str | Path, catalog: Catalog) -> Points:
    """Read Splitwise's Llama-2-70B prefill and decode times (a directory or the CSV)."""
    p = Path(path)
    f = p / "perf_model_llama2_70b_unique.csv" if p.is_dir() else p
    df = _read_csv(f, "Splitwise data")
    _require(df, ("model", "hardware", "tensor_parallel", "prompt_size_tokens", "batch_size",
                  "token_size_tokens", "prompt_time_ms", "token_time_ms"), f, "Splitwise")
    out = _Collector()
    for rec in df.to_dict("records"):
        gpu = SPLITWISE_GPUS.get(str(rec["hardware"]))
        if gpu is None:
            out.skip(f"hardware not modelled: {rec['hardware']} (power-capped)")
            continue
        model = _resolve(catalog, "model", str(rec["model"]).replace("llama2", "llama-2"))
        if model is None:
            out.skip(f"model not in catalog: {rec['model']}")
            continue
        out.add(gpu=gpu, model=model, stack="splitwise-2023", tp=int(rec["tensor_parallel"]),
                batch=float(rec["batch_size"]), input_len=float(rec["prompt_size_tokens"]),
                output_len=float(rec["token_size_tokens"]), dtype="fp16", mode="static",
                energy_per_output_token_j=np.nan, tpot_s=float(rec["token_time_ms"]) / 1e3,
                throughput_tok_s=np.nan, ttft_s=float(rec["prompt_time_ms"]) / 1e3,
                task="splitwise")
    return drop_beyond_hardware(out.points(SPLITWISE_SOURCE), catalog)
