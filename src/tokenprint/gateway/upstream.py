"""HTTP to the inference servers behind the gateway (aiohttp: pooled keep-alive connections).

One ``UpstreamClient`` per gateway holds the connection pool. ``open`` sends a request and
returns once the response headers arrive; failures that happen before that (connect error,
timeout, reset, malformed HTTP, HTTP 3xx or 5xx) raise ``UpstreamFailed`` so the caller can retry
elsewhere without having sent the client anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

import aiohttp

POLL_S = 2.0   # how often a waiting read looks whether the upstream connection died


class UpstreamFailed(Exception):
    """Connect error, 5xx or timeout before the first byte: safe to retry elsewhere."""


class UpstreamResponse:
    """An open upstream response: status, headers, and the body as it arrives."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.closed = False
        self.status = resp.status
        self.content_type = resp.headers.get("content-type", "application/json")

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None once it passes ``limit`` bytes (raises
        ``aiohttp.ClientError`` if the upstream cuts it or breaks the framing)."""
        parts: list[bytes] = []
        size = 0
        while data := await self._resp.content.read(1 << 16):
            size += len(data)
            if size > limit:
                return None
            parts.append(data)
        return b"".join(parts)

    async def next_chunk(self) -> bytes:
        """The body bytes the next socket read delivers (all that is buffered); b"" at the
        end. A plain method rather than an async iterator: one await per chunk on the hot
        path. (A read that broken framing left waiting is woken by the client's watchdog.)"""
        return await self._resp.content.readany()

    def wake_if_stuck(self) -> bool:
        """aiohttp (3.14) closes the connection on broken chunked framing (a bad chunk size)
        but never wakes a read already waiting: if the connection is gone and the body neither
        ended nor failed, fail it now (``aiohttp.ClientPayloadError``). True if it did."""
        content = self._resp.content
        if content.is_eof() or content.exception() is not None:
            return False
        conn = self._resp.connection
        if conn is None or conn.transport is None or conn.transport.is_closing():
            content.set_exception(aiohttp.ClientPayloadError(
                "the upstream broke the chunked framing; the connection closed"))
            return True
        return False

    def close(self) -> None:
        """Give the connection back (closed instead if the body was not read to the end)."""
        self.closed = True
        self._resp.release()


class UpstreamClient:
    """A pooled client; ``start`` inside the event loop that will use it."""

    def __init__(self, request_timeout_s: float, connect_timeout_s: float,
                 max_connections: int = 1000) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s,
                                              sock_read=request_timeout_s)
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._open: weakref.WeakSet[UpstreamResponse] = weakref.WeakSet()
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the connection pool and start the watchdog of stuck reads."""
        connector = aiohttp.TCPConnector(limit=self._max, limit_per_host=0,
                                         keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              trust_env=False, auto_decompress=True)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Every ``POLL_S``, wake the reads broken framing left waiting (no per-chunk cost)."""
        while True:
            await asyncio.sleep(POLL_S)
            for resp in list(self._open):
                if not resp.closed:
                    resp.wake_if_stuck()

    async def close(self) -> None:
        """Stop the watchdog and close every pooled connection."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session (``start`` first)."""
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not called")
        return self._session

    async def open(self, name: str, url: str, body: bytes, headers: dict[str, str]
                   ) -> UpstreamResponse:
        """POST ``body`` (JSON) and wait for the response headers."""
        try:
            resp = await self.session.post(
                url, data=body, headers={"content-type": "application/json", **headers},
                allow_redirects=False)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # connect errors, resets, and answers that are not HTTP: a bad status line, a head
            # past aiohttp's limits (8 KiB a line), bytes that are no protocol at all
            why = getattr(exc, "message", None) or exc.__class__.__name__
            raise UpstreamFailed(f"{name}: {str(why).splitlines()[0][:200]}") from None
        if resp.status >= 500 or 300 <= resp.status < 400:
            # a redirect is never followed: the gateway's upstream is configured, not discovered
            resp.release()
            what = "a redirect, not followed" if resp.status < 500 else "a server error"
            raise UpstreamFailed(f"{name}: HTTP {resp.status} ({what})")
        out = UpstreamResponse(resp)
        self._open.add(out)
        return out

    async def healthy(self, url: str, headers: dict[str, str], timeout_s: float = 5.0) -> bool:
        """Whether ``GET url`` answers below 500 within ``timeout_s``."""
        try:
            async with self.session.get(
                    url, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                return resp.status < 500
        except (TimeoutError, aiohttp.ClientError):
            return False


__all__ = ["UpstreamClient", "UpstreamFailed", "UpstreamResponse"]
