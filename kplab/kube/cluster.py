"""The cluster kube-proxy watches: nodes, Deployments and their Pods, Services and EndpointSlices.

A `Cluster` is built from `Manifests` (what YAML said) or from objects given in
code, and does what the control plane would have done with them, deterministically:

* **Nodes.** The manifests' Nodes, or, when they give none, the two nodes of the
  lessons: `node-1` (192.168.0.2, Pods in 10.244.1.0/24) and `node-2`
  (192.168.0.3, 10.244.2.0/24), the standard node of DESIGN section 3 and its peer.
  A Node without `spec.podCIDR` gets the next free /24 of the cluster CIDR.
* **Pods.** Pods given explicitly (as `kubectl get pods -o yaml` shows them) are
  kept as they are: name, node, IP, readiness. They belong to the Deployment their
  ownerReferences name (`<deployment>-<pod-template-hash>` ReplicaSet), or, with no
  ownerReferences, to the first Deployment of their namespace whose selector they
  match. Each Deployment then gets Pods until it has `replicas` of them that are
  not terminating (a ReplicaSet does not count terminating Pods): names
  `<deployment>-<pod-template-hash>-<5 chars>`, scheduled on the node with the
  fewest Pods of that Deployment, then the fewest Pods in all, then the first in
  node order (the default scheduler's spreading, simplified), and an IP from that node's
  Pod CIDR the way the host-local IPAM plugin hands them out (the next free
  address after the last one it gave on that node, skipping the network address,
  the gateway .1 and the broadcast address).
* **Services.** A ClusterIP given is kept (it must lie in the Service CIDR and be
  unique); a missing one is picked from the Service CIDR by a hash of
  `namespace/name` (so adding a Service never moves another), skipping .0, .1 (the
  `kubernetes` Service's) and addresses in use. NodePort and LoadBalancer Services
  get node ports in 30000-32767 the same way, and a LoadBalancer with
  `externalTrafficPolicy: Local` a `healthCheckNodePort`.
* **EndpointSlices.** For each Service with a selector, as the EndpointSlice
  controller makes them: one endpoint per selected Pod with an IP; `ready` =
  ready and not terminating, `serving` = ready, `terminating`; ports resolved per
  Pod (a named targetPort through the Pod's container port of that name and
  protocol); Pods whose resolved ports differ go to different slices, at most 100
  endpoints a slice; a Service that selects no Pod gets one empty slice. EndpointSlices
  given explicitly for a Service replace the derived ones (and do not follow Pod changes).

**Immutable.** A Cluster never changes: `scale`, `set_ready`, `set_terminating`,
`delete_pod`, `add_service`, `remove_service`, `add_deployment` and `add_pod` each
return a new Cluster, and the one you had stays as it was (handy for comparing the
rules before and after). Pods that exist keep their name, node and IP across every
operation; the same inputs and operations always give the same cluster.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from dataclasses import dataclass

from ..errors import KplabError
from .manifests import Manifests, ManifestError, Origin, load, loads, origin_of
from .objects import (Deployment, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, Node, Pod,
                      ProxyConfig, Service, ServicePort)

__all__ = ["CLUSTER_CIDR", "Cluster", "ClusterError", "DEFAULT_NODES", "ManifestError", "NODE_PORT_RANGE",
           "SERVICE_CIDR", "ServiceEndpoint"]

SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.244.0.0/16"
NODE_PORT_RANGE = (30000, 32767)
NODE_CIDR_PREFIX = 24                      # kube-controller-manager's --node-cidr-mask-size for IPv4
MAX_SLICE_ENDPOINTS = 100                  # the EndpointSlice controller's default
DEFAULT_NODES = (Node("node-1", "192.168.0.2", "10.244.1.0/24"),
                 Node("node-2", "192.168.0.3", "10.244.2.0/24"))

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no 0/1/3).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class ClusterError(KplabError, ValueError):
    """A cluster operation that cannot be done: an unknown Pod, a negative scale, a full Pod CIDR."""


@dataclass(frozen=True)
class ServiceEndpoint:
    """One endpoint of one service port, as kube-proxy reads it from the slices."""

    service_port: str                      # "ns/svc:port" (or "ns/svc" for an unnamed port)
    address: str
    port: int
    protocol: str
    node: str | None
    pod: str | None
    conditions: EndpointConditions

    @property
    def hostport(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    # kube-proxy's reading of unset conditions: ready and serving true, terminating false.
    @property
    def ready(self) -> bool:
        return self.conditions.ready is not False

    @property
    def serving(self) -> bool:
        return self.conditions.serving is not False

    @property
    def terminating(self) -> bool:
        return self.conditions.terminating is True


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _encode(number: int, length: int) -> str:
    out = []
    for _ in range(length):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)


def _matches(selector, labels) -> bool:
    have = dict(labels)
    return all(have.get(k) == v for k, v in selector)


def _selector_text(selector) -> str:
    return ",".join(f"{k}={v}" for k, v in selector)


class Cluster:
    """Nodes, Deployments, Pods, Services and EndpointSlices, resolved (see the module doc).

    `Cluster(manifests)` or `Cluster(services=[...], deployments=[...], pods=[...],
    slices=[...], nodes=[...], proxy_config=...)`, or both (the keyword objects come
    after the manifests'). `Cluster.load(path, ...)` and `Cluster.from_yaml(text)`
    read YAML first. Problems with the objects raise `ManifestError`, naming the file
    and document when the object came from YAML.
    """

    def __init__(self, manifests: Manifests | None = None, *, services=(), deployments=(), pods=(), slices=(),
                 nodes=(), proxy_config: ProxyConfig | None = None, service_cidr: str = SERVICE_CIDR,
                 cluster_cidr: str | None = None, node_port_range: tuple = NODE_PORT_RANGE):
        m = manifests if manifests is not None else Manifests()
        if not isinstance(m, Manifests):
            raise ClusterError(f"Cluster() takes Manifests (from kplab.kube.manifests.load), not {type(m).__name__}")
        self._nodes, self._pods, self._slices, self._notes = (), {}, (), ()
        self._origins = dict(m.origins)
        self._options = {k: dict(v) for k, v in m.options.items()}
        self._warnings = list(m.warnings)
        self._proxy = proxy_config if proxy_config is not None else m.proxy_config
        try:
            self._service_cidr = ipaddress.ip_network(service_cidr)
            self._cluster_cidr = ipaddress.ip_network(
                cluster_cidr or (self._proxy.cluster_cidr if self._proxy and self._proxy.cluster_cidr
                                 else CLUSTER_CIDR))
        except ValueError as e:
            raise ClusterError(f"bad cluster setting: {e}") from None
        low, high = node_port_range
        if not 1 <= low <= high <= 65535:
            raise ClusterError(f"bad NodePort range {low}-{high}")
        self._node_port_range = (low, high)
        # Build state: filled in here, frozen once __init__ returns.
        self._nodes = self._resolve_nodes(tuple(m.nodes) + tuple(nodes))
        self._deployments = {}
        self._services = {}
        for d in tuple(m.deployments) + tuple(deployments):
            self._check_new("Deployment", d)
            self._deployments[f"{d.namespace}/{d.name}"] = d
        self._resolve_services(tuple(m.services) + tuple(services))
        self._given_slices = []
        slice_keys = set()
        for s in tuple(m.slices) + tuple(slices):
            if f"{s.namespace}/{s.name}" in slice_keys:
                raise self._where("EndpointSlice", f"{s.namespace}/{s.name}").error(
                    None, f"EndpointSlice {s.namespace}/{s.name} is defined twice")
            slice_keys.add(f"{s.namespace}/{s.name}")
            self._given_slices.append(s)
        self._pods = {}                                # "ns/name" -> Pod, in creation order
        self._ipam = {}                                # node name -> last offset handed out
        self._ordinals = {}                            # deployment key -> next name ordinal
        self._template_hash = {}                       # deployment key -> pod-template-hash
        self._resolve_pods(tuple(m.pods) + tuple(pods))
        placement, used = self._placement(), self._used_ips()
        for key in self._deployments:
            self._reconcile(key, initial=True, placement=placement, used=used)
        self._finish()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def load(cls, *paths: str, **kw) -> "Cluster":
        """The cluster the YAML files describe (multi-document, Lists, a KubeProxyConfiguration)."""
        return cls(load(*paths), **kw)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>", **kw) -> "Cluster":
        return cls(loads(text, source), **kw)

    # ------------------------------------------------------------------ traffic

    def network(self, **kw):
        """This cluster's nodes as kplab Nodes running kube-proxy's rules, joined
        by a wire (`kplab.kube.flow.ClusterNetwork`). Built once per Cluster, so
        conntrack is kept between `send` and `reply`."""
        net = self.__dict__.get("_network")
        if net is None or kw:
            from .flow import ClusterNetwork
            net = ClusterNetwork(self, **kw)
            self.__dict__["_network"] = net
        return net

    def send(self, from_: str, to: str, proto: str = "tcp", port: int | None = None, **kw):
        """The first packet of a connection from a Pod (or node, or external
        host) to a Service, ClusterIP:port, NodePort or Pod IP: a `Journey`
        across the nodes. See `ClusterNetwork.send`."""
        return self.network().send(from_, to, proto, port, **kw)

    def reply(self, journey):
        """The answer to a delivered journey, back through each node's conntrack."""
        return self.network().reply(journey)

    # ------------------------------------------------------------------ reading

    @property
    def warnings(self) -> tuple:
        """Things the YAML held that kplab skipped or reads in a particular way."""
        return tuple(self._warnings) + self._notes

    @property
    def service_cidr(self) -> str:
        return str(self._service_cidr)

    @property
    def cluster_cidr(self) -> str:
        return str(self._cluster_cidr)

    def nodes(self) -> tuple:
        return self._nodes

    def node(self, name: str) -> Node:
        for n in self._nodes:
            if n.name == name:
                return n
        raise ClusterError(f"no node {name!r} (nodes: {', '.join(n.name for n in self._nodes)})")

    def services(self) -> tuple:
        return tuple(self._services.values())

    def service(self, name) -> Service:
        """A Service by "ns/name", or by "name" when one namespace has it."""
        return self._services[self._key("Service", self._services, name)]

    def deployments(self) -> tuple:
        return tuple(self._deployments.values())

    def deployment(self, name) -> Deployment:
        return self._deployments[self._key("Deployment", self._deployments, name)]

    def pods(self, owner: str | None = None) -> tuple:
        """All Pods in creation order, or those of one Deployment ("ns/name" or "name")."""
        if owner is None:
            return tuple(self._pods.values())
        d = self.deployment(owner)
        return tuple(p for p in self._pods.values() if p.namespace == d.namespace and p.owner == d.name)

    def pod(self, name) -> Pod:
        return self._pods[self._key("Pod", self._pods, name)]

    def slices(self, service=None) -> tuple:
        """Every EndpointSlice (Service order), or the slices of one Service."""
        if service is None:
            return self._slices
        key = self._key("Service", self._services, service)
        ns, name = key.split("/", 1)
        return tuple(s for s in self._slices if s.namespace == ns and s.service == name)

    def endpoints(self, service_port: str) -> tuple:
        """The endpoints of one service port ("ns/svc:port", "ns/svc" for an unnamed port,
        or "svc:port"), as kube-proxy reads them: the slices' ports with the same name and
        protocol, first address of each endpoint, one per ip:port, sorted by "ip:port" text
        (kube-proxy's rule order)."""
        svc, port = self._service_port(service_port)
        spn = svc.port_name(port)
        found = {}
        for s in self.slices(svc.key):
            for ep_port in s.ports:
                if ep_port.name != port.name or ep_port.protocol != port.protocol:
                    continue
                for ep in s.endpoints:
                    e = ServiceEndpoint(spn, ep.addresses[0], ep_port.port, ep_port.protocol, ep.node_name,
                                        ep.target_pod, ep.conditions)
                    found.setdefault(e.hostport, e)
        return tuple(found[k] for k in sorted(found))

    def proxy_config(self, node_name: str | None = None, **overrides) -> ProxyConfig:
        """kube-proxy's settings on one node (default: the first): the loaded
        KubeProxyConfiguration (or the defaults, with this cluster's CIDR, when none
        was given), the node's name and IP, and `overrides` (any ProxyConfig field,
        e.g. `random_fully=False`, `node_ips=(...)`).

        `cluster_cidr` is the CIDR of the local-traffic detector: the configuration's
        clusterCIDR (None when it gives none: no detector), or the node's Pod CIDR with
        `detectLocalMode: NodeCIDR`."""
        node = self._nodes[0] if node_name is None else self.node(node_name)
        base = self._proxy if self._proxy is not None else ProxyConfig(cluster_cidr=self.cluster_cidr)
        cidr = node.pod_cidr if base.detect_local_mode == "NodeCIDR" else base.cluster_cidr
        config = dataclasses.replace(base, node_name=node.name, node_ips=(node.ip,), cluster_cidr=cidr)
        try:
            return dataclasses.replace(config, **overrides)
        except TypeError as e:
            raise ClusterError(f"proxy_config: {e}") from None

    def origin(self, kind: str, name: str) -> str:
        """Where an object came from ("seed.yaml: document 3 (Service default/backend)")."""
        return str(origin_of(kind, name, self._origins))

    def __repr__(self) -> str:
        return (f"<Cluster: {len(self._nodes)} nodes, {len(self._deployments)} deployments, {len(self._pods)} pods, "
                f"{len(self._services)} services, {len(self._slices)} endpoint slices>")

    # ------------------------------------------------------------------ operations (each returns a new Cluster)

    def scale(self, deployment, replicas: int, *, graceful: bool = False) -> "Cluster":
        """`kubectl scale`: the Deployment gets `replicas` Pods that are not terminating.
        Scaling up adds Pods (existing ones keep name, node and IP); scaling down removes
        Pods that are not ready first, then the newest. With `graceful=True` the removed
        Pods stay as terminating (their endpoints say so) until `delete_pod`."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ClusterError(f"replicas must be a whole number, 0 or more (got {replicas!r})")
        out = self._clone()
        key = out._key("Deployment", out._deployments, deployment)
        out._deployments[key] = dataclasses.replace(out._deployments[key], replicas=replicas)
        out._reconcile(key, graceful=graceful)
        out._finish()
        return out

    def set_ready(self, pod, ready: bool = True) -> "Cluster":
        """The Pod passes (or fails) its readiness probe."""
        return self._update_pod(pod, ready=bool(ready))

    def set_terminating(self, pod, terminating: bool = True) -> "Cluster":
        """The Pod is being deleted (metadata.deletionTimestamp set) but still runs.
        Only the Pod changes: its Deployment starts no replacement until the next
        `scale` (Kubernetes would start one at once)."""
        return self._update_pod(pod, terminating=bool(terminating))

    def delete_pod(self, pod, *, replace: bool = True) -> "Cluster":
        """The Pod is gone. If a Deployment owns it, the Deployment starts a replacement
        (new name, an IP the IPAM hands out next), as Kubernetes does; with
        `replace=False` the Deployment's replicas drop by one instead."""
        out = self._clone()
        key = out._key("Pod", out._pods, pod)
        gone = out._pods.pop(key)
        dkey = f"{gone.namespace}/{gone.owner}" if gone.owner else None
        if dkey in out._deployments:
            if not replace and not gone.terminating:
                d = out._deployments[dkey]
                out._deployments[dkey] = dataclasses.replace(d, replicas=max(0, d.replicas - 1))
            out._reconcile(dkey)
        out._finish()
        return out

    def add_service(self, service: Service, *, allocate_node_ports: bool = True,
                    publish_not_ready: bool = False) -> "Cluster":
        """A new Service (ClusterIP and node ports allocated when not given)."""
        out = self._clone()
        out._options[("Service", service.key)] = {"allocate_node_ports": allocate_node_ports,
                                                 "publish_not_ready": publish_not_ready}
        out._resolve_services((service,))
        out._finish()
        return out

    def remove_service(self, service) -> "Cluster":
        out = self._clone()
        key = out._key("Service", out._services, service)
        del out._services[key]
        out._finish()
        return out

    def add_deployment(self, deployment: Deployment) -> "Cluster":
        """A new Deployment; its Pods are scheduled and get IPs."""
        out = self._clone()
        out._check_new("Deployment", deployment)
        key = f"{deployment.namespace}/{deployment.name}"
        out._deployments[key] = deployment
        out._reconcile(key)
        out._finish()
        return out

    def add_pod(self, pod: Pod) -> "Cluster":
        """A Pod given whole (a node and an IP are picked when it has none)."""
        out = self._clone()
        out._resolve_pods((pod,))
        out._finish()
        return out

    # ------------------------------------------------------------------ internals

    def _clone(self) -> "Cluster":
        out = object.__new__(Cluster)
        out.__dict__.update(self.__dict__)
        out.__dict__.pop("_network", None)     # a changed cluster runs its own rules, not its parent's
        for name in ("_deployments", "_services", "_pods", "_ipam", "_ordinals", "_template_hash", "_options",
                     "_origins"):
            setattr(out, name, dict(getattr(self, name)))
        out._given_slices = list(self._given_slices)
        out._warnings = list(self._warnings)
        return out

    def _where(self, kind: str, key: str) -> Origin:
        return origin_of(kind, key, self._origins)

    def _place_of(self, kind: str, key: str) -> str:
        place = self._where(kind, key).place
        return f" ({place})" if place else ""

    def _key(self, kind: str, table: dict, ref) -> str:
        """The "ns/name" key of an object given as an object, "ns/name" or "name"."""
        if hasattr(ref, "namespace") and hasattr(ref, "name"):
            ref = f"{ref.namespace}/{ref.name}"
        if not isinstance(ref, str):
            raise ClusterError(f"a {kind} is named by \"namespace/name\" or \"name\", not {ref!r}")
        if ref in table:
            return ref
        if "/" not in ref:
            found = [k for k in table if k.split("/", 1)[1] == ref]
            if f"default/{ref}" in table:
                return f"default/{ref}"
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ClusterError(f"{kind} {ref!r} is in several namespaces ({', '.join(found)}): "
                                   "say which with \"namespace/name\"")
        known = ", ".join(list(table)[:20]) or "none"
        raise ClusterError(f"no {kind} {ref!r} (known: {known}{', ...' if len(table) > 20 else ''})")

    def _service_port(self, text: str):
        name, _, port_name = text.partition(":")
        svc = self.service(name)
        for p in svc.ports:
            if p.name == port_name:
                return svc, p
        if not port_name and len(svc.ports) == 1:
            return svc, svc.ports[0]
        names = ", ".join(svc.port_name(p) for p in svc.ports)
        raise ClusterError(f"Service {svc.key} has no port {port_name!r} (its ports: {names})")

    def _check_new(self, kind: str, obj):
        key = f"{obj.namespace}/{obj.name}"
        table = {"Deployment": self._deployments, "Service": self._services}[kind]
        if key in table:
            raise self._where(kind, key).error(None, f"{kind} {key} is defined twice")

    # Nodes ---------------------------------------------------------------

    def _resolve_nodes(self, nodes) -> tuple:
        if not nodes:
            return DEFAULT_NODES
        names, ips, out = {}, {}, []
        for n in nodes:
            where = self._where("Node", n.name)
            if n.name in names:
                raise where.error(None, f"Node {n.name} is defined twice")
            try:
                ip = str(ipaddress.ip_address(n.ip))
            except ValueError:
                raise where.error("status.addresses", f"{n.ip!r} is not an IP address") from None
            if ip in ips:
                raise where.error("status.addresses", f"{ip} is already the IP of Node {ips[ip]}")
            names[n.name], ips[ip] = True, n.name
            out.append(dataclasses.replace(n, ip=ip))
        taken = [ipaddress.ip_network(n.pod_cidr) for n in out if n.pod_cidr]
        for i, a in enumerate(taken):
            for b in taken[i + 1:]:
                if a.overlaps(b):
                    owner = [n.name for n in out if n.pod_cidr in (str(a), str(b))]
                    raise self._where("Node", owner[-1]).error(
                        "spec.podCIDR", f"{b} overlaps the Pod CIDR {a} of Node {owner[0]}")
        free = self._free_node_cidrs(taken)
        for i, n in enumerate(out):
            if n.pod_cidr is None:
                try:
                    out[i] = dataclasses.replace(n, pod_cidr=str(next(free)))
                except StopIteration:
                    raise ClusterError(f"the cluster CIDR {self._cluster_cidr} has no free /{NODE_CIDR_PREFIX} "
                                       f"left for Node {n.name}") from None
        return tuple(out)

    def _free_node_cidrs(self, taken):
        prefix = max(NODE_CIDR_PREFIX, self._cluster_cidr.prefixlen)
        subnets = list(self._cluster_cidr.subnets(new_prefix=prefix)) if prefix > self._cluster_cidr.prefixlen \
            else [self._cluster_cidr]
        # Start at the second /24 (node-1 = 10.244.1.0/24, as in the lessons); the first comes last.
        for net in subnets[1:] + subnets[:1]:
            if not any(net.overlaps(t) for t in taken):
                taken.append(net)
                yield net

    # Services --------------------------------------------------------------

    def _resolve_services(self, services):
        """Check and add Services, given addresses first, then allocations in order."""
        used_ips = {s.cluster_ip: s.key for s in self._services.values() if s.cluster_ip not in (None, "None")}
        used_ports = {}                          # node port -> (service key, protocols)
        for s in self._services.values():
            for p in s.ports:
                if p.node_port:
                    used_ports.setdefault(p.node_port, (s.key, set()))[1].add(p.protocol)
            if s.health_check_node_port:
                used_ports.setdefault(s.health_check_node_port, (s.key, set()))[1].add("health check")
        for svc in services:
            self._check_new("Service", svc)
            where = self._where("Service", svc.key)
            if svc.cluster_ip not in (None, "None"):
                self._check_cluster_ip(svc, where, used_ips)
                used_ips[svc.cluster_ip] = svc.key
            self._check_node_ports(svc, where, used_ports)
            self._services[svc.key] = svc                # placeholder, so a duplicate in `services` is caught
        for svc in services:
            self._services[svc.key] = self._allocate(svc, used_ips, used_ports)

    def _check_cluster_ip(self, svc: Service, where: Origin, used_ips: dict):
        try:
            ip = ipaddress.ip_address(svc.cluster_ip)
        except ValueError:
            raise where.error("spec.clusterIP", f"{svc.cluster_ip!r} is not an IP address") from None
        net = self._service_cidr
        if ip.version != net.version or ip not in net:
            raise where.error("spec.clusterIP", f"{ip} is outside the Service CIDR {net}",
                              hint="pick an address in it, or leave clusterIP out to have one allocated")
        if ip in (net.network_address, net.broadcast_address):
            raise where.error("spec.clusterIP", f"{ip} is the {'network' if ip == net.network_address else 'broadcast'}"
                              f" address of the Service CIDR {net}")
        if str(ip) in used_ips:
            other = used_ips[str(ip)]
            raise where.error("spec.clusterIP", f"{ip} is already the ClusterIP of Service {other}"
                              + self._place_of("Service", other),
                              hint="give each Service its own, or leave clusterIP out to have one allocated")

    def _check_node_ports(self, svc: Service, where: Origin, used_ports: dict):
        low, high = self._node_port_range
        given = [(f"spec.ports[{i}].nodePort", p.node_port, p.protocol) for i, p in enumerate(svc.ports)
                 if p.node_port]
        if svc.health_check_node_port:
            given.append(("spec.healthCheckNodePort", svc.health_check_node_port, "health check"))
        for path, port, proto in given:
            if not low <= port <= high:
                raise where.error(path, f"{port} is outside the NodePort range {low}-{high}",
                                  hint="pick a port in the range, or leave nodePort out to have one allocated")
            owner, protos = used_ports.get(port, (svc.key, set()))
            if owner != svc.key:
                raise where.error(path, f"{port} is already a node port of Service {owner}"
                                  + self._place_of("Service", owner),
                                  hint="give each Service its own, or leave nodePort out to have one allocated")
            if proto in protos or (protos and "health check" in protos | {proto}):
                raise where.error(path, f"{port} is given twice in this Service")
            used_ports.setdefault(port, (svc.key, set()))[1].add(proto)

    def _allocate(self, svc: Service, used_ips: dict, used_ports: dict) -> Service:
        changes = {}
        if svc.cluster_ip is None and svc.type != "ExternalName":
            net = self._service_cidr
            size = net.num_addresses
            if size < 8:
                raise ClusterError(f"the Service CIDR {net} is too small")
            span = size - 3                             # offsets 2 .. size-2
            start = _hash(svc.key) % span
            for step in range(span):
                ip = str(net.network_address + 2 + (start + step) % span)
                if ip not in used_ips:
                    break
            else:
                raise ClusterError(f"the Service CIDR {net} is full: no ClusterIP for Service {svc.key}")
            used_ips[ip] = svc.key
            changes["cluster_ip"] = ip
        options = self._options.get(("Service", svc.key), {})
        if svc.type in ("NodePort", "LoadBalancer"):
            wants = svc.type == "NodePort" or options.get("allocate_node_ports", True)
            ports = []
            for p in svc.ports:
                if p.node_port is None and wants:
                    p = dataclasses.replace(p, node_port=self._node_port(f"{svc.key}:{p.name or p.port}/{p.protocol}",
                                                                         svc.key, p.protocol, used_ports))
                ports.append(p)
            changes["ports"] = tuple(ports)
        if (svc.type == "LoadBalancer" and svc.external_traffic_policy == "Local"
                and svc.health_check_node_port is None):
            changes["health_check_node_port"] = self._node_port(f"{svc.key}:healthCheckNodePort", svc.key,
                                                                "health check", used_ports)
        return dataclasses.replace(svc, **changes) if changes else svc

    def _node_port(self, seed: str, key: str, proto: str, used_ports: dict) -> int:
        low, high = self._node_port_range
        span = high - low + 1
        start = _hash(seed) % span
        for step in range(span):
            port = low + (start + step) % span
            if port not in used_ports:
                used_ports[port] = (key, {proto})
                return port
        raise ClusterError(f"the NodePort range {low}-{high} is full: no node port for Service {key}")

    # Pods ----------------------------------------------------------------

    def _used_ips(self) -> set:
        return {p.ip for p in self._pods.values() if p.ip} | {n.ip for n in self._nodes}

    def _resolve_pods(self, pods):
        node_ips = {n.ip: n for n in self._nodes}
        node_names = {n.name for n in self._nodes}
        ip_owner = {p.ip: p for p in self._pods.values() if p.ip}
        owners = {}
        for pod in pods:                                  # given addresses are reserved before any allocation
            key = f"{pod.namespace}/{pod.name}"
            where = self._where("Pod", key)
            if key in self._pods or key in owners:
                raise where.error(None, f"Pod {key} is defined twice")
            if pod.ip is not None:
                try:
                    ipaddress.ip_address(pod.ip)
                except ValueError:
                    raise where.error("status.podIP", f"{pod.ip!r} is not an IP address") from None
                other = ip_owner.get(pod.ip)
                if other is not None and pod.ip not in node_ips:
                    raise where.error("status.podIP", f"{pod.ip} is already the IP of Pod "
                                      f"{other.namespace}/{other.name}")
                ip_owner[pod.ip] = pod
            if pod.node is not None and pod.node not in node_names:
                raise where.error("spec.nodeName", f"node \"{pod.node}\" is not in this cluster (nodes: "
                                  f"{', '.join(n.name for n in self._nodes)})",
                                  hint="add a Node object for it")
            owners[key] = dataclasses.replace(pod, owner=self._owner_of(pod, key))
            self._pods[key] = owners[key]                 # placeholder: reserves the IP and node
        used = self._used_ips()
        placement = self._placement()
        for key, pod in owners.items():
            options = self._options.get(("Pod", key), {})
            node = self._place(pod, placement)
            ip = pod.ip
            if ip is None:
                ip = node.ip if options.get("host_network") else self._allocate_ip(node, used)
            elif ip not in node_ips and ipaddress.ip_address(ip) not in ipaddress.ip_network(node.pod_cidr):
                self._warnings.append(f"{self._where('Pod', key)}: status.podIP {ip} is outside the Pod CIDR "
                                      f"{node.pod_cidr} of its node {node.name}")
            self._pods[key] = dataclasses.replace(pod, node=node.name, ip=ip)
            if pod.owner and options.get("template_hash"):
                self._template_hash.setdefault(f"{pod.namespace}/{pod.owner}", options["template_hash"])

    def _owner_of(self, pod: Pod, key: str) -> str | None:
        options = self._options.get(("Pod", key), {})
        if pod.owner is not None:
            return pod.owner if f"{pod.namespace}/{pod.owner}" in self._deployments else None
        if options.get("owner_refs"):
            return None
        for d in self._deployments.values():
            if d.namespace == pod.namespace and d.selector and _matches(d.selector, pod.labels):
                return d.name
        return None

    def _place(self, pod: Pod, placement) -> Node:
        if pod.node is not None:
            node = self.node(pod.node)
        else:
            node = None
            if pod.ip is not None:
                addr = ipaddress.ip_address(pod.ip)
                node = next((n for n in self._nodes
                             if n.ip == pod.ip or addr in ipaddress.ip_network(n.pod_cidr)), None)
            if node is None:
                node = self._schedule(pod.namespace, pod.owner, placement)
        if not pod.terminating:
            self._count(placement, pod.namespace, pod.owner, node.name)
        return node

    def _placement(self):
        """How many (not terminating) Pods each node runs: per (namespace, owner), and in all."""
        by_owner, totals = {}, {}
        for p in self._pods.values():
            if p.node and not p.terminating:
                self._count((by_owner, totals), p.namespace, p.owner, p.node)
        return by_owner, totals

    @staticmethod
    def _count(placement, namespace, owner, node_name):
        by_owner, totals = placement
        mine = by_owner.setdefault((namespace, owner), {})
        mine[node_name] = mine.get(node_name, 0) + 1
        totals[node_name] = totals.get(node_name, 0) + 1

    def _schedule(self, namespace: str, owner: str | None, placement) -> Node:
        """Spread like the default scheduler, simplified: the node with the fewest Pods of
        the same owner, then the fewest Pods in all, then the first in node order."""
        by_owner, totals = placement
        mine = by_owner.get((namespace, owner), {})
        order = {n.name: i for i, n in enumerate(self._nodes)}
        return min(self._nodes, key=lambda n: (mine.get(n.name, 0), totals.get(n.name, 0), order[n.name]))

    def _allocate_ip(self, node: Node, used: set) -> str:
        """host-local IPAM: the next free address after the last one handed out on this node."""
        net = ipaddress.ip_network(node.pod_cidr)
        span = net.num_addresses - 3                       # offsets 2 .. size-2
        if span < 1:
            raise ClusterError(f"the Pod CIDR {net} of node {node.name} is too small for Pods")
        last = self._ipam.get(node.name)
        start = 0 if last is None else (last - 2 + 1) % span
        for step in range(span):
            offset = 2 + (start + step) % span
            ip = str(net.network_address + offset)
            if ip not in used:
                self._ipam[node.name] = offset
                used.add(ip)
                return ip
        raise ClusterError(f"the Pod CIDR {net} of node {node.name} has no free address for another Pod "
                           f"({span} addresses): lower the Deployments' replicas, or add nodes")

    # Deployments ---------------------------------------------------------------

    def _hash_of(self, key: str) -> str:
        if key not in self._template_hash:
            d = self._deployments[key]
            text = f"{key}|{sorted(d.labels)}|{[(p.port, p.name, p.protocol) for p in d.ports]}"
            self._template_hash[key] = _encode(_hash(text), 10)
        return self._template_hash[key]

    def _reconcile(self, key: str, *, initial: bool = False, graceful: bool = False, placement=None, used=None):
        """Give the Deployment exactly `replicas` Pods that are not terminating."""
        d = self._deployments[key]
        mine = [p for p in self._pods.values() if p.namespace == d.namespace and p.owner == d.name]
        active = [p for p in mine if not p.terminating]
        if len(active) > d.replicas:
            if initial:                                    # given Pods are facts: keep them all
                self._warnings.append(f"{self._where('Deployment', key)}: replicas is {d.replicas} but "
                                      f"{len(active)} of its Pods are given; all are kept")
                return
            order = {k: i for i, k in enumerate(self._pods)}
            victims = sorted(active, key=lambda p: (p.ready, -order[f"{p.namespace}/{p.name}"]))
            for p in victims[: len(active) - d.replicas]:
                pkey = f"{p.namespace}/{p.name}"
                if graceful:
                    self._pods[pkey] = dataclasses.replace(p, terminating=True)
                else:
                    del self._pods[pkey]
            return
        missing = d.replicas - len(active)
        if missing <= 0:
            return
        if used is None:
            used = self._used_ips()
        if placement is None:
            placement = self._placement()
        template_hash = self._hash_of(key)
        labels = d.labels if any(k == "pod-template-hash" for k, _ in d.labels) else \
            d.labels + (("pod-template-hash", template_hash),)
        for _ in range(missing):
            ordinal = self._ordinals.get(key, 0)
            while True:
                name = f"{d.name}-{template_hash}-{_encode(_hash(f'{key}/{template_hash}/{ordinal}'), 5)}"
                ordinal += 1
                if f"{d.namespace}/{name}" not in self._pods:
                    break
            self._ordinals[key] = ordinal
            node = self._schedule(d.namespace, d.name, placement)
            self._count(placement, d.namespace, d.name, node.name)
            pod = Pod(namespace=d.namespace, name=name, labels=labels, ip=self._allocate_ip(node, used),
                      node=node.name, ports=d.ports, ready=d.ready, terminating=False, owner=d.name)
            self._pods[f"{d.namespace}/{name}"] = pod

    def _update_pod(self, pod, **changes) -> "Cluster":
        out = self._clone()
        key = out._key("Pod", out._pods, pod)
        out._pods[key] = dataclasses.replace(out._pods[key], **changes)
        out._finish()
        return out

    # EndpointSlices ---------------------------------------------------------------

    def _finish(self):
        """Derive the EndpointSlices; check named targetPorts."""
        given = {}
        for s in self._given_slices:
            given.setdefault((s.namespace, s.service), []).append(s)
        index = {}                                     # (namespace, label, value) -> Pods with it
        for p in self._pods.values():
            if p.ip:
                for k, v in p.labels:
                    index.setdefault((p.namespace, k, v), []).append(p)
        out = []
        for svc in self._services.values():
            if (svc.namespace, svc.name) in given:
                out.extend(given.pop((svc.namespace, svc.name)))
            elif svc.selector is not None and svc.type != "ExternalName":
                out.extend(self._derive(svc, index))
        notes = []
        for (ns, name), slices in given.items():
            out.extend(slices)
            notes.append(f"{self._where('EndpointSlice', f'{ns}/{slices[0].name}')}: names Service {ns}/{name}, "
                         "which is not in the cluster")
        self._slices = tuple(out)
        self._notes = tuple(notes)

    def _derive(self, svc: Service, index: dict) -> list:
        # the Pods carrying the selector's rarest label, in creation order, then the whole selector
        fewest = min((index.get((svc.namespace, k, v), ()) for k, v in svc.selector), key=len, default=None)
        if fewest is None:                             # an empty selector selects nothing (it is stored as none)
            fewest = ()
        selected = [p for p in fewest if _matches(svc.selector, p.labels)]
        where = self._where("Service", svc.key)
        for i, sp in enumerate(svc.ports):
            if isinstance(sp.target_port, str) and selected and not any(
                    self._container_port(p, sp) is not None for p in selected):
                declared = sorted({f"{c.name or '(unnamed)'}/{c.protocol} {c.port}" for p in selected for c in p.ports})
                raise where.error(
                    f"spec.ports[{i}].targetPort",
                    f"no container port named \"{sp.target_port}\" ({sp.protocol}) in the Pods the selector "
                    f"{_selector_text(svc.selector)} selects (they declare: {', '.join(declared) or 'no ports'})",
                    hint="name one of the ports the containers declare, or give the port number")
        publish = self._options.get(("Service", svc.key), {}).get("publish_not_ready", False)
        groups = {}
        for p in selected:
            ports = []
            for sp in svc.ports:
                number = self._container_port(p, sp)
                if number is not None:
                    ports.append(EndpointPort(port=number, name=sp.name, protocol=sp.protocol))
            family = "IPv6" if ":" in p.ip else "IPv4"
            serving = p.ready
            conditions = EndpointConditions(ready=publish or (serving and not p.terminating), serving=serving,
                                            terminating=p.terminating)
            groups.setdefault((family, tuple(ports)), []).append(
                Endpoint(addresses=(p.ip,), conditions=conditions, node_name=p.node, target_pod=p.name))
        if not groups:
            groups[("IPv4", ())] = []                     # the controller's placeholder slice
        slices, index = [], 0
        for (family, ports), endpoints in groups.items():
            for start in range(0, max(1, len(endpoints)), MAX_SLICE_ENDPOINTS):
                name = f"{svc.name[:57]}-{_encode(_hash(f'{svc.key}#slice{index}'), 5)}"
                index += 1
                slices.append(EndpointSlice(namespace=svc.namespace, name=name, service=svc.name,
                                            endpoints=tuple(endpoints[start:start + MAX_SLICE_ENDPOINTS]),
                                            ports=ports, address_type=family))
        return slices

    @staticmethod
    def _container_port(pod: Pod, sp: ServicePort) -> int | None:
        """The port a service port sends to on this Pod (Kubernetes' FindPort)."""
        if sp.target_port is None:
            return sp.port
        if isinstance(sp.target_port, int):
            return sp.target_port
        for c in pod.ports:
            if c.name == sp.target_port and c.protocol == sp.protocol:
                return c.port
        return None
