"""Hand-derived tests of the fleet report's pieces without a server: the steps of a Prometheus
range answer, the report from ``tokenprint watch``'s own series and from its ledger, the market-
based column, and the deployments file's refusals."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pandas as pd
import pytest

from tokenprint.carbon.contracts import Contracts
from tokenprint.carbon.scope2 import Contract
from tokenprint.errors import TokenprintError
from tokenprint.fleet.from_ledger import ledger_report
from tokenprint.fleet.market import with_market
from tokenprint.fleet.report import Prometheus, ReportWindow, load_deployments, watched_report
from tokenprint.fleet.watch import WatchInterval
from tokenprint.units import J_PER_KWH

T0 = 1_700_000_000.0
W = ReportWindow(T0, T0 + 7200.0, 3600.0)         # three steps: T0, T0 + 1 h, T0 + 2 h
KEY_A = {"deployment": "a", "model": "llama-3.1-8b", "gpu": "h100-sxm", "region": "FR",
         "team": "search", "project": "ranker"}
KEY_B = {**KEY_A, "deployment": "b", "team": "", "project": ""}


def _prom(series_by_metric: dict[str, list[dict[str, Any]]]) -> tuple[Prometheus, list[str]]:
    """A Prometheus stand-in answering each query_range by the metric its query names."""
    asked: list[str] = []

    def answer(req: httpx.Request) -> httpx.Response:
        q = parse_qs(urlparse(str(req.url)).query)
        query = q["query"][0]
        asked.append(query)
        # by the exact series the query names: tokenprint_watch_<metric>_total{selector}
        m = re.search(r"tokenprint_watch_(\w+)_total(\{[^}]*\})?\[", query)
        key = (m.group(1) + (m.group(2) or "")) if m else query
        result = series_by_metric.get(key, [])
        return httpx.Response(200, json={"status": "success",
                                         "data": {"resultType": "matrix", "result": result}})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    return Prometheus("http://prom.test", client=client), asked


def _series(labels: dict[str, str], values: dict[int, str]) -> dict[str, Any]:
    return {"metric": labels, "values": [[T0 + 3600.0 * k, v] for k, v in values.items()]}


def test_range_by_keys_each_series_by_its_labels_and_keeps_gaps():
    prom, asked = _prom({"sum(x)": [
        _series({"deployment": "a", "gpu": "l4"}, {0: "1", 2: "3", 5: "9"}),   # step 5: outside
        _series({"deployment": "b"}, {1: "NaN", 2: "-1"})]})                 # no value; refused
    out = prom.range_by("sum(x)", ("deployment", "gpu"), W.start_s, W.end_s, W.step_s)
    assert set(out) == {("a", "l4"), ("b", "")}
    assert out[("a", "l4")].tolist()[0] == 1.0 and out[("a", "l4")].tolist()[2] == 3.0
    assert math.isnan(out[("a", "l4")].tolist()[1])
    assert out[("b", "")].isna().all()
    assert list(out[("a", "l4")].index) == [T0, T0 + 3600.0, T0 + 7200.0]
    assert len(prom.refused) == 1 and "'-1' refused" in prom.refused[0]
    assert asked == ["sum(x)"]


def test_watched_report_by_hand():
    """Deployment a: 2 g operational + 1 g embodied for 1,000 generated tokens in the first
    step, nothing in the second (no data), 4 + 1 g for no tokens in the third; b only embodied."""
    prom, asked = _prom({
        "operational_grams": [_series(KEY_A, {0: "2", 2: "4"}), _series(KEY_B, {0: "0"})],
        "embodied_grams": [_series(KEY_A, {0: "1", 1: "1", 2: "1"}), _series(KEY_B, {0: "3"})],
        "energy_joules": [_series(KEY_A, {0: "7200", 2: "14400"})],
        'tokens{kind="generation"}': [_series(KEY_A, {0: "1000", 2: "0"})],
        'tokens{kind="prompt"}': [_series(KEY_A, {0: "500"})]})
    t = watched_report(prom, W)
    assert len(asked) == 5 and all(q.startswith(
        "sum by (deployment, model, gpu, region, team, project) (increase(tokenprint_watch_")
        and q.endswith("[3600s]))") for q in asked)
    a = t[t["deployment"] == "a"].reset_index(drop=True)
    assert a["total_g"].tolist()[0] == 3.0 and a["total_g"].tolist()[2] == 5.0
    assert math.isnan(a["total_g"].tolist()[1])
    assert a["status"].tolist() == ["ok", "no data", "ok"]
    assert a["g_per_1k_tokens"].tolist()[0] == 3.0 and math.isnan(a["g_per_1k_tokens"][2])
    assert a["energy_j"].tolist()[0] == 7200.0 and a["prompt_tokens"].tolist()[0] == 500.0
    assert a["operational_g"].tolist()[0] == 2.0 and a["embodied_g"].tolist()[1] == 1.0
    assert a["generation_tokens"].tolist()[0] == 1000.0 and math.isnan(a["gpus"][0])
    assert math.isnan(a["mean_running"][0]) and math.isnan(a["utilization"][0])
    assert math.isnan(a["intensity_g_per_kwh"][0]) and list(t.index) == list(range(6))
    assert list(t.columns) == [
        "deployment", "team", "project", "model", "gpu", "gpus", "region", "engine", "end_utc",
        "prompt_tokens", "generation_tokens", "mean_running", "utilization", "energy_j",
        "energy_method", "intensity_g_per_kwh", "operational_g", "embodied_g", "total_g",
        "g_per_1k_tokens", "status", "intensity_source"]
    assert (a["team"][0], a["project"][0], a["model"][0], a["gpu"][0], a["region"][0]) == (
        "search", "ranker", "llama-3.1-8b", "h100-sxm", "FR")
    assert a["engine"][0] == "watch" and a["energy_method"][0] == "tokenprint watch"
    assert a["intensity_source"][0] == "as tokenprint watch charged it"
    assert a["end_utc"][0] == pd.Timestamp(T0, unit="s", tz="UTC")
    b = t[t["deployment"] == "b"].reset_index(drop=True)
    assert b["team"][0] is None and b["project"][0] is None
    assert b["total_g"][0] == 3.0 and math.isnan(b["generation_tokens"][0])
    assert math.isnan(b["energy_j"][0]) and math.isnan(b["prompt_tokens"][0])
    assert math.isnan(b["embodied_g"][1]) and math.isnan(b["total_g"][1])
    empty, _ = _prom({})
    with pytest.raises(TokenprintError, match="no tokenprint_watch_\\* series in the window"):
        watched_report(empty, W)


def _iv(dep: str, end: float, status: str = "ok", **nums: float) -> WatchInterval:
    base = {"prompt_tokens": 10.0, "generation_tokens": 100.0, "energy_j": 3600.0,
            "operational_g": 1.0, "embodied_g": 0.5}
    return WatchInterval(dep, "llama-3.1-8b", "l4", 2, "FR", end - 60.0, end, status,
                         engine="vllm" if dep == "a" else None,
                         **({**base, **nums} if status == "ok" else {}),
                         energy_method="predicted", team="t" if dep == "a" else None)


def test_ledger_report_by_hand():
    """Intervals count in the step their end falls in: two in the first hour, one exactly at the
    second step's end, a gap, and one after the window (left out)."""
    ivs = [_iv("a", T0 - 100.0), _iv("a", T0 - 10.0, generation_tokens=300.0),
           _iv("a", T0 + 3600.0, operational_g=2.0), _iv("a", T0 + 3000.0, status="gap"),
           _iv("a", T0 + 9000.0), _iv("b", T0 + 7000.0, generation_tokens=0.0)]
    t = ledger_report(ivs, W)
    a = t[t["deployment"] == "a"].reset_index(drop=True)
    assert a["end_utc"].tolist() == [pd.Timestamp(T0 + h * 3600.0, unit="s", tz="UTC")
                                     for h in range(3)]
    assert a["generation_tokens"].tolist()[:2] == [400.0, 100.0]
    assert a["operational_g"].tolist()[:2] == [2.0, 2.0]
    assert a["total_g"].tolist()[:2] == [3.0, 2.5]
    assert a["g_per_1k_tokens"].tolist()[0] == pytest.approx(3.0 / 400.0 * 1000)
    assert a["prompt_tokens"].tolist()[0] == 20.0 and a["energy_j"].tolist()[0] == 7200.0
    assert math.isnan(a["total_g"][2]) and a["status"].tolist() == ["ok", "ok", "no data"]
    assert (a["team"][0], a["engine"][0], a["gpus"][0], a["energy_method"][0]) == (
        "t", "vllm", 2, "predicted")
    assert a["intensity_source"][0] == "as tokenprint watch charged it (its ledger)"
    b = t[t["deployment"] == "b"].reset_index(drop=True)
    assert b["engine"][0] == "watch" and b["status"].tolist() == ["no data", "no data", "ok"]
    assert math.isnan(b["g_per_1k_tokens"][2])                 # no tokens: no per-token figure
    assert list(t.columns) == [
        "deployment", "team", "project", "model", "gpu", "gpus", "region", "engine", "end_utc",
        "prompt_tokens", "generation_tokens", "mean_running", "utilization", "energy_j",
        "energy_method", "intensity_g_per_kwh", "operational_g", "embodied_g", "total_g",
        "g_per_1k_tokens", "status", "intensity_source"]
    assert list(t.index) == list(range(6)) and t["deployment"].tolist() == ["a"] * 3 + ["b"] * 3
    assert a[["mean_running", "utilization", "intensity_g_per_kwh"]].isna().all().all()
    assert a["project"][0] is None
    # an interval ending a hair (under a microsecond) past the window still counts in its last
    # step; one ending a second past does not
    edge = ledger_report([_iv("c", W.end_s + 1e-7), _iv("c", W.end_s + 1.0)], W)
    assert edge["generation_tokens"].tolist()[2] == 100.0
    assert edge["status"].tolist() == ["no data", "no data", "ok"]
    # a window that is not a whole number of steps ends at its last whole step
    short = ledger_report([_iv("a", T0)], ReportWindow(T0, T0 + 5400.0, 3600.0))
    assert len(short) == 2
    with pytest.raises(TokenprintError) as err:
        ledger_report([], W)
    assert str(err.value) == ("the watch ledger has no intervals in the window; run tokenprint "
                              "watch with the same --ledger or --results")


