import pytest

from source_files import phantom_row, write_phantom_source
from synthfair import index
from synthfair.errors import SynthfairError
from synthfair.index.ingest import ingest
from synthfair.taxonomy import load_taxonomy


def test_sample_hash_is_stable_and_63_bit():
    assert index.sample_hash("mimic", "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014") == 721415401952877773
    values = {index.sample_hash("nih", f"{i:08d}_000.png") for i in range(1000)}
    assert len(values) == 1000 and all(0 <= v < 2**63 for v in values)
    assert 0 <= index.unit_hash("anything") < 1


def test_schema_follows_the_taxonomy():
    taxonomy = load_taxonomy()
    names = index.columns(taxonomy)
    assert names[:3] == ["sample_key", "dataset", "source_id"]
    for cov in ("age", "age_lo", "age_hi", "age_raw", "sex", "sex_raw", "race", "view", "device", "source"):
        assert cov in names
    labels = taxonomy["findings"].values
    assert index.finding_columns(taxonomy) == [f"findings.{label}" for label in labels]
    assert all(f"uncertain.{label}" in names for label in labels)


def test_read_index_errors_and_source_filter(tmp_path):
    with pytest.raises(SynthfairError, match="no index at"):
        index.read_index(tmp_path)
    write_phantom_source(tmp_path / "src", [phantom_row(i) for i in range(3)])
    ingest("phantom", tmp_path / "src", tmp_path / "index")
    assert len(index.read_index(tmp_path / "index", sources=["phantom"])) == 3
    assert len(index.read_index(tmp_path / "index" / "index.parquet", sources=["nih"])) == 0
    assert index.read_index(tmp_path / "index")["findings.edema"].dtype.name == "Int8"


def test_parts_with_other_columns_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_phantom_source(tmp_path / "src", [phantom_row(0)])
    ingest("phantom", tmp_path / "src", tmp_path / "index")
    pq.write_table(pa.table({"sample_key": ["x"]}), tmp_path / "index" / "sources" / "zzz.parquet")
    with pytest.raises(SynthfairError, match="re-ingest zzz"):
        index.rebuild(tmp_path / "index")
