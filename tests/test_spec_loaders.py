"""Hostile spec files: every spec loader gives a clean project error, quickly and in little memory."""

from __future__ import annotations

import random
import resource
import signal

import pytest

from synthfair.errors import SynthfairError
from synthfair.fairness.study import load_study_spec
from synthfair.generate.plan import load_plan_spec
from synthfair.model.train import load_train_config
from synthfair.sampling.spec import load_bias_spec

LOADERS = {
    "bias": (load_bias_spec, "seed: 0\nsize: 100\ntarget: findings.cardiomegaly\nprevalence: {all: 0.5}\n"),
    "plan": (load_plan_spec, "seed: 0\nshard_size: 10\ninterventions:\n  - {sex: flip}\n"),
    "study": (load_study_spec, "base: {size: 10, target: findings.cardiomegaly}\ngroups: [sex]\n"),
    "train": (load_train_config, "steps: 10\nbatch_size: 2\n"),
}


def alias_bomb(levels: int = 12, width: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nsize: *a{levels - 1}\nsteps: *a{levels - 1}\nbase: *a{levels - 1}\n"


HOSTILE = {
    "alias bomb": alias_bomb().encode(),
    "deep nesting": ("[" * 50_000 + "]" * 50_000).encode(),
    "deep mapping": ("a:\n" + "".join(" " * i + "a:\n" for i in range(1, 2000))).encode(),
    "not UTF-8": b"seed: \xff\xfe\n",
    "huge": b"# " + b"x" * (2 << 20),
}


@pytest.mark.parametrize("name", LOADERS)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_yaml_is_a_clean_error(tmp_path, name, hostile):
    load, _ = LOADERS[name]
    path = tmp_path / "spec.yaml"
    path.write_bytes(HOSTILE[hostile])
    with pytest.raises(SynthfairError) as err:
        load(path)
    assert str(path) in str(err.value) and err.value.hint and len(str(err.value)) < 2000


@pytest.mark.parametrize("name", LOADERS)
def test_fuzzed_specs_give_clean_errors_within_bounds(tmp_path, name):
    """A few hundred seeded mutants of a valid spec: each loads or raises a project error, never another
    exception, each in bounded time, the whole run in bounded memory."""
    load, valid = LOADERS[name]
    load(_write(tmp_path / "valid.yaml", valid.encode()))
    rng = random.Random(f"fuzz-{name}")
    previous = signal.signal(signal.SIGALRM, _hung)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pieces = [
        b"*",
        b"&",
        b"[",
        b"{",
        b"]",
        b"}",
        b":",
        b"\n",
        b"  ",
        b"-",
        b"!!python/object:os.system",
        b"\xff",
        b"\x00",
        b"1e999",
        b"-1",
        b"9223372036854775807",
        b"null",
        b"~",
        b"'",
        b'"',
        b"\t",
    ]
    for i in range(300):
        data = bytearray(valid.encode())
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5 and data:
                del data[at : at + rng.randint(1, 4)]
            data[at:at] = rng.choice(pieces)
        path = _write(tmp_path / f"m{i}.yaml", bytes(data))
        signal.alarm(60)  # a guard against hangs, not a speed goal
        try:
            load(path)
        except SynthfairError:
            pass
        finally:
            signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # kB


def _hung(signum, frame):
    raise TimeoutError("a spec loader hung for a minute on a mutant")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
