"""HTTP to the inference servers behind the gateway (aiohttp: pooled keep-alive connections).

One ``UpstreamClient`` per gateway holds the connection pool. ``open`` sends a request and
returns once the response headers arrive; failures that happen before that (connect error,
timeout, reset, malformed HTTP, HTTP 3xx or 5xx) raise ``UpstreamFailed`` so the caller can retry
elsewhere without having sent the client anything.
"""

from __future__ import annotations

import asyncio

import aiohttp

POLL_S = 2.0   # how often a waiting read looks whether the upstream connection died


class UpstreamFailed(Exception):
    """Connect error, 5xx or timeout before the first byte: safe to retry elsewhere."""


class UpstreamResponse:
    """An open upstream response: status, headers, and the body as it arrives."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
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
        path.

        aiohttp (3.14) closes the connection on broken chunked framing (a bad chunk size) but
        never wakes a read already waiting: the wait is cut every ``POLL_S`` to look, and a
        closed connection raises ``aiohttp.ClientPayloadError``.
        """
        content = self._resp.content
        while True:
            poll = asyncio.timeout(POLL_S)
            try:
                async with poll:
                    return await content.readany()
            except TimeoutError:
                if not poll.expired():   # aiohttp's own read timeout: the upstream stalled
                    raise
                conn = self._resp.connection
                if conn is None or conn.transport is None or conn.transport.is_closing():
                    raise aiohttp.ClientPayloadError(
                        "the upstream broke the chunked framing; the connection closed") from None

    def close(self) -> None:
        """Give the connection back (closed instead if the body was not read to the end)."""
        self._resp.release()


class UpstreamClient:
    """A pooled client; ``start`` inside the event loop that will use it."""

    def __init__(self, request_timeout_s: float, connect_timeout_s: float,
                 max_connections: int = 1000) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s,
                                              sock_read=request_timeout_s)
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool."""
        connector = aiohttp.TCPConnector(limit=self._max, limit_per_host=0,
                                         keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              trust_env=False, auto_decompress=True)

    async def close(self) -> None:
        """Close every pooled connection."""
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
        return UpstreamResponse(resp)

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
