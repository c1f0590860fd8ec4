"""Reference data with sources: GPUs, hosts, grid regions, fab nodes, memory, models."""

from tokenprint.catalog.loader import Catalog, entry_dict, get_catalog, load_catalog
from tokenprint.catalog.model_arch import ModelArch
from tokenprint.catalog.schema import (
    FabDefaults,
    FabNode,
    Gpu,
    Host,
    MemoryFactor,
    Pcf,
    Quantity,
    Region,
    Stack,
)

__all__ = [
    "Catalog", "FabDefaults", "FabNode", "Gpu", "Host", "MemoryFactor", "ModelArch", "Pcf",
    "Quantity", "Region", "Stack", "entry_dict", "get_catalog", "load_catalog",
]
