"""kube-proxy's iptables mode: the rules one node gets for a set of Services.

This is a port of `syncProxyRules()` in kube-proxy's `pkg/proxy/iptables/
proxier.go` (kubernetes/kubernetes at 531be81208e2, the v1.34 cycle), kept in
the same shape so that the two can be read side by side:

1. **Collect.** Services become *service ports* (`ServicePortInfo`, one per
   port: kube-proxy's `servicePortInfo`), EndpointSlices become per-port
   endpoint lists (`EndpointInfo`, de-duplicated and sorted by `ip:port` as
   kube-proxy's EndpointSliceCache does).
2. **Decide.** For each service port, `decide()` computes the named
   booleans of `syncProxyRules()` (`has_endpoints`, `has_internal_endpoints`,
   `uses_external_traffic_chain`, `uses_fw_chain`, ...) and which chains and
   filter targets follow from them (`ServicePortDecision`). This is the part
   `kplab explain` and the widgets show.
3. **Write.** `write_service_port()` turns a decision into lines, appended to
   the four line buffers kube-proxy uses: filter chains, filter rules, nat
   chains, nat rules. One documented helper per chain kind.
4. **Restore.** The buffers are joined into the `iptables-restore` input
   (`*filter ... COMMIT *nat ... COMMIT`), applied to a model of the node's
   tables (built-in chains, the jump rules kube-proxy and kubelet prepend,
   stale chains), and `iptables-save` of the result is obtained from the
   kplab engine (`kplab.parse_rules` then `kplab.save_rules`).

Public API:

* `render(services, slices, config) -> Rendered`: a full sync on a fresh node.
* `Proxier(config).sync(services, slices, partial=False) -> Rendered`: the
  same with state kept between syncs: per-service caches (re-rendering after
  one Service changes costs little), stale-chain deletion (`-X`) for chains
  earlier syncs created, and optional partial syncs (kube-proxy's
  MinimizeIPTablesRestore: only changed services' chains are written).
* `Proxier.update(services=..., removed_services=..., slices_for=...)` then
  `Proxier.sync_changes(partial=True) -> Rendered`: kube-proxy's change
  trackers. Only what changed is recorded and only that is redone: the
  sorted order of service ports is kept incrementally, unchanged Services'
  lines are reused, and a partial sync's node state is computed from the
  chains it writes. Same results as `sync()` given the whole state.
* `diff(old, new) -> RenderDiff`: chains and rules added and removed, in
  `iptables-save` form.
* `canonical_order(text)`: the sort kube-proxy's unit tests apply to restore
  text before comparing it (`sortIPTablesRules` in proxier_test.go).
* Helpers with the upstream names: `port_proto_hash`, `service_chain_name`,
  `endpoint_chain_name`, `compute_probability`, `categorize_endpoints`.

Where this module chooses where kube-proxy has no fixed behaviour (Go map
order), it picks a deterministic order: Services sorted by namespace/name,
each Service's ports in declaration order, node addresses in interface order.
Standard library only.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import ipaddress
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

from ..errors import KplabError
from .objects import ProxyConfig

__all__ = [
    "EndpointInfo", "LocalDetector", "Proxier", "RenderDiff", "Rendered", "ServicePortDecision",
    "ServicePortInfo", "canonical_order", "categorize_endpoints", "compute_probability", "decide",
    "diff", "endpoint_chain_name", "local_detector", "port_proto_hash", "render", "service_chain_name",
]

# --------------------------------------------------------------------------
# Chain names and constants (proxier.go)

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBELET_FIREWALL = "KUBE-FIREWALL"

SVC_PREFIX = "KUBE-SVC-"       # servicePortPolicyClusterChainNamePrefix
SVL_PREFIX = "KUBE-SVL-"       # servicePortPolicyLocalChainNamePrefix
FW_PREFIX = "KUBE-FW-"         # serviceFirewallChainNamePrefix
EXT_PREFIX = "KUBE-EXT-"       # serviceExternalChainNamePrefix
SEP_PREFIX = "KUBE-SEP-"       # servicePortEndpointChainNamePrefix
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX)

#: More endpoints than this over all service ports switches on "large cluster
#: mode": SVC/SVL/SEP rules lose their comments (largeClusterEndpointsThreshold).
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000

#: nfacct counter names (pkg/proxy/metrics).
NFACCT_LOCALHOST_NODEPORTS = "localhost_nps_accepted_pkts"
NFACCT_CT_INVALID = "ct_state_invalid_dropped_pkts"

NODEPORTS_LAST_COMMENT = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'

#: iptablesJumpChains: (table, to, from, comment, extra args), in the order
#: kube-proxy ensures them with "-I FROM 1" (prepend) on every full sync.
JUMP_CHAINS = (
    ("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals",
     "-m conntrack --ctstate NEW"),
    ("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals",
     "-m conntrack --ctstate NEW"),
    ("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports", ""),
    ("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules", ""),
    ("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", ""),
    ("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals", ""),
    ("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules", ""),
)
#: iptablesKubeletJumpChains: kubelet's KUBE-FIREWALL, which kube-proxy also
#: ensures (no comment).
KUBELET_JUMP_CHAINS = (
    ("filter", KUBELET_FIREWALL, "INPUT", "", ""),
    ("filter", KUBELET_FIREWALL, "OUTPUT", "", ""),
)

#: The built-in chains of the two tables kube-proxy writes (as on a node and
#: in kube-proxy's fake iptables).
BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}
TABLES = ("filter", "nat")

DEFAULT_STICKY_SECONDS = 10800     # the API server's default sessionAffinityConfig timeout


# --------------------------------------------------------------------------
# Hashes and probabilities

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#: base32 of every 10-bit value: two characters (as base64.b32encode's own table).
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)


def _b32_16(text: str) -> str:
    # The first 10 bytes (80 bits) encode to exactly the first 16 base32
    # characters, two per 10 bits: base64.b32encode(digest[:10]), unrolled.
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    t = _B32_PAIRS
    return (t[n >> 70] + t[(n >> 60) & 1023] + t[(n >> 50) & 1023] + t[(n >> 40) & 1023]
            + t[(n >> 30) & 1023] + t[(n >> 20) & 1023] + t[(n >> 10) & 1023] + t[n & 1023])


@functools.lru_cache(maxsize=65536)
def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """portProtoHash: base32(sha256(spn + proto))[:16], the suffix shared by a
    service port's KUBE-SVC/SVL/EXT/FW chains. `protocol` is lower case."""
    return _b32_16(service_port_name + protocol)


def service_chain_name(service_port_name: str, protocol: str) -> str:
    """servicePortPolicyClusterChain: KUBE-SVC- + portProtoHash(spn, proto),
    the chain that spreads a service port's connections over its endpoints.

    A pure function of the service port name ("ns/name:port", or "ns/name"
    for an unnamed port) and the lower-case protocol: every node, and every
    restart of kube-proxy, gives the same Service the same chain name.

    >>> service_chain_name("default/backend:http", "tcp")
    'KUBE-SVC-POOGYJBNEVT3HFAO'
    """
    return SVC_PREFIX + port_proto_hash(service_port_name, protocol)


def endpoint_chain_name(service_port_name: str, protocol: str, endpoint: str) -> str:
    """servicePortEndpointChainName: KUBE-SEP- + base32(sha256(spn + proto +
    endpoint))[:16]; `endpoint` is `ip:port` or `[ip6]:port`."""
    return SEP_PREFIX + _b32_16(service_port_name + protocol + endpoint)


def compute_probability(n: int) -> str:
    """computeProbability: Go's fmt.Sprintf("%0.10f", 1.0/float64(n))."""
    return "%0.10f" % (1.0 / n)


@functools.lru_cache(maxsize=4096)
def _probability(n: int) -> str:
    # kube-proxy precomputes these (precomputedProbabilities); so do we.
    return compute_probability(n)


# --------------------------------------------------------------------------
# Addresses (Go's netutils.ParseIPSloppy / ParseCIDRSloppy, net.IP.String())

_CANON_V4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                       r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")


def _sloppy_v4(text: str) -> str | None:
    """Dotted quad, leading zeros allowed and read as decimal (ParseIPSloppy)."""
    if _CANON_V4.match(text):
        return text
    parts = text.split(".")
    if len(parts) != 4:
        return None
    out = []
    for p in parts:
        if not p.isdigit() or not p.isascii() or len(p) > 3:
            return None
        v = int(p)
        if v > 255:
            return None
        out.append(str(v))
    return ".".join(out)


@functools.lru_cache(maxsize=262144)
def parse_ip(text) -> tuple | None:
    """(family, canonical text) of an IP address as kube-proxy reads and
    prints it, or None if it is not one. IPv4-mapped IPv6 counts as IPv4,
    as in Go."""
    if not isinstance(text, str):
        return None
    s = text.strip()
    if not s:
        return None
    if ":" not in s:
        v4 = _sloppy_v4(s)
        return (4, v4) if v4 is not None else None
    if "%" in s:
        return None
    try:
        a = ipaddress.IPv6Address(s)
    except ValueError:
        return None
    if a.ipv4_mapped is not None:
        return 4, str(a.ipv4_mapped)
    return 6, str(a)


@functools.lru_cache(maxsize=65536)
def parse_cidr(text) -> tuple | None:
    """(family, network) of a CIDR as ParseCIDRSloppy reads it (host bits
    cleared, leading zeros allowed); `str(network)` is Go's `IPNet.String()`."""
    if not isinstance(text, str) or "/" not in text:
        return None
    addr, _, plen = text.strip().partition("/")
    ip = parse_ip(addr)
    if ip is None or not plen.isdigit() or not plen.isascii():
        return None
    fam, canon = ip
    prefix = int(plen)
    if prefix > (32 if fam == 4 else 128):
        return None
    try:
        net = ipaddress.ip_network(f"{canon}/{prefix}", strict=False)
    except ValueError:
        return None
    return fam, net


