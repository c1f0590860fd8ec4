"""uvicorn's fast HTTP protocol with the limits a public interface needs.

uvicorn's httptools protocol buffers a request head without bound and waits for it forever: ten
connections sending 50 MB of unfinished headers took the gateway from 152 to 651 MB, and
connections sending a byte at a time were never closed. This subclass answers 431 when a head
passes ``max_header_bytes``, closes a connection whose head is not complete within
``header_timeout_s`` (a connection that sends nothing included) or whose body is not complete
within ``body_timeout_s`` of its head (plus a second for the 408 to leave), and answers 503 at once
to a client address that already holds ``max_per_client`` connections — 2,047 connections
dripping a body byte every 2 s from one address held every slot before. Limits travel in an
environment variable so that worker processes, which import this class by name, get them too.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LIMITS_ENV = "TOKENPRINT_HTTP_LIMITS"
DEFAULT_LIMITS = (16_384, 10.0, 30.0, 1024)
BODY_GRACE_S = 1.0   # after the body deadline, time for the application's 408 to leave


def set_limits(max_header_bytes: int, header_timeout_s: float, body_timeout_s: float = 30.0,
               max_per_client: int = 1024) -> None:
    """Limits for every connection this process (and its workers) accept."""
    os.environ[LIMITS_ENV] = (f"{int(max_header_bytes)},{float(header_timeout_s)},"
                              f"{float(body_timeout_s)},{int(max_per_client)}")


def _limits() -> tuple[int, float, float, int]:
    raw = os.environ.get(LIMITS_ENV)
    if not raw:
        return DEFAULT_LIMITS
    size, head_s, body_s, per_client = raw.split(",")
    return int(size), float(head_s), float(body_s), int(per_client)


_BUSY_BODY = (b'{"error": {"message": "too many connections from this address", "type": '
              b'"server_error", "param": null, "code": "too_many_connections"}}')
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
         b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    """Cancel a timer if one is armed."""
    if timer is not None:
        timer.cancel()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a bounded, timed request head."""

    # connections held per client address, in this process
    per_client: ClassVar[dict[str, int]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head, self._head_timeout, self._body_timeout, self._max_per_client = _limits()
        self._head_bytes = 0
        self._in_body = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._rejected = False
        self._refused = False   # turned away at connect: uvicorn never saw the connection
        self._peer: str | None = None
        self._heads = 0   # request heads completed on this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        if self._peer is not None:
            held = self.per_client.get(self._peer, 0)
            if held >= self._max_per_client:
                self._refused = True
                transport.write(_BUSY)
                transport.close()
                return
            self.per_client[self._peer] = held + 1
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._peer is not None:
            left = self.per_client.get(self._peer, 1) - 1
            if left > 0:
                self.per_client[self._peer] = left
            else:
                self.per_client.pop(self._peer, None)
        self._disarm()
        self._disarm_body()
        super().connection_lost(exc)

    def _disarm_body(self) -> None:
        _cancel(self._body_timer)
        self._body_timer = None

    def _body_too_slow(self) -> None:
        self._body_timer = None
        self._close_if(self._in_body)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_timeout, self._too_slow)

    def _disarm(self) -> None:
        _cancel(self._head_timer)
        self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        self._close_if(not self._in_body)

    def _close_if(self, late: bool) -> None:
        """Close the connection when its head or body is still arriving at its deadline."""
        if late and not self.transport.is_closing():
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
        if self._rejected or self._refused:
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
        self._disarm_body()
        self._body_timer = self.loop.call_later(self._body_timeout + BODY_GRACE_S,
                                                self._body_too_slow)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        super().on_message_complete()
        self._in_body = False
        self._disarm_body()
        self._head_bytes = 0


__all__ = ["LIMITS_ENV", "LimitedHttpToolsProtocol", "set_limits"]
