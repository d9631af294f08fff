"""Checkpoints that survive a kill at any moment: write to a temporary file, then rename.

``os.replace`` is atomic on POSIX and Windows, so the checkpoint path always holds either the
previous complete checkpoint or the new complete one, never a partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from stochgrad.cli.errors import UsageError

__all__ = ["CHECKPOINT_KEYS", "load_checkpoint", "remove_stale_temporaries", "save_atomic"]

_TEMP_SUFFIX = ".tmp"
# What every checkpoint of ``stochgrad train`` holds.
CHECKPOINT_KEYS = ("epoch", "history", "config", "world_size", "model", "optimizer", "rng")


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save(state)`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (tensors, numbers and strings only).

    Raises:
        UsageError: the file is empty, truncated, not a torch file, or another program's dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types: zip, pickle, EOF, OS errors
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise UsageError(f"{str(path)!r} is not a readable checkpoint ({reason})") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise UsageError(
            f"{str(path)!r} is not a stochgrad checkpoint (it lacks {', '.join(missing)})"
        )
    return state


def remove_stale_temporaries(path: str | Path) -> None:
    """Delete temporary files left by a process killed while writing ``path``."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*{_TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
