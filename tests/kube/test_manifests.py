"""kplab.kube.manifests: Kubernetes YAML as people have it, and errors that say where."""
from pathlib import Path

import pytest

from kplab.errors import KplabError
from kplab.kube.manifests import ManifestError, Manifests, load, load_proxy_config, loads, merge
from kplab.kube.objects import (ContainerPort, EndpointConditions, EndpointPort, LoadBalancerIngress, Node,
                                ProxyConfig, ServicePort)

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "data" / "clusters"
DATA_FILES = sorted(CLUSTERS.glob("*.yaml"))


def error(text, source="test.yaml") -> ManifestError:
    with pytest.raises(ManifestError) as info:
        loads(text, source=source)
    return info.value


def svc(spec: str, name="backend", extra="") -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{extra}spec:\n{spec}"


# ---------------------------------------------------------------- the data files

def test_data_folder_has_the_lesson_clusters():
    names = {p.name for p in DATA_FILES}
    assert {"seed.yaml", "nodeport.yaml", "etp-local.yaml", "no-endpoints.yaml", "affinity.yaml",
            "kube-proxy-config.yaml"} <= names


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.name)
def test_each_data_file_loads_without_warnings(path):
    m = load(str(path))
    assert m.warnings == ()
    assert len(m) > 0


def test_seed_reads_as_written():
    m = load(str(CLUSTERS / "seed.yaml"))
    assert [d.name for d in m.deployments] == ["frontend", "backend"]
    backend = m.deployments[1]
    assert (backend.replicas, backend.selector, backend.labels) == (1, (("app", "backend"),), (("app", "backend"),))
    assert backend.ports == (ContainerPort(8080, "http", "TCP"),)
    (service,) = m.services
    assert (service.key, service.type, service.cluster_ip, service.selector) == \
        ("default/backend", "ClusterIP", "10.96.5.81", (("app", "backend"),))
    assert service.ports == (ServicePort(port=80, protocol="TCP", name="http", target_port="http"),)
    pods = {p.name: p for p in m.pods}
    assert set(pods) == {"frontend-5c7d8b9f4-q7xkz", "backend-6d8f7c9b4-x2vqk"}
    b = pods["backend-6d8f7c9b4-x2vqk"]
    assert (b.ip, b.node, b.ready, b.terminating, b.owner) == ("10.244.1.3", "node-1", True, False, "backend")
    assert pods["frontend-5c7d8b9f4-q7xkz"].ip == "10.244.1.7"
    assert m.proxy_config is None and m.slices == () and m.nodes == ()
    assert str(m.origins[("Service", "default/backend")]) == \
        f"{CLUSTERS / 'seed.yaml'}: document 3 (Service default/backend)"
    assert str(m.origins[("Pod", "default/backend-6d8f7c9b4-x2vqk")]).endswith(
        "seed.yaml: document 4, items[1] (Pod default/backend-6d8f7c9b4-x2vqk)")


def test_kube_proxy_config_file():
    config = load_proxy_config(str(CLUSTERS / "kube-proxy-config.yaml"))
    assert config == ProxyConfig(cluster_cidr="10.244.0.0/16")


# ---------------------------------------------------------------- documents and Lists

def test_kubectl_list_with_items():
    text = """apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: shop}
  spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: shop, labels: {app: a}}
  status: {podIP: 10.244.1.9}
"""
    m = loads(text)
    assert [s.key for s in m.services] == ["shop/a"]
    assert [(p.namespace, p.name, p.ip) for p in m.pods] == [("shop", "p", "10.244.1.9")]


def test_typed_lists_and_errors_inside_name_the_item():
    text = """apiVersion: v1
kind: ServiceList
items:
- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {ports: [{port: 80}]}}
- {apiVersion: v1, kind: Service, metadata: {name: b}, spec: {ports: [{port: 0}]}}
"""
    e = error(text, "svcs.yaml")
    assert str(e) == ("svcs.yaml:5: document 1, items[1] (Service default/b): spec.ports[0].port: "
                      "0 is not a port number (1-65535)")


