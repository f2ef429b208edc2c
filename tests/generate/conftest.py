"""A rendered phantom source (procedural anatomy, 16 px), its index, and a small plan over it."""

import pytest

PHANTOM_SPACING = (4.0, 4.0, 4.0)  # mm, as the procedural_phantom fixture

SPEC = {
    "seed": 5,
    "shard_size": 7,
    "select": {"limit": 4},
    "interventions": [{"sex": "flip"}, {"age": [25, 85]}, {"findings.cardiomegaly": "toggle"}],
}


@pytest.fixture(scope="session")
def phantom_index(tmp_path_factory):
    from synthfair.ingest import ingest
    from synthfair.phantom.simulator import PhantomConfig
    from synthfair.phantom.source import write_source

    root = tmp_path_factory.mktemp("generate-data")
    config = PhantomConfig(anatomy="procedural", spacing_mm=PHANTOM_SPACING)
    write_source(root / "phantom", n=8, size=32, seed=0, config=config)
    ingest("phantom", root / "phantom", root / "index")
    return root / "index"


@pytest.fixture(scope="session")
def small_plan(phantom_index, tmp_path_factory):
    """4 families x (factual, reconstruction, sex flip, 2 ages, cardiomegaly toggle) = 24 rows in 4 shards."""
    from synthfair.config import dataclass_from_dict
    from synthfair.generate.plan import PlanSpec, make_plan, write_plan
    from synthfair.index import read_index

    plan = make_plan(read_index(phantom_index), dataclass_from_dict(PlanSpec, SPEC))
    path = tmp_path_factory.mktemp("plan") / "plan.parquet"
    write_plan(plan, path, phantom_index)
    return path