def test_with_market_by_hand():
    """2 kWh at the GPUs × PUE 1.5 = 3 kWh a step in FR, 6 kWh over the period; matched
    annually, a 3 kWh PPA at 0 g covers half of each step's energy and the residual mix
    (60 g/kWh) the other half: 1.5 × 60 = 90 g a step; a step without energy stays without."""
    table = pd.DataFrame({
        "end_utc": pd.to_datetime([T0, T0 + 3600.0, T0 + 7200.0], unit="s", utc=True),
        "region": ["FR"] * 3, "energy_j": [2 * J_PER_KWH, 2 * J_PER_KWH, np.nan],
        "operational_g": [99.0, 98.0, np.nan]})
    ppa = Contract("ppa", "FR", T0 - 3600.0, T0 + 1.0, 0.0, mwh=0.003)
    out = with_market(table, Contracts((ppa,), {"FR": 60.0}), 1.5, T0, T0 + 7200.0, 3600.0)
    assert out["location_g"].tolist()[:2] == [99.0, 98.0]
    assert out["market_g"].tolist()[:2] == pytest.approx([1.5 * 60.0, 1.5 * 60.0])
    assert math.isnan(out["market_g"][2])
    # matched hour by hour (steps on the hour): a PPA's 3 kWh over the first step's hour cover
    # it (its energy was used half an hour before its end); the second pays the residual mix
    th = 472_222 * 3600.0
    on_hour = table.assign(end_utc=pd.to_datetime([th + 3600.0, th + 7200.0, th + 10800.0],
                                                  unit="s", utc=True))
    hour_ppa = Contract("ppa", "FR", th, th + 3600.0, 0.0, mwh=0.003)
    hourly = with_market(on_hour, Contracts((hour_ppa,), {"FR": 60.0}, matching="hourly"), 1.5,
                         th + 3600.0, th + 10800.0, 3600.0)
    assert hourly["market_g"].tolist()[:2] == pytest.approx([0.0, 3.0 * 60.0])
    same = with_market(table, None, 1.5, T0, T0 + 7200.0, 3600.0)
    assert same["market_g"].tolist()[:2] == [99.0, 98.0]
    assert with_market(table.iloc[:0], Contracts((ppa,), {"FR": 60.0}), 1.5, T0, T0, 3600.0
                       ).empty


