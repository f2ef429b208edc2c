import pytest

from synthfair.errors import SynthfairError
from synthfair.sources.harmonize import FindingsPolicy, Harmonizer
from synthfair.sources.records import RowError, SourceRow
from synthfair.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()


def _row(findings=None, **fields):
    return SourceRow("id1", "p1", "x.jpg", "file.csv, row 1", fields, findings)


def test_uncertain_and_unmentioned_policies_and_mask():
    findings = {"Edema": -1.0, "Cardiomegaly": 1.0, "Atelectasis": None, "Pneumonia": 0.0, "No Finding": None}
    default = Harmonizer(TAXONOMY, "mimic").record(_row(findings))
    assert (default["findings.edema"], default["uncertain.edema"]) == (0, 1)
    assert default["findings.cardiomegaly"] == 1 and default["findings.pneumonia"] == 0
    assert default["findings.atelectasis"] == 0  # not mentioned -> negative by default
    policy = FindingsPolicy(uncertain="positive", unmentioned="missing")
    other = Harmonizer(TAXONOMY, "mimic", policy).record(_row(findings))
    assert (other["findings.edema"], other["uncertain.edema"]) == (1, 1)
    assert other["findings.atelectasis"] is None
    assert default["findings_raw"] == '{"Edema":-1.0,"Cardiomegaly":1.0,"Pneumonia":0.0}'


def test_list_sources_give_zeros_for_covered_labels_and_none_for_uncovered():
    record = Harmonizer(TAXONOMY, "nih").record(_row({"Effusion": 1.0, "Mass": 1.0}))
    assert record["findings.pleural_effusion"] == 1 and record["findings.lung_lesion"] == 1
    assert record["findings.cardiomegaly"] == 0
    assert record["findings.support_devices"] is None and record["uncertain.support_devices"] is None
    unlabeled = Harmonizer(TAXONOMY, "nih").record(_row(None))
    assert unlabeled["findings.cardiomegaly"] is None and unlabeled["findings_raw"] is None


def test_several_raw_labels_feed_one_label_and_defaults_are_counted():
    harmonizer = Harmonizer(TAXONOMY, "padchest")
    record = harmonizer.record(_row({"nodule": 1.0, "kyphosis": 1.0}))
    assert record["findings.lung_lesion"] == 1 and record["findings.cardiomegaly"] == 0
    assert harmonizer.defaulted == {"findings=kyphosis": 1}


def test_categorical_fallback_fields_and_missing_values():
    record = Harmonizer(TAXONOMY, "chexpert").record(_row(**{"AP/PA": None, "Frontal/Lateral": "Lateral"}))
    assert (record["view"], record["view_raw"]) == ("LATERAL", "Lateral")
    assert record["source"] == "chexpert" and record["device"] is None
    record = Harmonizer(TAXONOMY, "chexpert").record(_row(Sex="Unknown", Age="0"))
    assert (record["sex"], record["sex_raw"], record["age"], record["age_raw"]) == (
        None,
        "Unknown",
        None,
        "0",
    )


def test_intervals_and_derived_values():
    row = SourceRow(
        "id", "p", "x.png", "f, row 1", {"PatientAge": "85 or more"}, derived={"age": (85.0, 95.0)}
    )
    record = Harmonizer(TAXONOMY, "brax").record(row)
    assert (record["age"], record["age_lo"], record["age_hi"], record["age_raw"]) == (
        90.0,
        85.0,
        95.0,
        "85 or more",
    )
    fields = {"anchor_age": "60", "anchor_year": "2150", "StudyDate": "21530101"}
    row = SourceRow("id", "p", "x.jpg", "f, row 1", fields, derived={"age": 63.0})
    record = Harmonizer(TAXONOMY, "mimic").record(row)
    assert record["age"] == 63.0 and record["age_raw"] == "anchor_age=60;anchor_year=2150;StudyDate=21530101"


def test_errors_name_value_place_and_taxonomy_entry():
    with pytest.raises(RowError) as err:
        Harmonizer(TAXONOMY, "nih").record(_row(**{"Patient Gender": "X"}))
    assert err.value.code == "unmapped_value"
    assert "'X'" in err.value.message and "file.csv, row 1" in err.value.message
    assert "sources.nih.covariates.sex.map" in err.value.hint
    with pytest.raises(RowError, match=r"age=300.0 is not \[0, 120\]") as err:
        Harmonizer(TAXONOMY, "nih").record(_row(**{"Patient Age": "300"}))
    assert err.value.code == "invalid_value"
    with pytest.raises(SynthfairError, match="no section sources.nowhere"):
        Harmonizer(TAXONOMY, "nowhere")


def test_a_normal_study_stays_negative_when_unmentioned_means_missing():
    policy = FindingsPolicy(unmentioned="missing")
    normal = Harmonizer(TAXONOMY, "chexpert", policy).record(_row({"No Finding": 1.0, "Edema": None}))
    assert normal["findings.edema"] == 0 and normal["findings.cardiomegaly"] == 0
    other = Harmonizer(TAXONOMY, "chexpert", policy).record(_row({"No Finding": None, "Edema": None}))
    assert other["findings.edema"] is None


def test_normal_labels_must_be_map_keys():
    import copy

    from synthfair.config import read_yaml
    from synthfair.errors import TaxonomyError
    from synthfair.taxonomy import Taxonomy

    data = copy.deepcopy(read_yaml(TAXONOMY.path))
    data["sources"]["nih"]["covariates"]["findings"]["normal"] = ["Normal"]
    with pytest.raises(TaxonomyError, match=r"normal labels \['Normal'\] are not keys of the map"):
        Taxonomy.from_dict(data)
