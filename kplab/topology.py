"""One node's interfaces, addresses and routes: where packets come from and go.

The standard node (DESIGN section 3) is the one the CLI, the lessons and the
kernel tests share, so that a simulated trace and a kernel run can be
compared field by field: a node with one veth per local Pod (Calico-style
routing: the node holds the Pod gateway address on every veth and a /32 route
to each Pod) and `eth0` towards a peer that stands for the other node and the
outside world.
"""
from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import dataclass

from .errors import TopologyError
from .packet import ip

STANDARD = {
    "node": {"ip": "192.168.0.2/24", "iface": "eth0", "pod_cidr": "10.244.1.0/24",
             "pod_gateway": "10.244.1.1", "local_ips": [], "route_localnet": False},
    "pods": [{"name": "client", "ip": "10.244.1.7"},
             {"name": "backend1", "ip": "10.244.1.3"},
             {"name": "backend2", "ip": "10.244.1.4"}],
    "peer": {"gateway_ip": "192.168.0.1", "node_ip": "192.168.0.3", "pod_cidr": "10.244.2.0/24",
             "pods": [{"name": "remote1", "ip": "10.244.2.5"}],
             "externals": [{"name": "external", "ip": "198.51.100.10"}]},
}

#: The same shape in IPv6 addresses, used for ip6tables rulesets.
STANDARD_V6 = {
    "node": {"ip": "2001:db8::2/64", "iface": "eth0", "pod_cidr": "fd00:10:244:1::/64",
             "pod_gateway": "fd00:10:244:1::1", "local_ips": [], "route_localnet": False},
    "pods": [{"name": "client", "ip": "fd00:10:244:1::7"},
             {"name": "backend1", "ip": "fd00:10:244:1::3"},
             {"name": "backend2", "ip": "fd00:10:244:1::4"}],
    "peer": {"gateway_ip": "2001:db8::1", "node_ip": "2001:db8::3", "pod_cidr": "fd00:10:244:2::/64",
             "pods": [{"name": "remote1", "ip": "fd00:10:244:2::5"}],
             "externals": [{"name": "external", "ip": "2001:db8:100::10"}]},
}

#: Cluster-wide facts the lessons and `render` use.
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.244.0.0/16"
NODE_NAME = "node-1"


@dataclass(frozen=True)
class Route:
    """Where routing sends a packet: `iface` (`lo` for this host), the
    next-hop `gateway` (None when directly reachable) and the source address
    the host picks for packets it creates."""

    iface: str
    gateway: str | None
    src: str
    local: bool = False


@dataclass(frozen=True)
class Origin:
    """Where a packet enters the node: created locally, or arriving on `iface`."""

    name: str
    local: bool
    iface: str | None
    src: str | None


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_shape(spec, base, path="topology"):
    """Refuse keys the standard node does not have and values of the wrong
    kind, naming the key (`topology.pods[1].ip: expected text, got 5`)."""
    if not isinstance(spec, dict):
        raise TopologyError(f"{path}: expected an object with the keys {', '.join(base)}, got {spec!r}")
    for key, value in spec.items():
        where = f"{path}.{key}"
        if key not in base and key != "host_iface":
            raise TopologyError(f"{where}: unknown key (known: {', '.join(base)})")
        want = base.get(key)
        if isinstance(want, dict):
            _check_shape(value, want, where)
        elif isinstance(want, list):
            if not isinstance(value, list):
                raise TopologyError(f"{where}: expected a list, got {value!r}")
            item = want[0] if want and isinstance(want[0], dict) else None
            for k, v in enumerate(value):
                if item is not None:
                    if not isinstance(v, dict) or "name" not in v or "ip" not in v:
                        raise TopologyError(f"{where}[{k}]: expected {{\"name\": ..., \"ip\": ...}}, got {v!r}")
                    _check_shape(v, dict(item, host_iface=""), f"{where}[{k}]")
                elif not isinstance(v, str):
                    raise TopologyError(f"{where}[{k}]: expected an address as text, got {v!r}")
        elif isinstance(want, bool):
            if not isinstance(value, bool):
                raise TopologyError(f"{where}: expected true or false, got {value!r}")
        elif not isinstance(value, str):
            raise TopologyError(f"{where}: expected text, got {value!r}")


