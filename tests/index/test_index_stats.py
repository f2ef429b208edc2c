from source_files import phantom_row, write_phantom_source
from synthfair.index import read_index
from synthfair.index.ingest import ingest
from synthfair.index.stats import MISSING, NO_FINDING, index_stats


def _index(tmp_path, rows):
    write_phantom_source(tmp_path / "src", rows)
    ingest("phantom", tmp_path / "src", tmp_path / "index")
    return read_index(tmp_path / "index")


def test_every_image_is_counted_once_and_small_cells_are_flagged(tmp_path):
    rows = [phantom_row(i) for i in range(12)] + [phantom_row(12, race="", age="")]
    stats = index_stats(_index(tmp_path, rows), min_count=2)
    inter = stats.intersections
    assert inter["n"].sum() == 13
    assert len(inter) == 2 * 5 * 6  # sex x (4 races + missing) x (5 age bins + missing), empty cells kept
    missing = inter[(inter["race"] == MISSING) & (inter["age"] == MISSING)]
    assert missing["n"].sum() == 1 and missing["few"].all()
    assert set(stats.flagged.index) == set(inter.index[inter["n"] < 2])
    assert stats.by_source.loc[0, "total"] == 13 and stats.by_source.loc[0, "has_race"] < 1


def test_finding_positives_per_intersection(tmp_path):
    stats = index_stats(_index(tmp_path, [phantom_row(i) for i in range(8)]), axes=("sex",), min_count=1)
    findings = stats.findings.set_index(["sex", "finding"])["positives"]
    assert findings[("male", "cardiomegaly")] == 4  # odd rows are male with cardiomegaly
    assert findings[("female", NO_FINDING)] == 4 and findings[("male", NO_FINDING)] == 0


def test_axes_must_be_single_valued_covariates(tmp_path):
    import pytest

    from synthfair.errors import SynthfairError

    index = _index(tmp_path, [phantom_row(0)])
    with pytest.raises(SynthfairError, match="cannot intersect on 'findings'"):
        index_stats(index, axes=("findings",))
    with pytest.raises(SynthfairError, match="did you mean 'race'"):
        index_stats(index, axes=("rase",))
