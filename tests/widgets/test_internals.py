"""The pieces under the widgets: the incremental renderer, odds, helpers, the viz adapter."""
import pytest


def test_incremental_ruleset_equals_a_full_parse(kw, seed_cluster):
    """ServiceLab's renderer reuses the Rules of unchanged lines; the Ruleset must be
    exactly what parsing the node's dump gives, change after change."""
    from kplab.kube.flow import ClusterNetwork
    from kplab.netfilter import parse
    from kplab.widgets.service_lab import _Renderer
    c = seed_cluster
    steps = [c.scale("backend", 4), c.scale("backend", 2), c.set_ready(c.pods("backend")[0].name, False),
             c.scale("backend", 0), c.set_terminating(c.pods("backend")[0].name), c]
    renderer = _Renderer()
    net = ClusterNetwork(c, renderer=renderer)
    for cluster in steps:
        net.update(cluster)
        for name, rendered in net.rendered.items():
            assert "ruleset" in rendered.__dict__                     # built by the renderer, not parsed
            assert rendered.ruleset == parse(rendered.state_text, source="kube-proxy", family=4), name
    before = net.rendered["node-1"]
    net.update(steps[-1])
    assert net.rendered["node-1"] is before                           # unchanged cluster: not rendered again


def test_endpoint_odds(kw, seed_cluster):
    from kplab.kube.proxier import render
    from kplab.widgets.service_lab import endpoint_odds
    c = seed_cluster.scale("backend", 4)
    r = render(c.services(), c.slices(), c.proxy_config("node-1"))
    chain = r.decisions["default/backend:http"].internal_policy_chain
    odds = endpoint_odds(r.ruleset, chain)
    assert len(odds) == 4 and all(p == pytest.approx(0.25, abs=1e-9) for p in odds.values())
    assert endpoint_odds(r.ruleset, "KUBE-SVC-NOSUCHCHAIN") == {}


@pytest.mark.parametrize("value, want", [(3, 3), ("4", 4), (" 5 ", 5), ("-2", -2), (2.0, 2), (2.5, None),
                                         (True, None), (None, None), ("x", None), ("", None)])
def test_as_int(kw, value, want):
    from kplab.widgets._base import as_int
    assert as_int(value) == want


@pytest.mark.parametrize("text, want", [("", (None, "")), ("80", (80, "")), (443, (443, "")),
                                        ("70000", (None, "port 70000 is out of range (1-65535)")),
                                        ("0", (None, "port 0 is out of range (1-65535)"))])
def test_check_port(kw, text, want):
    from kplab.widgets.packet_builder import check_port
    assert check_port(text) == want


def test_field_messages_carry_a_mark_not_only_colour(kw):
    import ipywidgets as W
    from kplab.widgets._base import Field
    f = Field(W.Text(), "port")
    f.set("bad port")
    assert "✗ bad port" in f.msg.value and 'role="alert"' in f.msg.value and f.error == "bad port"
    f.set("just so you know", "info")
    assert "ℹ" in f.msg.value and f.error == ""
    f.clear()
    assert f.msg.value == ""


def test_viz_adapter_contract(kw, seed_rules):
    """Whatever draws them (kplab.viz or the fallback), drawings have the Drawing contract
    and redraw into the Drawing they are given."""
    import kplab
    from kplab.widgets import _viz
    node = kplab.standard_node(kplab.parse_rules(seed_rules))
    trace = node.send_from("client", "10.96.5.81", "tcp", 80)
    a = _viz.hook_map(trace, step=1)
    b = _viz.hook_map(trace, step=2, into=a)
    assert b.figure is a.figure and b.text and isinstance(b.alt, str)
    t = _viz.chain_tree(node.ruleset, "KUBE-SVC-POOGYJBNEVT3HFAO")
    assert "KUBE-SEP-YOPU36KEXISEYTYN" in t.text
    p = _viz.probabilities(node.ruleset, "default/backend:http")
    assert p.figure is not None and "1" in p.text
    j = _viz.journey(trace)
    assert j.text
