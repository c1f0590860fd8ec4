"""CPU share of ``tokenprint watch`` over 20 engine endpoints at a 15 s interval.

Twenty vLLM expositions (each with the ~40 series a real vLLM server exports, histograms
included) and a DCGM exporter are served locally; the watcher scrapes, differences and charges
them ``--steps`` times. Printed: the watcher's CPU seconds per interval (this process's CPU time,
measured around the steps only, the servers run in another process) and the share of one core
that is at a 15 s interval. Target: under 2 %.

Usage: python benchmarks/watch_cpu.py [--endpoints 20] [--steps 20]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tokenprint.catalog import load_catalog
from tokenprint.fleet.watch import ExporterEnergy, Watcher, WatchLedger, WatchMetrics

INTERVAL_S = 15.0


def exposition(n: int) -> str:
    m = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'
    lines = [f"vllm:prompt_tokens_total{{{m}}} {4000 * n}",
             f"vllm:generation_tokens_total{{{m}}} {1000 * n}",
             f"vllm:num_requests_running{{{m}}} 8",
             f"vllm:num_requests_waiting{{{m}}} 0",
             f"vllm:gpu_cache_usage_perc{{{m}}} 0.4"]
    for h in ("time_to_first_token_seconds", "time_per_output_token_seconds",
              "e2e_request_latency_seconds", "request_prompt_tokens"):
        lines.append(f"# TYPE vllm:{h} histogram")
        for le in ("0.01", "0.05", "0.1", "0.5", "1.0", "5.0", "+Inf"):
            lines.append(f'vllm:{h}_bucket{{{m},le="{le}"}} {n}')
        lines += [f"vllm:{h}_sum{{{m}}} {n * 0.3}", f"vllm:{h}_count{{{m}}} {n}"]
    return "# TYPE vllm:prompt_tokens_total counter\n" + "\n".join(lines) + "\n"


def serve(port: int) -> None:
    count = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            count["n"] += 1
            n = count["n"]
            body = (f"# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"
                    f'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="0"}} {n * 1e6}\n'
                    if self.path == "/dcgm" else exposition(n)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    port = free_port()
    server = mp.Process(target=serve, args=(port,), daemon=True)
    server.start()
    time.sleep(0.5)
    import httpx

    client = httpx.Client(timeout=5)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        w = Watcher(load_catalog(), endpoints=[f"{base}/e{i}" for i in range(a.endpoints)],
                    model="llama-3.1-8b", gpu="h100-sxm", gpus=8, region="FR",
                    energy=ExporterEnergy("dcgm", f"{base}/dcgm", client),
                    ledger=WatchLedger(tmp), metrics=WatchMetrics(), client=client)
        w.step(now=0.0)                                   # baseline (imports warmed)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for k in range(1, a.steps + 1):
            w.step(now=k * INTERVAL_S)
        cpu = (time.process_time() - cpu0) / a.steps
        wall = (time.perf_counter() - wall0) / a.steps
        w.close()
    server.terminate()
    print(f"{a.endpoints} endpoints: {cpu * 1e3:.1f} ms CPU and {wall * 1e3:.1f} ms wall per "
          f"interval; at a {INTERVAL_S:g} s interval that is {cpu / INTERVAL_S:.2%} of one core "
          f"(target < 2 %)")


if __name__ == "__main__":
    main()
