"""Typed, validated catalog entries. Every number is a :class:`Quantity` that carries its source.

In TOML a quantity is either an inline table
``{ value = 545, source = "...", low = .., high = .. }`` or a plain number, which then takes the
entry's ``source``. An entry with a plain number and no ``source`` is refused: tokenprint ships no
number without a citation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenprint.catalog.vision import VisionEncoder
from tokenprint.ranges import Estimate
from tokenprint.units import DTYPE_BYTES

ActNode = Literal["28nm", "20nm", "14nm", "10nm", "8nm", "7nm", "5nm", "3nm"]


class Quantity(BaseModel):
    """A number with its source and, where sources disagree, a low/high range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float = Field(ge=0)
    source: str = Field(min_length=1)
    low: float | None = Field(default=None, ge=0)
    high: float | None = Field(default=None, ge=0)
    note: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Quantity:
        lo = self.value if self.low is None else self.low
        hi = self.value if self.high is None else self.high
        if not lo <= self.value <= hi:
            raise ValueError(f"needs low <= value <= high, got {lo} <= {self.value} <= {hi}")
        return self

    @property
    def estimate(self) -> Estimate:
        """The quantity as an :class:`Estimate` (low/mid/high)."""
        return Estimate(
            self.value if self.low is None else self.low,
            self.value,
            self.value if self.high is None else self.high,
        )


class Entry(BaseModel):
    """Common base: an id, a display name, an entry-wide default source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    source: str | None = None
    aliases: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _wrap_plain_numbers(cls, data: Any) -> Any:
        """Turn plain numbers in Quantity fields into Quantities with the entry's source."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        default_source = out.get("source")
        def wrap(label: str, raw: Any) -> Any:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                return raw
            if not default_source:
                raise ValueError(
                    f"field {label!r} is a plain number but the entry has no 'source'; "
                    f"write {{ value = {raw}, source = \"...\" }} or give the entry a source"
                )
            return {"value": raw, "source": default_source}

        for name, field in cls.model_fields.items():
            if name not in out:
                continue
            if _is_quantity_field(field.annotation):
                out[name] = wrap(name, out[name])
            elif "Quantity" in str(field.annotation) and isinstance(out[name], dict):
                out[name] = {k: wrap(f"{name}.{k}", v) for k, v in out[name].items()}
        return out

    def sources(self) -> dict[str, str]:
        """Field name → source citation for every quantity in this entry."""
        found: dict[str, str] = {}
        for name in type(self).model_fields:
            val = getattr(self, name)
            if isinstance(val, Quantity):
                found[name] = val.source
            elif isinstance(val, dict):
                for key, sub in val.items():
                    if isinstance(sub, Quantity):
                        found[f"{name}.{key}"] = sub.source
        return found


def _is_quantity_field(annotation: Any) -> bool:
    text = str(annotation)
    return "Quantity" in text and "dict" not in text


class Gpu(Entry):
    """An accelerator: the facts embodied carbon and the performance model need."""

    vendor: str
    die_name: str
    die_area_mm2: Quantity
    process: str
    act_node: ActNode
    memory_type: str
    memory_gb: Quantity
    memory_bw_gb_s: Quantity
    tdp_w: Quantity
    idle_w: Quantity | None = None
    fp16_tflops: Quantity
    fp8_tflops: Quantity | None = None
    fp4_tflops: Quantity | None = None   # dense FP4 tensor rate (Blackwell), where it has one
    bf16: bool
    release_year: int = Field(ge=2000, le=2100)
    form_factor: Literal["pcie", "sxm", "oam"]
    n_packages: int = Field(default=1, ge=1)
    board_g: Quantity
    default_host: str
    embodied_overrides_g: dict[str, Quantity] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_overrides(self) -> Gpu:
        allowed = {"die", "memory", "packaging", "board"}
        bad = set(self.embodied_overrides_g) - allowed
        if bad:
            raise ValueError(
                f"embodied_overrides_g has unknown component(s) {sorted(bad)}; "
                f"valid: {sorted(allowed)}"
            )
        return self


