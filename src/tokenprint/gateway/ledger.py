"""The request ledger: one row per request (no text by default), in a SQLite file in the results
directory or in a PostgreSQL database that several gateways share (``ledger_url``).

No answered request can lose its row. ``add`` first appends the row to the run's journal
(``ledger-journal/RUN.SEG.jsonl``, one ``write`` to the kernel, no fsync: a killed process cannot
undo it) — the proxy calls it *before* the response's final bytes — and then queues it for the
one writer thread, which commits batches (SQLite: WAL, ``synchronous = NORMAL``; PostgreSQL:
one transaction per batch, ``ON CONFLICT DO NOTHING``) and deletes a journal segment once every
row in it is committed. Readers never write: ``flush`` wakes the writer and waits until it has
committed what was queued. A run that was killed leaves its journal behind; the next ledger
that opens the folder (a gateway start, ``ledger check --recover``) replays it, and ``ledger
check`` counts its rows that are not yet in the database as the run's gap. The writer retries
a busy, locked or unreachable database with backoff (rows wait in a bounded queue; any overflow
is counted, never hidden); ``status()`` tells ``/health`` when it is behind or failing; every
process keeps a row in ``runs`` (requests answered, rows dropped, a heartbeat, a clean stop).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tokenprint.database import Database
from tokenprint.errors import TokenprintError
from tokenprint.gateway.ledger_recovery import (  # re-exported: callers import them from here
    ALIVE_BEAT_S,
    DB_NAME,
    HOST,
    JOURNAL_DIR,
    LEGACY_DB_NAME,
    check,
    journal_rows,
    ledger_path,
    recover_folder,
    recover_journals,
)
from tokenprint.gateway.ledger_schema import (  # re-exported: callers import them from here
    COLUMNS,
    NEWER_COLUMNS,
    NEWER_RUN_COLUMNS,
    SCHEMA,
    RequestOutcome,
)

__all__ = ["ALIVE_BEAT_S", "COLUMNS", "DB_NAME", "JOURNAL_DIR", "LEGACY_DB_NAME", "SCHEMA",
           "Ledger", "RequestOutcome", "check", "ledger_path", "recover_folder"]

log = logging.getLogger("tokenprint.gateway")

SEGMENT_BYTES = 4 << 20     # a journal segment is closed at 4 MiB and deleted once committed
BEHIND_S = 5.0        # /health is degraded once the oldest queued row waits this long
BACKOFF_MAX_S = 2.0


class Ledger:
    """Thread-safe SQLite ledger with a crash journal.

    ``add`` journals the record, then hands it to the writer thread that commits within
    ``flush_s`` (batching rows that arrive together), so the serving path never waits on the
    database; ``flush`` waits for the writer; ``close`` writes everything pending. ``private``
    (text is stored) creates the file and the journal readable by their owner only.
    """

    def __init__(self, results_dir: str | Path, flush_s: float = 0.05,
                 max_pending: int = 100_000, private: bool = False,
                 busy_timeout_s: float = 0.5, register_run: bool = True,
                 url: str | None = None) -> None:
        d = Path(results_dir)
        self.private = private
        try:
            d.mkdir(parents=True, exist_ok=True)
            self.db = Database(url if url is not None else ledger_path(d),
                               timeout_s=busy_timeout_s, private=private)
        except (OSError, sqlite3.Error) as exc:
            raise TokenprintError(f"cannot open the ledger in {str(d)!r}: {exc}") from None
        failures: tuple[type[BaseException], ...] = (OSError, *self.db.errors)
        try:
            if private and url is None:
                with contextlib.suppress(OSError):
                    os.chmod(ledger_path(d), 0o600)
            self.db.ensure_schema(SCHEMA, {"requests": NEWER_COLUMNS,
                                           "runs": NEWER_RUN_COLUMNS})
            self.run_id = f"run-{os.getpid()}-{os.urandom(4).hex()}"
            self.journal_dir = d / JOURNAL_DIR
            now = time.time()
            if register_run:  # a gateway process, not a reader such as ``ledger summary``
                with self.db.transaction():
                    self.db.run("INSERT INTO runs (run_id, pid, started_utc, last_beat_utc, "
                                "host) VALUES (?, ?, ?, ?, ?)",
                                (self.run_id, os.getpid(), now, now, HOST))
                self.recovered = recover_journals(self.db, self.journal_dir,
                                                  skip=self.run_id)
                self.journal_dir.mkdir(exist_ok=True)
        except failures as exc:
            self.db.close()
            raise TokenprintError(f"cannot open the ledger {self.db.where!r}: {exc}") from None
        self.journaled = register_run
        self.lock = threading.Lock()       # guards the queue, the journal and counters
        self._db_lock = threading.Lock()   # guards the connection
        self._write_lock = threading.Lock()  # one commit at a time (writer thread or close)
        self._committed = threading.Condition(self.lock)
        # (row, its journal segment, the segment of its open row or None)
        self._pending: list[tuple[tuple[Any, ...], int, int | None]] = []
        self._oldest: float | None = None   # monotonic arrival of the oldest queued row
        self._queued_total = 0               # rows ever queued
        self._done_total = 0                 # rows ever committed (or found already present)
        self._seg = 0
        self._seg_bytes = 0
        self._seg_rows: dict[int, int] = {}  # segment → rows (or open rows) not yet settled
        self._open: dict[str, int] = {}      # request id → segment of its open row
        self._fd: int | None = None
        self.max_pending = max_pending
        self.answered = 0
        self.dropped = 0
        self.failing: str | None = None
        self.last_ok = time.monotonic()
        self._wake = threading.Event()
        self._stop = False
        self._flush_s = flush_s
        self._insert = self.db.insert_unless_present("requests", COLUMNS)
        self._writer = threading.Thread(target=self._run, daemon=True, name="ledger-writer")
        self._writer.start()

    # ---- the journal --------------------------------------------------------------------

    def _segment_path(self, seg: int) -> Path:
        return self.journal_dir / f"{self.run_id}.{seg}.jsonl"

    def _journal(self, row: tuple[Any, ...]) -> None:
        """Append one row to the current segment (caller holds ``lock``); a full segment is
        closed and a new one opened."""
        if not self.journaled:
            return
        if self._fd is None or self._seg_bytes >= SEGMENT_BYTES:
            if self._fd is not None:
                os.close(self._fd)
                self._seg += 1
            self._fd = os.open(self._segment_path(self._seg),
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                               0o600 if self.private else 0o644)
            self._seg_bytes = 0
        line = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        os.write(self._fd, line)
        self._seg_bytes += len(line)
        self._seg_rows[self._seg] = self._seg_rows.get(self._seg, 0) + 1

    def _drop_committed_segments(self) -> None:
        """Delete every closed segment whose rows are all committed (caller holds ``lock``)."""
        for seg in [k for k, n in self._seg_rows.items() if n == 0 and k != self._seg]:
            del self._seg_rows[seg]
            with contextlib.suppress(FileNotFoundError):
                self._segment_path(seg).unlink()

    # ---- writing --------------------------------------------------------------------------

    def open(self, rec: RequestOutcome) -> None:
        """Journal a request whose answer has started (a stream's headers are going out) as an
        open row (status 500, "the answer never ended"). Its final row (``add``) supersedes it;
        if the process dies first, the replay keeps it, so a request the gateway started to
        answer always has a row. Open rows never go to the database while the run lives."""
        if not self.journaled:
            return
        row = rec.row(self.run_id)
        with self.lock:
            try:
                self._journal(row)
            except OSError as exc:
                self.failing = f"journal: {exc}"
                return
            self._open[rec.id] = self._seg

    def add(self, rec: RequestOutcome) -> bool:
        """Journal one request and queue it for the writer (an id already present is ignored:
        never recorded twice). Past ``max_pending`` queued rows the record is dropped and
        counted (False). Call it before the response's last bytes reach the client."""
        row = rec.row(self.run_id)
        with self.lock:
            self.answered += 1
            if len(self._pending) >= self.max_pending:
                self.dropped += 1   # counted; its open row, if any, is settled with it
                opened = self._open.pop(rec.id, None)
                if opened is not None:
                    self._seg_rows[opened] -= 1
                return False
            try:
                self._journal(row)
            except OSError as exc:   # a full or read-only disk: still queued, and said
                if self.failing is None:
                    log.warning("ledger journal write failed: %s", exc)
                self.failing = f"journal: {exc}"
            if not self._pending:
                self._oldest = time.monotonic()
            # the open row's segment (if any) may go once this row is committed
            self._pending.append((row, self._seg, self._open.pop(rec.id, None)))
            self._queued_total += 1
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
        """Commit the queue and the run's heartbeat; False (rows kept) on a database error.
        One call at a time: the snapshot, the commit and the removal from the queue are one
        step, so two callers can never remove each other's rows."""
        with self._write_lock:
            with self.lock:
                batch = list(self._pending)
                answered, dropped = self.answered, self.dropped
            try:
                with self._db_lock, self.db.transaction():
                    self.db.run_many(self._insert, [r for r, _, _ in batch])
                    self.db.run("UPDATE runs SET last_beat_utc = ?, answered = ?, "
                                "dropped = ? WHERE run_id = ?",
                                (time.time(), answered, dropped, self.run_id))
            except self.db.errors as exc:
                with self.lock:
                    if self.failing is None:
                        log.warning("ledger write failed, retrying: %s", exc)
                    self.failing = str(exc)
                return False
            with self.lock:
                del self._pending[:len(batch)]
                for _, seg, opened in batch:
                    self._seg_rows[seg] -= 1
                    if opened is not None:
                        self._seg_rows[opened] -= 1
                self._done_total += len(batch)
                self._drop_committed_segments()
                self._oldest = time.monotonic() if self._pending else None
                self.failing = None
                self.last_ok = time.monotonic()
                self._committed.notify_all()
            return True

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the writer has committed every record queued before this call (False if
        it could not within ``timeout_s``: the database refused; the rows stay queued)."""
        with self.lock:
            target = self._queued_total
            if self._done_total >= target:
                return True
        if not self._writer.is_alive():
            return self._write()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while self._done_total < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._committed.wait(left)
        return True

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

    # ---- reading (committed rows only; never writes) ---------------------------------------

    def count(self) -> int:
        """Number of requests recorded (after what is queued now is committed)."""
        self.flush()
        with self._db_lock:
            got = self.db.one("SELECT COUNT(*) FROM requests")
            return int(got[0]) if got else 0

    def since(self, t0: float) -> list[dict[str, Any]]:
        """Requests recorded at or after epoch second ``t0``."""
        self.flush()
        with self._db_lock:
            return self.db.dicts("SELECT * FROM requests WHERE time_utc >= ? ORDER BY "
                                 "time_utc", (t0,))

    def binned(self, t0: float, bin_s: float) -> list[tuple[str, int, int, int, float, float]]:
        """(upstream, bin, requests, tokens, energy_j, carbon_g) per ``bin_s`` bin since ``t0``,
        summed by SQLite over the committed rows (the dashboard's query: it never waits for or
        drives the writer; rows arrive within one flush interval)."""
        with self._db_lock:
            return [tuple(r) for r in self.db.rows(
                f"SELECT upstream, {self.db.floor_int('(time_utc - ?) / ?')} AS bin, "
                "COUNT(*), SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), "
                "SUM(COALESCE(energy_j, 0)), SUM(COALESCE(total_g, 0)) FROM requests "
                "WHERE time_utc >= ? GROUP BY upstream, bin", (t0, bin_s, t0))]

    def summary(self, t0: float) -> list[dict[str, Any]]:
        """Totals per upstream and model since ``t0``."""
        self.flush()
        with self._db_lock:
            got = self.db.rows(
                "SELECT upstream, model, region, COUNT(*), SUM(prompt_tokens), "
                "SUM(completion_tokens), SUM(energy_j), SUM(operational_g), SUM(embodied_g), "
                "SUM(total_g), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) FROM requests "
                "WHERE time_utc >= ? GROUP BY upstream, model, region ORDER BY upstream", (t0,))
        keys = ("upstream", "model", "region", "requests", "prompt_tokens",
                "completion_tokens", "energy_j", "operational_g", "embodied_g", "total_g",
                "errors")
        return [dict(zip(keys, row, strict=True)) for row in got]

    def close(self, retry_s: float = 10.0) -> None:
        """Write what is pending (retrying a busy database for up to ``retry_s``), mark the run
        stopped cleanly, and close the database. A journal whose rows could not be written
        stays for the next start to replay."""
        self._stop = True
        self._wake.set()
        self._writer.join(timeout=5)
        with self.lock:   # answers that never ended keep their open rows
            left = dict(self._open)
            self._open.clear()
        if left and self.journaled:
            segs = [self._segment_path(k) for k in sorted(set(left.values()))]
            found = {r[0]: r for p in segs if p.exists() for r in journal_rows(p)[0]
                     if r[0] in left}
            with self.lock:
                for rid, seg in left.items():
                    if rid in found:   # committed as it stands; its open row is settled
                        self._pending.append((found[rid], seg, None))
                    else:
                        self._seg_rows[seg] -= 1
                    self._queued_total += rid in found
        deadline = time.monotonic() + retry_s
        while not self._write() and time.monotonic() < deadline:
            time.sleep(0.1)
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if not self._pending:   # all committed: the open segment goes too
                self._seg += 1
                self._drop_committed_segments()
        with contextlib.suppress(*self.db.errors), self._db_lock, self.db.transaction():
            self.db.run("UPDATE runs SET stopped_utc = ? WHERE run_id = ?",
                        (time.time(), self.run_id))
        if self._pending:
            log.error("ledger closed with %d rows unwritten (kept in %s for the next start): "
                      "%s", len(self._pending), self.journal_dir, self.failing)
        self.db.close()


