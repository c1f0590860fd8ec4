"""``tokenprint watch``: engine and energy exporter metrics read, differenced and charged.

The expositions below follow the projects' documented formats and names (vLLM, SGLang and TGI
token counters; NVIDIA DCGM exporter's energy counter in mJ; Kepler's per-container GPU joules),
served by a small HTTP server whose values the tests move.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi import FastAPI, Response

from conftest import run_cli, serve_in_thread
from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.operational import operational_g
from tokenprint.errors import TokenprintError
from tokenprint.fleet.exposition import read_energy_j, read_engine
from tokenprint.fleet.watch import (
    ExporterEnergy,
    PredictedEnergy,
    Watcher,
    WatchLedger,
    WatchMetrics,
    increase,
)
from tokenprint.predict.params import idle_w
from tokenprint.units import S_PER_YEAR

M = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'


def vllm(prompt: float, gen: float, running: float) -> str:
    return (
        "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{{{M}}} {running}\n"
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
        "# TYPE vllm:prompt_tokens_total counter\n"
        f"vllm:prompt_tokens_total{{{M}}} {prompt}\n"
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
        "# TYPE vllm:generation_tokens_total counter\n"
        f"vllm:generation_tokens_total{{{M}}} {gen}\n")


SGLANG = ("# HELP sglang:prompt_tokens_total Number of prefill tokens processed.\n"
          "# TYPE sglang:prompt_tokens_total counter\n"
          f"sglang:prompt_tokens_total{{{M}}} 8.128902e+06\n"
          "# HELP sglang:generation_tokens_total Number of generation tokens processed.\n"
          "# TYPE sglang:generation_tokens_total counter\n"
          f"sglang:generation_tokens_total{{{M}}} 7.557572e+06\n"
          "# HELP sglang:num_running_reqs The number of running requests.\n"
          "# TYPE sglang:num_running_reqs gauge\n"
          f"sglang:num_running_reqs{{{M}}} 12.0\n")
TGI = ("# TYPE tgi_request_input_length histogram\n"
       'tgi_request_input_length_bucket{le="+Inf"} 40\n'
       "tgi_request_input_length_sum 20480\n"
       "tgi_request_input_length_count 40\n"
       "# TYPE tgi_request_generated_tokens histogram\n"
       'tgi_request_generated_tokens_bucket{le="+Inf"} 40\n'
       "tgi_request_generated_tokens_sum 5120\n"
       "tgi_request_generated_tokens_count 40\n"
       "# TYPE tgi_batch_current_size gauge\n"
       "tgi_batch_current_size 4\n")


def dcgm(mj_gpu0: float, mj_gpu1: float) -> str:
    head = ("# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot "
            "(in mJ).\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n")
    return head + "".join(
        f'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="{i}",UUID="GPU-{i}",device="nvidia{i}",'
        f'modelName="NVIDIA H100 80GB HBM3",Hostname="node1"}} {v:.0f}\n'
        for i, v in enumerate((mj_gpu0, mj_gpu1)))


KEPLER = ("# HELP kepler_container_gpu_joules_total Aggregated GPU value in joules\n"
          "# TYPE kepler_container_gpu_joules_total counter\n"
          'kepler_container_gpu_joules_total{container_id="a",container_name="vllm",'
          'container_namespace="llm",pod_name="vllm-0"} 1500.5\n'
          'kepler_container_gpu_joules_total{container_id="b",container_name="vllm",'
          'container_namespace="llm",pod_name="vllm-1"} 499.5\n')


def test_engines_and_exporters_are_read():
    r = read_engine(vllm(1000, 500, 3), "v")
    assert (r.engine, r.prompt_tokens, r.generation_tokens, r.running) == ("vllm", 1000, 500, 3)
    assert r.models == ("meta-llama/Llama-3.1-8B-Instruct",)
    s = read_engine(SGLANG, "s")
    assert (s.engine, s.prompt_tokens, s.generation_tokens, s.running) == \
        ("sglang", 8.128902e6, 7.557572e6, 12.0)
    t = read_engine(TGI, "t")
    assert (t.engine, t.prompt_tokens, t.generation_tokens, t.running, t.models) == \
        ("tgi", 20480, 5120, 4, ())
    assert read_energy_j(dcgm(1_000_000, 2_500_000), "dcgm", "d") == pytest.approx(3500.0)
    assert read_energy_j(KEPLER, "kepler", "k") == pytest.approx(2000.0)
    with pytest.raises(TokenprintError) as exc:
        read_engine("# TYPE up gauge\nup 1\n", "http://x/metrics")
    assert str(exc.value).startswith("http://x/metrics exposes no serving engine's token "
                                     "counters (looked for vllm:generation_tokens_total")
    assert str(exc.value).endswith("it has up")
    with pytest.raises(TokenprintError, match="has no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"):
        read_energy_j(KEPLER, "dcgm", "d")
    with pytest.raises(TokenprintError, match="is not Prometheus text exposition"):
        read_engine("{not: prometheus}", "j")


def test_counter_increases_and_restarts():
    assert increase(None, 10.0) == (0.0, False)
    assert increase(10.0, 25.0) == (15.0, False)
    assert increase(25.0, 4.0) == (4.0, True)        # restarted: counts from zero


class _Exporters:
    """A server whose /engine and /dcgm texts the test moves; status 500 on demand."""

    def __init__(self) -> None:
        self.engine = vllm(0, 0, 0)
        self.energy = dcgm(0, 0)
        self.fail = False
        self.app = FastAPI()

        @self.app.get("/engine")
        def engine() -> Response:
            if self.fail:
                return Response("down", status_code=500)
            return Response(self.engine, media_type="text/plain")

        @self.app.get("/dcgm")
        def energy() -> Response:
            return Response(self.energy, media_type="text/plain")


def _watcher(catalog, tmp_path: Path, port: int, energy) -> Watcher:
    return Watcher(catalog, endpoints=[f"http://127.0.0.1:{port}/engine"], model="llama-3.1-8b",
                   gpu="h100-sxm", gpus=2, region="FR", energy=energy,
                   ledger=WatchLedger(tmp_path), metrics=WatchMetrics(), deployment="chat")


def test_intervals_with_measured_energy_restarts_and_gaps(catalog, tmp_path: Path):
    ex = _Exporters()
    with serve_in_thread(ex.app) as port:
        import httpx

        client = httpx.Client(timeout=5)
        w = _watcher(catalog, tmp_path, port,
                     ExporterEnergy("dcgm", f"http://127.0.0.1:{port}/dcgm", client))
        assert w.step(now=1000.0) is None                       # the baseline
        ex.engine, ex.energy = vllm(4000, 1000, 6), dcgm(30_000_000, 30_000_000)
        row = w.step(now=1060.0)
        assert row is not None and row.status == "ok"
        assert (row.prompt_tokens, row.generation_tokens, row.running) == (4000, 1000, 6)
        assert row.energy_j == pytest.approx(60_000.0) and row.energy_method == "dcgm"
        ci = catalog.region("FR").intensity_g_per_kwh.value
        emb = gpu_embodied(catalog.gpu("h100-sxm"), catalog, "device").total_g.mid * 2 \
            * 60.0 / (5.0 * S_PER_YEAR)
        assert row.operational_g == pytest.approx(float(operational_g(60_000.0, ci)))
        assert row.embodied_g == pytest.approx(emb)
        assert row.g_per_1k_tokens == pytest.approx((row.operational_g + emb) / 1000 * 1000)
        ex.engine = vllm(100, 50, 1)                            # the engine restarted
        ex.energy = dcgm(31_000_000, 31_000_000)
        row = w.step(now=1120.0)
        assert row is not None and (row.prompt_tokens, row.generation_tokens) == (100, 50)
        assert "went backwards" in row.note and row.energy_j == pytest.approx(2000.0)
        ex.fail = True
        gap = w.step(now=1180.0)
        assert gap is not None and gap.status == "gap" and gap.energy_j is None
        assert "HTTP 500" in gap.note and gap.generation_tokens is None
        ex.fail = False
        ex.engine, ex.energy = vllm(300, 150, 2), dcgm(32_000_000, 32_000_000)
        after = w.step(now=1240.0)
        assert after is not None and after.start_utc == 1120.0 and after.duration_s == 120.0
        assert after.generation_tokens == 100 and after.energy_j == pytest.approx(2000.0)
        assert "spans a gap of 120 s (1 failed scrape(s))" in after.note
        text = _metrics_text(w)
        lab = ('deployment="chat",gpu="h100-sxm",model="llama-3.1-8b",project="",region="FR",'
               'team=""')
        assert ('tokenprint_watch_tokens_total{deployment="chat",gpu="h100-sxm",'
                'kind="generation",model="llama-3.1-8b",project="",region="FR",team=""} '
                '1150.0') in text
        assert f"tokenprint_watch_gaps_total{{{lab}}} 1.0" in text
        assert f"tokenprint_watch_counter_resets_total{{{lab}}} 1.0" in text
        w.close()
    rows = w.ledger.rows()
    assert [r.status for r in rows] == ["ok", "ok", "gap", "ok"]
    assert rows[0].gpus == 2 and rows[3].energy_j == pytest.approx(2000.0)
    w.ledger.close()
    con = sqlite3.connect(tmp_path / "watch.sqlite")
    assert con.execute("SELECT COUNT(*) FROM intervals WHERE energy_j IS NULL").fetchone() == (1,)


def _metrics_text(w: Watcher) -> str:
    from prometheus_client import generate_latest

    return generate_latest(w.metrics.registry).decode()


def test_predicted_energy_never_below_the_idle_floor(catalog, tmp_path: Path):
    ex = _Exporters()
    with serve_in_thread(ex.app) as port:
        pred = PredictedEnergy(catalog, "llama-3.1-8b", "h100-sxm", 2)
        w = _watcher(catalog, tmp_path, port, pred)
        w.step(now=0.0)
        ex.engine = vllm(51_200, 12_800, 8)
        busy = w.step(now=10.0)
        ex.engine = vllm(51_200, 12_800, 0)
        quiet = w.step(now=70.0)
        w.close()
    assert busy is not None and quiet is not None
    assert busy.energy_method == "predicted"
    assert busy.energy_j == pytest.approx(pred.joules(51_200, 12_800, 8, 10.0))
    floor = idle_w(catalog.gpu("h100-sxm")) * 2 * 60.0
    assert quiet.energy_j == pytest.approx(floor) and quiet.g_per_1k_tokens is None
    assert busy.energy_j > idle_w(catalog.gpu("h100-sxm")) * 2 * 10.0


def test_watch_command(tmp_path: Path, capsys):
    ex = _Exporters()
    ex.engine = vllm(10, 5, 1)
    with serve_in_thread(ex.app) as port:
        url = f"http://127.0.0.1:{port}"
        code, out, err = run_cli(capsys, "watch", "--metrics", f"{url}/engine", "--model",
                                 "llama-3.1-8b", "--gpu", "l4", "--region", "FR", "--energy",
                                 f"dcgm={url}/dcgm", "--interval", "0.2", "--iterations", "2",
                                 "--port", "0", "--results", str(tmp_path))
        assert code == 0, err
        assert "2 interval(s) recorded" in out
        code, _, err = run_cli(capsys, "watch", "--metrics", f"{url}/engine", "--model",
                               "llama-3.1-8b", "--gpu", "l4", "--region", "FR", "--energy",
                               "dcgm", "--port", "0")
        assert code == 2 and "--energy 'dcgm' is invalid" in err
        code, _, err = run_cli(capsys, "watch", "--metrics", "localhost:9", "--model",
                               "llama-3.1-8b", "--gpu", "l4", "--region", "FR")
        assert code == 2 and "give a URL starting with http://" in err
    code, _, err = run_cli(capsys, "watch", "--metrics", "http://127.0.0.1:9/metrics",
                           "--model", "llama-3.1-8b", "--gpu", "l4", "--region", "FR",
                           "--port", "0", "--results", str(tmp_path / "x"))
    assert code == 2 and "cannot scrape http://127.0.0.1:9/metrics" in err
    rows = WatchLedger(tmp_path).rows()
    assert len(rows) == 2 and all(r.energy_method == "dcgm" for r in rows)


PROMETHEUS = __import__("shutil").which("prometheus")


class _Growing:
    """A vLLM and a DCGM exposition whose counters grow with time: 100 tokens (400 prompt)
    and 1,000 J (two GPUs at 500 W) per second."""

    def __init__(self) -> None:
        import time

        self.t0 = time.time()
        self.app = FastAPI()

        def s() -> float:
            return time.time() - self.t0

        @self.app.get("/engine")
        def engine() -> Response:
            return Response(vllm(400 * s(), 100 * s(), 2), media_type="text/plain")

        @self.app.get("/dcgm")
        def energy() -> Response:
            return Response(dcgm(500_000 * s(), 500_000 * s()), media_type="text/plain")


@pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus is not installed (apt-get install "
                                               "prometheus; .ci/run installs it)")
def test_fleet_report_from_a_real_prometheus(catalog, tmp_path: Path, capsys):
    import subprocess
    import threading
    import time

    import httpx
    from prometheus_client import start_http_server

    from conftest import free_port

    ex = _Growing()
    with serve_in_thread(ex.app) as port:
        # a watcher beside the engine, its own /metrics scraped by the same Prometheus
        client = httpx.Client(timeout=5)
        watcher = Watcher(catalog, endpoints=[f"http://127.0.0.1:{port}/engine"],
                          model="llama-3.1-8b", gpu="h100-sxm", gpus=2, region="FR",
                          energy=ExporterEnergy("dcgm", f"http://127.0.0.1:{port}/dcgm",
                                                client),
                          ledger=WatchLedger(tmp_path / "watch"), metrics=WatchMetrics(),
                          deployment="watched", client=client)
        watch_port = free_port()
        http_server, _ = start_http_server(watch_port, addr="127.0.0.1",
                                           registry=watcher.metrics.registry)
        stop = threading.Event()

        def keep_watching() -> None:
            while not stop.is_set():
                watcher.step()
                stop.wait(1.0)

        stepper = threading.Thread(target=keep_watching, daemon=True)
        stepper.start()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
            f"  - job_name: vllm\n    metrics_path: /engine\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n"
            f"  - job_name: dcgm\n    metrics_path: /dcgm\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n"
            f"  - job_name: watch\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{watch_port}']\n")
        prom_port = free_port()
        t0 = time.time()
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{prom_port}"
            for _ in range(100):
                try:
                    if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            def scrapes(metric: str) -> float:
                try:
                    r = httpx.get(f"{url}/api/v1/query", timeout=2, params={
                        "query": f"count_over_time({metric}[1m])"}).json()
                except (httpx.HTTPError, ValueError):   # still starting
                    return 0.0
                res = r.get("data", {}).get("result", [])
                return float(res[0]["value"][1]) if res else 0.0

            for _ in range(120):     # discovery starts scraping ~5 s after ready; wait for 12
                if min(scrapes("vllm:generation_tokens_total"),
                       scrapes("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")) >= 12:
                    break
                time.sleep(0.5)
            t1 = time.time()
            deps = tmp_path / "deployments.toml"
            deps.write_text(
                '[[deployment]]\nname = "chat"\nmatch = { job = "vllm" }\n'
                'model = "llama-3.1-8b"\ngpu = "h100-sxm"\ngpus = 2\nregion = "FR"\n'
                'energy = "dcgm"\nenergy_match = { job = "dcgm" }\n\n'
                '[[deployment]]\nname = "chat-predicted"\nmatch = { job = "vllm" }\n'
                'model = "llama-3.1-8b"\ngpu = "h100-sxm"\ngpus = 2\nregion = "FR"\n')
            iso = "%Y-%m-%dT%H:%M:%SZ"
            start = time.strftime(iso, time.gmtime(t0 - 20))   # before the first scrape
            end = time.strftime(iso, time.gmtime(t1))
            code, out, err = run_cli(capsys, "fleet", "report", "--prometheus", url,
                                     "--deployments", str(deps), "--start", start, "--end",
                                     end, "--step", "3s", "--json", "--out",
                                     str(tmp_path / "report"))
            assert code == 0, err
            import json

            body = json.loads(out)
            steps = [s for s in body["steps"] if s["deployment"] == "chat"]
            ok = [s for s in steps if s["status"] == "ok"]
            assert ok and any(s["status"] == "no data" for s in steps)   # before the scrapes
            ci = catalog.region("FR").intensity_g_per_kwh.value
            for s in ok:
                assert s["energy_method"] == "dcgm" and s["energy_j"] > 0
                assert s["generation_tokens"] > 0
                assert s["operational_g"] == pytest.approx(
                    float(operational_g(s["energy_j"], ci)), rel=1e-9)
                assert s["total_g"] == pytest.approx(s["operational_g"] + s["embodied_g"])
            # 100 tokens and 1,000 J a second: Prometheus's increase() sees the same ratio in
            # the steps both series cover whole (their first samples differ by up to 1 s)
            inner = ok[1:-1]
            assert inner
            gen = sum(s["generation_tokens"] for s in inner)
            energy = sum(s["energy_j"] for s in inner)
            assert energy / gen == pytest.approx(10.0, rel=0.05)
            totals = {t["deployment"]: t for t in body["totals"]}
            assert totals["chat-predicted"]["generation_tokens"] == pytest.approx(
                totals["chat"]["generation_tokens"])
            assert all((tmp_path / "report" / f).is_file()
                       for f in ("fleet.csv", "fleet.json", "fleet.png", "fleet.html"))
            # without a deployments file: what the watcher charged, step by step
            code, out, err = run_cli(capsys, "fleet", "report", "--prometheus", url, "--start",
                                     start, "--end", end, "--step", "3s", "--json")
            assert code == 0, err
            watched = [s for s in json.loads(out)["steps"] if s["status"] == "ok"]
            assert watched and {s["deployment"] for s in watched} == {"watched"}
            assert all(s["gpu"] == "h100-sxm" and s["region"] == "FR" for s in watched)
            assert sum(s["generation_tokens"] for s in watched) > 0
            assert all(s["total_g"] == pytest.approx(s["operational_g"] + s["embodied_g"])
                       for s in watched)
            deps.write_text('[[deployment]]\nname = "none"\nmatch = { job = "nothing" }\n'
                            'model = "llama-3.1-8b"\ngpu = "l4"\ngpus = 1\nregion = "FR"\n')
            code, _, err = run_cli(capsys, "fleet", "report", "--prometheus", url,
                                   "--deployments", str(deps), "--since", "1h")
            assert code == 2 and "no engine token counters match" in err
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            stop.set()
            stepper.join(timeout=10)
            http_server.shutdown()
            watcher.close()
    code, _, err = run_cli(capsys, "fleet", "report", "--prometheus", "http://127.0.0.1:9",
                           "--deployments", str(deps), "--since", "1h")
    assert code == 2 and "cannot reach Prometheus at http://127.0.0.1:9" in err


def test_grafana_dashboard_queries_only_series_tokenprint_exports(catalog):
    import json
    import re

    from prometheus_client import generate_latest

    from tokenprint.gateway.metrics import Metrics

    dash = json.loads((Path(__file__).resolve().parents[1] / "grafana" /
                       "tokenprint-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_bucket$", "", n) for e in exprs for n in re.findall(r"tokenprint_\w+", e)}
    gw = Metrics.create()
    m = gw.of_upstream("u", "m", "FR")
    m.request(200).inc()
    m.added.observe(0.001)
    watch = WatchMetrics()
    exported = set()
    for reg in (gw.registry, watch.registry):
        text = generate_latest(reg).decode()
        exported |= {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE")}
        exported |= {f"{n}_total" for n in list(exported)}
    assert used and used <= exported, used - exported
    assert {"tokenprint_watch_operational_grams_total", "tokenprint_carbon_grams_total"} <= used


def test_watch_with_live_intensity(catalog, tmp_path: Path, monkeypatch):
    from fastapi import Header

    from tokenprint.gateway.intensity import IntensityProvider

    ex = _Exporters()
    fake = FastAPI()

    @fake.get("/v3/carbon-intensity/latest")
    async def latest(zone: str, token: str | None = Header(default=None, alias="auth-token")
                     ) -> dict:
        return {"zone": zone, "carbonIntensity": 123}

    monkeypatch.setenv("EM_TOKEN", "tok")
    with serve_in_thread(ex.app) as port, serve_in_thread(fake) as em_port:
        live = IntensityProvider(catalog, "electricitymaps", token_env="EM_TOKEN",
                                 base_url=f"http://127.0.0.1:{em_port}/v3")
        w = Watcher(catalog, endpoints=[f"http://127.0.0.1:{port}/engine"],
                    model="llama-3.1-8b", gpu="l4", gpus=1, region="FR",
                    energy=PredictedEnergy(catalog, "llama-3.1-8b", "l4", 1),
                    ledger=WatchLedger(tmp_path), metrics=WatchMetrics(), live=live)
        w.step(now=0.0)
        ex.engine = vllm(100, 50, 1)
        row = w.step(now=15.0)
        w.close()
    assert row is not None and row.intensity_g_per_kwh == 123.0
    assert row.intensity_source is not None and "live" in row.intensity_source
    assert row.operational_g == pytest.approx(float(operational_g(row.energy_j, 123.0)))


def test_hf_server_metrics_are_what_watch_reads(hf_server: str, tmp_path: Path, capsys):
    """The test server's /metrics carries vLLM's counters, so watch can be tried without vLLM:
    the tokens it counts are the ones it served."""
    import httpx

    from tokenprint.fleet.exposition import read_engine

    base = hf_server.removesuffix("/v1")
    before = read_engine(httpx.get(f"{base}/metrics").text, "hf_server")
    assert before.engine == "vllm"
    r = httpx.post(f"{hf_server}/completions",
                   json={"model": "tiny", "prompt": [1, 2, 3, 4, 5], "max_tokens": 7},
                   timeout=60)
    assert r.status_code == 200
    after = read_engine(httpx.get(f"{base}/metrics").text, "hf_server")
    assert after.prompt_tokens - before.prompt_tokens == 5
    assert after.generation_tokens - before.generation_tokens == 7
    code, out, err = run_cli(capsys, "watch", "--metrics", f"{base}/metrics", "--model",
                             "tiny", "--gpu", "l4", "--region", "FR", "--interval", "0.2",
                             "--iterations", "2", "--port", "0", "--results", str(tmp_path))
    assert code == 0, err
    assert "2 interval(s) recorded" in out
