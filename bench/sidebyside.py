"""A command and its peers timed side by side, as the peer benches compare them: run alternating (so that
noise on the shared cores falls on every one alike), then medians and ratios.

    times = alternate({"synthfair x": ours, "peer": peer}, repeats=5, after=cleanup)
    report(times, "end to end", rate=lambda seconds: f"{nbytes / 1e6 / seconds:.0f} MB/s")
    print(f"{ratio(times, 'synthfair x', 'peer'):.2f}x")
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def alternate(
    runs: Mapping[str, Callable[[], object]],
    repeats: int,
    before: Callable[[], object] | None = None,
    after: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` rounds of one run each in turn; ``before`` and ``after`` (untimed)
    around every run, e.g. to empty its output directory."""
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            if before is not None:
                before()
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
            if after is not None:
                after()
    return times


def report(times: Mapping[str, list[float]], title: str, rate: Callable[[float], str] | None = None) -> None:
    """One line per run: median, min-max, and ``rate(median)`` when given."""
    repeats = len(next(iter(times.values()), []))
    print(f"{title}, {repeats} runs each, alternating (median, min-max):")
    width = max(len(label) for label in times)
    for label, seconds in times.items():
        median = statistics.median(seconds)
        extra = f"  {rate(median)}" if rate else ""
        print(f"  {label:<{width}} {median:6.2f} s ({min(seconds):.2f}-{max(seconds):.2f}){extra}")


def ratio(times: Mapping[str, list[float]], ours: str, peer: str) -> float:
    """How many times as fast ``ours`` is as ``peer`` (median seconds of the peer over ours)."""
    return statistics.median(times[peer]) / statistics.median(times[ours])