def join_host_port(ip: str, port: int) -> str:
    """net.JoinHostPort: IPv6 in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --------------------------------------------------------------------------
# Local traffic detection (pkg/proxy/util/localdetector.go)

@dataclass(frozen=True)
class LocalDetector:
    """How kube-proxy tells pod traffic from other traffic. `if_local` and
    `if_not_local` are the iptables arguments (`-s CIDR` / `! -s CIDR`,
    `-i BRIDGE`, `-i PREFIX+`); both empty for the no-op detector."""

    mode: str = "None"
    value: str | None = None
    if_local: str = ""
    if_not_local: str = ""

    @property
    def implemented(self) -> bool:
        return bool(self.if_local)


NOOP_DETECTOR = LocalDetector()


def local_detector(config: ProxyConfig) -> LocalDetector:
    """The detector `--detect-local-mode` selects for this proxier's family.

    ClusterCIDR and NodeCIDR read `config.cluster_cidr` (for NodeCIDR, put
    the node's podCIDR there); a comma-separated dual-stack value is split and
    the CIDR of the proxier's family is used. BridgeInterface and
    InterfaceNamePrefix read the bridge name or prefix from the same field
    (ProxyConfig has no separate field for them). No value of the family
    gives the no-op detector, as kube-proxy falls back to it.
    """
    mode = config.detect_local_mode or "ClusterCIDR"
    value = config.cluster_cidr
    if not value:
        return NOOP_DETECTOR
    if mode in ("ClusterCIDR", "NodeCIDR"):
        for part in str(value).split(","):
            part = part.strip()
            parsed = parse_cidr(part)
            if parsed is None:
                raise KplabError(f"ProxyConfig.cluster_cidr: {part!r} is not a CIDR")
            if parsed[0] == config.ip_family:
                return LocalDetector(mode, part, f"-s {part}", f"! -s {part}")
        return NOOP_DETECTOR
    if mode == "BridgeInterface":
        return LocalDetector(mode, value, f"-i {value}", f"! -i {value}")
    if mode == "InterfaceNamePrefix":
        return LocalDetector(mode, value, f"-i {value}+", f"! -i {value}+")
    raise KplabError(f"ProxyConfig.detect_local_mode: unknown mode {mode!r} "
                     "(ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix)")


# --------------------------------------------------------------------------
# Service ports and endpoints as kube-proxy holds them

@dataclass(frozen=True)
class ServicePortInfo:
    """One port of one Service, as kube-proxy's servicePortInfo holds it
    (already filtered to the proxier's IP family and normalised)."""

    namespace: str
    name: str
    port_name: str
    spn: str                      # "ns/svc:port" or "ns/svc" (ServicePortName.String())
    protocol: str                 # lower case: tcp, udp, sctp
    cluster_ip: str
    port: int
    node_port: int
    external_ips: tuple
    lb_vips: tuple                # LoadBalancer ingress IPs in VIP mode, of this family
    lb_source_ranges: tuple       # normalised CIDR strings of this family
    external_policy_local: bool   # eTP=Local on an externally accessible Service
    internal_policy_local: bool   # iTP=Local
    health_check_node_port: int
    affinity_client_ip: bool
    sticky_seconds: int

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def hash(self) -> str:
        return port_proto_hash(self.spn, self.protocol)

    @property
    def cluster_policy_chain(self) -> str:
        return SVC_PREFIX + self.hash

    @property
    def local_policy_chain(self) -> str:
        return SVL_PREFIX + self.hash

    @property
    def firewall_chain(self) -> str:
        return FW_PREFIX + self.hash

    @property
    def external_chain(self) -> str:
        return EXT_PREFIX + self.hash

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.lb_vips or self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint of one service port (BaseEndpointInfo + its chain)."""

    ip: str
    port: int
    is_local: bool
    ready: bool
    serving: bool
    terminating: bool
    chain: str

    @property
    def string(self) -> str:
        return join_host_port(self.ip, self.port)

    def __str__(self) -> str:
        return self.string


def _svc_type(svc) -> str:
    # The API server defaults an unset type to ClusterIP; kube-proxy only
    # ever sees a defaulted Service.
    return svc.type or "ClusterIP"


def service_port_infos(svc, config: ProxyConfig, warnings: list | None = None) -> tuple:
    """The ServicePortInfo of each port of `svc`, or () when kube-proxy
    ignores the Service (headless, ExternalName, no cluster IP of this
    family). Invalid addresses are dropped, as kube-proxy drops them."""
    fam = config.ip_family
    stype = _svc_type(svc)
    if stype == "ExternalName":
        return ()
    cip = svc.cluster_ip
    if not cip or cip == "None":
        return ()
    parsed = parse_ip(cip)
    if parsed is None:
        if warnings is not None:
            warnings.append(f"{svc.key}: clusterIP {cip!r} is not an IP address; Service ignored")
        return ()
    if parsed[0] != fam:
        return ()
    cluster_ip = parsed[1]

    ext_ips = []
    for ip in svc.external_ips or ():
        p = parse_ip(ip)
        if p is None:
            if warnings is not None:
                warnings.append(f"{svc.key}: externalIP {ip!r} is not an IP address; ignored")
        elif p[0] == fam:
            ext_ips.append(p[1])
    vips = []
    for ing in svc.lb_ingress or ():
        ip = getattr(ing, "ip", ing)
        mode = getattr(ing, "ip_mode", None)
        if not ip or (mode is not None and mode != "VIP"):
            continue                                  # ipMode Proxy: the LB proxies, no node rules
        p = parse_ip(ip)
        if p is not None and p[0] == fam:
            vips.append(p[1])
    ranges = []
    for r in svc.lb_source_ranges or ():
        p = parse_cidr(str(r).strip())
        if p is None:
            if warnings is not None:
                warnings.append(f"{svc.key}: loadBalancerSourceRange {r!r} is not a CIDR; ignored")
        elif p[0] == fam:
            ranges.append(str(p[1]))
    externally = stype in ("LoadBalancer", "NodePort") or (stype == "ClusterIP" and bool(svc.external_ips))
    etp_local = externally and svc.external_traffic_policy == "Local"
    itp_local = svc.internal_traffic_policy == "Local"
    hc = (svc.health_check_node_port or 0) if (stype == "LoadBalancer" and etp_local) else 0
    affinity = svc.session_affinity == "ClientIP"
    sticky = (svc.session_affinity_timeout or DEFAULT_STICKY_SECONDS) if affinity else 0
    out = []
    for p in svc.ports:
        pname = p.name or ""
        out.append(ServicePortInfo(
            namespace=svc.namespace, name=svc.name, port_name=pname,
            spn=f"{svc.namespace}/{svc.name}:{pname}" if pname else f"{svc.namespace}/{svc.name}",
            protocol=(p.protocol or "TCP").lower(), cluster_ip=cluster_ip, port=int(p.port),
            node_port=int(p.node_port or 0), external_ips=tuple(ext_ips), lb_vips=tuple(vips),
            lb_source_ranges=tuple(ranges), external_policy_local=etp_local,
            internal_policy_local=itp_local, health_check_node_port=int(hc),
            affinity_client_ip=affinity, sticky_seconds=int(sticky)))
    return tuple(out)


def endpoints_by_port(slices, config: ProxyConfig) -> dict:
    """EndpointSliceCache for the slices of ONE Service: a dict
    (port name, PROTOCOL) -> tuple of (ip, port, is_local, ready, serving,
    terminating), de-duplicated by ip:port (a local copy wins) and sorted by
    the ip:port string, as kube-proxy sorts them."""
    fam = config.ip_family
    node = config.node_name
    acc: dict = {}
    for sl in sorted(slices, key=lambda s: s.name):
        if sl.address_type not in ("IPv4", "IPv6"):
            continue                                   # FQDN slices are not proxied
        for ep_port in sl.ports:
            if not ep_port.port:
                continue
            key = (ep_port.name or "", (ep_port.protocol or "TCP").upper())
            seen = acc.setdefault(key, {})
            for ep in sl.endpoints:
                if not ep.addresses:
                    continue
                p = parse_ip(ep.addresses[0])
                if p is None or p[0] != fam:
                    continue
                c = ep.conditions
                local = ep.node_name is not None and ep.node_name == node
                ready = c.ready is None or bool(c.ready)
                serving = c.serving is None or bool(c.serving)
                terminating = c.terminating is not None and bool(c.terminating)
                s = join_host_port(p[1], int(ep_port.port))
                if s not in seen or local:
                    seen[s] = (p[1], int(ep_port.port), local, ready, serving, terminating)
    return {k: tuple(v[s] for s in sorted(v)) for k, v in acc.items()}


def _endpoint_infos(info: ServicePortInfo, raw: tuple) -> tuple:
    return tuple(EndpointInfo(ip, port, local, ready, serving, term,
                              endpoint_chain_name(info.spn, info.protocol, join_host_port(ip, port)))
                 for ip, port, local, ready, serving, term in raw)


# --------------------------------------------------------------------------
# Decide (CategorizeEndpoints and the booleans of syncProxyRules)

def categorize_endpoints(endpoints, info: ServicePortInfo):
    """proxy.CategorizeEndpoints without topology hints: returns
    (cluster_endpoints, local_endpoints, all_reachable, has_any_endpoints).

    Cluster set: the ready endpoints, else the serving-and-terminating ones.
    Local set: the local ready endpoints, else the local serving-and-
    terminating ones (each fallback independent of the other)."""
    cluster: tuple = ()
    local: tuple = ()
    has_any = False
    if info.uses_cluster_endpoints:
        cluster = tuple(e for e in endpoints if e.ready)
        if not cluster:
            cluster = tuple(e for e in endpoints if e.serving and e.terminating)
        has_any = bool(cluster)
    if not info.uses_local_endpoints:
        return cluster, local, cluster, has_any
    local_ready = local_st = False
    for e in endpoints:
        if e.ready:
            has_any = True
            local_ready = local_ready or e.is_local
        elif e.serving and e.terminating:
            has_any = True
            local_st = local_st or e.is_local
    use_serving_terminating = False
    if local_ready:
        local = tuple(e for e in endpoints if e.is_local and e.ready)
    elif local_st:
        use_serving_terminating = True
        local = tuple(e for e in endpoints if e.is_local and e.serving and e.terminating)
    if not info.uses_cluster_endpoints:
        return cluster, local, local, has_any
    if not use_serving_terminating:
        # local holds only ready endpoints and cluster holds all of them
        return cluster, local, cluster, has_any
    merged = {e.string: e for e in cluster}
    merged.update((e.string, e) for e in local)
    return cluster, local, tuple(merged[s] for s in sorted(merged)), has_any


@dataclass(frozen=True)
class ServicePortDecision:
    """Everything syncProxyRules decides about one service port before it
    writes a line. Endpoint tuples hold `EndpointInfo`s in rule order."""

    info: ServicePortInfo
    endpoints: tuple
    cluster_endpoints: tuple
    local_endpoints: tuple
    reachable_endpoints: tuple          # allLocallyReachableEndpoints: one SEP chain each
    has_endpoints: bool                 # usable endpoints on any node
    uses_cluster_policy_chain: bool     # KUBE-SVC- is written
    uses_local_policy_chain: bool       # KUBE-SVL- is written
    internal_policy_chain: str          # where cluster-IP traffic goes (SVC, or SVL for iTP=Local)
    has_internal_endpoints: bool
    external_policy_chain: str          # where KUBE-EXT ends (SVC, or SVL for eTP=Local)
    has_external_endpoints: bool
    uses_external_traffic_chain: bool   # KUBE-EXT- is written
    uses_fw_chain: bool                 # KUBE-FW- is written (LB source ranges)
    load_balancer_traffic_chain: str    # FW if uses_fw_chain else EXT
    internal_filter_target: str | None  # REJECT / DROP in filter KUBE-SERVICES, or None
    internal_filter_comment: str | None
    external_filter_target: str | None  # REJECT / DROP in filter KUBE-EXTERNAL-SERVICES, or None
    external_filter_comment: str | None

    @property
    def spn(self) -> str:
        return self.info.spn

    @property
    def chains(self) -> tuple:
        """The nat chains this service port owns (activeNATChains)."""
        out = []
        if self.uses_external_traffic_chain:
            out.append(self.info.external_chain)
        if self.uses_fw_chain:
            out.append(self.info.firewall_chain)
        if self.uses_cluster_policy_chain:
            out.append(self.info.cluster_policy_chain)
        if self.uses_local_policy_chain:
            out.append(self.info.local_policy_chain)
        out.extend(e.chain for e in self.reachable_endpoints)
        return tuple(out)


def decide(info: ServicePortInfo, endpoints: tuple) -> ServicePortDecision:
    """The named booleans of syncProxyRules() for one service port."""
    cluster, local, reachable, has_endpoints = categorize_endpoints(endpoints, info)
    uses_cluster_chain = bool(cluster) and info.uses_cluster_endpoints
    uses_local_chain = bool(local) and info.uses_local_endpoints

    internal_chain = info.cluster_policy_chain
    has_internal = has_endpoints
    if info.internal_policy_local:
        internal_chain = info.local_policy_chain
        if not local:
            has_internal = False
    external_chain = info.cluster_policy_chain
    has_external = has_endpoints
    if info.external_policy_local:
        external_chain = info.local_policy_chain
        if not local:
            has_external = False
    uses_ext = has_endpoints and info.externally_accessible
    uses_fw = has_endpoints and bool(info.lb_vips) and bool(info.lb_source_ranges)
    lb_chain = info.firewall_chain if uses_fw else info.external_chain

    it = ic = et = ec = None
    if not has_endpoints:
        it = et = "REJECT"
        ic = ec = f'"{info.spn} has no endpoints"'
    else:
        if not has_internal:
            it, ic = "DROP", f'"{info.spn} has no local endpoints"'
        if not has_external:
            et, ec = "DROP", f'"{info.spn} has no local endpoints"'
    return ServicePortDecision(
        info=info, endpoints=endpoints, cluster_endpoints=cluster, local_endpoints=local,
        reachable_endpoints=reachable, has_endpoints=has_endpoints,
        uses_cluster_policy_chain=uses_cluster_chain, uses_local_policy_chain=uses_local_chain,
        internal_policy_chain=internal_chain, has_internal_endpoints=has_internal,
        external_policy_chain=external_chain, has_external_endpoints=has_external,
        uses_external_traffic_chain=uses_ext, uses_fw_chain=uses_fw, load_balancer_traffic_chain=lb_chain,
        internal_filter_target=it, internal_filter_comment=ic,
        external_filter_target=et, external_filter_comment=ec)


# --------------------------------------------------------------------------
# Write: one helper per chain kind

@dataclass(frozen=True)
class _Context:
    """Proxier-wide settings the per-service rules depend on."""

    family: int
    masquerade_all: bool
    detector: LocalDetector
    localhost_nodeports: bool       # effective (IPv4, and nodeport addresses include loopback)
    nfacct_localhost: bool
    node_ip: str | None             # the primary node IP of this family (allowFromNode)
    large_cluster: bool


@dataclass(frozen=True)
class _Fragment:
    """The lines one service port contributes. `filter_rules` and `nat_top`
    (KUBE-SERVICES / KUBE-NODEPORTS rules) are written on every sync;
    `nat_chains` / `nat_rules` (its own chains) only when the service is
    written (always on a full sync)."""

    filter_rules: tuple
    nat_top: tuple
    nat_chains: tuple
    nat_rules: tuple
    active: tuple


def _pp(proto: str) -> str:
    return f"-m {proto} -p {proto}"


def write_top_level_rules(d: ServicePortDecision, ctx: _Context, nat: list, flt: list) -> None:
    """nat KUBE-SERVICES / KUBE-NODEPORTS rules for the service's cluster IP,
    external IPs, LB VIPs and NodePort, and the filter rules that REJECT or
    DROP what has no (local) endpoints, in kube-proxy's writing order."""
    info = d.info
    pp = _pp(info.protocol)
    spn = info.spn
    port = info.port
    # Capture the clusterIP.
    if d.has_internal_endpoints:
        nat.append(f'-A {KUBE_SERVICES} -m comment --comment "{spn} cluster IP" {pp} '
                   f'-d {info.cluster_ip} --dport {port} -j {d.internal_policy_chain}')
    else:
        flt.append(f"-A {KUBE_SERVICES} -m comment --comment {d.internal_filter_comment} {pp} "
                   f"-d {info.cluster_ip} --dport {port} -j {d.internal_filter_target}")
    # Capture externalIPs.
    for ip in info.external_ips:
        if d.has_endpoints:
            nat.append(f'-A {KUBE_SERVICES} -m comment --comment "{spn} external IP" {pp} '
                       f'-d {ip} --dport {port} -j {info.external_chain}')
        if not d.has_external_endpoints:
            flt.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {d.external_filter_comment} {pp} "
                       f"-d {ip} --dport {port} -j {d.external_filter_target}")
    # Capture load-balancer ingress.
    for ip in info.lb_vips:
        if d.has_endpoints:
            nat.append(f'-A {KUBE_SERVICES} -m comment --comment "{spn} loadbalancer IP" {pp} '
                       f'-d {ip} --dport {port} -j {d.load_balancer_traffic_chain}')
        if d.uses_fw_chain:
            flt.append(f'-A {KUBE_PROXY_FIREWALL} -m comment --comment '
                       f'"{spn} traffic not accepted by {info.firewall_chain}" {pp} '
                       f'-d {ip} --dport {port} -j DROP')
    if not d.has_external_endpoints:
        for ip in info.lb_vips:
            flt.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {d.external_filter_comment} {pp} "
                       f"-d {ip} --dport {port} -j {d.external_filter_target}")
    # Capture nodeports (not subject to loadBalancerSourceRanges).
    if info.node_port:
        if d.has_endpoints:
            if ctx.localhost_nodeports and ctx.family == 4 and ctx.nfacct_localhost:
                nat.append(f"-A {KUBE_NODEPORTS} -m comment --comment {spn} {pp} -d 127.0.0.0/8 "
                           f"--dport {info.node_port} -m nfacct --nfacct-name {NFACCT_LOCALHOST_NODEPORTS} "
                           f"-j {info.external_chain}")
            nat.append(f"-A {KUBE_NODEPORTS} -m comment --comment {spn} {pp} "
                       f"--dport {info.node_port} -j {info.external_chain}")
        if not d.has_external_endpoints:
            flt.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {d.external_filter_comment} "
                       f"-m addrtype --dst-type LOCAL {pp} --dport {info.node_port} "
                       f"-j {d.external_filter_target}")
    # Capture healthCheckNodePorts, whether or not there are local endpoints.
    if info.health_check_node_port:
        flt.append(f'-A {KUBE_NODEPORTS} -m comment --comment "{spn} health check node port" '
                   f'-m tcp -p tcp --dport {info.health_check_node_port} -j ACCEPT')


