"""Read a kube-proxy node dump back into Services (`kplab explain`).

`explain(ruleset)` walks the *jump graph* kube-proxy (iptables mode) leaves
in the nat and filter tables and returns one `ServiceView` per service port;
`to_json(views)` is the `kplab explain --json` object of DESIGN section 4::

    {"services": [{"name": "ns/svc:port", "protocol": "tcp", "cluster_ip": "10.96.5.81",
                   "port": 80, "node_port": null, "external_ips": [], "load_balancer_ips": [],
                   "endpoints": [{"address": "10.244.1.3:8080", "probability": 1.0}],
                   "no_endpoints": null,
                   "external_traffic_policy": "Cluster", "internal_traffic_policy": "Cluster"}]}

What is read, and from where (see /work/shared/reference/kube-proxy-iptables-spec.md):

* nat `KUBE-SERVICES`: `-d VIP -p PROTO --dport PORT -j CHAIN`. The chain's
  prefix says what VIP is: `KUBE-SVC-`/`KUBE-SVL-` a cluster IP (SVL: internal
  traffic policy Local), `KUBE-EXT-` an external IP or a load-balancer IP (the
  rule's comment, "... external IP" or "... loadbalancer IP", tells which;
  without a comment it is left unclassified), `KUBE-FW-` a load-balancer IP
  with source ranges. The 16-character suffix after the prefix is the
  service port's hash, shared by its SVC, SVL, EXT and FW chains: that is
  what ties the pieces of one service port together, never the comments.
* nat `KUBE-NODEPORTS`: `--dport NODEPORT -j KUBE-EXT-<h>`.
* The endpoint distribution: the chain a VIP jumps to is walked rule by rule
  as a new connection from a client that is neither a Pod nor the node
  itself: each `statistic --mode random` rule takes the kernel's stored odds
  (round(p * 2^31) / 2^31) of what is left, so endpoint i receives
  (1-p_1)...(1-p_{i-1}) * p_i, exactly kplab's all-paths engine; a jumped-to
  chain (`KUBE-SEP-*`) is walked the same way down to its DNAT
  `--to-destination`. Session-affinity checks (`-m recent --rcheck`) do not
  match a first connection, as in the kernel, so they do not distort the
  odds; they are reported as `session_affinity`.
* filter `KUBE-SERVICES` / `KUBE-EXTERNAL-SERVICES`: `REJECT` (no endpoints
  at all) or `DROP` (no *local* endpoints under a Local traffic policy) for
  the cluster IP, external / load-balancer IPs and the NodePort
  (`--dst-type LOCAL --dport N`). Services without endpoints exist only
  here.
* Names come from the comments when there are any ("ns/svc:port cluster IP",
  "ns/svc:port -> ip:port", ...); a name is checked against the chain hash
  (`name_verified`). Without comments (large clusters drop them on the
  per-endpoint rules; a stripped dump has none) the name is the service
  port's `KUBE-SVC-<hash>`.

What the rules cannot say (left null/empty, or only in `ServiceView`):

* A Service's name, namespace and port name without comments; its type
  (a NodePort or load-balancer IP implies one, nothing proves ClusterIP);
  target ports by name (only the DNAT'ed number); endpoints that are not
  ready, not serving, or on other nodes when they are not used (they leave
  no rule); which endpoint is node-local (except that an SVL chain holds
  only local ones); topology hints.
* With no endpoints at all, kube-proxy writes only filter REJECT rules, all
  with the same comment: external IPs and load-balancer IPs then look alike
  and go to `unclassified_ips` (JSON only with `detail=True`); the traffic
  policies are unknown (null), and so is session affinity.
* The external traffic policy of a port that is not externally reachable
  (no NodePort, external or load-balancer IP) is null: kube-proxy ignores it.
"""
from __future__ import annotations

import base64
import gc
import hashlib
from dataclasses import dataclass, field

from ..netfilter import matches as M
from ..netfilter import targets as T
from ..netfilter.values import proto_text

#: Per-service-port chain prefixes kube-proxy uses (KUBE-XLB- is the eTP=Local
#: chain of releases up to about 1.23).
PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-XLB-")
STAT_SCALE = 0x80000000          # the kernel keeps statistic odds as round(p * 2^31)


def port_proto_hash(spn: str, proto: str) -> str:
    """kube-proxy's chain suffix: base32(sha256(spn + proto))[:16].

    16 base32 characters are exactly the first 10 bytes of the digest.
    """
    return base64.b32encode(hashlib.sha256((spn + proto).encode()).digest()[:10]).decode()


