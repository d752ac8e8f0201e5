"""Errors sparse24 raises for problems a user can fix."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Sparse24Error(Exception):
    """A user-facing problem: bad input, missing file, incompatible model."""


class CheckFailed(Sparse24Error):
    """A check of the user's artifact failed (the CLI exits with status 1, not 2)."""


class SparsityError(CheckFailed):
    """A weight that should be 2:4 is not."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when the message is empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def add_context(error: BaseException, text: str) -> None:
    """Add ``text`` to ``error``'s notes (PEP 678: shown under its traceback; the CLI prints them with its one line)."""
    if hasattr(error, "add_note"):
        error.add_note(text)
    else:  # Python 3.10: the same attribute, read by the CLI
        error.__notes__ = [*getattr(error, "__notes__", ()), text]  # type: ignore[attr-defined]


@contextlib.contextmanager
def running(what: str) -> Iterator[None]:
    """Around a call into the user's code (their model, data or functions): an exception raised there
    (not one of sparse24's own, which say what they were doing) carries ``"while " + what`` as a note."""
    try:
        yield
    except Sparse24Error:
        raise
    except Exception as error:
        add_context(error, f"sparse24: while {what}")
        raise
