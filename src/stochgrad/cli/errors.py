"""The two ways a command ends early: a bad command line (exit 2) or a failed run (exit 1)."""

from __future__ import annotations

__all__ = ["TrainingError", "UsageError"]


class UsageError(ValueError):
    """A bad command line: the message is printed as one line, the exit status is 2."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); exit status 1."""