def _addr_text(a) -> str:
    """The address of an AddrMask (fast for IPv4, where dumps are large)."""
    if a.version == 4:
        n = a.addr
        return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    return a.address_text()


def _split(chain: str):
    """(prefix, hash) for a per-service-port chain, else (None, None)."""
    for p in PREFIXES:
        if chain.startswith(p):
            return p, chain[len(p):]
    return None, None


@dataclass
class EndpointView:
    """One endpoint: `address` as DNAT writes it (`ip:port`, `[ip6]:port`)."""

    address: str
    probability: float
    chain: str | None = None         # the KUBE-SEP chain holding the DNAT

    def to_dict(self) -> dict:
        return {"address": self.address, "probability": self.probability}


@dataclass
class ServiceView:
    """One service port as the rules describe it.

    The first eleven fields are the JSON contract (plus the two traffic
    policies); the rest are what else the rules say, for Python callers
    and `to_json(..., detail=True)`.
    """

    name: str
    protocol: str | None = None
    cluster_ip: str | None = None
    port: int | None = None
    node_port: int | None = None
    external_ips: list = field(default_factory=list)
    load_balancer_ips: list = field(default_factory=list)
    endpoints: list = field(default_factory=list)        # EndpointView: traffic to the cluster IP
    no_endpoints: str | None = None                      # None, "REJECT" or "DROP"
    external_traffic_policy: str | None = None           # "Cluster", "Local" or None (unknown / n.a.)
    internal_traffic_policy: str | None = None
    # ---- beyond the contract
    external_endpoints: list | None = None   # a client outside the cluster via NodePort/external/LB IP
    session_affinity: str | None = None      # "ClientIP" or None
    session_affinity_timeout: int | None = None
    lb_source_ranges: list = field(default_factory=list)
    health_check_node_port: int | None = None
    unclassified_ips: list = field(default_factory=list)  # external or LB IP: the rules cannot tell
    chains: dict = field(default_factory=dict)            # role -> chain: internal, external, firewall
    name_source: str = "comment"                          # "comment", "chain" or "address"
    name_verified: bool = False                           # the name hashes to the chains' suffix
    unmatched: float = 0.0                                # cluster-IP traffic left without a DNAT
    notes: list = field(default_factory=list)

    @property
    def sort_key(self):
        return (self.name, self.protocol or "", self.cluster_ip or "", self.port or 0)

    def to_dict(self, detail: bool = False) -> dict:
        d = {
            "name": self.name,
            "protocol": self.protocol,
            "cluster_ip": self.cluster_ip,
            "port": self.port,
            "node_port": self.node_port,
            "external_ips": list(self.external_ips),
            "load_balancer_ips": list(self.load_balancer_ips),
            "endpoints": [e.to_dict() for e in self.endpoints],
            "no_endpoints": self.no_endpoints,
            "external_traffic_policy": self.external_traffic_policy,
            "internal_traffic_policy": self.internal_traffic_policy,
        }
        if detail:
            d.update({
                "external_endpoints": (None if self.external_endpoints is None
                                       else [e.to_dict() for e in self.external_endpoints]),
                "session_affinity": self.session_affinity,
                "session_affinity_timeout": self.session_affinity_timeout,
                "lb_source_ranges": list(self.lb_source_ranges),
                "health_check_node_port": self.health_check_node_port,
                "unclassified_ips": list(self.unclassified_ips),
                "chains": dict(self.chains),
                "name_source": self.name_source,
                "name_verified": self.name_verified,
                "unmatched": self.unmatched,
                "notes": list(self.notes),
            })
        return d


def to_json(views, detail: bool = False) -> dict:
    """The `kplab explain --json` object: `{"services": [...]}`.

    `detail=True` adds the fields beyond DESIGN's contract (see ServiceView).
    """
    gc_was_on = gc.isenabled()
    gc.disable()                    # see explain(): nothing cyclic is built here
    try:
        return {"services": [v.to_dict(detail) for v in views]}
    finally:
        if gc_was_on:
            gc.enable()


# ---------------------------------------------------------------------------
# Reading one rule