@pytest.mark.parametrize(("text", "error"), [
    ("x = 1\n", "deployments file '{p}' has no [[deployment]] tables"),
    ('[[deployment]]\nname = "a"\nmodel = "m"\ngpu = "g"\ngpus = 0\nregion = "FR"\n',
     "deployments file '{p}', deployment 1: field 'gpus': Input should be greater than or "
     "equal to 1"),
    ('[[deployment]]\nname = "a"\nmodel = "m"\ngpu = "g"\ngpus = 1\nregion = "FR"\n'
     'energy = "rapl"\n',
     "deployment 'a': energy 'rapl' is invalid; valid: predicted, dcgm, kepler"),
    ('[[deployment]]\nname = "a"\nmodel = "m"\ngpu = "g"\ngpus = 1\nregion = "FR"\n' * 2,
     "deployment names must be unique in the deployments file"),
])
def test_deployments_file_refusals(tmp_path: Path, text: str, error: str):
    p = tmp_path / "deployments.toml"
    p.write_text(text)
    with pytest.raises(TokenprintError) as err:
        load_deployments(p)
    assert str(err.value) == error.format(p=p)


def test_deployments_file_read(tmp_path: Path):
    p = tmp_path / "deployments.toml"
    p.write_text('[[deployment]]\nname = "a"\nmodel = "llama-3.1-8b"\n'
                 'gpu = "l4"\ngpus = 2\nregion = "FR"\nteam = "t"\n[deployment.match]\n'
                 'job = "vllm"\n')
    (d,) = load_deployments(p)
    assert (d.name, d.gpus, d.energy, d.stack, d.team, d.match) == (
        "a", 2, "predicted", "vllm-2025", "t", {"job": "vllm"})