def write_internal_masquerade(d: ServicePortDecision, ctx: _Context, rules: list) -> None:
    """First rule of the internal policy chain: mark cluster-IP traffic for
    masquerade (everything with --masquerade-all, else what the local
    detector says is not pod traffic; nothing with the no-op detector)."""
    if not d.has_internal_endpoints:
        return
    info = d.info
    args = (f'-m comment --comment "{info.spn} cluster IP" {_pp(info.protocol)} '
            f'-d {info.cluster_ip} --dport {info.port}')
    if ctx.masquerade_all:
        rules.append(f"-A {d.internal_policy_chain} {args} -j {KUBE_MARK_MASQ}")
    elif ctx.detector.implemented:
        rules.append(f"-A {d.internal_policy_chain} {args} {ctx.detector.if_not_local} -j {KUBE_MARK_MASQ}")


def write_external_chain(d: ServicePortDecision, ctx: _Context, chains: list, rules: list) -> None:
    """KUBE-EXT-<h>: entry for externalIP, LB and NodePort traffic. eTP=Cluster
    masquerades everything; eTP=Local short-circuits pod and node traffic to
    KUBE-SVC (all endpoints) and sends the rest to KUBE-SVL."""
    if not d.uses_external_traffic_chain:
        return
    info = d.info
    ext = info.external_chain
    chains.append(f":{ext} - [0:0]")
    if not info.external_policy_local:
        rules.append(f'-A {ext} -m comment --comment "masquerade traffic for {info.spn} external destinations" '
                     f"-j {KUBE_MARK_MASQ}")
    else:
        if ctx.detector.implemented:
            rules.append(f'-A {ext} -m comment --comment "pod traffic for {info.spn} external destinations" '
                         f"{ctx.detector.if_local} -j {info.cluster_policy_chain}")
        rules.append(f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {info.spn} external '
                     f'destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}')
        rules.append(f'-A {ext} -m comment --comment "route LOCAL traffic for {info.spn} external '
                     f'destinations" -m addrtype --src-type LOCAL -j {info.cluster_policy_chain}')
    if d.has_external_endpoints:
        rules.append(f"-A {ext} -j {d.external_policy_chain}")


def write_firewall_chain(d: ServicePortDecision, ctx: _Context, chains: list, rules: list) -> None:
    """KUBE-FW-<h>: loadBalancerSourceRanges. Allowed sources go on to
    KUBE-EXT; the rest falls off the end (a rule with no target) and is
    dropped by filter KUBE-PROXY-FIREWALL because it was not DNATed."""
    if not d.uses_fw_chain:
        return
    info = d.info
    fw = info.firewall_chain
    chains.append(f":{fw} - [0:0]")
    head = f'-A {fw} -m comment --comment "{info.spn} loadbalancer IP"'
    allow_from_node = False
    node_ip = ipaddress.ip_address(ctx.node_ip) if ctx.node_ip else None
    for cidr in info.lb_source_ranges:
        rules.append(f"{head} -s {cidr} -j {info.external_chain}")
        if node_ip is not None:
            net = ipaddress.ip_network(cidr)
            if net.version == node_ip.version and node_ip in net:
                allow_from_node = True
    if allow_from_node:
        # The VIP is often a local address: node -> VIP loops back with the VIP as source.
        for ip in info.lb_vips:
            rules.append(f"{head} -s {ip} -j {info.external_chain}")
    rules.append(f'-A {fw} -m comment --comment "other traffic to {info.spn} will be dropped by '
                 f'KUBE-PROXY-FIREWALL"')


