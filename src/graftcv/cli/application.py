"""The typer application, its two consoles, terminal logging, and `main` (a GraftcvError is one red line, exit 2)."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from graftcv.errors import GraftcvError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Transfer learning for image classification.")
out = Console()
err = Console(stderr=True)


def setup_logging() -> None:
    handler = RichHandler(console=err, show_time=False, show_path=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("graftcv").setLevel(logging.INFO)


def main() -> None:
    """Entry point: typer reports usage errors itself (exit 2); bad input found later is one line, exit 2."""
    setup_logging()
    try:
        app()
    except GraftcvError as error:
        err.print(f"[bold red]error:[/] {error}", soft_wrap=True)
        sys.exit(2)
    except SystemExit as done:
        if done.code == 130:  # typer's exit for Ctrl-C; a finished epoch is on disk, so say how to go on
            err.print("[bold yellow]interrupted[/] — continue a training run with `graftcv train --resume OUT`.")
        raise
