"""Fuzzing every CLI command: valid base arguments, then one to three options set to hostile
values (non-finite, sub-normal, huge, empty, binary files, directories, year 9999 …).

A case passes when the command exits 0 or with one line and status 1/2, without an exception
escaping ``main`` (a traceback) and within ``CASE_LIMIT_S`` (else: a runaway). Used by
``tests/test_cli_fuzz.py`` (a sample, in CI) and ``scripts/fuzz_cli.py`` (1,000+ cases).
"""

from __future__ import annotations

import contextlib
import io
import random
import signal
import sqlite3
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from tokenprint.cli.main import app, main

CASE_LIMIT_S = 60.0
NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e-320", "1e308", "1e999", "12345678901234567890",
           "abc", "", "1,2", "0.5", "3", "1e9", "-0", "0x10", "1_000"]
IDS = ["t4", "nope", "", "FR", "llama-3.2-1b", "l4,h100-sxm", "T4", "☃", "a" * 300, ",", "card",
       "vllm-2025", "hf-transformers", "server", "carbon"]
TIMES = ["2023-07-01T00:00:00Z", "9999-01-01T00:00:00Z", "yesterday", "0", "-1", "24h", "1e9h",
         "2023-07-01", "nanh"]
# commands that start a server or loop until stopped; their inputs are fuzzed elsewhere
# (gateway config and watch parsers)
SKIP = {("serve",)}
# options whose mutation would turn a bounded command into a loop or a server
FIXED = {("watch",): {"--iterations", "--interval", "--port", "--host"}}


def _files(tmp: Path) -> list[str]:
    """Hostile and valid files and folders, made once per run."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "dir").mkdir(exist_ok=True)
    (tmp / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (tmp / "empty.csv").write_text("")
    (tmp / "header.csv").write_text("timestamp,intensity_g_per_kwh\n")
    (tmp / "ok.csv").write_text("timestamp,intensity_g_per_kwh\n" + "".join(
        f"2023-07-01T{h:02d}:00:00Z,{100 + h}\n" for h in range(24)))
    (tmp / "inf.csv").write_text("timestamp,intensity_g_per_kwh\n2023-07-01T00:00:00Z,inf\n"
                                 "2023-07-01T01:00:00Z,1e999\n")
    (tmp / "y9999.csv").write_text("timestamp,intensity_g_per_kwh\n9999-01-01T00:00:00Z,1\n")
    (tmp / "trace.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:00:{k:02d},{100 + k},{20 + k}\n" for k in range(30)))
    (tmp / "huge.jsonl").write_text('{"timestamp": 0, "input_length": 1e30, '
                                    '"output_length": 10}\n')
    (tmp / "bad.toml").write_text("[[gpu]]\nid = 3\n")
    (tmp / "nested.toml").write_text("a = [" * 2000)
    (tmp / "corrupt").mkdir(exist_ok=True)
    (tmp / "corrupt" / "ledger.sqlite").write_bytes(b"not a database" * 100)
    (tmp / "corrupt" / "tokenprint.sqlite").write_bytes(b"not a database" * 100)
    foreign = tmp / "foreign"
    foreign.mkdir(exist_ok=True)
    con = sqlite3.connect(foreign / "tokenprint.sqlite")
    con.execute("CREATE TABLE IF NOT EXISTS runs (x INTEGER)")
    con.commit()
    con.close()
    names = ["dir", "binary.bin", "empty.csv", "header.csv", "ok.csv", "inf.csv", "y9999.csv",
             "trace.csv", "huge.jsonl", "bad.toml", "nested.toml", "corrupt", "foreign"]
    return [str(tmp / n) for n in names] + [str(tmp / "missing" / "x.csv"), ""]


def _base(tmp: Path) -> dict[tuple[str, ...], list[str]]:
    """Valid, fast arguments per command (results and outputs inside ``tmp``)."""
    res, out = str(tmp / "results"), str(tmp / "out")
    return {
        ("carbon",): ["--energy-kwh", "1", "--duration-h", "1", "--gpu", "t4", "--region", "FR"],
        ("bench",): ["--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model",
                     "llama-3.2-1b", "--batch", "1", "--input-len", "8", "--output-len", "2",
                     "--repeat", "1", "--warmup", "0", "--results", res],
        ("predict",): ["--model", "llama-3.2-1b", "--gpu", "t4"],
        ("calibrate",): ["--data", str(tmp / "trace.csv"), "--format", "mlenergy", "--out",
                         str(tmp / "p.toml")],
        ("validate",): ["--data", str(tmp / "trace.csv"), "--format", "mlenergy"],
        ("study",): ["--models", "llama-3.2-1b", "--gpus", "t4", "--regions", "FR", "--batch",
                     "1", "--out", out],
        ("simulate",): ["--model", "llama-3.2-1b", "--gpu", "l4", "--region", "FR",
                        "--synthetic", "50,5"],
        ("plan",): ["--models", "llama-3.2-1b", "--gpus", "l4", "--regions", "FR",
                    "--synthetic", "50,5", "--out", out],
        ("watch",): ["--metrics", "http://127.0.0.1:9/metrics", "--model", "llama-3.2-1b",
                     "--gpu", "l4", "--region", "FR", "--iterations", "1", "--interval", "0.05",
                     "--port", "0", "--results", res],
        ("examples",): ["--copy", str(tmp / "ex")],
        ("runs", "list"): ["--results", res],
        ("runs", "show"): ["x", "--results", res],
        ("runs", "export"): ["--results", res, "--out", str(tmp / "export.csv")],
        ("ledger", "summary"): ["--results", res],
        ("ledger", "check"): ["--results", res],
        ("fleet", "report"): ["--prometheus", "http://127.0.0.1:9", "--since", "2h"],
        ("catalog", "show"): ["gpu", "t4"],
    }


def commands() -> dict[tuple[str, ...], Any]:
    """Every leaf command of the CLI by its words."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            found[path] = cmd

    walk(typer.main.get_command(app), ())
    return found


