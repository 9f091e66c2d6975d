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
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second of the task, e.g. '212 img/s'."""

    def __init__(self, unit: str = "img") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"… {self.unit}/s", style="progress.data.speed")


def image_progress(enabled: bool = True, unit: str = "img") -> Progress:
    """A progress bar for passes over images (or tiles: `unit`), with the rate and the time left; disabled when
    not on a terminal (CI logs stay short)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not (enabled and sys.stderr.isatty()),
        transient=False,
    )
