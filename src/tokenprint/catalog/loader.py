"""Load the built-in catalog TOML files and merge users' files over them."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tokenprint.catalog.model_arch import ModelArch
from tokenprint.catalog.schema import (
    CalibrationProfile,
    Entry,
    FabDefaults,
    FabNode,
    Gpu,
    Host,
    Lca,
    MemoryFactor,
    Pcf,
    Region,
    Stack,
)
from tokenprint.errors import TokenprintError, unknown_choice

ENV_VAR = "TOKENPRINT_CATALOG"

# TOML array name → (entry type, kind name used in messages and on the CLI)
KINDS: dict[str, tuple[type[Entry], str]] = {
    "gpu": (Gpu, "gpu"),
    "host": (Host, "host"),
    "region": (Region, "region"),
    "model": (ModelArch, "model"),
    "fab_node": (FabNode, "fab node"),
    "memory": (MemoryFactor, "memory type"),
    "stack": (Stack, "stack"),
    "pcf": (Pcf, "vendor footprint"),
    "lca": (Lca, "life-cycle assessment"),
    "profile": (CalibrationProfile, "profile"),  # type: ignore[dict-item]
}
BUILTIN_FILES = ("gpus.toml", "hosts.toml", "regions.toml", "models.toml", "fab.toml",
                 "memory.toml", "stacks.toml", "pcf.toml", "profiles.toml", "lca.toml")

E = TypeVar("E", bound=Entry)


@dataclass(frozen=True)
class Catalog:
    """Every catalog entry, by kind and lowercase id, with lookup by id or alias."""

    gpus: dict[str, Gpu]
    hosts: dict[str, Host]
    regions: dict[str, Region]
    models: dict[str, ModelArch]
    fab_nodes: dict[str, FabNode]
    memory: dict[str, MemoryFactor]
    fab: FabDefaults
    profiles: dict[str, CalibrationProfile] = field(default_factory=dict)
    stacks: dict[str, Stack] = field(default_factory=dict)
    pcfs: dict[str, Pcf] = field(default_factory=dict)
    lcas: dict[str, Lca] = field(default_factory=dict)
    files: tuple[str, ...] = field(default=())
    user_profiles: dict[str, str] = field(default_factory=dict)   # profile id → the user file

    def gpu(self, gpu_id: str) -> Gpu:
        """The GPU with this id or alias, case-insensitive; names as NVML and nvidia-smi report
        them (``Tesla T4``, ``NVIDIA H100 80GB HBM3``) match too."""
        key = gpu_id.strip().lower()
        if key not in self.gpus:
            key = re.sub(r"[^a-z0-9.]+", "-", key).strip("-") or key
        return _lookup(self.gpus, key, "gpu")

    def host(self, host_id: str) -> Host:
        """The host server archetype with this id."""
        return _lookup(self.hosts, host_id, "host")

    def region(self, region_id: str) -> Region:
        """The grid region with this zone id."""
        return _lookup(self.regions, region_id, "region")

    def model(self, model_id: str) -> ModelArch:
        """The model architecture with this id or Hugging Face id (``-Instruct``, ``Meta-``)."""
        return _lookup(self.models, _normalize_model_id(model_id), "model",
                       normalize=_normalize_model_id)

    def fab_node(self, node: str) -> FabNode:
        """ACT parameters for a process node such as ``5nm``."""
        return _lookup(self.fab_nodes, node, "fab node")

    def memory_factor(self, memory_type: str) -> MemoryFactor:
        """Embodied factor for a memory or storage type such as ``hbm3``."""
        return _lookup(self.memory, memory_type, "memory type")

    def stack(self, stack_id: str) -> Stack:
        """The serving stack with this id (``vllm-2025``, ``hf-transformers``, ...)."""
        return _lookup(self.stacks, stack_id, "stack")

    def profile_for(self, gpu_id: str, stack_id: str) -> CalibrationProfile | None:
        """The calibration profile of a GPU under a stack, if one is loaded (the last loaded
        wins)."""
        gid = self.gpu(gpu_id).id
        sid = self.stack(stack_id).id
        found = [p for p in self.profiles.values()
                 if p.gpu.lower() == gid and p.stack.lower() == sid]
        return found[-1] if found else None

    def pcf(self, pcf_id: str) -> Pcf:
        """The vendor product carbon footprint with this id."""
        return _lookup(self.pcfs, pcf_id, "vendor footprint")

    def pcf_for(self, gpu_id: str) -> Pcf | None:
        """The vendor footprint covering a GPU, if one is loaded (the last loaded wins)."""
        gid = self.gpu(gpu_id).id
        found = [p for p in self.pcfs.values() if gid in [a.lower() for a in p.applies_to]]
        return found[-1] if found else None

    def stack_profiles(self, stack_id: str) -> list[CalibrationProfile]:
        """Every calibrated profile of one stack."""
        sid = self.stack(stack_id).id
        return [p for p in self.profiles.values() if p.stack.lower() == sid]

    def by_kind(self, kind: str) -> dict[str, Any]:
        """Entries of a CLI kind: gpus, hosts, regions, models, fab-nodes, memory."""
        table: dict[str, dict[str, Any]] = {
            "gpus": self.gpus, "hosts": self.hosts, "regions": self.regions,
            "models": self.models, "fab-nodes": self.fab_nodes, "memory": self.memory,
            "profiles": self.profiles, "stacks": self.stacks, "pcf": self.pcfs,
            "lca": self.lcas,
        }
        key = kind.lower()
        if key not in table:
            raise unknown_choice("catalog kind", kind, table)
        return table[key]


def _normalize_model_id(model_id: str) -> str:
    """Map Hugging Face ids and their variants onto catalog ids."""
    s = model_id.strip().lower()
    if "/" in s:
        s = s.rsplit("/", 1)[1]
    for prefix in ("meta-",):
        if s.startswith(prefix):
            s = s[len(prefix):]
    for suffix in ("-fp8", "-instruct", "-chat-hf", "-hf", "-chat"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
    return s


def _lookup(table: dict[str, E], key: str, kind: str, normalize: Any = None) -> E:
    k = key.strip().lower()
    if k in table:
        return table[k]
    for entry in table.values():
        names = [a.lower() for a in entry.aliases] + [entry.name.lower()]
        if normalize is not None:
            names = [normalize(n) for n in names]
            names += [normalize(h) for h in getattr(entry, "hf_ids", [])]
        if k in names:
            return entry
    raise unknown_choice(kind, key, table)


def _read_toml(text: str, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TokenprintError(f"catalog file {label}: not valid TOML: {exc}") from None


def _cite_plain_numbers(cls: type[Any], item: dict[str, Any], label: str, kind: str,
                        entry_id: str) -> dict[str, Any]:
    """Wrap plain numbers in quantity fields with the source given in the same item.

    Done per file before merging, so a number a user writes is never credited to the source of
    the built-in entry it overrides.
    """
    if not hasattr(cls, "_wrap_plain_numbers"):
        return item
    try:
        wrapped: dict[str, Any] = cls._wrap_plain_numbers(item)
        return wrapped
    except ValueError as exc:
        raise TokenprintError(f"catalog file {label}: {kind} {entry_id!r}: {exc}") from None


def _format_validation(label: str, kind: str, entry_id: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(entry)"
        parts.append(f"field {loc!r}: {err['msg']}")
    return f"catalog file {label}: {kind} {entry_id!r}: " + "; ".join(parts)


def _builtin_texts() -> list[tuple[str, str]]:
    data = resources.files("tokenprint.catalog") / "data"
    return [(f"<builtin>/{name}", (data / name).read_text("utf-8")) for name in BUILTIN_FILES]


def load_catalog(user_files: list[str | Path] | None = None) -> Catalog:
    """Load the built-in catalog and apply user TOML files over it, in order.

    A user entry whose id exists already updates that entry field by field; a new id adds an
    entry. Files named in ``$TOKENPRINT_CATALOG`` (``os.pathsep``-separated) come before
    ``user_files``.
    """
    raw: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
    origin: dict[tuple[str, str], str] = {}
    fab_raw: dict[str, Any] = {}
    texts = _builtin_texts()
    paths: list[str | Path] = []
    env = os.environ.get(ENV_VAR, "")
    paths += [p for p in env.split(os.pathsep) if p]
    paths += list(user_files or [])
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise TokenprintError(f"catalog file {str(p)!r} does not exist or is not a file")
        try:
            texts.append((str(path), path.read_text("utf-8")))
        except UnicodeDecodeError:
            raise TokenprintError(f"catalog file {str(p)!r} is not UTF-8 text (a TOML catalog "
                                  "file was expected)") from None

    for label, text in texts:
        doc = _read_toml(text, label)
        for key, value in doc.items():
            if key == "fab":
                if not isinstance(value, dict):
                    raise TokenprintError(f"catalog file {label}: [fab] must be a table")
                fab_raw.update(value)
                continue
            if key not in KINDS:
                raise TokenprintError(
                    f"catalog file {label}: unknown section {key!r}; valid sections: "
                    f"{', '.join(['fab', *KINDS])} (as [[gpu]], [[region]], ...)"
                )
            if not isinstance(value, list):
                raise TokenprintError(
                    f"catalog file {label}: {key!r} must be an array of tables ([[{key}]])"
                )
            for i, item in enumerate(value):
                if not isinstance(item, dict) or "id" not in item:
                    raise TokenprintError(
                        f"catalog file {label}: entry {i + 1} of [[{key}]] has no 'id'"
                    )
                entry_id = str(item["id"]).lower()
                item = _cite_plain_numbers(KINDS[key][0], item, label, KINDS[key][1], entry_id)
                merged = {**raw[key].get(entry_id, {}), **item, "id": entry_id}
                raw[key][entry_id] = merged
                origin[(key, entry_id)] = label

    built: dict[str, dict[str, Any]] = {}
    for key, (cls, kind) in KINDS.items():
        built[key] = {}
        for entry_id, item in raw[key].items():
            try:
                built[key][entry_id] = cls.model_validate(item)
            except ValidationError as exc:
                raise TokenprintError(
                    _format_validation(origin[(key, entry_id)], kind, entry_id, exc)
                ) from None
    try:
        fab = FabDefaults.model_validate(fab_raw)
    except ValidationError as exc:
        raise TokenprintError(_format_validation("[fab]", "fab", "defaults", exc)) from None

    catalog = Catalog(
        gpus=built["gpu"], hosts=built["host"], regions=built["region"],
        models=built["model"], fab_nodes=built["fab_node"], memory=built["memory"],
        fab=fab, profiles=built["profile"], stacks=built["stack"],
        pcfs=built["pcf"], lcas=built["lca"], files=tuple(str(p) for p in paths),
        user_profiles={eid: label for (k, eid), label in origin.items()
                       if k == "profile" and label in {str(Path(p)) for p in paths}},
    )
    _check_references(catalog, {(k, i): v for (k, i), v in origin.items()})
    return catalog


def _check_references(cat: Catalog, origin: dict[tuple[str, str], str] | None = None) -> None:
    """Every GPU, host, profile and footprint must name entries that exist; the error names the
    file the entry came from."""
    def where(kind: str, entry_id: str, label: str) -> str:
        src = (origin or {}).get((kind, entry_id))
        return f"file {src}: {label}" if src else label

    for gpu in cat.gpus.values():
        w = where("gpu", gpu.id, f"gpu {gpu.id!r}")
        _ref(cat.fab_nodes, gpu.act_node, w, "act_node")
        _ref(cat.memory, gpu.memory_type, w, "memory_type")
        _ref(cat.hosts, gpu.default_host, w, "default_host")
    for prof in cat.profiles.values():
        w = where("profile", prof.id, f"profile {prof.id!r}")
        _ref(cat.gpus, prof.gpu, w, "gpu")
        _ref(cat.stacks, prof.stack, w, "stack")
    for pcf in cat.pcfs.values():
        for gid in pcf.applies_to:
            _ref(cat.gpus, gid, where("pcf", pcf.id, f"vendor footprint {pcf.id!r}"),
                 "applies_to")
    for lca in cat.lcas.values():
        for card in lca.cards:
            if card.gpu is not None:
                label = f"life-cycle assessment {lca.id!r} card {card.name!r}"
                _ref(cat.gpus, card.gpu, where("lca", lca.id, label), "gpu")
    for host in cat.hosts.values():
        w = where("host", host.id, f"host {host.id!r}")
        _ref(cat.fab_nodes, host.cpu_act_node, w, "cpu_act_node")
        _ref(cat.memory, host.dram_type, w, "dram_type")


def _ref(table: dict[str, Any], key: str, where: str, field_name: str) -> None:
    if key.lower() not in table:
        raise TokenprintError(
            f"catalog {where}: field {field_name!r} names {key!r}, which is not in the "
            f"catalog; valid: {', '.join(sorted(table))}"
        )


_DEFAULT: dict[tuple[str, ...], Catalog] = {}


def get_catalog(user_files: list[str | Path] | None = None) -> Catalog:
    """The catalog for these user files, cached (the built-in one is loaded once)."""
    key = (*(str(p) for p in (user_files or [])), os.environ.get(ENV_VAR, ""))
    if key not in _DEFAULT:
        _DEFAULT[key] = load_catalog(user_files)
    return _DEFAULT[key]


def entry_dict(entry: BaseModel) -> dict[str, Any]:
    """A JSON-ready dict of an entry (quantities as {value, source, low, high})."""
    return entry.model_dump(mode="json", exclude_none=True)
