"""Synthetic clusters for scale work (`kplab synth`).

`synth(services, endpoints, nodes=2, seed=0, mixed=False)` returns the objects
of a made-up cluster (`Synth`: Nodes, Services, EndpointSlices); `synth_yaml(...)`
prints them as the YAML `List` that `kubectl get nodes,services,endpointslices
-A -o yaml` prints (keys sorted, block style), and `synth_cluster(...)` hands the
same objects to `Cluster` directly, without writing and reading YAML (much
faster for 10,000 Services). The three agree: `Cluster.from_yaml(synth_yaml(...))`
has the same Services and EndpointSlices as `synth_cluster(...)`.

**Default (uniform).** N ClusterIP Services `default/svc-00000`,
`default/svc-00001`, ... with one port `http` 80/TCP -> 8080, each with exactly M
ready endpoints, in EndpointSlices of at most 100 endpoints, as the EndpointSlice
controller writes them. This is the cluster of the benchmarks: every Service
costs kube-proxy the same rules.

**Mixed (`mixed=True`).** A cluster that looks like a real one: kube-system/kube-dns
first (10.96.0.10, dns/UDP 53, dns-tcp/TCP 53, metrics/TCP 9153), then Services in a
few namespaces with names like `web-00012`; about 70% ClusterIP, 15% NodePort and
10-15% LoadBalancer (at least one of each when N >= 3; NodePort and LoadBalancer
stop when the NodePort range 30000-32767 is used up, and the rest are ClusterIP), 1
to 3 named ports each (targetPort a number or a container port's name), 1 to 2M
endpoints each, some extra endpoints that are not ready or terminating, about 5% of
Services without endpoints (at least one when N >= 4), some `externalTrafficPolicy:
Local` and a few with `sessionAffinity: ClientIP`.

**Addresses.** Nodes `node-1` ... `node-K` have the IPs 192.168.0.2, 192.168.0.3, ...
(node-1 and node-2 are the standard node of DESIGN section 3 and its peer). Each gets
a Pod CIDR inside the cluster CIDR 10.244.0.0/16: `10.244.<i>.0/24` for node-i while
/24s hold its Pods, a bigger block when they do not. Endpoints are spread over the
nodes in turn and take the next free address of their node's Pod CIDR (skipping the
network address, the gateway .1 and the broadcast address); past ~65,000
endpoints in all, addresses are used again (one Pod behind several Services, which
Kubernetes allows). ClusterIPs are drawn from the Service CIDR 10.96.0.0/12 with a
random generator seeded by `seed` (never .0, .1 or the broadcast address); load
balancer IPs come from 198.18.0.0/15 (the benchmarking range) in order. The same
arguments always give the same cluster.

Standard library only: the YAML is written here, every string quoted when plain
YAML could read it as something else.
"""
from __future__ import annotations

import ipaddress
import math
import random
import re
from dataclasses import dataclass

from ..errors import KplabError
from .objects import (Endpoint, EndpointConditions, EndpointPort, EndpointSlice, LoadBalancerIngress, Node, Service,
                      ServicePort)

__all__ = ["MAX_ENDPOINTS", "MAX_NODES", "MAX_SERVICES", "Synth", "SynthError", "synth", "synth_cluster",
           "synth_yaml", "to_yaml"]

#: Limits that keep a typo from filling the memory (and the address ranges in use).
MAX_SERVICES = 100_000
MAX_ENDPOINTS = 1_000
MAX_NODES = 1_000

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
CLUSTER_CIDR = ipaddress.ip_network("10.244.0.0/16")
NODE_IP_BASE = int(ipaddress.ip_address("192.168.0.2"))
LB_IP_BASE = int(ipaddress.ip_address("198.18.0.10"))
NODE_PORT_RANGE = (30000, 32767)
MAX_SLICE_ENDPOINTS = 100                 # the EndpointSlice controller's default
DNS_IP = "10.96.0.10"

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no 0/1/3).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_NAMESPACES = ("default", "shop", "payments", "monitoring", "ingress", "auth")
_WORDS = ("web", "api", "cart", "auth", "search", "orders", "cache", "queue", "metrics", "frontend", "backend",
          "users", "catalog", "billing", "gateway")
