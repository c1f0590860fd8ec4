"""What the request ledger records: its schema (in SQLite's types; :mod:`tokenprint.database`
maps them for PostgreSQL), its columns in order, and the record one request leaves
(:class:`RequestOutcome`). :mod:`tokenprint.gateway.ledger` writes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenprint.gateway.accounting import RequestFootprint

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    time_utc REAL NOT NULL,
    upstream TEXT NOT NULL,
    model TEXT NOT NULL,
    region TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    ttft_s REAL,
    duration_s REAL,
    energy_j REAL,
    prefill_j REAL,
    decode_j REAL,
    operational_g REAL,
    embodied_g REAL,
    total_g REAL,
    intensity_g_per_kwh REAL,
    method TEXT,
    attempts INTEGER,
    added_s REAL,
    intensity_source TEXT,
    usage_source TEXT,
    note TEXT,
    run_id TEXT,
    prompt_text TEXT,
    completion_text TEXT,
    key_name TEXT,
    team TEXT,
    project TEXT,
    user_digest TEXT,
    tags TEXT,
    routing_signal TEXT,
    batch_id TEXT,
    deferred_s REAL
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time_utc);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pid INTEGER,
    started_utc REAL NOT NULL,
    last_beat_utc REAL,
    answered INTEGER DEFAULT 0,
    dropped INTEGER DEFAULT 0,
    stopped_utc REAL,
    host TEXT
);
"""
COLUMNS = ("id", "time_utc", "upstream", "model", "region", "endpoint", "status",
           "prompt_tokens", "completion_tokens", "ttft_s", "duration_s", "energy_j", "prefill_j",
           "decode_j", "operational_g", "embodied_g", "total_g", "intensity_g_per_kwh", "method",
           "attempts", "added_s", "intensity_source", "usage_source", "note", "run_id",
           "prompt_text", "completion_text", "key_name", "team", "project", "user_digest",
           "tags", "routing_signal", "batch_id", "deferred_s")
# the requests columns that hold numbers (SQLite REAL or INTEGER)
NUMERIC_COLUMNS = frozenset(re.findall(r"^\s+(\w+) (?:REAL|INTEGER)",
                                       SCHEMA.split("CREATE TABLE IF NOT EXISTS runs")[0],
                                       flags=re.M))
# journals written before the organisation columns: their rows are padded on replay
LEGACY_WIDTHS = (27, 32, 33)

# columns added after 0.1.0's ledgers (added on open)
NEWER_COLUMNS = {"added_s": "REAL", "intensity_source": "TEXT", "usage_source": "TEXT",
                 "note": "TEXT", "run_id": "TEXT", "key_name": "TEXT", "team": "TEXT",
                 "project": "TEXT", "user_digest": "TEXT", "tags": "TEXT",
                 "routing_signal": "TEXT", "batch_id": "TEXT", "deferred_s": "REAL"}
# columns of ``runs`` added later: the host a run's pid belongs to (a shared ledger's runs come
# from several hosts)
NEWER_RUN_COLUMNS = {"host": "TEXT"}


_FOOTPRINT_COLUMNS = ("energy_j", "prefill_j", "decode_j", "operational_g", "embodied_g",
                      "total_g", "intensity_g_per_kwh", "method", "intensity_source")


@dataclass(frozen=True)
class RequestOutcome:
    """One request as the ledger records it (``footprint`` is None when nothing was charged:
    a request refused before any upstream served it)."""

    id: str
    time_utc: float
    upstream: str
    model: str
    region: str
    endpoint: str
    status: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    duration_s: float | None = None
    attempts: int | None = None
    added_s: float | None = None
    usage_source: str | None = None
    note: str | None = None
    footprint: RequestFootprint | None = None
    prompt_text: str | None = None
    completion_text: str | None = None
    key_name: str | None = None       # who sent it (tokenprint.gateway.accounts)
    team: str | None = None
    project: str | None = None
    user_digest: str | None = None
    tags: str | None = None
    routing_signal: str | None = None   # what the routing policy ranked this upstream by
    batch_id: str | None = None         # a Batch API line (tokenprint.gateway.batches)
    deferred_s: float | None = None     # how long its batch waited for cleaner hours

    def row(self, run_id: str) -> tuple[Any, ...]:
        """Values in ``COLUMNS`` order."""
        fp = self.footprint.to_dict() if self.footprint is not None else {}
        return tuple(run_id if c == "run_id" else fp[c] if c in _FOOTPRINT_COLUMNS and fp
                     else getattr(self, c, None) for c in COLUMNS)
