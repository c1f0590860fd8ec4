"""The ``tokenprint`` command: thin typer commands over the library."""

from __future__ import annotations

import sys

import typer

from tokenprint import __version__
from tokenprint.cli import (
    batch_cmd,
    bench_cmd,
    carbon_cmd,
    catalog_cmd,
    examples_cmd,
    fleet_cmd,
    help_types,
    predict_cmd,
    serve_cmd,
    simulate_cmd,
    study_cmd,
)
from tokenprint.cli.common import err_console
from tokenprint.errors import TokenprintError

help_types.install()
app = typer.Typer(
    name="tokenprint",
    help="Measure, predict and cut the carbon footprint of serving LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# every command module registers its commands the same way, in the order --help lists them
for _module in (carbon_cmd, bench_cmd, predict_cmd, study_cmd, simulate_cmd, serve_cmd,
                batch_cmd, fleet_cmd, catalog_cmd, examples_cmd):
    _module.register(app)


WIDE_COLUMNS = 240   # what --wide lays tables out for


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    wide: bool = typer.Option(False, "--wide", help="Print every table whole (all columns, "
                              "ranges beside the values) whatever the terminal's width: for "
                              "wide windows, files and pipes. Put it before the command."),
) -> None:
    if wide:
        from tokenprint.cli import common

        common.console.width = WIDE_COLUMNS
    if version:
        typer.echo(f"tokenprint {__version__}")
        raise typer.Exit()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a user error prints one line and exits 2, no traceback."""
    try:
        app(args=argv, prog_name="tokenprint")
    except TokenprintError as exc:
        err_console.print(f"error: {exc}", style="red", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
