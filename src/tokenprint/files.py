"""Reading user files with errors that name the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from tokenprint.errors import TokenprintError


def read_toml_file(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file raises naming ``what`` and the path."""
    p = Path(path)
    if not p.is_file():
        raise TokenprintError(f"{what} {str(p)!r} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TokenprintError(f"{what} {str(p)!r} is not valid TOML: {exc}") from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically: a temporary file beside it, then a rename, so a reader
    never sees half a file and an interrupted write leaves the old one whole."""
    import os
    import tempfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
