"""On a tiny exact release (the phantom's own counterfactuals), a study's classifier learns the finding:
without bias its AUROC on the balanced test split is well above chance, and a perfect spurious correlation
costs it part of that."""

import pytest
import yaml

from synthfair.config import dataclass_from_dict
from synthfair.fairness.study import StudySpec, run_study
from synthfair.generate import GenerateConfig, finalize, generate, make_plan, write_plan
from synthfair.generate.plan import load_plan_spec
from synthfair.index import read_index
from synthfair.index.ingest import ingest
from synthfair.phantom.engine import PhantomEngineConfig
from synthfair.phantom.simulator import PhantomConfig
from synthfair.phantom.source import write_source

FAMILIES = 160
PLAN = {
    "seed": 0,
    "shard_size": 100,
    "select": {"limit": FAMILIES},
    "include_factual": True,
    "include_reconstruction": False,
    "interventions": [{"device": ["philips"]}, {"findings.cardiomegaly": "toggle"}],
}
STUDY = {
    "base": {
        "size": 120,
        "seed": 0,
        "target": "findings.cardiomegaly",
        "prevalence": {"all": 0.5},
        "correlation": {"covariate": "device", "value": "philips", "strength": 0.0},
        "splits": {"train": 0.6, "test": 0.4},
    },
    "grid": {"correlation.strength": [0.0, 1.0]},
    "groups": ["device=philips"],
    "baseline": False,
    "classifier": {"epochs": 12, "batch_size": 16},
    "n_boot": 20,
}
FLOOR = 0.8  # the no-bias AUROC the finding must reach (chance is 0.5)


@pytest.fixture(scope="module")
def exact_study_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("exact-study")
    config = PhantomConfig(anatomy="procedural", spacing_mm=(4.0, 4.0, 4.0))
    write_source(root / "phantom", n=FAMILIES, size=64, seed=0, config=config)
    ingest("phantom", root / "phantom", root / "index")
    spec_path = root / "plan.yaml"
    spec_path.write_text(yaml.safe_dump(PLAN))
    plan = make_plan(read_index(root / "index"), load_plan_spec(spec_path))
    write_plan(plan, root / "plan.parquet", root / "index")
    engine = PhantomEngineConfig(size=32)
    generate(root / "plan.parquet", None, root / "release", GenerateConfig(engine=engine))
    finalize(root / "release")
    return root / "release"


@pytest.mark.slow
def test_a_classifier_learns_the_finding_on_an_exact_release(exact_study_release, tmp_path):
    result = run_study(dataclass_from_dict(StudySpec, STUDY), exact_study_release, tmp_path / "study")
    auroc = {r["cell"]["correlation.strength"]: r["groups"]["overall"]["auroc"] for r in result.results}
    assert auroc[0.0] >= FLOOR, auroc
    assert auroc[1.0] < auroc[0.0], auroc  # the shortcut costs the finding