def _rule_parts(rule):
    """(destination text or None, proto name or None, dport or None,
    comment or None, src-local addrtype?) of a rule, in one pass."""
    dst = proto = dport = comment = None
    dst_local = False
    for m in rule.ip:
        t = type(m)
        if t is M.Destination:
            if not m.invert and m.addr.mask == _FULL[m.addr.version]:
                dst = _addr_text(m.addr)
        elif t is M.Protocol:
            if not m.invert and m.proto:
                proto = proto_text(m.proto)
    for m in rule.matches:
        t = type(m)
        if t is M.Comment:
            comment = m.text
        elif t in (M.Tcp, M.Udp, M.Sctp):
            if m.dport is not None and not m.dport_inv and m.dport[0] == m.dport[1]:
                dport = m.dport[0]
        elif t is M.Multiport:
            if m.which == "dports" and not m.invert and len(m.ports) == 1 and m.ports[0][0] == m.ports[0][1]:
                dport = m.ports[0][0]
        elif t is M.Addrtype:
            if m.dst and not m.dst_inv and m.dst & (1 << M.ADDR_TYPES.index("LOCAL")):
                dst_local = True
    return dst, proto, dport, comment, dst_local


_LOCAL_BIT = 1 << M.ADDR_TYPES.index("LOCAL")
_FULL = {4: (1 << 32) - 1, 6: (1 << 128) - 1}


def _odds(rule, notes) -> float:
    """The chance the rule's matches hold for a new connection from a client
    outside the cluster (neither a Pod nor the node): source tests want that
    client and fail, negated ones hold; statistic gives its stored odds;
    `recent --rcheck/--update` finds an empty list. Destination, protocol
    and port tests are the Service's own and hold."""
    p = 1.0
    for m in rule.ip:
        t = type(m)
        if t is M.Source or t is M.InInterface:
            if not m.invert and not (t is M.Source and m.addr.is_any):
                return 0.0
    for m in rule.matches:
        t = type(m)
        if t is M.Statistic:
            if m.mode == "random":
                q = m.probability
            else:
                q = 1.0 / m.every
                notes.add(f"statistic --mode nth counted as 1/{m.every} of the traffic")
            p *= (1.0 - q) if m.invert else q
        elif t is M.Recent:
            if m.command in ("rcheck", "update", "remove"):
                if not m.invert:
                    return 0.0
        elif t is M.Addrtype:
            if m.src and (m.src & _LOCAL_BIT) and not m.src_inv:
                return 0.0
        elif t is M.Mark:
            mask = 0xFFFFFFFF if m.mask is None else m.mask
            if ((0 & mask) == m.value) == m.invert:
                return 0.0
        elif not m.supported:
            notes.add(f"-m {m.name} is not modelled; assumed to match")
    return p


@dataclass
class _Dist:
    """Where a walk of one chain sends a new connection."""

    endpoints: dict                 # address -> probability (insertion = rule order)
    sep: dict                       # address -> KUBE-SEP chain
    verdicts: dict                  # DROP/REJECT/ACCEPT -> probability
    fall: float                     # falls off the end (or RETURNs)
    via: tuple                      # per-service-port chains the walk passed through
    affinity: int | None            # recent --rcheck --seconds, if any
    notes: set


