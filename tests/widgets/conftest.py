"""kplab.widgets tests: skipped, with the reason, where the notebook libraries are missing.

The test modules import `kplab.widgets` only inside tests (through the `kw`
fixture), so collection works without ipywidgets; the autouse fixture then
skips each test (or fails it under KPLAB_REQUIRE_ALL=1) with one clear reason.
"""
import importlib.util
from pathlib import Path

import pytest

from tests._require import require

LIBS = ("ipywidgets", "matplotlib", "pandas", "IPython")
MISSING = [m for m in LIBS if importlib.util.find_spec(m) is None]
REASON = (f"kplab.widgets needs {', '.join(MISSING)}: install the notebook extras (pip install -e '.[lab]')"
          if MISSING else "")

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


@pytest.fixture(autouse=True)
def _notebook_libraries():
    require(not MISSING, REASON)


@pytest.fixture
def kw():
    """The kplab.widgets package."""
    import kplab.widgets
    return kplab.widgets


@pytest.fixture
def seed_rules():
    return (DATA / "rules" / "seed-node.rules").read_text()


@pytest.fixture
def seed_cluster():
    from kplab.kube.cluster import Cluster
    return Cluster.load(str(DATA / "clusters" / "seed.yaml"))
