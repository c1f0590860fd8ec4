"""The gateway's hot path (``gateway/proxy.py``) by hand, in one process: a scripted upstream
client (no sockets), a journal that keeps the records it is given, and the ASGI messages a
client would see. Each test checks the answer, the record and the upstream's state to the field,
on the paths the socket-level fault tests reach only as a status code: an upstream that stalls or
cuts after its headers, answers 4xx or no JSON, fails before its headers, breaks or cuts its
stream, a gateway that shuts down mid-stream, a client that hangs up or stops reading."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")

import aiohttp

from tokenprint.gateway.app import create_app
from tokenprint.gateway.config import GatewayConfig, UpstreamConfig
from tokenprint.gateway.ledger_schema import RequestOutcome
from tokenprint.gateway.proxy import Proxy
from tokenprint.gateway.requests import CHARS_PER_TOKEN, error_body
from tokenprint.gateway.upstream import UpstreamFailed

PROMPT = "forty characters of prompt text, exactly"   # 40 characters: 10 tokens by the guess
NEVER = 3600.0


class Resp:
    """An upstream response: a status, then ``body`` (bytes or an exception for ``read``) or
    ``chunks`` (bytes, an exception to raise, or seconds to wait) for ``next_chunk``."""

    def __init__(self, status: int = 200, body: bytes | BaseException = b"",
                 chunks: list[Any] | None = None, content_type: str = "application/json"):
        self.status, self.body, self.content_type = status, body, content_type
        self.chunks = list(chunks or [])
        self.closed = False
        self.closes = 0
        self._closing: asyncio.Event | None = None

    async def read(self, limit: int) -> bytes | None:
        if isinstance(self.body, BaseException):
            raise self.body
        return None if len(self.body) > limit else self.body

    async def next_chunk(self) -> bytes:
        while self.chunks:
            c = self.chunks.pop(0)
            if isinstance(c, BaseException):
                raise c
            if isinstance(c, float):   # a wait that closing the response ends (as aiohttp's)
                self._closing = asyncio.Event()
                try:
                    await asyncio.wait_for(self._closing.wait(), c)
                    return b""
                except TimeoutError:
                    continue
            return c
        return b""

    def close(self) -> None:
        self.closed = True
        self.closes += 1
        if self._closing is not None:
            self._closing.set()


class Client:
    """Answers each ``open`` with the next scripted response (or raises it)."""

    def __init__(self, answers: list[Resp | BaseException]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def open(self, name: str, url: str, body: bytes, headers: dict[str, str]) -> Resp:
        self.calls.append((name, url, json.loads(body)))
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a


@dataclass
class Journal:
    """The ledger's two calls, kept."""

    opened: list[RequestOutcome] = field(default_factory=list)
    added: list[RequestOutcome] = field(default_factory=list)

    def open(self, rec: RequestOutcome) -> None:
        self.opened.append(rec)

    def add(self, rec: RequestOutcome) -> bool:
        self.added.append(rec)
        return True


@dataclass
class Answer:
    """What the client received."""

    messages: list[dict[str, Any]]

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def error(self) -> dict[str, Any]:
        return dict(json.loads(self.body)["error"])


def gateway(tmp_path: Path, catalog: Any, answers: list[Resp | BaseException],
            names: tuple[str, ...] = ("u",), **kw: Any) -> tuple[Proxy, Client, Journal]:
    cfg = GatewayConfig(upstream=[UpstreamConfig(name=n, url=f"http://{n}.test/v1", model="tiny",
                                                 served_model=f"served-{n}", gpu="l4",
                                                 region="fr") for n in names],
                        results=str(tmp_path / "ledger"), health_interval_s=0, **kw)
    app = create_app(cfg, catalog)
    app.state.ledger.close()   # the proxy writes to the journal below instead
    proxy = app.proxy
    client, journal = Client(list(answers)), Journal()
    proxy.client = client  # type: ignore[assignment]
    proxy.ledger = proxy.recorder.ledger = journal  # type: ignore[assignment]
    return proxy, client, journal


