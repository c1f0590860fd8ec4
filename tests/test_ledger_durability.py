"""The ledger under concurrency and kills: one writer owns the queue, readers never write, and a
row journaled before the answer's last bytes survives a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tokenprint.gateway.ledger import (
    JOURNAL_DIR,
    Ledger,
    RequestOutcome,
    check,
    recover_folder,
)


def _outcome(k: int) -> RequestOutcome:
    return RequestOutcome(id=f"r{k}", time_utc=1.7e9 + k, upstream="u", model="m",
                          region="FR", endpoint="chat/completions", status=200,
                          prompt_tokens=1, completion_tokens=1)


def test_readers_polling_never_lose_rows(tmp_path: Path):
    """The dashboard's reads ran the writer's commit in their own thread: two commits of one
    snapshot each removed their rows from the queue's head, losing the other's (27 of 36,424
    rows with one dashboard tab open)."""
    ledger = Ledger(tmp_path, flush_s=0.0005)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            ledger.flush(timeout_s=0.5)
            ledger.binned(0.0, 60.0)

    readers = [threading.Thread(target=poll) for _ in range(3)]
    for t in readers:
        t.start()
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:   # paced as requests arrive (the old ledger lost 27 %)
        for _ in range(50):
            assert ledger.add(_outcome(n))
            n += 1
        time.sleep(0.0005)
    stop.set()
    for t in readers:
        t.join()
    assert ledger.count() == n
    ledger.close()
    (run,) = check(tmp_path)
    assert (run["answered"], run["recorded"], run["missing"], run["ok"]) == (n, n, 0, True)
    assert not list((tmp_path / JOURNAL_DIR).glob("*.jsonl"))  # committed: journal deleted


KILLED = textwrap.dedent("""
    import os, signal, sys
    from tokenprint.gateway.ledger import Ledger, RequestOutcome
    led = Ledger(sys.argv[1], flush_s=3600.0)   # the writer never commits before the kill
    for k in range(int(sys.argv[2])):
        led.add(RequestOutcome(id=f"k{k}", time_utc=1.7e9, upstream="u", model="m",
                               region="FR", endpoint="completions", status=200))
    print(led.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_sigkill_loses_no_answered_row_and_check_counts_the_true_gap(tmp_path: Path):
    n = 1234
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path), str(n)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run_id = proc.stdout.strip()
    (run,) = check(tmp_path)
    # nothing committed, every row journaled: the gap is the true one and all of it recoverable
    assert run["run_id"] == run_id and not run["stopped_cleanly"] and not run["running"]
    assert (run["recorded"], run["answered"], run["missing"], run["recoverable"]) == (
        0, n, n, n)
    assert not run["ok"]
    assert recover_folder(tmp_path) == n
    (run,) = check(tmp_path)
    assert (run["recorded"], run["answered"], run["missing"], run["recoverable"]) == (n, n, 0, 0)
    assert recover_folder(tmp_path) == 0          # replayed once, never twice


def test_next_start_replays_a_killed_run_and_skips_a_torn_line(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path), "50"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (seg,) = (tmp_path / JOURNAL_DIR).glob("*.jsonl")
    with open(seg, "ab") as fh:                  # a write cut short by the kill
        fh.write(b'["k-torn", 1.7e9, "u"')
    led = Ledger(tmp_path)                       # a gateway starting again
    assert led.recovered == 50 and led.count() == 50
    led.close()
    assert not seg.exists()


def test_a_live_runs_journal_is_left_to_it(tmp_path: Path):
    live = Ledger(tmp_path, flush_s=3600.0)
    for k in range(5):
        live.add(_outcome(k))
    other = Ledger(tmp_path)                     # a second worker starting beside it
    assert other.recovered == 0
    other.close()
    live.close()
    (a, b) = sorted(check(tmp_path), key=lambda r: r["recorded"])
    assert (a["recorded"], b["recorded"]) == (0, 5) and a["ok"] and b["ok"]


def test_journal_is_private_when_text_is_stored(tmp_path: Path):
    led = Ledger(tmp_path, flush_s=3600.0, private=True)
    led.add(_outcome(1))
    (seg,) = (tmp_path / JOURNAL_DIR).glob("*.jsonl")
    assert os.stat(seg).st_mode & 0o777 == 0o600
    led.close()


OPEN_THEN_KILLED = textwrap.dedent("""
    import os, signal, sys
    from tokenprint.gateway.ledger import Ledger, RequestOutcome
    led = Ledger(sys.argv[1], flush_s=3600.0)
    def rec(rid, status, note=None):
        return RequestOutcome(id=rid, time_utc=1.7e9, upstream="u", model="m", region="FR",
                              endpoint="completions", status=status, note=note)
    led.open(rec("streaming", 500, "killed while answering"))   # headers sent, then the kill
    led.open(rec("finished", 500, "killed while answering"))
    led.add(rec("finished", 200))                                 # its final row
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_stream_cut_by_a_kill_keeps_its_open_row_and_a_final_row_wins(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-c", OPEN_THEN_KILLED, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (run,) = check(tmp_path)
    assert run["missing"] == 2 and run["recoverable"] == 2
    assert recover_folder(tmp_path) == 2
    import sqlite3

    con = sqlite3.connect(tmp_path / "ledger.sqlite")
    rows = dict(con.execute("SELECT id, status FROM requests").fetchall())
    con.close()
    assert rows == {"streaming": 500, "finished": 200}


def test_open_rows_of_a_live_run_never_reach_the_database(tmp_path: Path):
    led = Ledger(tmp_path)
    led.open(RequestOutcome(id="s", time_utc=1.7e9, upstream="u", model="m", region="FR",
                            endpoint="completions", status=500))
    assert led.count() == 0
    led.add(RequestOutcome(id="s", time_utc=1.7e9, upstream="u", model="m", region="FR",
                           endpoint="completions", status=200))
    assert led.count() == 1
    led.close()
    assert not list((tmp_path / JOURNAL_DIR).glob("*.jsonl"))
