"""The Pod-to-Service flow across nodes: every node of a cluster as a kplab
Node running the rules kube-proxy programs on it, joined by one wire.

`ClusterNetwork.send(from_, to)` walks a packet through the source node's
hooks, across the wire, through the destination node's hooks and into the
Pod; `reply(journey)` sends the answer back, which conntrack on each node
translates in reverse. Each node keeps its own conntrack table, so a second
packet of a connection follows the first one's translation even after the
rules change (`update(cluster)`).
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from ..errors import KplabError
from ..node import ManualClock, Node
from ..packet import Packet, ip
from ..topology import Topology

#: Hosts outside the cluster that lessons send from (NodePort, LoadBalancer).
EXTERNALS = (("external", "198.51.100.10"),)
MAX_HOPS = 8


class FlowError(KplabError, ValueError):
    """A source or destination that does not exist in the cluster."""


@dataclass(frozen=True)
class Hop:
    """One leg of a journey: the walk through one node, or the wire between two."""

    node: str | None
    trace: object = None
    note: str = ""

    @property
    def on_wire(self) -> bool:
        return self.node is None


@dataclass(frozen=True)
class Journey:
    """A packet's way from its sender to where it ended, across nodes."""

    origin: str
    packet: Packet
    hops: tuple
    verdict: str
    delivered_to: str | None = None
    final: Packet | None = None

    @property
    def traces(self) -> list:
        return [h.trace for h in self.hops if h.trace is not None]

    def changes(self) -> list:
        """Where the destination or source was rewritten, as sentences."""
        out = []
        for h in self.hops:
            t = h.trace
            if t is None:
                continue
            if t.dnat_to and t.direction != "REPLY":
                out.append(f"on {h.node}: destination {t.packet.endpoint('dst')} -> {t.dnat_to} (DNAT)")
            if t.snat_to and t.direction != "REPLY":
                out.append(f"on {h.node}: source {t.packet.endpoint('src')} -> {t.snat_to} "
                           f"({'MASQUERADE' if t.masquerade else 'SNAT'})")
            if t.direction == "REPLY" and (t.dnat_to or t.snat_to):
                out.append(f"on {h.node}: conntrack reverses the translation: now {t.final or t.packet}")
        return out

    def text(self) -> str:
        """A numbered journey: the nodes' walks and the wire between them."""
        lines = [f"{self.packet} from {self.origin}"]
        for n, h in enumerate(self.hops, 1):
            if h.on_wire:
                lines.append(f"{n:2d}. wire: {h.note}")
                continue
            t = h.trace
            fired = [s for s in t.matched_rules if s.verdict not in ("CONTINUE",)]
            lines.append(f"{n:2d}. {h.node}: {t.summary()}")
            for s in fired:
                lines.append(f"      {s.hook:<11} {s.table:<6} {s.chain} #{s.index}  => {s.verdict}")
        end = (f"delivered to {self.delivered_to} as {self.final}" if self.delivered_to
               else f"{self.verdict}: the packet did not arrive")
        lines.append(end)
        return "\n".join(lines)


def _iface_for(name: str) -> str:
    """A Pod's host-side interface name, as Calico names them (cali + 11 hex)."""
    return "cali" + hashlib.sha1(name.encode()).hexdigest()[:11]


