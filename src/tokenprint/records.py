"""``RunRecord``: one static-batch run, measured (``bench``) or predicted (``predict``).

The same record flows through the results store, exports, calibration and validation
(``predict.datasets``) and the study, so its keys are declared once here and checked by mypy
wherever a record is read. It is a ``TypedDict`` because it *is* the JSON a user scripts
against: the store keeps it as is and ``--json`` prints it unchanged. ``run_record`` validates a
record as it is made (types, and no key outside this list); records read back from a CSV or
Parquet export are flat tables (``versions.torch`` columns) and are only cast.

Units are in the names: ``_s`` seconds, ``_j`` joules, ``_w`` watts; ``_p5``/``_p95`` are
percentiles over repetitions (measured); ``_low``/``_high`` the prediction's range (predicted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic validates only this one on Python < 3.12

from tokenprint.errors import TokenprintError


@with_config(ConfigDict(extra="forbid"))
class RunRecord(TypedDict, total=False):
    """One run; which keys are present depends on ``source`` (measured or predicted)."""

    # identity and what ran
    run_id: str
    point_key: str
    source: Literal["measured", "predicted"]
    status: Literal["ok", "oom"]
    error: str
    model: str
    engine: str
    device: str
    hardware_id: str
    dtype: str
    kv_dtype: str
    batch: int
    input_len: int
    output_len: int
    tp: int
    media: str              # what a multimodal prompt carried besides text ("1 image 1024×1024")
    media_tokens: int       # prompt tokens the media added (included in the prefill)
    encoder_flops: float    # vision encoder FLOPs per request
    fp8_scales: str         # predicted in fp8: the weights' scales assumed ("block" or "channel")
    workload: str
    weights: str
    timestamp: str
    versions: dict[str, str]
    executor: str
    worker_node: str
    # how energy was obtained
    meter: str
    meter_reason: str
    energy_kind: str
    warmup: int
    repeats: int
    # predicted: which profile, and whether the GPU was calibrated under the stack
    stack: str
    profile: str
    calibration: str
    calibrated: bool
    model_version: str
    max_batch_fits: int
    # latency and throughput
    ttft_s: float | None
    ttft_s_p5: float | None
    ttft_s_p95: float | None
    ttft_s_low: float
    ttft_s_high: float
    tpot_s: float | None
    tpot_s_p5: float | None
    tpot_s_p95: float | None
    tpot_s_low: float
    tpot_s_high: float
    itl_p50_s: float | None
    itl_p90_s: float | None
    itl_p99_s: float | None
    e2e_s: float
    e2e_s_p5: float | None
    e2e_s_p95: float | None
    e2e_s_low: float
    e2e_s_high: float
    throughput_tok_s: float
    throughput_tok_s_low: float
    throughput_tok_s_high: float
    input_tokens: int
    output_tokens: int
    decode_tokens: int
    decode_steps: int
    # energy and power
    prefill_energy_j: float | None
    prefill_energy_j_low: float
    prefill_energy_j_high: float
    decode_energy_j: float | None
    decode_energy_j_low: float
    decode_energy_j_high: float
    decode_energy_sampled_j: float | None
    energy_per_input_token_j: float
    energy_per_input_token_j_low: float
    energy_per_input_token_j_high: float
    energy_per_output_token_j: float
    energy_per_output_token_j_p5: float | None
    energy_per_output_token_j_p95: float | None
    energy_per_output_token_j_low: float
    energy_per_output_token_j_high: float
    energy_per_token_total_j: float
    prefill_power_w: float
    decode_power_w: float
    mean_power_w: float
    mean_power_w_low: float
    mean_power_w_high: float
    peak_power_w: float | None
    idle_power_w: float | None
    peak_memory_bytes: int | None


_ADAPTER: TypeAdapter[RunRecord] = TypeAdapter(RunRecord)


def run_record(raw: Mapping[str, Any]) -> RunRecord:
    """Check a record as it is made: known keys, values of the declared types."""
    try:
        return _ADAPTER.validate_python(dict(raw), strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TokenprintError(f"run record field {where!r}: {first['msg']}") from None


def as_run_records(rows: list[dict[str, Any]]) -> list[RunRecord]:
    """Records read back from a store or an export (already checked when written)."""
    return cast(list[RunRecord], rows)
