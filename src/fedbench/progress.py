"""Progress bars for long work: one look everywhere (scoring, meta, build, training)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

T = TypeVar("T")


def progress_bar(enabled: bool, console: Console | None = None) -> Progress | nullcontext:
    """A rich Progress (count, elapsed, eta) on stderr, or a do-nothing context when disabled."""
    if not enabled:
        return nullcontext()
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), console=console or Console(stderr=True), transient=False,
    )


def track(items: Iterable[T], description: str, enabled: bool = True, console: Console | None = None,
          total: int | None = None) -> Iterator[T]:
    """Iterate over items, advancing a bar when enabled."""
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(True, console) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
