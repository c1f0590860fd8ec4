"""The OpenAI Batch API on the gateway, shaped as OpenAI documents it so the official ``openai``
SDK works unchanged: ``/v1/files`` (upload, object, content) and ``/v1/batches`` (create,
retrieve, list, cancel). Each batch object carries a ``tokenprint`` block: when it was
scheduled to start and why (the forecast), and once finished the carbon charged to its lines,
what they would have emitted at submission, and the saving.

Input lines are checked as OpenAI checks them (a JSON object with a unique ``custom_id``,
``method`` POST, ``url`` equal to the batch's endpoint, a ``body`` naming the batch's one
model); a line that fails goes to the error file with its line number, and the rest run.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tokenprint.gateway.accounts import Accounts
from tokenprint.gateway.batch_runner import BatchRunner
from tokenprint.gateway.batch_store import BatchStore, error_line, new_id
from tokenprint.gateway.config import GatewayConfig
from tokenprint.gateway.requests import error_body

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
WINDOW = re.compile(r"^([1-9][0-9]{0,2})h$")     # "24h" (OpenAI's), up to 168h here


def _error(status: int, message: str, code: str | None = None) -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return Response(error_body(message, kind, code), status_code=status,
                    media_type="application/json")


def parse_lines(text: str, endpoint: str) -> tuple[list[tuple[int, str | None, str | None,
                                                               str, str | None]], str | None]:
    """The batch's lines as stored (line, custom_id, body, status, error result) and its one
    model; a line OpenAI would refuse is ``failed`` with its reason and line number."""
    out: list[tuple[int, str | None, str | None, str, str | None]] = []
    seen: set[str] = set()
    model: str | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        cid: str | None = None
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError("the line is not a JSON object")
            cid = obj.get("custom_id") if isinstance(obj.get("custom_id"), str) else None
            why = _line_problem(obj, endpoint, seen, model)
        except ValueError as exc:
            why = f"line {n} is not valid JSON: {exc}" if "JSON object" not in str(exc) \
                else str(exc)
        if why is not None:
            out.append((n, cid, None, "failed",
                        json.dumps(error_line(cid, "invalid_request", why, n))))
            continue
        assert cid is not None
        seen.add(cid)
        model = model or obj["body"]["model"]
        body = {**obj["body"], "stream": False}
        out.append((n, cid, json.dumps(body), "pending", None))
    return out, model


def _line_problem(obj: dict[str, Any], endpoint: str, seen: set[str], model: str | None
                  ) -> str | None:
    cid, body = obj.get("custom_id"), obj.get("body")
    if not isinstance(cid, str) or not cid:
        return "custom_id must be a non-empty string"
    if cid in seen:
        return f"custom_id {cid!r} is repeated; each line needs its own"
    if obj.get("method") != "POST":
        return "method must be POST"
    if obj.get("url") != endpoint:
        return f"url {obj.get('url')!r} must be the batch's endpoint {endpoint}"
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "body must be a JSON object naming a model"
    if model is not None and body["model"] != model:
        return f"every line of a batch names one model ({model}); this one names {body['model']}"
    return None


def register(api: FastAPI, cfg: GatewayConfig, accounts: Accounts, store: BatchStore,
             runner: BatchRunner) -> None:
    """Add the Files and Batches routes."""

    def refused(request: Request) -> Response | None:
        """OpenAI's 401 answer where the request carries no valid API key, else None."""
        if accounts.key(request.scope) is None:
            return _error(401, "Incorrect or missing API key.", "invalid_api_key")
        return None

    @api.post("/v1/files")
    async def upload(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        length = int(request.headers.get("content-length") or 0)
        if length > cfg.batch_max_file_bytes:
            return _error(413, f"the file exceeds the limit of {cfg.batch_max_file_bytes} "
                          "bytes (batch_max_file_bytes)")
        form = await request.form(max_part_size=cfg.batch_max_file_bytes)
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch":
            return _error(400, f"purpose {purpose!r} is not supported here; use 'batch'")
        if upload is None or isinstance(upload, str):
            return _error(400, "give the file in the 'file' field (multipart/form-data)")
        data = await upload.read()
        if len(data) > cfg.batch_max_file_bytes:
            return _error(413, f"the file exceeds the limit of {cfg.batch_max_file_bytes} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the file is not UTF-8 text (JSONL)")
        return JSONResponse(store.add_file("batch", upload.filename or "", text))

    @api.get("/v1/files/{fid}")
    async def file_object(fid: str, request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        doc = store.file(fid)
        return JSONResponse(doc) if doc else _error(404, f"No such File object: {fid}")

    @api.get("/v1/files/{fid}/content")
    async def file_content(fid: str, request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        text = store.content(fid)
        if text is None:
            return _error(404, f"No such File object: {fid}")
        return Response(text.encode(), media_type="application/octet-stream")

    @api.post("/v1/batches")
    async def create(request: Request) -> Response:
        key = accounts.key(request.scope)
        if key is None:
            return _error(401, "Incorrect or missing API key.", "invalid_api_key")
        try:
            req = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not JSON")
        endpoint, window = req.get("endpoint"), str(req.get("completion_window", ""))
        if endpoint not in ENDPOINTS:
            return _error(400, f"endpoint {endpoint!r} is invalid; valid: {', '.join(ENDPOINTS)}")
        m = WINDOW.match(window)
        if m is None or not 1 <= int(m.group(1)) <= 168:
            return _error(400, f"completion_window {window!r} is invalid; give hours such as "
                          "'24h' (1h to 168h)")
        text = store.content(str(req.get("input_file_id")))
        if text is None:
            return _error(404, f"No such File object: {req.get('input_file_id')}")
        if len(store.open_batches()) >= cfg.batch_max_open:
            return _error(429, f"{cfg.batch_max_open} batches are in flight "
                          "(batch_max_open); wait for one to finish")
        lines, model = parse_lines(text, endpoint)
        if len(lines) > cfg.batch_max_lines:
            return _error(400, f"the file has {len(lines)} lines; at most "
                          f"{cfg.batch_max_lines} (batch_max_lines)")
        if not lines:
            return _error(400, "the input file has no lines")
        now = time.time()
        who = accounts.who(key, request.scope, {})
        doc: dict[str, Any] = {
            "id": new_id("batch_"), "object": "batch", "endpoint": endpoint, "errors": None,
            "input_file_id": req["input_file_id"], "completion_window": window,
            "status": "in_progress", "output_file_id": None, "error_file_id": None,
            "created_at": int(now), "in_progress_at": None,
            "expires_at": int(now) + int(m.group(1)) * 3600, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None,
            "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0,
                               "failed": sum(ln[3] == "failed" for ln in lines)},
            "metadata": req.get("metadata")}
        plan = await runner.plan(doc, model or "", sum(ln[3] == "pending" for ln in lines))
        doc["tokenprint"] = {**plan, "model": model,
                             "who": {"key_name": who.key_name, "team": who.team,
                                     "project": who.project, "user_digest": who.user_digest,
                                     "tags": who.tags}}
        if not any(ln[3] == "pending" for ln in lines):   # nothing to run: failed, as OpenAI
            doc.update(status="failed", failed_at=int(now), errors={"object": "list", "data": [
                json.loads(ln[4] or "{}")["error"] for ln in lines[:100]]})
        store.add_batch(doc, lines)
        return JSONResponse(doc)

    @api.get("/v1/batches/{bid}")
    async def retrieve(bid: str, request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        doc = store.batch(bid)
        return JSONResponse(doc) if doc else _error(404, f"No such Batch object: {bid}")

    @api.get("/v1/batches")
    async def listing(request: Request, limit: int = 20, after: str | None = None) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        data = store.batches(max(min(limit, 100), 1) + 1, after)
        more, data = len(data) > limit, data[:limit]
        return JSONResponse({"object": "list", "data": data,
                             "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None, "has_more": more})

    @api.post("/v1/batches/{bid}/cancel")
    async def cancel(bid: str, request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        doc = store.batch(bid)
        if doc is None:
            return _error(404, f"No such Batch object: {bid}")
        if doc["status"] not in ("validating", "in_progress", "cancelling"):
            return _error(409, f"batch {bid} is {doc['status']}: it cannot be cancelled")
        if doc["status"] != "cancelling":
            doc.update(status="cancelling", cancelling_at=int(time.time()))
            store.save(doc)
        return JSONResponse(doc)
