"""Measured points for calibration and validation: public benchmark files and tokenprint records.

A *points* table has one row per measured configuration: ``gpu``, ``model`` (catalog ids),
``stack``, ``tp`` (GPUs in the parallel group), ``batch``, ``input_len``, ``output_len``,
``dtype`` (weights), ``mode`` (``serving`` or ``static``), the measurement boundary
(``energy_total``: energy counts prefill too; ``idle_tail_s``: seconds of idle inside the power
window; ``tpot_includes_prefill``: a mean time per output token that includes the stalls for
other requests' prefills, i.e. the serving iteration, not the bare decode step) and the measured
metrics ``energy_per_output_token_j``, ``tpot_s``, ``throughput_tok_s`` (output tokens per
second), ``ttft_s`` (NaN where not measured).

Every loader converts to these boundaries where it can do so exactly (Argonne's input+output
throughput → output tokens/s) and records what it cannot (Argonne's idle tail) for the model to
reproduce. Assumptions (prompt lengths where none are recorded, which catalog GPU a name means)
are stated in the returned ``source``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenprint.catalog import Catalog
from tokenprint.errors import TokenprintError
from tokenprint.predict.datasets_tp import load_argonne, load_splitwise
from tokenprint.predict.media import TEXT_ONLY, Media, media_cost
from tokenprint.predict.plausible import drop_beyond_hardware
from tokenprint.predict.points import (  # re-exported: callers import them from here
    COLUMNS,
    FORMATS,
    METRICS,
    Points,
    _Collector,
    _read_csv,
    _require,
    _resolve,
)
from tokenprint.records import RunRecord

__all__ = ["COLUMNS", "FORMATS", "METRICS", "Points", "load_argonne", "load_mlenergy",
           "load_mlenergy_v1", "load_mlenergy_v3", "load_points", "load_splitwise",
           "points_from_records"]


# ML.ENERGY v2 does not record prompt lengths; the mean prompt length is assumed.
MLENERGY_INPUT_LEN_DEFAULT = 512
MLENERGY_SOURCE = ("ML.ENERGY leaderboard v2 (github ml-energy/leaderboard-v2, Apache-2.0): vLLM "
                   "2024 runs on A100-SXM4-40GB and H100 80GB HBM3, GPU energy (NVML); Avg TPOT "
                   "taken as the mean serving iteration (decode step plus prefill stalls)")
_MLENERGY_COLUMNS = ("Model", "GPU", "TP", "Avg BS (reqs)", "Avg Output Tokens",
                     "Token tput (tok/s)", "Avg TPOT (s)", "energy_per_output_token_J")

# ML.ENERGY v3 records no prompt lengths either; assumed per task (stated in the source).
V3_INPUT_LEN = {"lm-arena-chat": 512, "gpqa": 384, "sourcegraph-fim": 2048, "image-chat": 64,
                "video-chat": 64}
# Its multimodal tasks send one image (LMArena VisionArena-Chat, user uploads) or one video
# (LLaVA-Video-178K) per request, with a short text question. The benchmark samples 32 frames of
# each video and re-encodes them at 30 fps (a 1.07 s clip); vLLM reads all 32 and lets the
# model's processor resample by frame rate (Qwen3-VL: 2 a second, at least 4). The benchmark
# records neither the images' and frames' sizes nor the text's length: those are assumed.
V3_MEDIA = {"image-chat": Media(images=1),
            "video-chat": Media(videos=1, video_frames=32, video_seconds=32 / 30)}
V3_SOURCE = ("ML.ENERGY leaderboard v3.0 (github ml-energy/leaderboard @0cd52dab): vLLM late-2025 "
             "(0.11 image) serving runs, GPU energy (NVML via Zeus, steady state); measured "
             "running "
             "batch; TPOT = median inter-token latency")
_V3_COLUMNS = ("task", "model_id", "architecture", "weight_precision", "gpu_model", "num_gpus",
               "data_parallel", "avg_batch_size", "avg_output_len", "energy_per_token_joules",
               "output_throughput_tokens_per_sec", "median_itl_ms")
_V3_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8", "mxfp4": "mxfp4"}

# ML.ENERGY v1 (2023, Hugging Face transformers, batch 1, fp16): LLaMA fine-tunes share their
# base model's shape; the GPU names are mapped onto catalog parts (assumption: SXM A100 40 GB).
V1_GPUS = {"A100": "a100-sxm4-40gb", "A40": "a40", "V100": "v100-sxm2-32gb"}
V1_BASE_SHAPES = {
    "metaai/llama-7b": "llama-7b", "lmsys/vicuna-7b": "llama-7b",
    "tatsu-lab/alpaca-7b": "llama-7b",
    "bair/koala-7b": "llama-7b", "project-baize/baize-v2-7b": "llama-7b",
    "metaai/llama-13b": "llama-13b", "lmsys/vicuna-13b": "llama-13b",
    "bair/koala-13b": "llama-13b", "nomic-ai/gpt4all-13b-snoozy": "llama-13b",
    "openaccess-ai-collective/manticore-13b-chat-pyg": "llama-13b",
    "camel-ai/camel-13b-combined-data": "llama-13b",
    "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-7b-preview-300bt-v2": "openllama-7b",
}
V1_INPUT_LEN = 256
V1_SOURCE = ("ML.ENERGY leaderboard v1 (github ml-energy/leaderboard, 2023, Apache-2.0): "
             "Hugging Face transformers, batch 1, fp16, energy per request (prefill included, "
             "NVML); LLaMA "
             "fine-tunes mapped to their base shapes; A100 taken as SXM4 40 GB; prompt length "
             f"assumed {V1_INPUT_LEN} tokens")

# Argonne LLM-Inference-Bench: offline static batches, input = output length, fp16, one GPU's power.
def load_mlenergy(path: str | Path, catalog: Catalog,
                  input_len: int = MLENERGY_INPUT_LEN_DEFAULT) -> Points:
    """Read ML.ENERGY v2 runs (the flattened leaderboard CSV; stack ``vllm-2024``)."""
    p = Path(path)
    df = _read_csv(p, "calibration data")
    _require(df, _MLENERGY_COLUMNS, p, "ML.ENERGY v2")
    out = _Collector()
    for rec in df.to_dict("records"):
        gpu = _resolve(catalog, "gpu", str(rec["GPU"]))
        model = _resolve(catalog, "model", str(rec["Model"]))
        if gpu is None or model is None:
            out.skip(f"model not in catalog: {rec['Model']}" if model is None else
                     f"gpu not in catalog: {rec['GPU']}")
            continue
        tp = int(rec["TP"])
        # a model whose bf16 weights cannot fit the TP group ran in 8-bit (405B on 8 x H100)
        fits_bf16 = catalog.model(model).weight_bytes("bf16") < 0.9 * tp * \
            catalog.gpu(gpu).memory_gb.value * 1e9
        out.add(gpu=gpu, model=model, stack="vllm-2024", tp=tp,
                batch=float(rec["Avg BS (reqs)"]), input_len=float(input_len),
                output_len=float(rec["Avg Output Tokens"]),
                dtype="bf16" if fits_bf16 else "fp8", mode="serving", tpot_includes_prefill=True,
                energy_per_output_token_j=float(rec["energy_per_output_token_J"]),
                tpot_s=float(rec["Avg TPOT (s)"]),
                throughput_tok_s=float(rec["Token tput (tok/s)"]), task=str(rec.get("task", "")))
    return drop_beyond_hardware(out.points(
        f"{MLENERGY_SOURCE}; file {p.name}; prompt length assumed {input_len} tokens"), catalog)


def load_mlenergy_v3(path: str | Path, catalog: Catalog) -> Points:
    """Read ML.ENERGY v3 configurations (any GPU; stack ``vllm-2025``)."""
    p = Path(path)
    df = _read_csv(p, "calibration data")
    _require(df, _V3_COLUMNS, p, "ML.ENERGY v3")
    out = _Collector()
    for rec in df.to_dict("records"):
        task = str(rec["task"])
        if task not in V3_INPUT_LEN:
            out.skip(f"task {task}: its prompts are not modelled")
            continue
        dtype = _V3_DTYPES.get(str(rec["weight_precision"]).lower())
        gpu = _resolve(catalog, "gpu", str(rec["gpu_model"]))
        model = _resolve(catalog, "model", str(rec["model_id"]))
        if model is None:
            out.skip(f"model not in catalog: {rec['model_id']}")
            continue
        if gpu is None:
            out.skip(f"gpu not in catalog: {rec['gpu_model']}")
            continue
        if dtype is None:
            out.skip(f"weight precision not modelled: {rec['weight_precision']}")
            continue
        media = V3_MEDIA.get(task)
        if media is not None and catalog.model(model).vision is None:
            out.skip(f"model has no vision encoder in the catalog: {rec['model_id']}")
            continue
        cost = media_cost(catalog.model(model), media) if media is not None else TEXT_ONLY
        dp = max(int(rec["data_parallel"]), 1)
        out.add(gpu=gpu, model=model, stack="vllm-2025", tp=int(rec["num_gpus"]) // dp,
                batch=float(rec["avg_batch_size"]) / dp,
                input_len=float(V3_INPUT_LEN[task]) + cost.tokens,
                encoder_flops=cost.encoder_flops,
                output_len=float(rec["avg_output_len"]), dtype=dtype, mode="serving",
                energy_per_output_token_j=float(rec["energy_per_token_joules"]),
                tpot_s=float(rec["median_itl_ms"]) / 1e3,
                throughput_tok_s=float(rec["output_throughput_tokens_per_sec"]) / dp, task=task)
    lens = ", ".join(f"{k} {v}" for k, v in V3_INPUT_LEN.items())
    kinds = "; ".join(f"{k}: {m.describe()}" for k, m in V3_MEDIA.items())
    return drop_beyond_hardware(out.points(
        f"{V3_SOURCE}; file {p.name}; text prompt lengths assumed per task ({lens} tokens); "
        f"media per request assumed ({kinds})"), catalog)


def load_mlenergy_v1(path: str | Path, catalog: Catalog) -> Points:
    """Read the ML.ENERGY v1 directory of ``{GPU}_{task}_benchmark.csv`` files
    (stack ``hf-transformers``, batch 1)."""
    p = Path(path)
    if not p.is_dir():
        raise TokenprintError(f"ML.ENERGY v1 data {str(p)!r} must be the directory holding "
                              "{GPU}_{task}_benchmark.csv files")
    files = sorted(p.glob("*_benchmark.csv"))
    if not files:
        raise TokenprintError(f"no *_benchmark.csv files in {str(p)!r}")
    out = _Collector()
    for f in files:
        gpu_name, task = f.name.split("_", 1)[0], f.name.split("_", 1)[1].rsplit("_", 1)[0]
        df = _read_csv(f, "ML.ENERGY v1 file")
        _require(df, ("model", "throughput", "response_length", "latency", "energy"), f,
                 "ML.ENERGY v1")
        gpu = V1_GPUS.get(gpu_name)
        for rec in df.to_dict("records"):
            model = V1_BASE_SHAPES.get(str(rec["model"]).lower())
            if gpu is None:
                out.skip(f"gpu not mapped: {gpu_name}")
                continue
            if model is None:
                out.skip(f"model not LLaMA-shaped: {rec['model']}")
                continue
            n_out = float(rec["response_length"])
            out.add(gpu=gpu, model=model, stack="hf-transformers", tp=1, batch=1.0,
                    input_len=float(V1_INPUT_LEN), output_len=n_out, dtype="fp16",
                    mode="static", energy_total=True,
                    energy_per_output_token_j=float(rec["energy"]) / n_out, tpot_s=np.nan,
                    throughput_tok_s=n_out / float(rec["latency"]), task=task)
    return drop_beyond_hardware(out.points(V1_SOURCE), catalog)


ENGINE_STACKS = {"hf": "hf-transformers", "vllm": "vllm-2025"}


def points_from_records(records: list[RunRecord], catalog: Catalog, source: str,
                        stack: str | None = None) -> Points:
    """Measured tokenprint bench records (static batches on a catalog GPU) as points.

    The stack is ``stack`` when given, else the record's engine (``hf`` → ``hf-transformers``,
    ``vllm`` → ``vllm-2025``).
    """
    out = _Collector()
    for rec in records:
        if rec.get("status", "ok") != "ok" or rec.get("source", "measured") != "measured":
            out.skip("not an ok measured record")
            continue
        gpu = _resolve(catalog, "gpu", str(rec.get("hardware_id", "")))
        model = _resolve(catalog, "model", str(rec.get("model", "")))
        rec_stack = stack or ENGINE_STACKS.get(str(rec.get("engine", "")))
        if gpu is None or model is None:
            out.skip("model not in catalog" if model is None else
                     f"hardware not a catalog GPU: {rec.get('hardware_id')}")
            continue
        if rec_stack is None:
            out.skip(f"engine {rec.get('engine')!r} has no stack; pass --stack")
            continue
        tpot, ttft = rec.get("tpot_s"), rec.get("ttft_s")
        if tpot is None or ttft is None or "energy_per_output_token_j" not in rec:
            out.skip("no decode step measured (output length 1) or no energy")
            continue
        out.add(gpu=gpu, model=model, stack=rec_stack, tp=int(rec.get("tp", 1) or 1),
                batch=float(rec["batch"]), input_len=float(rec["input_len"]),
                output_len=float(rec["output_len"]), dtype=str(rec.get("dtype", "bf16")),
                mode="static", energy_per_output_token_j=float(rec["energy_per_output_token_j"]),
                tpot_s=float(tpot), throughput_tok_s=float(rec["throughput_tok_s"]),
                ttft_s=float(ttft), task="bench")
    return out.points(source)


def load_points(fmt: str, path: str | Path, catalog: Catalog, stack: str | None = None) -> Points:
    """Points from a file or directory in one of ``FORMATS`` (``tokenprint``: a results store
    or an export)."""
    if fmt == "mlenergy":
        pts = load_mlenergy(path, catalog)
    elif fmt == "mlenergy-v3":
        pts = load_mlenergy_v3(path, catalog)
    elif fmt == "mlenergy-v1":
        pts = load_mlenergy_v1(path, catalog)
    elif fmt == "argonne":
        pts = load_argonne(path, catalog)
    elif fmt == "splitwise":
        pts = load_splitwise(path, catalog)
    elif fmt == "tokenprint":
        from tokenprint.bench.export import read_records

        records = read_records(Path(path))
        cols = set(records[0]) if records else set()
        if records and not {"hardware_id", "energy_per_output_token_j"} <= cols:
            guess = ("mlenergy" if set(_MLENERGY_COLUMNS) <= cols else
                     "mlenergy-v3" if set(_V3_COLUMNS) <= cols else None)
            hint = (f"; its columns are ML.ENERGY's: use --format {guess}" if guess else
                    f"; valid formats: {', '.join(FORMATS)}")
            raise TokenprintError(f"{str(path)!r} does not hold tokenprint run records (no "
                                  f"hardware_id / energy_per_output_token_j columns){hint}")
        return points_from_records(records, catalog, f"tokenprint records in {path}", stack)
    else:
        raise TokenprintError(f"unknown data format {fmt!r}; valid: {', '.join(FORMATS)}")
    if stack is not None:
        keep = pts.table["stack"] == stack
        n_other = int((~keep).sum())
        reasons = dict(pts.skipped_reasons)
        if n_other:
            reasons[f"stack other than {stack}"] = n_other
        return Points(pts.table[keep].reset_index(drop=True), pts.n_skipped + n_other, reasons,
                      pts.source)
    return pts
