import json

import pandas as pd
import pytest

from source_files import phantom_row, write_phantom_source
from synthfair.errors import SynthfairError
from synthfair.index import ingest as ingest_module
from synthfair.index import read_index, read_quarantine
from synthfair.index.ingest import IngestConfig, ingest
from synthfair.sources.harmonize import FindingsPolicy

SKIP = IngestConfig(on_error="skip")


@pytest.fixture
def source(tmp_path):
    return write_phantom_source(tmp_path / "phantom", [phantom_row(i) for i in range(6)])


def test_ingest_indexes_every_row_with_raw_values_kept(source, tmp_path):
    report = ingest("phantom", source, tmp_path / "index")
    assert (report.read, report.indexed, report.total_quarantined) == (6, 6, 0)
    index = read_index(tmp_path / "index")
    row = index.set_index("sample_key").loc["phantom_s0_000001"]  # not prefixed twice
    assert row["dataset"] == "phantom" and row["source"] == "phantom_site_b"
    assert (row["age"], row["age_raw"], row["sex"], row["view"]) == (27.0, "27", "male", "AP")
    assert row["findings.cardiomegaly"] == 1 and row["findings.edema"] == 0
    assert row["split"] == "validate" and row["image_path"] == "images/phantom_s0_000001.png"
    assert "." not in "".join(index["sample_key"])
    saved = json.loads((tmp_path / "index" / "reports" / "phantom.json").read_text())
    assert saved["counts"] == {"read": 6, "indexed": 6, "quarantined": 0, "quarantined_by_reason": {}}


def test_reingesting_a_source_replaces_its_rows(source, tmp_path):
    ingest("phantom", source, tmp_path / "index")
    ingest("phantom", source, tmp_path / "index")
    index = read_index(tmp_path / "index")
    assert len(index) == 6 and index["sample_key"].is_unique
    assert json.loads((tmp_path / "index" / "index.json").read_text())["rows"] == 6


@pytest.mark.parametrize(
    ("override", "code", "words"),
    [
        (
            {"sex": "x"},
            "unmapped_value",
            ["'x'", "sources.phantom.covariates.sex.map", "metadata.csv, row 3"],
        ),
        ({"age": "300"}, "invalid_value", ["age=300.0", "[0, 120]"]),
        ({"age": "old"}, "invalid_value", ["'old' is not a number"]),
        ({"findings.edema": "2"}, "invalid_value", ["'findings.edema' = '2'"]),
        ({"key": "phantom_s0_000000"}, "duplicate_id", ["duplicate id", "row 1"]),
        ({"image": "images/gone.png"}, "image_missing", ["images/gone.png"]),
        ({"image": "../../private/x.png"}, "image_outside_root", ["'../../private/x.png'", "'..'"]),
        ({"image": "/etc/passwd"}, "image_outside_root", ["'/etc/passwd'", "is absolute"]),
        ({"image": "C:\\x.png"}, "image_outside_root", ["is absolute"]),
    ],
)
def test_bad_rows_stop_or_are_quarantined(tmp_path, override, code, words):
    rows = [phantom_row(i) for i in range(4)]
    write_phantom_source(tmp_path / "src", rows)
    rows[2] = {**rows[2], **override}
    write_phantom_source(tmp_path / "src", rows, images=False)
    with pytest.raises(SynthfairError) as err:
        ingest("phantom", tmp_path / "src", tmp_path / "stop")
    for word in words:
        assert word in str(err.value)
    assert "--on-error skip" in err.value.hint
    report = ingest("phantom", tmp_path / "src", tmp_path / "skip", SKIP)
    assert (report.indexed, dict(report.quarantined)) == (3, {code: 1})
    quarantine = read_quarantine(tmp_path / "skip")
    assert list(quarantine["code"]) == [code] and "metadata.csv, row 3" in quarantine["where"][0]


def test_an_image_linked_from_outside_the_root_is_quarantined(tmp_path):
    rows = [phantom_row(i) for i in range(3)]
    write_phantom_source(tmp_path / "src", rows)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "x.png").write_bytes((tmp_path / "src" / rows[1]["image"]).read_bytes())
    (tmp_path / "src" / rows[1]["image"]).unlink()
    (tmp_path / "src" / rows[1]["image"]).symlink_to(tmp_path / "private" / "x.png")
    report = ingest("phantom", tmp_path / "src", tmp_path / "index", SKIP)
    assert (report.indexed, dict(report.quarantined)) == (2, {"image_outside_root": 1})
    assert "through a link" in read_quarantine(tmp_path / "index")["reason"][0]


