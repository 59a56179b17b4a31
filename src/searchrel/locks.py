"""One writer per directory: an exclusive, non-blocking flock on a file inside it (the kernel releases it when
the process dies, so a crash never leaves a stale lock)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_file: Path, busy: str) -> Iterator[None]:
    """Hold ``lock_file`` for the block; raise FileExistsError(``busy``) at once if another process holds it."""
    import fcntl  # POSIX only

    with open(lock_file, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
