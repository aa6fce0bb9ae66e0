"""chain_tree: the jump graph with 1 and 10 endpoints, probabilities, the traced branch, dead ends."""
import re

import pytest

from tests.viz.conftest import off_palette, render

SVC = "KUBE-SVC-POOGYJBNEVT3HFAO"


@pytest.fixture(scope="module")
def tree10(viz, rules10, service_trace):
    return viz.chain_tree(rules10, "default/backend:http", trace=service_trace)


def _sep_chains(ruleset):
    return sorted(c for c in ruleset.tables["nat"].chains if c.startswith("KUBE-SEP-"))


def test_ten_endpoints_every_branch_is_labelled(viz, tree10, rules10):
    labels = tree10.labels()
    seps = _sep_chains(rules10)
    assert len(seps) == 10
    for c in seps + [SVC]:
        assert c in labels
    flat = "\n".join(labels)
    eps = sorted(set(re.findall(r"DNAT to (10\.244\.\d+\.\d+:8080)", flat)))
    assert len(eps) == 10
    probs = [l for l in labels if l.startswith("p=")]
    assert sorted(probs) == sorted(f"p=1/{n}" for n in range(2, 11))
    assert labels.count("10%") == 10                   # every branch gets a tenth of new connections
    assert tree10.data["chains"][0] == SVC and len(tree10.data["chains"]) == 11
    assert "KUBE-MARK-MASQ (MARK or 0x4000)" in flat   # marking chains are written on the row, not drawn
    assert not off_palette(tree10.figure, viz)
    df = tree10.table
    assert len(df) == sum(len(rules10.chain("nat", c).rules) for c in [SVC] + seps)
    assert df[df["chain"] == SVC]["share"].dropna().round(6).tolist() == [0.1] * 10


def test_the_traced_branch_is_highlighted(viz, tree10, service_trace):
    from matplotlib.colors import to_hex
    taken = tree10.data["taken"]
    sep = next(s.chain for s in service_trace.steps if s.verdict == "DNAT")
    assert taken[0][0] == SVC and taken[-1][0] == sep
    assert f"Traced packet: {SVC} #{taken[0][1]} → {sep} #2 (DNAT to {service_trace.dnat_to})." in tree10.text
    assert f"{sep} #2" in tree10.alt
    from kplab.viz.drawing import _STATES
    art = _STATES[tree10.figure].art
    blue = [(c, i) for c, i, a in art["edges"] if to_hex(a.get_edgecolor()).upper() == viz.ROLE["path"].upper()]
    assert blue == [taken[0]]
    thick = [c for c, o in art["boxes"].items() if o.get_linewidth() > 2]
    assert sorted(thick) == sorted([SVC, sep])
    marks = [m.get_text() for (_, _), (_, _, m) in art["rows"].items() if m.get_visible()]
    assert marks.count("▶") == 2 and "✗" in marks         # taken rows and rows that did not match


def test_one_endpoint_and_a_chain_root(viz, seed_rules, path_traces):
    d = viz.chain_tree(seed_rules, "KUBE-SERVICES")
    labels = "\n".join(d.labels())
    for c in ("KUBE-SERVICES", SVC, "KUBE-SEP-YOPU36KEXISEYTYN", "KUBE-NODEPORTS"):
        assert c in labels
    assert "DNAT to 10.244.1.3:8080" in labels
    assert "(empty) ↩ returns at once" in labels              # KUBE-NODEPORTS: a dead end, returning
    assert "↩ end of chain: back to the caller" in labels     # KUBE-SERVICES can fall through
    assert not [l for l in d.labels() if l.startswith("p=")]    # one endpoint: no statistic rule
    # a packet that is not for a Service: KUBE-SERVICES is walked, nothing matches
    d = viz.chain_tree(seed_rules, "KUBE-SERVICES", trace=path_traces["forwarded"], into=d)
    assert d.data["taken"] == []
    assert "no match" in d.text
    w1, h1 = d.figure.get_size_inches()
    assert 6 <= w1 <= 20 and 2.5 <= h1 <= 8


def test_size_grows_with_endpoints(viz, cluster, rules10):
    small = viz.chain_tree(render(cluster, 1).ruleset, "default/backend:http")
    big = viz.chain_tree(rules10, "default/backend:http")
    (_, h1), (_, h10) = small.figure.get_size_inches(), big.figure.get_size_inches()
    assert h10 > 2 * h1                                      # room for ten boxes, not squeezed