def test_multi_document_numbering_counts_every_document():
    text = "# comment\n---\n" + svc("  ports: [{port: 80}]\n", "a") + "\n---\n---\n" + \
        svc("  ports: [{port: 80, protocol: tcp}]\n", "b")
    m_err = error(text, "multi.yaml")
    # YAML's count: the comment before the first --- belongs to document 1 (Service a);
    # document 2 is empty (skipped, but counted); document 3 is Service b.
    assert str(m_err) == ('multi.yaml:17: document 3 (Service default/b): spec.ports[0].protocol: '
                          '"tcp" is not one of TCP, UDP, SCTP')
    assert (m_err.file, m_err.document, m_err.object, m_err.field) == \
        ("multi.yaml", 3, "Service default/b", "spec.ports[0].protocol")
    ok = loads(text.replace("protocol: tcp", "protocol: UDP"))
    assert [s.name for s in ok.services] == ["a", "b"]
    assert ok.services[1].ports[0].protocol == "UDP"


def test_load_several_files_merges_in_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(svc("  ports: [{port: 80}]\n", "one"))
    b.write_text(svc("  ports: [{port: 80}]\n", "two"))
    m = load(str(a), str(b))
    assert [s.name for s in m.services] == ["one", "two"]
    assert str(m.origins[("Service", "default/two")]) == f"{b}: document 1 (Service default/two)"


def test_same_object_twice_is_an_error_naming_both_places(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text(svc("  ports: [{port: 80}]\n"))
    with pytest.raises(ManifestError) as info:
        load(str(a), str(a))
    assert str(info.value) == (f"{a}:1: document 1 (Service default/backend): Service default/backend is defined "
                               f"twice (also in {a}: document 1 (Service default/backend))")
    text = svc("  ports: [{port: 80}]\n") + "\n---\n" + svc("  ports: [{port: 81}]\n")
    assert "document 2 (Service default/backend): Service default/backend is defined twice" in str(error(text))


def test_merge_keeps_one_proxy_config():
    config = loads(f"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                   "clusterCIDR: 10.0.0.0/8\n", "kp.yaml")
    objects = loads(svc("  ports: [{port: 80}]\n"))
    both = merge(objects, config)
    assert both.proxy_config.cluster_cidr == "10.0.0.0/8" and len(both.services) == 1
    with pytest.raises(ManifestError, match=r"kp.yaml:1: document 1 \(KubeProxyConfiguration\): a second "
                                            r"KubeProxyConfiguration \(the first is in kp.yaml: document 1"):
        merge(config, config)


# ---------------------------------------------------------------- Services

def test_service_fields():
    text = svc("""  type: LoadBalancer
  clusterIP: 10.96.7.7
  selector: {app: web, tier: front}
  externalIPs: [192.0.2.10]
  loadBalancerSourceRanges: [" 203.0.113.0/24 ", 198.51.100.0/24]
  externalTrafficPolicy: Local
  internalTrafficPolicy: Cluster
  healthCheckNodePort: 32100
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
status:
  loadBalancer:
    ingress:
    - {ip: 203.0.113.10}
    - {ip: 203.0.113.11, ipMode: Proxy}
    - {hostname: lb.example.com}
""", "web", extra="  namespace: shop\n")
    (s,) = loads(text).services
    assert (s.namespace, s.name, s.type, s.cluster_ip) == ("shop", "web", "LoadBalancer", "10.96.7.7")
    assert s.selector == (("app", "web"), ("tier", "front"))
    assert s.ports == (ServicePort(80, "TCP", "http", 8080, 30080), ServicePort(53, "UDP", "dns", "dns", None))
    assert s.external_ips == ("192.0.2.10",)
    assert s.lb_source_ranges == (" 203.0.113.0/24 ", "198.51.100.0/24")      # verbatim, as kube-proxy gets them
    assert s.lb_ingress == (LoadBalancerIngress("203.0.113.10", None), LoadBalancerIngress("203.0.113.11", "Proxy"))
    assert (s.external_traffic_policy, s.internal_traffic_policy, s.health_check_node_port) == \
        ("Local", "Cluster", 32100)
    assert (s.session_affinity, s.session_affinity_timeout) == ("ClientIP", 60)


def test_service_defaults_and_unset_fields():
    (s,) = loads(svc("  ports: [{port: 80}]\n")).services
    assert (s.type, s.cluster_ip, s.selector, s.external_traffic_policy, s.session_affinity) == \
        (None, None, None, None, None)
    assert s.ports == (ServicePort(80, "TCP", "", None, None),)
    (s,) = loads(svc("  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n")).services
    assert s.session_affinity_timeout == 10800                   # the API server's default


@pytest.mark.parametrize("given, kept", [('"None"', "None"), ('""', None), ("10.96.0.50", "10.96.0.50")])
def test_cluster_ip_kept_as_given(given, kept):
    (s,) = loads(svc(f"  clusterIP: {given}\n  ports: [{{port: 80}}]\n")).services
    assert s.cluster_ip == kept


def test_cluster_ips_list_when_cluster_ip_missing():
    (s,) = loads(svc("  clusterIPs: [10.96.0.51]\n  ports: [{port: 80}]\n")).services
    assert s.cluster_ip == "10.96.0.51"


def test_selector_less_and_empty_selector_services_are_valid():
    a, b = loads(svc("  ports: [{port: 80}]\n", "a") + "\n---\n" +
                 svc("  selector: {}\n  ports: [{port: 80}]\n", "b")).services
    assert a.selector is None and b.selector is None


# ---------------------------------------------------------------- Deployments and Pods

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v2}}
    spec:
      containers:
      - name: a
        ports: [{containerPort: 8080, name: http}, {containerPort: 53, name: dns, protocol: UDP}]
      - name: b
        ports: [{containerPort: 9090}]
