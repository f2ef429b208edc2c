"""Phantom rendering speed and memory: images per second at 64^2 and 256^2, and peak resident memory.

Each subject is rendered with its exact counterfactuals (the grid's interventions: factual, age, sex,
findings, views, devices), so per-subject state is reused as in generation jobs. Work is spread over
``--workers`` processes with one torch thread each. Start-up (loading the anatomy) is excluded from the
rate and reported separately.

    python bench/phantom.py [--anatomy ct] [--subjects 8] [--workers 2] [--sizes 64 256]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import time

_PHANTOM = None


def _init(anatomy: str) -> None:
    import torch

    from synthfair.phantom.simulator import Phantom, PhantomConfig

    torch.set_num_threads(1)
    global _PHANTOM
    _PHANTOM = Phantom(PhantomConfig(anatomy=anatomy))
    _PHANTOM.render(_PHANTOM.subject(999, 0), size=32)  # load anatomy, build indices


def _work(args) -> int:
    from synthfair.phantom.grid import default_interventions

    seed, index, size = args
    ph = _PHANTOM
    subject = ph.subject(seed, index)
    count = 0
    for _, do in default_interventions(ph):
        ph.counterfactual(subject, do, size) if do else ph.render(subject, size=size)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anatomy", default="ct")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    t = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init, initargs=(args.anatomy,)) as pool:
        pool.map(_work, [(998, i, 16) for i in range(args.workers)])  # warm every worker
        print(f"start-up (spawn, load anatomy, indices): {time.perf_counter() - t:.1f} s")
        print(f"{'size':>6} {'images':>7} {'seconds':>8} {'images/s':>9}")
        for size in args.sizes:
            t = time.perf_counter()
            n = sum(pool.map(_work, [(0, i, size) for i in range(args.subjects)], chunksize=1))
            dt = time.perf_counter() - t
            print(f"{size:>6} {n:>7} {dt:>8.1f} {n / dt:>9.1f}")
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak resident memory: {peak_children:.0f} MiB per worker (largest), "
        f"{peak_self:.0f} MiB main process"
    )


if __name__ == "__main__":
    main()
