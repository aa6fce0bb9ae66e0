"""`kplab.kube.synth`: synthetic clusters that load, render and explain as promised.

The YAML `List` is read back with kplab's own manifest loader (PyYAML), the
rules kube-proxy would write are rendered and read back with `explain`, and
the shortcut `synth_cluster` (no YAML) must give the same cluster.
"""
from __future__ import annotations

from collections import Counter

import pytest
import yaml

from kplab.kube.cluster import Cluster
from kplab.kube.explain import explain
from kplab.kube.manifests import loads
from kplab.kube.proxier import render
from kplab.kube.synth import (MAX_ENDPOINTS, MAX_NODES, MAX_SERVICES, SynthError, dump, quote, synth,
                              synth_cluster, synth_yaml)


def rules_of(cluster, node="node-1"):
    return render(cluster.services(), cluster.slices(), cluster.proxy_config(node)).ruleset


@pytest.mark.parametrize("n, m, k", [(7, 3, 2), (12, 1, 3), (5, 150, 2)])
def test_round_trip_uniform(n, m, k):
    text = synth_yaml(n, m, nodes=k, seed=3)
    found = loads(text, "synth.yaml")
    assert not found.warnings
    assert len(found.services) == n and len(found.nodes) == k
    assert all(s.type == "ClusterIP" for s in found.services)
    cluster = Cluster(found)
    assert not cluster.warnings
    views = explain(rules_of(cluster))
    assert len(views) == n
    for v in views:
        assert len(v.endpoints) == m, v.name
        assert v.no_endpoints is None
        assert abs(sum(e.probability for e in v.endpoints) - 1) < 1e-6
    # every endpoint is ready, on one of the K nodes, at most 100 to a slice
    eps = [e for s in cluster.slices() for e in s.endpoints]
    assert len(eps) == n * m and all(e.conditions.ready for e in eps)
    assert {e.node_name for e in eps} == {f"node-{i}" for i in range(1, k + 1)} if n * m >= k else True
    assert max(len(s.endpoints) for s in cluster.slices()) <= 100


def test_yaml_and_direct_cluster_agree():
    for mixed in (False, True):
        text = synth_yaml(30, 4, nodes=3, seed=9, mixed=mixed)
        a = Cluster.from_yaml(text)
        b = synth_cluster(30, 4, nodes=3, seed=9, mixed=mixed)
        assert a.services() == b.services()
        assert a.slices() == b.slices()
        assert a.nodes() == b.nodes()


def test_list_shape_is_what_kubectl_prints():
    doc = yaml.safe_load(synth_yaml(2, 2))
    assert list(doc) == ["apiVersion", "items", "kind", "metadata"]          # kubectl sorts keys
    assert doc["kind"] == "List" and doc["apiVersion"] == "v1"
    kinds = [i["kind"] for i in doc["items"]]
    assert kinds == ["Node", "Node", "Service", "Service", "EndpointSlice", "EndpointSlice"]
    svc = doc["items"][2]
    assert svc["spec"]["clusterIP"] == svc["spec"]["clusterIPs"][0]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    sl = doc["items"][4]
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == svc["metadata"]["name"]
    assert sl["endpoints"][0]["conditions"] == {"ready": True, "serving": True, "terminating": False}


def test_standard_nodes_by_default():
    s = synth(3, 2)
    assert [(n.name, n.ip, n.pod_cidr) for n in s.nodes] == [("node-1", "192.168.0.2", "10.244.1.0/24"),
                                                            ("node-2", "192.168.0.3", "10.244.2.0/24")]


def test_addresses_are_unique_while_the_cluster_cidr_lasts():
    s = synth(2000, 5)
    cips = [x.cluster_ip for x in s.services]
    assert len(set(cips)) == len(cips)
    assert not {"10.96.0.0", "10.96.0.1", "10.111.255.255"} & set(cips)
    ips = [e.addresses[0] for sl in s.slices for e in sl.endpoints]
    assert len(set(ips)) == len(ips) == 10000
    # past the /16 addresses repeat across Services, never inside one
    for sl in synth(20, 1000, nodes=1).slices:
        ips = [e.addresses[0] for e in sl.endpoints]
        assert len(set(ips)) == len(ips)