"""


def test_deployment_fields():
    (d,) = loads(DEPLOYMENT.replace("REPLICAS", "3")).deployments
    assert (d.namespace, d.name, d.replicas, d.ready) == ("default", "web", 3, True)
    assert d.selector == (("app", "web"),) and d.labels == (("app", "web"), ("version", "v2"))
    assert d.ports == (ContainerPort(8080, "http", "TCP"), ContainerPort(53, "dns", "UDP"),
                       ContainerPort(9090, "", "TCP"))
    (d,) = loads(DEPLOYMENT.replace("  replicas: REPLICAS\n", "")).deployments
    assert d.replicas == 1


def test_negative_replicas():
    e = error(DEPLOYMENT.replace("REPLICAS", "-2"), "web.yaml")
    assert str(e) == "web.yaml:5: document 1 (Deployment default/web): spec.replicas: -2 is negative: " \
                     "replicas must be 0 or more"


def test_deployment_selector_must_match_template():
    e = error(DEPLOYMENT.replace("REPLICAS", "1").replace("{app: web, version: v2}", "{app: webb}"))
    assert str(e) == ("test.yaml:8: document 1 (Deployment default/web): spec.template.metadata.labels: "
                      "does not match the selector (missing app=web)")


def test_pod_fields():
    text = """apiVersion: v1
kind: Pod
metadata:
  name: web-abc12-xyz
  namespace: shop
  labels: {app: web, pod-template-hash: abc12}
  deletionTimestamp: "2025-01-01T00:00:00Z"
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-abc12, controller: true}]
spec:
  nodeName: node-2
  containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]
status:
  podIP: 10.244.2.9
  conditions: [{type: Ready, status: "False"}, {type: PodScheduled, status: "True"}]
"""
    (p,) = loads(text).pods
    assert (p.namespace, p.name, p.ip, p.node) == ("shop", "web-abc12-xyz", "10.244.2.9", "node-2")
    assert (p.ready, p.terminating, p.owner) == (False, True, "web")
    assert p.labels == (("app", "web"), ("pod-template-hash", "abc12"))
    assert p.ports == (ContainerPort(8080, "http", "TCP"),)


def test_pod_without_status_is_ready_and_unplaced():
    (p,) = loads("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n").pods
    assert (p.ip, p.node, p.ready, p.terminating, p.owner) == (None, None, True, False, None)


def test_finished_pod_is_skipped_with_a_warning():
    m = loads("apiVersion: v1\nkind: Pod\nmetadata: {name: job-1}\nstatus: {phase: Succeeded, podIP: 10.244.1.9}\n",
              "p.yaml")
    assert m.pods == ()
    assert m.warnings == ("p.yaml: document 1 (Pod default/job-1): the Pod has finished (phase Succeeded) and gets "
                          "no endpoint; skipped",)


# ---------------------------------------------------------------- EndpointSlices and Nodes

SLICE = """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-abcde
  labels: {kubernetes.io/service-name: backend}