def write_service_to_endpoint_rules(d: ServicePortDecision, ctx: _Context, chain: str, endpoints: tuple,
                                    rules: list) -> None:
    """KUBE-SVC-<h> / KUBE-SVL-<h> dispatch (writeServiceToEndpointRules):
    ClientIP affinity checks first, then one rule per endpoint with
    probability 1/(n-i), the last one unconditional."""
    info = d.info
    large = ctx.large_cluster
    if info.affinity_client_ip:
        for e in endpoints:
            c = "" if large else f' -m comment --comment "{info.spn} -> {e.string}"'
            rules.append(f"-A {chain}{c} -m recent --name {e.chain} --rcheck --seconds {info.sticky_seconds} "
                         f"--reap -j {e.chain}")
    n = len(endpoints)
    for i, e in enumerate(endpoints):
        c = "" if large else f' -m comment --comment "{info.spn} -> {e.string}"'
        if i < n - 1:
            rules.append(f"-A {chain}{c} -m statistic --mode random --probability {_probability(n - i)} "
                         f"-j {e.chain}")
        else:
            rules.append(f"-A {chain}{c} -j {e.chain}")


def write_policy_chains(d: ServicePortDecision, ctx: _Context, chains: list, rules: list) -> None:
    """KUBE-SVC-<h> (Cluster policy endpoints) and KUBE-SVL-<h> (Local)."""
    if d.uses_cluster_policy_chain:
        chains.append(f":{d.info.cluster_policy_chain} - [0:0]")
        write_service_to_endpoint_rules(d, ctx, d.info.cluster_policy_chain, d.cluster_endpoints, rules)
    if d.uses_local_policy_chain:
        chains.append(f":{d.info.local_policy_chain} - [0:0]")
        write_service_to_endpoint_rules(d, ctx, d.info.local_policy_chain, d.local_endpoints, rules)


def write_endpoint_chains(d: ServicePortDecision, ctx: _Context, chains: list, rules: list) -> None:
    """KUBE-SEP-<x> per reachable endpoint: hairpin masquerade, affinity
    record, DNAT."""
    info = d.info
    pp = _pp(info.protocol)
    c = "" if ctx.large_cluster else f" -m comment --comment {info.spn}"
    for e in d.reachable_endpoints:
        chains.append(f":{e.chain} - [0:0]")
        rules.append(f"-A {e.chain}{c} -s {e.ip} -j {KUBE_MARK_MASQ}")
        rec = f" -m recent --name {e.chain} --set" if info.affinity_client_ip else ""
        rules.append(f"-A {e.chain}{c}{rec} {pp} -j DNAT --to-destination {e.string}")


def write_service_port(d: ServicePortDecision, ctx: _Context) -> _Fragment:
    """All lines of one service port, in kube-proxy's order."""
    flt: list = []
    top: list = []
    write_top_level_rules(d, ctx, top, flt)
    chains: list = []
    rules: list = []
    write_internal_masquerade(d, ctx, rules)
    write_external_chain(d, ctx, chains, rules)
    write_firewall_chain(d, ctx, chains, rules)
    write_policy_chains(d, ctx, chains, rules)
    write_endpoint_chains(d, ctx, chains, rules)
    return _Fragment(tuple(flt), tuple(top), tuple(chains), tuple(rules), d.chains)


def write_fixed_rules(config: ProxyConfig, ctx: _Context) -> tuple:
    """The rules that do not depend on Services: returns (filter chains,
    filter rules to write first, filter rules to write last (KUBE-FORWARD),
    nat chains, nat rules to write first)."""
    mark = config.masquerade_mark
    filter_chains = [f":{c} - [0:0]" for c in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD,
                                                KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)]
    nat_chains = [f":{c} - [0:0]" for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)]
    masq = (f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
            f"-j MASQUERADE")
    if config.random_fully:
        masq += " --random-fully"
    nat_rules = [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        masq,
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    filter_first = []
    if ctx.family == 4 and ctx.localhost_nodeports:
        filter_chains.append(f":{KUBELET_FIREWALL} - [0:0]")
        filter_first.append(f'-A {KUBELET_FIREWALL} -m comment --comment "block incoming localnet connections" '
                            f"-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
                            f"-j DROP")
    filter_last = []
    if not config.tcp_be_liberal:
        nf = f" -m nfacct --nfacct-name {NFACCT_CT_INVALID}" if config.nfacct else ""
        filter_last.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{nf} -j DROP")
    filter_last.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                       f"-m mark --mark {mark}/{mark} -j ACCEPT")
    filter_last.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                       f"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    return filter_chains, filter_first, filter_last, nat_chains, nat_rules


# --------------------------------------------------------------------------
# Node ports (pkg/proxy/util/nodeport_addresses.go)

def _node_addresses(config: ProxyConfig) -> list:
    """The node's interface addresses in interface order: loopback first
    (127.0.0.1, ::1), then `config.node_ips`."""
    out = ["127.0.0.1", "::1"]
    for ip in config.node_ips:
        p = parse_ip(str(ip).split("/")[0])
        if p is not None and p[1] not in out:
            out.append(p[1])
    return out


def _primary_node_ip(config: ProxyConfig) -> str | None:
    for ip in config.node_ips:
        p = parse_ip(str(ip).split("/")[0])
        if p is not None and p[0] == config.ip_family:
            return p[1]
    return None


def nodeport_addresses(config: ProxyConfig) -> tuple:
    """NewNodePortAddresses: (match_all, cidrs of this family, contains IPv4
    loopback). `None`, or no CIDR of this family, means all addresses
    ("0.0.0.0/0" or "::/0"); the word "primary" means the primary node IP of
    the family. As upstream, a zero CIDR ends the list."""
    fam = config.ip_family
    strings = []
    for s in config.nodeport_addresses or ():
        s = str(s).strip()
        if s == "primary":
            ip = _primary_node_ip(config)
            if ip is not None:
                strings.append(f"{ip}/{32 if fam == 4 else 128}")
            continue
        p = parse_cidr(s)
        if p is None:
            raise KplabError(f"ProxyConfig.nodeport_addresses: {s!r} is not a CIDR")
        if p[0] == fam:
            strings.append(s)
    if not strings:
        strings = ["0.0.0.0/0" if fam == 4 else "::/0"]
    loopback_start = ipaddress.ip_address("127.0.0.0")
    cidrs, match_all, contains_loopback = [], False, False
    for s in strings:
        net = parse_cidr(s)[1]
        if net.version == 4 and (ipaddress.ip_address(parse_ip(s.split("/")[0])[1]).is_loopback
                                 or loopback_start in net):
            contains_loopback = True
        if s in ("0.0.0.0/0", "::/0"):
            cidrs, match_all = [net], True
            break
        cidrs.append(net)
    return match_all, tuple(cidrs), contains_loopback


def write_nodeports_jump(config: ProxyConfig, ctx: _Context, match_all: bool, cidrs: tuple, rules: list) -> None:
    """The last rule(s) of nat KUBE-SERVICES: hand traffic for local
    addresses to KUBE-NODEPORTS."""
    if match_all:
        dest = "-m addrtype --dst-type LOCAL"
        if ctx.family == 6:
            dest += " ! -d ::1/128"
        elif not ctx.localhost_nodeports:
            dest += " ! -d 127.0.0.0/8"
        rules.append(f"-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_LAST_COMMENT} {dest} -j {KUBE_NODEPORTS}")
        return
    seen = set()
    for ip in _node_addresses(config):
        a = ipaddress.ip_address(ip)
        if ip in seen or not any(c.version == a.version and a in c for c in cidrs):
            continue
        seen.add(ip)
        if a.is_loopback and (ctx.family == 6 or not ctx.localhost_nodeports):
            continue
        rules.append(f"-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_LAST_COMMENT} -d {ip} -j {KUBE_NODEPORTS}")


# --------------------------------------------------------------------------
# The node's tables (what kube-proxy's fake iptables holds)

def _jump_rule(frm: str, to: str, comment: str, extra: str) -> str:
    parts = [f"-A {frm}"]
    if extra:
        parts.append(extra)
    if comment:
        parts.append(f'-m comment --comment "{comment}"')
    parts.append(f"-j {to}")
    return " ".join(parts)


def _fresh_tables() -> dict:
    return {t: {c: [] for c in BUILTIN_CHAINS[t]} for t in TABLES}


def _ensure_jumps(tables: dict) -> None:
    """EnsureChain + EnsureRule(Prepend) for every jump, as a full sync does:
    a missing rule is inserted at position 1, so later ones end up first."""
    for table, to, frm, comment, extra in JUMP_CHAINS + KUBELET_JUMP_CHAINS:
        chains = tables[table]
        chains.setdefault(to, [])
        line = _jump_rule(frm, to, comment, extra)
        if line not in chains[frm]:
            chains[frm].insert(0, line)


def _apply_restore(tables: dict, text: str) -> dict:
    """iptables-restore --noflush onto `tables` (not modified; a new dict is
    returned): a declared chain is flushed (created if new), rules are
    appended, `-X` deletes. Raises KplabError if a rule jumps to a chain
    that does not exist afterwards (iptables-restore then applies nothing)."""
    new = {t: dict(c) for t, c in tables.items()}
    owned_by: dict = {}                 # table -> chains whose list is new
    cur = owned = tname = None
    for line in text.split("\n"):
        if line[:3] == "-A ":           # most lines: test them first
            sp = line.find(" ", 3)
            name = line[3:sp] if sp != -1 else line[3:]
            rules = cur.get(name)
            if rules is None:
                raise KplabError(f"iptables-restore: chain {name} does not exist (table {tname})")
            if name not in owned:
                rules = cur[name] = list(rules)
                owned.add(name)
            rules.append(line)
        elif not line or line[0] == "#":
            continue
        elif line[0] == "*":
            tname = line[1:].strip()
            cur = new.setdefault(tname, {})
            owned = owned_by.setdefault(tname, set())
        elif line == "COMMIT":
            cur = None
        elif line[0] == ":":
            name = line[1:].split(" ", 1)[0]
            cur[name] = []
            owned.add(name)
        elif line.startswith("-X "):
            cur.pop(line[3:].strip(), None)
    for t, chains in new.items():
        for rules in chains.values():
            for r in rules:
                i = r.rfind(" -j KUBE-")
                if i != -1:
                    j = r.find(" ", i + 4)
                    target = r[i + 4:j] if j != -1 else r[i + 4:]
                    if target not in chains:
                        raise KplabError(f"iptables-restore: {r!r} jumps to chain {target}, which does not exist")
    return new