def test_missing_column_names_the_file_and_column(tmp_path):
    rows = [{k: v for k, v in phantom_row(i).items() if k != "split"} for i in range(2)]
    write_phantom_source(tmp_path / "src", rows)
    with pytest.raises(SynthfairError, match=r"metadata.csv: missing column\(s\) \['split'\]"):
        ingest("phantom", tmp_path / "src", tmp_path / "index")


def test_unknown_source_and_bad_options_are_errors(source, tmp_path):
    with pytest.raises(SynthfairError, match="did you mean 'mimic'"):
        ingest("mimik", source, tmp_path / "index")
    with pytest.raises(SynthfairError, match="on-error"):
        IngestConfig(on_error="ignore")
    with pytest.raises(SynthfairError, match="uncertain"):
        FindingsPolicy(uncertain="maybe")
    with pytest.raises(SynthfairError, match="split fractions"):
        IngestConfig(split_fractions=(0.5, 0.2, 0.2))


def test_hashed_splits_are_stable_patient_level_and_follow_fractions():
    fractions = (0.8, 0.1, 0.1)
    patients = [f"p{i}" for i in range(3000)]
    splits = [ingest_module._split(None, p, fractions) for p in patients]
    assert splits == [ingest_module._split(None, p, fractions) for p in patients]
    shares = pd.Series(splits).value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.03 and abs(shares["test"] - 0.1) < 0.03
    assert ingest_module._split("test", "p1", fractions) == "test"  # official splits are kept
    limited = {ingest_module._split(("train", "validate"), p, fractions) for p in patients}
    assert limited == {"train", "validate"}


def test_several_sources_share_one_index_and_reingest_replaces_only_one(source, tmp_path):
    from nih_files import fixture_rows, write_nih

    index_dir = tmp_path / "index"
    ingest("phantom", source, index_dir)
    nih = ingest("nih", write_nih(tmp_path / "nih"), index_dir, SKIP)
    index = read_index(index_dir)
    assert index["dataset"].value_counts().to_dict() == {"phantom": 6, "nih": nih.indexed}
    assert nih.read == len(fixture_rows()) and index["sample_key"].is_unique
    assert set(index["source"]) >= {"nih", "phantom_site_a"}  # the site covariate per source
    ingest("phantom", source, index_dir)
    again = read_index(index_dir)
    assert len(again) == len(index) and sorted(again["sample_key"]) == sorted(index["sample_key"])
    summary = json.loads((index_dir / "index.json").read_text())
    assert set(summary["sources"]) == {"nih", "phantom"} and summary["rows"] == len(index)


def test_a_huge_unmapped_value_costs_little_and_is_echoed_short(tmp_path):
    rows = [phantom_row(i) for i in range(3)]
    write_phantom_source(tmp_path / "src", rows)
    rows[1] = {**rows[1], "sex": "x" * 500_000}
    write_phantom_source(tmp_path / "src", rows, images=False)
    with pytest.raises(SynthfairError) as err:
        ingest("phantom", tmp_path / "src", tmp_path / "stop")
    assert "500000 characters" in str(err.value) and len(str(err.value)) < 2000
    report = ingest("phantom", tmp_path / "src", tmp_path / "skip", SKIP)
    assert dict(report.quarantined) == {"unmapped_value": 1}
    quarantine = read_quarantine(tmp_path / "skip")
    assert len(quarantine["reason"][0]) < 2000 and len(quarantine["fields"][0]) < 5000


def test_a_metadata_line_beyond_any_row_is_refused_before_it_is_read(tmp_path):
    rows = [phantom_row(i) for i in range(3)]
    write_phantom_source(tmp_path / "src", rows)
    rows[2] = {**rows[2], "sex": "y" * (2 << 20)}
    write_phantom_source(tmp_path / "src", rows, images=False)
    with pytest.raises(SynthfairError, match=r"metadata.csv, line 4: longer than 1048576 bytes") as err:
        ingest("phantom", tmp_path / "src", tmp_path / "index", SKIP)
    assert "SHA256SUMS" in err.value.hint and len(str(err.value)) < 1000