class _Walker:
    """Memoised walk of nat chains (each chain once, whatever shares it)."""

    def __init__(self, nat):
        self.chains = nat.chains if nat is not None else {}
        self.memo: dict = {}

    def dist(self, name: str, _stack=()) -> _Dist:
        got = self.memo.get(name)
        if got is not None:
            return got
        chain = self.chains.get(name)
        if chain is None or name in _stack:
            d = _Dist({}, {}, {}, 1.0, (), None, set())
            if chain is None:
                d.notes.add(f"jump to missing chain {name}")
            return d
        eps: dict = {}
        sep: dict = {}
        verdicts: dict = {}
        via: list = []
        notes: set = set()
        affinity = None
        left = 1.0
        fall = 0.0
        stack = _stack + (name,)
        for rule in chain.rules:
            if left <= 0.0:
                break
            tgt = rule.target
            if tgt is None:
                continue
            tt = type(tgt)
            if tt is T.Jump or tt is T.Goto:
                for m in rule.matches:
                    if type(m) is M.Recent and m.command == "rcheck" and not m.invert and m.seconds:
                        affinity = m.seconds
            p = _odds(rule, notes)
            if p <= 0.0:
                continue
            if tt is T.Jump or tt is T.Goto:
                sub = self.dist(tgt.chain, stack)
                if sub.endpoints or sub.verdicts:
                    share = left * p
                    for a, q in sub.endpoints.items():
                        eps[a] = eps.get(a, 0.0) + share * q
                        if a not in sep:
                            sep[a] = sub.sep.get(a) or tgt.chain
                    for v, q in sub.verdicts.items():
                        verdicts[v] = verdicts.get(v, 0.0) + share * q
                    if _split(tgt.chain)[0]:
                        via.append(tgt.chain)
                    via.extend(c for c in sub.via if c not in via)
                    if sub.affinity is not None and affinity is None:
                        affinity = sub.affinity
                    notes |= sub.notes
                    back = share * sub.fall
                    if tt is T.Goto:
                        fall += back
                        left = left * (1.0 - p)
                    else:
                        # the product form: the same float arithmetic as the
                        # engine's all-paths odds, (1-p1)(1-p2)...p_i
                        left = left * (1.0 - p) + back if back else left * (1.0 - p)
                else:
                    notes |= sub.notes          # KUBE-MARK-MASQ and the like: no effect on where it goes
                    if tt is T.Goto:
                        fall += left * p
                        left = left * (1.0 - p)
            elif tt is T.Dnat:
                a = str(tgt.range)
                eps[a] = eps.get(a, 0.0) + left * p
                sep.setdefault(a, name)
                left = left * (1.0 - p)
            elif tt is T.Standard:
                share = left * p
                if tgt.verdict == "RETURN":
                    fall += share
                else:
                    verdicts[tgt.verdict] = verdicts.get(tgt.verdict, 0.0) + share
                left = left * (1.0 - p)
            elif tt is T.Reject:
                verdicts["REJECT"] = verdicts.get("REJECT", 0.0) + left * p
                left = left * (1.0 - p)
            elif not tgt.supported:
                notes.add(f"-j {getattr(tgt, 'target', tgt.name)} is not modelled; assumed not to decide")
            # MARK, LOG and other non-terminating targets: the walk goes on
        d = _Dist(eps, sep, verdicts, fall + max(left, 0.0), tuple(via), affinity, notes)
        self.memo[name] = d
        return d


# ---------------------------------------------------------------------------
# Names from comments

_SUFFIXES = (" cluster IP", " external IP", " loadbalancer IP", " has no endpoints",
             " has no local endpoints", " health check node port")
_WRAPPED = (("masquerade traffic for ", " external destinations"),
            ("pod traffic for ", " external destinations"),
            ("masquerade LOCAL traffic for ", " external destinations"),
            ("route LOCAL traffic for ", " external destinations"),
            ("other traffic to ", " will be dropped by KUBE-PROXY-FIREWALL"))


def spn_of(comment: str | None) -> str | None:
    """The service port name (`ns/svc:port` or `ns/svc`) a kube-proxy comment
    names, or None."""
    if not comment:
        return None
    c = comment
    for s in _SUFFIXES:
        if c.endswith(s):
            c = c[: -len(s)]
            break
    else:
        for a, b in _WRAPPED:
            if c.startswith(a) and c.endswith(b):
                c = c[len(a): -len(b)]
                break
        else:
            if " -> " in c:
                c = c.split(" -> ", 1)[0]
            elif " traffic not accepted by " in c:
                c = c.split(" traffic not accepted by ", 1)[0]
    if " " in c or c.count("/") != 1 or c.startswith("/"):
        return None
    return c


def _kind_of(comment: str | None) -> str | None:
    if not comment:
        return None
    if comment.endswith(" cluster IP"):
        return "cluster"
    if comment.endswith(" external IP"):
        return "external"
    if comment.endswith(" loadbalancer IP"):
        return "lb"
    return None


# ---------------------------------------------------------------------------
# Assembling the views

class _Port:
    """What is gathered about one service port before it becomes a view.

    `key` is ("hash", h) for the chains KUBE-{SVC,SVL,EXT,FW}-h, ("chain",
    name) for a VIP jumping to some other chain that DNATs, ("spn", name)
    for filter-only rules naming a service port, ("addr", proto, address,
    port) for a filter-only rule without a comment.
    """

    def __init__(self, key):
        self.key = key
        self.names: list = []          # (priority, spn) from comments
        self.protocol = None
        self.port = None
        self.cluster: list = []        # (address, chain or None)
        self.external: list = []
        self.lb: list = []
        self.unclassified: list = []
        self.node_ports: list = []
        self.ext_targets: list = []    # chains external traffic enters
        self.verdicts: dict = {}       # "internal"/"external" -> {REJECT, DROP}
        self.hc_port = None
        self.fw_drop = False

    def name(self, prio, spn):
        if spn:
            self.names.append((prio, spn))

    def set_port(self, proto, port):
        if proto and self.protocol is None:
            self.protocol = proto
        if port is not None and self.port is None:
            self.port = port


