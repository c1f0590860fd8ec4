"""Shared fixtures: the built-in catalog and the optional ../shared/data folder."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def hf_server() -> Iterator[str]:
    proc, url = start_hf_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def hf_server2() -> Iterator[str]:
    proc, url = start_hf_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)