def call(proxy: Proxy, body: dict[str, Any], first_send_s: float = 0.0,
         hang_up_after_s: float | None = None, stuck_send: bool = False,
         scope: dict[str, Any] | None = None) -> Answer:
    """One POST to /v1/completions through the proxy. ``first_send_s``: the first body message
    takes that long to send; ``hang_up_after_s``: the client disconnects then; ``stuck_send``:
    the client stops reading after the response's head."""
    messages: list[dict[str, Any]] = []

    async def main() -> None:
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": json.dumps(body).encode(),
                        "more_body": False}
            await asyncio.sleep(NEVER if hang_up_after_s is None else hang_up_after_s)
            return {"type": "http.disconnect"}

        async def send(msg: dict[str, Any]) -> None:
            body_msgs = sum(m["type"] == "http.response.body" for m in messages)
            if msg["type"] == "http.response.body" and body_msgs == 0:
                if stuck_send:
                    await asyncio.sleep(NEVER)
                await asyncio.sleep(first_send_s)
            messages.append(msg)

        await proxy({"type": "http", "path": "/v1/completions", "method": "POST",
                     "headers": [], **(scope or {})}, receive, send)

    asyncio.run(main())
    return Answer(messages)


def unary(text: str = "hello world!", usage: dict[str, int] | None = None) -> bytes:
    out: dict[str, Any] = {"id": "c1", "choices": [{"index": 0, "text": text}]}
    if usage is not None:
        out["usage"] = usage
    return json.dumps(out).encode()


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def piece(i: int) -> bytes:
    return event({"choices": [{"index": 0, "text": f" t{i}"}]})


USAGE = event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                        "total_tokens": 5}})
DONE = b"data: [DONE]\n\n"
GUESS = max(round(len(PROMPT) / CHARS_PER_TOKEN), 1)


def ask(stream: bool = False, usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "tiny", "prompt": PROMPT}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": usage}
    return body


def settled(proxy: Proxy) -> None:
    for st in proxy.states:
        assert st.inflight == 0 and st.conc_start == {}


# ---- unary ----------------------------------------------------------------------------------

def test_a_unary_answer_carries_its_footprint_and_its_record(tmp_path, catalog):
    proxy, client, journal = gateway(tmp_path, catalog, [Resp(200, unary(
        usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))],
        store_text=True)
    a = call(proxy, ask())
    assert a.status == 200
    ((name, url, fwd),) = client.calls
    assert (name, url, fwd["model"]) == ("u", "http://u.test/v1/completions", "served-u")
    data = json.loads(a.body)
    tp = data["usage"]["tokenprint"]
    assert data["usage"]["completion_tokens"] == 4 and tp["usage_source"] == "upstream"
    assert tp["region"] == "FR" and tp["total_g"] > 0
    assert a.headers["x-tokenprint-carbon-g"] == f"{tp['total_g']:.6g}"
    assert a.headers["x-tokenprint-upstream"] == "u"
    (rec,) = journal.added
    assert a.headers["x-tokenprint-request-id"] == rec.id
    assert (rec.endpoint, rec.status, rec.attempts, rec.usage_source) == (
        "completions", 200, 1, "upstream")
    assert (rec.prompt_tokens, rec.completion_tokens) == (3, 4)
    assert rec.footprint is not None and rec.footprint.region == "FR"
    assert rec.added_s is not None and 0 < rec.added_s < 5
    assert rec.completion_text == "hello world!" and rec.prompt_text == json.dumps(PROMPT)
    assert rec.duration_s is not None and 0 <= rec.duration_s < 5
    st = proxy.states[0]
    ((_, latency),) = st.latencies
    assert latency == rec.duration_s and st.failures == 0
    settled(proxy)


def test_a_unary_answer_without_usage_is_counted_by_the_gateway(tmp_path, catalog):
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(200, unary(text="")),
                                                    Resp(200, unary(text="eight ch"))])
    data = json.loads(call(proxy, ask()).body)
    assert data["usage"]["prompt_tokens"] == GUESS == 10
    assert data["usage"]["completion_tokens"] == 0          # no text: no token, not one
    assert data["usage"]["total_tokens"] == GUESS
    more = json.loads(call(proxy, ask()).body)["usage"]    # 8 characters: 2 tokens
    assert (more["completion_tokens"], more["total_tokens"]) == (2, GUESS + 2)
    assert data["usage"]["tokenprint"]["usage_source"] == "gateway"
    rec = journal.added[0]
    assert (rec.prompt_tokens, rec.completion_tokens, rec.usage_source) == (10, 0, "gateway")


@pytest.mark.parametrize(("exc", "status", "verb"), [
    (TimeoutError(), 504, "stalled"), (aiohttp.ClientPayloadError("cut"), 502, "cut")])
