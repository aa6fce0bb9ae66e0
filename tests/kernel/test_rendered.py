"""The rules `kplab render` writes for the lesson clusters, loaded into the
real kernel, behave as kplab predicts (and iptables-save prints them back as
kplab saved them)."""
from pathlib import Path

import pytest

from kplab.kernelcheck.differential import run_case
from kplab.kernelcheck.generate import Case, PacketSpec
from kplab.kube.cluster import Cluster

DATA = Path(__file__).resolve().parent.parent.parent / "data" / "clusters"
CLUSTERS = sorted(p for p in DATA.glob("*.yaml") if p.stem != "kube-proxy-config")


def _packets(cluster):
    """What a lesson sends: from the standard node's Pods, the node, the peer
    and an external host, to every Service's ClusterIP port and NodePort."""
    out = []
    for svc in cluster.services():
        for sp in svc.ports:
            proto = sp.protocol.lower()
            if svc.cluster_ip and svc.cluster_ip != "None":
                out += [PacketSpec("client", proto, svc.cluster_ip, sp.port),
                        PacketSpec("node", proto, svc.cluster_ip, sp.port)]
            if sp.node_port:
                out += [PacketSpec("external", proto, "192.168.0.2", sp.node_port),
                        PacketSpec("client", proto, "192.168.0.2", sp.node_port)]
    return tuple(out[:12])


@pytest.mark.parametrize("path", CLUSTERS, ids=[p.stem for p in CLUSTERS])
def test_rendered_rules_behave_in_the_kernel(lab, path):
    cluster = Cluster.load(str(path))
    case = Case(f"render {path.name}", path.with_suffix(".node-1.rules").read_text(), _packets(cluster))
    res = run_case(lab, case)
    assert res.ok, "\n" + res.report()
    assert res.comparisons, "no packet was compared"
