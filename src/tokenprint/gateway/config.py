"""Gateway configuration (TOML), validated; upstream credentials come from environment variables.

```toml
host = "127.0.0.1"
port = 8080
policy = "carbon"                 # carbon | latency | round-robin
latency_target_s = 2.0            # recent p95 end-to-end latency an upstream must meet
api_keys_sha256 = ["<hex sha256 of a key>"]   # empty: no key required
results = "tokenprint-results"    # SQLite ledger (and every ledger's crash journal) lives here
# ledger_url = "postgresql://tokenprint@db:5432/accounts"  # one ledger for many gateways;
#                                   # password from PGPASSWORD or ~/.pgpass, not this file
idle = "unattributed"             # or "spread"
intensity = "annual"              # annual | file | electricitymaps | watttime
# [intensity_options]             # the source's own options, e.g. for watttime:
# regions = { "US-CAL-CISO" = "CAISO_NORTH" }   # user_env, password_env, base_url too
# routing_intensity = "watttime"  # routing may follow a marginal signal (MOER) while the
#                                   # accounts stay on `intensity`; each row names the signal
# contracts = "contracts.toml"    # market-based Scope 2 on /metrics (as ledger report --contracts)
open_endpoints = "public"         # or "key": /metrics, /health, /dashboard need an API key
# limits (defaults safe on a public interface)
max_header_bytes = 16384          # request head → 431 beyond
header_timeout_s = 10.0           # a head not complete in this time: connection closed
max_connections = 2048            # held at once → 503 beyond
keepalive_timeout_s = 5.0
max_body_bytes = 1000000          # → 413
body_timeout_s = 30.0             # → 408, and the connection is closed
max_upstream_body_bytes = 16777216  # a non-streamed upstream answer → 502 beyond
client_send_timeout_s = 30.0      # a streaming client that stops reading → 499, slot freed
max_connections_per_client = 1024  # one address; the rest → 503 at once
max_event_bytes = 1048576         # one SSE event relayed from an upstream → 502 beyond
ledger_max_pending = 100000       # rows queued while the database refuses writes

[[upstream]]
name = "h100-qc"
url = "http://10.0.0.5:8000/v1"
model = "llama-3.1-8b"            # catalog id (shape for predictions)
served_model = "meta-llama/Llama-3.1-8B-Instruct"   # name the upstream serves (optional)
gpu = "h100-sxm"
gpus_per_replica = 1
stack = "vllm-2025"               # serving stack of the upstream (predictions; default vllm-2025)
region = "CA-QC"
capacity = 64                     # concurrent requests it accepts
api_key_env = "UPSTREAM_KEY"      # optional: the upstream's key, read from this variable
intensity_file = "CA-QC_2024.csv" # with intensity = "file"
meter = "none"                    # "nvml" when the gateway runs on the serving host
```

``workers = N`` (or ``serve --workers N``) runs N gateway processes on one port for hosts whose
streams outgrow one core (10,000 relayed tokens/s use three quarters of one here); each takes
1/N of every upstream's capacity, the ledger and ``/metrics`` cover them all, and routing
state (in flight, latency, breaker) is per process. Not with ``meter = "nvml"``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tokenprint.carbon.amortize import (
    DEFAULT_LIFETIME_YEARS,
    MAX_LIFETIME_YEARS,
    MIN_LIFETIME_YEARS,
)
from tokenprint.database import is_url, redact
from tokenprint.errors import TokenprintError
from tokenprint.files import read_toml_file


class UpstreamConfig(BaseModel):
    """One OpenAI-compatible inference server behind the gateway."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)   # no NaN or infinite field

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    url: str
    model: str
    served_model: str | None = None
    gpu: str
    gpus_per_replica: int = Field(default=1, ge=1)
    stack: str = "vllm-2025"
    region: str
    capacity: int = Field(default=64, ge=1)
    api_key_env: str | None = None
    intensity_file: str | None = None
    meter: Literal["none", "nvml"] = "none"

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        from urllib.parse import urlsplit

        if not v.startswith(("http://", "https://")):
            raise ValueError(f"url {v!r} must start with http:// or https://")
        try:
            parts = urlsplit(v)
            port = parts.port
        except ValueError:
            raise ValueError(f"url {v!r} is not a valid URL") from None
        if not parts.hostname:
            raise ValueError(f"url {v!r} names no host (e.g. http://127.0.0.1:8000/v1)")
        del port
        return v.rstrip("/")


