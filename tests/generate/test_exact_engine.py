"""The phantom's exact counterfactuals as a generation engine: same shards and records as a model release,
byte-identical across processes, tasks and resumes, and equal to the phantom's own renders."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from synthfair.errors import ConfigError
from synthfair.generate import finalize
from synthfair.generate.plan import read_plan
from synthfair.generate.runner import GenerateConfig, generate, generate_in_processes, task_shards
from synthfair.images.png16 import decode_png16
from synthfair.images.resize import fit_image
from synthfair.phantom.engine import PhantomEngine, PhantomEngineConfig
from synthfair.release import layout

EXACT = GenerateConfig(engine=PhantomEngineConfig(size=32, batch_size=3), encode_workers=2)


def _tars(release, n=4):
    return [layout.tar_path(release, s).read_bytes() for s in range(n)]


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture(scope="module")
def exact_release(small_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("exact") / "release"
    result = generate(small_plan, None, out, EXACT)
    assert (result.written, result.samples, result.failed) == (4, 24, 0)
    finalize(out)
    return out


def test_exact_release_holds_the_phantoms_renders(exact_release, small_plan, procedural_phantom):
    plan, _ = read_plan(small_plan)
    row = next(r for r in plan.to_pylist() if r["kind"] == "counterfactual" and r["shard"] == 0)
    files = _members(layout.tar_path(exact_release, 0))
    record = json.loads(files[f"{row['key']}.json"])
    assert record["generation"]["generator"] == "phantom" and record["model"] is None
    assert record["phantom"]["config"]["anatomy"] == "procedural" and record["propagated"]
    noise = json.loads(row["phantom"])
    subject = procedural_phantom.subject(noise["seed"], noise["index"])
    truth = procedural_phantom.counterfactual(subject, json.loads(row["intervention"]), size=noise["size"])
    expected = fit_image(truth.image / 65535.0, 32, "crop")
    image = decode_png16(files[f"{row['key']}.png"])
    assert np.abs(image - expected).max() <= 1 / 65535 and record["covariates"] == truth.covariates
    family = record["family"]
    factual = np.asarray(Image.open(io.BytesIO(files[f"{family}_f.png"])))
    recon = np.asarray(Image.open(io.BytesIO(files[f"{family}_r.png"])))
    assert factual.tobytes() == recon.tobytes()  # the exact reconstruction is the factual image
    request = json.loads((exact_release / "release.json").read_text())
    manifest = json.loads((exact_release / "manifest.json").read_text())
    assert request["generator"] == manifest["generator"] == "phantom" and request["engine"]["size"] == 32
    assert "exact** counterfactuals" in (exact_release / "DATASET_CARD.md").read_text()


def test_exact_shards_are_byte_identical_across_processes_tasks_and_resumes(
    exact_release, small_plan, tmp_path
):
    split = tmp_path / "split"
    for task in range(2):
        for rank in range(2):
            generate(small_plan, None, split, EXACT, task_shards(4, task, 2), rank, 2)
    assert _tars(split) == _tars(exact_release)
    layout.stats_path(split, 1).unlink()  # a killed shard is redone to the same bytes
    assert generate(small_plan, None, split, EXACT).written == 1
    assert _tars(split) == _tars(exact_release)


def test_local_processes_write_the_same_bytes(exact_release, small_plan, tmp_path):
    done = []
    result = generate_in_processes(small_plan, None, tmp_path / "two", EXACT, workers=2, on_shard=done.append)
    assert (result.shards, result.written, result.samples) == ((0, 1, 2, 3), 4, 24)
    assert sorted(done) == [0, 1, 2, 3]  # each shard announced once, for a progress bar
    assert _tars(tmp_path / "two") == _tars(exact_release)
    again = generate_in_processes(small_plan, None, tmp_path / "two", EXACT, workers=2)
    assert (again.written, again.skipped) == (0, 4)
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        generate_in_processes(small_plan, None, tmp_path / "none", EXACT, workers=0)


def test_rows_the_phantom_cannot_render_fail_with_a_reason():
    engine = PhantomEngine(PhantomEngineConfig(size=16))
    [result] = engine([None], [{"age": 80.0}])
    assert "not a phantom subject" in result.message


def test_engine_and_checkpoint_must_agree(small_plan, trained_run, tmp_path):
    with pytest.raises(ConfigError, match="takes no checkpoint"):
        generate(small_plan, trained_run, tmp_path / "a", EXACT)
    with pytest.raises(ConfigError, match="needs an image model"):
        generate(small_plan, None, tmp_path / "b", GenerateConfig())
    with pytest.raises(ConfigError, match="size >= 16"):
        PhantomEngineConfig(size=4)


def test_shard_stats_record_the_seconds_the_shard_took(exact_release):
    stats = json.loads(layout.stats_path(exact_release, 0).read_text())
    assert 0 <= stats["seconds"] < 3600  # not a Unix time (a loop once reused the start time's name)
