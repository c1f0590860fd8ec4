"""uvicorn's fast HTTP protocol with the limits a public interface needs.

uvicorn's httptools protocol buffers a request head without bound and waits for it forever: ten
connections sending 50 MB of unfinished headers took the gateway from 152 to 651 MB, and
connections sending a byte at a time were never closed. This subclass answers 431 when a head
passes ``max_header_bytes`` and closes a connection whose head is not complete within
``header_timeout_s`` (a connection that sends nothing included). Limits travel in an environment
variable so that worker processes, which import this class by name, get them too.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LIMITS_ENV = "TOKENPRINT_HTTP_LIMITS"
DEFAULT_LIMITS = (16_384, 10.0)


def set_limits(max_header_bytes: int, header_timeout_s: float) -> None:
    """Limits for every connection this process (and its workers) accept."""
    os.environ[LIMITS_ENV] = f"{int(max_header_bytes)},{float(header_timeout_s)}"


def _limits() -> tuple[int, float]:
    raw = os.environ.get(LIMITS_ENV)
    if not raw:
        return DEFAULT_LIMITS
    size, timeout = raw.split(",")
    return int(size), float(timeout)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a bounded, timed request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head, self._head_timeout = _limits()
        self._head_bytes = 0
        self._in_body = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._rejected = False
        self._heads = 0   # request heads completed on this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self._in_body and not self.transport.is_closing():
            self.transport.close()

    def _reject_head(self) -> None:
        self._rejected = True
        msg = b"request head exceeds the gateway's limit"
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                             b"content-type: text/plain; charset=utf-8\r\n"
                             b"content-length: " + str(len(msg)).encode() + b"\r\n"
                             b"connection: close\r\n\r\n" + msg)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        in_head = not self._in_body
        heads = self._heads
        if in_head:
            self._arm()
        super().data_received(data)
        if (in_head and heads == self._heads and not self._in_body
                and not self.transport.is_closing()):
            # no head completed in this read: all of it was (unfinished) head
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._reject_head()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self._max_head:
            self._reject_head()
            return
        self._in_body = True
        self._heads += 1
        self._disarm()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        super().on_message_complete()
        self._in_body = False
        self._head_bytes = 0


__all__ = ["LIMITS_ENV", "LimitedHttpToolsProtocol", "set_limits"]