def _pool(option: str, files: list[str]) -> list[str]:
    o = option.lower()
    if any(k in o for k in ("file", "trace", "data", "catalog", "config", "deployments", "out",
                            "results", "copy", "weights", "intensity-dir")):
        return files
    if any(k in o for k in ("start", "end", "since", "step")):
        return TIMES + NUMBERS[:6]
    return NUMBERS + IDS


@dataclass
class Outcome:
    """What one fuzz run found."""

    cases: int = 0
    by_exit: dict[int, int] = field(default_factory=dict)
    tracebacks: list[str] = field(default_factory=list)
    runaways: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Runaway(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Runaway()


def run(n: int, tmp: Path, seed: int = 0, limit_s: float = CASE_LIMIT_S) -> Outcome:
    """``n`` cases, spread over every command; deterministic for a seed. Cases run in
    ``tmp/cwd``: an empty path option means the current folder, never the repository."""
    rng = random.Random(seed)
    files = _files(tmp / "files")
    base = _base(tmp)
    tree = commands()
    cmds = [c for c in tree if c not in SKIP]
    work = tmp / "cwd"
    work.mkdir(exist_ok=True)
    out = Outcome()
    t_start = time.monotonic()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        with contextlib.chdir(work):
            for k in range(n):
                words = cmds[k % len(cmds)]
                opts = [p for p in tree[words].params if p.param_type_name == "option"
                        and p.name != "help" and p.opts[0] not in FIXED.get(words, set())]
                args = list(base.get(words, []))
                for p in rng.sample(opts, min(len(opts), rng.randint(1, 3))):
                    flag = p.opts[0]
                    if p.is_flag:
                        args.append(flag)
                        continue
                    value = rng.choice(_pool(flag, files))
                    if flag in args:
                        args[args.index(flag) + 1] = value
                    else:
                        args += [flag, value]
                out.cases += 1
                code = _one([*words, *args], limit_s, out)
                out.by_exit[code] = out.by_exit.get(code, 0) + 1
    finally:
        signal.signal(signal.SIGALRM, old)
        signal.setitimer(signal.ITIMER_REAL, 0)
    out.seconds = time.monotonic() - t_start
    return out


def _one(argv: list[str], limit_s: float, out: Outcome) -> int:
    """Run one case in this process; -1 for a traceback, -2 for a runaway."""
    sink = io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main(argv)
        return 0
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except _Runaway:
        out.runaways.append(" ".join(argv))
        return -2
    except BaseException as exc:   # exactly what the fuzz looks for
        out.tracebacks.append(f"{' '.join(argv)} -> {exc.__class__.__name__}: {exc}"[:500])
        return -1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
