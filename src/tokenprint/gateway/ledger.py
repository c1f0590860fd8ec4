"""The request ledger: one SQLite row per request, in the results directory (no text by default).

It cannot stop silently: the writer thread retries a busy or locked database with backoff (rows
wait in a bounded queue; any overflow is counted, never hidden), ``status()`` tells ``/health``
when it is behind or failing, and every gateway process keeps a row in ``runs`` (requests it
answered, rows it dropped, a heartbeat, a clean stop) so that ``tokenprint ledger check`` can
report gaps. SQLite runs in WAL mode with ``synchronous = NORMAL``: a committed row survives the
process being killed; what a SIGKILL can lose is the queue not yet committed — at most one
flush interval (``flush_s``, 50 ms) of rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenprint.errors import TokenprintError

if TYPE_CHECKING:
    from tokenprint.gateway.accounting import RequestFootprint

log = logging.getLogger("tokenprint.gateway")

DB_NAME = "ledger.sqlite"
# before 0.4 the ledger was tokenprint.sqlite, the results store's own file name: a bench run
# and a gateway with the default folders then shared one file (and one "runs" table)
LEGACY_DB_NAME = "tokenprint.sqlite"


def ledger_path(results_dir: str | Path) -> Path:
    """The ledger file in ``results_dir``: ledger.sqlite, or an older ledger kept in place."""
    d = Path(results_dir)
    legacy = d / LEGACY_DB_NAME
    if not (d / DB_NAME).exists() and legacy.is_file():
        try:
            con = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                con.close()
        except sqlite3.DatabaseError:
            tables = set()
        if "requests" in tables:
            return legacy
    return d / DB_NAME
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
    completion_text TEXT
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time_utc);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pid INTEGER,
    started_utc REAL NOT NULL,
    last_beat_utc REAL,
    answered INTEGER DEFAULT 0,
    dropped INTEGER DEFAULT 0,
    stopped_utc REAL
);
"""
COLUMNS = ("id", "time_utc", "upstream", "model", "region", "endpoint", "status",
           "prompt_tokens", "completion_tokens", "ttft_s", "duration_s", "energy_j", "prefill_j",
           "decode_j", "operational_g", "embodied_g", "total_g", "intensity_g_per_kwh", "method",
           "attempts", "added_s", "intensity_source", "usage_source", "note", "run_id",
           "prompt_text", "completion_text")

# columns added after 0.1.0's ledgers (added on open)
NEWER_COLUMNS = {"added_s": "REAL", "intensity_source": "TEXT", "usage_source": "TEXT",
                 "note": "TEXT", "run_id": "TEXT"}
BEHIND_S = 5.0        # /health is degraded once the oldest queued row waits this long
BACKOFF_MAX_S = 2.0
ALIVE_BEAT_S = 10.0      # a run whose writer has not beaten for this long is not running


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

    def row(self, run_id: str) -> tuple[Any, ...]:
        """Values in ``COLUMNS`` order."""
        fp = self.footprint.to_dict() if self.footprint is not None else {}
        return tuple(run_id if c == "run_id" else fp[c] if c in _FOOTPRINT_COLUMNS and fp
                     else getattr(self, c, None) for c in COLUMNS)


