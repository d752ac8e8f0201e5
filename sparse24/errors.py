"""Errors sparse24 raises for problems a user can fix."""

from __future__ import annotations


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
