"""kplab.kube.cluster: what the control plane makes of the objects, deterministically."""
import ipaddress
from pathlib import Path

import pytest

from kplab.errors import KplabError
from kplab.kube.cluster import DEFAULT_NODES, Cluster, ClusterError
from kplab.kube.manifests import ManifestError, loads
from kplab.kube.objects import (ContainerPort, Deployment, Endpoint, EndpointConditions, EndpointPort,
                                EndpointSlice, Node, Pod, ProxyConfig, Service, ServicePort)

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "data" / "clusters"


def cluster(name: str) -> Cluster:
    return Cluster.load(str(CLUSTERS / name))


def hostports(c: Cluster, spn: str) -> list:
    return [e.hostport for e in c.endpoints(spn)]


def conditions(c: Cluster, spn: str) -> dict:
    return {e.pod: (e.ready, e.serving, e.terminating) for e in c.endpoints(spn)}


BACKEND = Deployment("default", "backend", replicas=2, selector=(("app", "backend"),), labels=(("app", "backend"),),
                     ports=(ContainerPort(8080, "http"),))
BACKEND_SVC = Service("default", "backend", ports=(ServicePort(80, name="http", target_port="http"),),
                      cluster_ip="10.96.5.81", selector=(("app", "backend"),))


# ---------------------------------------------------------------- the seed and the lesson clusters

def test_seed_has_exactly_the_one_endpoint_of_the_course():
    c = cluster("seed.yaml")
    assert c.warnings == ()
    assert [(e.hostport, e.node, e.pod) for e in c.endpoints("default/backend:http")] == \
        [("10.244.1.3:8080", "node-1", "backend-6d8f7c9b4-x2vqk")]
    assert c.service("backend").cluster_ip == "10.96.5.81"
    # the given Pods are the Deployments' Pods: none is added
    assert [(p.name, p.node, p.ip, p.owner) for p in c.pods()] == [
        ("frontend-5c7d8b9f4-q7xkz", "node-1", "10.244.1.7", "frontend"),
        ("backend-6d8f7c9b4-x2vqk", "node-1", "10.244.1.3", "backend")]
    (s,) = c.slices()
    assert (s.namespace, s.service, s.address_type, s.ports) == \
        ("default", "backend", "IPv4", (EndpointPort(8080, "http", "TCP"),))
    assert s.endpoints == (Endpoint(("10.244.1.3",), EndpointConditions(True, True, False), "node-1",
                                    "backend-6d8f7c9b4-x2vqk"),)


def test_default_nodes_are_the_standard_node_and_its_peer():
    c = cluster("seed.yaml")
    assert c.nodes() == DEFAULT_NODES == (Node("node-1", "192.168.0.2", "10.244.1.0/24"),
                                          Node("node-2", "192.168.0.3", "10.244.2.0/24"))
    assert (c.service_cidr, c.cluster_cidr) == ("10.96.0.0/12", "10.244.0.0/16")


def test_nodeport_lesson_spreads_over_both_nodes():
    c = cluster("nodeport.yaml")
    s = c.service("web")
    assert (s.type, s.ports[0].node_port) == ("NodePort", 30080)
    assert s.cluster_ip == "10.96.250.98"               # allocated, and the same on every run
    assert [(e.hostport, e.node) for e in c.endpoints("default/web:http")] == \
        [("10.244.1.3:8080", "node-1"), ("10.244.2.5:8080", "node-2")]
    assert len(c.pods("web")) == 2


def test_etp_local_lesson():
    c = cluster("etp-local.yaml")
    s = c.service("web")
    assert (s.type, s.external_traffic_policy, s.health_check_node_port, s.ports[0].node_port) == \
        ("LoadBalancer", "Local", 32001, 30081)
    assert [i.ip for i in s.lb_ingress] == ["203.0.113.10"]
    assert [(e.hostport, e.node) for e in c.endpoints("default/web:http")] == [("10.244.2.5:8080", "node-2")]


def test_no_endpoints_lesson_has_only_unready_endpoints():
    c = cluster("no-endpoints.yaml")
    eps = c.endpoints("default/backend:http")
    assert [e.hostport for e in eps] == ["10.244.1.3:8080", "10.244.1.4:8080"]
    assert all((e.ready, e.serving, e.terminating) == (False, False, False) for e in eps)
    assert len(c.pods("backend")) == 2                    # not ready is still a replica: none added