def _check_jumps(rules, chains) -> None:
    """iptables-restore's refusal of a rule that jumps to a KUBE- chain
    missing from its table (`chains`)."""
    for r in rules:
        i = r.rfind(" -j KUBE-")
        if i != -1:
            j = r.find(" ", i + 4)
            target = r[i + 4:j] if j != -1 else r[i + 4:]
            if target not in chains:
                raise KplabError(f"iptables-restore: {r!r} jumps to chain {target}, which does not exist")


def _tables_text(tables: dict) -> str:
    """The tables in iptables-restore form (built-in chains with policy ACCEPT)."""
    out = []
    for t in TABLES:
        chains = tables[t]
        out.append(f"*{t}")
        for c in chains:
            out.append(f":{c} ACCEPT [0:0]" if c in BUILTIN_CHAINS[t] else f":{c} - [0:0]")
        for rules in chains.values():
            out.extend(rules)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Results

@dataclass(frozen=True)
class Rendered:
    """The result of one sync.

    * `restore_text_raw`: what kube-proxy passed to iptables-restore, in the
      order kube-proxy writes it.
    * `restore_text`: the same in the canonical order of kube-proxy's unit
      tests (`canonical_order`; computed on first use).
    * `tables`: the node's filter and nat tables after the sync, in restore
      form: table -> chain -> tuple of "-A CHAIN ..." lines (built-in chains
      included, with kube-proxy's and kubelet's jump rules). Always the
      node's whole state, after a partial sync too (chains it did not write
      are as earlier syncs left them). Chains are in the order they were
      created on the node.
    * `save_text` / `ruleset`: `iptables-save` of the node after the sync, as
      the kplab engine normalises it (computed on first use).
    * `chains`: service port name -> the nat chains it owns (treat the lists
      as read-only: later syncs may share them).
    * `decisions`: service port name -> ServicePortDecision.
    * `sync`: "full" or "partial"; `large_cluster_mode`; `warnings`.
    """

    restore_text_raw: str
    tables: dict = field(repr=False)
    chains: dict = field(repr=False)
    decisions: dict = field(repr=False, compare=False)
    config: ProxyConfig = field(repr=False)
    sync: str = "full"
    large_cluster_mode: bool = False
    warnings: tuple = ()

    @functools.cached_property
    def restore_text(self) -> str:
        """The restore input in canonical order (see `canonical_order`)."""
        return canonical_order(self.restore_text_raw)

    @functools.cached_property
    def state_text(self) -> str:
        """The node's tables as iptables-restore text, before normalisation."""
        return _tables_text(self.tables)

    @functools.cached_property
    def ruleset(self):
        """The parsed kplab Ruleset of the node after the sync."""
        from ..netfilter import parse as _parse
        return _parse(self.state_text, source="kube-proxy", family=self.config.ip_family)

    @functools.cached_property
    def save_text(self) -> str:
        """What `iptables-save` prints on the node after the sync (no # lines)."""
        from ..netfilter import save as _save
        return _save(self.ruleset)

    def service_chains(self, spn: str) -> tuple:
        return tuple(self.chains.get(spn, ()))


@dataclass(frozen=True)
class RenderDiff:
    """What changes on the node between two syncs. Rules are in
    iptables-save form; keys are (table, chain)."""

    chains_added: tuple
    chains_removed: tuple
    rules_added: dict
    rules_removed: dict
    services_added: tuple
    services_removed: tuple
    services_changed: tuple

    @property
    def empty(self) -> bool:
        return not (self.chains_added or self.chains_removed or self.rules_added or self.rules_removed)

    def __bool__(self) -> bool:
        return not self.empty

    @property
    def changed_chains(self) -> tuple:
        return tuple(sorted(set(self.rules_added) | set(self.rules_removed)))

    def text(self) -> str:
        """A compact, diff-like listing."""
        out = []
        for t, c in self.chains_added:
            out.append(f"+ chain {t} {c}")
        for t, c in self.chains_removed:
            out.append(f"- chain {t} {c}")
        for key in self.changed_chains:
            out.append(f"@@ {key[0]} {key[1]}")
            out.extend("- " + r for r in self.rules_removed.get(key, ()))
            out.extend("+ " + r for r in self.rules_added.get(key, ()))
        return "\n".join(out) + ("\n" if out else "")


def _save_form(table: str, chain: str, lines, chain_names, family: int, cache: dict) -> list:
    """Restore-form rule lines of one chain in iptables-save form (the kplab
    engine's normalisation, rule by rule)."""
    from ..netfilter.iptables_save import parse_rule, tokenize
    return [parse_rule(tokenize(line)[2:], table, chain, family, chains=chain_names, cache=cache).text(chain)
            for line in lines]


def _minus(a: list, b: list) -> list:
    """The elements of a not matched by one in b (multiset difference, in a's order)."""
    left = Counter(b)
    out = []
    for r in a:
        if left[r] > 0:
            left[r] -= 1
        else:
            out.append(r)
    return out


def diff(old: Rendered, new: Rendered) -> RenderDiff:
    """Chains and rules added and removed between two syncs, in save form
    (for example: replicas 3 -> 4 adds one KUBE-SEP chain and rewrites the
    KUBE-SVC chain's probabilities). Only chains whose text differs are
    normalised, so a diff of two large rule sets stays cheap."""
    family = new.config.ip_family
    cache: dict = {}
    added_c, removed_c = [], []
    r_add, r_rem = {}, {}
    for t in TABLES:
        oc, nc = old.tables.get(t, {}), new.tables.get(t, {})
        names_old, names_new = set(oc), set(nc)
        added_c.extend((t, c) for c in sorted(names_new - names_old))
        removed_c.extend((t, c) for c in sorted(names_old - names_new))
        for c in sorted(names_old | names_new):
            a, b = tuple(oc.get(c, ())), tuple(nc.get(c, ()))
            if a == b:
                continue
            sa = _save_form(t, c, a, names_old | {c}, family, cache)
            sb = _save_form(t, c, b, names_new | {c}, family, cache)
            plus, minus = _minus(sb, sa), _minus(sa, sb)
            if plus:
                r_add[(t, c)] = tuple(plus)
            if minus:
                r_rem[(t, c)] = tuple(minus)
    so, sn = set(old.chains), set(new.chains)
    touched = {c for (t, c) in set(r_add) | set(r_rem) if t == "nat"}
    changed = []
    for spn in sorted(so & sn):
        mine = set(old.chains[spn]) | set(new.chains[spn])
        if (old.chains[spn] != new.chains[spn] or mine & touched
                or old.decisions.get(spn) != new.decisions.get(spn)):
            changed.append(spn)
    return RenderDiff(tuple(added_c), tuple(removed_c), r_add, r_rem,
                      tuple(sorted(sn - so)), tuple(sorted(so - sn)), tuple(changed))


# --------------------------------------------------------------------------
# The proxier

def _effective(config: ProxyConfig) -> tuple:
    """(ctx without large-cluster flag, match_all, cidrs). Validates config."""
    if config.ip_family not in (4, 6):
        raise KplabError(f"ProxyConfig.ip_family must be 4 or 6, not {config.ip_family!r}")
    match_all, cidrs, has_loopback = nodeport_addresses(config)
    localhost = bool(config.localhost_nodeports) and has_loopback and config.ip_family == 4
    ctx = _Context(family=config.ip_family, masquerade_all=bool(config.masquerade_all),
                   detector=local_detector(config), localhost_nodeports=localhost,
                   nfacct_localhost=bool(config.nfacct), node_ip=_primary_node_ip(config),
                   large_cluster=False)
    return ctx, match_all, cidrs


class _Entry:
    """What the change trackers hold for one Service: the Service, its
    service ports (`infos`, kube-proxy's ServicePortMap entries), the
    per-port endpoint lists (`eps`, the EndpointsMap entries, computed from
    the slices `eps_src`; None while the Service has no ports of this
    family), `n_eps`, and `portmap` ((spn, proto) -> (info, raw endpoints):
    what decides whether a partial sync rewrites the Service)."""

    __slots__ = ("svc", "infos", "warns", "eps_src", "eps", "n_eps", "_portmap")

    def __init__(self, svc, infos, warns, eps_src, eps, n_eps, portmap=None):
        self.svc, self.infos, self.warns = svc, infos, warns
        self.eps_src, self.eps, self.n_eps, self._portmap = eps_src, eps, n_eps, portmap

    @property
    def portmap(self) -> dict:
        pm = self._portmap
        if pm is None:
            pm = {}
            eps = self.eps
            for info in self.infos:
                pm[(info.spn, info.protocol)] = (info, eps.get((info.port_name, info.protocol.upper()), ()))
            self._portmap = pm
        return pm


def _rule_chain(line: str) -> str:
    sp = line.find(" ", 3)
    return line[3:sp] if sp != -1 else line[3:]