def test_deployment_table_by_hand(tmp_path: Path, catalog):
    """Two deployments over three hourly steps, from a stand-in Prometheus: a predicted one on
    2 L4 in FR with an hourly intensity file (its step 2 had no samples), and a DCGM-metered one
    on 1 L4 in PL at the annual figure (its step 2 has tokens but no energy sample)."""
    from tokenprint.carbon.embodied import gpu_embodied
    from tokenprint.carbon.intensity import load_intensity_csv
    from tokenprint.fleet.report import Deployment, fleet_report
    from tokenprint.fleet.watch import PredictedEnergy
    from tokenprint.units import S_PER_YEAR

    fr = tmp_path / "FR.csv"
    fr.write_text("timestamp,intensity_g_per_kwh\n" + "".join(
        f"{pd.Timestamp(T0 + 3600.0 * (h - 1), unit='s', tz='UTC'):%Y-%m-%dT%H:%M:%SZ},{v}\n"
        for h, v in enumerate([40.0, 60.0, 80.0, 120.0])))
    a = Deployment(name="a", match={"job": "a"}, model="llama-3.1-8b", gpu="l4", gpus=2,
                   region="FR", intensity_file=str(fr), team="search")
    b = Deployment(name="b", match={"job": "b"}, model="llama-3.1-8b", gpu="l4", gpus=1,
                   region="PL", energy="dcgm", energy_match={"gpu": "0"})
    answers = {
        'sum(increase(vllm:generation_tokens_total{job="a"}[3600s]))': {0: "1000", 2: "0"},
        'sum(increase(vllm:prompt_tokens_total{job="a"}[3600s]))': {0: "500"},
        'sum(avg_over_time(vllm:num_requests_running{job="a"}[3600s]))': {0: "2"},
        'avg_over_time((sum(vllm:num_requests_running{job="a"}) > bool 0)[3600s:])': {0: "0.5"},
        'sum(increase(vllm:generation_tokens_total{job="b"}[3600s]))': {0: "100", 1: "100"},
        'sum(increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0"}[3600s]))': {0: "7200000"},
    }
    asked: list[str] = []

    def answer(req: httpx.Request) -> httpx.Response:
        q = parse_qs(urlparse(str(req.url)).query)
        if req.url.path.endswith("/series"):
            asked.append(q["match[]"][0])
            return httpx.Response(200, json={"status": "success", "data": [
                {"__name__": "vllm:generation_tokens_total"}]})
        query = q["query"][0]
        asked.append(query)
        vals = answers.get(query, {})
        data = {"resultType": "matrix", "result": [_series({}, vals)] if vals else []}
        return httpx.Response(200, json={"status": "success", "data": data})

    prom = Prometheus("http://prom.test", client=httpx.Client(transport=httpx.MockTransport(
        answer)))
    t = fleet_report(prom, catalog, [a, b], W, scope="card", lifetime_years=4.0, pue=1.2)
    assert set(answers) <= set(asked)
    assert asked[0].startswith('{__name__=~"vllm:generation_tokens_total|') and asked[0].endswith(
        ',job="a"}')
    ta, tb = (t[t["deployment"] == d].reset_index(drop=True) for d in ("a", "b"))
    pred = PredictedEnergy(catalog, "llama-3.1-8b", "l4", 2)
    e0, e2 = pred.joules(500.0, 1000.0, 2.0, 3600.0), pred.joules(0.0, 0.0, 0.0, 3600.0)
    assert ta["energy_j"].tolist()[0] == pytest.approx(e0) and math.isnan(ta["energy_j"][1])
    assert ta["energy_j"].tolist()[2] == pytest.approx(e2)       # the idle floor, not zero
    series = load_intensity_csv(fr, fill=True, region="FR")
    ends = np.array([T0, T0 + 3600.0, T0 + 7200.0])
    ci = series.mean_over(ends - 3600.0, ends)
    assert ta["intensity_g_per_kwh"].tolist() == pytest.approx(ci.tolist())
    assert ci[0] != ci[1]                                        # the hour before each step end
    emb = gpu_embodied(catalog.gpu("l4"), catalog, "card").total_g.mid * 3600.0 / (
        4.0 * S_PER_YEAR)
    assert ta["embodied_g"].tolist() == pytest.approx([2 * emb] * 3)
    assert tb["embodied_g"].tolist() == pytest.approx([emb] * 3)
    op0 = e0 / J_PER_KWH * 1.2 * ci[0]
    assert ta["operational_g"][0] == pytest.approx(op0) and math.isnan(ta["operational_g"][1])
    assert ta["total_g"][0] == pytest.approx(op0 + 2 * emb)
    assert ta["g_per_1k_tokens"][0] == pytest.approx((op0 + 2 * emb) / 1000 * 1000)
    assert math.isnan(ta["g_per_1k_tokens"][2])                  # no tokens, no per-token figure
    assert ta["status"].tolist() == ["ok", "no data", "ok"]
    assert (ta["prompt_tokens"][0], ta["mean_running"][0], ta["utilization"][0]) == (
        500.0, 2.0, 0.5)
    assert (ta["team"][0], ta["project"][0], ta["engine"][0], ta["energy_method"][0],
            ta["region"][0], ta["gpus"][0], ta["model"][0], ta["gpu"][0]) == (
        "search", None, "vllm", "predicted", "FR", 2, "llama-3.1-8b", "l4")
    assert ta["intensity_source"][0] == f"{series.source} ({series.basis})"
    assert ta["end_utc"].tolist() == [pd.Timestamp(x, unit="s", tz="UTC") for x in ends]
    pl = catalog.region("PL")
    assert tb["energy_j"].tolist()[0] == pytest.approx(7200.0)           # 7,200,000 mJ
    assert tb["operational_g"][0] == pytest.approx(
        7200.0 / J_PER_KWH * 1.2 * pl.intensity_g_per_kwh.value)
    assert tb["status"].tolist() == ["ok", "no energy", "no data"]
    assert math.isnan(tb["operational_g"][1]) and math.isnan(tb["total_g"][1])
    assert tb["intensity_source"][0] == f"PL annual ({pl.basis})"
    assert tb["energy_method"][0] == "dcgm" and list(t.index) == list(range(6))
    with pytest.raises(TokenprintError, match="shorter than one step"):
        fleet_report(prom, catalog, [a], ReportWindow(T0, T0 - 1.0, 3600.0))
    with pytest.raises(TokenprintError, match=r"^--step 0 s is invalid; it must be > 0$"):
        fleet_report(prom, catalog, [a], ReportWindow(T0, T0, 0.0))


