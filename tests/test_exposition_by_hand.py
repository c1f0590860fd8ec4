"""Hand-derived tests of reading engine and exporter pages (``fleet/exposition.py``) and of
fetching them within a size and a deadline (``fleet/fetch.py``): totals, model names, and every
refusal by its exact line."""

from __future__ import annotations

import httpx
import pytest

from tokenprint.errors import TokenprintError
from tokenprint.fleet.exposition import MAX_SAMPLE, read_energy_j, read_engine, samples
from tokenprint.fleet.fetch import bounded_get

VLLM = ("# TYPE vllm:generation_tokens_total counter\n"
        'vllm:generation_tokens_total{model_name="b"} 10\n'
        'vllm:generation_tokens_total{model_name="a"} 5\n'
        'vllm:generation_tokens_total{model_name=""} 1\n'
        "# TYPE vllm:prompt_tokens_total counter\n"
        'vllm:prompt_tokens_total{model_name="a"} 7\n'
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a"} 3\n')


def test_engine_totals_and_models_by_hand():
    r = read_engine(VLLM, "http://e/metrics")
    assert (r.engine, r.models, r.prompt_tokens, r.generation_tokens, r.running) == (
        "vllm", ("a", "b"), 7.0, 16.0, 3.0)
    tgi = ("# TYPE tgi_request_generated_tokens histogram\n"
           "tgi_request_generated_tokens_sum 40\ntgi_request_generated_tokens_count 2\n"
           "# TYPE tgi_request_input_length histogram\ntgi_request_input_length_sum 90\n"
           "tgi_request_input_length_count 2\n# TYPE tgi_batch_current_size gauge\n"
           "tgi_batch_current_size 1\n")
    t = read_engine(tgi, "x")
    assert (t.engine, t.models, t.prompt_tokens, t.generation_tokens) == ("tgi", (), 90.0, 40.0)


def test_a_counter_without_its_suffix_is_found_under_both_names():
    dcgm = ("# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"
            'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0"} 2000\n'
            'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1"} 3000\n')
    found = samples(dcgm, "x")
    assert set(found) == {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                          "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total"}
    assert read_energy_j(dcgm, "dcgm", "x") == pytest.approx(5.0)      # mJ → J
    # the parser names a counter's family without its suffix: both names again; a gauge has one
    both = "# TYPE a_total counter\na_total 1\n# TYPE g gauge\ng 2\n"
    assert set(samples(both, "x")) == {"a", "a_total", "g"}
    twice = "# TYPE c counter\nc_total 1\nc_total 1\n"
    assert samples(twice, "x")["c_total"] == [({}, 1.0)]               # a duplicate counts once


def test_refusals_by_their_lines():
    with pytest.raises(TokenprintError) as err:
        read_engine("# TYPE up gauge\nup 1\n# TYPE b gauge\nb 0\n", "http://e/metrics")
    assert str(err.value) == (
        "http://e/metrics exposes no serving engine's token counters (looked for "
        "vllm:generation_tokens_total, sglang:generation_tokens_total, "
        "tgi_request_generated_tokens_sum); it has b, up")
    many = "".join(f"# TYPE m{i} gauge\nm{i} 1\n" for i in range(9))
    with pytest.raises(TokenprintError) as err:
        read_engine(many, "x")
    assert str(err.value).endswith("it has m0, m1, m2, m3, m4, m5, m6, m7 …")
    with pytest.raises(TokenprintError) as err:
        read_engine("".join(f"# TYPE m{i} gauge\nm{i} 1\n" for i in range(8)), "x")
    assert str(err.value).endswith("it has m0, m1, m2, m3, m4, m5, m6, m7")
    with pytest.raises(TokenprintError) as err:
        read_engine("", "x")
    assert str(err.value).endswith("; it has none")
    with pytest.raises(TokenprintError) as err:
        read_engine(VLLM.replace("} 7", "} -7"), "http://e/metrics")
    assert str(err.value) == (
        'http://e/metrics: vllm:prompt_tokens_total{model_name="a"} is -7.0; a counter or gauge '
        f"must be a finite number from 0 to {MAX_SAMPLE:g}: sample refused")
    with pytest.raises(TokenprintError) as err:
        read_energy_j('# TYPE k counter\nk{a="1",b="2"} 1e16\n'.replace("k", "kepler_container_"
                      "gpu_joules"), "kepler", "http://k")
    assert '{a="1",b="2"} is 1e+16' in str(err.value) and str(err.value).startswith("http://k: ")
    read_energy_j("# TYPE kepler_container_gpu_joules counter\n"
                  f"kepler_container_gpu_joules_total {MAX_SAMPLE:g}\n", "kepler", "x")
    with pytest.raises(TokenprintError) as err:
        read_energy_j("", "rapl", "x")
    assert str(err.value) == "unknown energy exporter 'rapl'; valid: dcgm, kepler"
    with pytest.raises(TokenprintError) as err:
        read_energy_j("# TYPE up gauge\nup 1\n", "dcgm", "http://d")
    assert str(err.value) == ("http://d has no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series (dcgm "
                              "energy counter)")
    with pytest.raises(TokenprintError, match=r"^http://d is not Prometheus text exposition: "):
        read_energy_j("}{ not text", "dcgm", "http://d")


def _client(chunks: list[bytes], headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(
        lambda req: httpx.Response(200, content=iter(chunks), headers=headers)))


def test_bounded_get_by_hand():
    got = bounded_get(_client([b"ab", b"cd"], {"content-type": "text/plain; charset=latin-1"}),
                      "http://e/", "cannot scrape http://e/", 10.0, 4)
    assert (got.status, got.body, got.encoding) == (200, b"abcd", "latin-1")
    assert bounded_get(_client([b"x"]), "http://e/", "d", 10.0, 4).encoding == "utf-8"
    with pytest.raises(TokenprintError) as err:
        bounded_get(_client([b"ab", b"cd"]), "http://e/", "cannot scrape http://e/", 10.0, 3)
    assert str(err.value) == "cannot scrape http://e/: more than 3 bytes"
    with pytest.raises(TokenprintError) as err:
        bounded_get(_client([b"ab"]), "http://e/", "cannot scrape http://e/", -1.0, 10)
    assert str(err.value) == "cannot scrape http://e/: not complete within -1 s"