def _add_unique(lst, value):
    if value is not None and value not in lst:
        lst.append(value)


def _verdict(tgt):
    if type(tgt) is T.Reject:
        return "REJECT"
    if type(tgt) is T.Standard and tgt.verdict == "DROP":
        return "DROP"
    return None


def explain(ruleset) -> list:
    """The service ports of a kube-proxy (iptables mode) dump, sorted by name.

    `ruleset` is a `kplab.Ruleset` (see `kplab.parse_rules`). Returns a list
    of `ServiceView`; `to_json` turns it into the `kplab explain --json`
    object. Every chain is read once: the cost is linear in the rules.
    """
    # Like the parser: the cyclic collector has nothing to find here, and on
    # a dump of 100,000 rules its passes over the heap would cost more than
    # the walk itself.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _explain(ruleset)
    finally:
        if gc_was_on:
            gc.enable()


def _explain(ruleset) -> list:
    nat = ruleset.tables.get("nat")
    filt = ruleset.tables.get("filter")
    walker = _Walker(nat)
    ports: dict = {}
    by_addr: dict = {}            # (proto, address or "nodeport", port) -> _Port

    def port_for(key):
        p = ports.get(key)
        if p is None:
            p = ports[key] = _Port(key)
        return p

    def chain_key(tgt):
        """The key of the service port a jump to `tgt` belongs to, or None."""
        if tgt == "KUBE-NODEPORTS":
            return None
        prefix, h = _split(tgt)
        if prefix is not None:
            return ("hash", h)
        return ("chain", tgt) if walker.dist(tgt).endpoints else None

    def rules_of(table, name):
        c = table.chains.get(name) if table is not None else None
        return c.rules if c is not None else ()

    # ---- nat KUBE-SERVICES: the VIPs
    for rule in rules_of(nat, "KUBE-SERVICES"):
        tgt = rule.jump
        if tgt is None:
            continue
        dst, proto, dport, comment, _ = _rule_parts(rule)
        if dst is None or dport is None:
            continue                    # the NodePort hand-off (addrtype LOCAL -> KUBE-NODEPORTS)
        key = chain_key(tgt)
        if key is None:
            continue                    # e.g. an old-style -j KUBE-MARK-MASQ
        prefix = _split(tgt)[0]
        p = port_for(key)
        p.set_port(proto, dport)
        p.name(0, spn_of(comment))
        kind = _kind_of(comment)
        if kind is None:
            if prefix in ("KUBE-SVC-", "KUBE-SVL-") or prefix is None:
                kind = "cluster" if not p.cluster else "unclassified"
            elif prefix == "KUBE-FW-":
                kind = "lb"
            else:
                kind = "unclassified"
        if kind == "cluster" and not p.cluster:
            p.cluster.append((dst, tgt))
        else:
            lst = {"external": p.external, "lb": p.lb}.get(kind, p.unclassified)
            _add_unique(lst, dst)
            _add_unique(p.ext_targets, tgt)
        by_addr[(proto, dst, dport)] = p

    # ---- nat KUBE-NODEPORTS
    for rule in rules_of(nat, "KUBE-NODEPORTS"):
        tgt = rule.jump
        if tgt is None:
            continue
        _, proto, dport, comment, _ = _rule_parts(rule)
        if dport is None:
            continue
        key = chain_key(tgt)
        if key is None:
            continue
        p = port_for(key)
        p.set_port(proto, None)
        p.name(1, spn_of(comment))
        _add_unique(p.node_ports, dport)
        _add_unique(p.ext_targets, tgt)
        by_addr[(proto, "nodeport", dport)] = p

    # ---- filter: REJECT / DROP standing in for missing endpoints
    def attach(addr_key, spn):
        proto = addr_key[0]
        p = by_addr.get(addr_key)
        if p is None and spn and proto:
            p = ports.get(("hash", port_proto_hash(spn, proto)))
        if p is None:
            p = port_for(("spn", spn) if spn else ("addr",) + addr_key)
        by_addr.setdefault(addr_key, p)
        return p

    for cname, role in (("KUBE-SERVICES", "internal"), ("KUBE-EXTERNAL-SERVICES", "external")):
        for rule in rules_of(filt, cname):
            verdict = _verdict(rule.target)
            if verdict is None:
                continue
            dst, proto, dport, comment, dst_local = _rule_parts(rule)
            if dport is None:
                continue
            spn = spn_of(comment)
            if dst is not None:
                p = attach((proto, dst, dport), spn)
                p.set_port(proto, dport)
                known = [a for a, _ in p.cluster] + p.external + p.lb
                if role == "internal":
                    if not p.cluster:
                        p.cluster.append((dst, None))
                    elif dst not in known:
                        _add_unique(p.unclassified, dst)
                elif dst not in known:
                    _add_unique(p.unclassified, dst)
            elif dst_local and role == "external":
                p = attach((proto, "nodeport", dport), spn)
                p.set_port(proto, None)
                _add_unique(p.node_ports, dport)
            else:
                continue
            p.name(2, spn)
            p.verdicts.setdefault(role, set()).add(verdict)

    # ---- filter: health-check node ports (only their comments tie them to a port)
    by_name = {}
    for p in ports.values():
        for _, s in p.names:
            by_name.setdefault(s, p)
    for rule in rules_of(filt, "KUBE-NODEPORTS"):
        _, proto, dport, comment, _ = _rule_parts(rule)
        if dport is None or not (comment or "").endswith(" health check node port"):
            continue
        spn = spn_of(comment)
        p = by_name.get(spn)
        if p is None:
            for pr in ("tcp", "udp", "sctp"):
                p = ports.get(("hash", port_proto_hash(spn, pr)))
                if p is not None:
                    break
        if p is not None:
            p.hc_port = dport

    # ---- filter: LB IPs whose other sources KUBE-PROXY-FIREWALL drops
    for rule in rules_of(filt, "KUBE-PROXY-FIREWALL"):
        dst, proto, dport, _, _ = _rule_parts(rule)
        p = by_addr.get((proto, dst, dport))
        if p is not None and _verdict(rule.target) == "DROP":
            p.fw_drop = True

    views = [_view(p, walker) for p in ports.values()]
    views.sort(key=lambda v: v.sort_key)
    return views


