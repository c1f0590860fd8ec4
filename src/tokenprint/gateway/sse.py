"""Relaying an upstream's server-sent events: count generated pieces, capture ``usage``.

The relay sees the stream as the socket delivers it (any split, LF or CRLF line ends) and returns,
for each read, the complete events to forward in one write. Text chunks pass through as bytes,
unparsed; only chunks that carry ``usage`` are decoded, so the client gets the upstream's usage
chunk only if it asked for one, and the gateway always learns the token counts.
"""

from __future__ import annotations

import json
from typing import Any

# A default cap on one SSE event (a completion chunk is a few hundred bytes; a long tool call or
# logprobs chunk a few tens of kB): beyond it the upstream is treated as broken.
MAX_EVENT_BYTES = 1 << 20


class SseError(Exception):
    """The upstream's stream broke the SSE framing the gateway relies on; ``forward`` holds the
    complete events that came before the fault (to relay before failing)."""

    def __init__(self, message: str, forward: bytes = b"", pieces: int = 0) -> None:
        super().__init__(message)
        self.forward = forward
        self.pieces = pieces


def valid_usage(usage: Any) -> dict[str, int] | None:
    """The upstream's token counts if they are sane (non-negative integers), else None.

    A null, string, list, negative or fractional count is not trusted: the gateway then counts
    the tokens itself and the record says so.
    """
    if not isinstance(usage, dict):
        return None
    out: dict[str, int] = {}
    for key in ("prompt_tokens", "completion_tokens"):
        v = usage.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v < 0 \
                or v != int(v) or v > 1e12:
            return None
        out[key] = int(v)
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    return out

