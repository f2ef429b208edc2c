import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from synthfair.errors import SynthfairError
from synthfair.phantom.grid import default_interventions, render_grid
from synthfair.phantom.simulator import Phantom, PhantomConfig
from synthfair.phantom.source import read_png16, read_subjects, split_of, write_source

CONFIG = PhantomConfig(anatomy="procedural", spacing_mm=(4.0, 4.0, 4.0))


def _digests(root):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "images").glob("*.png"))
    }


@pytest.mark.slow
def test_one_or_two_processes_write_the_same_bytes(tmp_path):
    one = write_source(tmp_path / "one", n=6, size=32, seed=3, workers=1, config=CONFIG)
    two = write_source(tmp_path / "two", n=6, size=32, seed=3, workers=2, config=CONFIG)
    assert one.rendered == two.rendered == 6 and one.complete
    assert _digests(one.out) == _digests(two.out)
    for name in ("metadata.csv", "subjects.parquet", "provenance.json", ".request.json"):
        assert (one.out / name).read_bytes() == (two.out / name).read_bytes()


def test_layout_and_contents(tmp_path, procedural_phantom):
    out = write_source(tmp_path / "src", n=4, size=32, seed=1, config=CONFIG).out
    meta = pd.read_csv(out / "metadata.csv")
    assert list(meta.columns[:3]) == ["key", "image", "split"]
    assert len(meta) == 4 and meta["key"].is_unique
    assert not meta["key"].str.contains(".", regex=False).any()  # WebDataset keys must be dot-free
    assert set(meta["split"]) <= {"train", "validate", "test"}
    for cov in procedural_phantom.taxonomy:
        if cov.kind == "multilabel":
            assert {f"{cov.name}.{label}" for label in cov.values} <= set(meta.columns)
        else:
            assert cov.name in meta.columns
    image = read_png16(out / meta["image"][0])
    assert image.dtype == np.uint16 and image.shape == (32, 32) and image.max() > 255  # truly 16-bit
    assert pq.read_table(out / "subjects.parquet").num_rows == 4


def test_subjects_parquet_reproduces_exact_images(tmp_path, procedural_phantom):
    out = write_source(tmp_path / "src", n=3, size=32, seed=2, config=CONFIG).out
    ph = Phantom(CONFIG, anatomy=procedural_phantom.anatomy)
    for subject in read_subjects(out / "subjects.parquet", ph):
        again = ph.render(subject, size=32)
        assert again.tobytes() == read_png16(out / "images" / f"{subject.key}.png").tobytes()


def test_rerun_resumes_and_refuses_a_different_source(tmp_path):
    out = tmp_path / "src"
    write_source(out, n=4, size=32, seed=1, config=CONFIG)
    before = _digests(out)
    victim = sorted((out / "images").glob("*.png"))[2]
    victim.unlink()
    (out / "images" / f".{victim.name}.x.tmp").write_bytes(b"partial")  # a crash mid-write
    again = write_source(out, n=4, size=32, seed=1, config=CONFIG)
    assert again.rendered == 1
    assert _digests(out) == before
    with pytest.raises(SynthfairError, match="seed"):
        write_source(out, n=4, size=32, seed=2, config=CONFIG)


def test_bad_arguments_are_named():
    with pytest.raises(SynthfairError, match="n=0"):
        write_source("unused", n=0, config=CONFIG)


def test_split_is_stable_and_roughly_80_10_10():
    splits = pd.Series([split_of(f"phantom_s0_{i:06d}") for i in range(3000)]).value_counts(normalize=True)
    assert split_of("phantom_s0_000001") == split_of("phantom_s0_000001")
    assert 0.77 < splits["train"] < 0.83 and 0.08 < splits["test"] < 0.12


def test_grid_has_a_row_per_subject_and_a_column_per_intervention(procedural_phantom):
    ph = procedural_phantom
    columns = default_interventions(ph)
    picture = render_grid(ph, ph.sample_subjects(2, 0), size=32, interventions=columns[:4])
    assert picture.size == (4 * 32, 18 + 2 * 32)


def test_array_parts_complete_the_same_source(tmp_path):
    whole = write_source(tmp_path / "whole", n=4, size=32, seed=5, config=CONFIG)
    first = write_source(tmp_path / "parts", n=4, size=32, seed=5, config=CONFIG, part=(0, 2))
    assert not first.complete and not (first.out / "metadata.csv").exists()
    second = write_source(tmp_path / "parts", n=4, size=32, seed=5, config=CONFIG, part=(1, 2))
    assert second.complete and first.rendered == second.rendered == 2
    assert _digests(whole.out) == _digests(second.out)
    assert (whole.out / "metadata.csv").read_bytes() == (second.out / "metadata.csv").read_bytes()


def test_an_unfinished_source_refuses_a_different_request(tmp_path):
    out = tmp_path / "parts"
    write_source(out, n=4, size=32, seed=5, config=CONFIG, part=(0, 2))
    assert not (out / "provenance.json").exists()
    with pytest.raises(SynthfairError, match="size"):
        write_source(out, n=4, size=48, seed=5, config=CONFIG, part=(1, 2))
