"""Reading user files with errors that name the file."""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenprint.errors import TokenprintError


def existing_file(path: str | Path, what: str) -> Path:
    """The path if it is a readable file; else one error saying what it is instead."""
    p = Path(path)
    if p.is_dir():
        raise TokenprintError(f"{what} {str(p)!r} is a directory, not a file")
    if not p.is_file():
        raise TokenprintError(f"{what} {str(p)!r} does not exist")
    return p


def read_toml_file(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file raises naming ``what`` and the path."""
    p = existing_file(path, what)
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TokenprintError(f"{what} {str(p)!r} is not valid TOML: {exc}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) to write to; renamed over ``path`` when the
    block succeeds, removed when it fails, so a reader never sees half a file and an interrupted
    write leaves the old one whole."""
    target = Path(path)
    if target.is_dir():
        raise TokenprintError(f"{str(target)!r} is a directory; give a file name to write")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix,
                               dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # as an ordinary new file would be (mkstemp makes 0600)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
