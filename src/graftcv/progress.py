"""Rich progress bars with a live images/s column, quiet when output is not a terminal."""

from __future__ import annotations

import sys

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second of the task, e.g. '212 img/s'."""

    def render(self, task) -> Text:  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} img/s" if speed else "… img/s", style="progress.data.speed")


def image_progress(enabled: bool = True) -> Progress:
    """A progress bar for passes over images; disabled when not on a terminal (CI logs stay short)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        disable=not (enabled and sys.stderr.isatty()),
        transient=False,
    )
