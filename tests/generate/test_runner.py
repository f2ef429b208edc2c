import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthfair.counterfactual import EngineConfig
from synthfair.errors import ConfigError, SynthfairError
from synthfair.generate.plan import read_plan, write_plan
from synthfair.generate.runner import GenerateConfig, generate, process_shards, task_shards
from synthfair.release import layout

CONFIG = GenerateConfig(engine=EngineConfig(steps=4, batch_size=4), encode_workers=2)


def members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def tar_bytes(release, n=4):
    return [layout.tar_path(release, s).read_bytes() for s in range(n)]


@pytest.fixture(scope="module")
def release(small_plan, trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "release"
    result = generate(small_plan, trained_run, out, CONFIG)
    assert (result.written, result.skipped, result.samples, result.failed) == (4, 0, 24, 0)
    return out


def test_shards_hold_16_bit_pngs_and_sample_records(release, small_plan):
    plan, _ = read_plan(small_plan)
    rows = {r["key"]: r for r in plan.to_pylist()}
    for shard in range(4):
        stats = json.loads(layout.stats_path(release, shard).read_text())
        files = members(layout.tar_path(release, shard))
        keys = [r["key"] for r in rows.values() if r["shard"] == shard]
        assert sorted(files) == sorted([f"{k}.png" for k in keys] + [f"{k}.json" for k in keys])
        assert (
            stats["nsamples"] == len(keys) and stats["first_key"] == keys[0] and stats["last_key"] == keys[-1]
        )
        with tarfile.open(layout.tar_path(release, shard)) as tar:
            assert {m.mtime for m in tar.getmembers()} == {0}
    files = members(layout.tar_path(release, 0))
    key = next(k for k in rows if rows[k]["shard"] == 0 and rows[k]["kind"] == "counterfactual")
    record = json.loads(files[f"{key}.json"])
    assert (
        record["schema"] == "synthfair.sample/1" and record["key"] == key and record["parent"].endswith("_f")
    )
    assert (
        record["intervention"] == json.loads(rows[key]["intervention"])
        and record["seed"] == rows[key]["seed"]
    )
    assert set(record["changed"]) >= set(record["intervention"]) and record["propagated"]
    assert record["source"]["dataset"] == "phantom" and record["phantom"]["index"] >= 0
    assert len(record["model"]["checkpoint_sha256"]) == 64 and record["generation"]["steps"] == 4
    png = Image.open(io.BytesIO(files[f"{key}.png"]))
    assert png.mode.startswith("I;16") and png.size == (16, 16)


def test_reconstruction_and_factual_match_the_fitted_factual_image(release):
    files = members(layout.tar_path(release, 0))
    family = json.loads(files[next(n for n in files if n.endswith("_f.json"))])["family"]
    factual = np.asarray(Image.open(io.BytesIO(files[f"{family}_f.png"]))).astype(np.int64)
    recon = np.asarray(Image.open(io.BytesIO(files[f"{family}_r.png"]))).astype(np.int64)
    assert np.abs(factual - recon).max() <= 2  # the residual returns the factual up to rounding
    assert json.loads(files[f"{family}_r.json"])["changed"] == []


def test_status_parquet_has_one_row_per_plan_row(release):
    status = pq.read_table(layout.status_path(release, 1)).to_pylist()
    assert [s["status"] for s in status] == ["ok"] * len(status)
    assert all(len(s["png_sha256"]) == 64 and json.loads(s["covariates"]) for s in status)


def test_rerun_skips_done_shards_and_redoes_partial_ones_to_the_same_bytes(release, small_plan, trained_run):
    before = tar_bytes(release)
    layout.stats_path(release, 2).unlink()  # shard 2 "crashed" after its tar ...
    (release / "shards" / ".000002.tar.abc.tmp").write_bytes(b"partial")  # ... leaving a temporary file
    result = generate(small_plan, trained_run, release, CONFIG)
    assert (result.written, result.skipped) == (1, 3)
    assert tar_bytes(release) == before
    assert not list((release / "shards").glob(".*.tmp"))


def test_processes_and_tasks_write_the_same_bytes(release, small_plan, trained_run, tmp_path):
    split = tmp_path / "split"
    for task in range(2):  # two array tasks, each with two processes
        for rank in range(2):
            generate(small_plan, trained_run, split, CONFIG, task_shards(4, task, 2), rank, 2)
    assert tar_bytes(split) == tar_bytes(release)
    assert list(task_shards(10, 0, 3)) == [0, 1, 2, 3] and list(task_shards(10, 2, 3)) == [7, 8, 9]
    assert process_shards([4, 5, 6], 1, 2) == [5]
    with pytest.raises(ConfigError, match="task index 3"):
        task_shards(10, 3, 3)


def test_a_different_request_is_refused(release, small_plan, trained_run):
    other = GenerateConfig(engine=EngineConfig(steps=5, batch_size=4))
    with pytest.raises(SynthfairError, match="another engine"):
        generate(small_plan, trained_run, release, other)


def test_an_unreadable_factual_image_fails_its_family_with_a_reason(small_plan, trained_run, tmp_path):
    table, meta = read_plan(small_plan)
    rows = table.to_pylist()
    broken = rows[0]["family"]
    for row in rows:
        if row["family"] == broken:
            row["image"] = str(tmp_path / "gone.png")
    import pyarrow as pa

    from synthfair.generate.plan import PLAN_COLUMNS, Plan, PlanSpec

    plan = tmp_path / "plan.parquet"
    write_plan(Plan(pa.Table.from_pylist(rows, schema=PLAN_COLUMNS), PlanSpec(), 4, 0), plan)
    out = tmp_path / "release"
    result = generate(plan, trained_run, out, CONFIG, shards=[0])
    stats = json.loads(layout.stats_path(out, 0).read_text())
    family_rows = [r for r in rows if r["family"] == broken and r["shard"] == 0]
    assert result.failed == stats["failed"] == len(family_rows)
    status = {s["key"]: s for s in pq.read_table(layout.status_path(out, 0)).to_pylist()}
    assert all("gone.png" in status[r["key"]]["error"] for r in family_rows)
    assert not any(name.startswith(broken) for name in members(layout.tar_path(out, 0)))