def test_affinity_lesson():
    c = cluster("affinity.yaml")
    s = c.service("backend")
    assert (s.session_affinity, s.session_affinity_timeout) == ("ClientIP", 10800)
    assert hostports(c, "default/backend:http") == ["10.244.1.3:8080", "10.244.1.4:8080"]


# ---------------------------------------------------------------- proxy configuration per node

def test_proxy_config_per_node():
    c = cluster("seed.yaml")
    assert c.proxy_config("node-2") == ProxyConfig(node_name="node-2", node_ips=("192.168.0.3",),
                                                   cluster_cidr="10.244.0.0/16")
    assert c.proxy_config() == c.proxy_config("node-1")
    assert c.proxy_config("node-1", random_fully=False, nfacct=False).random_fully is False
    with pytest.raises(ClusterError, match=r"no node 'node-9' \(nodes: node-1, node-2\)"):
        c.proxy_config("node-9")


def test_proxy_config_from_a_kube_proxy_configuration():
    c = Cluster.load(str(CLUSTERS / "seed.yaml"), str(CLUSTERS / "kube-proxy-config.yaml"))
    assert c.proxy_config("node-1") == ProxyConfig(node_name="node-1", node_ips=("192.168.0.2",),
                                                   cluster_cidr="10.244.0.0/16")
    text = ("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
            "clusterCIDR: 10.244.0.0/16\ndetectLocalMode: NodeCIDR\niptables: {masqueradeAll: true}\n")
    c = Cluster.from_yaml(text)
    config = c.proxy_config("node-2")
    assert (config.cluster_cidr, config.masquerade_all, config.detect_local_mode) == ("10.244.2.0/24", True, "NodeCIDR")
    c = Cluster.from_yaml("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n")
    assert c.proxy_config("node-1").cluster_cidr is None and c.cluster_cidr == "10.244.0.0/16"


# ---------------------------------------------------------------- determinism and allocation

def test_same_input_same_cluster():
    for name in ("seed.yaml", "nodeport.yaml"):
        a, b = cluster(name).scale("backend" if name == "seed.yaml" else "web", 5), \
            cluster(name).scale("backend" if name == "seed.yaml" else "web", 5)
        assert (a.pods(), a.services(), a.slices()) == (b.pods(), b.services(), b.slices())


def test_cluster_ips_do_not_depend_on_order():
    services = [Service("default", f"svc{i}", ports=(ServicePort(80),)) for i in range(20)]
    forward = {s.key: s.cluster_ip for s in Cluster(services=services).services()}
    backward = {s.key: s.cluster_ip for s in Cluster(services=services[::-1]).services()}
    assert forward == backward
    net = ipaddress.ip_network("10.96.0.0/12")
    assert len(set(forward.values())) == 20
    for ip in forward.values():
        addr = ipaddress.ip_address(ip)
        assert addr in net and addr not in (net.network_address, net.network_address + 1, net.broadcast_address)


def test_allocation_skips_addresses_in_use():
    wanted = Cluster(services=[Service("default", "b", ports=(ServicePort(80),))]).service("b").cluster_ip
    taken = Service("default", "a", ports=(ServicePort(80),), cluster_ip=wanted)
    c = Cluster(services=[taken, Service("default", "b", ports=(ServicePort(80),))])
    assert c.service("a").cluster_ip == wanted
    assert ipaddress.ip_address(c.service("b").cluster_ip) == ipaddress.ip_address(wanted) + 1


def test_headless_and_external_name_services_get_no_cluster_ip():
    c = Cluster(services=[Service("default", "h", ports=(ServicePort(80),), cluster_ip="None"),
                          Service("default", "x", type="ExternalName")])
    assert [s.cluster_ip for s in c.services()] == ["None", None]


def test_node_ports_allocated_in_range_and_unique():
    ports = (ServicePort(80, name="http"), ServicePort(443, name="https"))
    c = Cluster(services=[Service("default", f"s{i}", ports=ports, type="NodePort") for i in range(30)] +
                [Service("default", "lb", ports=ports, type="LoadBalancer", external_traffic_policy="Local"),
                 Service("default", "lb2", ports=ports, type="LoadBalancer")])
    given = [p.node_port for s in c.services() for p in s.ports] + [c.service("lb").health_check_node_port]
    assert all(30000 <= p <= 32767 for p in given) and len(set(given)) == len(given) == 65
    assert c.service("lb2").health_check_node_port is None
    assert c.service("s3").ports == Cluster(services=[Service("default", "s3", ports=ports, type="NodePort")]) \
        .service("s3").ports


