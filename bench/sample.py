"""Sampler speed and memory on a synthetic 1,000,000-row samples.parquet, against plain pandas.

Both draw the same four-knob spec (group share, per-group prevalence, spurious device correlation, label
noise) from the same file; each runs in a fresh process, so its peak memory is its own. Printed: seconds to
read + sample, peak resident memory, and how close each gets to the targets.

Then end to end, as a user runs them, side by side and alternating (medians and their ratio): the command
``synthfair sample RELEASE --spec bias.yaml --out subset/ --no-baseline`` against its peer, a plain pandas
script that reads the same file, draws the same spec (`naive_sample`) and writes the subset as Parquet.

    python bench/sample.py [--families 143000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import sidebyside  # bench/: this script's own folder

SPEC = {
    "size": 20000,
    "seed": 0,
    "target": "findings.cardiomegaly",
    "groups": ["sex", "race"],
    "shares": {"female x black": 0.05},
    "prevalence": {"female x black": 0.6},
    "correlation": {"covariate": "device", "value": "philips", "strength": 0.9},
    "label_noise": {"female x black": 0.25},
}


COLUMNS = [
    "key",
    "family",
    "kind",
    "shard",
    "sample_hash",
    "split",
    "patient",
    "sex",
    "race",
    "device",
    "findings.cardiomegaly",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=143_000)  # x ~7 members = ~1M rows
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", choices=("synthfair", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--peer-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_out:  # the pandas peer, end to end: read, draw, write
        frame = pd.read_parquet(args.file, columns=COLUMNS)
        naive_sample(frame, SPEC).to_parquet(args.peer_out)
        return
    if args.method:
        print(json.dumps(_run(args.method, Path(args.file), args.repeats)))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"pandas {pd.__version__}"
    )
    from synthfair.sampling.synthetic import synthetic_samples

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.parquet"
        frame = synthetic_samples(args.families, seed=0)
        frame.to_parquet(path, compression="zstd")
        megabytes = path.stat().st_size / 1e6
        print(f"samples.parquet: {len(frame):,} rows, {megabytes:.1f} MB; spec: {json.dumps(SPEC)}")
        del frame
        for method in ("synthfair", "pandas"):
            command = [
                sys.executable,
                __file__,
                "--method",
                method,
                "--file",
                str(path),
                "--repeats",
                str(args.repeats),
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{method:9s}: read {r['read_s']:.2f} s + sample {r['sample_s']:.2f} s "
                f"(best of {args.repeats}) "
                f"= {r['read_s'] + r['sample_s']:.2f} s; peak RSS {r['peak_mb']:.0f} MB "
                f"(+{r['peak_mb'] - r['base_mb']:.0f} MB over the imported libraries); train: "
                f"female x black share "
                f"{r['share']:.4f} (target 0.05), prevalence {r['prevalence']:.3f} (0.6), device strength "
                f"{r['strength']:.3f} (0.9); one member per family: {r['one_per_family']}"
            )
        end_to_end(path, args.repeats)


def end_to_end(path: Path, repeats: int) -> None:
    """`synthfair sample` and the pandas peer as commands, alternating, ``repeats`` times each."""
    import yaml

    spec = path.parent / "bias.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    commands = {
        "synthfair sample": [
            sys.executable,
            "-m",
            "synthfair",
            "sample",
            str(path.parent),
            "--spec",
            str(spec),
            "--out",
            str(path.parent / "subset"),
            "--no-baseline",
        ],
        "pandas peer": [
            sys.executable,
            __file__,
            "--file",
            str(path),
            "--peer-out",
            str(path.parent / "peer.parquet"),
        ],
    }
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    runs = {label: functools.partial(run, command) for label, command in commands.items()}
    times = sidebyside.alternate(runs, repeats)
    sidebyside.report(times, "end to end")
    speed = sidebyside.ratio(times, "synthfair sample", "pandas peer")
    print(f"  synthfair sample is {speed:.2f}x as fast as the pandas peer")


def _run(method: str, path: Path, repeats: int) -> dict:
    from synthfair.sampling import bias_spec_from_dict, read_samples, sample
    from synthfair.sampling.sampler import needed_columns
    from synthfair.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    _reset_peak()
    base = _peak_mb()
    columns = COLUMNS
    spec = bias_spec_from_dict(SPEC)
    reads, samples = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        if method == "synthfair":
            frame = read_samples(path.parent, needed_columns(spec))[0]
        else:
            frame = pd.read_parquet(path, columns=columns)
        reads.append(time.perf_counter() - t)
        t = time.perf_counter()
        if method == "synthfair":
            table = sample(frame, spec, taxonomy).table
        else:
            table = naive_sample(frame, SPEC)
        samples.append(time.perf_counter() - t)
    train = table[table["split"] == "train"]
    fb = train[(train["sex"] == "female") & (train["race"] == "black")]
    y, c = train["target_true"].to_numpy(), (train["device"] == "philips").to_numpy()
    return {
        "read_s": min(reads),
        "sample_s": min(samples),
        "base_mb": base,
        "peak_mb": _peak_mb(),
        "share": len(fb) / len(train),
        "prevalence": float(fb["target_true"].mean()),
        "strength": float(c[y == 1].mean() - c[y == 0].mean()),
        "one_per_family": bool(table["family"].is_unique),
    }


def naive_sample(frame: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """A plain, vectorized pandas version (what one writes first): string group and cell labels, a split per
    family, a loop of DataFrame.sample per cell (no cell is scarcity-ordered, so targets are not exact)."""
    target, corr = spec["target"], spec["correlation"]
    df = frame[frame["kind"].isin(["factual", "counterfactual"])].copy()
    df["group"] = df["sex"].astype(str) + " x " + df["race"].astype(str)
    df["y"] = df[target].astype(int)
    df["c"] = (df[corr["covariate"]] == corr["value"]).astype(int)
    df["cell"] = df["group"] + "|" + df["y"].astype(str) + "|" + df["c"].astype(str)
    rng = np.random.default_rng(spec["seed"])
    families = df["family"].unique()
    split_of = dict(
        zip(
            families, rng.choice(["train", "validate", "test"], len(families), p=[0.6, 0.2, 0.2]), strict=True
        )
    )
    df["split"] = df["family"].map(split_of)
    out = []
    for split, n in (("train", 12000), ("validate", 4000), ("test", 4000)):
        part = df[df["split"] == split]
        factual = part[part["kind"] == "factual"]
        natural = factual["group"].value_counts(normalize=True)
        prev = factual["y"].mean()
        used: set[str] = set()
        groups = sorted(part["group"].unique())
        for g in groups:
            if split == "train":
                share = spec["shares"].get(
                    g, natural[g] * (1 - 0.05) / (1 - natural.get("female x black", 0))
                )
                p1 = spec["prevalence"].get(g, prev)
                s = corr["strength"]
            else:
                share, p1, s = 1 / len(groups), prev, 0.0
            for y, py in ((1, p1), (0, 1 - p1)):
                for c, pc in ((1, (1 + s) / 2 if y else (1 - s) / 2), (0, (1 - s) / 2 if y else (1 + s) / 2)):
                    k = int(round(n * share * py * pc))
                    cell = part[(part["cell"] == f"{g}|{y}|{c}") & ~part["family"].isin(used)]
                    cell = cell.drop_duplicates("family")
                    pick = cell.sample(min(k, len(cell)), random_state=spec["seed"])
                    used.update(pick["family"])
                    out.append(pick.assign(split=split))
    table = pd.concat(out)
    table["target_true"] = table["y"]
    flips = (table["split"] != "test") & (table["group"] == "female x black") & (table["y"] == 1)
    chosen = table[flips].sample(frac=spec["label_noise"]["female x black"], random_state=spec["seed"]).index
    table["target"] = table["y"]
    table.loc[chosen, "target"] = 0
    return table


def _peak_mb() -> float:
    """Peak resident memory since the last `_reset_peak` (Linux VmHWM), else since the process started."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")  # resets VmHWM to the current resident size


if __name__ == "__main__":
    main()
