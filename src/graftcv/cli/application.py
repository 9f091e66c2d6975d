"""The typer application, its two consoles, terminal logging, and `main` (a GraftcvError is one red line, exit 2)."""

from __future__ import annotations

import errno
import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from graftcv.errors import GraftcvError
from graftcv.training.budget import count_from_process_start

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Transfer learning for image classification.")
out = Console()
err = Console(stderr=True)


def setup_logging() -> None:
    handler = RichHandler(console=err, show_time=False, show_path=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("graftcv").setLevel(logging.INFO)


def os_error_sentence(error: OSError) -> str | None:
    """One sentence for the file-system failures a user can fix (a full disk, a read-only or forbidden place);
    None for the others, which are bugs worth their traceback."""
    where = f" writing {error.filename}" if error.filename else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"The disk is full{where}: free some space and run again. Files written before are whole: graftcv "
            "replaces a file only once its new content is complete."
        )
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"Cannot write{where or ' there'}: {error.strerror}."
    return None


def main() -> None:
    """Entry point: typer reports usage errors itself (exit 2); bad input found later is one line, exit 2."""
    setup_logging()
    count_from_process_start()  # a --budget and the run estimate include the command's own start-up
    try:
        app()
    except GraftcvError as error:
        err.print(f"[bold red]error:[/] {error}", soft_wrap=True)
        sys.exit(2)
    except OSError as error:
        sentence = os_error_sentence(error)
        if sentence is None:
            raise
        err.print(f"[bold red]error:[/] {sentence}", soft_wrap=True)
        sys.exit(2)
    except SystemExit as done:
        if done.code == 130:  # typer's exit for Ctrl-C; a finished epoch is on disk, so say how to go on
            err.print("[bold yellow]interrupted[/] — continue a training run with `graftcv train --resume OUT`.")
        raise