def test_load_balancer_without_node_ports():
    text = ("apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n"
            "  allocateLoadBalancerNodePorts: false\n  ports: [{port: 80}]\n")
    assert Cluster.from_yaml(text).service("lb").ports[0].node_port is None


def test_pod_ips_skip_network_gateway_and_given_addresses():
    one = (Node("n1", "192.168.0.2", "10.244.7.0/24"),)
    given = Pod("default", "given", labels=(("app", "backend"),), ip="10.244.7.2", node="n1")
    c = Cluster(deployments=[BACKEND.__class__(**{**BACKEND.__dict__, "replicas": 4})], pods=[given], nodes=one)
    assert [p.ip for p in c.pods()] == ["10.244.7.2", "10.244.7.3", "10.244.7.4", "10.244.7.5"]
    assert c.pods()[0].owner == "backend"                 # matched by labels: only 3 Pods were added


def test_nodes_without_pod_cidr_get_one_from_the_cluster_cidr():
    c = Cluster(nodes=[Node("a", "10.0.0.1"), Node("b", "10.0.0.2", "10.244.1.0/24"), Node("c", "10.0.0.3")])
    assert [n.pod_cidr for n in c.nodes()] == ["10.244.2.0/24", "10.244.1.0/24", "10.244.3.0/24"]


def test_given_nodes_replace_the_default_ones():
    text = ("apiVersion: v1\nkind: Node\nmetadata: {name: w1}\nspec: {podCIDR: 10.244.9.0/24}\n"
            "status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}\n---\n"
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: w1}\n")
    c = Cluster.from_yaml(text)
    assert [n.name for n in c.nodes()] == ["w1"]
    assert (c.pod("p").node, c.pod("p").ip) == ("w1", "10.244.9.2")
    assert c.proxy_config("w1").node_ips == ("172.18.0.2",)


# ---------------------------------------------------------------- scaling

def test_scale_up_keeps_existing_pods_and_spreads():
    c = cluster("seed.yaml")
    before = c.pods()
    up = c.scale("backend", 4)
    assert up.pods()[:2] == before
    new = up.pods()[2:]
    # fewest backend Pods first, then the emptier node (node-1 also runs the frontend), then node order
    assert [(p.node, p.ip) for p in new] == [("node-2", "10.244.2.2"), ("node-2", "10.244.2.3"),
                                             ("node-1", "10.244.1.2")]
    assert all(p.name.startswith("backend-6d8f7c9b4-") and p.owner == "backend" for p in new)
    assert all(dict(p.labels) == {"app": "backend", "pod-template-hash": "6d8f7c9b4"} for p in new)
    assert hostports(up, "default/backend:http") == ["10.244.1.2:8080", "10.244.1.3:8080", "10.244.2.2:8080",
                                                     "10.244.2.3:8080"]
    assert c.pods() == before                             # the original cluster did not change


def test_scale_down_removes_the_newest_and_keeps_the_rest():
    c = cluster("seed.yaml").scale("backend", 4)
    down = c.scale("backend", 2)
    assert down.pods() == c.pods()[:3]
    assert down.scale("backend", 3).pods()[:3] == down.pods()   # scaling again never moves a Pod


def test_scale_down_removes_unready_pods_first():
    c = cluster("seed.yaml").scale("backend", 3)
    victim = c.pods("backend")[1].name
    down = c.set_ready(victim, False).scale("backend", 2)
    assert victim not in [p.name for p in down.pods()]
    assert len(down.pods("backend")) == 2


def test_scale_to_zero_and_back():
    c = cluster("seed.yaml")
    zero = c.scale("backend", 0)
    assert zero.pods("backend") == () and zero.endpoints("default/backend:http") == ()
    (placeholder,) = zero.slices("backend")                # the controller keeps one empty slice
    assert (placeholder.endpoints, placeholder.ports) == ((), ())
    back = zero.scale("backend", 1)
    (p,) = back.pods("backend")
    assert p.name != "backend-6d8f7c9b4-x2vqk" and (p.node, p.ip) == ("node-2", "10.244.2.2")