def test_an_upstream_that_stalls_or_cuts_after_its_headers(tmp_path, catalog, exc, status, verb):
    resp = Resp(200, exc)
    proxy, _, journal = gateway(tmp_path, catalog, [resp], breaker_failures=1,
                                breaker_open_s=100.0)
    before = time.monotonic()
    a = call(proxy, ask())
    why = (f"upstream u {verb} the response after its headers "
           f"({exc.__class__.__name__})")
    assert a.status == status
    assert a.error() == {"message": why, "type": "server_error", "param": None,
                         "code": "upstream_cut"}
    (rec,) = journal.added
    assert a.headers["x-tokenprint-request-id"] == rec.id
    assert (rec.endpoint, rec.status, rec.attempts, rec.note) == ("completions", status, 1, why)
    assert rec.duration_s is not None and 0 <= rec.duration_s < 5
    assert resp.closed
    st = proxy.states[0]
    assert st.open_until >= before + 100.0     # one failure opened the breaker for 100 s
    settled(proxy)


def test_an_upstream_4xx_goes_back_as_it_came_and_is_recorded(tmp_path, catalog):
    raw = b'{"error": {"message": "bad n", "type": "invalid_request_error"}}'
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(400, raw, content_type="x/json"),
                                                    Resp(400, raw)])
    a = call(proxy, ask())
    assert (a.status, a.body, a.headers["content-type"]) == (400, raw, "x/json")
    (rec,) = journal.added
    assert a.headers["x-tokenprint-request-id"] == rec.id
    assert (rec.endpoint, rec.status, rec.attempts, rec.footprint) == ("completions", 400, 1,
                                                                       None)
    b = call(proxy, ask(stream=True))          # a stream refused goes back the same way
    assert (b.status, b.body) == (400, raw) and journal.opened == []
    assert rec.duration_s is not None and rec.duration_s >= 0
    assert proxy.states[0].failures == 0        # the client's fault, not the upstream's
    settled(proxy)


@pytest.mark.parametrize("limit", [None, 1024])
def test_a_2xx_that_is_no_completion_is_a_502_row(tmp_path, catalog, limit):
    page = b"<html>" + b"x" * 2000 + b"</html>"
    kw = {} if limit is None else {"max_upstream_body_bytes": limit}
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(200, page, content_type="text/html")],
                                **kw)
    a = call(proxy, ask())
    why = ("upstream u answered HTTP 200 with a body that is not JSON (text/html)"
           if limit is None else "upstream u answered more than the limit of 1024 bytes")
    assert a.status == 502
    assert a.error() == {"message": why, "type": "server_error", "param": None,
                         "code": "upstream_invalid"}
    (rec,) = journal.added
    assert (rec.status, rec.attempts, rec.note, rec.footprint) == (502, 1, why, None)
    assert proxy.states[0].failures == 1
    settled(proxy)


# ---- before the first byte: refusals and retries ---------------------------------------------

def test_an_unknown_model_and_an_unknown_field_are_refused_with_their_codes(tmp_path, catalog):
    proxy, client, journal = gateway(tmp_path, catalog, [])
    a = call(proxy, {"model": "nope", "prompt": "x"})
    assert a.status == 404
    assert a.error() == {"message": "The model `nope` does not exist.",
                         "type": "invalid_request_error", "param": None,
                         "code": "model_not_found"}
    b = call(proxy, {"model": "tiny", "prompt": "x", "zz": 1})
    assert b.status == 400 and b.error()["param"] == "zz"
    assert client.calls == [] and journal.added == []


def test_only_two_upstreams_are_tried_and_the_last_failure_is_named(tmp_path, catalog):
    answers: list[Resp | BaseException] = [UpstreamFailed(f"{n}: connection refused")
                                           for n in "abc"]
    proxy, client, journal = gateway(tmp_path, catalog, answers, names=("a", "b", "c"),
                                     policy="round-robin")
    a = call(proxy, ask())
    tried = [c[0] for c in client.calls]
    assert len(tried) == 2 and len(set(tried)) == 2
    assert a.status == 502
    assert a.error() == {"message": f"no upstream could serve the request ({tried[1]}: "
                                    f"connection refused)",
                         "type": "server_error", "param": None, "code": "upstream_unavailable"}
    (rec,) = journal.added
    assert (rec.upstream, rec.status, rec.attempts) == (tried[1], 502, 2)
    assert rec.duration_s is not None and 0 <= rec.duration_s < 5
    assert [s.failures for s in proxy.states if s.name in tried] == [1, 1]
    settled(proxy)