def _ep_list(d: _Dist) -> list:
    return [EndpointView(a, q, d.sep.get(a)) for a, q in d.endpoints.items()]


def _view(p: _Port, walker: _Walker) -> ServiceView:
    kind = p.key[0]
    h = p.key[1] if kind == "hash" else None
    notes: set = set()
    v = ServiceView(name="", protocol=p.protocol, port=p.port)
    dists = []
    # ---- the cluster IP and where its traffic goes
    internal = None
    if p.cluster:
        v.cluster_ip, internal = p.cluster[0]
    if internal is not None:
        d = walker.dist(internal)
        dists.append(d)
        v.endpoints = _ep_list(d)
        v.unmatched = d.fall + sum(d.verdicts.values())
        v.chains["internal"] = internal
        v.session_affinity_timeout = d.affinity
        notes |= d.notes
        prefix = _split(internal)[0]
        v.internal_traffic_policy = ("Local" if prefix == "KUBE-SVL-" else
                                     "Cluster" if prefix == "KUBE-SVC-" else None)
    v.external_ips = list(p.external)
    v.load_balancer_ips = list(p.lb)
    v.unclassified_ips = list(p.unclassified)
    v.node_port = p.node_ports[0] if p.node_ports else None
    if len(p.node_ports) > 1:
        notes.add("more than one node port: " + ", ".join(map(str, p.node_ports)))
    # ---- external traffic (NodePort, external IPs, LB IPs)
    ext = None
    if h is not None:
        ext = next((pre + h for pre in ("KUBE-EXT-", "KUBE-XLB-") if pre + h in walker.chains), None)
    if ext is None:
        ext = next((c for c in p.ext_targets if not c.startswith("KUBE-FW-")),
                   p.ext_targets[0] if p.ext_targets else None)
    if h is not None and "KUBE-FW-" + h in walker.chains:
        fw = v.chains["firewall"] = "KUBE-FW-" + h
        for rule in walker.chains[fw].rules:
            if rule.jump is None:
                continue
            for m in rule.ip:
                if type(m) is M.Source and not m.invert:
                    a = m.addr
                    if not (a.prefixlen == a.bits and a.address_text() in v.load_balancer_ips):
                        _add_unique(v.lb_source_ranges, str(a))     # "-s LBIP": the node's own traffic
    ext_verdicts = p.verdicts.get("external", set())
    int_verdicts = p.verdicts.get("internal", set())
    reachable = bool(v.node_port or v.external_ips or v.load_balancer_ips or v.unclassified_ips)
    if ext is not None:
        v.chains["external"] = ext
        d = walker.dist(ext)
        dists.append(d)
        notes |= d.notes
        v.external_endpoints = _ep_list(d)
        if v.session_affinity_timeout is None:
            v.session_affinity_timeout = d.affinity
        if ext.startswith("KUBE-XLB-") or any(c.startswith(("KUBE-SVL-", "KUBE-XLB-")) for c in d.via):
            v.external_traffic_policy = "Local"
        elif d.endpoints:
            v.external_traffic_policy = "Cluster"
        else:
            # the EXT chain ends before its jump to KUBE-SVL: no local endpoints
            v.external_traffic_policy = "Local"
    elif reachable:
        v.external_endpoints = []
        if "DROP" in ext_verdicts:
            v.external_traffic_policy = "Local"
    if not reachable:
        v.external_traffic_policy = None
    if internal is None and "DROP" in int_verdicts:
        v.internal_traffic_policy = "Local"
    # ---- missing endpoints
    allv = int_verdicts | ext_verdicts
    v.no_endpoints = "REJECT" if "REJECT" in allv else "DROP" if "DROP" in allv else None
    if v.session_affinity_timeout is not None:
        v.session_affinity = "ClientIP"
    v.health_check_node_port = p.hc_port
    if p.fw_drop:
        notes.add("load-balancer traffic from outside the source ranges is dropped by filter KUBE-PROXY-FIREWALL")
    if v.unclassified_ips:
        notes.add("external or load-balancer IPs (the rules do not say which): " + ", ".join(v.unclassified_ips))
    if v.unmatched > 1e-12:
        notes.add(f"{v.unmatched:.6g} of the cluster-IP traffic reaches no DNAT")
    if internal is None and p.cluster and not int_verdicts:
        notes.add("cluster IP without a dispatch chain")
    # ---- the name: comments first (one that hashes to the chains wins), else the chain
    cands = [s for _, s in sorted(p.names, key=lambda x: x[0])]
    name, source, verified = _pick_name(cands, h, p.protocol)
    if not verified:
        # the per-endpoint chains' comments ("ns/svc:port -> ep", "ns/svc:port")
        more = [s for d in dists for s in _names_from_chains(d, walker) if s not in cands]
        n2, _, v2 = _pick_name(more, h, p.protocol)
        if v2 or name is None:
            name, verified = n2, v2
    for spn in cands:
        if spn != name and h is not None and verified:
            notes.add(f"a comment names this service port {spn!r}, which does not hash to its chains")
    if name is None:
        source = "chain"
        if kind == "hash":
            name = "KUBE-SVC-" + h
        elif kind == "chain":
            name = p.key[1]
        else:
            source = "address"
            proto, addr, port = p.key[1:]
            where = (f"nodeport {port}" if addr == "nodeport" else
                     f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
            name = f"{where}/{proto}"
    elif h is not None and not verified:
        notes.add(f"the name {name!r} does not hash to the chains' suffix {h}")
    v.name, v.name_source, v.name_verified = name, source, verified
    v.notes = sorted(notes)
    return v


def _pick_name(cands, h, proto):
    """(name, source, verified): the first candidate that hashes to `h`,
    else the first candidate."""
    first = None
    for spn in cands:
        if h is not None and proto and port_proto_hash(spn, proto) == h:
            return spn, "comment", True
        if first is None:
            first = spn
    return first, "comment", False


def _names_from_chains(d: _Dist, walker: _Walker) -> list:
    """Service port names in the comments of the chains a walk passed
    (SVC/SVL rules "ns/svc:port -> ep", SEP rules "ns/svc:port"), for dumps
    whose KUBE-SERVICES rules lost theirs (or lie)."""
    out = []
    for c in d.via + tuple(d.sep.values()):
        ch = walker.chains.get(c)
        for rule in (ch.rules if ch is not None else ()):
            for m in rule.matches:
                if type(m) is M.Comment:
                    s = spn_of(m.text)
                    if s and s not in out:
                        out.append(s)
    return out