def test_graceful_scale_down_leaves_terminating_pods():
    c = cluster("seed.yaml").scale("backend", 2)
    newest = c.pods("backend")[-1].name
    down = c.scale("backend", 1, graceful=True)
    assert down.pod(newest).terminating
    assert conditions(down, "default/backend:http")[newest] == (False, True, True)
    assert down.delete_pod(newest).pods("backend") == (c.pod("backend-6d8f7c9b4-x2vqk"),)


def test_scale_errors():
    c = cluster("seed.yaml")
    with pytest.raises(ClusterError, match="replicas must be a whole number, 0 or more"):
        c.scale("backend", -1)
    with pytest.raises(ClusterError, match=r"no Deployment 'nope' \(known: default/frontend, default/backend\)"):
        c.scale("nope", 1)
    assert isinstance(ClusterError("x"), KplabError)


def test_given_pods_beyond_replicas_are_kept_with_a_warning():
    text = (CLUSTERS / "affinity.yaml").read_text().replace("replicas: 2", "replicas: 1")
    c = Cluster.from_yaml(text, "a.yaml")
    assert len(c.pods("backend")) == 2
    assert c.warnings == ("a.yaml: document 1 (Deployment default/backend): replicas is 1 but 2 of its Pods are "
                          "given; all are kept",)


# ---------------------------------------------------------------- readiness and termination

def test_ready_and_terminating_conditions_in_slices():
    c = cluster("affinity.yaml")
    a, b = (p.name for p in c.pods("backend"))
    spn = "default/backend:http"
    assert conditions(c.set_ready(a, False), spn)[a] == (False, False, False)
    assert conditions(c.set_terminating(a), spn)[a] == (False, True, True)
    assert conditions(c.set_terminating(a).set_ready(a, False), spn)[a] == (False, False, True)
    assert conditions(c.set_ready(a, False).set_ready(a), spn)[a] == (True, True, False)
    assert conditions(c.set_terminating(a), spn)[b] == (True, True, False)
    s = c.set_terminating(a).slices("backend")[0]
    assert {e.target_pod: e.conditions for e in s.endpoints}[a] == EndpointConditions(False, True, True)


def test_terminating_pod_from_yaml():
    text = (CLUSTERS / "affinity.yaml").read_text().replace(
        "      name: backend-6d8f7c9b4-m8tfn\n",
        "      name: backend-6d8f7c9b4-m8tfn\n      deletionTimestamp: \"2025-06-01T12:00:00Z\"\n")
    c = Cluster.from_yaml(text)
    assert conditions(c, "default/backend:http")["backend-6d8f7c9b4-m8tfn"] == (False, True, True)
    # a ReplicaSet does not count a terminating Pod: a replacement was started
    assert len(c.pods("backend")) == 3


def test_publish_not_ready_addresses():
    text = (CLUSTERS / "no-endpoints.yaml").read_text().replace(
        "  clusterIP: 10.96.5.81\n", "  clusterIP: 10.96.5.81\n  publishNotReadyAddresses: true\n")
    c = Cluster.from_yaml(text)
    assert set(conditions(c, "default/backend:http").values()) == {(True, False, False)}


def test_delete_pod_is_replaced_like_kubernetes_does():
    c = cluster("seed.yaml")
    after = c.delete_pod("backend-6d8f7c9b4-x2vqk")
    (p,) = after.pods("backend")
    assert p.name != "backend-6d8f7c9b4-x2vqk" and p.ip not in ("10.244.1.3", "10.244.1.7")
    assert hostports(after, "default/backend:http") == [f"{p.ip}:8080"]
    gone = c.delete_pod("backend-6d8f7c9b4-x2vqk", replace=False)
    assert gone.pods("backend") == () and gone.deployment("backend").replicas == 0
    with pytest.raises(ClusterError, match="no Pod 'backend'"):
        c.delete_pod("backend")


# ---------------------------------------------------------------- ports