class ClusterNetwork:
    """A cluster's nodes, each a kplab Node with kube-proxy's rules."""

    def __init__(self, cluster, *, seed: int = 0, clock=None, externals=EXTERNALS, renderer=None):
        self.clock = clock if clock is not None else ManualClock()
        self.seed = seed
        self.externals = tuple(externals)
        self._render = renderer
        self.cluster = None
        self.nodes: dict = {}
        self.rendered: dict = {}
        self.update(cluster)

    # ------------------------------------------------------------------
    def _renderer(self):
        if self._render is None:
            from .proxier import render
            self._render = render
        return self._render

    def update(self, cluster) -> None:
        """Take a changed cluster: re-render every node's rules. Existing
        connections keep their conntrack entries, as on a real node."""
        render = self._renderer()
        self.cluster = cluster
        self._pods = {p.name: p for p in cluster.pods()}
        self._pod_by_ip = {p.ip: p for p in cluster.pods() if p.ip}
        self._node_by_ip = {n.ip: n for n in cluster.nodes()}
        for n in cluster.nodes():
            rendered = render(cluster.services(), cluster.slices(), cluster.proxy_config(n.name))
            self.rendered[n.name] = rendered
            if n.name in self.nodes:
                self.nodes[n.name].load(rendered.ruleset)
                self.nodes[n.name].topology = self._topology(n)
            else:
                self.nodes[n.name] = Node(rendered.ruleset, self._topology(n), clock=self.clock, seed=self.seed)

    def _topology(self, node) -> Topology:
        others = [n for n in self.cluster.nodes() if n.name != node.name]
        net = ipaddress.ip_interface(f"{node.ip}/24").network
        gateway = str(next(a for a in net.hosts() if str(a) not in self._node_by_ip))
        pod_gw = str(next(ipaddress.ip_network(node.pod_cidr).hosts())) if node.pod_cidr else None
        local = [p for p in self.cluster.pods() if p.node == node.name and p.ip]
        remote = [p for p in self.cluster.pods() if p.node != node.name and p.ip]
        spec = {
            "node": {"ip": f"{node.ip}/{net.prefixlen}", "iface": "eth0", "pod_cidr": node.pod_cidr,
                     "pod_gateway": pod_gw, "local_ips": [], "route_localnet": True},
            "pods": [{"name": p.name, "ip": p.ip, "host_iface": _iface_for(p.name)} for p in local],
            "peer": {"gateway_ip": gateway,
                     "node_ip": others[0].ip if others else str(net.broadcast_address - 1),
                     "pod_cidr": others[0].pod_cidr if others and others[0].pod_cidr else "10.244.255.0/24",
                     "pods": [{"name": p.name, "ip": p.ip} for p in remote],
                     "externals": [{"name": n.name, "ip": n.ip} for n in others[1:]]
                     + [{"name": a, "ip": b} for a, b in self.externals]},
        }
        return Topology(spec, family=4)

    # ------------------------------------------------------------------
    def resolve(self, to: str, port: int | None = None) -> tuple:
        """`to` as (ip, port): a Service ("ns/name[:port]" or "name"), an
        "ip:port", or an IP with `port`."""
        text = to.strip()
        svc_name, _, port_name = text.partition(":")
        try:
            if "/" not in svc_name and (svc_name.count(".") == 3 or ":" in svc_name):
                raise ValueError
            key = svc_name if "/" in svc_name else f"default/{svc_name}"
            svc = next(s for s in self.cluster.services() if s.key == key)
        except (StopIteration, ValueError):
            addr, _, p = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise FlowError(f"{to!r} is neither a Service of the cluster nor an IP address") from None
            if p:
                if not p.isdigit() or int(p) > 65535:
                    raise FlowError(f"{to!r}: the port must be a number from 0 to 65535") from None
                return addr, int(p)
            return addr, port
        if not svc.cluster_ip or svc.cluster_ip == "None":
            raise FlowError(f"Service {svc.key} has no cluster IP")
        sp = None
        for candidate in svc.ports:
            if not port_name and (port is None or candidate.port == port):
                sp = candidate
                break
            if port_name and (candidate.name == port_name or str(candidate.port) == port_name):
                sp = candidate
                break
        if sp is None:
            raise FlowError(f"Service {svc.key} has no port {port_name or port}")
        return svc.cluster_ip, sp.port

    def _entry(self, from_: str):
        """(node name, name in that node's topology) where `from_` sends from."""
        if from_ in self._pods:
            p = self._pods[from_]
            if not p.node or p.node not in self.nodes:
                raise FlowError(f"Pod {from_} is not scheduled on a node")
            return p.node, from_
        if from_ in self.nodes:
            return from_, "node"
        if from_ in dict(self.externals):
            return None, from_
        raise FlowError(f"unknown sender {from_!r}: a Pod, a node or one of "
                        f"{', '.join(n for n, _ in self.externals)}")

    def _owner(self, addr: str):
        """The node a packet for `addr` goes to on the wire, or None (outside)."""
        if addr in self._pod_by_ip:
            return self._pod_by_ip[addr].node
        if addr in self._node_by_ip:
            return self._node_by_ip[addr].name
        for n in self.cluster.nodes():
            if n.pod_cidr and ip(addr) in ipaddress.ip_network(n.pod_cidr):
                return n.name
        return None

    def send(self, from_: str, to: str, proto: str = "tcp", port: int | None = None, *,
             sport: int | None = None, via: str | None = None) -> Journey:
        """The first packet of a new connection from a Pod, a node or an
        external host to a Service, a ClusterIP:port, a NodePort on a node
        IP, or a Pod IP. From an external host to an address no node owns (a
        load-balancer or external IP), `via` names the node the load
        balancer hands the packet to, as a VIP-mode load balancer does."""
        dst, dport = self.resolve(to, port)
        node_name, local = self._entry(from_)
        if via is not None and via not in self.nodes:
            raise FlowError(f"via={via!r}: not a node of the cluster ({', '.join(self.nodes)})")
        if node_name is None:
            src = dict(self.externals)[from_]
            pkt = Packet.make(proto, src, dst, sport, dport if dport is not None else 80)
            target = via or self._owner(dst)
            if target is None:
                vip = any(dst in (*svc.external_ips, *(i.ip for i in svc.lb_ingress)) for svc in self.cluster.services())
                raise FlowError(f"{dst} is not an address the wire can take {from_}'s packet to "
                                + ("(a load-balancer or external IP: say which node the load balancer sends it to, "
                                   "e.g. via='node-1')" if vip else
                                   "(a ClusterIP is only reachable from inside the cluster)"))
            hops = [Hop(None, note=f"{from_} -> {target} eth0: {pkt}")]
            return self._walk(from_, pkt, target, "peer", hops)
        node = self.nodes[node_name]
        pkt = node.packet(local, dst, proto, dport if dport is not None or proto == "icmp" else 80, sport)
        return self._walk(from_, pkt, node_name, local, [])

    def _walk(self, origin, pkt, node_name, local, hops) -> Journey:
        first = pkt
        for _ in range(MAX_HOPS):
            node = self.nodes[node_name]
            trace = node.send(pkt, local)
            hops.append(Hop(node_name, trace))
            if trace.verdict != "ACCEPT":
                return Journey(origin, first, tuple(hops), trace.verdict)
            out = trace.final
            pod = self._pods.get(trace.delivered_to)
            if trace.delivered_to == "node" or (pod is not None and pod.node == node_name):
                return Journey(origin, first, tuple(hops), "ACCEPT", trace.delivered_to, out)
            nxt = self._owner(out.dst)
            if nxt is None or nxt == node_name:
                who = dict((b, a) for a, b in self.externals).get(out.dst, trace.delivered_to)
                return Journey(origin, first, tuple(hops), "ACCEPT", who, out)
            hops.append(Hop(None, note=f"{node_name} eth0 -> {nxt} eth0: {out}"))
            pkt = out.replace(in_iface=None, out_iface=None, mark=0)
            node_name, local = nxt, "peer"
        raise FlowError(f"the packet went round more than {MAX_HOPS} nodes: a routing loop")

    def reply(self, journey: Journey) -> Journey:
        """The receiver answers: back through each node's conntrack."""
        if journey.final is None or journey.delivered_to is None:
            raise FlowError("that packet was not delivered, so nothing answers it")
        answer = journey.final.reply().replace(in_iface=None, out_iface=None, ttl=64, mark=0)
        who = journey.delivered_to
        if who in self._pods:
            return self._walk(who, answer, self._pods[who].node, who, [])
        if who in self.nodes:
            return self._walk(who, answer, who, "node", [])
        if who == "node":
            last = next(h.node for h in reversed(journey.hops) if h.node)
            return self._walk(last, answer, last, "node", [])
        target = self._owner(answer.dst)
        if target is None:
            raise FlowError(f"{who} cannot answer: {answer.dst} is outside the cluster")
        hops = [Hop(None, note=f"{who} -> {target} eth0: {answer}")]
        return self._walk(who, answer, target, "peer", hops)