# Port profiles of the mixed cluster: (name, port, protocol, targetPort, container port number).
_PROFILES = (
    (("http", 80, "TCP", 8080, 8080),),
    (("http", 80, "TCP", "http", 8080),),
    (("http", 80, "TCP", 8080, 8080), ("https", 443, "TCP", 8443, 8443)),
    (("grpc", 9090, "TCP", "grpc", 9090),),
    (("http", 80, "TCP", "http", 8080), ("metrics", 9100, "TCP", "metrics", 9100)),
    (("dns", 53, "UDP", 5353, 5353), ("dns-tcp", 53, "TCP", 5353, 5353)),
    (("http", 8080, "TCP", 8080, 8080), ("admin", 8081, "TCP", "admin", 8081), ("metrics", 9100, "TCP", 9100, 9100)),
)
_PROFILE_WEIGHTS = (40, 20, 15, 8, 8, 4, 5)
_DNS_PORTS = (("dns", 53, "UDP", 53, 53), ("dns-tcp", 53, "TCP", 53, 53), ("metrics", 9153, "TCP", 9153, 9153))

_READY = EndpointConditions(ready=True, serving=True, terminating=False)
_NOT_READY = EndpointConditions(ready=False, serving=False, terminating=False)
_TERMINATING = EndpointConditions(ready=False, serving=True, terminating=True)


class SynthError(KplabError, ValueError):
    """Arguments `kplab synth` cannot make a cluster of (one line, for the CLI)."""


@dataclass(frozen=True)
class Synth:
    """A synthetic cluster's objects, in the order `kubectl get` lists them."""

    nodes: tuple
    services: tuple
    slices: tuple
    seed: int = 0
    mixed: bool = False

    def cluster(self, **kw):
        """These objects as a `kplab.kube.cluster.Cluster` (keyword arguments go to Cluster)."""
        from .cluster import Cluster
        return Cluster(services=self.services, slices=self.slices, nodes=self.nodes, **kw)

    def yaml(self) -> str:
        """The YAML `List`, as `kubectl get nodes,services,endpointslices -A -o yaml` prints it."""
        return to_yaml(self)

    def endpoint_count(self) -> int:
        return sum(len(s.endpoints) for s in self.slices)

    def __repr__(self) -> str:
        return (f"<Synth{' mixed' if self.mixed else ''}: {len(self.nodes)} nodes, {len(self.services)} services, "
                f"{len(self.slices)} endpoint slices, {self.endpoint_count()} endpoints, seed {self.seed}>")


# --------------------------------------------------------------------------- arguments

