"""``tokenprint examples``: the sample data README's commands use, with sources and licences."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tokenprint.cli.common import CatalogOpt, console, load
from tokenprint.errors import TokenprintError
from tokenprint.files import atomic_path

# written by tokenprint itself (the rest is cut from the public datasets by tokenprint.samples)
SHIPPED = {"gateway.toml": "a documented gateway config for one local upstream",
           "deployments.toml": "two documented deployments for fleet report --deployments",
           "sweep.toml": "a bench sweep that runs on any laptop (tokenprint bench sweep.toml)",
           "api_predict.py": "Python API: predict energy and latency (python api_predict.py)",
           "api_simulate.py": "Python API: simulate a trace and charge its carbon",
           "api_study.py": "Python API: run a small study and read its findings",
           "ATTRIBUTION.md": "sources and licences of the samples"}


def sample_texts(data: Path | None, catalog_files: list[Path] | None) -> dict[str, str]:
    """Every sample file's text, by its path under the examples folder."""
    from tokenprint.samples import extracts, find_data

    root = files("tokenprint") / "examples"
    texts = {name: (root / name).read_text(encoding="utf-8") for name in SHIPPED}
    for rel, df in extracts(find_data(data), load(catalog_files)).items():
        texts[rel] = df.to_csv(index=False)
    return texts


def copy_samples(texts: dict[str, str], dest: Path, force: bool = False
                 ) -> tuple[list[Path], list[Path]]:
    """Write every sample into ``dest`` (atomically, file by file). A file already there with
    other content is kept and named in the error unless ``force``; identical ones are skipped.
    Returns (written, already there)."""
    if dest.exists() and not dest.is_dir():
        raise TokenprintError(f"--copy {str(dest)!r} is a file; give a folder")
    differ = [rel for rel, text in texts.items()
              if (dest / rel).is_file() and (dest / rel).read_text(encoding="utf-8") != text]
    if differ and not force:
        raise TokenprintError(
            f"{len(differ)} file(s) in {str(dest)!r} differ from the samples and were left as "
            f"they are: {', '.join(differ)}; use --force to replace them")
    written, same = [], []
    for rel, text in texts.items():
        target = dest / rel
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            same.append(target)
            continue
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(target)
    return written, same


def examples(
    list_: Annotated[bool, typer.Option("--list", help="List the sample files (the default).")]
    = False,
    copy: Annotated[Path | None, typer.Option("--copy", metavar="DIR",
        help="Write the samples into DIR (created if needed); README's commands run there.")]
    = None,
    data: Annotated[Path | None, typer.Option(metavar="DIR",
        help="Folder holding the public datasets the samples are cut from (default: "
             "$TOKENPRINT_DATA, or shared/data beside a source checkout).")] = None,
    force: Annotated[bool, typer.Option(help="Replace files in DIR that differ from the "
                                             "samples.")] = False,
    catalog: CatalogOpt = None,
) -> None:
    """Sample data for README's commands (grid intensity, a request trace, measured runs, a
    gateway config), cut from the public datasets, with their sources and licences."""
    from tokenprint.samples import EXTRACTS

    if copy is not None:
        written, same = copy_samples(sample_texts(data, catalog), copy, force)
        console.print(f"{len(written)} file(s) written to {copy}"
                      + (f", {len(same)} already there" if same else "")
                      + f"; next: cd {copy} and run README's commands (sources and licences: "
                        "ATTRIBUTION.md)")
        if not list_:
            return
    table = Table(title="tokenprint sample data (tokenprint examples --copy DIR)")
    table.add_column("file")
    table.add_column("what")
    for name, what in {**EXTRACTS, **SHIPPED}.items():
        table.add_row(name, what)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command("examples")(examples)