class ApiKeyConfig(BaseModel):
    """A named API key: who it is, the team and project its requests are reported under."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._@:-]{1,64}$")
    sha256: str
    team: str = Field(default="", max_length=64)
    project: str = Field(default="", max_length=64)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v.lower()):
            raise ValueError("sha256 must be a 64-character hex SHA-256 digest (tokenprint "
                             "serve --hash-key KEY prints one)")
        return v.lower()


class GatewayConfig(BaseModel):
    """The whole gateway."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)   # no NaN or infinite field

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    policy: Literal["carbon", "latency", "round-robin"] = "carbon"
    latency_target_s: float = Field(default=5.0, gt=0)
    api_keys_sha256: list[str] = Field(default_factory=list)
    # named keys with the team and project they bill to ([[api_key]] tables)
    api_key: list[ApiKeyConfig] = Field(default_factory=list)
    metrics_max_teams: int = Field(default=50, ge=1, le=10_000)   # team labels on /metrics
    results: str = "tokenprint-results"
    # a shared PostgreSQL ledger (tokenprint.database); None: SQLite in ``results``
    ledger_url: str | None = None
    idle: Literal["unattributed", "spread"] = "unattributed"
    # a source of tokenprint.carbon.resolver.SOURCES: annual | file | electricitymaps | watttime
    intensity: str = "annual"
    electricitymaps_token_env: str = "ELECTRICITYMAPS_TOKEN"
    electricitymaps_url: str = "https://api.electricitymap.org/v3"
    intensity_cache_s: float = Field(default=300.0, ge=0)
    # the chosen source's own options (WattTime: user_env, password_env, base_url, regions)
    intensity_options: dict[str, Any] = Field(default_factory=dict)
    # the signal the carbon policy routes by (None: the accounts' own intensity)
    routing_intensity: str | None = None
    routing_intensity_options: dict[str, Any] = Field(default_factory=dict)
    # contractual instruments for market-based Scope 2 on /metrics (a contracts TOML file)
    contracts: str | None = None
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    body_timeout_s: float = Field(default=30.0, gt=0)
    # a non-streamed upstream answer past this is a 502 (completions are kilobytes)
    max_upstream_body_bytes: int = Field(default=16 << 20, ge=1024)
    # a client that takes longer than this to accept one write of its stream has stopped
    # reading: the stream ends (499) and its upstream request and slot are freed
    client_send_timeout_s: float = Field(default=30.0, gt=0)
    # connections one client address may hold at once (the rest get 503 at once), so one
    # address cannot take every slot
    max_connections_per_client: int = Field(default=1024, ge=1)
    # limits safe on a public interface: request head size (uvicorn's h11 parser), connections
    # held at once, idle keep-alive, and one SSE event relayed from an upstream
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1 << 20)
    header_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=2048, ge=1)
    keepalive_timeout_s: float = Field(default=5.0, gt=0)
    max_event_bytes: int = Field(default=1 << 20, ge=1024)
    # /metrics, /health, /dashboard and /openapi.json: "public" (the default: they carry
    # aggregates, no request text) or "key" (the same API keys as the completion paths)
    open_endpoints: Literal["public", "key"] = "public"
    ledger_max_pending: int = Field(default=100_000, ge=100)
    request_timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_open_s: float = Field(default=30.0, ge=0)
    health_interval_s: float = Field(default=10.0, ge=0)
    store_text: bool = False
    scope: Literal["die", "device", "card", "server"] = "device"
    # the bounds the CLI enforces (tokenprint.carbon.amortize.check_lifetime), checked here too
    lifetime_years: float = Field(default=DEFAULT_LIFETIME_YEARS, ge=MIN_LIFETIME_YEARS,
                                  le=MAX_LIFETIME_YEARS)
    pue: float = Field(default=1.0, ge=1.0, le=10.0)   # tokenprint.carbon.operational.MAX_PUE
    workers: int = Field(default=1, ge=1, le=256)
    # the Batch API (tokenprint.gateway.batch_api): limits, and the share of each upstream's
    # capacity batch lines may use (live requests keep the rest); one process runs batches
    batch_max_file_bytes: int = Field(default=100_000_000, ge=1024)
    batch_max_lines: int = Field(default=50_000, ge=1)
    batch_max_open: int = Field(default=100, ge=1)
    batch_concurrency: int = Field(default=16, ge=1, le=10_000)
    batch_share: float = Field(default=0.8, gt=0, le=1)
    batch_runner: bool = True
    upstream: list[UpstreamConfig] = Field(min_length=1)

    @field_validator("ledger_url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        if v is not None and not is_url(v):
            raise ValueError(f"{redact(v)!r} is not a postgresql:// URL (leave ledger_url out "
                             "for the SQLite ledger in results)")
        return v

    @model_validator(mode="after")
    def _unique_keys(self) -> GatewayConfig:
        names = [k.name for k in self.api_key]
        if len(set(names)) != len(names):
            raise ValueError("api_key names must be unique")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        names = [u.name for u in self.upstream]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"upstream names must be unique; repeated: {', '.join(dup)}")
        return self

    @model_validator(mode="after")
    def _one_worker_when_metered(self) -> GatewayConfig:
        metered = [u.name for u in self.upstream if u.meter == "nvml"]
        if self.workers > 1 and metered:
            raise ValueError(f"workers = {self.workers} cannot meter upstream(s) "
                             f"{', '.join(metered)} with nvml: each worker process sees only its "
                             "own requests, so the GPUs' energy would be split wrongly; run one "
                             "worker on a metered host")
        return self

    @field_validator("intensity", "routing_intensity")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        from tokenprint.carbon.resolver import SOURCES

        if v is not None and v not in SOURCES:
            raise ValueError(f"unknown intensity source {v!r}; valid: {', '.join(SOURCES)}")
        return v

    @field_validator("api_keys_sha256")
    @classmethod
    def _hex(cls, v: list[str]) -> list[str]:
        for h in v:
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h.lower()):
                raise ValueError("api_keys_sha256 entries must be 64-character hex SHA-256 "
                                 "digests (tokenprint serve --hash-key KEY prints one)")
        return [h.lower() for h in v]


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored in the config for an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_config(doc: dict[str, Any], where: str, names: dict[str, str] | None = None
                 ) -> GatewayConfig:
    """Validate a gateway configuration; a ``TokenprintError`` names each wrong field (as
    ``names`` calls it, e.g. a command-line flag), the value given and what is valid."""
    try:
        return GatewayConfig.model_validate(doc)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            field = ".".join(map(str, e["loc"]))
            field = (names or {}).get(field, field)
            if e["type"] == "extra_forbidden":
                model = UpstreamConfig if e["loc"][0] == "upstream" else GatewayConfig
                msg = f"unknown field; valid: {', '.join(model.model_fields)}"
            else:
                msg = e["msg"].removeprefix("Value error, ")
                if e["type"] != "value_error" and isinstance(e.get("input"), int | float | str):
                    msg += f" (got {e['input']!r})"
            parts.append(f"{field}: {msg}" if field else msg)
        raise TokenprintError(f"{where}: " + "; ".join(parts)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway TOML file."""
    p = Path(path)
    return parse_config(read_toml_file(p, "gateway config"), f"gateway config {str(p)!r}")
