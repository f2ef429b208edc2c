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


def test_the_repository_card_is_the_demo_release_card_of_today():
    """DATASET_CARD.md at the repository root is what `synthfair finalize` writes for the demo release: the
    current template, filled, naming the shipped model's weights (re-copy it after a demo run if not)."""
    import hashlib
    import re
    from importlib import resources
    from pathlib import Path

    from synthfair.pretrained import pretrained_path
    from synthfair.release.finalize import NUMBERS_END, NUMBERS_START

    template = resources.files("synthfair.release").joinpath("card_template.md").read_text()
    head, _, rest = template.partition(NUMBERS_START)
    tail = rest.partition(NUMBERS_END)[2]
    card = (Path(__file__).resolve().parents[2] / "DATASET_CARD.md").read_text()
    at = 0
    for part in re.split(r"\{[a-z_0-9]+\}", head + NUMBERS_START) + re.split(r"\{[a-z_0-9]+\}", tail):
        found = card.find(part, at)
        assert found >= 0, f"DATASET_CARD.md lacks {part[:80]!r}: cp demo/release/DATASET_CARD.md ."
        at = found + len(part)
    weights = pretrained_path("phantom-64") / "unet" / "diffusion_pytorch_model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() in card
