"""probabilities: exact shares from all paths, observed shares from a seeded node, the cascade explained."""
import pytest

from tests.viz.conftest import off_palette, render


@pytest.fixture(scope="module")
def probs10(viz, rules10):
    return viz.probabilities(rules10, "default/backend:http", observed=400, seed=5)


def test_ten_endpoints(viz, probs10, rules10):
    df = probs10.table
    assert len(df) == 10
    assert df["exact"].round(6).tolist() == [0.1] * 10
    assert df["observed_count"].sum() == 400
    assert abs(df["observed_share"].sum() - 1.0) < 1e-9
    assert df["rule"].tolist() == list(range(2, 12))
    labels = "\n".join(probs10.labels())
    for ep in df["endpoint"]:
        assert ep in labels
    for n in range(2, 11):
        assert f"rule #{12 - n}, p=1/{n}" in labels                        # the picture's row labels
        assert f"matches 1/{n} of " in probs10.text                        # the text twin's cascade
    assert "has no statistic match (probability 1)" in probs10.text
    assert "each of the 10 endpoints gets 1/10" in probs10.text
    assert not off_palette(probs10.figure, viz)


def test_exact_shares_come_from_all_paths(viz, rules10, probs10):
    import kplab
    node = kplab.Node(rules10)
    paths = node.all_paths(node.packet("client", "10.96.5.81", "tcp", 80), "client")
    assert {t.dnat_to: t.probability for t in paths} == pytest.approx(probs10.data["exact"])


def test_observed_is_seeded_and_extends(viz, rules10, probs10):
    again = viz.probabilities(rules10, "default/backend:http", observed=400, seed=5)
    assert again.data["observed"] == probs10.data["observed"]
    other = viz.probabilities(rules10, "default/backend:http", observed=400, seed=6)
    assert other.data["observed"] != probs10.data["observed"]
    small = viz.probabilities(rules10, "default/backend:http", observed=100, seed=5)
    more = viz.probabilities(rules10, "default/backend:http", observed=400, seed=5, into=small)
    assert more.figure is small.figure
    assert more.data["observed"] == probs10.data["observed"]       # extending gives the same run


def test_three_endpoints_cascade_words(viz, cluster):
    d = viz.probabilities(render(cluster, 3).ruleset, "backend:http")
    text = d.text
    assert "rule #2 matches 1/3 of all new connections" in text
    assert "rule #3 matches 1/2 of the 2/3 left = 1/3" in text
    assert "rule #4, has no statistic match (probability 1) and takes all 1/3 left" in text
    from kplab.viz.drawing import _STATES
    art = _STATES[d.figure].art
    assert not any(b.get_visible() for b in art["obs"])              # observed=0: no observed bars
    assert "observed" not in text.splitlines()[1]


def test_redraw_moves_the_same_bars(viz, rules10):
    d1 = viz.probabilities(rules10, "default/backend:http", observed=200, seed=1)
    children = list(d1.figure.axes[0].get_children())
    d2 = viz.probabilities(rules10, "default/backend:http", observed=220, seed=1, into=d1)
    assert d2.figure is d1.figure
    assert list(d2.figure.axes[0].get_children()) == children


def test_unknown_service(viz, rules10):
    with pytest.raises(viz.VizError, match="no service port"):
        viz.probabilities(rules10, "default/nope:http")


def test_fixed_capacity_same_text_twin(viz, cluster):
    """Room reserved for 12 rows (a widget's slider maximum): the text twin, alt text and data are the
    default drawing's, redrawn into one figure for 1..12 endpoints and back, and the size stays."""
    d = None
    size = None
    for n in list(range(1, 13)) + list(range(11, 0, -1)):
        rules = render(cluster, n).ruleset
        ref = viz.probabilities(rules, "default/backend:http")
        d = viz.probabilities(rules, "default/backend:http", into=d, capacity=12)
        assert d.text == ref.text
        assert d.alt == ref.alt
        assert d.data == ref.data
        assert d.png(72)[:8] == b"\x89PNG\r\n\x1a\n"
        if size is None:
            size = tuple(d.figure.get_size_inches())
        assert tuple(d.figure.get_size_inches()) == size
        shown = [t for t in d.labels() if t.startswith("10.")]
        assert len([t for t in shown if "\nrule #" in t]) == n          # one tick label per endpoint