def _raw_prom(body: str | bytes, status: int = 200, seen: list[httpx.Request] | None = None
              ) -> Prometheus:
    def answer(req: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(req)
        return httpx.Response(status, content=body if isinstance(body, bytes) else body.encode())

    return Prometheus("http://prom.test/", client=httpx.Client(
        transport=httpx.MockTransport(answer)))


def test_prometheus_answers_refused_by_name():
    """Each way an answer can be wrong gets one line naming the server and the query."""
    seen: list[httpx.Request] = []
    with pytest.raises(TokenprintError) as err:
        _raw_prom("<html>", seen=seen).range_sum("up", T0, T0, 60.0)
    assert str(err.value) == ("http://prom.test/ is not a Prometheus API (its answer to 'up' "
                              "is not JSON)")
    assert str(seen[0].url) == ("http://prom.test/api/v1/query_range?query=up&start="
                                f"{T0:.3f}&end={T0:.3f}&step=60s")
    with pytest.raises(TokenprintError) as err:
        _raw_prom('{"status": "error", "error": "bad query"}', 400).range_sum("up", T0, T0, 60)
    assert str(err.value) == "Prometheus refused 'up': bad query"
    with pytest.raises(TokenprintError) as err:
        _raw_prom('{"status": "error"}', 400).range_sum("up", T0, T0, 60)
    assert str(err.value) == "Prometheus refused 'up': no reason"
    with pytest.raises(TokenprintError) as err:
        _raw_prom('{"status": "maybe"}').range_sum("up", T0, T0, 60)
    assert str(err.value).startswith("http://prom.test/ answered 'up' in a shape that is not "
                                     "Prometheus's: status: ")
    with pytest.raises(TokenprintError) as err:
        _raw_prom('{"status": "success", "data": {"resultType": "vector", "result": []}}'
                  ).range_sum("up", T0, T0, 60)
    assert str(err.value).startswith("http://prom.test/ answered 'up' in a shape that is not "
                                     "Prometheus's: resultType: ")
    with pytest.raises(TokenprintError) as err:
        _raw_prom('{"status": "success", "data": 5}').range_sum("up", T0, T0, 60)
    assert str(err.value).startswith("http://prom.test/ answered 'up' in a shape that is not "
                                     "Prometheus's: the answer: ")
    seen.clear()
    with pytest.raises(TokenprintError) as err:
        _raw_prom('{"status": "success", "data": [{"job": "x"}]}', seen=seen).names('{a="b"}')
    assert str(err.value).startswith("http://prom.test/ answered series of '{a=\"b\"}' in a "
                                     "shape that is not Prometheus's: 0.__name__: ")
    assert seen[0].url.path == "/api/v1/series" and seen[0].url.params["match[]"] == '{a="b"}'
    with pytest.raises(TokenprintError) as err:
        _raw_prom("<html>").names("{}")
    assert str(err.value) == ("http://prom.test/ is not a Prometheus API (its answer to "
                              "'/api/v1/series' is not JSON)")
    with pytest.raises(TokenprintError, match=r"^cannot reach Prometheus at http://prom\.test/: "):
        Prometheus("http://prom.test/", client=httpx.Client(transport=httpx.MockTransport(
            lambda req: (_ for _ in ()).throw(httpx.ConnectError("refused"))))).names("{}")


def test_range_steps_sums_and_limits_by_hand():
    body = {"status": "success", "data": {"resultType": "matrix", "result": [
        _series({"i": "0"}, {0: "1", 1: "2", 3: "9"}), _series({"i": "1"}, {0: "10"}),
        {"metric": {}, "values": [[T0 - 3600.0, "5"], [T0 + 7200.0, "1e18"],
                                  [T0 + 3600.0, "1.5e18"]]}]}}
    prom = _raw_prom(json.dumps(body))
    s = prom.range_sum("q", W.start_s, W.end_s, W.step_s)
    assert s.index.tolist() == [T0, T0 + 3600.0, T0 + 7200.0]
    # 1 + 10 at the first step; 2 at the second; 10¹⁸ is the largest value taken; a step
    # before the window and one past it are dropped, 1.5 × 10¹⁸ refused
    assert s.tolist() == [11.0, 2.0, 1e18]
    assert len(prom.refused) == 1 and "1.5e18" in prom.refused[0]
    assert prom.refused[0] == ("q at 1700003600: '1.5e18' refused (a finite number from 0 to "
                               "1e+18 is valid)")
    empty = _raw_prom('{"status": "success", "data": {"resultType": "matrix", "result": []}}')
    assert empty.range_sum("q", T0, T0 + 60.0, 60.0).isna().all()
    assert Prometheus._steps(T0, T0 + 60.0 * 10_999, 60.0) == 11_000      # exactly the limit
    with pytest.raises(TokenprintError) as err:
        Prometheus._steps(T0, T0 + 60.0 * 11_000, 60.0)
    assert str(err.value) == ("11001 steps is more than Prometheus returns in one query "
                              "(11000); use a longer --step or a shorter window")
    assert Prometheus._steps(T0, T0 + 150.0, 60.0) == 3


def test_selector_and_engine_lookup_by_hand():
    from tokenprint.fleet.report import Deployment, engine_of, selector

    assert selector({"b": 'say "hi"', "a": "c:\\d"}) == '{a="c:\\\\d",b="say \\"hi\\""}'
    assert selector({}) == "{}"
    seen: list[httpx.Request] = []
    prom = _raw_prom('{"status": "success", "data": [{"__name__": "sglang:generation_tokens_'
                     'total"}]}', seen=seen)
    d = Deployment(name="a", match={"job": "x"}, model="m", gpu="g", gpus=1, region="FR")
    assert engine_of(prom, d) == ("sglang", "sglang:prompt_tokens_total",
                                  "sglang:generation_tokens_total", "sglang:num_running_reqs")
    wanted = ("vllm:generation_tokens_total|sglang:generation_tokens_total|"
              "tgi_request_generated_tokens_sum")
    assert seen[0].url.params["match[]"] == f'{{__name__=~"{wanted}",job="x"}}'
    bare = Deployment(name="b", model="m", gpu="g", gpus=1, region="FR")
    none = _raw_prom('{"status": "success", "data": []}', seen=seen)
    with pytest.raises(TokenprintError) as err:
        engine_of(none, bare)
    assert seen[-1].url.params["match[]"] == f'{{__name__=~"{wanted}"}}'
    assert str(err.value) == ("deployment 'b': no engine token counters match {} in Prometheus "
                              "(looked for vllm:generation_tokens_total, "
                              "sglang:generation_tokens_total, tgi_request_generated_tokens_sum)")


def test_summary_by_hand():
    from tokenprint.fleet.report import summary

    table = pd.DataFrame({
        "deployment": ["z", "z", "a"], "team": ["t", "t", None], "project": [None] * 3,
        "model": ["m"] * 3, "gpu": ["g"] * 3, "gpus": [2, 2, 1], "region": ["FR"] * 3,
        "generation_tokens": [1000.0, np.nan, 0.0], "energy_j": [10.0, np.nan, 5.0],
        "operational_g": [3.0, np.nan, 1.0], "embodied_g": [1.0, 1.0, 2.0],
        "total_g": [4.0, np.nan, 3.0], "status": ["ok", "no data", "ok"]})
    out = summary(table)
    assert out["deployment"].tolist() == ["z", "a"]                  # as they first appear
    z, a = out.to_dict("records")
    assert (z["generation_tokens"], z["operational_g"], z["embodied_g"], z["total_g"]) == (
        1000.0, 3.0, 2.0, 5.0)
    assert (z["steps"], z["steps_without_data"], z["team"], z["gpus"]) == (2, 1, "t", 2)
    assert z["g_per_1k_tokens"] == 5.0 and math.isnan(a["g_per_1k_tokens"])
    assert z["location_g"] == 3.0 and z["market_g"] == 3.0 and a["total_g"] == 3.0
    assert z["sci_g_per_1k_tokens"] == pytest.approx(5.0)
