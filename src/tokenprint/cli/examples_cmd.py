"""``tokenprint examples``: the sample data README's commands use, with sources and licences."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tokenprint.cli.common import console
from tokenprint.errors import TokenprintError
from tokenprint.files import atomic_path

# what each sample is, for --list (sources and licences in ATTRIBUTION.md beside them)
DESCRIPTIONS = {
    "US-CAL-CISO_2023.csv": "hourly intensity, CAISO, July 2023 (Electricity Maps, ODbL)",
    "hourly/": "hourly intensity for plan --intensity-dir: five zones, July 2023 (ODbL)",
    "AzureLLMInferenceTrace_code.csv": "Azure LLM code trace, first 10 minutes (CC BY 4.0)",
    "mlenergy_sample.csv": "30 ML.ENERGY v2 runs on A100/H100 (Apache-2.0)",
    "gateway.toml": "a documented gateway config for one local upstream",
    "ATTRIBUTION.md": "sources and licences of the files above",
}


@dataclass(frozen=True)
class Sample:
    """One shipped file and where it goes."""

    resource: Traversable
    relative: Path


def samples() -> list[Sample]:
    """Every shipped sample file, with its path relative to the examples folder."""
    root = files("tokenprint") / "examples"
    out: list[Sample] = []

    def walk(node: Traversable, rel: Path) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name.startswith((".", "__")):
                continue
            if child.is_dir():
                walk(child, rel / child.name)
            else:
                out.append(Sample(child, rel / child.name))

    walk(root, Path())
    if not out:
        raise TokenprintError("the package holds no sample data; reinstall tokenprint")
    return out


def copy_samples(dest: Path, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy every sample into ``dest`` (atomically, file by file). A file already there with
    other content is kept and named in the error unless ``force``; identical ones are skipped.
    Returns (written, already there)."""
    if dest.exists() and not dest.is_dir():
        raise TokenprintError(f"--copy {str(dest)!r} is a file; give a folder")
    plan = [(s, dest / s.relative) for s in samples()]
    differ = [t for s, t in plan if t.exists() and t.read_bytes() != s.resource.read_bytes()]
    if differ and not force:
        raise TokenprintError(
            f"{len(differ)} file(s) in {str(dest)!r} differ from the samples and were left as "
            f"they are: {', '.join(str(p.relative_to(dest)) for p in differ)}; use --force to "
            "replace them")
    written, same = [], []
    for s, target in plan:
        data = s.resource.read_bytes()
        if target.exists() and target.read_bytes() == data:
            same.append(target)
            continue
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        written.append(target)
    return written, same


def examples(
    list_: Annotated[bool, typer.Option("--list", help="List the sample files (the default).")]
    = False,
    copy: Annotated[Path | None, typer.Option("--copy", metavar="DIR",
        help="Copy the samples into DIR (created if needed); README's commands run there.")]
    = None,
    force: Annotated[bool, typer.Option(help="Replace files in DIR that differ from the "
                                             "samples.")] = False,
) -> None:
    """Sample data for README's commands: grid intensity, a request trace, measured runs and a
    gateway config, with their sources and licences."""
    if copy is not None:
        written, same = copy_samples(copy, force)
        console.print(f"{len(written)} file(s) written to {copy}"
                      + (f", {len(same)} already there" if same else "")
                      + f"; next: cd {copy} and run README's commands (sources and licences: "
                        "ATTRIBUTION.md)")
        if not list_:
            return
    table = Table(title="tokenprint sample data (tokenprint examples --copy DIR)")
    table.add_column("file")
    table.add_column("KB", justify="right")
    table.add_column("what")
    for s in samples():
        top = s.relative.parts[0] + ("/" if len(s.relative.parts) > 1 else "")
        table.add_row(str(s.relative), f"{len(s.resource.read_bytes()) / 1e3:.0f}",
                      DESCRIPTIONS.get(top, ""))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command("examples")(examples)
