import pytest

from synthfair.errors import ConfigError
from synthfair.sampling import BiasSpec, Correlation, load_bias_spec


def test_a_yaml_spec_with_shorthands(tmp_path):
    path = tmp_path / "bias.yaml"
    path.write_text(
        "size: 100\ntarget: findings.cardiomegaly\ngroups: [sex]\nshares: {female: 0.2}\n"
        "label_noise: {female: 0.25}\nsplits: {train: 0.5, validate: 0.25, test: 0.25}\n"
        "correlation: {covariate: device, value: philips, strength: 0.9}\n"
    )
    spec = load_bias_spec(path)
    assert spec.label_noise["female"].positive_to_negative == 0.25
    assert spec.splits["train"].biased and not spec.splits["test"].biased
    assert spec.splits["validate"].label_noise and not spec.splits["test"].label_noise
    assert spec.correlation == Correlation("device", "philips", 0.9)


def test_the_baseline_zeroes_every_knob_and_keeps_the_rest():
    spec = BiasSpec(
        size=10,
        target="findings.cardiomegaly",
        groups=("sex",),
        shares={"female": 0.1},
        correlation=Correlation("device", "ge", 0.9),
    )
    base = spec.baseline()
    assert base.size == 10 and base.groups == ("sex",) and base.correlation.strength == 0
    assert not any(s.biased or s.label_noise for s in base.splits.values()) and not base.label_noise


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"size": 10, "prevalence": {"female": 0.5}, "groups": ["sex"]}, "need a target"),
        (
            {"size": 10, "target": "findings.cardiomegaly", "label_noise": {"al": 0.5}},
            "write label_noise: {all",
        ),
        ({"size": 10, "shares": {"female": 0.5}}, "no groups are set"),
        ({"size": 10, "target": "findings.cardiomegaly", "prevalence": {"female": 0.5}}, "no groups are set"),
        ({"size": 10, "groups": ["sex"], "shares": {"female": 0.7, "male": 0.6}}, "sum to 1.300"),
        ({"size": 10, "splits": {"train": 0.5, "test": 0.2}}, "sum to 0.7000"),
        (
            {
                "size": 10,
                "target": "findings.cardiomegaly",
                "correlation": {"covariate": "device", "value": "ge", "strength": 1.5},
            },
            "strength",
        ),
        ({"size": 10, "sahres": {}}, "did you mean 'shares'"),
    ],
)
def test_bad_specs_name_the_key_and_the_fix(tmp_path, data, message):
    import yaml

    path = tmp_path / "bias.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_bias_spec(path)
