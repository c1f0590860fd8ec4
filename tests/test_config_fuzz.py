"""The TOML files users write — gateway.toml, a deployments file, a catalog extension — with
hostile values in any field: each is accepted as valid or refused with one TokenprintError line,
never another exception and never a non-finite number kept."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenprint.errors import TokenprintError
from tokenprint.fleet.report import load_deployments
from tokenprint.gateway.config import GatewayConfig, load_config

HOSTILE = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**30, 10**30)
           | st.text(max_size=20) | st.booleans() | st.lists(st.integers(), max_size=3)
           | st.sampled_from([0, -1, 1e-320, 1e308, "", "nan", "inf", 60, "FR", "t4", "tiny"]))
UPSTREAM = {"name": "u", "url": "http://127.0.0.1:9/v1", "model": "tiny", "gpu": "l4",
            "region": "FR"}


def _write(tmp: Path, top: dict[str, Any], table: str, row: dict[str, Any]) -> Path:
    """A valid TOML file holding the hostile values (the loader sees values, not syntax)."""
    p = tmp / "f.toml"
    p.write_text(tomli_w.dumps({**top, table: [row]}), encoding="utf-8")
    return p


GATEWAY_FIELDS = sorted(set(GatewayConfig.model_fields) - {"upstream"})
UPSTREAM_FIELDS = [*sorted(UPSTREAM), "gpus_per_replica", "capacity", "stack", "meter",
                   "intensity_file", "served_model", "api_key_env"]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(GATEWAY_FIELDS + [f"upstream.{f}" for f in UPSTREAM_FIELDS]),
       value=HOSTILE)
def test_gateway_config_fuzz(tmp_path: Path, field: str, value: Any):
    top: dict[str, Any] = {}
    row = dict(UPSTREAM)
    if field.startswith("upstream."):
        row[field.split(".", 1)[1]] = value
    else:
        top[field] = value
    try:
        cfg = load_config(_write(tmp_path, top, "upstream", row))
    except TokenprintError as exc:
        assert "\n" not in str(exc).strip()
        return
    for name, v in cfg.model_dump().items():
        if isinstance(v, float):
            assert math.isfinite(v), (name, v)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["name", "model", "gpu", "gpus", "region", "energy", "stack",
                              "intensity_file", "match", "energy_match"]), value=HOSTILE)
def test_deployments_file_fuzz(tmp_path: Path, field: str, value: Any):
    row = {"name": "d", "model": "llama-3.1-8b", "gpu": "h100-sxm", "gpus": 1, "region": "FR"}
    row[field] = value
    try:
        load_deployments(_write(tmp_path, {}, "deployment", row))
    except TokenprintError as exc:
        assert "\n" not in str(exc).strip()


@pytest.mark.parametrize("years", [60, 0, -1, float("inf"), float("nan"), 1e-320])
def test_gateway_refuses_a_lifetime_the_cli_refuses(tmp_path: Path, years: float):
    p = _write(tmp_path, {"lifetime_years": years}, "upstream", UPSTREAM)
    with pytest.raises(TokenprintError, match="lifetime_years"):
        load_config(p)