def bounded_usage(usage: dict[str, int] | None, bytes_carried: int, max_context: int
                  ) -> dict[str, int] | None:
    """The upstream's counts if they fit what it sent, else None (the gateway counts instead).

    Every generated token is at least one byte of the answer the gateway relayed, and a prompt
    cannot pass the model's context: an 8-token stream that claims 10¹² tokens is not charged
    for them (it would poison the totals for the life of the process).
    """
    if usage is None:
        return None
    if usage["completion_tokens"] > bytes_carried or usage["prompt_tokens"] > max_context:
        return None
    return usage


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (its ``data:`` lines joined by newlines, as the spec reads
    them; ``event:``, ``id:``, ``retry:`` and ``:`` comments set nothing here), or None when the
    event has no data field."""
    found: list[bytes] = []
    for line in event.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            found.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(found).strip() if found else None


_EMPTY_CONTENT = (b'"content": ""', b'"content":""', b'"content": null', b'"content":null')


def bytes_has_text(data: bytes) -> bool:
    """Whether a raw chunk carries generated text (a non-empty ``text`` or ``content``)."""
    if b'"text"' in data:
        return b'"text": ""' not in data and b'"text":""' not in data
    if b'"content"' in data:
        return all(empty not in data for empty in _EMPTY_CONTENT)
    return False


def choice_has_text(choice: dict[str, Any]) -> bool:
    """Whether a decoded choice carries generated text."""
    if choice.get("text"):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and bool(delta.get("content"))


class SseRelay:
    """Parses one upstream stream incrementally.

    ``feed(raw)`` returns the bytes to forward (possibly empty) and the number of text pieces
    they hold. After the upstream's ``[DONE]`` (or its end), ``usage`` holds the upstream's token
    counts (empty if it sent none) and ``usage_chunk`` the chunk that carried them, if separate.
    """

    def __init__(self, want_usage: bool, max_event_bytes: int = MAX_EVENT_BYTES,
                 collect_text: bool = False) -> None:
        self.want_usage = want_usage
        self.collect_text = collect_text
        self.text: list[str] = []   # the generated text, when collected (``store_text``)
        self.max_event_bytes = max_event_bytes
        self.pieces = 0
        self.usage: Any = {}
        self.usage_chunk: dict[str, Any] | None = None
        self.done = False
        self._buf = b""
        self._parts: list[bytes] = []   # reads of an event not yet ended (no newline in them)
        self._held = 0
        self.bytes_in = 0               # body bytes the upstream sent (bounds its usage claim)

    def feed(self, raw: bytes) -> tuple[bytes, int]:
        """Consume one read; return (bytes to forward, text pieces in them).

        Raises ``SseError`` when one event grows past ``max_event_bytes`` without ending.
        """
        if self.done:
            return b"", 0
        self.bytes_in += len(raw)
        if (not self._buf and not self._parts and raw.startswith(b"data:")
                and raw.endswith(b"\n\n") and raw.count(b"\n\n") == 1 and b"\r" not in raw
                and b'"usage"' not in raw and b"[DONE]" not in raw):
            # the common case: one whole text event per read, forwarded as it came
            pieces = int(bytes_has_text(raw))
            self.pieces += pieces
            if self.collect_text and pieces:
                self._collect(raw[5:].strip())
            return raw, pieces
        if b"\n" not in raw:
            # the middle of a long event: keep the read without re-copying what came before
            self._held += len(raw)
            if len(self._buf) + self._held > self.max_event_bytes:
                raise SseError(f"an SSE event passed {self.max_event_bytes} bytes unterminated")
            self._parts.append(raw)
            return b"", 0
        buf = b"".join([self._buf, *self._parts, raw])
        self._parts.clear()
        self._held = 0
        if b"\r" in buf:  # SSE allows CRLF line ends (sse-starlette sends them)
            buf = buf.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        pieces = 0
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            event = event.strip(b"\n")
            data = event_data(event)
            if data is None:
                if event:   # comments (keep-alives), retry:, a lone id: relayed as they came
                    out.append(event + b"\n\n")
                continue
            if data == b"[DONE]":
                self.done = True
                buf = b""
                break
            if b'"usage"' not in data:
                if bytes_has_text(data):
                    pieces += 1
                    if self.collect_text:
                        self._collect(data)
                # the event as it came (its event:/id: fields kept), or its data alone when
                # that is all it held
                out.append((event if not event.startswith(b"data:") or b"\n" in event
                            else b"data: " + data) + b"\n\n")
                continue
            forward, n = self._usage_event(data)
            pieces += n
            if forward is not None:
                out.append(forward)
        self.pieces += pieces
        if len(buf) > self.max_event_bytes:
            raise SseError(f"an SSE event passed {self.max_event_bytes} bytes unterminated",
                           b"".join(out), pieces)
        self._buf = buf
        return b"".join(out), pieces

    def _collect(self, data: bytes) -> None:
        """Keep the text of one event (only with ``collect_text``: it decodes every chunk)."""
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        for c in chunk.get("choices") or [] if isinstance(chunk, dict) else []:
            if not isinstance(c, dict):
                continue
            delta = c.get("delta")
            piece = c.get("text") or (delta.get("content") if isinstance(delta, dict) else None)
            if isinstance(piece, str):
                self.text.append(piece)

    def _usage_event(self, data: bytes) -> tuple[bytes | None, int]:
        """A chunk mentioning usage: decode it, keep the counts, forward what the client asked."""
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            return b"data: " + data + b"\n\n", 0
        if not isinstance(chunk, dict):
            return b"data: " + data + b"\n\n", 0
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            choices = []
        if chunk.get("usage") and not choices:
            self.usage = chunk["usage"]   # validated where it is used (``valid_usage``)
            self.usage_chunk = chunk
            return None, 0
        if chunk.get("usage"):
            self.usage = chunk["usage"]
            if not self.want_usage:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        pieces = int(any(choice_has_text(c) for c in choices if isinstance(c, dict)))
        return f"data: {json.dumps(chunk)}\n\n".encode(), pieces


__all__ = ["MAX_EVENT_BYTES", "SseError", "SseRelay", "bounded_usage", "bytes_has_text",
           "choice_has_text", "event_data", "valid_usage"]
