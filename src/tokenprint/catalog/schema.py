"""Typed, validated catalog entries. Every number is a :class:`Quantity` that carries its source.

In TOML a quantity is either an inline table
``{ value = 545, source = "...", low = .., high = .. }`` or a plain number, which then takes the
entry's ``source``. An entry with a plain number and no ``source`` is refused: tokenprint ships no
number without a citation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    # the share of eff_memory reached reading 128 × 128 block-scaled fp8 expert weights (1: as
    # fast as any other weights; stays 1 where the fit saw no such model)
    eff_fp8_block: float = Field(default=1.0, gt=0, le=1)
    n_points: int = Field(default=0, ge=0)
    at_bounds: list[str] = Field(default_factory=list)
    tp_sizes: list[int] = Field(default_factory=list)   # GPU counts the fit saw ([]: unknown)
    fit_rms_log: float | None = None
    error: dict[str, float] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    name: str = ""