addressType: IPv4
endpoints:
- addresses: [10.244.1.3]
  conditions: {ready: true}
  nodeName: node-1
  targetRef: {kind: Pod, name: backend-1}
- addresses: [10.244.2.5]
  conditions: {ready: false, serving: true, terminating: true}
ports:
- {name: http, port: 8080, protocol: TCP}
"""


def test_endpoint_slice_fields():
    (s,) = loads(SLICE).slices
    assert (s.namespace, s.name, s.service, s.address_type) == ("default", "backend-abcde", "backend", "IPv4")
    a, b = s.endpoints
    assert (a.addresses, a.conditions, a.node_name, a.target_pod) == \
        (("10.244.1.3",), EndpointConditions(True, None, None), "node-1", "backend-1")
    assert (b.conditions, b.node_name, b.target_pod) == (EndpointConditions(False, True, True), None, None)
    assert s.ports == (EndpointPort(8080, "http", "TCP"),)


def test_endpoint_slice_errors_and_unowned_slices():
    e = error(SLICE.replace("[10.244.2.5]", "[fd00::5]"), "s.yaml")
    assert str(e) == "s.yaml:12: document 1 (EndpointSlice default/backend-abcde): endpoints[1].addresses[0]: " \
                     "fd00::5 is not an IPv4 address"
    e = error(SLICE.replace("{ready: true}", "{ready: yes please}"))
    assert str(e).endswith('endpoints[0].conditions.ready: expected true or false, got "yes please"')
    m = loads(SLICE.replace("  labels: {kubernetes.io/service-name: backend}\n", ""), "s.yaml")
    assert m.slices == () and "no kubernetes.io/service-name label" in m.warnings[0]


def test_node_fields_and_missing_address():
    text = """apiVersion: v1
kind: Node
metadata: {name: worker-1}
spec: {podCIDR: 10.244.5.0/24}
status:
  addresses: [{type: Hostname, address: worker-1}, {type: InternalIP, address: 172.18.0.3}]
"""
    assert loads(text).nodes == (Node("worker-1", "172.18.0.3", "10.244.5.0/24"),)
    e = error(text.replace("InternalIP", "Hostname"), "n.yaml")
    assert str(e) == ("n.yaml:6: document 1 (Node worker-1): status.addresses: no InternalIP address: kube-proxy needs "
                      "the node's IP (add status.addresses: [{type: InternalIP, address: 192.168.0.2}])")
    e = error(text.replace("10.244.5.0/24", "10.244.5.1/24"))
    assert str(e).endswith('spec.podCIDR: "10.244.5.1/24" is not a CIDR (such as 10.244.1.0/24)')


# ---------------------------------------------------------------- KubeProxyConfiguration

PROXY = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.100.0.0/16,fd00:10:100::/56
detectLocalMode: NodeCIDR
nodePortAddresses: [192.168.0.0/24, primary]
iptables: {masqueradeAll: true, masqueradeBit: 15, localhostNodePorts: false}
conntrack: {tcpBeLiberal: true}
"""


def test_proxy_configuration_fields():
    m = loads(PROXY)
    assert m.proxy_config == ProxyConfig(cluster_cidr="10.100.0.0/16", masquerade_all=True, masquerade_bit=15,
                                         localhost_nodeports=False, nodeport_addresses=("192.168.0.0/24", "primary"),
                                         detect_local_mode="NodeCIDR", tcp_be_liberal=True)
    assert m.proxy_config.masquerade_mark == "0x00008000"
    assert m.warnings == ()


def test_proxy_configuration_without_cluster_cidr_has_no_detector():
    m = loads("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n", "kp.yaml")
    assert m.proxy_config == ProxyConfig(cluster_cidr=None)
    assert m.warnings == ("kp.yaml: document 1 (KubeProxyConfiguration): no IPv4 clusterCIDR: kube-proxy then runs "
                          "without a local-traffic detector (traffic to cluster IPs from outside the Pod network is "
                          "not masqueraded)",)


