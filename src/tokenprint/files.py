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