def test_named_target_port_resolves_per_pod():
    v1 = Deployment("default", "v1", replicas=1, selector=(("app", "web"), ("v", "1")),
                    labels=(("app", "web"), ("v", "1")), ports=(ContainerPort(8080, "http"),))
    v2 = Deployment("default", "v2", replicas=1, selector=(("app", "web"), ("v", "2")),
                    labels=(("app", "web"), ("v", "2")), ports=(ContainerPort(9090, "http"),))
    web = Service("default", "web", ports=(ServicePort(80, name="http", target_port="http"),
                                           ServicePort(81, name="direct", target_port=7000),
                                           ServicePort(82, name="same")),
                  selector=(("app", "web"),))
    c = Cluster(services=[web], deployments=[v1, v2])
    assert hostports(c, "default/web:http") == ["10.244.1.2:8080", "10.244.2.2:9090"]
    assert hostports(c, "default/web:direct") == ["10.244.1.2:7000", "10.244.2.2:7000"]
    assert hostports(c, "default/web:same") == ["10.244.1.2:82", "10.244.2.2:82"]
    assert len(c.slices("web")) == 2                       # different port numbers: different slices


def test_named_target_port_matches_the_protocol():
    dns = Deployment("kube-system", "dns", replicas=1, selector=(("k8s-app", "dns"),), labels=(("k8s-app", "dns"),),
                     ports=(ContainerPort(5353, "dns", "UDP"), ContainerPort(5354, "dns-tcp", "TCP")))
    svc = Service("kube-system", "dns", ports=(ServicePort(53, "UDP", "dns", "dns"),
                                               ServicePort(53, "TCP", "dns-tcp", "dns-tcp")),
                  cluster_ip="10.96.0.10", selector=(("k8s-app", "dns"),))
    c = Cluster(services=[svc], deployments=[dns])
    assert [(e.hostport, e.protocol) for e in c.endpoints("kube-system/dns:dns")] == [("10.244.1.2:5353", "UDP")]
    assert hostports(c, "kube-system/dns:dns-tcp") == ["10.244.1.2:5354"]
    bad = Service("kube-system", "dns2", ports=(ServicePort(53, "TCP", "dns", "dns"),), selector=(("k8s-app", "dns"),))
    with pytest.raises(ManifestError, match=r'no container port named "dns" \(TCP\)'):
        c.add_service(bad)


def test_pods_missing_a_named_port_get_no_such_port():
    with_port = Pod("default", "a", labels=(("app", "x"),), ports=(ContainerPort(8080, "http"),))
    without = Pod("default", "b", labels=(("app", "x"),))
    svc = Service("default", "x", ports=(ServicePort(80, name="http", target_port="http"),),
                  selector=(("app", "x"),))
    c = Cluster(services=[svc], pods=[with_port, without])
    assert hostports(c, "default/x:http") == ["10.244.1.2:8080"]
    assert sorted(len(s.ports) for s in c.slices("x")) == [0, 1]


def test_unknown_named_target_port_is_an_error_at_build():
    text = (CLUSTERS / "seed.yaml").read_text().replace("targetPort: http", "targetPort: htp")
    with pytest.raises(ManifestError) as info:
        Cluster.from_yaml(text, "seed.yaml")
    assert str(info.value) == ('seed.yaml:78: document 3 (Service default/backend): spec.ports[0].targetPort: no '
                               'container port named "htp" (TCP) in the Pods the selector app=backend selects '
                               '(they declare: http/TCP 8080) (name one of the ports the containers declare, or '
                               'give the port number)')


# ---------------------------------------------------------------- Services without endpoints, given slices

def test_selector_less_service_has_no_slices_and_no_endpoints():
    c = Cluster(services=[Service("default", "ext", ports=(ServicePort(80),), cluster_ip="10.96.0.40")])
    assert c.slices() == () and c.endpoints("default/ext") == ()


def test_selector_that_matches_nothing():
    c = Cluster(services=[Service("default", "x", ports=(ServicePort(80, name="p"),), selector=(("app", "none"),))])
    assert c.endpoints("default/x:p") == ()
    assert [len(s.endpoints) for s in c.slices()] == [0]


def test_given_slices_replace_derived_ones():
    given = EndpointSlice("default", "backend-manual", "backend",
                          endpoints=(Endpoint(("10.244.2.50",), EndpointConditions(ready=True)),),
                          ports=(EndpointPort(8080, "http"),))
    c = Cluster(services=[BACKEND_SVC], deployments=[BACKEND], slices=[given])
    assert c.slices() == (given,)
    assert hostports(c, "default/backend:http") == ["10.244.2.50:8080"]
    first = c.pods("backend")[0].name
    assert c.set_ready(first, False).slices() == (given,)       # given slices do not follow the Pods