class _Row:
    """The lines of one Service (all its ports, in declaration order) for
    one context. `ports` holds (info, raw endpoints, ctx, decision,
    fragment) per port, reused by identity (then equality) on rebuilds.

    * `filter`: its filter rules; `top`: its nat KUBE-SERVICES/KUBE-NODEPORTS
      rules; `decls`: its `:CHAIN` lines; `active`: the nat chains it owns.
    * `full` (on use): `top` and its own chains' rules interleaved per port,
      as a sync that writes the Service emits them.
    * `split(fixed_names)` (on use): (table, chain) -> its `filter`/`top`
      lines of that chain, or None if a line is for a chain the sync does
      not declare itself.
    * `own` (on use): [(chain, rules)] in declaration order, or None if a
      rule is for a chain the Service does not declare.
    """

    __slots__ = ("ports", "filter", "top", "decls", "active", "_split", "_own")

    def __init__(self, entry: _Entry, ctx: _Context, old):
        reuse = None
        if old is not None:
            reuse = {(p[0].spn, p[0].protocol): p for p in old.ports}
        ports = []
        eps = entry.eps
        for info in entry.infos:
            raw = eps.get((info.port_name, info.protocol.upper()), ())
            p = reuse.get((info.spn, info.protocol)) if reuse is not None else None
            if (p is None or (p[2] is not ctx and p[2] != ctx) or (p[0] is not info and p[0] != info)
                    or (p[1] is not raw and p[1] != raw)):
                d = decide(info, _endpoint_infos(info, raw))
                p = (info, raw, ctx, d, write_service_port(d, ctx))
            ports.append(p)
        if len(ports) == 1:
            p = ports[0]
            frag = p[4]
            self.filter, self.top = frag.filter_rules, frag.nat_top
            self.decls, self.active = frag.nat_chains, frag.active
        else:
            frags = [p[4] for p in ports]
            self.filter = tuple(itertools.chain.from_iterable(f.filter_rules for f in frags))
            self.top = tuple(itertools.chain.from_iterable(f.nat_top for f in frags))
            self.decls = tuple(itertools.chain.from_iterable(f.nat_chains for f in frags))
            self.active = tuple(itertools.chain.from_iterable(f.active for f in frags))
        self.ports = tuple(ports)
        self._split = self._own = False

    @property
    def full(self) -> tuple:
        if len(self.ports) == 1:
            frag = self.ports[0][4]
            return frag.nat_top + frag.nat_rules
        return tuple(itertools.chain.from_iterable(p[4].nat_top + p[4].nat_rules for p in self.ports))

    def split(self, fixed_names: dict):
        if self._split is False:
            split: dict = {}
            for table, lines in (("filter", self.filter), ("nat", self.top)):
                names = fixed_names[table]
                for line in lines:
                    c = _rule_chain(line)
                    if c not in names:
                        split = None
                        break
                    split.setdefault((table, c), []).append(line)
                if split is None:
                    break
            self._split = None if split is None else {k: tuple(v) for k, v in split.items()}
        return self._split

    @property
    def own(self):
        if self._own is False:
            acc: dict = {}
            ok = True
            for line in self.decls:
                acc.setdefault(line[1:].split(" ", 1)[0], [])
            for p in self.ports:
                for line in p[4].nat_rules:
                    rules = acc.get(_rule_chain(line))
                    if rules is None:
                        ok = False
                        break
                    rules.append(line)
            self._own = [(c, tuple(r)) for c, r in acc.items()] if ok else None
        return self._own


class _Fixed:
    """The Service-independent part of a sync for one context: the lines of
    `write_fixed_rules` and the KUBE-NODEPORTS jump(s), and per declared chain
    the rules written before (`pre`) and after (`post`) the per-Service ones."""

    def __init__(self, config: ProxyConfig, ctx: _Context, match_all: bool, cidrs: tuple):
        fc, ff, fl, nc, nr = write_fixed_rules(config, ctx)
        nodeports: list = []
        write_nodeports_jump(config, ctx, match_all, cidrs, nodeports)
        self.filter_chains, self.filter_first, self.filter_last = tuple(fc), tuple(ff), tuple(fl)
        self.nat_chains, self.nat_rules, self.nodeports = tuple(nc), tuple(nr), tuple(nodeports)
        self.names = {"filter": tuple(d[1:].split(" ", 1)[0] for d in fc),
                      "nat": tuple(d[1:].split(" ", 1)[0] for d in nc)}
        self.pre = {"filter": self._by_chain(ff), "nat": self._by_chain(nr)}
        self.post = {"filter": self._by_chain(fl), "nat": self._by_chain(nodeports)}

    @staticmethod
    def _by_chain(lines) -> dict:
        out: dict = {}
        for line in lines:
            out.setdefault(_rule_chain(line), []).append(line)
        return {c: tuple(r) for c, r in out.items()}


#: The snapshot of a Service that did not exist at the last sync.
_ABSENT = ({}, ())

#: Above this many rebuilt rows, the sorted order and the columns are rebuilt
#: wholesale instead of edited row by row.
_BULK_ROWS = 64