def test_proxy_configuration_errors_and_mode_warning():
    e = error(PROXY.replace("masqueradeBit: 15", "masqueradeBit: 32"), "kp.yaml")
    assert str(e) == "kp.yaml:6: document 1 (KubeProxyConfiguration): iptables.masqueradeBit: 32 is not between 0 and 31"
    e = error(PROXY.replace("NodeCIDR", "PodCIDR"))
    assert str(e).endswith('detectLocalMode: "PodCIDR" is not one of ClusterCIDR, NodeCIDR, BridgeInterface, '
                           'InterfaceNamePrefix')
    m = loads(PROXY + "mode: ipvs\n")
    assert any("mode ipvs: kplab models kube-proxy's iptables mode only" in w for w in m.warnings)


def test_proxy_configuration_inside_the_kube_proxy_configmap():
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-proxy, namespace: kube-system}\ndata:\n" \
           "  config.conf: |\n" + "".join("    " + line + "\n" for line in PROXY.splitlines()) + \
           "  kubeconfig.conf: 'apiVersion: v1'\n"
    m = loads(text, "cm.yaml")
    assert m.proxy_config.cluster_cidr == "10.100.0.0/16" and m.warnings == ()
    assert str(m.origins[("KubeProxyConfiguration", "")]) == \
        'cm.yaml: document 1 (ConfigMap kube-system/kube-proxy data["config.conf"])'


# ---------------------------------------------------------------- warnings

def test_unknown_kinds_are_skipped_with_a_warning():
    text = """apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Endpoints
metadata: {name: backend}
"""
    m = loads(text, "all.yaml")
    assert len(m) == 0
    assert m.warnings == (
        "all.yaml: document 2 (Ingress shop/web): kind Ingress is not modelled (kplab models what kube-proxy "
        "reads); skipped",
        "all.yaml: document 3 (Endpoints default/backend): kind Endpoints is not modelled (kube-proxy reads "
        "EndpointSlices, not the legacy Endpoints); skipped")


def test_unexpected_api_version_warns():
    m = loads(DEPLOYMENT.replace("apps/v1", "extensions/v1beta1").replace("REPLICAS", "1"), "d.yaml")
    assert len(m.deployments) == 1
    assert m.warnings == ('d.yaml: document 1 (Deployment default/web): apiVersion "extensions/v1beta1" is not how '
                          'Deployment is served (expected apps/v1); read as apps/v1',)


# ---------------------------------------------------------------- errors, each with its message shape

def test_the_issue_example_message():
    text = svc("  ports: [{port: 80}]\n", "frontend") + "\n---\n" + svc("  ports:\n  - port: eighty\n")
    e = error(text, "backend.yaml")
    assert str(e) == ('backend.yaml:15: document 2 (Service default/backend): spec.ports[0].port: '
                      'expected a number, got "eighty"')
    assert isinstance(e, KplabError) and isinstance(e, ValueError)


def test_not_yaml_names_the_line_and_shows_it():
    e = error("apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n   bad: [\n", "bad.yaml")
    assert str(e) == "bad.yaml:5: not YAML: mapping values are not allowed here"
    assert (e.line, e.text, e.column) == (5, "   bad: [", 6)
    assert e.pretty() == "bad.yaml:5: not YAML: mapping values are not allowed here\n       bad: [\n          ^"


def test_not_yaml_unsafe_tags_are_refused():
    e = error("apiVersion: v1\nkind: !!python/object/apply:os.system ['true']\n", "evil.yaml")
    assert str(e).startswith("evil.yaml:2: not YAML: could not determine a constructor for the tag")


def test_object_without_kind_or_name():
    assert str(error("apiVersion: v1\nmetadata: {name: a}\n", "x.yaml")) == \
        "x.yaml:1: document 1: kind: required (every Kubernetes object has apiVersion, kind and metadata.name)"
    assert str(error("apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\n", "x.yaml")) == \
        "x.yaml:3: document 1 (Service): metadata.name: required"
    assert str(error("apiVersion: v1\nkind: Pod\n", "x.yaml")) == "x.yaml:1: document 1 (Pod): metadata.name: required"


def test_document_that_is_not_an_object():
    assert str(error("- a\n- b\n", "x.yaml")) == \
        "x.yaml:1: document 1: expected a Kubernetes object (a mapping with apiVersion, kind and metadata), got a list"