def test_slice_for_a_missing_service_warns():
    text = """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ghost-1, labels: {kubernetes.io/service-name: ghost}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.3]}]
ports: [{port: 80}]
"""
    c = Cluster.from_yaml(text, "g.yaml")
    assert len(c.slices()) == 1
    assert c.warnings == ("g.yaml: document 1 (EndpointSlice default/ghost-1): names Service default/ghost, which "
                          "is not in the cluster",)


def test_more_than_100_endpoints_make_several_slices():
    c = Cluster(services=[BACKEND_SVC], deployments=[Deployment(**{**BACKEND.__dict__, "replicas": 250})])
    assert [len(s.endpoints) for s in c.slices("backend")] == [100, 100, 50]
    assert len({s.name for s in c.slices()}) == 3
    assert len(c.endpoints("default/backend:http")) == 250


# ---------------------------------------------------------------- ownership

def test_pods_match_deployments_by_owner_or_labels():
    # without ownerReferences, labels decide
    seed = (CLUSTERS / "seed.yaml").read_text()
    objects = seed[: seed.index("# kubectl get pods")]
    pods = ("apiVersion: v1\nkind: Pod\nmetadata: {name: f, labels: {app: frontend}}\nstatus: {podIP: 10.244.1.7}\n"
            "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, labels: {app: backend}}\n"
            "spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}\n"
            "status: {podIP: 10.244.1.3}\n")
    c = Cluster.from_yaml(objects + pods)
    assert [(p.name, p.owner, p.node) for p in c.pods()] == [("f", "frontend", "node-1"), ("b", "backend", "node-1")]
    assert hostports(c, "default/backend:http") == ["10.244.1.3:8080"]
    # a Pod a StatefulSet owns is not a Deployment's, even with matching labels
    foreign = Pod("default", "db-0", labels=(("app", "backend"),), ip="10.244.1.9", node="node-1")
    m = loads("apiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  labels: {app: backend}\n"
              "  ownerReferences: [{kind: StatefulSet, name: db}]\nstatus: {podIP: 10.244.1.9}\n")
    c = Cluster(m, deployments=[BACKEND])
    assert c.pod("db-0").owner is None and len(c.pods("backend")) == 2
    c = Cluster(deployments=[BACKEND], pods=[foreign])
    assert c.pod("db-0").owner == "backend" and len(c.pods("backend")) == 2


# ---------------------------------------------------------------- cluster-wide errors

def build_error(text: str, source="c.yaml") -> str:
    with pytest.raises(ManifestError) as info:
        Cluster.from_yaml(text, source)
    return str(info.value)


def service_doc(name: str, spec: str) -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n{spec}"


def test_duplicated_cluster_ip():
    text = service_doc("a", "  clusterIP: 10.96.0.10\n  ports: [{port: 53}]\n") + "---\n" + \
        service_doc("b", "  clusterIP: 10.96.0.10\n  ports: [{port: 53}]\n")
    assert build_error(text) == ("c.yaml:12: document 2 (Service default/b): spec.clusterIP: 10.96.0.10 is already "
                                 "the ClusterIP of Service default/a (c.yaml: document 1) (give each Service its "
                                 "own, or leave clusterIP out to have one allocated)")


def test_cluster_ip_outside_the_service_cidr():
    assert build_error(service_doc("a", "  clusterIP: 10.200.0.10\n  ports: [{port: 80}]\n")) == \
        ("c.yaml:5: document 1 (Service default/a): spec.clusterIP: 10.200.0.10 is outside the Service CIDR 10.96.0.0/12 "
         "(pick an address in it, or leave clusterIP out to have one allocated)")
    assert build_error(service_doc("a", "  clusterIP: 10.96.0.0\n  ports: [{port: 80}]\n")).endswith(
        "spec.clusterIP: 10.96.0.0 is the network address of the Service CIDR 10.96.0.0/12")
    c = Cluster.from_yaml(service_doc("a", "  clusterIP: 10.200.0.10\n  ports: [{port: 80}]\n"),
                          service_cidr="10.200.0.0/16")
    assert c.service("a").cluster_ip == "10.200.0.10"