def _whole(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SynthError(f"{name} must be a whole number, not {value!r}")
    if value < low:
        raise SynthError(f"{name} {value}: must be {low} or more")
    if value > high:
        raise SynthError(f"{name} {value}: at most {high} (a limit of kplab synth)")
    return value


def check_args(services, endpoints, nodes, seed) -> None:
    """Raise `SynthError` (named after the CLI's options) for arguments out of range."""
    _whole("--services", services, 0, MAX_SERVICES)
    _whole("--endpoints", endpoints, 0, MAX_ENDPOINTS)
    _whole("--nodes", nodes, 1, MAX_NODES)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SynthError(f"--seed must be a whole number, not {seed!r}")


# --------------------------------------------------------------------------- addresses

class _Pods:
    """Pod addresses: node after node in turn, the next free address of each node's Pod CIDR."""

    def __init__(self, nodes: int, total: int):
        self.k = nodes
        per_node = max(1, math.ceil(total / nodes))
        if nodes <= 255 and per_node <= 253:
            prefix, skip = 24, 1                                    # node-i = 10.244.i.0/24, as in the lessons
        else:                                                       # bigger blocks, from 10.244.0.0
            fit = 16 + max(0, math.ceil(math.log2(nodes)))          # K blocks fit in the /16
            need = 32 - max(2, math.ceil(math.log2(per_node + 3)))  # a block that holds the node's Pods
            prefix, skip = min(30, max(fit, min(24, need))), 0
        size = 2 ** (32 - prefix)
        base = int(CLUSTER_CIDR.network_address)
        self.starts = [base + (i + skip) * size for i in range(nodes)]
        self.cidrs = [f"{ipaddress.IPv4Address(s)}/{prefix}" for s in self.starts]
        self.capacity = size - 3                                    # offsets 2 .. size-2
        self.next = 0

    def take(self) -> tuple:
        """(node index, Pod IP) of the next endpoint."""
        g = self.next
        self.next += 1
        node = g % self.k
        slot = (g // self.k) % self.capacity
        return node, str(ipaddress.IPv4Address(self.starts[node] + 2 + slot))


def _suffix(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(n))


def _cluster_ips(rng: random.Random, n: int, reserved=()) -> list:
    span = SERVICE_CIDR.num_addresses
    taken = {int(ipaddress.ip_address(r)) - int(SERVICE_CIDR.network_address) for r in reserved}
    picks = rng.sample(range(2, span - 1), n + len(taken))
    base = int(SERVICE_CIDR.network_address)
    return [str(ipaddress.IPv4Address(base + p)) for p in picks if p not in taken][:n]


def _nodes(k: int, pods: _Pods) -> tuple:
    return tuple(Node(name=f"node-{i + 1}", ip=str(ipaddress.IPv4Address(NODE_IP_BASE + i)), pod_cidr=pods.cidrs[i])
                 for i in range(k))


def _slices(rng, svc: Service, endpoints: list, ports: tuple) -> list:
    """The EndpointSlices of one Service: at most 100 endpoints each (one empty slice if none)."""
    out = []
    for start in range(0, max(1, len(endpoints)), MAX_SLICE_ENDPOINTS):
        out.append(EndpointSlice(namespace=svc.namespace, name=f"{svc.name[:57]}-{_suffix(rng, 5)}",
                                 service=svc.name, endpoints=tuple(endpoints[start:start + MAX_SLICE_ENDPOINTS]),
                                 ports=ports, address_type="IPv4"))
    return out


def _endpoints(rng, svc: Service, pods: _Pods, node_names: list, conditions: list) -> list:
    template = _suffix(rng, 10)
    out = []
    for cond in conditions:
        node, ip = pods.take()
        out.append(Endpoint(addresses=(ip,), conditions=cond, node_name=node_names[node],
                            target_pod=f"{svc.name[:40]}-{template}-{_suffix(rng, 5)}"))
    return out


# --------------------------------------------------------------------------- the two kinds of cluster

def synth(services: int, endpoints: int, nodes: int = 2, seed: int = 0, mixed: bool = False) -> Synth:
    """The objects of a synthetic cluster (see the module docstring)."""
    check_args(services, endpoints, nodes, seed)
    rng = random.Random(f"kplab-synth/{seed}/{'mixed' if mixed else 'uniform'}")
    return (_mixed if mixed else _uniform)(rng, services, endpoints, nodes, seed)


def _uniform(rng, n: int, m: int, k: int, seed: int) -> Synth:
    pods = _Pods(k, n * m)
    node_objs = _nodes(k, pods)
    names = [nd.name for nd in node_objs]
    width = max(5, len(str(max(n - 1, 0))))
    port = ServicePort(port=80, protocol="TCP", name="http", target_port=8080)
    ep_ports = (EndpointPort(port=8080, name="http", protocol="TCP"),)
    svcs, slices = [], []
    for i, cip in enumerate(_cluster_ips(rng, n)):
        name = f"svc-{i:0{width}d}"
        svc = Service(namespace="default", name=name, ports=(port,), type="ClusterIP", cluster_ip=cip,
                      selector=(("app", name),), internal_traffic_policy="Cluster", session_affinity="None")
        svcs.append(svc)
        slices += _slices(rng, svc, _endpoints(rng, svc, pods, names, [_READY] * m), ep_ports)
    return Synth(nodes=node_objs, services=tuple(svcs), slices=tuple(slices), seed=seed, mixed=False)


def _spread(rng, n: int, share: float, minimum: int, candidates: list) -> set:
    count = min(len(candidates), max(minimum, round(n * share)))
    return set(rng.sample(candidates, count))


def _mixed(rng, n: int, m: int, k: int, seed: int) -> Synth:
    # Decide the shape first (types, endpoint counts), then addresses.
    others = list(range(1, n))
    node_port_idx = _spread(rng, n, 0.15, 1 if n >= 3 else 0, others)
    lb_idx = _spread(rng, n, 0.12, 1 if n >= 3 else 0, [i for i in others if i not in node_port_idx])
    empty_idx = _spread(rng, n, 0.05, 1 if n >= 4 else 0, others) if m > 0 else set(range(n))
    profiles = [_DNS_PORTS] + [rng.choices(_PROFILES, _PROFILE_WEIGHTS)[0] for _ in others]
    counts = [0 if i in empty_idx else rng.randint(1, 2 * m) for i in range(n)]
    extra = [None if counts[i] == 0 or rng.random() >= 0.1 else rng.choice((_NOT_READY, _TERMINATING))
             for i in range(n)]
    total = sum(counts) + sum(1 for e in extra if e is not None)
    pods = _Pods(k, total)
    node_objs = _nodes(k, pods)
    names = [nd.name for nd in node_objs]
    free_ports = list(range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1))
    rng.shuffle(free_ports)
    cips = _cluster_ips(rng, max(n - 1, 0), reserved=(DNS_IP,))
    width = max(5, len(str(max(n - 1, 0))))
    lb_next = 0
    svcs, slices = [], []
    for i in range(n):
        ports_spec = profiles[i]
        if i == 0:
            ns, name, cip = "kube-system", "kube-dns", DNS_IP
            selector = (("k8s-app", "kube-dns"),)
        else:
            ns = rng.choice(_NAMESPACES)
            word = rng.choice(_WORDS)
            name = f"{'dns' if ports_spec[0][0] == 'dns' else word}-{i:0{width}d}"
            cip = cips[i - 1]
            selector = (("app", name),)
        type_ = "NodePort" if i in node_port_idx else "LoadBalancer" if i in lb_idx else "ClusterIP"
        etp = None
        if type_ != "ClusterIP":
            etp = "Local" if rng.random() < (0.3 if type_ == "LoadBalancer" else 0.1) else "Cluster"
            wanted = len(ports_spec) + (1 if type_ == "LoadBalancer" and etp == "Local" else 0)
            if wanted > len(free_ports):                     # the NodePort range is used up
                type_, etp = "ClusterIP", None
        affinity = "ClientIP" if rng.random() < 0.03 else "None"
        ports = []
        for pname, number, proto, target, _ in ports_spec:
            node_port = free_ports.pop() if type_ != "ClusterIP" else None
            ports.append(ServicePort(port=number, protocol=proto, name=pname, target_port=target,
                                     node_port=node_port))
        hc = free_ports.pop() if type_ == "LoadBalancer" and etp == "Local" else None
        ingress = ()
        if type_ == "LoadBalancer":
            ingress = (LoadBalancerIngress(ip=str(ipaddress.IPv4Address(LB_IP_BASE + lb_next)), ip_mode="VIP"),)
            lb_next += 1
        svc = Service(namespace=ns, name=name, ports=tuple(ports), type=type_, cluster_ip=cip, selector=selector,
                      lb_ingress=ingress, external_traffic_policy=etp, internal_traffic_policy="Cluster",
                      health_check_node_port=hc, session_affinity=affinity,
                      session_affinity_timeout=10800 if affinity == "ClientIP" else None)
        svcs.append(svc)
        conditions = [_READY] * counts[i] + ([extra[i]] if extra[i] is not None else [])
        rng.shuffle(conditions)
        eps = _endpoints(rng, svc, pods, names, conditions)
        ep_ports = tuple(EndpointPort(port=cport, name=pname, protocol=proto)
                         for pname, _, proto, _, cport in ports_spec)
        slices += _slices(rng, svc, eps, ep_ports)
    return Synth(nodes=node_objs, services=tuple(svcs), slices=tuple(slices), seed=seed, mixed=True)


def synth_cluster(services: int, endpoints: int, nodes: int = 2, seed: int = 0, mixed: bool = False, **kw):
    """The synthetic cluster as a `Cluster`, without YAML (keyword arguments go to Cluster)."""
    return synth(services, endpoints, nodes, seed, mixed).cluster(**kw)


def synth_yaml(services: int, endpoints: int, nodes: int = 2, seed: int = 0, mixed: bool = False) -> str:
    """The synthetic cluster as the YAML `List` `kubectl get -o yaml` prints (what `kplab synth` prints)."""
    return to_yaml(synth(services, endpoints, nodes, seed, mixed))


# --------------------------------------------------------------------------- objects -> Kubernetes JSON

def _node_doc(n: Node) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "labels": {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": n.ip},
                                     {"type": "Hostname", "address": n.name}]}}


