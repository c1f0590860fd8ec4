"""The request ledger: one SQLite row per request, in the results directory (no text by default).

No answered request can lose its row. ``add`` first appends the row to the run's journal
(``ledger-journal/RUN.SEG.jsonl``, one ``write`` to the kernel, no fsync: a killed process cannot
undo it) — the proxy calls it *before* the response's final bytes — and then queues it for the
one writer thread, which commits batches to SQLite (WAL, ``synchronous = NORMAL``) and deletes a
journal segment once every row in it is committed. Readers never write: ``flush`` wakes the
writer and waits until it has committed what was queued. A run that was killed leaves its
journal behind; the next ledger that opens the folder (a gateway start, ``ledger check
--recover``) replays it, and ``ledger check`` counts its rows that are not yet in the database as
the run's gap. The writer retries a busy or locked database with backoff (rows wait in a bounded
queue; any overflow is counted, never hidden); ``status()`` tells ``/health`` when it is behind
or failing; every process keeps a row in ``runs`` (requests answered, rows dropped, a heartbeat,
a clean stop).
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

from tokenprint.errors import TokenprintError
from tokenprint.gateway.ledger_schema import (  # re-exported: callers import them from here
    COLUMNS,
    LEGACY_WIDTHS,
    NEWER_COLUMNS,
    SCHEMA,
    RequestOutcome,
)

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


JOURNAL_DIR = "ledger-journal"
SEGMENT_BYTES = 4 << 20     # a journal segment is closed at 4 MiB and deleted once committed
BEHIND_S = 5.0        # /health is degraded once the oldest queued row waits this long
BACKOFF_MAX_S = 2.0
ALIVE_BEAT_S = 10.0      # a run whose writer has not beaten for this long is not running


class Ledger:
    """Thread-safe SQLite ledger with a crash journal.

    ``add`` journals the record, then hands it to the writer thread that commits within
    ``flush_s`` (batching rows that arrive together), so the serving path never waits on the
    database; ``flush`` waits for the writer; ``close`` writes everything pending. ``private``
    (text is stored) creates the file and the journal readable by their owner only.
    """

    def __init__(self, results_dir: str | Path, flush_s: float = 0.05,
                 max_pending: int = 100_000, private: bool = False,
                 busy_timeout_s: float = 0.5, register_run: bool = True) -> None:
        d = Path(results_dir)
        path = ledger_path(d)
        self.private = private
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
            self.journal_dir = d / JOURNAL_DIR
            now = time.time()
            if register_run:  # a gateway process, not a reader such as ``ledger summary``
                with self.conn:
                    self.conn.execute("INSERT INTO runs (run_id, pid, started_utc, "
                                      "last_beat_utc) VALUES (?, ?, ?, ?)",
                                      (self.run_id, os.getpid(), now, now))
                self.recovered = recover_journals(self.conn, self.journal_dir,
                                                  skip=self.run_id)
                self.journal_dir.mkdir(exist_ok=True)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise TokenprintError(f"cannot open the ledger in {str(d)!r}: {exc}") from None
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
                with self._db_lock, self.conn:
                    rows = [r for r, _, _ in batch]
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
        summed by SQLite over the committed rows (the dashboard's query: it never waits for or
        drives the writer; rows arrive within one flush interval)."""
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
            found = {r[0]: r for p in segs if p.exists() for r in _journal_rows(p)[0]
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
        with contextlib.suppress(sqlite3.Error), self._db_lock, self.conn:
            self.conn.execute("UPDATE runs SET stopped_utc = ? WHERE run_id = ?",
                              (time.time(), self.run_id))
        if self._pending:
            log.error("ledger closed with %d rows unwritten (kept in %s for the next start): "
                      "%s", len(self._pending), self.journal_dir, self.failing)
        self.conn.close()


def _journal_rows(path: Path) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of one journal segment, and how many lines were unreadable (a torn last line
    of a process killed mid-write, or a foreign file)."""
    rows: list[tuple[Any, ...]] = []
    bad = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(row, list) and len(row) in (len(COLUMNS), *LEGACY_WIDTHS):
                rows.append(tuple(row) + (None,) * (len(COLUMNS) - len(row)))
            else:
                bad += 1
    return rows, bad


def _journal_runs(journal_dir: Path) -> dict[str, list[Path]]:
    """Journal segments by the run that wrote them."""
    found: dict[str, list[Path]] = {}
    if journal_dir.is_dir():
        for p in sorted(journal_dir.glob("run-*.jsonl")):
            found.setdefault(p.name.split(".", 1)[0], []).append(p)
    return found


def recover_journals(conn: sqlite3.Connection, journal_dir: Path, skip: str | None = None
                     ) -> int:
    """Replay the journals of runs that are no longer running into the database (rows already
    there are ignored) and delete them; returns the rows added."""
    added = 0
    for run_id, paths in _journal_runs(journal_dir).items():
        if run_id == skip:
            continue
        info = conn.execute("SELECT pid, last_beat_utc, stopped_utc FROM runs WHERE run_id = ?",
                            (run_id,)).fetchone()
        if info is not None and info[2] is None and _alive(info[0], info[1]):
            continue   # still running: its own writer commits these rows
        last: dict[Any, tuple[Any, ...]] = {}
        for p in paths:
            for row in _journal_rows(p)[0]:
                last[row[0]] = row   # a final row supersedes the request's open row
        rows = list(last.values())
        with conn:
            before = conn.total_changes
            conn.executemany(f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(COLUMNS))})", rows)
            added += conn.total_changes - before
            recorded = conn.execute("SELECT COUNT(*) FROM requests WHERE run_id = ?",
                                    (run_id,)).fetchone()[0]
            # what the journal shows it answered is known now, whatever the last beat said
            conn.execute("UPDATE runs SET answered = MAX(COALESCE(answered, 0), ?) "
                         "WHERE run_id = ?", (recorded, run_id))
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if rows:
            log.warning("ledger: recovered %d journaled rows of run %s (it was killed)",
                        len(rows), run_id)
    return added


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


def _existing_ledger(results_dir: str | Path) -> Path:
    """The ledger file of ``results_dir``; one clear error when there is none."""
    path = ledger_path(results_dir)
    if not path.is_file():
        raise TokenprintError(f"no ledger in {str(results_dir)!r} ({DB_NAME} not found); give "
                              "--results the folder a gateway (tokenprint serve) writes to")
    return path


def recover_folder(results_dir: str | Path) -> int:
    """Replay the journals of killed runs in ``results_dir`` into its ledger; rows added."""
    path = _existing_ledger(results_dir)
    conn = sqlite3.connect(path, timeout=5.0)
    try:
        return recover_journals(conn, Path(results_dir) / JOURNAL_DIR)
    except sqlite3.DatabaseError as exc:
        raise TokenprintError(f"cannot recover the ledger in {str(results_dir)!r}: "
                              f"{exc}") from None
    finally:
        conn.close()


def check(results_dir: str | Path) -> list[dict[str, Any]]:
    """Per gateway run: requests it answered, rows recorded, rows dropped, and whether it
    stopped cleanly — the gaps ``tokenprint ledger check`` reports."""
    path = _existing_ledger(results_dir)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _check(conn, results_dir)
    except sqlite3.DatabaseError as exc:
        raise TokenprintError(f"{str(path)!r} is not a readable ledger: {exc}") from None
    finally:
        conn.close()


def _check(conn: sqlite3.Connection, results_dir: str | Path) -> list[dict[str, Any]]:
    """``check``'s work on an open database."""
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "runs" not in have:
        return []
    runs = conn.execute("SELECT run_id, pid, started_utc, last_beat_utc, answered, dropped, "
                        "stopped_utc FROM runs ORDER BY started_utc").fetchall()
    journals = _journal_runs(Path(results_dir) / JOURNAL_DIR)
    out = []
    for run_id, pid, started, beat, answered, dropped, stopped in runs:
        recorded = conn.execute("SELECT COUNT(*) FROM requests WHERE run_id = ?",
                                (run_id,)).fetchone()[0]
        running = stopped is None and _alive(pid, beat)
        # rows a killed run journaled (its client got the answer) that are not committed
        ids = {row[0] for p in (journals.get(run_id, []) if not running else [])
               for row in _journal_rows(p)[0]}
        unrecorded = sum(conn.execute("SELECT 1 FROM requests WHERE id = ?",
                                      (rid,)).fetchone() is None for rid in ids)
        answered_n = max(int(answered or 0), int(recorded) + unrecorded)
        missing = max(answered_n - int(recorded) - int(dropped or 0), 0)
        out.append({"run_id": run_id, "pid": pid, "started_utc": started,
                    "last_beat_utc": beat, "stopped_cleanly": stopped is not None,
                    "running": running,
                    "answered": answered_n, "recorded": int(recorded),
                    "dropped": int(dropped or 0), "missing": missing,
                    "recoverable": unrecorded,
                    # a live run is judged on what it dropped; its last second's rows may
                    # still be queued
                    "ok": not dropped and (running or (stopped is not None
                                                       and missing == 0))})
    return out
