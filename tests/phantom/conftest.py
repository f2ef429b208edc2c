import pytest

from synthfair.phantom.simulator import Phantom, PhantomConfig

SPACING = (4.0, 4.0, 4.0)


@pytest.fixture(scope="session")
def procedural_phantom() -> Phantom:
    """The phantom on the procedural anatomy at a coarse grid: no download, fast."""
    return Phantom(PhantomConfig(anatomy="procedural", spacing_mm=SPACING))
