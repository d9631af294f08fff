"""Output folders that one process owns: checked before training and locked while it runs.

A run writes its checkpoint and metrics into ``--out``. Two processes writing the same folder
would silently mix their results, so the folder is locked with an exclusive ``flock`` on
``OUT/.lock`` (released by the kernel when the process ends, even after ``kill -9``). On
platforms without ``fcntl`` the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stochgrad.cli.errors import UsageError

__all__ = ["LOCK_NAME", "check_writable", "locked"]

LOCK_NAME = ".lock"


def check_writable(out: str | Path, option: str = "--out") -> Path:
    """Create ``out`` if needed and make sure files can be written there, before any training.

    Raises:
        UsageError: ``out`` is an existing file, or the folder cannot be created or written.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # os.access says yes to root on a read-only mount; a real file says the truth.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"{option} {str(path)!r} is not a writable folder ({reason})") from None
    return path


@contextlib.contextmanager
def locked(out: str | Path, option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``out`` (created if needed) for the ``with`` block.

    Raises:
        UsageError: another process holds the lock; the message names its pid.
    """
    path = check_writable(out, option)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield path
        return
    handle = open(path / LOCK_NAME, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise UsageError(
                f"{option} {str(path)!r} is in use by another stochgrad process (pid {holder}); "
                "wait for it to finish or choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()
