from __future__ import annotations

from pathlib import Path

import pytest

from tokenprint.catalog import load_catalog
from tokenprint.catalog.schema import Quantity
from tokenprint.errors import TokenprintError

REQUIRED_GPUS = ["t4", "rtx-6000-ada", "l4", "l40s", "a10g", "v100-sxm2-32gb", "a100-sxm4-40gb",
                 "a100-sxm4-80gb", "h100-sxm", "h100-pcie", "h200", "b200", "mi300x"]
REQUIRED_MODELS = ["llama-3.2-1b", "llama-3.2-3b", "llama-2-7b", "llama-3.1-8b", "llama-3.1-70b",
                   "tinyllama-1.1b", "openllama-3b", "openllama-7b", "tiny"]
REQUIRED_REGIONS = ["US-CAL-CISO", "US-TEX-ERCO", "US-MIDA-PJM", "US-MIDW-MISO", "US-NW-BPAT",
                    "US-NY-NYIS", "CA-QC", "CA-ON", "FR", "DE", "PL", "GB", "SE", "NO", "IN", "CN",
                    "JP", "AU", "BR"]


def test_required_entries_present(catalog):
    for g in REQUIRED_GPUS:
        assert catalog.gpu(g).id == g
    for m in REQUIRED_MODELS:
        assert catalog.model(m).id == m
    for r in REQUIRED_REGIONS:
        assert catalog.region(r).id == r.lower()
    assert len(catalog.regions) >= 25
    assert len(catalog.hosts) >= 3
    assert {r.id for r in catalog.regions.values() if r.study} == {
        "us-cal-ciso", "us-midw-miso", "ca-qc"}


def test_every_number_has_a_source(catalog):
    for table in (catalog.gpus, catalog.hosts, catalog.regions, catalog.models,
                  catalog.fab_nodes, catalog.memory):
        for entry in table.values():
            for name in type(entry).model_fields:
                val = getattr(entry, name)
                if isinstance(val, Quantity):
                    assert val.source.strip(), (entry.id, name)


# Published parameter counts (model cards); the catalog shapes must reproduce them to 1 %.
@pytest.mark.parametrize("model_id,published_b", [
    ("llama-3.2-1b", 1.24), ("llama-3.2-3b", 3.21), ("llama-2-7b", 6.74), ("llama-3.1-8b", 8.03),
    ("llama-3.1-70b", 70.6), ("tinyllama-1.1b", 1.1), ("openllama-7b", 6.74)])
def test_param_counts_match_published(catalog, model_id, published_b):
    params_b = catalog.model(model_id).params / 1e9
    assert abs(params_b - published_b) / published_b < 0.01


def _within_published(value_b: float, pub) -> bool:  # type: ignore[no-untyped-def]
    """Within 1 % of the published figure, or of the published range where one is stated."""
    est = pub.estimate
    lo, hi = est.low, est.high
    return lo * 0.99 <= value_b <= hi * 1.01


def test_every_published_count_matches(catalog):
    checked = 0
    for m in catalog.models.values():
        if m.published_params_b is not None:
            assert _within_published(m.params / 1e9, m.published_params_b), m.id
            checked += 1
        if m.published_active_params_b is not None:
            # conventions differ on counting the (un)embedding in "active"; the range says how
            assert _within_published(m.active_params / 1e9, m.published_active_params_b) or \
                _within_published((m.active_params + m.vocab_size * m.hidden_size) / 1e9,
                                  m.published_active_params_b), m.id
            checked += 1
    assert checked >= 20


def test_moe_parameters_by_hand(catalog):
    m = catalog.model("qwen3-30b-a3b")
    h, layers, experts, k, ffn = 2048, 48, 128, 8, 768
    attn = h * 32 * 128 * 2 + h * 4 * 128 * 2
    one_expert = layers * 3 * h * ffn
    assert m.expert_params == one_expert
    router = h * experts
    dense = layers * (attn + router) + 151936 * h  # + LM head
    assert m.dense_matmul_params == dense
    assert m.matmul_params == dense + k * one_expert
    assert m.params == dense + experts * one_expert + 151936 * h + layers * 2 * h + h
    # mxfp4 shrinks only the routed experts (gpt-oss ships them so)
    g = catalog.model("gpt-oss-20b")
    experts_b = g.num_experts * g.expert_params
    assert g.weight_bytes("mxfp4") == experts_b * 4.25 / 8 + (g.params - experts_b) * 2