def test_node_port_errors():
    assert build_error(service_doc("a", "  type: NodePort\n  ports: [{port: 80, nodePort: 8080}]\n")) == \
        ("c.yaml:6: document 1 (Service default/a): spec.ports[0].nodePort: 8080 is outside the NodePort range "
         "30000-32767 (pick a port in the range, or leave nodePort out to have one allocated)")
    text = service_doc("a", "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n") + "---\n" + \
        service_doc("b", "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n")
    assert build_error(text) == ("c.yaml:13: document 2 (Service default/b): spec.ports[0].nodePort: 30080 is already a "
                                 "node port of Service default/a (c.yaml: document 1) (give each Service its own, "
                                 "or leave nodePort out to have one allocated)")
    both = service_doc("dns", "  type: NodePort\n  ports: [{name: u, port: 53, protocol: UDP, nodePort: 30053}, "
                              "{name: t, port: 53, protocol: TCP, nodePort: 30053}]\n")
    assert [p.node_port for p in Cluster.from_yaml(both).service("dns").ports] == [30053, 30053]


def test_pod_on_an_unknown_node_and_duplicate_pod_ips():
    assert build_error("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: kind-worker}\n") == \
        ('c.yaml:4: document 1 (Pod default/p): spec.nodeName: node "kind-worker" is not in this cluster '
         '(nodes: node-1, node-2) (add a Node object for it)')
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.1.5}\n---\n" \
           "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nstatus: {podIP: 10.244.1.5}\n"
    assert build_error(text) == ("c.yaml:9: document 2 (Pod default/b): status.podIP: 10.244.1.5 is already the IP of "
                                 "Pod default/a")


def test_programmatic_objects_are_named_without_a_file():
    svc = Service("default", "a", ports=(ServicePort(80),), cluster_ip="10.1.2.3")
    with pytest.raises(ManifestError) as info:
        Cluster(services=[svc])
    assert str(info.value) == ("Service default/a: spec.clusterIP: 10.1.2.3 is outside the Service CIDR 10.96.0.0/12 "
                               "(pick an address in it, or leave clusterIP out to have one allocated)")


# ---------------------------------------------------------------- the API around it

def test_add_and_remove_services():
    c = cluster("seed.yaml")
    web = Service("default", "web", type="NodePort", ports=(ServicePort(80, name="http", target_port="http"),),
                  selector=(("app", "frontend"),))
    added = c.add_service(web)
    s = added.service("web")
    assert s.cluster_ip and 30000 <= s.ports[0].node_port <= 32767
    assert hostports(added, "default/web:http") == ["10.244.1.7:80"]
    assert c.services() == (c.service("backend"),)        # unchanged
    assert added.service("backend") == c.service("backend")
    with pytest.raises(ManifestError, match="Service default/web is defined twice"):
        added.add_service(web)
    assert added.remove_service("web").services() == c.services()
    assert added.remove_service("web").slices() == c.slices()


def test_add_deployment_and_pod():
    c = cluster("seed.yaml").add_deployment(Deployment("default", "cache", replicas=2, selector=(("app", "cache"),),
                                                        labels=(("app", "cache"),)))
    assert [(p.node, p.ip) for p in c.pods("cache")] == [("node-2", "10.244.2.2"), ("node-1", "10.244.1.2")]
    c = c.add_pod(Pod("default", "debug", ip="10.244.2.77"))
    assert c.pod("debug").node == "node-2"                 # the node whose Pod CIDR holds its IP


def test_lookup_by_short_name_and_namespace():
    a = Service("shop", "web", ports=(ServicePort(80),))
    b = Service("blog", "web", ports=(ServicePort(80),))
    c = Cluster(services=[a, b])
    assert c.service("shop/web").namespace == "shop"
    with pytest.raises(ClusterError, match=r"Service 'web' is in several namespaces \(shop/web, blog/web\)"):
        c.service("web")
    assert c.service(a).key == "shop/web"


def test_endpoint_lookup_errors():
    c = cluster("seed.yaml")
    with pytest.raises(ClusterError, match=r"Service default/backend has no port 'https' \(its ports: "
                                           r"default/backend:http\)"):
        c.endpoints("default/backend:https")
    assert hostports(c, "backend") == ["10.244.1.3:8080"]       # the only port, by the Service's name
    assert c.origin("Service", "default/backend").endswith("seed.yaml: document 3 (Service default/backend)")
