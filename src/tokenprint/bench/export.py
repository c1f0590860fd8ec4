"""Read records from a results store or an export, and write exports (CSV, Parquet, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tokenprint.bench.store import DB_NAME, ResultsStore
from tokenprint.errors import TokenprintError
from tokenprint.files import atomic_path, write_text_atomic
from tokenprint.records import RunRecord, as_run_records

EXPORT_FORMATS = ("csv", "parquet", "json")


def read_records(path: str | Path) -> list[RunRecord]:
    """Records from a results directory, its SQLite file, or a CSV/JSON/Parquet export."""
    p = Path(path)
    if p.is_dir() or p.name == DB_NAME:
        store = ResultsStore.open_existing(p if p.is_dir() else p.parent)
        try:
            return store.records()
        finally:
            store.close()
    if not p.is_file():
        raise TokenprintError(f"results {str(p)!r} do not exist")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text("utf-8"))
            if not isinstance(data, list):
                raise TokenprintError(f"{str(p)!r} must hold a JSON list of records")
            return as_run_records(data)
        if p.suffix == ".csv":
            return as_run_records(pd.read_csv(p).to_dict("records"))
        if p.suffix == ".parquet":
            return as_run_records(pd.read_parquet(p).to_dict("records"))
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        # JSON, CSV and Parquet readers' own errors: the file is not an export
        raise TokenprintError(f"cannot read run records from {str(p)!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}"
                              ) from None
    raise TokenprintError(f"cannot read records from {str(p)!r}; use a results directory or a "
                          ".csv, .json or .parquet export")


def flat(records: list[RunRecord]) -> pd.DataFrame:
    """Records as a table; nested dicts (versions) become ``versions.torch`` columns."""
    return pd.json_normalize([dict(r) for r in records])


def export(records: list[RunRecord], fmt: str, out: Path | None) -> str | None:
    """Write records in ``fmt``; return the text when ``out`` is None (CSV/JSON only)."""
    if fmt not in EXPORT_FORMATS:
        raise TokenprintError(f"unknown format {fmt!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if fmt == "json":
        text = json.dumps(records, indent=2, sort_keys=True)
        if out is None:
            return text
        write_text_atomic(out, text)
        return None
    df = flat(records)
    if fmt == "csv":
        if out is None:
            return str(df.to_csv(index=False))
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
        return None
    if out is None:
        raise TokenprintError("parquet export needs --out FILE")
    try:
        with atomic_path(out) as tmp:
            df.to_parquet(tmp, index=False)
    except ImportError:
        raise TokenprintError("parquet export needs pyarrow: pip install 'tokenprint[parquet]'"
                              ) from None
    return None