class Ledger:
    """Thread-safe SQLite ledger.

    ``add`` hands the record to a writer thread that commits within ``flush_s`` (batching rows
    that arrive together), so the serving path never waits on the disk; ``flush`` and ``close``
    write everything pending. ``private`` (text is stored) creates the file readable by its
    owner only.
    """

    def __init__(self, results_dir: str | Path, flush_s: float = 0.05,
                 max_pending: int = 100_000, private: bool = False,
                 busy_timeout_s: float = 0.5, register_run: bool = True) -> None:
        d = Path(results_dir)
        path = ledger_path(d)
        try:
            d.mkdir(parents=True, exist_ok=True)
            if private and not path.exists():
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            if private:
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)
            self.conn = sqlite3.connect(path, check_same_thread=False,
                                        timeout=busy_timeout_s)
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
            mode = self.conn.execute("PRAGMA synchronous").fetchone()[0]
            if mode != 1:  # NORMAL
                raise sqlite3.DatabaseError(f"synchronous is {mode}, not NORMAL (1)")
            self.run_id = f"run-{os.getpid()}-{os.urandom(4).hex()}"
            now = time.time()
            if register_run:  # a gateway process, not a reader such as ``ledger summary``
                with self.conn:
                    self.conn.execute("INSERT INTO runs (run_id, pid, started_utc, "
                                      "last_beat_utc) VALUES (?, ?, ?, ?)",
                                      (self.run_id, os.getpid(), now, now))
        except (OSError, sqlite3.DatabaseError) as exc:
            raise TokenprintError(f"cannot open the ledger in {str(d)!r}: {exc}") from None
        self.lock = threading.Lock()       # guards the queue and counters
        self._db_lock = threading.Lock()   # guards the connection
        self._pending: list[tuple[Any, ...]] = []
        self._oldest: float | None = None   # monotonic arrival of the oldest queued row
        self.max_pending = max_pending
        self.answered = 0
        self.dropped = 0
        self.failing: str | None = None
        self.last_ok = time.monotonic()
        self._wake = threading.Event()
        self._stop = False
        self._flush_s = flush_s
        self._writer = threading.Thread(target=self._run, daemon=True, name="ledger-writer")
        self._writer.start()

    def add(self, rec: RequestOutcome) -> bool:
        """Queue one request for the writer (an id already present is ignored: never recorded
        twice). Past ``max_pending`` queued rows the record is dropped and counted (False)."""
        row = rec.row(self.run_id)
        with self.lock:
            self.answered += 1
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return False
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(row)
        self._wake.set()
        return True

    def _run(self) -> None:
        backoff = self._flush_s
        while not self._stop:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            time.sleep(backoff)
            if self._write():
                backoff = self._flush_s
            else:  # busy or locked: keep the rows, try again later, never give up
                backoff = min(max(backoff * 2, 0.05), BACKOFF_MAX_S)
                self._wake.set()

    def _write(self) -> bool:
        """Commit the queue and the run's heartbeat; False (rows kept) on a database error."""
        with self.lock:
            rows = list(self._pending)
            answered, dropped = self.answered, self.dropped
        try:
            with self._db_lock, self.conn:
                if rows:
                    self.conn.executemany(
                        f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) VALUES "
                        f"({', '.join('?' * len(COLUMNS))})", rows)
                self.conn.execute("UPDATE runs SET last_beat_utc = ?, answered = ?, "
                                  "dropped = ? WHERE run_id = ?",
                                  (time.time(), answered, dropped, self.run_id))
        except sqlite3.Error as exc:
            with self.lock:
                if self.failing is None:
                    log.warning("ledger write failed, retrying: %s", exc)
                self.failing = str(exc)
            return False
        with self.lock:
            del self._pending[:len(rows)]
            self._oldest = time.monotonic() if self._pending else None
            self.failing = None
            self.last_ok = time.monotonic()
        return True

    def flush(self) -> bool:
        """Commit every queued record now (False if the database refused; they stay queued)."""
        return self._write()

    def status(self) -> dict[str, Any]:
        """For ``/health``: queued rows, how long the oldest has waited, drops, the last error;
        ``ok`` false when the ledger is failing, dropping or behind."""
        with self.lock:
            pending = len(self._pending)
            wait = time.monotonic() - self._oldest if self._oldest is not None else 0.0
            out = {"pending": pending, "oldest_wait_s": round(wait, 3),
                   "dropped": self.dropped, "error": self.failing}
        out["ok"] = out["error"] is None and out["dropped"] == 0 and wait < BEHIND_S
        return out

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

    def close(self, retry_s: float = 10.0) -> None:
        """Write what is pending (retrying a busy database for up to ``retry_s``), mark the run
        stopped cleanly, and close the database."""
        self._stop = True
        self._wake.set()
        self._writer.join(timeout=5)
        deadline = time.monotonic() + retry_s
        while not self._write() and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(sqlite3.Error), self._db_lock, self.conn:
            self.conn.execute("UPDATE runs SET stopped_utc = ? WHERE run_id = ?",
                              (time.time(), self.run_id))
        if self._pending:
            log.error("ledger closed with %d rows unwritten: %s", len(self._pending),
                      self.failing)
        self.conn.close()


def _alive(pid: int | None, last_beat_utc: float | None) -> bool:
    """Whether a gateway run is still going: its process exists here and its writer beat
    within ``ALIVE_BEAT_S`` (it beats every second)."""
    if pid is None or last_beat_utc is None or time.time() - last_beat_utc > ALIVE_BEAT_S:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another user
        return True
    return True


def check(results_dir: str | Path) -> list[dict[str, Any]]:
    """Per gateway run: requests it answered, rows recorded, rows dropped, and whether it
    stopped cleanly — the gaps ``tokenprint ledger check`` reports."""
    path = ledger_path(results_dir)
    if not path.is_file():
        raise TokenprintError(f"no ledger in {str(results_dir)!r} ({DB_NAME} not found)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" not in have:
            return []
        runs = conn.execute("SELECT run_id, pid, started_utc, last_beat_utc, answered, dropped, "
                            "stopped_utc FROM runs ORDER BY started_utc").fetchall()
        out = []
        for run_id, pid, started, beat, answered, dropped, stopped in runs:
            recorded = conn.execute("SELECT COUNT(*) FROM requests WHERE run_id = ?",
                                    (run_id,)).fetchone()[0]
            missing = max(int(answered or 0) - int(recorded) - int(dropped or 0), 0)
            running = stopped is None and _alive(pid, beat)
            out.append({"run_id": run_id, "pid": pid, "started_utc": started,
                        "last_beat_utc": beat, "stopped_cleanly": stopped is not None,
                        "running": running,
                        "answered": int(answered or 0), "recorded": int(recorded),
                        "dropped": int(dropped or 0), "missing": missing,
                        # a live run is judged on what it dropped; its last second's rows may
                        # still be queued
                        "ok": not dropped and (running or (stopped is not None
                                                           and missing == 0))})
        return out
    finally:
        conn.close()
