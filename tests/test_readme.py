"""README's commands, run exactly as written, so README cannot drift from the code.

The first ``bash`` block holds the two setup lines (set up and run the study; set up and run the
tests) that CI itself runs; it is checked for being exactly two lines. Every later ``bash`` block
runs in order in one temporary folder: ``cd DIR`` moves the commands after it; a line that
starts a server (``tokenprint serve``, ``python -m tokenprint.engines.hf_server``) is started in
the background, waited for on its port and stopped (SIGTERM) when its block ends; every other
command must exit 0. ``text`` blocks are synopses with ``[optional]`` parts and are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _needs_public_data() -> None:
    from tokenprint.errors import TokenprintError
    from tokenprint.samples import find_data

    try:
        find_data()
    except TokenprintError as exc:
        pytest.skip(f"the sample data is cut from the public datasets: {exc}")
SERVERS = {"tokenprint serve": (8080, "/health"),
           "python -m tokenprint.engines.hf_server": (8000, "/v1/models")}


def bash_blocks(text: str) -> list[list[str]]:
    """Each ```bash block as its commands (continuation lines joined, blank lines dropped)."""
    blocks = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", "", body)
        blocks.append([ln for ln in joined.splitlines()
                       if ln.strip() and not ln.lstrip().startswith("#")])
    return blocks


def _env() -> dict[str, str]:
    # the interpreter running the tests (and its console scripts) come first on PATH
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "COLUMNS": "100"}


def _wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, line: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {line}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server not ready on port {port} after 180 s: {line}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)   # the server, not only the shell around it
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_readme_opens_with_the_two_setup_lines():
    first = bash_blocks(README.read_text())[0]
    assert len(first) == 2
    assert "tokenprint study" in first[0] and "pytest" in first[1]


def test_every_readme_command_runs_as_written(tmp_path: Path):
    _needs_public_data()
    blocks = bash_blocks(README.read_text())[1:]
    assert len(blocks) >= 8
    cwd = tmp_path
    env = _env()
    ran = 0
    for block in blocks:
        servers: list[subprocess.Popen[bytes]] = []
        try:
            for line in block:
                command = line.split("  #")[0].strip()
                if command.startswith("cd "):
                    cwd = (cwd / shlex.split(command)[1]).resolve()
                    continue
                server = next((s for s in SERVERS if command.startswith(s)), None)
                if server is not None:
                    port, path = SERVERS[server]
                    m = re.search(r"--port (\d+)", command)
                    port = int(m.group(1)) if m else port
                    log = open(tmp_path / f"server-{port}.log", "wb")  # noqa: SIM115
                    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
                    servers.append(proc)
                    _wait_ready(proc, port, path, command)
                    continue
                r = subprocess.run(["bash", "-c", command], cwd=cwd, env=env,
                                   capture_output=True, text=True, timeout=600)
                assert r.returncode == 0, (f"README command failed (exit {r.returncode}): "
                                           f"{command}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
                assert "Traceback" not in r.stderr, command
                ran += 1
        finally:
            for proc in reversed(servers):
                _stop(proc)
    assert ran >= 20
    assert (cwd / "tokenprint-results" / "ledger.sqlite").is_file()       # the gateway's ledger
    assert (cwd / "tokenprint-results" / "tokenprint.sqlite").is_file()   # bench's runs, apart


@pytest.mark.parametrize("text, expected", [
    ("```bash\na \\\n  b\n# c\nd\n```\n```text\nx\n```\n", [["a b", "d"]]),
])
def test_blocks_are_read_as_a_shell_would(text: str, expected: list[list[str]]):
    assert bash_blocks(text) == expected
