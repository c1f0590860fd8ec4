"""``watch`` and ``fleet report`` fed bad samples and answers: every one refused with a reason (a
gap row or a step without data), never a traceback, a NaN or a poisoned counter."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_fleet import dcgm, vllm
from tokenprint.errors import TokenprintError
from tokenprint.fleet.exposition import read_energy_j, read_engine
from tokenprint.fleet.report import Deployment, Prometheus, ReportWindow, fleet_report, summary
from tokenprint.fleet.watch import PredictedEnergy, Watcher, WatchLedger, WatchMetrics


class Pages:
    """Scripted /engine texts for a watcher (and a mock transport serving them)."""

    def __init__(self) -> None:
        self.engine = vllm(0, 0, 0)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(
            lambda req: httpx.Response(200, text=self.engine)))


def _watcher(catalog: Any, tmp_path: Path, pages: Pages) -> tuple[Watcher, WatchMetrics]:
    metrics = WatchMetrics()
    w = Watcher(catalog, endpoints=["http://e/metrics"], model="llama-3.1-8b", gpu="h100-sxm",
                gpus=1, region="FR", energy=PredictedEnergy(catalog, "llama-3.1-8b", "h100-sxm",
                                                            1),
                ledger=WatchLedger(tmp_path), metrics=metrics, client=pages.client())
    return w, metrics


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-Inf", "-5", "1e300"])
def test_a_bad_sample_is_a_gap_and_the_next_good_one_continues(catalog, tmp_path: Path, bad):
    pages = Pages()
    w, metrics = _watcher(catalog, tmp_path, pages)
    pages.engine = vllm(100, 50, 1)
    assert w.step(now=1000.0) is None
    pages.engine = vllm(200, 100, 1).replace(" 100\n", f" {bad}\n", 1)  # generation tokens
    assert bad in pages.engine
    gap = w.step(now=1015.0)
    assert gap is not None and gap.status == "gap" and "refused" in gap.note
    pages.engine = vllm(300, 150, 1)
    ok = w.step(now=1030.0)
    # differenced against the last good scrape: 100 more generation tokens, no restart
    assert ok is not None and ok.status == "ok" and ok.generation_tokens == 100
    assert "restart" not in ok.note
    exported = metrics.registry.get_sample_value(
        "tokenprint_watch_tokens_total", {"deployment": w.deployment, "model": "llama-3.1-8b",
                                          "gpu": "h100-sxm", "region": "FR",
                                          "kind": "generation", "team": "", "project": ""})
    assert exported == 100 and math.isfinite(exported)


def test_a_nan_running_gauge_and_a_duplicated_series(catalog, tmp_path: Path):
    text = vllm(100, 50, 2)
    with pytest.raises(TokenprintError, match="refused"):
        read_engine(text.replace(" 2\n", " NaN\n"), "e")   # the running gauge
    twice = text + "\n".join(line for line in text.splitlines()
                             if line.startswith("vllm:generation_tokens_total")) + "\n"
    assert read_engine(twice, "e").generation_tokens == 50
    with pytest.raises(TokenprintError, match="refused"):
        read_energy_j(dcgm(-1000, 5), "dcgm", "d")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.sampled_from([
    vllm(1, 2, 3).replace("3\n", "1e999\n"), "# TYPE a counter\na_total -1\n",
    vllm(1, 2, 3) * 2, "vllm:generation_tokens_total{model_name=\"m\"} NaN\n"]))
def test_exposition_fuzz_fails_closed(text):
    for read in (lambda t: read_engine(t, "e"), lambda t: read_energy_j(t, "dcgm", "d")):
        try:
            r = read(text)
        except TokenprintError:
            continue
        values = [r] if isinstance(r, float) else [r.prompt_tokens, r.generation_tokens,
                                                   r.running]
        assert all(math.isfinite(v) and v >= 0 for v in values)


# ---- fleet report against Prometheus answers of every shape ---------------------------------

def _prom(answer: Any) -> Prometheus:
    def handle(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/series"):
            return httpx.Response(200, json={"status": "success", "data": [
                {"__name__": "vllm:generation_tokens_total"}]})
        body = answer(req) if callable(answer) else answer
        return httpx.Response(200, content=body if isinstance(body, bytes)
                              else json.dumps(body).encode())
    return Prometheus("http://prom", client=httpx.Client(transport=httpx.MockTransport(handle)))


DEP = Deployment(name="d", model="llama-3.1-8b", gpu="h100-sxm", gpus=1, region="FR",
                 match={"job": "vllm"})
WINDOW = ReportWindow(3600.0, 7200.0, 3600.0)

SHAPES = [b"", b"not json", b"[]", b"null", b"42", {"status": "success"},
          {"status": "weird", "data": {}}, {"status": "error"},
          {"status": "success", "data": []}, {"status": "success", "data": {"result": []}},
          {"status": "success", "data": {"resultType": "vector", "result": []}},
          {"status": "success", "data": {"resultType": "matrix", "result": {}}},
          {"status": "success", "data": {"resultType": "matrix", "result": [1]}},
          {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": 1}]}},
          {"status": "success", "data": {"resultType": "matrix",
                                         "result": [{"metric": {}, "values": 5}]}},
          {"status": "success", "data": {"resultType": "matrix",
                                         "result": [{"metric": {}, "values": [[1]]}]}},
          {"status": "success", "data": {"resultType": "matrix",
                                         "result": [{"metric": {}, "values": [["x", "1"]]}]}},
          {"status": "success", "data": {"resultType": "matrix",
                                         "result": [{"metric": {"a": 1}, "values": []}]}},
          {"status": "success", "data": {"resultType": "matrix",
                                         "result": [{"metric": {}, "values": [[3600, None]]}]}},
          {"status": "success", "data": {"resultType": "matrix",
                                         "result": [{"metric": {}, "values": [[3600, []]]}]}},
          {"status": "success", "data": {"resultType": "matrix", "result": None}}]


@pytest.mark.parametrize("answer", SHAPES, ids=[str(k) for k in range(len(SHAPES))])
def test_every_odd_prometheus_answer_is_one_clear_error(catalog, answer):
    try:
        table = fleet_report(_prom(answer), catalog, [DEP], WINDOW)
    except TokenprintError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert (table["status"] != "ok").all()   # an empty but well-formed answer: no data


def _matrix(value: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[3600, value], [7200, "10"]]}]}}


@pytest.mark.parametrize("value", ["-5", "1e308", "+Inf", "-Inf", "1e999", "abc"])
def test_negative_or_absurd_increases_are_refused(catalog, value):
    prom = _prom(_matrix(value))
    table = fleet_report(prom, catalog, [DEP], WINDOW)
    first = table.iloc[0]
    assert first["status"] == "no data" and math.isnan(first["total_g"])
    assert table.iloc[1]["status"] == "ok" and table.iloc[1]["total_g"] > 0
    assert prom.refused and value in prom.refused[0]
    totals = summary(table)
    assert math.isfinite(totals.iloc[0]["total_g"])


def test_a_deployment_with_no_data_has_no_total(catalog):
    empty = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    totals = summary(fleet_report(_prom(empty), catalog, [DEP], WINDOW))
    row = totals.iloc[0]
    assert math.isnan(row["total_g"]) and math.isnan(row["generation_tokens"])
    assert row["steps_without_data"] == row["steps"] == 2


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5)
                    | st.integers(), lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.sampled_from(["status", "data", "resultType", "result",
                                                       "metric", "values", "error"]), c,
                                      max_size=4), max_leaves=12))
def test_prometheus_answer_fuzz_fails_closed(catalog, answer):
    try:
        table = fleet_report(_prom(answer), catalog, [DEP], WINDOW)
    except TokenprintError:
        return
    for col in ("total_g", "operational_g", "energy_j"):
        vals = table[col].dropna()
        assert ((vals >= 0) & vals.map(math.isfinite)).all()


@pytest.mark.parametrize("columns", ["80", "200"])
def test_fleet_report_never_cuts_an_id_or_a_number(tmp_path: Path, columns):
    """As a user runs it, against a stand-in Prometheus with one refused sample and a
    deployment with a long name: at 80 columns one block per deployment, at 200 a table."""
    import os
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import parse_qs, urlparse

    class Prom(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            u = urlparse(self.path)
            q = parse_qs(u.query)
            if u.path.endswith("/series"):
                data: Any = [{"__name__": "vllm:generation_tokens_total"}]
            else:
                start, step = float(q["start"][0]), float(q["step"][0].rstrip("s"))
                data = {"resultType": "matrix", "result": [{"metric": {}, "values": [
                    [start + k * step, "-5" if k == 1 else "1000"] for k in range(4)]}]}
            body = json.dumps({"status": "success", "data": data}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Prom)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deps = tmp_path / "deps.toml"
    deps.write_text('[[deployment]]\nname = "support-bot-llama-3.1-8b-h100-fr-prod"\n'
                    'model = "llama-3.1-8b"\ngpu = "h100-sxm"\ngpus = 2\nregion = "FR"\n')
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tokenprint", "fleet", "report", "--prometheus",
             f"http://127.0.0.1:{server.server_port}", "--deployments", str(deps), "--since",
             "4h", "--step", "1h"], capture_output=True, text=True, timeout=120,
            env={**os.environ, "COLUMNS": columns})
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert "support-bot-llama-3.1-8b-h100-fr-prod" in proc.stdout
    assert "sample(s) from Prometheus refused" in proc.stdout   # every query gets the same answer
    assert "1 of 4" in proc.stdout   # steps without data
    assert ("┏" in proc.stdout) == (columns == "200")
