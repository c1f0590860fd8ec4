"""A model's architecture as its ``config.json`` gives it, and what follows from it: parameter
counts, weight and KV-cache bytes, FLOPs per token (dense or mixture-of-experts, grouped-query or
multi-head latent attention, hybrid Mamba-2 blocks, a vision encoder)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tokenprint.catalog.schema import Entry, Quantity, dtype_bytes
from tokenprint.catalog.vision import VisionEncoder


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

    ``fp8_scales`` says how the model's published FP8 checkpoint scales its weights: per output
    channel (Meta's FP8 releases) or in 128 × 128 blocks (``block``: DeepSeek's and Qwen's
    "fine-grained" FP8, ``weight_block_size = [128, 128]`` in the config's
    ``quantization_config``). Block-scaled expert weights run through other kernels, whose speed
    the serving stack's profile measures (``eff_fp8_block``).

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
    fp8_scales: Literal["channel", "block"] = "channel"   # of its published FP8 weights
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
