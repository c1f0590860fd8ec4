"""A small OpenAI-compatible server over the Hugging Face engine (for tests and local trials).

``python -m tokenprint.engines.hf_server --model tiny --port 8000`` serves ``/v1/models``,
``/v1/completions`` and ``/v1/chat/completions`` (streaming and not) for a catalog shape with
random weights (or ``--weights DIR``), and ``/metrics`` with vLLM's token counters and running
gauge (``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``,
``vllm:num_requests_running``), so ``tokenprint watch`` can be tried without vLLM. Prompts may
be text (bytes mapped to token ids) or token id lists; generation is greedy and honours
``max_tokens`` exactly when ``ignore_eos`` is set (random weights have no meaningful EOS
anyway). Requests are served one at a time, token by token: a real inference server, not a
fast one.
"""


import argparse
import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any


def create_app(model_id: str = "tiny", device: str = "cpu", dtype: str = "auto",
               weights: str | None = None) -> Any:
    """The FastAPI app serving one model."""
    import torch
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    from tokenprint.catalog import load_catalog
    from tokenprint.engines.hf import HFEngine

    catalog = load_catalog()
    arch = catalog.model(model_id)
    engine = HFEngine(arch, device, dtype, catalog, None if weights is None else Path(weights))
    lock = threading.Lock()
    app = FastAPI(title="tokenprint hf server")
    served_name = arch.id
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    registry = CollectorRegistry()
    labels = {"model_name": served_name}
    prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed.", ["model_name"],
                            registry=registry).labels(**labels)
    generation_tokens = Counter("vllm:generation_tokens", "Generated tokens.", ["model_name"],
                                registry=registry).labels(**labels)
    running = Gauge("vllm:num_requests_running", "Requests generating now.", ["model_name"],
                    registry=registry).labels(**labels)

    def to_ids(prompt: Any) -> list[int]:
        if isinstance(prompt, list) and all(isinstance(x, int) for x in prompt):
            ids = [int(x) % engine.vocab for x in prompt]
        else:
            text = prompt if isinstance(prompt, str) else json.dumps(prompt)
            ids = [b % engine.vocab for b in text.encode()]
        return ids or [0]

    def generate(ids: list[int], max_tokens: int) -> Iterator[int]:
        running.inc()
        try:
            prompt_tokens.inc(len(ids))
            for tok in _generate(ids, max_tokens):
                generation_tokens.inc()
                yield tok
        finally:
            running.dec()

    def _generate(ids: list[int], max_tokens: int) -> Iterator[int]:
        with lock, torch.inference_mode():
            x = torch.tensor([ids], device=engine.device)
            out = engine.model(input_ids=x, use_cache=True)
            cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            for i in range(max_tokens):
                nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
                yield int(nxt.item())
                if i + 1 < max_tokens:
                    out = engine.model(input_ids=nxt, use_cache=True,
                                       **{engine._cache_kw: cache})
                    cache = (getattr(out, "cache", None)
                             or getattr(out, "past_key_values", None) or cache)

    def token_text(tok: int) -> str:
        return f" t{tok}"

    def error(status: int, message: str, kind: str = "invalid_request_error") -> Any:
        return JSONResponse(status_code=status,
                            content={"error": {"message": message, "type": kind}})

    @app.get("/metrics")
    def metrics() -> Any:
        from fastapi.responses import Response

        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served_name, "object": "model",
                                            "owned_by": "tokenprint"}]}

    async def handle(request: Request, chat: bool) -> Any:
        try:
            body = await request.json()
        except Exception:
            return error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return error(400, "request body must be a JSON object")
        if chat:
            msgs = body.get("messages")
            if not isinstance(msgs, list):
                return error(400, "'messages' must be a list")
            prompt: Any = "\n".join(str(m.get("content", "")) for m in msgs
                                    if isinstance(m, dict))
        else:
            prompt = body.get("prompt", "")
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return error(400, f"max_tokens {max_tokens!r} must be a positive integer")
        ids = to_ids(prompt)
        if len(ids) + max_tokens > arch.max_context:
            return error(400, f"prompt of {len(ids)} tokens + max_tokens {max_tokens} exceeds "
                         f"the context of {arch.max_context}")
        rid = f"cmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        usage = {"prompt_tokens": len(ids), "completion_tokens": max_tokens,
                 "total_tokens": len(ids) + max_tokens}
        obj = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            toks = await asyncio.to_thread(lambda: list(generate(ids, max_tokens)))
            text = "".join(token_text(t) for t in toks)
            choice: dict[str, Any] = ({"index": 0, "message": {"role": "assistant",
                                                                "content": text},
                                       "finish_reason": "length"} if chat else
                                      {"index": 0, "text": text, "finish_reason": "length"})
            return {"id": rid, "object": obj, "created": created, "model": served_name,
                    "choices": [choice], "usage": usage}
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[str]:
            queue: asyncio.Queue[int | None] = asyncio.Queue()
            loop = asyncio.get_running_loop()

            def work() -> None:
                for t in generate(ids, max_tokens):
                    loop.call_soon_threadsafe(queue.put_nowait, t)
                loop.call_soon_threadsafe(queue.put_nowait, None)

            threading.Thread(target=work, daemon=True).start()
            n = 0
            while (tok := await queue.get()) is not None:
                n += 1
                last = n == max_tokens
                if chat:
                    ch: dict[str, Any] = {"index": 0, "delta": {"content": token_text(tok)},
                                          "finish_reason": "length" if last else None}
                else:
                    ch = {"index": 0, "text": token_text(tok),
                          "finish_reason": "length" if last else None}
                chunk = {"id": rid, "object": obj + (".chunk" if chat else ""),
                         "created": created, "model": served_name, "choices": [ch]}
                yield f"data: {json.dumps(chunk)}\n\n"
            if include_usage:
                chunk = {"id": rid, "object": obj + (".chunk" if chat else ""),
                         "created": created, "model": served_name, "choices": [],
                         "usage": usage}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await handle(request, chat=True)

    return app


def main() -> None:
    """Run the server under uvicorn (loopback by default)."""
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    a = ap.parse_args()
    app = create_app(a.model, a.device, a.dtype, a.weights)
    print(f"tokenprint hf_server: {a.model} on {a.device} ({a.dtype}) at "
          f"http://{a.host}:{a.port}/v1 (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
