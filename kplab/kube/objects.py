"""Kubernetes objects as kube-proxy sees them: plain, immutable values.

Only the fields that decide the rules a node gets are modelled. Names follow
the Kubernetes API (`clusterIP` -> `cluster_ip`); optional API fields keep
`None` for "unset", because kube-proxy treats an unset field differently from
an explicit default in places (an endpoint's `ready` unset counts as true).
"""
from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service. `name` "" is an unnamed port (the service port
    name is then `ns/svc`, without `:port`). `target_port` is a number or the
    name of a container port."""

    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | str | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class LoadBalancerIngress:
    ip: str
    ip_mode: str | None = None          # None means VIP; "Proxy" skips the node's rules


@dataclass(frozen=True)
class Service:
    """A Service. `type` None means the manifest left it unset (ClusterIP)."""

    namespace: str
    name: str
    ports: tuple = ()
    type: str | None = None
    cluster_ip: str | None = None
    selector: tuple | None = None        # ((key, value), ...) or None for no selector
    external_ips: tuple = ()
    lb_ingress: tuple = ()               # LoadBalancerIngress, ...
    lb_source_ranges: tuple = ()
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    health_check_node_port: int | None = None
    session_affinity: str | None = None  # "ClientIP" or None/"None"
    session_affinity_timeout: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def port_name(self, port: ServicePort) -> str:
        """The service port name kube-proxy uses in comments and hashes."""
        return f"{self.key}:{port.name}" if port.name else self.key


@dataclass(frozen=True)
class EndpointConditions:
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


@dataclass(frozen=True)
class Endpoint:
    addresses: tuple
    conditions: EndpointConditions = field(default_factory=EndpointConditions)
    node_name: str | None = None
    target_pod: str | None = None


@dataclass(frozen=True)
class EndpointPort:
    port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class EndpointSlice:
    """The endpoints of (part of) one Service, for one address family."""

    namespace: str
    name: str
    service: str                         # the kubernetes.io/service-name label
    endpoints: tuple = ()
    ports: tuple = ()
    address_type: str = "IPv4"


@dataclass(frozen=True)
class ContainerPort:
    port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: tuple = ()                   # ((key, value), ...)
    ip: str | None = None
    node: str | None = None
    ports: tuple = ()                    # ContainerPort, ...
    ready: bool = True
    terminating: bool = False
    owner: str | None = None             # the Deployment that made it


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    replicas: int = 1
    selector: tuple = ()                 # ((key, value), ...) matchLabels
    labels: tuple = ()                   # the Pod template's labels
    ports: tuple = ()                    # ContainerPort, ... of the template
    ready: bool = True                   # whether its Pods pass their readiness probe


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    pod_cidr: str | None = None


@dataclass(frozen=True)
class ProxyConfig:
    """What kube-proxy's own configuration (KubeProxyConfiguration and
    command line) says, plus facts about the node it runs on."""

    node_name: str = "node-1"
    node_ips: tuple = ()                 # the node's addresses (first: the primary node IP)
    cluster_cidr: str | None = "10.244.0.0/16"    # None: no local-traffic detector
    masquerade_all: bool = False
    masquerade_bit: int = 14
    localhost_nodeports: bool = True
    nodeport_addresses: tuple | None = None        # None: all local addresses
    detect_local_mode: str = "ClusterCIDR"
    tcp_be_liberal: bool = False
    random_fully: bool = True
    nfacct: bool = True
    ip_family: int = 4

    @property
    def masquerade_mark(self) -> str:
        """The mark as kube-proxy formats it (Go's %#08x: 0x00004000 for bit 14)."""
        return "0x" + format(1 << self.masquerade_bit, "08x")
