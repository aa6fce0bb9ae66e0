"""Shared fixtures of the kplab.viz tests.

The whole folder needs matplotlib and pandas (the `lab` extra): without them
every test here is skipped with that reason, or fails under
KPLAB_REQUIRE_ALL=1. Test modules import kplab.viz only through the `viz`
fixture, so that collection works without the libraries.
"""
import re

import pytest

from tests._require import require

ROOT_RULES = "data/rules/seed-node.rules"
REASON = "kplab.viz needs matplotlib and pandas (pip install 'kplab[lab]')"


def _have_libs() -> bool:
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


HAVE_LIBS = _have_libs()
HOOK_LINE = re.compile(r"^\s*\d+\. (?:\S+ )?(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING):")

#: The three hook paths of the standard node: (id, from, dst, dport).
PATHS = [
    ("forwarded", "client", "10.244.2.5", 80),       # client -> remote1
    ("local-in", "client", "192.168.0.2", 22),       # client -> the node
    ("local-out", "node", "10.244.2.5", 80),         # the node -> remote1
]


@pytest.fixture(autouse=True)
def _need_libs():
    require(HAVE_LIBS, REASON)


@pytest.fixture(scope="session")
def viz():
    require(HAVE_LIBS, REASON)
    import kplab.viz
    return kplab.viz


@pytest.fixture(scope="session")
def root():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def seed_rules(root):
    import kplab
    return kplab.load_rules(str(root / ROOT_RULES))


@pytest.fixture(scope="session")
def path_traces(seed_rules):
    """One first packet for each hook path, each from a fresh standard node."""
    import kplab
    out = {}
    for name, frm, dst, dport in PATHS:
        out[name] = kplab.standard_node(seed_rules).send_from(frm, dst, "tcp", dport)
    return out


@pytest.fixture(scope="session")
def cluster(root):
    from kplab.kube.cluster import Cluster
    return Cluster.load(str(root / "data/clusters/seed.yaml"))


def render(cluster, replicas):
    from kplab.kube import proxier
    c = cluster.scale("backend", replicas)
    return proxier.render(c.services(), c.slices(), c.proxy_config("node-1"))


@pytest.fixture(scope="session")
def rendered10(cluster):
    return render(cluster, 10)


@pytest.fixture(scope="session")
def rules10(rendered10):
    return rendered10.ruleset


@pytest.fixture(scope="session")
def service_trace(rules10):
    """A first packet from client to the 10-endpoint Service (node-1's rules)."""
    import kplab
    return kplab.Node(rules10, seed=3).send_from("client", "10.96.5.81", "tcp", 80)


def hook_lines(text):
    """The hooks of the numbered lines of a text twin, in order."""
    return [m.group(1) for m in map(HOOK_LINE.match, text.splitlines()) if m]


def hooks_of(trace):
    """The hooks of trace.steps, consecutive repeats merged."""
    out = []
    for s in trace.steps:
        if s.hook and (not out or out[-1] != s.hook):
            out.append(s.hook)
    return out


def used_colours(fig):
    """Every colour an artist of `fig` draws with (alpha dropped, 'none' and invisible skipped)."""
    from matplotlib.colors import to_rgba
    out = set()

    def add(c):
        if c is None:
            return
        try:
            arr = to_rgba(c)
        except (ValueError, TypeError):
            try:
                for x in c:
                    add(x)
            except TypeError:
                pass
            return
        if arr[3] > 0:
            out.add(arr[:3])

    for a in fig.findobj():
        if not a.get_visible() or a is fig.patch:
            continue
        for getter in ("get_color", "get_facecolor", "get_edgecolor", "get_markerfacecolor",
                       "get_markeredgecolor"):
            f = getattr(a, getter, None)
            if f is None:
                continue
            try:
                c = f()
            except (TypeError, AttributeError):
                continue
            if isinstance(c, str) and c in ("none", "auto", "inherit"):
                continue
            add(c)
        bbox = getattr(a, "get_bbox_patch", None)
        if bbox is not None and bbox() is not None:
            add(bbox().get_facecolor())
            add(bbox().get_edgecolor())
    return out


def off_palette(fig, viz):
    from matplotlib.colors import to_rgba
    allowed = {to_rgba(c)[:3] for c in viz.PALETTE.values()}
    return sorted({tuple(round(x, 3) for x in c) for c in used_colours(fig) if c not in allowed})
