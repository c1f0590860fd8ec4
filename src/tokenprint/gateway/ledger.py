"""The request ledger: one SQLite row per request, in the results directory (no text by default)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tokenprint.errors import TokenprintError

DB_NAME = "tokenprint.sqlite"
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
    prompt_text TEXT,
    completion_text TEXT
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time_utc);
"""
COLUMNS = ("id", "time_utc", "upstream", "model", "region", "endpoint", "status",
           "prompt_tokens", "completion_tokens", "ttft_s", "duration_s", "energy_j", "prefill_j",
           "decode_j", "operational_g", "embodied_g", "total_g", "intensity_g_per_kwh", "method",
           "attempts", "added_s", "intensity_source", "prompt_text", "completion_text")

NEWER_COLUMNS = {"added_s": "REAL", "intensity_source": "TEXT"}  # not in 0.1.0's ledgers


class Ledger:
    """Thread-safe SQLite ledger.

    ``add`` hands the record to a writer thread that commits within ``flush_s`` (batching rows
    that arrive together), so the serving path never waits on the disk; ``flush`` and ``close``
    write everything pending.
    """

    def __init__(self, results_dir: str | Path, flush_s: float = 0.05) -> None:
        d = Path(results_dir)
        try:
            d.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(d / DB_NAME, check_same_thread=False, timeout=30)
            self.conn.executescript(SCHEMA)
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(requests)")}
            for col, kind in NEWER_COLUMNS.items():
                if col not in have:
                    try:
                        self.conn.execute(f"ALTER TABLE requests ADD COLUMN {col} {kind}")
                    except sqlite3.OperationalError as exc:  # another worker added it first
                        if "duplicate column" not in str(exc):
                            raise
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.DatabaseError) as exc:
            raise TokenprintError(f"cannot open the ledger in {str(d)!r}: {exc}") from None
        self.lock = threading.Lock()       # guards the queue
        self._db_lock = threading.Lock()   # guards the connection
        self._pending: list[tuple[Any, ...]] = []
        self._wake = threading.Event()
        self._stop = False
        self._flush_s = flush_s
        self._writer = threading.Thread(target=self._run, daemon=True)
        self._writer.start()

    def add(self, rec: dict[str, Any]) -> None:
        """Queue one request for the writer (an id already present is ignored: never recorded
        twice)."""
        row = tuple(rec.get(c) for c in COLUMNS)
        with self.lock:
            self._pending.append(row)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            time.sleep(self._flush_s)
            self.flush()

    def flush(self) -> None:
        """Commit every queued record now."""
        with self.lock:
            rows, self._pending = self._pending, []
        if rows:
            with self._db_lock, self.conn:
                self.conn.executemany(
                        f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(COLUMNS))})", rows)

    def count(self) -> int:
        """Number of requests recorded."""
        self.flush()
        with self._db_lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def since(self, t0: float) -> list[dict[str, Any]]:
        """Requests recorded at or after epoch second ``t0``."""
        self.flush()
        with self._db_lock:
            cur = self.conn.execute("SELECT * FROM requests WHERE time_utc >= ? ORDER BY "
                                    "time_utc", (t0,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def binned(self, t0: float, bin_s: float) -> list[tuple[str, int, int, int, float, float]]:
        """(upstream, bin, requests, tokens, energy_j, carbon_g) per ``bin_s`` bin since ``t0``,
        summed by SQLite (the dashboard's query: no row leaves the database)."""
        self.flush()
        with self._db_lock:
            return [tuple(r) for r in self.conn.execute(
                "SELECT upstream, CAST((time_utc - ?) / ? AS INTEGER) AS bin, COUNT(*), "
                "SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), "
                "SUM(COALESCE(energy_j, 0)), SUM(COALESCE(total_g, 0)) FROM requests "
                "WHERE time_utc >= ? GROUP BY upstream, bin", (t0, bin_s, t0))]

    def summary(self, t0: float) -> list[dict[str, Any]]:
        """Totals per upstream and model since ``t0``."""
        self.flush()
        with self._db_lock:
            cur = self.conn.execute(
                "SELECT upstream, model, region, COUNT(*), SUM(prompt_tokens), "
                "SUM(completion_tokens), SUM(energy_j), SUM(operational_g), SUM(embodied_g), "
                "SUM(total_g), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) FROM requests "
                "WHERE time_utc >= ? GROUP BY upstream, model, region ORDER BY upstream", (t0,))
            keys = ("upstream", "model", "region", "requests", "prompt_tokens",
                    "completion_tokens", "energy_j", "operational_g", "embodied_g", "total_g",
                    "errors")
            return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        """Write what is pending and close the database."""
        self._stop = True
        self._wake.set()
        self._writer.join(timeout=5)
        self.flush()
        self.conn.close()
