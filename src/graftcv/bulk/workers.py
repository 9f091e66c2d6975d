"""Who predicts the parts: this process (`Inline`), or N spawned processes fed from one queue (`Processes`)."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable

from graftcv.bulk.engine import Engine, Settings
from graftcv.bulk.sources import Part
from graftcv.errors import GraftcvError


def _process_main(number: int, settings: Settings, tasks, events) -> None:
    """A spawned predicting process: load the model once, then predict the parts it is handed until None."""
    try:
        engine = Engine(settings)
        while (part := tasks.get()) is not None:
            events.put(("start", number, part.index))
            images, errors = engine.run(part, lambda n: events.put(("images", n)))
            events.put(("part", number, images, errors))
    except GraftcvError as error:
        events.put(("failed", number, str(error)))
        raise SystemExit(1) from None
    except BaseException as error:
        events.put(("failed", number, f"{type(error).__name__}: {str(error)[:200]}"))
        raise


class Processes:
    """N spawned processes taking parts from one bounded queue (the listing runs a few parts ahead, no more);
    the parent counts their images for the progress bar and notices one that dies."""

    def __init__(self, settings: Settings, count: int, advance: Callable[[int], None]) -> None:
        context = multiprocessing.get_context("spawn")
        self.tasks, self.events = context.Queue(maxsize=count), context.Queue()
        self.advance, self.current, self.images, self.errors, self.parts = advance, {}, 0, 0, 0
        self.processes = [
            context.Process(target=_process_main, args=(k, settings, self.tasks, self.events), daemon=True)
            for k in range(count)
        ]
        for process in self.processes:
            process.start()

    def _events(self, wait: float = 0.0) -> None:
        """Handle the events sent so far (and, with `wait`, those arriving for that many seconds more)."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=left) if left > 0 else self.events.get_nowait()
            except queue.Empty:
                return
            if event[0] == "images":
                self.advance(event[1])
            elif event[0] == "start":
                self.current[event[1]] = event[2]
            elif event[0] == "part":
                self.current.pop(event[1], None)
                self.images, self.errors, self.parts = self.images + event[2], self.errors + event[3], self.parts + 1
            else:
                self.stop()
                raise GraftcvError(f"{event[2].rstrip('.')} (prediction process {event[1]}).")

    def _drain(self) -> None:
        self._events()
        for number, process in enumerate(self.processes):
            if process.exitcode not in (None, 0):
                self._events(wait=0.5)  # its own account of the failure, when it could send one, comes first
                self.stop()
                doing = self.current.get(number)
                on = f" on part {doing}" if doing is not None else ""
                raise GraftcvError(
                    f"Prediction process {number} died (exit code {process.exitcode}){on}: the parts finished so "
                    "far are kept; run the same command again to predict the rest."
                )

    def _put(self, item: Part | None) -> None:
        while True:
            self._drain()
            try:
                self.tasks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def submit(self, part: Part) -> None:
        self._put(part)

    def finish(self) -> tuple[int, int, int]:
        for _ in self.processes:
            self._put(None)
        while any(process.is_alive() for process in self.processes):
            self._drain()
            for process in self.processes:
                process.join(timeout=0.05)
        self._drain()
        return self.images, self.errors, self.parts

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5)


class Inline:
    """workers=1: this process predicts (the model is loaded at the first part that needs it)."""

    def __init__(self, settings: Settings, advance: Callable[[int], None]) -> None:
        self.engine = Engine(settings)
        self.advance, self.images, self.errors, self.parts = advance, 0, 0, 0

    def submit(self, part: Part) -> None:
        images, errors = self.engine.run(part, self.advance)
        self.images, self.errors, self.parts = self.images + images, self.errors + errors, self.parts + 1

    def finish(self) -> tuple[int, int, int]:
        return self.images, self.errors, self.parts

    def stop(self) -> None:
        pass
