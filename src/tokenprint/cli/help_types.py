"""What ``--help`` shows in its type column, and that nothing in it is cut.

typer 0.29 prints Python type names there (``<str>``, ``<bool>``, ``<list[Path]>``); a user needs
what to type instead: nothing for a flag, TEXT, INTEGER, NUMBER or PATH for a value. Its option
tables also cut long option names and values with "…" in a narrow terminal
(``--no-live-intensi…``); they fold them onto the next line instead.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from typer.core import TyperArgument, TyperOption

LABELS = {"<str>": "TEXT", "<int>": "INTEGER", "<float>": "NUMBER", "<path>": "PATH",
          "<Path>": "PATH", "<list[Path]>": "PATH...", "<list[path]>": "PATH...",
          "<list[str]>": "TEXT..."}

# typer versions without this hook print click's own labels; then nothing is changed
_option_type = getattr(TyperOption, "display_type_rich", None)
_argument_type = getattr(TyperArgument, "display_type_rich", None)


def _label(label: str | None) -> str | None:
    return LABELS.get(label, label) if label is not None else None


def _option(self: TyperOption, ctx: Any) -> str | None:
    assert _option_type is not None
    return None if self.is_flag else _label(_option_type(self, ctx))


def _argument(self: TyperArgument, ctx: Any) -> str | None:
    assert _argument_type is not None
    return _label(_argument_type(self, ctx))


def _stacked(renderables: Any, *args: Any, **kwargs: Any) -> Group:
    return Group(*renderables)


class _FoldingTable(Table):
    """typer's help tables, whose cells fold long words rather than cut them."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        while len(self.columns) < len(renderables):
            self.add_column(overflow="fold")
        super().add_row(*renderables, **kwargs)


def install() -> None:
    """Use the labels above in every command's help, and fold rather than cut."""
    import typer.rich_utils

    if hasattr(typer.rich_utils, "Table"):
        typer.rich_utils.Table = _FoldingTable  # type: ignore[misc]
    if hasattr(typer.rich_utils, "Columns"):
        # an option's help, default and env var, one under the other in the folding cell (rich's
        # Columns would lay them out in a grid of its own that cuts long words)
        typer.rich_utils.Columns = _stacked  # type: ignore[misc,assignment]
    if _option_type is None or _argument_type is None:
        return
    TyperOption.display_type_rich = _option  # type: ignore[method-assign]
    TyperArgument.display_type_rich = _argument  # type: ignore[method-assign,assignment]