def test_the_retry_elsewhere_is_recorded_as_the_second_attempt(tmp_path, catalog):
    ok = Resp(200, unary(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
    proxy, client, journal = gateway(tmp_path, catalog, [UpstreamFailed("first: down"), ok],
                                     names=("a", "b"), policy="round-robin")
    assert call(proxy, ask()).status == 200
    (rec,) = journal.added
    assert (rec.upstream, rec.attempts, rec.status) == (client.calls[1][0], 2, 200)
    settled(proxy)


# ---- streams --------------------------------------------------------------------------------

def test_a_stream_relays_its_events_and_ends_with_the_footprint(tmp_path, catalog):
    up = Resp(200, chunks=[piece(0), piece(1) + USAGE, DONE])
    proxy, client, journal = gateway(tmp_path, catalog, [up], store_text=True)
    before = time.time()
    a = call(proxy, ask(stream=True), first_send_s=0.05)
    assert a.status == 200
    assert client.calls[0][2]["stream_options"] == {"include_usage": True}
    assert a.headers == {"content-type": "text/event-stream", "cache-control": "no-cache",
                         "x-tokenprint-request-id": journal.added[0].id,
                         "x-tokenprint-upstream": "u"}
    assert [m.get("more_body") for m in a.messages[1:]] == [True] * (len(a.messages) - 2) + [
        False]
    assert all(m["type"] == "http.response.body" for m in a.messages[1:])
    last = a.messages[-1]["body"]
    assert last.endswith(b"\n\ndata: [DONE]\n\n")
    final = json.loads(last.split(b"\n\n")[0].removeprefix(b"data: "))
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 2
    assert final["usage"]["tokenprint"]["usage_source"] == "upstream"
    (opened,) = journal.opened
    assert (opened.status, opened.region, opened.endpoint) == (500, "FR", "completions")
    assert (opened.model, opened.upstream) == ("tiny", "u")
    assert opened.note == ("the answer never ended (the gateway was killed or failed while "
                           "answering): tokens and carbon unknown")
    assert before <= opened.time_utc <= time.time()
    (rec,) = journal.added
    assert (rec.status, rec.attempts, rec.completion_tokens) == (200, 1, 2)
    assert rec.ttft_s is not None and 0 <= rec.ttft_s < 5
    assert rec.added_s is not None and rec.added_s >= 0.05   # the first relay's own time
    assert rec.completion_text == " t0 t1"
    assert up.closes == 1 and len(proxy.states[0].latencies) == 1
    settled(proxy)


def test_a_stream_without_include_usage_ends_with_done_alone(tmp_path, catalog):
    proxy, _, _ = gateway(tmp_path, catalog, [Resp(200, chunks=[piece(0) + USAGE + DONE])])
    a = call(proxy, ask(stream=True, usage=False))
    assert a.messages[-1] == {"type": "http.response.body", "body": DONE, "more_body": False}
    assert b'"usage"' not in a.body


def _cut_event(why: str, code: str) -> dict[str, Any]:
    return {"type": "http.response.body", "more_body": False,
            "body": b"data: " + error_body(why, "server_error", code) + b"\n\n"}


def test_a_stream_that_ends_without_done_is_a_502_with_the_gateways_count(tmp_path, catalog):
    up = Resp(200, chunks=[piece(0), piece(1)])
    proxy, _, journal = gateway(tmp_path, catalog, [up], store_text=True)
    a = call(proxy, ask(stream=True))
    why = "upstream u cut the stream: it ended without [DONE] after 2 tokens"
    assert a.messages[-1] == _cut_event(why, "upstream_cut")
    assert DONE not in a.body
    (rec,) = journal.added
    assert (rec.status, rec.note, rec.usage_source, rec.attempts) == (502, why, "gateway", 1)
    assert (rec.prompt_tokens, rec.completion_tokens) == (GUESS, 2)
    assert rec.ttft_s is not None and rec.footprint is not None
    assert rec.prompt_text == json.dumps(PROMPT)
    assert proxy.states[0].latencies == type(proxy.states[0].latencies)(maxlen=256)
    settled(proxy)


def test_a_stream_the_upstream_breaks_mid_way(tmp_path, catalog):
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(200, chunks=[
        piece(0), aiohttp.ClientPayloadError("reset")])])
    a = call(proxy, ask(stream=True))
    why = "upstream u cut the stream (ClientPayloadError)"
    assert a.messages[-1] == _cut_event(why, "upstream_cut")
    (rec,) = journal.added
    assert (rec.status, rec.note, rec.completion_tokens) == (502, why, 1)
    settled(proxy)