def _service_doc(s: Service) -> dict:
    spec = {"type": s.type or "ClusterIP", "clusterIP": s.cluster_ip, "clusterIPs": [s.cluster_ip],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": s.internal_traffic_policy or "Cluster",
            "sessionAffinity": s.session_affinity or "None"}
    ports = []
    for p in s.ports:
        port = {"name": p.name, "port": p.port, "protocol": p.protocol,
                "targetPort": p.target_port if p.target_port is not None else p.port}
        if not p.name:
            del port["name"]
        if p.node_port is not None:
            port["nodePort"] = p.node_port
        ports.append(port)
    spec["ports"] = ports
    if s.selector is not None:
        spec["selector"] = dict(s.selector)
    if s.external_traffic_policy is not None:
        spec["externalTrafficPolicy"] = s.external_traffic_policy
    if s.health_check_node_port is not None:
        spec["healthCheckNodePort"] = s.health_check_node_port
    if s.type == "LoadBalancer":
        spec["allocateLoadBalancerNodePorts"] = True
    if s.session_affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": s.session_affinity_timeout or 10800}}
    ingress = [{"ip": i.ip, **({"ipMode": i.ip_mode} if i.ip_mode else {})} for i in s.lb_ingress]
    status = {"loadBalancer": {"ingress": ingress} if ingress else {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": spec, "status": status}


def _slice_doc(sl: EndpointSlice) -> dict:
    eps = []
    for e in sl.endpoints:
        c = e.conditions
        ep = {"addresses": list(e.addresses),
              "conditions": {"ready": c.ready, "serving": c.serving, "terminating": c.terminating}}
        if e.node_name:
            ep["nodeName"] = e.node_name
        if e.target_pod:
            ep["targetRef"] = {"kind": "Pod", "name": e.target_pod, "namespace": sl.namespace}
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": sl.address_type,
            "metadata": {"name": sl.name, "namespace": sl.namespace,
                         "labels": {SERVICE_NAME_LABEL: sl.service, MANAGED_BY_LABEL: MANAGED_BY}},
            "endpoints": eps,
            "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in sl.ports]}


def to_yaml(found: Synth) -> str:
    """The objects as one YAML `List` document (kubectl's shape: keys sorted, block style)."""
    items = ([_node_doc(n) for n in found.nodes] + [_service_doc(s) for s in found.services]
             + [_slice_doc(s) for s in found.slices])
    return dump({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})


# --------------------------------------------------------------------------- a small, safe YAML writer

_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*\Z")
_IPV4ISH = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?\Z")
#: Words YAML 1.1 (PyYAML) reads as booleans or null, in any case.
_RESERVED = frozenset(("y", "n", "yes", "no", "on", "off", "true", "false", "null"))


def quote(text: str) -> str:
    """A string as a YAML scalar that reads back as exactly that string.

    Names and dotted-quad addresses stay plain (kubectl's look); everything
    else is double-quoted, with escapes for every character outside printable ASCII."""
    if (_PLAIN.match(text) and text.lower() not in _RESERVED) or _IPV4ISH.match(text):
        return text
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _scalar(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, (list, tuple)) and not value:
        return "[]"
    raise TypeError(f"cannot write {type(value).__name__} as a YAML scalar")


def _map(d: dict, pad: str, out: list, lead: str | None = None) -> None:
    for n, key in enumerate(sorted(d)):
        value = d[key]
        head = (lead if n == 0 and lead is not None else pad) + quote(str(key)) + ":"
        if isinstance(value, dict) and value:
            out.append(head)
            _map(value, pad + "  ", out)
        elif isinstance(value, (list, tuple)) and value:
            out.append(head)
            _seq(value, pad, out)
        else:
            out.append(f"{head} {_scalar(value)}")


def _seq(items, pad: str, out: list) -> None:
    for item in items:
        if isinstance(item, dict) and item:
            _map(item, pad + "  ", out, lead=pad + "- ")
        elif isinstance(item, (list, tuple)) and item:
            out.append(pad + "-")
            _seq(item, pad + "  ", out)
        else:
            out.append(f"{pad}- {_scalar(item)}")


def dump(value) -> str:
    """`value` (dicts, lists, strings, numbers, booleans, None) as block-style YAML, keys sorted."""
    out: list = []
    if isinstance(value, dict) and value:
        _map(value, "", out)
    elif isinstance(value, (list, tuple)) and value:
        _seq(value, "", out)
    else:
        out.append(_scalar(value))
    return "\n".join(out) + "\n"
