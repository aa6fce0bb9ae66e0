"""journey: swim lanes for one node's Trace and for a Journey across nodes."""
import re

import pytest

from tests.viz.conftest import PATHS, hook_lines, hooks_of, off_palette

IDS = [p[0] for p in PATHS]


@pytest.mark.parametrize("name", IDS)
def test_single_trace(viz, path_traces, name):
    trace = path_traces[name]
    d = viz.journey(trace)
    assert hook_lines(d.text) == hooks_of(trace)
    labels = d.labels()
    for h in hooks_of(trace):
        assert h in labels
    lanes = d.data["lanes"]
    assert len(lanes) == 3
    assert lanes[0] == ("node (local process)" if name == "local-out" else "client")
    assert lanes[-1].strip() == ("node (local process)" if name == "local-in" else "remote1")
    numbered = [l for l in d.text.splitlines() if re.match(r"^\d+\. ", l)]
    assert len(numbered) == len(d.data["events"])
    assert [str(i) for i in range(1, len(numbered) + 1)] == [t for t in labels if t.isdigit()]
    assert "No address changes on the way." in d.text
    assert not off_palette(d.figure, viz)


def test_service_trace_shows_the_dnat(viz, service_trace):
    d = viz.journey(service_trace)
    assert any(l.startswith("PREROUTING: DNAT: destination 10.96.5.81:80 → ") for l in d.data["changes"])
    assert any("DNAT" in t and service_trace.dnat_to in t for t in d.labels())
    assert ("⇄ DNAT" in "\n".join(d.labels()))


@pytest.fixture(scope="module")
def crossing(cluster):
    """A first packet from the frontend Pod that the Service sends to a Pod on node-2, and its reply."""
    net = cluster.scale("backend", 10).network(seed=7)
    for sport in range(41000, 41050):
        j = net.send("frontend-5c7d8b9f4-q7xkz", "default/backend:http", sport=sport)
        if len([h for h in j.hops if h.node]) == 2:
            return j, net.reply(j)
    pytest.fail("no endpoint on node-2 in 50 tries")


def test_journey_across_nodes(viz, crossing):
    j, _ = crossing
    d = viz.journey(j)
    assert d.data["lanes"] == ["frontend-5c7d8b9f4-q7xkz", "node-1", "wire", "node-2", j.delivered_to]
    per_node = {}
    for line in d.text.splitlines():
        m = re.match(r"^\d+\. (node-\d) (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING):", line)
        if m:
            per_node.setdefault(m.group(1), []).append(m.group(2))
    for h in j.hops:
        if h.node:
            assert per_node[h.node] == hooks_of(h.trace)
    assert any(l.startswith("6. wire: node-1 eth0 -> node-2 eth0") for l in d.text.splitlines())
    assert j.changes()[0] in d.text
    assert "across node-1, node-2" in d.alt
    assert not off_palette(d.figure, viz)


def test_reply_shows_conntrack_reversal(viz, crossing):
    j, reply = crossing
    d1 = viz.journey(j)
    d = viz.journey(reply, into=d1)
    assert d.figure is d1.figure
    assert d.data["lanes"][0] == j.delivered_to and d.data["lanes"][-1] == "frontend-5c7d8b9f4-q7xkz"
    assert any(role == "conntrack" for _, _, role in d.data["events"])
    assert "conntrack reverses the translation" in d.text
    assert any(t.startswith("↺ conntrack") for t in d.labels())


def test_rejects_other_objects(viz):
    with pytest.raises(viz.VizError):
        viz.journey("not a trace")