class Proxier:
    """kube-proxy's iptables proxier for one node and one IP family, with
    state between syncs.

    Two ways to feed it, which can be mixed:

    * `sync(services, slices, partial=False)`: the whole desired state each
      time. Services and EndpointSlices that did not change (by identity,
      then equality) reuse the previous sync's work; a full sync is what
      `render` does, plus stale-chain deletion (`:CHAIN` + `-X CHAIN`) for
      per-service chains that earlier syncs created and this one no longer
      writes. `partial=True` writes what kube-proxy's partial sync
      (MinimizeIPTablesRestore) writes: every top-level rule, but only the
      chains of Services whose service ports or endpoints changed.
    * kube-proxy's change trackers: `update(services=..., removed_services=...,
      slices_for=...)` records changes (any number of calls), and
      `sync_changes()` syncs them (partial by default) with work proportional
      to what changed: the Services' sorted order is kept incrementally,
      unchanged Services' lines are reused as they are, and a partial sync's
      node state is computed from the chains it rewrites, not by replaying
      the whole restore input.

    The first sync, the first after `force_full_sync()` and the first after a
    failed restore are full whatever is asked. Every `Rendered` holds the
    node's whole state after its sync (its `save_text` / `ruleset` are
    computed from it on first use).

    Simplification: kube-proxy skips stale-chain deletion in large-cluster
    mode unless `syncPeriod` has passed since the last one; this class has
    no clock and always deletes.
    """

    def __init__(self, config: ProxyConfig):
        self.config = config
        self._base_ctx, self._match_all, self._cidrs = _effective(config)
        self._large_ctx = _replace_ctx(self._base_ctx, True)
        self._fixed: dict = {}            # ctx -> _Fixed
        self._tables = _fresh_tables()    # after the first sync: table -> chain -> tuple of rules
        self._need_full = True
        self._syncs = 0
        # Desired state (the change trackers).
        self._entries: dict = {}          # service key -> _Entry
        self._slices: dict = {}           # service key -> tuple of its EndpointSlices
        self._total = 0                   # endpoints over all service ports (large-cluster mode)
        self._pending: set = set()        # keys whose _Row must be rebuilt
        self._snap: dict = {}             # key -> (portmap, active chains) at the last successful sync,
        #                                   for the keys changed since
        self._warn_keys: list = []        # sorted keys of entries with warnings
        # Rendered state.
        self._rows: dict = {}             # key -> _Row, for Services with service ports
        self._order: list = []            # the keys of _rows, sorted
        self._cols: dict = {"filter": [], "top": []}   # "filter" / "top" / (table, chain) -> list parallel
        #                                                  to _order: that row's lines
        self._row_ctx = None              # the context the rows were built with
        self._split_cols = None           # (table, chain) -> list parallel to _order, built on demand
        self._irregular = 0               # rows whose split is None (while _split_cols is built)
        self._owned: dict = {}            # spn -> nat chains it owns
        self._decisions: dict = {}        # spn -> ServicePortDecision
        self._pos = None                  # nat chain -> creation rank (node order), built on demand
        self._pos_next = 0

    def force_full_sync(self) -> None:
        """The next sync is full (kube-proxy's forceSyncProxyRules)."""
        self._need_full = True

    @property
    def tables(self) -> dict:
        return {t: {c: tuple(r) for c, r in ch.items()} for t, ch in self._tables.items()}

    @property
    def has_pending_changes(self) -> bool:
        """Whether changes were recorded that no successful sync wrote yet."""
        return bool(self._snap)

    # ---------------------------------------------------------------- tracking

    def update(self, services=(), removed_services=(), slices_for=None) -> None:
        """Record changes for the next `sync_changes()` (kube-proxy's
        ServiceChangeTracker and EndpointsChangeTracker).

        * `services`: new or changed Service objects (a Service replaces the
          one with the same namespace/name).
        * `removed_services`: keys ("namespace/name") or Service objects of
          deleted Services. Their EndpointSlices are kept (as kube-proxy
          keeps them) until `slices_for` says otherwise.
        * `slices_for`: {service key: EndpointSlices}: the complete current set
          of slices of each Service named (empty: none left).

        Giving an unchanged object is harmless (identity, then equality, is
        checked). Raises KplabError, changing nothing, for a Service given
        twice or both updated and removed, or a slice listed under another
        Service's key."""
        new_svcs: dict = {}
        for svc in services:
            key = svc.key
            if key in new_svcs:
                raise KplabError(f"Service {key} is given twice")
            new_svcs[key] = svc
        removed = set()
        for r in removed_services:
            key = r if isinstance(r, str) else r.key
            if key in new_svcs:
                raise KplabError(f"Service {key} is both updated and removed")
            removed.add(key)
        new_slices: dict = {}
        for key, sls in (slices_for or {}).items():
            t = tuple(sls)
            for sl in t:
                if f"{sl.namespace}/{sl.service}" != key:
                    raise KplabError(f"EndpointSlice {sl.namespace}/{sl.name} belongs to Service "
                                     f"{sl.namespace}/{sl.service}, not {key}")
            new_slices[key] = t
        self._apply_update(new_svcs, removed, new_slices)

    def _apply_update(self, new_svcs: dict, removed, new_slices: dict) -> None:
        cfg = self.config
        entries, all_slices = self._entries, self._slices
        # Staged as three parallel lists: key, new entry (None: removed; a
        # (Service, slices) pair: equal objects, nothing to redo), changed.
        s_keys, s_entries, s_changed = [], [], []
        for key in set(new_svcs) | set(removed) | set(new_slices):
            old = entries.get(key)
            if key in removed:
                if old is not None:
                    s_keys.append(key)
                    s_entries.append(None)
                    s_changed.append(True)
                continue
            svc = new_svcs.get(key)
            if svc is None and old is not None:
                svc = old.svc
            if svc is None:
                continue                  # slices of a Service not (yet) known
            sls = new_slices[key] if key in new_slices else all_slices.get(key, ())
            same_svc = old is not None and (old.svc is svc or old.svc == svc)
            if same_svc:
                infos, warns = old.infos, old.warns
            else:
                w: list = []
                infos = service_port_infos(svc, cfg, w)
                warns = tuple(w)
            if not infos:
                eps = None
            elif old is not None and old.eps is not None and (old.eps_src is sls or old.eps_src == sls):
                eps = old.eps
            else:
                eps = endpoints_by_port(sls, cfg)
            if same_svc and eps is old.eps:
                s_keys.append(key)                          # equal objects: remember the new ones
                s_entries.append((svc, sls))
                s_changed.append(False)
                continue
            n = 0
            for info in infos:
                n += len(eps.get((info.port_name, info.protocol.upper()), ()))
            s_keys.append(key)
            s_entries.append(_Entry(svc, infos, warns, sls, eps, n))
            s_changed.append(True)
        # Commit (nothing above changed any state).
        for key, sls in new_slices.items():
            if sls:
                all_slices[key] = sls
            else:
                all_slices.pop(key, None)
        snap, rows = self._snap, self._rows
        for key, entry, changed in zip(s_keys, s_entries, s_changed):
            old = entries.get(key)
            if not changed:
                old.svc, old.eps_src = entry
                continue
            if key not in snap:
                row = rows.get(key)
                snap[key] = _ABSENT if old is None else (old.portmap, () if row is None else row.active)
            self._pending.add(key)
            self._total += (0 if entry is None else entry.n_eps) - (0 if old is None else old.n_eps)
            had, has = old is not None and bool(old.warns), entry is not None and bool(entry.warns)
            if had != has:
                i = bisect.bisect_left(self._warn_keys, key)
                if has:
                    self._warn_keys.insert(i, key)
                else:
                    del self._warn_keys[i]
            if entry is None:
                del entries[key]
            else:
                entries[key] = entry

    # ---------------------------------------------------------------- syncs

    def sync(self, services, slices, *, partial: bool = False) -> Rendered:
        """One syncProxyRules() for this desired state (all Services, all
        EndpointSlices): returns what was restored and the node after it."""
        services = tuple(services)
        by_key: dict = {}
        for svc in services:
            key = svc.key
            if key in by_key:
                raise KplabError(f"Service {key} is given twice")
            by_key[key] = svc
        groups: dict = {}
        for sl in slices:
            key = f"{sl.namespace}/{sl.service}"
            g = groups.get(key)
            if g is None:
                groups[key] = [sl]
            else:
                g.append(sl)
        entries = self._entries
        changed = {}
        for key, svc in by_key.items():
            e = entries.get(key)
            if e is None or e.svc is not svc:
                changed[key] = svc
        removed = {key for key in entries if key not in by_key}
        old_slices = self._slices
        new_slices = {}
        for key, g in groups.items():
            t = tuple(g)
            if old_slices.get(key, ()) != t:
                new_slices[key] = t
        for key in old_slices:
            if key not in groups:
                new_slices[key] = ()
        self._apply_update(changed, removed, new_slices)
        warnings = None
        if self._warn_keys:
            warnings = tuple(w for svc in services for w in entries[svc.key].warns)
        return self._sync(partial, warnings)

    def sync_changes(self, *, partial: bool = True) -> Rendered:
        """Sync what `update()` recorded: a partial sync (kube-proxy's
        MinimizeIPTablesRestore) unless `partial=False` or a full one is due.
        Warnings are those of all known Services, by namespace/name."""
        return self._sync(partial, None)

    def _fixed_for(self, ctx: _Context) -> _Fixed:
        f = self._fixed.get(ctx)
        if f is None:
            f = self._fixed[ctx] = _Fixed(self.config, ctx, self._match_all, self._cidrs)
        return f

    def _refresh_rows(self, ctx: _Context, fixed: _Fixed) -> bool:
        """Rebuild the rows of pending keys (of all keys if the context
        changed) and keep the sorted order, the columns and the per-port
        views up to date. True if the order and columns were rebuilt
        wholesale (many rows changed)."""
        rows = self._rows
        if self._row_ctx is not ctx:
            keys = set(rows) | self._pending
        else:
            keys = self._pending
        self._row_ctx = ctx
        if not keys:
            return False
        self._pending = set()
        entries = self._entries
        bulk = len(keys) > _BULK_ROWS and len(keys) * 8 > len(self._order)
        owned, decisions, order, cols = self._owned, self._decisions, self._order, self._cols
        split_cols = None if bulk else self._split_cols
        names = fixed.names
        for key in (keys if bulk else sorted(keys)):
            old = rows.get(key)
            e = entries.get(key)
            new = _Row(e, ctx, old) if e is not None and e.infos else None
            if old is not None:
                for p in old.ports:
                    owned.pop(p[0].spn, None)
                    decisions.pop(p[0].spn, None)
                del rows[key]
            if new is not None:
                if not bulk:
                    for p in new.ports:
                        owned[p[0].spn] = list(p[4].active)
                        decisions[p[0].spn] = p[3]
                rows[key] = new
            if bulk:
                continue
            i = bisect.bisect_left(order, key)
            present = i < len(order) and order[i] == key
            if split_cols is not None and old is not None and old.split(names) is None:
                self._irregular -= 1
            if new is None:
                if present:
                    del order[i]
                    for col in cols.values():
                        del col[i]
                    if split_cols is not None:
                        for col in split_cols.values():
                            del col[i]
                continue
            if not present:
                order.insert(i, key)
                for col in cols.values():
                    col.insert(i, ())
                if split_cols is not None:
                    for col in split_cols.values():
                        col.insert(i, ())
            cols["filter"][i] = new.filter
            cols["top"][i] = new.top
            if split_cols is not None:
                split = new.split(names)
                if split is None:
                    self._irregular += 1
                    split = {}
                for sk, col in split_cols.items():
                    col[i] = split.get(sk, ())
                for sk, lines in split.items():
                    if sk not in split_cols:
                        col = split_cols[sk] = [()] * len(order)
                        col[i] = lines
        if bulk:
            order = self._order = sorted(rows)
            self._cols = {"filter": [rows[k].filter for k in order], "top": [rows[k].top for k in order]}
            self._split_cols = None
            self._rebuild_views()
        return bulk

    def _split_columns(self, fixed: _Fixed) -> dict:
        """(table, chain) -> list parallel to the order: each row's lines of
        that top-level chain (built on first use after a bulk rebuild, then
        kept up to date)."""
        if self._split_cols is None:
            rows, names = self._rows, fixed.names
            n = len(self._order)
            cols: dict = {}
            irregular = 0
            for i, k in enumerate(self._order):
                split = rows[k].split(names)
                if split is None:
                    irregular += 1
                    continue
                for sk, lines in split.items():
                    col = cols.get(sk)
                    if col is None:
                        col = cols[sk] = [()] * n
                    col[i] = lines
            self._split_cols, self._irregular = cols, irregular
        return self._split_cols

    def _rebuild_views(self) -> None:
        """`chains` and `decisions` in service order (partial syncs edit them
        in place; a full sync puts them back in order)."""
        owned, decisions = {}, {}
        rows = self._rows
        for k in self._order:
            for p in rows[k].ports:
                owned[p[0].spn] = list(p[4].active)
                decisions[p[0].spn] = p[3]
        self._owned, self._decisions = owned, decisions

    def _sync(self, partial: bool, warnings) -> Rendered:
        cfg = self.config
        do_full = self._need_full or not partial
        large = self._total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
        ctx = self._large_ctx if large else self._base_ctx
        fixed = self._fixed_for(ctx)
        if not self._refresh_rows(ctx, fixed) and do_full:
            self._rebuild_views()

        # Changed services (for partial syncs): service ports or endpoints differ.
        entries = self._entries
        changed = []
        if not do_full:
            for key, (portmap, _) in self._snap.items():
                e = entries.get(key)
                if (e.portmap if e is not None else {}) != portmap:
                    changed.append(key)
        if warnings is None:
            warnings = tuple(w for k in self._warn_keys for w in entries[k].warns)

        try:
            if do_full:
                raw_text, tables = self._full_restore(fixed)
            else:
                raw_text, tables = self._partial_restore(fixed, changed)
        except KplabError:
            self._need_full = True          # as kube-proxy: after a failed sync, the next one is full
            raise
        self._tables = tables
        self._need_full = False
        self._snap = {}
        self._syncs += 1
        return Rendered(
            restore_text_raw=raw_text, tables={t: dict(ch) for t, ch in tables.items()},
            chains=dict(self._owned), decisions=dict(self._decisions), config=cfg,
            sync="full" if do_full else "partial", large_cluster_mode=large, warnings=warnings)

    def _full_restore(self, fixed: _Fixed) -> tuple:
        rows = [self._rows[k] for k in self._order]
        active: set = set()
        nat_chains = list(fixed.nat_chains)
        nat_rules = list(fixed.nat_rules)
        for r in rows:
            active.update(r.active)
            nat_chains.extend(r.decls)
            for p in r.ports:
                nat_rules.extend(p[4].nat_top)
                nat_rules.extend(p[4].nat_rules)
        # Delete chains no longer in use.
        for chain in self._tables["nat"]:
            if chain not in active and chain.startswith(SERVICE_CHAIN_PREFIXES):
                nat_chains.append(f":{chain} - [0:0]")
                nat_rules.append(f"-X {chain}")
        # Finally, tail-call to the nodePorts chain.
        nat_rules.extend(fixed.nodeports)
        raw_text = "\n".join(itertools.chain(
            ("*filter",), fixed.filter_chains, fixed.filter_first,
            itertools.chain.from_iterable(self._cols.get("filter", ())), fixed.filter_last,
            ("COMMIT", "*nat"), nat_chains, nat_rules, ("COMMIT",))) + "\n"
        # only the built-in chains (and chains created here) are modified in place
        tables = {t: {c: (list(r) if c in BUILTIN_CHAINS[t] else r) for c, r in ch.items()}
                  for t, ch in self._tables.items()}
        _ensure_jumps(tables)
        tables = _apply_restore(tables, raw_text)
        self._pos = None
        return raw_text, {t: {c: tuple(r) for c, r in ch.items()} for t, ch in tables.items()}

    def _partial_restore(self, fixed: _Fixed, changed: list) -> tuple:
        """A partial sync: the restore input (every top-level rule, the
        chains of the changed Services, `-X` for their chains no longer in
        use) and the node after it, computed from the chains written."""
        rows, order, cols, snap = self._rows, self._order, self._cols, self._snap
        old_nat = self._tables["nat"]
        idx = []
        stale = []
        for key in changed:
            row = rows.get(key)
            if row is not None:
                idx.append(bisect.bisect_left(order, key))
            now = set(row.active) if row is not None else ()
            stale.extend(c for c in snap[key][1] if c not in now)
        idx.sort()
        # The node has exactly the chains of the previous sync's service ports,
        # and chain names are per service port: what a changed Service no
        # longer uses is what is stale. Written in the node's chain order.
        stale = [c for c in dict.fromkeys(stale) if c in old_nat and c.startswith(SERVICE_CHAIN_PREFIXES)]
        if len(stale) > 1:
            pos = self._positions(old_nat)
            stale.sort(key=pos.__getitem__)
        changed_rows = [rows[order[i]] for i in idx]

        top = cols.get("top", [])
        segments = []
        prev = 0
        fulls = [r.full for r in changed_rows]
        for i, full in zip(idx, fulls):
            segments.append(itertools.chain.from_iterable(top[prev:i]))
            segments.append(full)
            prev = i + 1
        segments.append(itertools.chain.from_iterable(top[prev:]))
        raw_text = "\n".join(itertools.chain(
            ("*filter",), fixed.filter_chains, fixed.filter_first,
            itertools.chain.from_iterable(cols.get("filter", ())), fixed.filter_last,
            ("COMMIT", "*nat"), fixed.nat_chains,
            itertools.chain.from_iterable(r.decls for r in changed_rows),
            (f":{c} - [0:0]" for c in stale), fixed.nat_rules,
            itertools.chain.from_iterable(segments),
            (f"-X {c}" for c in stale), fixed.nodeports, ("COMMIT",))) + "\n"

        owns = [r.own for r in changed_rows]
        self._split_columns(fixed)
        if self._irregular or any(o is None for o in owns):
            # Lines for chains the sync does not declare: replay the text.
            tables = _apply_restore(self._tables, raw_text)
            self._pos = None
            return raw_text, {t: {c: tuple(r) for c, r in ch.items()} for t, ch in tables.items()}

        split_cols = self._split_cols
        new = {}
        created = []
        for t in TABLES:
            old = self._tables[t]
            cur = new[t] = dict(old)
            pre, post = fixed.pre[t], fixed.post[t]
            for c in fixed.names[t]:
                if c not in old:
                    created.append((t, c))
                cur[c] = tuple(itertools.chain(
                    pre.get(c, ()), itertools.chain.from_iterable(split_cols.get((t, c), ())), post.get(c, ())))
        nat = new["nat"]
        for own in owns:
            for c, rules in own:
                if c not in old_nat:
                    created.append(("nat", c))
                nat[c] = rules
        for c in stale:
            del nat[c]
        # What iptables-restore would refuse (a jump to a missing chain) can
        # only be in the lines written for the changed Services or the fixed
        # ones: every other rule is unchanged and jumps within its Service.
        flt = new["filter"]
        _check_jumps(fixed.filter_first, flt)
        _check_jumps(fixed.filter_last, flt)
        _check_jumps(fixed.nat_rules, nat)
        _check_jumps(fixed.nodeports, nat)
        for r, full in zip(changed_rows, fulls):
            _check_jumps(r.filter, flt)
            _check_jumps(full, nat)
        pos = self._pos
        if pos is not None:
            for t, c in created:
                if t == "nat":
                    pos[c] = self._pos_next
                    self._pos_next += 1
            for c in stale:
                pos.pop(c, None)
        return raw_text, new

    def _positions(self, nat: dict) -> dict:
        """nat chain -> rank in the node's chain order (a dict keeps creation
        order; a re-declared chain keeps its place)."""
        if self._pos is None:
            self._pos = {c: i for i, c in enumerate(nat)}
            self._pos_next = len(nat)
        return self._pos