class Topology:
    """The addresses and routes of one node and of what lies beyond it."""

    def __init__(self, spec: dict | None = None, family: int = 4):
        base = STANDARD if family == 4 else STANDARD_V6
        _check_shape(spec or {}, base)
        self.spec = _merge(base, spec or {})
        try:
            self._build()
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, TopologyError):
                raise
            raise TopologyError(f"bad topology: {e}") from None

    @classmethod
    def load(cls, path: str, family: int = 4) -> "Topology":
        try:
            with open(path, encoding="utf-8") as f:
                spec = json.load(f)
        except OSError as e:
            raise TopologyError(f"{path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise TopologyError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        if not isinstance(spec, dict):
            raise TopologyError(f"{path}: a topology is a JSON object")
        return cls(spec, family)

    def _build(self):
        s = self.spec
        node = s["node"]
        self.node_if = ipaddress.ip_interface(node["ip"])
        self.family = self.node_if.version
        self.iface = node["iface"]
        self.pod_cidr = ipaddress.ip_network(node["pod_cidr"])
        self.pod_gateway = str(ipaddress.ip_address(node["pod_gateway"]))
        self.local_ips = [str(ipaddress.ip_address(a)) for a in node.get("local_ips", [])]
        # net.ipv4.conf.all.route_localnet: may a packet from 127.0.0.0/8 be
        # routed off the host? Off on a fresh host; kube-proxy turns it on for
        # localhost NodePorts.
        self.route_localnet = bool(node.get("route_localnet", False))
        self.pods = []            # (name, ip, host iface)
        seen_if = {}
        names = set()
        for p in s["pods"]:
            name = p["name"]
            addr = str(ipaddress.ip_address(p["ip"]))
            hif = p.get("host_iface") or f"veth-{name}"[:15]
            if hif in seen_if:
                raise TopologyError(f"Pods {seen_if[hif]!r} and {name!r} would both use interface {hif!r}: "
                                    "give one a host_iface")
            seen_if[hif] = name
            self._name(names, name)
            self.pods.append((name, addr, hif))
        peer = s["peer"]
        self.gateway = str(ipaddress.ip_address(peer["gateway_ip"]))
        self.peer_node = str(ipaddress.ip_address(peer["node_ip"]))
        self.peer_pods = [(p["name"], str(ipaddress.ip_address(p["ip"]))) for p in peer.get("pods", [])]
        self.externals = [(p["name"], str(ipaddress.ip_address(p["ip"]))) for p in peer.get("externals", [])]
        for n, _ in self.peer_pods + self.externals:
            self._name(names, n)
        for reserved in ("node", "peer"):
            if reserved in names:
                raise TopologyError(f"{reserved!r} is a reserved name; rename that Pod or host")
        for a in [str(self.node_if.ip), self.pod_gateway, self.gateway, self.peer_node] + self.local_ips + \
                [p[1] for p in self.pods] + [p[1] for p in self.peer_pods + self.externals]:
            if ip(a).version != self.family:
                raise TopologyError(f"address {a} is not IPv{self.family} like the node address")
        self._pod_by_ip = {p[1]: p for p in self.pods}
        self._pod_by_name = {p[0]: p for p in self.pods}
        self._remote_by_ip = {a: n for n, a in self.peer_pods + self.externals}
        self._remote_by_ip.setdefault(self.peer_node, "peer")
        self._remote_by_name = {n: a for n, a in self.peer_pods + self.externals}
        self._local = {str(self.node_if.ip), self.pod_gateway, *self.local_ips}
        self._iface_addrs = {"lo": ["127.0.0.1" if self.family == 4 else "::1"] + self.local_ips,
                             self.iface: [str(self.node_if.ip)]}
        for _, _, hif in self.pods:
            self._iface_addrs[hif] = [self.pod_gateway]

    @staticmethod
    def _name(names, name):
        if not isinstance(name, str) or not name:
            raise TopologyError(f"bad name {name!r}")
        if name in names:
            raise TopologyError(f"name {name!r} is used twice in the topology")
        names.add(name)

    # ------------------------------------------------------------------
    @property
    def node_ip(self) -> str:
        return str(self.node_if.ip)

    def interfaces(self) -> dict:
        """Interface name -> the node's addresses on it."""
        return {k: list(v) for k, v in self._iface_addrs.items()}

    def is_local(self, addr: str) -> bool:
        a = ip(addr)
        return a.is_loopback or addr in self._local

    def local_addresses(self) -> list:
        return sorted(self._local)

    def route(self, dst: str) -> Route:
        """The routing decision for `dst`, as the node's tables give it."""
        if self.is_local(dst):
            return Route("lo", None, dst if not ip(dst).is_loopback else dst, local=True)
        pod = self._pod_by_ip.get(dst)
        if pod is not None:
            return Route(pod[2], None, self.pod_gateway)
        if ip(dst) in self.node_if.network:
            return Route(self.iface, None, self.node_ip)
        return Route(self.iface, self.gateway, self.node_ip)

    def iface_address(self, iface: str, nexthop: str | None = None) -> str | None:
        """The address MASQUERADE picks: the outgoing interface's primary one."""
        addrs = self._iface_addrs.get(iface)
        return addrs[0] if addrs else None

    def addr_type(self, addr: str, iface: str | None = None) -> str:
        """The address's routing type (addrtype's LOCAL, UNICAST, ...).

        With `iface` (addrtype's --limit-iface-*), only addresses on that
        interface count as LOCAL.
        """
        a = ip(addr)
        if a.version == 4:
            if int(a) >> 24 == 0 or int(a) == 0xFFFFFFFF:     # 0.0.0.0/8 too (ipv4_is_zeronet)
                return "BROADCAST"
            if a.is_multicast:
                return "MULTICAST"
            if iface is not None:
                on = self._iface_addrs.get(iface, [])
                return "LOCAL" if addr in on or (iface == "lo" and a.is_loopback) else "UNICAST"
            if self.is_local(addr):
                return "LOCAL"
            net = self.node_if.network
            if a == net.broadcast_address and net.prefixlen < 31:
                return "BROADCAST"
            return "UNICAST"
        if a.is_multicast:
            return "MULTICAST"
        if iface is not None:
            return "LOCAL" if addr in self._iface_addrs.get(iface, []) or (iface == "lo" and a.is_loopback) else "UNICAST"
        return "LOCAL" if self.is_local(addr) else "UNICAST"

    def origin(self, name: str) -> Origin:
        """Where a packet `from` NAME enters: a local Pod's veth, the node
        itself, or `eth0` for the peer, a peer Pod or an external host."""
        if name == "node":
            return Origin("node", True, None, None)
        if name in self._pod_by_name:
            _, addr, hif = self._pod_by_name[name]
            return Origin(name, False, hif, addr)
        if name == "peer":
            return Origin(name, False, self.iface, self.peer_node)
        if name in self._remote_by_name:
            return Origin(name, False, self.iface, self._remote_by_name[name])
        known = ["node", "peer"] + [p[0] for p in self.pods] + list(self._remote_by_name)
        raise TopologyError(f"unknown source {name!r}: use one of {', '.join(known)}")

    def node_source(self, dst: str) -> str:
        """The source address the node picks for a packet it creates."""
        return self.route(dst).src

    def receiver(self, dst: str, out_iface: str) -> str:
        """Who receives a packet leaving by `out_iface` for `dst`."""
        if out_iface == self.iface:
            return self._remote_by_ip.get(dst, "peer")
        for name, addr, hif in self.pods:
            if hif == out_iface:
                return name if addr == dst else name
        return out_iface

    def names(self) -> list:
        return ["node", "peer"] + [p[0] for p in self.pods] + [n for n, _ in self.peer_pods + self.externals]

    def name_of(self, addr: str) -> str | None:
        """Which host of the topology holds `addr` (for readable journeys)."""
        if addr in self._pod_by_ip:
            return self._pod_by_ip[addr][0]
        if self.is_local(addr):
            return "node"
        return self._remote_by_ip.get(addr)

    def to_dict(self) -> dict:
        return copy.deepcopy(self.spec)
