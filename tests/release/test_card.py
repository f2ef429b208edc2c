import pandas as pd

from synthfair.release.card import intersection_axes, numbers_section, size_category
from synthfair.taxonomy import MISSING, load_taxonomy


def test_the_numbers_section_labels_groups_as_every_report_does():
    taxonomy = load_taxonomy()
    rows = []
    for i, (age, race) in enumerate([(30.0, "black"), (None, "white"), (70.0, None), (30.0, "black")]):
        row = {"family": f"f{i // 2}", "kind": "factual", "label": "factual", "split": "train"}
        row.update({column: None for column in taxonomy.columns()})
        row.update({"age": age, "race": race, "sex": "female", "findings.cardiomegaly": i % 2})
        rows.append(row)
    manifest = {"nsamples": 4, "shards": [{}], "failed": 0, "bytes": 2048, "config": {"size": 64}}
    text = numbers_section(manifest, pd.DataFrame(rows), taxonomy, {"decode error": 1})
    labels = taxonomy.group_labels(pd.DataFrame(rows), ["age", "race"])
    for value in {*labels["age"], *labels["race"]}:
        assert f"| {value} |" in text
    assert MISSING in set(labels["age"]) and f"| {MISSING} |" in text
    assert "| cardiomegaly | 2 | 2 | 0 |" in text and "| decode error | 1 |" in text
    assert set(intersection_axes(taxonomy)) <= set(taxonomy.names) and "age" in intersection_axes(taxonomy)
    assert size_category(4) == "n<1K" and size_category(10**8) == "n>10M"