@pytest.mark.parametrize("spec, message", [
    ("  ports: [{port: 80, targetPort: '8080'}]\n",
     'spec.ports[0].targetPort: "8080" is neither a number nor a valid port name (a name has lower-case letters, '
     'digits and dashes, at least one letter, at most 15 characters)'),
    ("  ports: [{port: 80, targetPort: 70000}]\n", "spec.ports[0].targetPort: 70000 is not a port number (1-65535)"),
    ("  ports: [{port: 80}, {port: 81, name: b}]\n",
     "spec.ports[0].name: required when a Service has more than one port"),
    ("  ports: [{port: 80, name: a}, {port: 81, name: a}]\n",
     'spec.ports[1].name: "a" is already the name of spec.ports[0]'),
    ("  ports: [{port: 80, nodePort: 30080}]\n",
     "spec.ports[0].nodePort: a nodePort needs type NodePort or LoadBalancer (this Service is type ClusterIP)"),
    ("  type: Headless\n  ports: [{port: 80}]\n",
     'spec.type: "Headless" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName'),
    ("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n", 'spec.clusterIP: "10.96.0.300" is not an IP address'),
    ("  ports: []\n", "spec.ports: required: a Service needs at least one port"),
    ("  ports: {port: 80}\n", "spec.ports: expected a list, got a mapping"),
    ("  selector: {app: true}\n  ports: [{port: 80}]\n",
     "spec.selector.app: expected a string, got true (quote it: a label value is text)"),
    ("  externalIPs: [192.0.2.300]\n  ports: [{port: 80}]\n",
     'spec.externalIPs[0]: "192.0.2.300" is not an IP address'),
    ("  loadBalancerSourceRanges: [10.0.0.1/8]\n  ports: [{port: 80}]\n",
     'spec.loadBalancerSourceRanges[0]: "10.0.0.1/8" is not a CIDR (such as 10.244.1.0/24)'),
    ("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]\n",
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not between 1 and 86400 seconds"),
    ("  type: NodePort\n  healthCheckNodePort: 32000\n  ports: [{port: 80}]\n",
     "spec.healthCheckNodePort: only a LoadBalancer Service with externalTrafficPolicy: Local has a health-check "
     "node port"),
])
def test_service_field_errors(spec, message):
    e = error(svc(spec), "svc.yaml")
    # the line is the field's own (spec: is line 5, the fields follow it)
    assert 6 <= e.line <= svc(spec).count("\n")
    assert str(e) == f"svc.yaml:{e.line}: document 1 (Service default/backend): {message}"


def test_label_values_must_be_strings():
    e = error("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {version: 1.0}\n", "p.yaml")
    assert str(e) == "p.yaml:5: document 1 (Pod default/p): metadata.labels.version: expected a string, got 1.0 " \
                     "(quote it: a label value is text)"
    e = error('apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {"app.kubernetes.io/name": 7}\n', "p.yaml")
    assert 'metadata.labels["app.kubernetes.io/name"]: expected a string, got 7' in str(e)


def test_container_port_errors():
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports: PORTS\n"
    assert str(error(text.replace("PORTS", "[{name: http}]"), "p.yaml")) == \
        "p.yaml:7: document 1 (Pod default/p): spec.containers[0].ports[0].containerPort: required"
    assert str(error(text.replace("PORTS", "[{containerPort: 80, name: HTTP}]"))).endswith(
        'spec.containers[0].ports[0].name: "HTTP" is not a valid port name (lower-case letters, digits and single '
        'dashes, with at least one letter)')


def test_pod_ip_must_be_an_address():
    e = error("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: pending}\n", "p.yaml")
    assert str(e) == 'p.yaml:4: document 1 (Pod default/p): status.podIP: "pending" is not an IP address'


def test_unreadable_files(tmp_path):
    with pytest.raises(ManifestError, match=r"missing.yaml: cannot read: No such file or directory"):
        load(str(tmp_path / "missing.yaml"))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00kind")
    with pytest.raises(ManifestError, match=r"bin.yaml:\d+: not YAML: the file is not UTF-8 text"):
        load(str(binary))
    with pytest.raises(ManifestError, match="no KubeProxyConfiguration in this file"):
        load_proxy_config(str(CLUSTERS / "seed.yaml"))


def test_empty_input_gives_empty_manifests():
    assert loads("") == Manifests()
    assert loads("---\n# nothing\n---\n") == Manifests()