def test_a_gateway_stopping_mid_stream_ends_it_with_a_503_event(tmp_path, catalog):
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(200, chunks=[
        piece(0), asyncio.CancelledError()])])
    a = call(proxy, ask(stream=True))
    why = "the gateway stopped before the stream ended (shutdown)"
    assert a.messages[-1] == _cut_event(why, "shutting_down")
    (rec,) = journal.added
    assert (rec.status, rec.note) == (503, why)
    settled(proxy)


def test_an_event_past_the_limit_relays_the_whole_events_before_it(tmp_path, catalog):
    huge = b"data: " + b"x" * 2000
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(200, chunks=[piece(0) + huge])],
                                max_event_bytes=1024)
    a = call(proxy, ask(stream=True))
    why = "upstream u broke the stream: an SSE event passed 1024 bytes unterminated"
    assert a.messages[1] == {"type": "http.response.body", "body": piece(0), "more_body": True}
    assert a.messages[2:] == [_cut_event(why, "upstream_cut")]
    (rec,) = journal.added
    assert (rec.status, rec.note) == (502, why)
    # the piece before the fault reached the client: its time is the first token's
    assert rec.ttft_s is not None and 0 <= rec.ttft_s < 5


def test_an_event_past_the_limit_with_nothing_before_it_sends_no_empty_body(tmp_path, catalog):
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(200, chunks=[b"data: " + b"x" * 2000])],
                                max_event_bytes=1024)
    a = call(proxy, ask(stream=True))
    assert len(a.messages) == 2 and a.messages[1]["more_body"] is False
    (rec,) = journal.added
    assert rec.status == 502 and rec.ttft_s is None


def test_a_client_that_hangs_up_drops_the_upstream_at_once(tmp_path, catalog):
    up = Resp(200, chunks=[piece(0), 30.0, piece(1), DONE])
    proxy, _, journal = gateway(tmp_path, catalog, [up])
    t0 = time.monotonic()
    a = call(proxy, ask(stream=True), hang_up_after_s=0.05)
    assert time.monotonic() - t0 < 10
    assert up.closed and DONE not in a.body and b"error" not in a.body
    (rec,) = journal.added
    assert (rec.status, rec.completion_tokens, rec.note) == (499, 1, None)
    settled(proxy)


def test_a_client_that_stops_reading_is_cut_after_the_send_timeout(tmp_path, catalog):
    proxy, _, journal = gateway(tmp_path, catalog, [Resp(200, chunks=[piece(0), DONE])],
                                client_send_timeout_s=0.05)
    call(proxy, ask(stream=True), stuck_send=True)
    (rec,) = journal.added
    assert (rec.status, rec.note) == (499, "the client stopped reading: one write waited 0.05 s")
    settled(proxy)


def test_a_stream_the_upstream_does_not_count_is_counted_by_the_gateway(tmp_path, catalog):
    up = Resp(200, chunks=[piece(0) + piece(1) + piece(2) + DONE, b"data: after the end\n\n"])
    proxy, _, journal = gateway(tmp_path, catalog, [up])
    a = call(proxy, ask(stream=True))
    final = json.loads(a.messages[-1]["body"].split(b"\n\n")[0].removeprefix(b"data: "))
    (rec,) = journal.added
    tp = final["usage"].pop("tokenprint")
    assert final == {"id": rec.id, "object": "chunk", "choices": [], "usage": {
        "prompt_tokens": GUESS, "completion_tokens": 3, "total_tokens": GUESS + 3}}
    assert tp["usage_source"] == "gateway" and rec.usage_source == "gateway"
    assert up.chunks == [b"data: after the end\n\n"]     # nothing read past [DONE]


