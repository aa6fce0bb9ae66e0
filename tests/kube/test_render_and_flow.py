"""`kplab render` and `kplab explain` on the lesson clusters, and the
multi-node Pod-to-Service flow."""
import io
import json
from pathlib import Path

import pytest

from kplab.cli import main
from kplab.kube.cluster import Cluster
from kplab.kube.flow import ClusterNetwork, FlowError

DATA = Path(__file__).resolve().parent.parent.parent / "data"
CLUSTERS = sorted(p for p in (DATA / "clusters").glob("*.yaml") if p.stem != "kube-proxy-config")


def run(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.mark.parametrize("path", CLUSTERS, ids=[p.stem for p in CLUSTERS])
def test_saved_dump_is_the_render(path):
    """Each lesson cluster's dump beside it is exactly what render prints now."""
    rc, text = run("render", "--cluster", str(path), "--node", "node-1")
    assert rc == 0
    assert text == path.with_suffix(".node-1.rules").read_text()


def test_seed_render_is_the_seed_rules():
    rc, text = run("render", "--cluster", str(DATA / "clusters" / "seed.yaml"), "--node", "node-1")
    want = "".join(l for l in (DATA / "rules" / "seed-node.rules").read_text().splitlines(True)
                   if not l.startswith("#"))
    assert text == want


def test_render_restore_format_and_options():
    seed = str(DATA / "clusters" / "seed.yaml")
    rc, text = run("render", "--cluster", seed, "--node", "node-1", "--format", "restore", "--no-random-fully",
                   "--no-nfacct")
    assert rc == 0 and text.startswith("*filter\n")
    assert "--random-fully" not in text and "nfacct" not in text
    assert "-j MARK --or-mark 0x00004000" in text           # kube-proxy's %#08x form
    rc, text = run("render", "--cluster", seed, "--node", "node-1", "--config",
                   str(DATA / "clusters" / "kube-proxy-config.yaml"))
    assert rc == 0


@pytest.mark.parametrize("argv, words", [
    (["render", "--cluster", "seed.yaml", "--node", "node-1"], ["seed.yaml"]),
    (["render", "--cluster", str(DATA / "clusters" / "seed.yaml"), "--node", "node-9"], ["no node 'node-9'"]),
    (["render", "--cluster", str(DATA / "clusters" / "seed.yaml"), "--node", "node-1", "--node-ip", "x"],
     ["--node-ip"]),
])
def test_render_errors(argv, words, capsys):
    rc, _ = run(*argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("kplab: error:")
    assert all(w in err for w in words)


def test_explain_json_contract():
    rc, text = run("explain", "--rules", str(DATA / "clusters" / "nodeport.node-1.rules"), "--json")
    (svc,) = json.loads(text)["services"]
    assert {k: svc[k] for k in ("name", "protocol", "port", "node_port", "no_endpoints")} == {
        "name": "default/web:http", "protocol": "tcp", "port": 80, "node_port": 30080, "no_endpoints": None}
    assert [e["address"] for e in svc["endpoints"]] == ["10.244.1.3:8080", "10.244.2.5:8080"]
    assert sum(e["probability"] for e in svc["endpoints"]) == pytest.approx(1.0, abs=1e-9)


def test_explain_no_endpoints():
    rc, text = run("explain", "--rules", str(DATA / "clusters" / "no-endpoints.node-1.rules"), "--json")
    (svc,) = json.loads(text)["services"]
    assert svc["no_endpoints"] == "REJECT" and svc["endpoints"] == []


# --------------------------------------------------------------------------
# The flow across nodes

def frontend(cluster):
    return next(p.name for p in cluster.pods() if p.name.startswith("frontend"))


def test_seed_journey_and_reply():
    c = Cluster.load(str(DATA / "clusters" / "seed.yaml"))
    net = ClusterNetwork(c)
    j = net.send(frontend(c), "backend")
    assert j.verdict == "ACCEPT" and j.delivered_to.startswith("backend-")
    assert (j.final.dst, j.final.dport) == ("10.244.1.3", 8080)
    assert j.changes() == ["on node-1: destination 10.96.5.81:80 -> 10.244.1.3:8080 (DNAT)"]
    r = net.reply(j)
    assert r.delivered_to == frontend(c) and (r.final.src, r.final.sport) == ("10.96.5.81", 80)


def test_cross_node_service_and_reply():
    c = Cluster.load(str(DATA / "clusters" / "seed.yaml")).scale("backend", 3)
    net = ClusterNetwork(c, seed=1)
    remote = {p.ip for p in c.pods() if p.node == "node-2"}
    for sport in range(41000, 41040):
        j = net.send(frontend(c), "default/backend:http", sport=sport)
        if j.final.dst in remote:
            break
    else:
        pytest.fail("no connection chose a backend on node-2 in 40 tries")
    assert [h.node for h in j.hops] == ["node-1", None, "node-2"]
    r = net.reply(j)
    assert [h.node for h in r.hops] == ["node-2", None, "node-1"]
    assert r.delivered_to == frontend(c) and r.final.src == "10.96.5.81"


def test_nodeport_from_outside_is_masqueraded_and_answered():
    c = Cluster.load(str(DATA / "clusters" / "nodeport.yaml"))
    net = ClusterNetwork(c)
    seen = set()
    for sport in range(42000, 42020):
        j = net.send("external", "192.168.0.2:30080", sport=sport)
        assert j.verdict == "ACCEPT"
        # externalTrafficPolicy Cluster masquerades, to the address of the
        # interface the packet leaves node-1 by: the Pod veth's gateway for a
        # local endpoint, eth0's for one on node-2
        assert j.final.src == ("10.244.1.1" if j.final.dst == "10.244.1.3" else "192.168.0.2")
        seen.add(j.final.dst)
        r = net.reply(j)
        assert r.delivered_to == "external" and (r.final.src, r.final.sport) == ("192.168.0.2", 30080)
    assert seen == {"10.244.1.3", "10.244.2.5"}


def test_etp_local_keeps_the_client_address_or_drops():
    c = Cluster.load(str(DATA / "clusters" / "etp-local.yaml"))
    net = ClusterNetwork(c)
    svc = c.services()[0]
    node_port = svc.ports[0].node_port
    local = net.send("external", f"192.168.0.3:{node_port}")      # node-2 has the endpoint
    assert local.verdict == "ACCEPT" and local.final.src == "198.51.100.10"
    remote = net.send("external", f"192.168.0.2:{node_port}")     # node-1 has none
    assert remote.verdict == "DROP"


def test_existing_connection_survives_scale_down():
    """conntrack keeps an open connection on its backend after the rules change."""
    c = Cluster.load(str(DATA / "clusters" / "seed.yaml")).scale("backend", 2)
    net = ClusterNetwork(c)
    j = net.send(frontend(c), "backend", sport=43000)
    chosen = j.final.dst
    keep = next(p.name for p in c.pods() if p.ip != chosen and p.name.startswith("backend"))
    gone = next(p.name for p in c.pods() if p.ip == chosen)
    net.update(c.delete_pod(gone, replace=False))
    again = net.send(frontend(c), "backend", sport=43000)       # same 5-tuple: same connection
    assert again.final.dst == chosen
    new = net.send(frontend(c), "backend", sport=43001)
    assert new.final.dst == c.pod(keep).ip


@pytest.mark.parametrize("to", ["nosuchservice", "10.96.5.81:99999", "default/backend:grpc"])
def test_bad_destinations(to):
    c = Cluster.load(str(DATA / "clusters" / "seed.yaml"))
    with pytest.raises(FlowError):
        ClusterNetwork(c).send(frontend(c), to)


def test_cluster_send_keeps_conntrack_for_the_reply():
    c = Cluster.load(str(DATA / "clusters" / "seed.yaml"))
    j = c.send(frontend(c), "backend")
    assert c.reply(j).final.src == "10.96.5.81"


def test_a_changed_cluster_sends_through_its_own_rules_not_its_parents():
    from pathlib import Path

    from kplab.kube.cluster import Cluster
    seed = Cluster.load(str(Path(__file__).resolve().parents[2] / "data" / "clusters" / "seed.yaml"))
    first = seed.send("frontend-5c7d8b9f4-q7xkz", "backend")
    two = seed.scale("backend", 2)
    ready_pod = first.delivered_to
    one_left = two.set_ready(ready_pod, False)
    assert one_left.network() is not seed.network()
    assert one_left.send("frontend-5c7d8b9f4-q7xkz", "backend").delivered_to not in (None, ready_pod)


def test_external_to_a_load_balancer_ip_goes_via_the_node_the_balancer_picks():
    from pathlib import Path

    import pytest

    from kplab.kube.cluster import Cluster
    from kplab.kube.flow import FlowError
    c = Cluster.load(str(Path(__file__).resolve().parents[2] / "data" / "clusters" / "etp-local.yaml"))
    with pytest.raises(FlowError, match="via='node-1'"):
        c.send("external", "203.0.113.10", "tcp", 80)
    assert c.send("external", "203.0.113.10", "tcp", 80, via="node-1").verdict == "DROP"   # Local, no endpoint
    j = c.send("external", "203.0.113.10", "tcp", 80, via="node-2")
    assert j.verdict == "ACCEPT" and j.delivered_to.startswith("web-")
    with pytest.raises(FlowError, match="not a node"):
        c.send("external", "203.0.113.10", "tcp", 80, via="node-9")
