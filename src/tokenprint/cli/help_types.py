"""What ``--help`` shows in its type column.

typer 0.29 prints Python type names there (``<str>``, ``<bool>``, ``<list[Path]>``); a user needs
what to type instead: nothing for a flag, TEXT, INTEGER, NUMBER or PATH for a value.
"""

from __future__ import annotations

from typing import Any

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


def install() -> None:
    """Use the labels above in every command's help."""
    if _option_type is None or _argument_type is None:
        return
    TyperOption.display_type_rich = _option  # type: ignore[method-assign]
    TyperArgument.display_type_rich = _argument  # type: ignore[method-assign,assignment]
