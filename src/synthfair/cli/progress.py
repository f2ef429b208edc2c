"""Progress for the CLI layer: a tqdm bar on a terminal, plain log lines otherwise (logs, Slurm, make > log).

Without a terminal, a stage prints a line when its first item is done, one every `LOG_EVERY` seconds with
its count and rate, and one when it ends: a long run is never silent.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from tqdm.auto import tqdm

LOG_EVERY = 30.0  # seconds between progress lines when stderr is not a terminal


@contextmanager
def bar(total: int | None, desc: str, unit: str = "img", stream=None):
    """Yields a ``tick(n=1)`` callback for library functions (``total=None``: no known end)."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        with tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=stream) as progress:
            yield lambda n=1: progress.update(n)
        return
    log = _Log(total, desc, unit, stream)
    try:
        yield log.tick
    finally:
        if log.started:  # a stage that failed before its first item stays silent: its error says it all
            log.line("done" if total is None or log.count >= total else "stopped")


class _Log:
    def __init__(self, total: int | None, desc: str, unit: str, stream):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.count, self.start, self.started = 0, time.monotonic(), False
        self.last = self.start

    def tick(self, n: int = 1) -> None:
        if not self.started:
            self.started = True
            self.line("started")
        self.count += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY:
            self.last = now
            self.line("")

    def line(self, state: str) -> None:
        seconds = time.monotonic() - self.start
        of = f"/{self.total}" if self.total is not None else ""
        rate = f", {self.count / seconds:.1f} {self.unit}/s" if seconds > 0 and self.count else ""
        what = f" {state}" if state else ""
        text = f"[{self.desc}]{what} {self.count}{of} {self.unit} in {seconds:.0f} s{rate}"
        print(text, file=self.stream, flush=True)
