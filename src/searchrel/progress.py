"""Rich progress bars for every long step, one look across the package; quiet when not a terminal."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
console = Console(stderr=True)


def _disabled() -> bool:
    return os.environ.get("SEARCHREL_PROGRESS", "1") == "0"


def new_progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                    disable=_disabled())


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar: ``for batch in track(batches, "embedding items"): ...``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with new_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@contextmanager
def step(description: str, total: int | None = None):
    """A progress task to advance by hand: ``with step("labelling", total=n) as advance: advance(k)``."""
    with new_progress() as progress:
        task = progress.add_task(description, total=total)
        yield lambda k=1: progress.advance(task, k)
