"""After a kill: the ledger's journals read back, replayed into the database, and the gaps per
gateway run that ``tokenprint ledger check`` reports.

A journal is local to the host whose gateway wrote it (``RESULTS/ledger-journal``); the
database may be a shared PostgreSQL. A run is judged alive by its heartbeat and, on its own
host, by its process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from tokenprint.database import Database
from tokenprint.errors import TokenprintError
from tokenprint.gateway.ledger_schema import (
    COLUMNS,
    LEGACY_WIDTHS,
    NEWER_COLUMNS,
    NEWER_RUN_COLUMNS,
    SCHEMA,
)

log = logging.getLogger("tokenprint.gateway")

DB_NAME = "ledger.sqlite"
# before 0.4 the ledger was tokenprint.sqlite, the results store's own file name: a bench run
# and a gateway with the default folders then shared one file (and one "runs" table)
LEGACY_DB_NAME = "tokenprint.sqlite"

JOURNAL_DIR = "ledger-journal"
ALIVE_BEAT_S = 10.0      # a run whose writer has not beaten for this long is not running
HOST = socket.gethostname()


def ledger_path(results_dir: str | Path) -> Path:
    """The SQLite ledger in ``results_dir``: ledger.sqlite, or an older ledger kept in place."""
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


def journal_rows(path: Path) -> tuple[list[tuple[Any, ...]], int]:
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


def journal_runs(journal_dir: Path) -> dict[str, list[Path]]:
    """Journal segments by the run that wrote them."""
    found: dict[str, list[Path]] = {}
    if journal_dir.is_dir():
        for p in sorted(journal_dir.glob("run-*.jsonl")):
            found.setdefault(p.name.split(".", 1)[0], []).append(p)
    return found


def recover_journals(db: Database, journal_dir: Path, skip: str | None = None) -> int:
    """Replay the journals of runs that are no longer running into the database (rows already
    there are ignored) and delete them; returns the rows added."""
    added = 0
    insert = db.insert_unless_present("requests", COLUMNS)
    for run_id, paths in journal_runs(journal_dir).items():
        if run_id == skip:
            continue
        info = db.one("SELECT pid, last_beat_utc, stopped_utc, host FROM runs WHERE run_id = ?",
                      (run_id,))
        if info is not None and info[2] is None and alive(info[0], info[1], info[3]):
            continue   # still running: its own writer commits these rows
        last: dict[Any, tuple[Any, ...]] = {}
        for p in paths:
            for row in journal_rows(p)[0]:
                last[row[0]] = row   # a final row supersedes the request's open row
        rows = list(last.values())
        with db.transaction():
            added += db.run_many(insert, rows)
            recorded = db.one("SELECT COUNT(*) FROM requests WHERE run_id = ?", (run_id,))
            # what the journal shows it answered is known now, whatever the last beat said
            db.run(f"UPDATE runs SET answered = {db.greatest('COALESCE(answered, 0)', '?')} "
                   "WHERE run_id = ?", (recorded[0] if recorded else 0, run_id))
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if rows:
            log.warning("ledger: recovered %d journaled rows of run %s (it was killed)",
                        len(rows), run_id)
    return added


def alive(pid: int | None, last_beat_utc: float | None, host: str | None = None) -> bool:
    """Whether a gateway run is still going: its writer beat within ``ALIVE_BEAT_S`` (it beats
    every second) and, when it ran on this host, its process exists."""
    if pid is None or last_beat_utc is None or time.time() - last_beat_utc > ALIVE_BEAT_S:
        return False
    if host is not None and host != HOST:
        return True   # another host's process: its heartbeat is all we can see
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another user
        return True
    return True


def open_existing(results_dir: str | Path, url: str | None = None,
                  read_only: bool = True) -> Database:
    """The ledger of ``results_dir`` (or the database at ``url``); one clear error when there
    is none."""
    if url is not None:
        db = Database(url, read_only=read_only, timeout_s=5.0)
        if "requests" not in db.tables():
            db.close()
            raise TokenprintError(f"no ledger in the database {db.where} (no requests table); "
                                  "point a gateway at it first (ledger_url in gateway.toml)")
        return db
    path = ledger_path(results_dir)
    if not path.is_file():
        raise TokenprintError(f"no ledger in {str(results_dir)!r} ({DB_NAME} not found); give "
                              "--results the folder a gateway (tokenprint serve) writes to, or "
                              "--ledger its database URL")
    return Database(path, read_only=read_only, timeout_s=5.0)


def recover_folder(results_dir: str | Path, url: str | None = None) -> int:
    """Replay the journals of killed runs in ``results_dir`` into its ledger; rows added."""
    db = open_existing(results_dir, url, read_only=False)
    try:
        db.ensure_schema(SCHEMA, {"requests": NEWER_COLUMNS, "runs": NEWER_RUN_COLUMNS})
        return recover_journals(db, Path(results_dir) / JOURNAL_DIR)
    except db.errors as exc:
        raise TokenprintError(f"cannot recover the ledger in {db.where!r}: {exc}") from None
    finally:
        db.close()


def check(results_dir: str | Path, url: str | None = None) -> list[dict[str, Any]]:
    """Per gateway run: requests it answered, rows recorded, rows dropped, and whether it
    stopped cleanly — the gaps ``tokenprint ledger check`` reports."""
    db = open_existing(results_dir, url)
    try:
        return _check(db, results_dir)
    except db.errors as exc:
        raise TokenprintError(f"{db.where!r} is not a readable ledger: {exc}") from None
    finally:
        db.close()


def _check(db: Database, results_dir: str | Path) -> list[dict[str, Any]]:
    """``check``'s work on an open database."""
    if "runs" not in db.tables():
        return []
    host = "host" if "host" in db.columns("runs") else "NULL"
    runs = db.rows(f"SELECT run_id, pid, started_utc, last_beat_utc, answered, dropped, "
                   f"stopped_utc, {host} FROM runs ORDER BY started_utc")
    counts = dict(db.rows("SELECT run_id, COUNT(*) FROM requests GROUP BY run_id"))
    journals = journal_runs(Path(results_dir) / JOURNAL_DIR)
    out = []
    for run_id, pid, started, beat, answered, dropped, stopped, run_host in runs:
        recorded = int(counts.get(run_id, 0))
        running = stopped is None and alive(pid, beat, run_host)
        # rows a killed run journaled (its client got the answer) that are not committed
        ids = {row[0] for p in (journals.get(run_id, []) if not running else [])
               for row in journal_rows(p)[0]}
        unrecorded = sum(db.one("SELECT 1 FROM requests WHERE id = ?", (rid,)) is None
                         for rid in ids)
        answered_n = max(int(answered or 0), recorded + unrecorded)
        missing = max(answered_n - recorded - int(dropped or 0), 0)
        out.append({"run_id": run_id, "pid": pid, "host": run_host, "started_utc": started,
                    "last_beat_utc": beat, "stopped_cleanly": stopped is not None,
                    "running": running,
                    "answered": answered_n, "recorded": recorded,
                    "dropped": int(dropped or 0), "missing": missing,
                    "recoverable": unrecorded,
                    # a live run is judged on what it dropped; its last second's rows may
                    # still be queued
                    "ok": not dropped and (running or (stopped is not None
                                                       and missing == 0))})
    return out
