"""The results store: an embedded SQLite database, one row per sweep point, committed as it ends.

Each point has a ``point_key`` (engine, model, device, dtype, batch, lengths, workload...) that is
unique: re-running a sweep skips points already stored, and an interrupted sweep loses at most the
point in flight.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tokenprint.errors import TokenprintError
from tokenprint.records import RunRecord, as_run_records

DB_NAME = "tokenprint.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    point_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ResultsStore:
    """SQLite store in ``results_dir/tokenprint.sqlite``."""

    def __init__(self, results_dir: str | Path) -> None:
        self.dir = Path(results_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TokenprintError(f"cannot create results directory {str(self.dir)!r}: {exc}"
                                  ) from None
        self.path = self.dir / DB_NAME
        try:
            self.conn = sqlite3.connect(self.path, timeout=30)
            self.conn.executescript(SCHEMA)
            self.conn.execute("PRAGMA journal_mode=WAL")
            cols = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
        except sqlite3.DatabaseError as exc:
            raise TokenprintError(f"results store {str(self.path)!r} is not usable: {exc}"
                                  ) from None
        need = {"run_id", "point_key", "status", "created_utc", "record"}
        if not need <= cols:
            raise TokenprintError(f"{str(self.path)!r} is not a tokenprint results store: its "
                                  f"'runs' table lacks {', '.join(sorted(need - cols))}; give "
                                  "another --results folder")

    @classmethod
    def open_existing(cls, results_dir: str | Path) -> ResultsStore:
        """Open a store that must already exist."""
        p = Path(results_dir)
        if not (p / DB_NAME).is_file():
            raise TokenprintError(
                f"no results store in {str(p)!r} (expected {DB_NAME}); run tokenprint bench "
                "first or pass --results DIR"
            )
        return cls(p)

    def has(self, point_key: str) -> bool:
        """Whether a point is already stored (any status)."""
        row = self.conn.execute("SELECT 1 FROM runs WHERE point_key = ?", (point_key,)).fetchone()
        return row is not None

    def add(self, record: RunRecord) -> None:
        """Store one point and commit at once. A point already stored is never recorded twice."""
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO runs (run_id, point_key, status, created_utc, record) "
                "VALUES (?, ?, ?, ?, ?)",
                (record["run_id"], record["point_key"], record["status"], record["timestamp"],
                 json.dumps(record, sort_keys=True)),
            )

    def records(self, status: str | None = None) -> list[RunRecord]:
        """All records, oldest first (optionally one status)."""
        q = "SELECT record FROM runs"
        args: tuple[str, ...] = ()
        if status:
            q += " WHERE status = ?"
            args = (status,)
        rows = self.conn.execute(q + " ORDER BY created_utc, rowid", args).fetchall()
        return as_run_records([json.loads(r[0]) for r in rows])

    def get(self, run_id: str) -> RunRecord:
        """One record by run id (a unique prefix is enough; ``latest``: the newest run)."""
        if run_id == "latest":
            rows = self.conn.execute("SELECT record FROM runs ORDER BY created_utc DESC, "
                                     "rowid DESC LIMIT 1").fetchall()
            if not rows:
                raise TokenprintError(f"no runs in {str(self.path)!r} yet; run tokenprint bench")
            return as_run_records([json.loads(rows[0][0])])[0]
        rows = self.conn.execute("SELECT record FROM runs WHERE run_id LIKE ?",
                                 (run_id + "%",)).fetchall()
        if not rows:
            known = [r["run_id"] for r in self.records()][:10]
            raise TokenprintError(
                f"no run {run_id!r} in {str(self.path)!r}; known runs include: "
                f"{', '.join(known) or '(none)'}"
            )
        if len(rows) > 1:
            raise TokenprintError(f"run id prefix {run_id!r} matches {len(rows)} runs; give more")
        return as_run_records([json.loads(rows[0][0])])[0]

    def close(self) -> None:
        """Close the database."""
        self.conn.close()