def test_mixed_has_every_type_and_services_without_endpoints():
    s = synth(60, 4, seed=2, mixed=True)
    types = Counter(x.type for x in s.services)
    assert set(types) == {"ClusterIP", "NodePort", "LoadBalancer"}
    assert types["ClusterIP"] > types["NodePort"] >= 1 and types["LoadBalancer"] >= 1
    assert s.services[0].key == "kube-system/kube-dns" and s.services[0].cluster_ip == "10.96.0.10"
    per_service = Counter()
    for sl in s.slices:
        per_service[(sl.namespace, sl.service)] += sum(1 for e in sl.endpoints if e.conditions.ready)
    counts = [per_service[(x.namespace, x.name)] for x in s.services]
    assert 0 in counts and max(counts) <= 8 and min(c for c in counts if c) >= 1
    assert any(p.name for x in s.services for p in x.ports)
    assert all(p.name for x in s.services for p in x.ports if len(x.ports) > 1)
    assert any(isinstance(p.target_port, str) for x in s.services for p in x.ports)
    cluster = s.cluster()
    views = explain(rules_of(cluster))
    assert any(v.no_endpoints == "REJECT" for v in views)
    assert any(v.node_port for v in views) and any(v.load_balancer_ips for v in views)
    # every service port is in the rules
    assert len(views) == sum(len(x.ports) for x in s.services)


def test_small_mixed_clusters_still_mix():
    assert {x.type for x in synth(3, 2, mixed=True).services} == {"ClusterIP", "NodePort", "LoadBalancer"}
    s = synth(4, 2, mixed=True)
    assert any(not sl.endpoints for sl in s.slices)
    assert not synth(0, 5, mixed=True).services


@pytest.mark.parametrize("mixed", [False, True])
def test_same_seed_same_text_other_seed_other_text(mixed):
    a = synth_yaml(25, 3, seed=5, mixed=mixed)
    assert synth_yaml(25, 3, seed=5, mixed=mixed) == a
    assert synth_yaml(25, 3, seed=6, mixed=mixed) != a


@pytest.mark.parametrize("args, words", [
    ((-1, 5), "--services -1: must be 0 or more"),
    ((MAX_SERVICES + 1, 5), f"at most {MAX_SERVICES}"),
    ((3, -2), "--endpoints -2"),
    ((3, MAX_ENDPOINTS + 1), "--endpoints"),
    ((3, 2, 0), "--nodes 0"),
    ((3, 2, MAX_NODES + 1), "--nodes"),
    (("3", 2), "whole number"),
    ((3.5, 2), "whole number"),
    ((True, 2), "whole number"),
])
def test_bad_arguments(args, words):
    with pytest.raises(SynthError) as info:
        synth(*args)
    assert words in str(info.value)


def test_many_nodes_get_smaller_pod_cidrs():
    s = synth(50, 2, nodes=300)
    assert len(s.nodes) == 300 and len({n.pod_cidr for n in s.nodes}) == 300
    assert s.nodes[-1].ip == "192.168.1.45"
    Cluster(nodes=s.nodes)                    # no overlapping Pod CIDRs


# --------------------------------------------------------------------------- the YAML writer

NASTY = ["", "yes", "No", "on", "null", "~", "true", "1", "0x1f", "1e3", "3.14", "10.96", "1:30", "-x", "- x",
         "a: b", "#c", "x #y", "'q'", '"dq"', "back\\slash", "tab\there", "new\nline", "ünï", "€", "😀", " lead",
         "trail ", "*alias", "&anchor", "!tag", "%pct", "@at", "`tick", "{a}", "[b]", "a,b", "?", "|", ">",
         "2024-01-01", ".inf", "-.nan", "0o17", "=", "<<", "\x00\x01", "\u2028", "\ufeff"]


@pytest.mark.parametrize("text", NASTY)
def test_every_string_reads_back_as_itself(text):
    assert yaml.safe_load(f"k: {quote(text)}\n") == {"k": text}
    assert yaml.safe_load(dump({text: [text, {text: text}]})) == {text: [text, {text: text}]}


def test_plain_where_kubectl_is_plain():
    for text in ("node-1", "10.244.1.0/24", "192.168.0.2", "kubernetes.io/service-name", "ClusterIP", "TCP"):
        assert quote(text) == text


def test_dump_values():
    value = {"b": [1, {"x": None, "y": True}, [], {}], "a": {"n": -3, "f": 0.5, "s": "yes"}, "e": []}
    assert yaml.safe_load(dump(value)) == value
    assert dump(value).splitlines()[0] == "a:"