def test_a_request_without_its_key_is_refused_and_a_batch_line_needs_none(tmp_path, catalog):
    import hashlib

    from tokenprint.gateway.accounts import Who

    digest = hashlib.sha256(b"k1").hexdigest()
    ok = Resp(200, unary(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
    proxy, client, journal = gateway(tmp_path, catalog, [ok], api_keys_sha256=[digest])
    a = call(proxy, ask())
    assert a.status == 401 and a.error() == {"message": "Incorrect or missing API key.",
                                             "type": "invalid_request_error", "param": None,
                                             "code": "invalid_api_key"}
    assert client.calls == [] and journal.added == []
    b = call(proxy, ask(), scope={"tokenprint.who": Who(batch_id="batch-1"),
                                  "tokenprint.request_id": "tp-line-1"})
    assert b.status == 200
    (rec,) = journal.added
    assert (rec.id, rec.batch_id) == ("tp-line-1", "batch-1")


@pytest.mark.parametrize("where", ["opening", "reading"])
def test_an_error_inside_the_gateway_is_a_500_and_a_logged_traceback(tmp_path, catalog, caplog,
                                                                     where):
    boom = RuntimeError("boom")
    proxy, _, journal = gateway(tmp_path, catalog,
                                [boom if where == "opening" else Resp(200, boom)])
    with caplog.at_level("ERROR", logger="tokenprint.gateway"):
        a = call(proxy, ask())
    assert a.status == 500
    assert a.error()["message"] == "internal error in the gateway (RuntimeError)"
    assert [r.getMessage() for r in caplog.records] == ["gateway error on /v1/completions"]
    # the request keeps its one row, and says why
    (rec,) = journal.added
    assert (rec.status, rec.attempts, rec.endpoint, rec.footprint) == (500, 1, "completions",
                                                                       None)
    assert rec.note == "internal error in the gateway (RuntimeError)"
    assert rec.duration_s is not None and 0 <= rec.duration_s < 5
    settled(proxy)                              # its slot is given back all the same


def test_a_fault_after_the_record_adds_no_second_row(tmp_path, catalog, monkeypatch):
    from tokenprint.gateway import proxy as gp

    ok = Resp(200, unary(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
    proxy, _, journal = gateway(tmp_path, catalog, [ok])

    async def broken_send(*args: Any, **kw: Any) -> None:
        raise RuntimeError("the answer could not be sent")

    monkeypatch.setattr(gp, "send_bytes", broken_send)
    call(proxy, ask())
    assert [r.status for r in journal.added] == [200]


class Meter:
    """A metered upstream's attribution, its calls kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def start(self, rid: str, prompt_tokens: int) -> None:
        self.calls.append(("start", prompt_tokens))

    def progress(self, rid: str, tokens: int) -> None:
        self.calls.append(("progress", tokens))

    def finish(self, rid: str, tokens: int, prompt_tokens: int | None = None) -> Any:
        from tokenprint.gateway.accounting import RequestEnergy

        self.calls.append(("finish", tokens, prompt_tokens))
        return RequestEnergy(36.0, 360.0, "measured")


def test_a_metered_upstream_is_told_each_requests_start_progress_and_end(tmp_path, catalog):
    proxy, _, journal = gateway(tmp_path, catalog, [
        Resp(200, chunks=[piece(0), piece(1) + USAGE + DONE]), Resp(200, TimeoutError())])
    meter = Meter()
    proxy.states[0].attributor = meter  # type: ignore[assignment]
    call(proxy, ask(stream=True))
    assert meter.calls == [("start", GUESS), ("progress", 1), ("progress", 2),
                           ("finish", 2, 3)]
    (rec,) = journal.added
    assert rec.footprint is not None and rec.footprint.energy.energy_j == 396.0
    assert rec.footprint.energy.method == "measured"
    meter.calls.clear()
    call(proxy, {"model": "tiny", "prompt": "x"})   # stalled after its headers: no tokens
    assert meter.calls == [("start", 1), ("finish", 0, None)]   # a prompt counts one at least
    settled(proxy)


def test_requests_in_flight_are_counted_up_and_back_down(tmp_path, catalog):
    ok = Resp(200, unary(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
    proxy, _, _ = gateway(tmp_path, catalog, [ok, Resp(200, chunks=[piece(0), DONE])])
    st = proxy.states[0]
    st.inflight = 5                             # five others in flight already
    call(proxy, ask())
    call(proxy, ask(stream=True))
    assert st.inflight == 5 and st.conc_start == {}
