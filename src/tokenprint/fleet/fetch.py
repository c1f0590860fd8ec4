"""One bounded HTTP GET for everything ``fleet`` reads (engine and exporter pages, Prometheus).

httpx bounds each socket read, not the whole answer: a server that drips a byte at a time would
hold a caller for ever. ``bounded_get`` bounds the whole answer in time and size, and turns every
failure into one ``TokenprintError`` line that starts with what the caller was doing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from tokenprint.errors import TokenprintError


@dataclass(frozen=True)
class Fetched:
    """An answer read whole: status, body bytes and the text encoding it declared."""

    status: int
    body: bytes
    encoding: str

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode(self.encoding, errors="replace")


def bounded_get(client: httpx.Client, url: str, doing: str, deadline_s: float,
                max_bytes: int, params: dict[str, str] | None = None) -> Fetched:
    """``GET url`` read whole within ``deadline_s`` and ``max_bytes``; ``doing`` starts the
    error line ("cannot scrape http://…")."""
    end = time.monotonic() + deadline_s
    parts: list[bytes] = []
    size = 0
    try:
        with client.stream("GET", url, params=params) as r:
            for data in r.iter_bytes():
                size += len(data)
                if size > max_bytes:
                    raise TokenprintError(f"{doing}: more than {max_bytes} bytes")
                if time.monotonic() > end:
                    raise TokenprintError(f"{doing}: not complete within {deadline_s:g} s")
                parts.append(data)
            return Fetched(r.status_code, b"".join(parts), r.encoding or "utf-8")
    except httpx.HTTPError as exc:
        raise TokenprintError(f"{doing}: {exc.__class__.__name__}: {exc}") from None
