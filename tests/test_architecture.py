"""Claims of DESIGN.md that the code must keep: one formula in one place, the package order."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tokenprint"

# Carbon arithmetic that belongs in tokenprint.carbon only: the kWh and year constants, PUE
# multiplied in, a lifetime divided by or multiplied with, the constants' literal values.
FORMULA = re.compile(
    r"\bJ_PER_KWH\b|\bS_PER_YEAR\b|pue\s*\*|\*\s*[\w.]*\bpue\b|lifetime\w*\s*[*/]"
    r"|[*/]\s*\(?[\w.]*lifetime\w*|\b3\.6e6\b|\b31557600\b")
# the bound on a lifetime (a day) may spell out a year's days where it is declared
ALLOWED_LINES = ("ge=MIN_LIFETIME_YEARS",)

# DESIGN.md's "depends on" column (each package may also use what those depend on).
DEPENDS = {
    "catalog": set(), "carbon": {"catalog"}, "measure": set(), "engines": {"measure"},
    "bench": {"engines", "measure", "catalog"}, "predict": {"catalog"},
    "simulate": {"predict", "carbon"}, "plan": {"simulate", "carbon"},
    "gateway": {"carbon", "predict", "measure"}, "fleet": {"carbon", "predict"},
}
# Where the code departs from the table, and why (kept short on purpose).
EXCEPTIONS = {
    ("engines", "catalog"): "engines build model shapes (random weights) from the catalog",
    ("predict", "bench"): "predict.datasets reads measured runs from bench's results store",
    ("fleet", "measure"): "watch reads energy through measure's one counter interface, as the "
                          "gateway does",
}
UPPER = ("report", "cli", "distributed")


def _closure(pkg: str) -> set[str]:
    out: set[str] = set()
    for dep in DEPENDS.get(pkg, ()):
        out |= {dep} | _closure(dep)
    return out


def _sources(exclude: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py"))
            if not any(str(p.relative_to(SRC)).startswith(e) for e in exclude)]


def test_no_carbon_arithmetic_outside_carbon():
    found = []
    for path in _sources(exclude=("carbon/", "units.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if FORMULA.search(code) and not any(a in code for a in ALLOWED_LINES):
                found.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not found, "carbon arithmetic outside tokenprint.carbon:\n" + "\n".join(found)


# the pieces a charge is composed of: every surface calls tokenprint.carbon.charge instead
COMPOSED = {"operational_g", "provisioned_g", "amortized_g", "amortized_share"}


def test_every_surface_charges_through_one_composition():
    found = []
    for path in _sources(exclude=("carbon/",)):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "tokenprint.carbon"):
                found += [f"{path.relative_to(SRC)} imports {a.name}" for a in node.names
                          if a.name in COMPOSED]
    assert not found, ("compose the charge with tokenprint.carbon.charge.charge:\n"
                       + "\n".join(found))


def test_the_formula_check_would_catch_a_copy():
    for copy in ("e / J_PER_KWH * pue * ci", "emb * t / (lifetime_years * S_PER_YEAR)",
                 "x * cfg.pue", "g / life.lifetime_s"):
        assert FORMULA.search(copy), copy


def test_packages_import_only_what_design_allows():
    bad = []
    for path in _sources():
        rel = path.relative_to(SRC).parts
        if len(rel) < 2 or rel[0] not in DEPENDS:
            continue
        pkg = rel[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                parts = mod.split(".")
                if parts[0] != "tokenprint" or len(parts) < 2:
                    continue
                dep = parts[1]
                if dep == pkg or (dep not in DEPENDS and dep not in UPPER):
                    continue
                if dep not in _closure(pkg) and (pkg, dep) not in EXCEPTIONS:
                    bad.append(f"{'/'.join(rel)} imports tokenprint.{dep}")
    assert not bad, "imports against DESIGN.md's package table:\n" + "\n".join(sorted(set(bad)))


def test_gateway_refuses_a_lifetime_the_cli_refuses(tmp_path):
    """The gateway's config holds the same lifetime bounds as tokenprint.carbon (50 years)."""
    import pytest

    from tokenprint.carbon.amortize import MAX_LIFETIME_YEARS, check_lifetime
    from tokenprint.errors import TokenprintError
    from tokenprint.gateway.config import load_config

    cfg = tmp_path / "gateway.toml"
    base = ('[[upstream]]\nname = "a"\nurl = "http://127.0.0.1:9"\nmodel = "llama-3.1-8b"\n'
            'gpu = "h100-sxm"\nregion = "FR"\n')
    cfg.write_text(f"lifetime_years = 60\n{base}")
    with pytest.raises(TokenprintError, match="lifetime_years"):
        load_config(cfg)
    with pytest.raises(TokenprintError, match="lifetime"):
        check_lifetime(60)
    cfg.write_text(f"lifetime_years = {MAX_LIFETIME_YEARS:g}\n{base}")
    assert load_config(cfg).lifetime_years == MAX_LIFETIME_YEARS


# Modules are at most 400 lines. One that must pass it is listed here with its size, which it may
# not grow past (none is, today); the test fails when a listed module is back under the limit.
OVER_LIMIT: dict[str, int] = {}
MODULE_LIMIT = 400


def test_modules_stay_small():
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in _sources()}
    too_big = {m: n for m, n in sizes.items()
               if n > OVER_LIMIT.get(m, MODULE_LIMIT)}
    assert not too_big, f"modules past their limit: {too_big}"
    # the list only holds modules still over the limit (a split one leaves it)
    assert all(sizes.get(m, 0) > MODULE_LIMIT for m in OVER_LIMIT), OVER_LIMIT


def test_no_import_cycles():
    """No module imports (at the top or inside a function) one that imports it back, directly
    or through others (calibrate <-> validate was the one)."""
    mods = {}
    for p in _sources():
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in mods:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names
                            if f"{node.module}.{a.name}" in mods)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        deps.discard(name)
        graph[name] = deps

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            cur = todo.pop()
            for nxt in graph[cur]:
                if nxt == target:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = [(a, b) for a in graph for b in graph[a]
              if not b.endswith("__init__") and reaches(b, a)
              and not (a == b.rsplit(".", 1)[0] or b == a.rsplit(".", 1)[0])]
    assert not cycles, cycles
