"""Errors sparse24 raises for problems a user can fix."""

from __future__ import annotations


class Sparse24Error(Exception):
    """A user-facing problem: bad input, missing file, incompatible model."""


class SparsityError(Sparse24Error):
    """A weight that should be 2:4 is not."""