class Host(Entry):
    """A host server archetype whose embodied carbon is shared by the GPUs it holds."""

    gpu_slots: int = Field(ge=1)
    cpu_count: int = Field(ge=0)
    cpu_die_area_mm2: Quantity
    cpu_act_node: ActNode
    dram_gb: Quantity
    dram_type: str
    ssd_gb: Quantity
    chassis_g: Quantity
    embodied_override_g: Quantity | None = None
    # a manufacturer's footprint of a reference server: its manufacturing carbon and the DRAM and
    # SSD it was assessed with (the archetype's extra DRAM and SSD are added by per-GB factors)
    pcf_manufacturing_g: Quantity | None = None
    pcf_dram_gb: float = Field(default=0, ge=0)
    pcf_ssd_gb: float = Field(default=0, ge=0)


class Region(Entry):
    """A grid region (Electricity Maps zone id where one exists) with its annual intensity."""

    intensity_g_per_kwh: Quantity
    basis: Literal["lifecycle", "direct"]
    accounting: Literal["consumption", "production", "location"]
    year: int
    direct_g_per_kwh: Quantity | None = None
    mix: str = ""
    study: bool = False


class FabNode(Entry):
    """ACT's per-area fab parameters for one process node."""

    epa_kwh_per_cm2: Quantity
    gpa95_g_per_cm2: Quantity
    gpa99_g_per_cm2: Quantity
    mpa_g_per_cm2: Quantity


class FabDefaults(BaseModel):
    """Fab-wide ACT defaults: yield, packaging per IC, and the fab grid's intensity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    yield_fraction: Quantity
    packaging_g_per_ic: Quantity
    fab_intensity_g_per_kwh: Quantity


class Pcf(Entry):
    """A vendor's product carbon footprint: total, component split, boundary and the GPUs it
    covers (the total is allocated equally among ``gpus``)."""

    product: str
    scope: Literal["chip", "card", "board", "server"]
    gpus: int = Field(ge=1)
    applies_to: list[str]
    boundary: str
    total_g: Quantity
    memory_gb: float = Field(default=0, ge=0)
    breakdown_g: dict[str, Quantity] = Field(default_factory=dict)
    note: str = ""

    @model_validator(mode="after")
    def _split_adds_up(self) -> Pcf:
        if self.breakdown_g:
            parts = sum(q.value for q in self.breakdown_g.values())
            if abs(parts - self.total_g.value) > 0.01 * self.total_g.value:
                raise ValueError(f"breakdown_g sums to {parts:g} g, not total_g "
                                 f"{self.total_g.value:g} g")
        return self

    def per_gpu_g(self, part: str | None = None) -> float:
        """The total (or one component) allocated to one GPU."""
        q = self.total_g if part is None else self.breakdown_g[part]
        return q.value / self.gpus


BOM_PARTS = ("die", "memory", "board", "thermal", "transport")
# how an assessed card's reported parts map onto the bill of materials; the rest lies outside
# tokenprint's cradle-to-gate card boundary and is shown apart
LCA_PART_MAP = {"die": "die", "memory": "memory", "board": "board", "heatsink": "thermal",
                "casing": "thermal", "transport": "transport"}
LCA_OUTSIDE = ("distribution", "end_of_life")
FormFactor = Literal["pcie", "sxm", "oam"]


def memory_family(memory_type: str) -> str:
    """``gddr`` (GDDR5/6/6X/7), ``hbm`` (stacked) or ``ddr`` (DDR/LPDDR) of a memory type id."""
    t = memory_type.lower()
    if t.startswith("gddr"):
        return "gddr"
    if t.startswith("hbm"):
        return "hbm"
    return "ddr"


class LcaCard(BaseModel):
    """One card a life-cycle assessment covered: its specs as assessed and its parts in grams."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    gpu: str | None = None  # the catalog id, where the card is in the catalog
    die_area_mm2: float = Field(gt=0)
    memory_gb: float = Field(gt=0)
    memory_type: str
    tdp_w: float = Field(gt=0)
    form_factor: FormFactor
    parts_g: dict[str, float]
    note: str = ""

    @model_validator(mode="after")
    def _known_parts(self) -> LcaCard:
        allowed = set(LCA_PART_MAP) | set(LCA_OUTSIDE)
        bad = set(self.parts_g) - allowed
        if bad:
            raise ValueError(f"parts_g has unknown part(s) {sorted(bad)}; valid: {sorted(allowed)}")
        if any(v < 0 for v in self.parts_g.values()):
            raise ValueError("parts_g values must be >= 0 g")
        return self

    def part_g(self, part: str) -> float | None:
        """The card's grams for a bill-of-materials part (None: the study did not report it)."""
        names = [k for k, v in LCA_PART_MAP.items() if v == part and k in self.parts_g]
        return sum(self.parts_g[k] for k in names) if names else None


