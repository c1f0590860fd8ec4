"""Client requests and error responses on the gateway's completion paths (plain ASGI).

Parsing refuses what is not a well-formed OpenAI request — non-finite numbers, oversized
integers, deep nesting, mis-shaped ``messages`` or ``prompt`` — with a ``BadRequest`` naming the
problem (a 400 for the client); responses are sent in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# OpenAI request fields (plus the extensions vLLM, TGI and llama.cpp accept) that pass through.
COMMON_FIELDS = frozenset({
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "user", "seed", "logprobs",
    "top_k", "min_p", "repetition_penalty", "ignore_eos", "min_tokens", "best_of",
    "response_format", "metadata", "service_tier", "store",
})
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt", "suffix", "echo"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens", "tools", "tool_choice",
                               "parallel_tool_calls", "top_logprobs", "functions",
                               "function_call", "modalities", "reasoning_effort"}
# path → (upstream endpoint, accepted fields)
ENDPOINTS = {"/v1/completions": ("completions", COMPLETION_FIELDS),
             "/v1/chat/completions": ("chat/completions", CHAT_FIELDS)}
CHARS_PER_TOKEN = 4.0  # prompt-size guess until the upstream reports its count (English text)
MAX_JSON_DEPTH = 64     # request bodies nest a few levels; deeper is an attack, not a request
MAX_INT_DIGITS = 20     # token ids, seeds and limits fit in 64 bits


class BadRequest(ValueError):
    """A request body the gateway refuses (400), with the parameter at fault if known."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _no_constant(name: str) -> Any:
    raise BadRequest(f"non-finite number {name} is not valid JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(f"an integer of {len(text)} digits is out of range")
    return int(text)


def _finite_float(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise BadRequest(f"number {text[:20]} is out of range")
    return v


def _depth(obj: Any) -> int:
    """Nesting depth of a decoded JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def parse_request(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object: finite numbers, bounded integers and depth, and the
    prompt fields shaped as the OpenAI API defines them; ``BadRequest`` otherwise."""
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_int=_bounded_int,
                          parse_float=_finite_float)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    if _depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    if "messages" in body:
        msgs = body["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise BadRequest("'messages' must be an array of message objects", "messages")
        for m in msgs:
            c = m.get("content")
            if isinstance(c, list):
                if not all(isinstance(part, dict) and isinstance(part.get("text", ""), str)
                           for part in c):
                    raise BadRequest("a message content part's 'text' must be a string",
                                     "messages")
            elif c is not None and not isinstance(c, str):
                raise BadRequest("a message's 'content' must be a string or an array of parts",
                                 "messages")
    if "prompt" in body:
        pr = body["prompt"]
        ok = isinstance(pr, str) or (isinstance(pr, list) and all(
            isinstance(x, str | int) or (isinstance(x, list) and all(isinstance(t, int)
                                                                     for t in x))
            for x in pr))
        if not ok:
            raise BadRequest("'prompt' must be a string, an array of strings or of token ids",
                             "prompt")
    return body


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> bytes:
    """An OpenAI-style error object, encoded."""
    return json.dumps({"error": {"message": message, "type": kind, "param": param,
                                 "code": code}}).encode()


async def send_bytes(send: Send, status: int, body: bytes,
                     content_type: str = "application/json",
                     headers: dict[str, str] | None = None) -> None:
    """A complete response in two ASGI messages."""
    hdrs = [(b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, status: int, message: str, kind: str = "invalid_request_error",
                     code: str | None = None, param: str | None = None,
                     request_id: str | None = None) -> None:
    """An OpenAI-style error response (with the ledger's request id when it has a record); the
    connection is closed after it, so a client that misbehaved (a slow or oversized body, no
    key) cannot keep its slot by sending more."""
    headers = {"connection": "close"}
    if request_id:
        headers["x-tokenprint-request-id"] = request_id
    await send_bytes(send, status, error_body(message, kind, code, param), headers=headers)


class Refused(Exception):
    """A request the gateway answers itself with an error: its status, message, and the
    parameter or code at fault."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


async def read_request(receive: Receive, allowed: frozenset[str], max_bytes: int,
                       timeout_s: float) -> dict[str, Any]:
    """The request body as a checked JSON object that names a model: within ``timeout_s`` and
    ``max_bytes``, only ``allowed`` fields (OpenAI's own wording for the rest); ``Refused``
    otherwise."""
    try:
        async with asyncio.timeout(timeout_s):
            raw = await read_body(receive, max_bytes)
    except TimeoutError:
        raise Refused(408, f"the request body did not arrive within {timeout_s:g} s") from None
    if raw is None:
        raise Refused(413, f"request body exceeds the limit of {max_bytes} bytes")
    try:
        body = parse_request(raw)
    except BadRequest as exc:
        raise Refused(400, str(exc), exc.param) from None
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Refused(400, f"Unrecognized request argument supplied: {', '.join(unknown)}",
                      unknown[0])
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Refused(400, "you must provide a model parameter", "model")
    return body


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending its request")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not msg.get("more_body"):
            return b"".join(parts)


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters of prompt text in a request (for the prompt-size guess)."""
    if "messages" in body:
        n = 0
        for m in body.get("messages") or []:
            c = m.get("content") if isinstance(m, dict) else None
            if isinstance(c, str):
                n += len(c)
            elif isinstance(c, list):
                n += sum(len(p.get("text") or "") for p in c
                         if isinstance(p, dict) and isinstance(p.get("text") or "", str))
        return n
    p = body.get("prompt")
    if isinstance(p, str):
        return len(p)
    if isinstance(p, list):
        # a list of strings, of token ids (one token each), or of token-id lists
        return sum(len(x) if isinstance(x, str) else
                   round(CHARS_PER_TOKEN) * (len(x) if isinstance(x, list) else 1) for x in p)
    return 0



def text_of(data: dict[str, Any]) -> str:
    out = []
    for c in data.get("choices") or []:
        if "text" in c:
            out.append(str(c["text"]))
        elif isinstance(c.get("message"), dict):
            out.append(str(c["message"].get("content") or ""))
    return "".join(out)
