"""The one error type a user can cause.

Every error that bad input can trigger (an unknown id, a bad file, an impossible batch) is a
:class:`TokenprintError` whose message names the bad value and what would be valid. The CLI prints
the message on one line to stderr, without a traceback, and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TokenprintError(ValueError):
    """A problem with the user's input, explained in the message."""


def unknown_choice(kind: str, value: str, valid: Iterable[str]) -> TokenprintError:
    """Build the error for an unknown id, suggesting close matches and listing valid ids."""
    valid_list = sorted(set(valid))
    close = difflib.get_close_matches(value.lower(), [v.lower() for v in valid_list], n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return TokenprintError(
        f"unknown {kind} {value!r}.{hint} Valid {kind}s: {', '.join(valid_list)}"
    )