def test_derived_model_figures_by_hand(catalog):
    m = catalog.model("llama-2-7b")
    # 2 (K,V) × 32 layers × 32 kv heads × 128 head_dim × 2 bytes = 524,288 bytes per token
    assert m.kv_bytes_per_token("fp16") == 524_288
    assert m.weight_bytes("bf16") == 2 * m.params
    # untied: matmul params exclude the input embedding (32000 × 4096) and the norms
    assert m.matmul_params == m.params - 32000 * 4096 - (32 * 2 * 4096 + 4096)
    assert m.flops_per_token(0) == 2 * m.matmul_params
    assert m.flops_per_token(100) == 2 * m.matmul_params + 4 * 32 * 32 * 128 * 100
    tied = catalog.model("llama-3.2-1b")
    assert tied.matmul_params == tied.params - (16 * 2 * 2048 + 2048)  # all but the norms
    # Llama-3.2-1B: 2 × 16 × 8 × 64 × 2 bytes = 32,768 bytes per token
    assert tied.kv_bytes_per_token("bf16") == 32_768


def test_hf_ids_resolve(catalog):
    assert catalog.model("meta-llama/Meta-Llama-3.1-8B-Instruct").id == "llama-3.1-8b"
    assert catalog.model("meta-llama/Llama-3.2-3B-Instruct").id == "llama-3.2-3b"
    assert catalog.model("Llama-2-7b-chat-hf").id == "llama-2-7b"
    assert catalog.gpu("H100").id == "h100-sxm"
    assert catalog.region("us-cal-ciso").id == "us-cal-ciso"


def test_unknown_id_suggests(catalog):
    with pytest.raises(TokenprintError, match=r"unknown gpu 'h10'.*h100"):
        catalog.gpu("h10")


def test_user_file_overrides_and_extends(tmp_path: Path):
    f = tmp_path / "mine.toml"
    f.write_text("""
[[gpu]]
id = "t4"
tdp_w = { value = 75, source = "my measurement" }

[[region]]
id = "xx-lab"
name = "My lab"
source = "utility bill 2024"
intensity_g_per_kwh = 120
basis = "lifecycle"
accounting = "location"
year = 2024
""")
    cat = load_catalog([f])
    assert cat.gpu("t4").tdp_w.value == 75
    assert cat.gpu("t4").die_area_mm2.value == 545  # untouched fields kept
    assert cat.region("XX-LAB").intensity_g_per_kwh.source == "utility bill 2024"


def test_env_var_catalog(tmp_path: Path, monkeypatch):
    f = tmp_path / "env.toml"
    f.write_text('[[gpu]]\nid = "l4"\ntdp_w = { value = 80, source = "x" }\n')
    monkeypatch.setenv("TOKENPRINT_CATALOG", str(f))
    assert load_catalog().gpu("l4").tdp_w.value == 80


@pytest.mark.parametrize("body,needle", [
    ('[[gpu]]\nid = "t4"\ntdp_w = -5\nsource = "x"\n', "gpu 't4': field 'tdp_w.value'"),
    ('[[gpu]]\nid = "t4"\ntdp_w = 50\n', "has no 'source'"),
    ('[[region]]\nid = "zz"\nname = "Z"\n', "region 'zz': field"),
    ('[[gpu]]\nid = "t4"\nact_node = "2nm"\n', "act_node"),
    ('[[gpux]]\nid = "t4"\n', "unknown section 'gpux'"),
    ('[[gpu]]\nid = "t4"\ndefault_host = "nope"\n', "'nope', which is not in the catalog"),
    ("[[gpu]\n", "not valid TOML"),
])
def test_bad_user_file_names_file_entry_field(tmp_path: Path, body, needle):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(TokenprintError) as exc:
        load_catalog([f])
    assert needle in str(exc.value)
    assert "bad.toml" in str(exc.value)


def test_missing_user_file(tmp_path: Path):
    with pytest.raises(TokenprintError, match="does not exist"):
        load_catalog([tmp_path / "nope.toml"])


def test_quantity_range_must_be_ordered():
    with pytest.raises(ValueError):
        Quantity(value=5, low=6, high=7, source="x")


@pytest.mark.parametrize("nvml_name,gpu_id", [
    ("Tesla T4", "t4"), ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"), ("NVIDIA L4", "l4"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA A10G", "a10g"), ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"), ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H200", "h200"), ("NVIDIA B200", "b200"), ("AMD Instinct MI300X", "mi300x"),
    ("NVIDIA A40", "a40"), ("NVIDIA GH200 480GB", "gh200"),
])
def test_gpu_names_as_nvml_reports_them(catalog, nvml_name, gpu_id):
    assert catalog.gpu(nvml_name).id == gpu_id