def test_no_endpoints_shows_the_reject(viz, cluster):
    rules0 = render(cluster, 0).ruleset
    d = viz.chain_tree(rules0, "default/backend:http", table="filter")
    flat = "\n".join(d.labels())
    assert "REJECT" in flat and "⊘" in flat
    assert "no endpoints" in d.alt
    from matplotlib.colors import to_hex
    rows = [t for t in d.figure.axes[0].texts
            if "REJECT" in t.get_text() and t.get_fontfamily() == ["DejaVu Sans Mono"]]
    assert rows and all(to_hex(t.get_color()).upper() == viz.ROLE["reject"].upper() for t in rows)


def test_errors_and_redraw(viz, rules10, service_trace, seed_rules):
    with pytest.raises(viz.VizError, match="neither a chain"):
        viz.chain_tree(rules10, "KUBE-NOPE")
    d1 = viz.chain_tree(rules10, SVC)
    children = list(d1.figure.axes[0].get_children())
    d2 = viz.chain_tree(rules10, SVC, trace=service_trace, into=d1)
    assert d2.figure is d1.figure and list(d2.figure.axes[0].get_children()) == children   # same artists
    d3 = viz.chain_tree(seed_rules, "KUBE-SERVICES", into=d2)
    assert d3.figure is d1.figure and "KUBE-NODEPORTS" in d3.labels()


def test_fixed_capacity_same_text_twin(viz, cluster):
    """Room reserved for 12 branches (a widget's slider maximum): the text twin, alt text, table and data
    are the default drawing's, redrawn into one figure for 1..12 endpoints and back, and the size stays."""
    from kplab.viz.drawing import _STATES
    d = None
    size = None
    layout = None
    for n in list(range(1, 13)) + list(range(11, 0, -1)):
        rules = render(cluster, n).ruleset
        ref = viz.chain_tree(rules, "default/backend:http")
        d = viz.chain_tree(rules, "default/backend:http", into=d, capacity=12)
        assert d.text == ref.text
        assert d.alt == ref.alt
        assert d.data == ref.data
        assert d.table.equals(ref.table)
        assert d.png(72)[:8] == b"\x89PNG\r\n\x1a\n"
        st = _STATES[d.figure]
        if size is None:
            size, layout = tuple(d.figure.get_size_inches()), st.layout
        assert tuple(d.figure.get_size_inches()) == size
        assert st.layout == layout                                   # never laid out again
        labels = d.labels()
        assert sorted(l for l in labels if l.startswith("KUBE-SEP-")) == sorted(
            l for l in ref.labels() if l.startswith("KUBE-SEP-"))      # one box per endpoint, no more
        assert sorted(l for l in labels if l.startswith("p=") or l.endswith("%")) == sorted(
            l for l in ref.labels() if l.startswith("p=") or l.endswith("%"))
        assert len([l for l in labels if "DNAT to" in l]) == n


def test_fixed_capacity_with_a_trace(viz, rules10, service_trace, seed_rules):
    ref = viz.chain_tree(rules10, "default/backend:http", trace=service_trace)
    d = viz.chain_tree(rules10, "default/backend:http", capacity=4)
    d = viz.chain_tree(rules10, "default/backend:http", trace=service_trace, into=d, capacity=4)
    assert (d.text, d.alt, d.data) == (ref.text, ref.alt, ref.data)
    from kplab.viz.drawing import _STATES
    thick = [c for c, o in _STATES[d.figure].art["boxes"].items() if o.get_linewidth() > 2]
    assert len(thick) == 2
    # a deeper tree (KUBE-SERVICES) is drawn as without capacity, into the same figure
    ref = viz.chain_tree(seed_rules, "KUBE-SERVICES")
    d = viz.chain_tree(seed_rules, "KUBE-SERVICES", into=d, capacity=4)
    assert (d.text, d.alt, d.data) == (ref.text, ref.alt, ref.data)
    assert "KUBE-NODEPORTS" in d.labels()


def test_the_path_comes_back_after_a_chain_ends(viz):
    """FORWARD jumps to FROM-PODS, falls off its end, then jumps to TO-PODS, which decides."""
    import kplab
    rules = kplab.parse_rules("*filter\n:FORWARD DROP [0:0]\n:FROM-PODS - [0:0]\n:TO-PODS - [0:0]\n"
                              "-A FORWARD -j FROM-PODS\n-A FORWARD -j TO-PODS\n"
                              "-A FROM-PODS -s 10.244.1.7 -p udp -j DROP\n"
                              "-A TO-PODS -d 10.244.1.3 -p tcp --dport 8080 -j ACCEPT\nCOMMIT\n")
    trace = kplab.standard_node(rules).send_from("client", "10.244.1.3", "tcp", 8080)
    tree = viz.chain_tree(rules, "FORWARD", table="filter", trace=trace)
    assert tree.data["taken"] == [("FORWARD", 1), ("FORWARD", 2), ("TO-PODS", 1)]
    assert "Traced packet: FORWARD #1 → FORWARD #2 → TO-PODS #1." in tree.text
