"""Where the Batch API keeps its files, batches and lines: three tables in the ledger's own
database (the SQLite file in ``results`` or the shared PostgreSQL), so a gateway restarted
mid-batch resumes it, and no answered line is run again.

A batch is stored as its OpenAI-shaped object (JSON) plus the columns the runner queries; each
input line is a row that goes ``pending`` → ``done`` or ``failed`` with its result line, so the
output and error files are written from the rows once, at the end.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from tokenprint.database import Database
from tokenprint.gateway.ledger_recovery import ledger_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_files (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    filename TEXT,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    content TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_lines (
    batch_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    custom_id TEXT,
    body TEXT,
    status TEXT NOT NULL,
    result TEXT,
    PRIMARY KEY (batch_id, line)
);
"""
OPEN = ("validating", "in_progress", "finalizing", "cancelling")   # the runner's work


def new_id(prefix: str) -> str:
    """An id shaped as OpenAI's (``file-…``, ``batch_…``, ``batch_req_…``)."""
    return f"{prefix}{os.urandom(12).hex()}"


class BatchStore:
    """Files, batches and their lines in the ledger's database (thread-safe)."""

    def __init__(self, results_dir: str | Path, url: str | None = None) -> None:
        self.db = Database(url if url is not None else ledger_path(results_dir), timeout_s=5.0)
        self.db.ensure_schema(SCHEMA, {})
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    # ---- files ----------------------------------------------------------------------------

    def add_file(self, purpose: str, filename: str, content: str) -> dict[str, Any]:
        """Keep an uploaded file; its OpenAI file object."""
        fid, now = new_id("file-"), time.time()
        size = len(content.encode())
        with self.lock, self.db.transaction():
            self.db.run("INSERT INTO batch_files (id, purpose, filename, bytes, created_at, "
                        "content) VALUES (?, ?, ?, ?, ?, ?)",
                        (fid, purpose, filename, size, now, content))
        return _file_object(fid, purpose, filename, size, now)

    def file(self, fid: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.one("SELECT id, purpose, filename, bytes, created_at FROM batch_files "
                              "WHERE id = ?", (fid,))
        return None if row is None else _file_object(*row)

    def content(self, fid: str) -> str | None:
        with self.lock:
            row = self.db.one("SELECT content FROM batch_files WHERE id = ?", (fid,))
        return None if row is None else str(row[0])

    # ---- batches --------------------------------------------------------------------------

    def add_batch(self, doc: dict[str, Any], lines: list[tuple[int, str | None, str | None,
                                                               str, str | None]]) -> None:
        """A new batch and its lines: (line number, custom_id, body JSON, status, result)."""
        with self.lock, self.db.transaction():
            self.db.run("INSERT INTO batches (id, status, created_at, doc) VALUES (?, ?, ?, ?)",
                        (doc["id"], doc["status"], doc["created_at"], json.dumps(doc)))
            self.db.run_many("INSERT INTO batch_lines (batch_id, line, custom_id, body, status, "
                             "result) VALUES (?, ?, ?, ?, ?, ?)",
                             [(doc["id"], *ln) for ln in lines])

    def batch(self, bid: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.one("SELECT doc FROM batches WHERE id = ?", (bid,))
        return None if row is None else json.loads(row[0])

    def save(self, doc: dict[str, Any]) -> None:
        with self.lock, self.db.transaction():
            self.db.run("UPDATE batches SET status = ?, doc = ? WHERE id = ?",
                        (doc["status"], json.dumps(doc), doc["id"]))

    def batches(self, limit: int, after: str | None) -> list[dict[str, Any]]:
        """Newest first, ``limit`` of them after the batch ``after`` (OpenAI's paging)."""
        with self.lock:
            rows = self.db.rows("SELECT id, created_at, doc FROM batches ORDER BY created_at "
                                "DESC, id DESC")
        ids = [r[0] for r in rows]
        start = ids.index(after) + 1 if after in ids else 0
        return [json.loads(r[2]) for r in rows[start:start + limit]]

    def open_batches(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.rows("SELECT doc FROM batches WHERE status IN (?, ?, ?, ?) ORDER BY "
                                "created_at", OPEN)
        return [json.loads(r[0]) for r in rows]

    # ---- lines ----------------------------------------------------------------------------

    def pending(self, bid: str, limit: int) -> list[tuple[int, str | None, str]]:
        with self.lock:
            rows = self.db.rows("SELECT line, custom_id, body FROM batch_lines WHERE batch_id = ? "
                                "AND status = 'pending' ORDER BY line LIMIT ?", (bid, limit))
        return [(int(r[0]), r[1], str(r[2])) for r in rows]

    def finish(self, bid: str, line: int, status: str, result: dict[str, Any]) -> None:
        """A line's answer (``done``) or error (``failed``), once: a line already finished
        keeps its first result."""
        with self.lock, self.db.transaction():
            self.db.run("UPDATE batch_lines SET status = ?, result = ? WHERE batch_id = ? AND "
                        "line = ? AND status = 'pending'",
                        (status, json.dumps(result), bid, line))

    def counts(self, bid: str) -> dict[str, int]:
        with self.lock:
            rows = dict(self.db.rows("SELECT status, COUNT(*) FROM batch_lines WHERE "
                                     "batch_id = ? GROUP BY status", (bid,)))
        return {"total": int(sum(rows.values())), "completed": int(rows.get("done", 0)),
                "failed": int(rows.get("failed", 0)), "pending": int(rows.get("pending", 0))}

    def results(self, bid: str, status: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.rows("SELECT result FROM batch_lines WHERE batch_id = ? AND "
                                "status = ? ORDER BY line", (bid, status))
        return [json.loads(r[0]) for r in rows]

    def fail_pending(self, bid: str, code: str, message: str) -> None:
        """Every line not yet run becomes an error line (an expired or cancelled batch)."""
        with self.lock:
            rows = self.db.rows("SELECT line, custom_id FROM batch_lines WHERE batch_id = ? AND "
                                "status = 'pending'", (bid,))
        for line, custom_id in rows:
            self.finish(bid, int(line), "failed", error_line(custom_id, code, message))


def error_line(custom_id: str | None, code: str, message: str, line: int | None = None
               ) -> dict[str, Any]:
    """A line of the error file, as OpenAI writes it."""
    err: dict[str, Any] = {"code": code, "message": message}
    if line is not None:
        err["line"] = line
    return {"id": new_id("batch_req_"), "custom_id": custom_id, "response": None,
            "error": err}


def _file_object(fid: str, purpose: str, filename: str | None, size: int, created: float
                 ) -> dict[str, Any]:
    return {"id": fid, "object": "file", "bytes": int(size), "created_at": int(created),
            "filename": filename or "", "purpose": purpose, "status": "processed"}