class LcaFactor(BaseModel):
    """A per-unit factor a source gives for one part: grams per mm² of die, per GB of memory,
    per W of TDP, or per card; limited to memory types, fab nodes or form factors if listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    part: Literal["die", "memory", "board", "thermal", "transport"]
    per: Literal["mm2", "gb", "w", "card"]
    value: float = Field(ge=0)
    memory_types: list[str] = Field(default_factory=list)  # a family (gddr, hbm, ddr) or a type
    nodes: list[ActNode] = Field(default_factory=list)
    form_factors: list[FormFactor] = Field(default_factory=list)
    boundary_matched: bool = True
    note: str = ""

    def applies(self, memory_type: str, node: str, form_factor: str) -> bool:
        """Whether this factor covers a card with these properties."""
        mt = self.memory_types
        return ((not mt or memory_type in mt or memory_family(memory_type) in mt)
                and (not self.nodes or node in self.nodes)
                and (not self.form_factors or form_factor in self.form_factors))


class Lca(Entry):
    """A public life-cycle assessment of GPU cards, one witness in the embodied reconciliation.

    ``teardown``: per-card parts (and, for cards it did not assess, its own medians per unit);
    ``factors``: per-unit factors only.
    """

    year: int = Field(ge=1990, le=2100)
    method: Literal["teardown", "factors"]
    boundary: str
    licence: str = ""
    note: str = ""
    cards: list[LcaCard] = Field(default_factory=list)
    factors: list[LcaFactor] = Field(default_factory=list)


class MemoryFactor(Entry):
    """Embodied carbon per GB of a memory or storage type."""

    kind: Literal["dram", "ssd", "hdd"]
    g_per_gb: Quantity


class ModelArch(Entry):
    """A decoder-only transformer: dense (LLaMA-style) or mixture-of-experts, with grouped-query
    (``gqa``) or multi-head latent attention (``mla``, DeepSeek-V2/V3, Kimi K2).

    MoE layers replace the dense MLP by ``num_experts`` experts of ``moe_ffn_size`` each, of which
    ``experts_per_token`` (plus ``shared_experts`` always-on ones) run per token: FLOPs follow the
    *active* parameters, weight memory the *total*. The first ``first_dense_layers`` layers keep
    a dense MLP of ``ffn_size`` (DeepSeek's ``first_k_dense_replace``).

    MLA caches one compressed latent of ``kv_lora_rank + qk_rope_head_dim`` elements per token
    and layer (no separate K and V, no heads), replicated on every GPU of a tensor-parallel group
    as vLLM does. Decode runs with the up-projections absorbed (attention over the latent:
    ``2·heads·(2·kv_lora_rank + qk_rope_head_dim)`` FLOPs per token pair and layer); prefill
    decompresses K and V (``2·heads·(qk_nope + qk_rope + v_head_dim)``).

    A multimodal model adds a ``vision`` encoder (:mod:`tokenprint.catalog.vision`): its weights
    count in the model's memory; what an image costs is in :mod:`tokenprint.predict.media`.
    """

    hf_ids: list[str] = Field(default_factory=list)
    hidden_size: int = Field(ge=1)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    ffn_size: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    tied_embeddings: bool
    max_context: int = Field(ge=1)
    num_experts: int = Field(default=0, ge=0)
    experts_per_token: int = Field(default=0, ge=0)
    shared_experts: int = Field(default=0, ge=0)
    moe_ffn_size: int = Field(default=0, ge=0)
    first_dense_layers: int = Field(default=0, ge=0)
    attention: Literal["gqa", "mla"] = "gqa"
    q_lora_rank: int = Field(default=0, ge=0)      # 0: a full query projection
    kv_lora_rank: int = Field(default=0, ge=0)
    qk_nope_head_dim: int = Field(default=0, ge=0)
    qk_rope_head_dim: int = Field(default=0, ge=0)
    v_head_dim: int = Field(default=0, ge=0)
    # hybrid state-space models (Nemotron-H): one block per layer, as the config's
    # hybrid_override_pattern says: M a Mamba-2 mixer, * attention, - an MLP
    layer_pattern: str = Field(default="", pattern=r"^[M*-]*$")
    mlp_matrices: int = Field(default=3, ge=2, le=3)   # 3: gated (SwiGLU); 2: plain (ReLU²)
    ssm_heads: int = Field(default=0, ge=0)
    ssm_head_dim: int = Field(default=0, ge=0)
    ssm_state_size: int = Field(default=0, ge=0)
    ssm_groups: int = Field(default=0, ge=0)
    ssm_conv_kernel: int = Field(default=4, ge=1)
    ssm_state_dtype: str = "auto"   # the config's mamba_ssm_cache_dtype (auto: the KV dtype)
    vision: VisionEncoder | None = None    # a multimodal model's image encoder
    published_params_b: Quantity | None = None
    published_active_params_b: Quantity | None = None

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelArch:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads {self.num_heads} must be a multiple of num_kv_heads "
                f"{self.num_kv_heads}"
            )
        if self.num_experts and not (0 < self.experts_per_token <= self.num_experts
                                     and self.moe_ffn_size > 0):
            raise ValueError("a MoE model needs 0 < experts_per_token <= num_experts and "
                             "moe_ffn_size > 0")
        if self.first_dense_layers and not (self.num_experts
                                            and self.first_dense_layers < self.num_layers):
            raise ValueError("first_dense_layers needs a MoE model and fewer than num_layers")
        if self.attention == "mla" and not (self.kv_lora_rank and self.qk_nope_head_dim
                                            and self.qk_rope_head_dim and self.v_head_dim):
            raise ValueError("attention = 'mla' needs kv_lora_rank, qk_nope_head_dim, "
                             "qk_rope_head_dim and v_head_dim")
        if self.layer_pattern:
            if len(self.layer_pattern) != self.num_layers:
                raise ValueError(f"layer_pattern has {len(self.layer_pattern)} blocks, "
                                 f"num_layers is {self.num_layers}")
            if self.num_experts or self.attention != "gqa":
                raise ValueError("layer_pattern is for dense hybrid models (no MoE, no MLA)")
            if "M" in self.layer_pattern and not (self.ssm_heads and self.ssm_head_dim
                                                  and self.ssm_state_size and self.ssm_groups):
                raise ValueError("Mamba blocks need ssm_heads, ssm_head_dim, ssm_state_size "
                                 "and ssm_groups")
        return self

    @property
    def attention_layers(self) -> int:
        """Layers (blocks) with self-attention: all of them unless a hybrid pattern says."""
        return self.layer_pattern.count("*") if self.layer_pattern else self.num_layers

    @property
    def mlp_layers(self) -> int:
        """Layers (blocks) with a dense MLP (a MoE model's dense ones are counted apart)."""
        return self.layer_pattern.count("-") if self.layer_pattern else self.num_layers

    @property
    def ssm_layers(self) -> int:
        """Mamba-2 blocks of a hybrid model."""
        return self.layer_pattern.count("M")

    @property
    def ssm_inner(self) -> int:
        """A Mamba-2 block's inner width: heads × head_dim."""
        return self.ssm_heads * self.ssm_head_dim

    @property
    def _ssm_conv_channels(self) -> int:
        return self.ssm_inner + 2 * self.ssm_groups * self.ssm_state_size

    @property
    def ssm_matmul_params_per_layer(self) -> int:
        """A Mamba-2 block's projections: in (x, z, B, C, dt) and out."""
        h = self.hidden_size
        return h * (self.ssm_inner + self._ssm_conv_channels + self.ssm_heads) \
            + self.ssm_inner * h

    def state_bytes_per_seq(self, dtype: str) -> float:
        """The fixed state a sequence keeps in every Mamba-2 block, whatever its length: the
        SSM state (heads × head_dim × state) and the convolution's last kernel − 1 inputs."""
        ssm_dt = dtype if self.ssm_state_dtype == "auto" else self.ssm_state_dtype
        per_layer = (self.ssm_inner * self.ssm_state_size * dtype_bytes(ssm_dt)
                     + self._ssm_conv_channels * (self.ssm_conv_kernel - 1) * dtype_bytes(dtype))
        return self.ssm_layers * per_layer

    @property
    def ssm_flops_per_token(self) -> float:
        """FLOPs of the Mamba-2 blocks beyond their projections, per token: the state update
        and read-out (4 × inner × state) and the short convolution."""
        return float(self.ssm_layers * (4 * self.ssm_inner * self.ssm_state_size
                                        + 2 * self._ssm_conv_channels * self.ssm_conv_kernel))

    @property
    def allreduces_per_pass(self) -> int:
        """All-reduces a tensor-parallel group makes per pass: two per transformer layer
        (attention and MLP), one per block of a hybrid pattern."""
        return self.num_layers if self.layer_pattern else 2 * self.num_layers

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is routed experts."""
        return self.num_layers - self.first_dense_layers if self.num_experts else 0

    @property
    def kv_replicated(self) -> bool:
        """Whether every GPU of a tensor-parallel group holds the whole KV cache (MLA's latent)."""
        return self.attention == "mla"

    def group_kv_bytes_per_token(self, dtype: str, tp: int = 1) -> float:
        """KV-cache bytes one token of context takes in a group of ``tp`` GPUs: split among
        them, or held by every one where the cache is replicated (MLA)."""
        return self.kv_bytes_per_token(dtype) * (tp if self.kv_replicated else 1)

    def attn_flops_per_pair(self, decode: bool = True) -> float:
        """Attention FLOPs for one (token, earlier token) pair, all layers: scores and values."""
        if self.attention == "mla":
            per_head = (2 * self.kv_lora_rank + self.qk_rope_head_dim if decode else
                        self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)
            return 2.0 * self.num_layers * self.num_heads * per_head
        return 4.0 * self.attention_layers * self.num_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.num_experts > 0

    @property
    def attention_params_per_layer(self) -> int:
        """Matmul weights of one layer's attention: Q, K, V and output projections (MLA: the
        query down/up projections, the joint KV down projection with the RoPE key, the KV up
        projection, the output)."""
        h, heads = self.hidden_size, self.num_heads
        if self.attention == "mla":
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * heads * qk if self.q_lora_rank
                 else h * heads * qk)
            kv = (h * (self.kv_lora_rank + self.qk_rope_head_dim)
                  + self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim))
            return q + kv + heads * self.v_head_dim * h
        hd = self.head_dim
        return h * heads * hd * 2 + h * self.num_kv_heads * hd * 2

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert summed over its layers (0 for a dense model)."""
        return self.moe_layers * 3 * self.hidden_size * self.moe_ffn_size if self.is_moe else 0

    @property
    def dense_matmul_params(self) -> int:
        """Matmul parameters every token uses: attention, dense or shared MLP, router, LM head."""
        h = self.hidden_size
        if self.is_moe:
            mlp = (self.first_dense_layers * 3 * h * self.ffn_size
                   + self.moe_layers * (3 * h * self.moe_ffn_size * self.shared_experts
                                        + h * self.num_experts))
        else:
            mlp = self.mlp_layers * self.mlp_matrices * h * self.ffn_size
        return (self.attention_layers * self.attention_params_per_layer + mlp
                + self.ssm_layers * self.ssm_matmul_params_per_layer + self.vocab_size * h)

    @property
    def params(self) -> int:
        """Total parameter count (embeddings, attention, MLP or experts, norms, LM head)."""
        h = self.hidden_size
        embed = 0 if self.tied_embeddings else self.vocab_size * h
        vision = self.vision.params if self.vision is not None else 0
        return (self.dense_matmul_params + self.num_experts * self.expert_params + embed
                + self._small_params + vision)

    @property
    def _small_params(self) -> int:
        """Norms and the Mamba-2 blocks' convolution, biases, A, D and gate norm."""
        h = self.hidden_size
        if self.layer_pattern:   # one norm per block, and the Mamba-2 extras
            ssm = self.ssm_layers * (self._ssm_conv_channels * (self.ssm_conv_kernel + 1)
                                     + 3 * self.ssm_heads + self.ssm_inner)
            return self.num_layers * h + h + ssm
        return self.num_layers * (2 * h + self.q_lora_rank + self.kv_lora_rank) + h

    @property
    def matmul_params(self) -> int:
        """Parameters used in matrix multiplies per token (active experts only)."""
        return self.dense_matmul_params + self.experts_per_token * self.expert_params

    @property
    def active_params(self) -> int:
        """Parameters a token touches: the active matmul ones plus norms."""
        return self.matmul_params + self._small_params

    def weight_bytes(self, dtype: str) -> float:
        """Bytes of weights in ``dtype``; ``mxfp4`` quantizes only the routed experts (as
        gpt-oss ships), the rest stays bf16."""
        if dtype == "mxfp4":
            experts = self.num_experts * self.expert_params
            return experts * dtype_bytes("mxfp4") + (self.params - experts) * dtype_bytes("bf16")
        if dtype == "nvfp4":   # every linear layer in 4 bits; the embedding and LM head stay bf16
            table = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
            return (self.params - table) * dtype_bytes("nvfp4") + table * dtype_bytes("bf16")
        return self.params * dtype_bytes(dtype)

    def kv_bytes_per_token(self, dtype: str) -> float:
        """KV-cache bytes per token of context: 2 (K and V) × layers × kv_heads × head_dim; for
        MLA layers × (kv_lora_rank + qk_rope_head_dim) (one latent, no heads)."""
        if self.attention == "mla":
            return (self.num_layers * (self.kv_lora_rank + self.qk_rope_head_dim)
                    * dtype_bytes(dtype))
        return (2 * self.attention_layers * self.num_kv_heads * self.head_dim
                * dtype_bytes(dtype))

    def flops_per_token(self, context_len: float = 0.0) -> float:
        """Forward FLOPs for one decoded token attending to ``context_len`` earlier tokens:
        2 per active matmul parameter plus attention (``attn_flops_per_pair``) × context, plus
        the state-space blocks' scan."""
        return (2.0 * self.matmul_params + self.attn_flops_per_pair(decode=True) * context_len
                + self.ssm_flops_per_token)


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of a dtype name."""
    from tokenprint.errors import TokenprintError

    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise TokenprintError(
            f"unknown dtype {dtype!r}; valid: {', '.join(DTYPE_BYTES)}"
        ) from None


class Stack(Entry):
    """A serving stack: an engine and its release family. Speed and power depend on it as much
    as on the GPU, so calibration profiles are keyed by GPU *and* stack."""

    engine: str
    releases: str
    description: str = ""
    paged_kv: bool = True


class CalibrationProfile(BaseModel):
    """Fitted performance and power parameters for one GPU under one serving stack.

    Written by ``tokenprint calibrate``; loaded from ``[[profile]]`` tables in catalog files. The
    entry-level ``source`` says which measurements the numbers were fitted to. Power while a pass
    runs: ``base`` during overheads, rising to ``mem`` while memory-bound work runs and toward
    ``peak`` with the compute-bound share; each level is a fraction of the way from the one below
    to the TDP, so ``idle <= base <= mem <= peak <= TDP`` always holds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    gpu: str
    stack: str
    source: str = Field(min_length=1)
    eff_compute: float = Field(gt=0, le=1.0)
    eff_memory: float = Field(gt=0, le=1.0)
    step_overhead_s: float = Field(ge=0)
    seq_overhead_s: float = Field(ge=0)
    tp_latency_s: float = Field(default=2e-4, ge=0)
    base_frac: float = Field(ge=0, le=1)
    mem_frac: float = Field(ge=0, le=1)
    peak_frac: float = Field(ge=0, le=1)
    power_exponent: float = Field(gt=0, le=1)
    n_points: int = Field(default=0, ge=0)
    at_bounds: list[str] = Field(default_factory=list)
    tp_sizes: list[int] = Field(default_factory=list)   # GPU counts the fit saw ([]: unknown)
    fit_rms_log: float | None = None
    error: dict[str, float] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    name: str = ""
