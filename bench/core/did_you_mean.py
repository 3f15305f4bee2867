"""Did-you-mean hints for unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown(kind: str, name: str, known: Iterable[str], hint: str = "") -> str:
    """A one-line message for an unknown ``name`` of ``kind``, with the closest known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    message = f"unknown {kind} '{name}'"
    if close:
        message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    else:
        message += f"; known: {', '.join(known) if known else 'none'}"
    if hint:
        message += f" ({hint})"
    return message