def _replace_ctx(ctx: _Context, large: bool) -> _Context:
    return _Context(ctx.family, ctx.masquerade_all, ctx.detector, ctx.localhost_nodeports,
                    ctx.nfacct_localhost, ctx.node_ip, large)


def render(services, slices, config: ProxyConfig) -> Rendered:
    """A full kube-proxy sync of one node (`config.node_name`,
    `config.node_ips`) starting from a node with no kube-proxy rules."""
    return Proxier(config).sync(services, slices)


# --------------------------------------------------------------------------
# Canonical order (sortIPTablesRules in proxier_test.go)

_WORD_RE = re.compile(r'(?:^|\s)("[^"]*"|[^"]\S*)')
_VALUE_PARAMS = frozenset((
    "-A", "--comment", "-p", "-s", "--src-type", "--sport", "-d", "--dst-type", "--dport", "--match-set",
    "-j", "--probability", "--to-destination", "--mark", "--ctstate", "--name", "--seconds", "--mode"))
_DECL_RE = re.compile(r"^:(\S*) (\S+) \[([0-9]*):([0-9]*)\]$")


def rule_comment(line: str) -> str | None:
    """The --comment value of a rule as kube-proxy's test parser reads it
    (iptablestest.ParseRule): quotes removed, None if there is none."""
    if "--comment" not in line:
        return None
    words = [w.strip('"') for w in _WORD_RE.findall(line)]
    comment = None
    w, n = 0, len(words)
    while w < n:
        word = words[w]
        if word == "-m" and w < n - 1:
            w += 2
        elif word in _VALUE_PARAMS:
            if word == "--comment" and w < n - 1:
                comment = words[w + 1]
            w += 2
        else:
            w += 1
    return comment


def _service_name(comment: str) -> str:
    i = min((j for j in (comment.find(" "), comment.find(":")) if j != -1), default=-1)
    return comment[:i] if i != -1 else comment


def _go_stable_sort(items: list, less) -> None:
    """Go's sort.SliceStable (insertion sort in blocks of 20, then SymMerge),
    for comparators that are not a strict weak order."""
    def swap(i, j):
        items[i], items[j] = items[j], items[i]

    def insertion(a, b):
        for i in range(a + 1, b):
            j = i
            while j > a and less(items[j], items[j - 1]):
                swap(j, j - 1)
                j -= 1

    def swap_range(a, b, n):
        for i in range(n):
            swap(a + i, b + i)

    def rotate(a, m, b):
        i, j = m - a, b - m
        while i != j:
            if i > j:
                swap_range(m - i, m, j)
                i -= j
            else:
                swap_range(m - i, m + j - i, i)
                j -= i
        swap_range(m - i, m, i)

    def sym_merge(a, m, b):
        if m - a == 1:
            i, j = m, b
            while i < j:
                h = (i + j) >> 1
                if less(items[h], items[a]):
                    i = h + 1
                else:
                    j = h
            for k in range(a, i - 1):
                swap(k, k + 1)
            return
        if b - m == 1:
            i, j = a, m
            while i < j:
                h = (i + j) >> 1
                if not less(items[m], items[h]):
                    i = h + 1
                else:
                    j = h
            for k in range(m, i, -1):
                swap(k, k - 1)
            return
        mid = (a + b) >> 1
        n = mid + m
        if m > mid:
            start, r = n - b, mid
        else:
            start, r = a, m
        p = n - 1
        while start < r:
            c = (start + r) >> 1
            if not less(items[p - c], items[c]):
                start = c + 1
            else:
                r = c
        end = n - start
        if start < m < end:
            rotate(start, m, end)
        if a < start < mid:
            sym_merge(a, start, mid)
        if mid < end < b:
            sym_merge(mid, end, b)

    n = len(items)
    block = 20
    a, b = 0, block
    while b <= n:
        insertion(a, b)
        a, b = b, b + block
    insertion(a, n)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            sym_merge(a, a + block, b)
            a, b = b, b + 2 * block
        m = a + block
        if m < n:
            sym_merge(a, m, n)
        block *= 2


def _sort_by_service(rules: list, last_rule: bool) -> list:
    """Stable sort by the service name in the comment; with `last_rule`, rules
    whose comment says "must be the last rule" go to the end."""
    keyed = [(rule_comment(r), r) for r in rules]
    if all(c is not None for c, _ in keyed):
        def key(item):
            c = item[0]
            if last_rule and "must be the last rule" in c:
                return (1, "")
            return (0, _service_name(c))
        return [r for _, r in sorted(keyed, key=key)]

    # Some rule has no comment: the upstream comparator is then not a strict
    # weak order, and the result depends on Go's algorithm. Reproduce it.
    def by_name(x, y):
        if x[0] is None or y[0] is None:
            return False
        return _service_name(x[0]) < _service_name(y[0])

    def less(x, y):
        if last_rule:
            if x[0] is not None and "must be the last rule" in x[0]:
                return False
            if y[0] is not None and "must be the last rule" in y[0]:
                return True
        return by_name(x, y)
    _go_stable_sort(keyed, less)
    return [r for _, r in keyed]


def canonical_order(text: str) -> str:
    """Sort iptables-restore text the way kube-proxy's tests do before
    comparing (sortIPTablesRules + IPTablesDump.String()):

    * tables by name;
    * chains: KUBE-NODEPORTS, KUBE-SERVICES, the other KUBE-* chains, then the
      rest, each group in byte order; declarations first;
    * rules chain by chain in that order, keeping their relative order,
      except KUBE-NODEPORTS and KUBE-SERVICES (both tables), stably sorted
      by the service name in the comment (nat KUBE-SERVICES' "must be the
      last rule" rule(s) last);
    * `-X CHAIN` lines after all rules of the table.
    """
    tables = []              # [name, {chain: [decl, rules, deleted]}]
    cur = None
    for line in text.strip("\n").split("\n"):
        if not line or line[0] in " \t#" or line[-1] in " \t\r":
            line = line.strip()
            if not line or line[0] == "#":
                continue
        if cur is None:
            if line[0] != "*":
                raise KplabError(f"canonical_order: expected a *table line, got {line!r}")
            cur = {}
            tables.append((line[1:], cur))
            continue
        if line == "COMMIT":
            cur = None
            continue
        if line[0] == ":":
            parts = line[1:].split(" ")
            if len(parts) != 3 or len(parts[2]) < 5 or parts[2][0] != "[" or parts[2][-1] != "]":
                m = _DECL_RE.match(line)
                if m is None:
                    raise KplabError(f"canonical_order: bad chain line {line!r}")
                parts = [m.group(1), m.group(2), f"[{m.group(3)}:{m.group(4)}]"]
            name = parts[0]
            decl = (parts[1], parts[2])
            if name in cur:
                cur[name][0] = decl
            else:
                cur[name] = [decl, [], False]
            continue
        if line[:3] == "-A ":
            sp = line.find(" ", 3)
            name = line[3:sp] if sp != -1 else line[3:]
            c = cur.get(name)
            if c is None:
                raise KplabError(f"canonical_order: rule for undeclared chain {name}: {line!r}")
            if c[2]:
                raise KplabError(f"canonical_order: cannot add rules to deleted chain {name}")
            c[1].append(line)
            continue
        if line.startswith("-X "):
            name = line[3:].strip()
            c = cur.get(name)
            if c is None:
                raise KplabError(f"canonical_order: -X of undeclared chain {name}")
            if c[1]:
                raise KplabError(f"canonical_order: cannot delete chain {name} after adding rules")
            c[2] = True
            continue
        raise KplabError(f"canonical_order: cannot parse {line!r}")
    if cur is not None:
        raise KplabError("canonical_order: no COMMIT at the end")

    def chain_key(name):
        if name == KUBE_NODEPORTS:
            return (0, "")
        if name == KUBE_SERVICES:
            return (1, "")
        return (2 if name.startswith("KUBE-") else 3, name)

    out = []
    for tname, chains in sorted(tables, key=lambda t: t[0]):
        names = sorted(chains, key=chain_key)
        for n in (KUBE_NODEPORTS, KUBE_SERVICES):
            if n in chains and tname in ("filter", "nat"):
                chains[n][1] = _sort_by_service(chains[n][1], last_rule=(tname == "nat" and n == KUBE_SERVICES))
        out.append(f"*{tname}")
        for n in names:
            pol, counters = chains[n][0]
            out.append(f":{n} {pol} {counters}")
        for n in names:
            out.extend(chains[n][1])
        for n in names:
            if chains[n][2]:
                out.append(f"-X {n}")
        out.append("COMMIT")
    return "\n".join(out) + "\n"
