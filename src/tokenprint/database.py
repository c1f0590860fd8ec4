"""Where accounts live: a SQLite file (the embedded default) or one PostgreSQL database that
several processes on several hosts share — the gateway's request ledger (``ledger_url``) and
``watch``'s intervals (``--ledger``).

:class:`Database` is the one place that knows the two dialects apart: placeholders, "insert
unless present", the schema's types, schema changes under concurrent starts, and reconnecting
after the server went away. Callers write plain SQL with ``?``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tokenprint.errors import TokenprintError

URL_SCHEMES = ("postgresql", "postgres")
# one advisory lock id for schema changes (processes starting together)
_SCHEMA_LOCK = 0x746F6B656E          # "token"


def is_url(target: str | Path | None) -> bool:
    """Whether ``target`` names a database server rather than a folder."""
    return isinstance(target, str) and urlsplit(target).scheme in URL_SCHEMES


def check_url(url: str) -> str:
    """``url`` if it is a PostgreSQL URL; one clear error otherwise."""
    if not is_url(url):
        raise TokenprintError(f"ledger URL {redact(url)!r} is invalid; give "
                              "postgresql://USER@HOST:PORT/DATABASE (or leave it out for the "
                              "SQLite ledger in the results folder)")
    return url


def redact(url: str) -> str:
    """``url`` with its password replaced by ***, for messages and records."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _plain(value: Any) -> Any:
    """PostgreSQL's SUM of integers is numeric: give it back as int (or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Database:
    """One connection to a SQLite file or a PostgreSQL database, with ``?`` placeholders.

    Not thread-safe on its own: callers guard it with a lock. PostgreSQL runs in autocommit
    (each statement its own transaction) except inside :meth:`transaction`; a connection the
    server dropped is reopened on the next call.
    """

    def __init__(self, target: str | Path, *, read_only: bool = False,
                 timeout_s: float = 0.5, private: bool = False) -> None:
        self.postgres = is_url(target)
        self.target = str(target)
        self.where = redact(self.target) if self.postgres else self.target
        self.read_only = read_only
        self.timeout_s = timeout_s
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise TokenprintError("a PostgreSQL ledger needs psycopg: pip install "
                                      "'tokenprint[postgres]'") from None
            self._pg = psycopg
            self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        else:
            self.errors = (sqlite3.Error,)
            if private and not read_only and not Path(target).exists():
                Path(target).touch(mode=0o600)
        self.conn: Any = None
        self._connect(first=True)

    # ---- connection ---------------------------------------------------------------------

    def _connect(self, first: bool = False) -> None:
        """Open the connection; a reconnect's failure is the driver's error (the writer counts
        it and retries), the first one's a clear message."""
        if self.postgres:
            try:
                self.conn = self._pg.connect(self.target, autocommit=True,
                                             connect_timeout=max(int(self.timeout_s * 10), 2),
                                             application_name="tokenprint-ledger")
            except self._pg.Error as exc:
                if not first:
                    raise
                raise TokenprintError(f"cannot reach the ledger database {self.where}: "
                                      f"{str(exc).strip().splitlines()[0]}") from None
            if not self.read_only:   # a lock waits at most this long; then the writer retries
                self.conn.execute(f"SET lock_timeout = {int(self.timeout_s * 1000)}")
        elif self.read_only:
            self.conn = sqlite3.connect(f"file:{self.target}?mode=ro", uri=True,
                                        timeout=self.timeout_s, check_same_thread=False)
        else:
            self.conn = sqlite3.connect(self.target, timeout=self.timeout_s,
                                        check_same_thread=False)

    def _live(self) -> Any:
        """The connection, reopened if the server dropped it."""
        if self.postgres and (self.conn is None or self.conn.closed or self.conn.broken):
            with contextlib.suppress(Exception):
                if self.conn is not None:
                    self.conn.close()
            self._connect()
        return self.conn

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()

    # ---- statements -----------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or not at all."""
        conn = self._live()
        if self.postgres:
            with conn.transaction():
                yield
        else:
            with conn:
                yield

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; rows changed."""
        cur = self._live().execute(self._sql(sql), tuple(params))
        return int(cur.rowcount or 0)

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Execute one statement per row; rows changed."""
        if not rows:
            return 0
        if self.postgres:
            with self._live().cursor() as cur:
                cur.executemany(self._sql(sql), rows)
                return int(cur.rowcount or 0)
        return int(self._live().executemany(sql, rows).rowcount or 0)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._live().execute(self._sql(sql), tuple(params))
        return [tuple(_plain(v) for v in r) for r in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        got = self.rows(sql, params)
        return got[0] if got else None

    def table(self, sql: str, params: Sequence[Any] = ()
              ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The result's column names and rows (names even when there are no rows)."""
        cur = self._live().execute(self._sql(sql), tuple(params))
        names = [d[0] for d in cur.description]
        return names, [tuple(_plain(v) for v in r) for r in cur.fetchall()]

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        names, rows = self.table(sql, params)
        return [dict(zip(names, r, strict=True)) for r in rows]

    # ---- dialect ----------------------------------------------------------------------------

    def insert_unless_present(self, table: str, columns: Sequence[str]) -> str:
        """INSERT that skips a row whose primary key is already there (never twice)."""
        marks = ", ".join("?" * len(columns))
        head = f"INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        if self.postgres:
            return f"INSERT {head} ON CONFLICT DO NOTHING"
        return f"INSERT OR IGNORE {head}"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})" if self.postgres else f"MAX({a}, {b})"

    def floor_int(self, expr: str) -> str:
        """``expr`` rounded down to an integer (SQLite's CAST truncates; PostgreSQL's rounds)."""
        return f"CAST(FLOOR({expr}) AS BIGINT)" if self.postgres else f"CAST({expr} AS INTEGER)"

    def tables(self) -> set[str]:
        if self.postgres:
            got = self.rows("SELECT table_name FROM information_schema.tables WHERE "
                            "table_schema = current_schema()")
        else:
            got = self.rows("SELECT name FROM sqlite_master WHERE type='table'")
        return {str(r[0]) for r in got}

    def columns(self, table: str) -> set[str]:
        if self.postgres:
            got = self.rows("SELECT column_name FROM information_schema.columns WHERE "
                            "table_schema = current_schema() AND table_name = ?", (table,))
            return {str(r[0]) for r in got}
        return {str(r[1]) for r in self.rows(f"PRAGMA table_info({table})")}

    def ensure_schema(self, schema: str, newer: dict[str, dict[str, str]]) -> None:
        """Create the tables (``schema``, SQLite types) and add ``newer`` columns per table to
        an older database; safe when several processes start at once."""
        if self.postgres:
            ddl = re.sub(r"\bREAL\b", "DOUBLE PRECISION", schema)
            ddl = re.sub(r"\bINTEGER\b", "BIGINT", ddl)
            with self.transaction():
                self.run("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
                for stmt in filter(str.strip, ddl.split(";")):
                    self.run(stmt)
                for table, cols in newer.items():
                    for col, kind in cols.items():
                        kind = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT"}.get(kind, kind)
                        self.run(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {col} {kind}")
            return
        self.conn.executescript(schema)
        for table, cols in newer.items():
            have = self.columns(table)
            for col, kind in cols.items():
                if col in have:
                    continue
                try:
                    self.run(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")
                except sqlite3.OperationalError as exc:  # another worker added it first
                    if "duplicate column" not in str(exc):
                        raise
        self.run("PRAGMA journal_mode=WAL")
        self.run("PRAGMA synchronous=NORMAL")
        mode = self.rows("PRAGMA synchronous")[0][0]
        if mode != 1:  # NORMAL
            raise sqlite3.DatabaseError(f"synchronous is {mode}, not NORMAL (1)")
