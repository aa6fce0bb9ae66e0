"""Inputs for the kernel differential suite: rulesets and the packets to send.

A separate harness loads each `Case.rules` with `iptables-restore` into a real
network namespace built like the standard node (DESIGN section 3), sends each
`PacketSpec` as one packet (TCP SYN, UDP datagram or ICMP echo) and compares
the kernel's verdict, rule counters, NAT and delivery with kplab's trace. This
module only makes the inputs; it is standard-library only and never imports
kplab, so the kernel facts it relies on are written down here independently
(a kplab bug cannot hide in a shared table).

- `random_case(seed)`: a random ruleset that the kernel loads (checked on
  iptables 1.8.9 nf_tables, kernel 6.18, seeds 1..300), with packets likely
  to hit its rules. Deterministic: everything comes from `random.Random(seed)`.
- `random_packets(seed, n)`: `n` packets for `random_case(seed)`'s rules.
- `invalid_case(seed)`: a ruleset the kernel refuses for one known reason, or
  a near miss it accepts (`expect_load` says which); `INVALID_KINDS` lists them.
- `kube_proxy_case(endpoints, kind)`: kube-proxy-shaped rules for one Service
  on the standard node (kind: clusterip, nodeport, noendpoints, hairpin) with
  the packets a lesson would send.

>>> case = random_case(7)
>>> case == random_case(7) and case.expect_load
True
>>> kube_proxy_case(2, "clusterip").packets[0]
PacketSpec(from_='client', proto='tcp', dst='10.96.5.81', dport=80, sport=None, src=None)
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import random
import re
from dataclasses import dataclass

__all__ = ["Case", "PacketSpec", "random_case", "random_packets", "invalid_case", "kube_proxy_case",
           "INVALID_KINDS", "KUBE_KINDS", "SOURCES", "HOSTS"]


@dataclass(frozen=True)
class PacketSpec:
    """One packet to send: from a named place of the standard node, to `dst`.

    `proto` is "tcp" (a SYN), "udp" or "icmp" (an echo request; ports None).
    `sport` None means the harness's default (40000); `src` None means the
    source address the kernel picks for `from_` (DESIGN section 3).
    """

    from_: str
    proto: str
    dst: str
    dport: int | None
    sport: int | None = None
    src: str | None = None


@dataclass(frozen=True)
class Case:
    """A ruleset (iptables-restore text, IPv4) and the packets to send through it.

    `expect_load`: True when the kernel loads `rules`, False when it refuses
    them, None when unknown (the kernel decides).
    """

    name: str
    rules: str
    packets: tuple = ()
    expect_load: bool | None = True


# --------------------------------------------------------------------------
# The standard node (DESIGN section 3)

CLIENT, BACKEND1, BACKEND2 = "10.244.1.7", "10.244.1.3", "10.244.1.4"
POD_GW, NODE_IP = "10.244.1.1", "192.168.0.2"
PEER_GW, PEER_NODE = "192.168.0.1", "192.168.0.3"
REMOTE1, EXTERNAL = "10.244.2.5", "198.51.100.10"
SERVICE_IP, SERVICE_PORT, TARGET_PORT, NODE_PORT = "10.96.5.81", 80, 8080, 30080
CLUSTER_CIDR = "10.244.0.0/16"

#: Where a packet can come from, and the address it carries by default.
HOSTS = {"client": CLIENT, "backend1": BACKEND1, "backend2": BACKEND2, "node": NODE_IP,
         "peer": PEER_NODE, "remote1": REMOTE1, "external": EXTERNAL}
SOURCES = tuple(HOSTS)
LOCAL_PODS = {"client": CLIENT, "backend1": BACKEND1, "backend2": BACKEND2}
PEER_SIDE = ("peer", "remote1", "external")
#: Addresses a packet may be sent to (the node's own, its Pods, beyond eth0, a Service).
DESTINATIONS = (CLIENT, BACKEND1, BACKEND2, POD_GW, NODE_IP, PEER_NODE, PEER_GW, REMOTE1, EXTERNAL,
                SERVICE_IP, "127.0.0.1")
IFACES = ("eth0", "veth-client", "veth-backend1", "veth-backend2", "lo")
IFACE_WILDCARDS = ("veth+", "eth+", "veth-b+")

# --------------------------------------------------------------------------
# Kernel facts (iptables 1.8.9, nf_tables backend), kept apart from kplab's

TABLE_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
#: The order a packet meets the tables (marks set earlier can be tested later).
WALK_ORDER = ("raw", "mangle", "nat", "filter", "security")
#: The order iptables-save (nf_tables) prints tables in.
SAVE_ORDER = ("mangle", "security", "raw", "filter", "nat")
#: `-i` is refused in these built-in chains, `-o` in those (by the chain's name only).
NO_IN_IFACE = ("OUTPUT", "POSTROUTING")
NO_OUT_IFACE = ("PREROUTING", "INPUT")
DNAT_HOOKS = frozenset({"PREROUTING", "OUTPUT"})
SNAT_HOOKS = frozenset({"POSTROUTING"})          # SNAT is valid in INPUT too; kept to POSTROUTING here

# --------------------------------------------------------------------------
# Value pools

#: Addresses the rules test, each with the prefixes that make sense around it.
_ADDR_BASES = {CLIENT: (24, 16), BACKEND1: (24, 16, 30), BACKEND2: (24, 31), POD_GW: (24, 16),
               NODE_IP: (24, 16), PEER_NODE: (24, 30), PEER_GW: (24,), REMOTE1: (24, 16),
               EXTERNAL: (24, 8), SERVICE_IP: (12, 16), "127.0.0.1": (8,)}
_DPORTS = (80, 8080, 53, 443, 22, 30080, 9090, 5353)
_DPORT_RANGES = ("1:1024", "8000:9000", "30000:32767", "79:81", "53:80", "1024:65535")
_SPORTS = (40000, 40001, 53, 12345)
_SPORT_RANGES = ("1024:65535", "40000:40010", "0:1023", "39990:40000", "40001:65535")
_ICMP_TYPES = ("echo-request", "8", "8/0", "echo-reply", "0", "any", "destination-unreachable",
               "port-unreachable")
_MARK_BITS = (0x1, 0x2, 0x4, 0x10, 0x100, 0x4000, 0x8000)
_CTSTATES = ("NEW", "ESTABLISHED", "RELATED,ESTABLISHED", "DNAT", "SNAT", "NEW,DNAT", "NEW,ESTABLISHED",
             "INVALID", "DNAT,SNAT")
_REJECT_WITH = ("icmp-port-unreachable", "icmp-host-unreachable", "icmp-net-unreachable",
                "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited",
                "icmp-admin-prohibited")
_COMMENTS = ("allow web", "kplab generated", "default/backend:http", "drop-this", "pods only",
             "service portal", "x", "node traffic; see lesson 3", "mark for masquerade")
_DNAT_TO = (BACKEND1, BACKEND2, CLIENT, REMOTE1)
_DNAT_PORTS = (8080, 80, 53, 9090)
_SNAT_OUT = (("eth0", NODE_IP), ("eth+", NODE_IP), ("veth+", POD_GW), ("veth-backend1", POD_GW),
             ("veth-client", POD_GW), ("veth-b+", POD_GW))
_CHAIN_WORDS = ("CHK", "SVC", "SEP", "POL", "SUB", "AUX", "FW", "PORTS", "MARKS", "DEEP")
_TABLE_LETTER = {"filter": "F", "nat": "N", "mangle": "M", "raw": "R", "security": "S"}

#: The match modules and targets `random_case` draws from (the coverage test
#: checks each appears over seeds 1..200).
MATCH_FEATURES = ("-s", "-d", "-p", "--sport", "--dport", "port range", "-i", "-o", "iface wildcard",
                  "!", "multiport", "icmp", "mark", "addrtype", "conntrack ctstate", "conntrack ctdir",
                  "comment", "statistic")
TARGET_FEATURES = ("ACCEPT", "DROP", "REJECT", "REJECT tcp-reset", "RETURN", "MARK --set-xmark",
                   "MARK --or-mark", "MARK --xor-mark", "MARK --and-mark", "LOG", "no target", "jump",
                   "goto", "DNAT", "DNAT with port", "SNAT", "MASQUERADE", "policy DROP")


# --------------------------------------------------------------------------
# A ruleset under construction

class _Rules:
    """Tables as plain lists: policies of built-in chains, user chains, rules."""

    def __init__(self):
        self.tables: dict[str, dict] = {}

    def table(self, name: str) -> dict:
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = {"policies": {c: "ACCEPT" for c in TABLE_CHAINS[name]},
                                     "chains": [], "rules": []}
        return t

    def chain(self, table: str, name: str) -> None:
        t = self.table(table)
        if name not in t["chains"] and name not in TABLE_CHAINS[table]:
            t["chains"].append(name)

    def add(self, table: str, chain: str, text: str) -> None:
        self.table(table)["rules"].append(f"-A {chain} {text}".rstrip())

    def render(self, order=SAVE_ORDER) -> str:
        out = []
        for name in order:
            t = self.tables.get(name)
            if t is None:
                continue
            out.append(f"*{name}")
            out += [f":{c} {p} [0:0]" for c, p in t["policies"].items()]
            out += [f":{c} - [0:0]" for c in t["chains"]]
            out += t["rules"]
            out.append("COMMIT")
        return "\n".join(out) + "\n"


def _q(text: str) -> str:
    """A comment or prefix as iptables-restore reads it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _neg(rng, p: float) -> str:
    return "! " if rng.random() < p else ""


def _weighted(rng, table: dict):
    keys = [k for k, w in table.items() if w > 0]
    return rng.choices(keys, weights=[table[k] for k in keys])[0]


# --------------------------------------------------------------------------
# random_case

class _RandomRules:
    """Builds one random valid ruleset from `rng` (see `random_case`)."""

    def __init__(self, rng: random.Random, *, tables=None, chain_range=(2, 8), extra_tables=True):
        self.rng = rng
        self.marks: list[int] = []          # mark values MARK targets set so far in the walk
        self.rules = _Rules()
        self.chain_range = chain_range
        if tables is None:
            tables = ["filter", "nat"]
            if extra_tables:
                for name, p in (("raw", 0.3), ("mangle", 0.45), ("security", 0.2)):
                    if rng.random() < p:
                        tables.append(name)
        self.tables = [t for t in WALK_ORDER if t in tables]

    # -- structure ---------------------------------------------------------
    def build(self) -> _Rules:
        for t in self.tables:
            self._table(t)
        return self.rules

    def _table(self, table: str) -> None:
        rng = self.rng
        builtins = TABLE_CHAINS[table]
        t = self.rules.table(table)
        for b in builtins:
            p_drop = {"filter": 0.2, "nat": 0.03}.get(table, 0.06)
            t["policies"][b] = "DROP" if rng.random() < p_drop else "ACCEPT"
        lo, hi = self.chain_range if table in ("filter", "nat") else (0, 3)
        n = rng.randint(lo, hi)
        letter = _TABLE_LETTER[table]
        words = rng.sample(_CHAIN_WORDS, n)
        users = [f"{letter}-{w}-{i + 1}" for i, w in enumerate(words)]
        for u in users:
            self.rules.chain(table, u)
        # A DAG: each user chain's parents come before it (built-ins first), so
        # no loop is possible and no path is longer than len(users) + 1 chains.
        edges: dict[str, list] = {c: [] for c in builtins + tuple(users)}
        hooks: dict[str, set] = {b: {b} for b in builtins}
        for j, u in enumerate(users):
            cands = list(builtins) + users[:j]
            if rng.random() < 0.06:
                parents = []                # unreachable: loaded, never walked
            else:
                parents = rng.sample(cands, min(len(cands), rng.choice((1, 1, 1, 2, 2, 3))))
            hooks[u] = set()
            for p in parents:
                edges[p].append((u, "-g" if rng.random() < 0.2 else "-j"))
                hooks[u] |= hooks[p]
        for c in builtins + tuple(users):
            self._chain(table, c, hooks[c], edges[c], builtin=c in builtins)

    def _chain(self, table, chain, hooks, out_edges, builtin):
        rng = self.rng
        n = rng.randint(0, 4) if builtin else rng.randint(1, 5)
        body = [None] * n                   # None: a rule with a random target
        for edge in out_edges:
            body.insert(rng.randint(0, len(body)), edge)
        for item in body:
            if item is None:
                text = self._rule(table, chain, hooks)
            else:
                target, how = item
                text = self._matches(table, chain, rng.choice((0, 0, 0, 1, 1, 2)))
                text = (text + " " if text else "") + f"{how} {target}"
            self.rules.add(table, chain, text)

    # -- one rule ----------------------------------------------------------
    def _target_weights(self, table, hooks):
        if table == "filter":
            w = {"ACCEPT": 3, "DROP": 2, "REJECT": 3, "RETURN": 2, "MARK": 2, "LOG": 1, "NONE": 2}
        elif table == "nat":
            # DROP is refused in nat ("not intended for filtering"), REJECT too.
            w = {"ACCEPT": 2, "RETURN": 2, "MARK": 2, "LOG": 1, "NONE": 2}
            if hooks <= DNAT_HOOKS:
                w["DNAT"] = 6
            if hooks <= SNAT_HOOKS:
                w["SNAT"] = 3
                w["MASQUERADE"] = 3
        elif table == "mangle":
            w = {"ACCEPT": 2, "DROP": 1, "RETURN": 2, "MARK": 6, "LOG": 1, "NONE": 2}
        else:                                # raw, security
            w = {"ACCEPT": 2, "DROP": 1, "RETURN": 1, "MARK": 4, "LOG": 1, "NONE": 2}
        return w

    def _rule(self, table, chain, hooks) -> str:
        rng = self.rng
        kind = _weighted(rng, self._target_weights(table, hooks))
        need_proto = None                    # "tcp", "port" (tcp or udp)
        force_out = None
        tgt = ""
        if kind in ("ACCEPT", "DROP", "RETURN"):
            tgt = f"-j {kind}"
        elif kind == "NONE":
            tgt = ""
        elif kind == "LOG":
            tgt = "-j LOG"
            if rng.random() < 0.6:
                tgt += f" --log-prefix {_q(rng.choice(('gen: ', 'kplab ', 'hit-' + chain[:8])))}"
            if rng.random() < 0.4:
                tgt += f" --log-level {rng.choice(('4', '6', 'info', 'debug', 'warning'))}"
        elif kind == "MARK":
            tgt = self._mark_target()
        elif kind == "REJECT":
            r = rng.random()
            if r < 0.3:
                tgt, need_proto = "-j REJECT --reject-with tcp-reset", "tcp"
            elif r < 0.55:
                tgt = "-j REJECT"
            else:
                tgt = f"-j REJECT --reject-with {rng.choice(_REJECT_WITH)}"
        elif kind == "DNAT":
            addr = rng.choice(_DNAT_TO)
            if rng.random() < 0.5:
                tgt, need_proto = f"-j DNAT --to-destination {addr}:{rng.choice(_DNAT_PORTS)}", "port"
            else:
                tgt = f"-j DNAT --to-destination {addr}"
        elif kind == "SNAT":
            force_out, addr = rng.choice(_SNAT_OUT)
            tgt = f"-j SNAT --to-source {addr}"
        elif kind == "MASQUERADE":
            tgt = "-j MASQUERADE" + rng.choice(("", "", "", " --random-fully", " --random"))
        k = rng.choice((0, 1, 1, 2, 2, 2, 3, 3, 4))
        m = self._matches(table, chain, k, need_proto=need_proto, force_out=force_out)
        return " ".join(x for x in (m, tgt) if x)

    def _mark_target(self) -> str:
        rng = self.rng
        v = rng.choice(_MARK_BITS)
        form = rng.choice(("set-xmark", "set-xmark", "set-mark", "or-mark", "xor-mark", "and-mark"))
        if form == "set-xmark":
            mask = rng.choice((v, 0xFFFFFFFF, 0xFFFF, v | 0x1))
            text = f"--set-xmark {v:#x}/{mask:#x}"
        elif form == "set-mark":
            text = f"--set-mark {v:#x}" + (f"/{v | 0xff:#x}" if rng.random() < 0.3 else "")
        elif form == "and-mark":
            keep = rng.choice((0x0, 0xFFFFBFFF, 0xFF, v))
            text = f"--and-mark {keep:#x}"
        else:
            text = f"--{form} {v:#x}"
        if form != "and-mark":
            self.marks.append(v)
        return f"-j MARK {text}"

    def _addr(self) -> str:
        rng = self.rng
        base = rng.choice(tuple(_ADDR_BASES))
        p = 32 if rng.random() < 0.5 else rng.choice(_ADDR_BASES[base])
        if rng.random() < 0.03:
            return "0.0.0.0/0"
        if p == 32:
            return base if rng.random() < 0.5 else f"{base}/32"
        if rng.random() < 0.2:               # host bits set: the kernel masks them
            return f"{base}/{p}"
        return str(ipaddress.ip_network(f"{base}/{p}", strict=False))

    def _port(self, ranges, singles) -> str:
        rng = self.rng
        return rng.choice(ranges) if rng.random() < 0.35 else str(rng.choice(singles))

    def _matches(self, table, chain, k, *, need_proto=None, force_out=None) -> str:
        """`k` random matches as independent blocks in a random order (a
        protocol's block always before the modules that need it)."""
        rng = self.rng
        feats = {"src": 3, "dst": 4, "proto": 4, "iin": 2, "iout": 2, "multiport": 1, "icmp": 1,
                 "mark": 2 + (2 if self.marks else 0), "addrtype": 2, "conntrack": 2, "comment": 1,
                 "statistic": 1}
        if chain in NO_IN_IFACE:
            feats["iin"] = 0
        if chain in NO_OUT_IFACE or force_out:
            feats["iout"] = 0
        if need_proto:
            feats["icmp"] = 0
        chosen = []
        for _ in range(k):
            f = _weighted(rng, feats)
            feats[f] = 0
            if f == "multiport":
                feats["icmp"] = 0
            elif f == "icmp":
                feats["multiport"] = 0
            chosen.append(f)
        proto, pinv = None, False
        if "multiport" in chosen:
            proto = rng.choice(("tcp", "udp"))
        if "icmp" in chosen:
            proto = "icmp"
        if need_proto == "tcp":
            proto = "tcp"
        elif need_proto == "port" and proto not in ("tcp", "udp"):
            proto = rng.choice(("tcp", "udp"))
        if proto is None and "proto" in chosen:
            proto = rng.choice(("tcp", "udp", "icmp"))
            pinv = rng.random() < 0.15
        free, after_proto = [], []
        if force_out:
            free.append(f"-o {force_out}")
        for f in chosen:
            if f in ("src", "dst"):
                a = self._addr()
                # nf_tables refuses "! -s 0.0.0.0/0" (Invalid argument): never negate /0
                neg = "" if a.endswith("/0") else _neg(rng, 0.2)
                free.append(f"{neg}-{f[0]} {a}")
            elif f in ("iin", "iout"):
                name = rng.choice(IFACES + IFACE_WILDCARDS)
                free.append(f"{_neg(rng, 0.2)}-{'i' if f == 'iin' else 'o'} {name}")
            elif f == "multiport":
                after_proto.append(self._multiport())
            elif f == "icmp":
                t = rng.choice(_ICMP_TYPES)
                after_proto.append(f"-m icmp {_neg(rng, 0.15)}--icmp-type {t}")
            elif f == "mark":
                free.append(self._mark_match())
            elif f == "addrtype":
                free.append(self._addrtype())
            elif f == "conntrack":
                free.append(self._conntrack())
            elif f == "comment":
                free.append(f"-m comment --comment {_q(rng.choice(_COMMENTS))}")
            elif f == "statistic":
                p = rng.choice(("0", "1", "0.0", "1.0", "1.00000000000", "0.00000000000"))
                free.append(f"-m statistic --mode random {_neg(rng, 0.2)}--probability {p}")
        if proto is not None:
            block = f"{'! ' if pinv else ''}-p {proto}"
            if proto in ("tcp", "udp") and not pinv and rng.random() < 0.6:
                opts = []
                if rng.random() < 0.75:
                    name = rng.choice(("--dport", "--dport", "--dport", "--destination-port"))
                    opts.append(f"{_neg(rng, 0.15)}{name} {self._port(_DPORT_RANGES, _DPORTS)}")
                if rng.random() < 0.35:
                    opts.append(f"{_neg(rng, 0.15)}--sport {self._port(_SPORT_RANGES, _SPORTS)}")
                if proto == "tcp" and rng.random() < 0.08:
                    opts.append(f"{_neg(rng, 0.3)}--syn")
                if opts:
                    explicit = f"-m {proto} " if rng.random() < 0.4 else ""
                    block += f" {explicit}{' '.join(opts)}"
            elif proto == "icmp" and not pinv and "icmp" not in chosen and rng.random() < 0.3:
                block += f" {_neg(rng, 0.15)}--icmp-type {rng.choice(_ICMP_TYPES)}"
            rng.shuffle(free)
            pos = rng.randint(0, len(free))
            free.insert(pos, block)
            for b in after_proto:            # anywhere after the protocol
                free.insert(rng.randint(free.index(block) + 1, len(free)), b)
        else:
            rng.shuffle(free)
        return " ".join(free)

    def _multiport(self) -> str:
        rng = self.rng
        opt = rng.choice(("--dports", "--dports", "--dports", "--sports", "--ports"))
        pool = ([str(p) for p in _SPORTS] + list(_SPORT_RANGES)) if opt == "--sports" else (
            [str(p) for p in _DPORTS] + ["8000:9000", "79:81", "30000:32767", "1:1024"])
        items = rng.sample(pool, rng.randint(2, 4))
        return f"-m multiport {_neg(rng, 0.15)}{opt} {','.join(items)}"

    def _mark_match(self) -> str:
        rng = self.rng
        v = rng.choice(self.marks) if self.marks and rng.random() < 0.75 else rng.choice(_MARK_BITS)
        r = rng.random()
        text = f"{v:#x}" if r < 0.35 else (f"{v:#x}/{v:#x}" if r < 0.8 else f"{v:#x}/0xffff")
        return f"-m mark {_neg(rng, 0.2)}--mark {text}"

    def _addrtype(self) -> str:
        rng = self.rng
        parts = ["-m addrtype"]
        which = rng.choice(("src", "dst", "dst", "both"))
        for side in ("src", "dst"):
            if which in (side, "both"):
                t = rng.choice(("LOCAL", "LOCAL", "UNICAST", "LOCAL,UNICAST"))
                parts.append(f"{_neg(rng, 0.25)}--{side}-type {t}")
        return " ".join(parts)

    def _conntrack(self) -> str:
        rng = self.rng
        parts = ["-m conntrack"]
        r = rng.random()
        if r < 0.8:
            parts.append(f"{_neg(rng, 0.2)}--ctstate {rng.choice(_CTSTATES)}")
        if r >= 0.55:
            # `! --ctdir` is refused by iptables ("cannot be inverted")
            parts.append(f"--ctdir {rng.choice(('ORIGINAL', 'REPLY'))}")
        return " ".join(parts)


def random_case(seed: int, packets: int = 6) -> Case:
    """A random ruleset the kernel loads, and `packets` packets for it.

    Built from `random.Random(seed)` only: 2-8 user chains in filter and nat
    (0-3 in raw, mangle and security when present), jumps and gotos forming a
    DAG from the built-in chains (no loop, at most 9 chains deep), every
    target valid in every hook that reaches its chain, statistic
    probabilities 0 or 1 only (the path is deterministic).
    """
    rng = random.Random(seed)
    text = _RandomRules(rng).build().render()
    return Case(f"random-{seed}", text, random_packets(seed, packets, text), True)


# --------------------------------------------------------------------------
# random_packets

_RE_ADDR = re.compile(r"(?:-[sd]|--to-destination|--to-source) (\d+\.\d+\.\d+\.\d+)(?:/(\d+))?")
_RE_PORTS = re.compile(r"--(?:dport|destination-port|dports|ports|sport|sports) ([\d:,]+)")
_RE_DNAT_PORT = re.compile(r"--to-destination [\d.]+:(\d+)")


def _rule_values(rules: str):
    """Addresses (with prefixes) and ports written in `rules`."""
    addrs = sorted({(a, int(p) if p else 32) for a, p in _RE_ADDR.findall(rules)})
    ports = set()
    for text in _RE_PORTS.findall(rules) + _RE_DNAT_PORT.findall(rules):
        for item in text.split(","):
            lo, colon, hi = item.partition(":")
            lo = int(lo) if lo else 0
            hi = int(hi) if hi else (65535 if colon else lo)
            ports.update(p for p in (lo, hi, (lo + hi) // 2, lo + 1) if 1 <= p <= 65535 and lo <= p <= hi)
    return addrs, sorted(ports)


def _usable_dst(addr: str, from_: str) -> bool:
    """Whether a packet from `from_` to `addr` crosses the node and is sane."""
    a = ipaddress.ip_address(addr)
    if addr == HOSTS.get(from_) and from_ != "node":
        return False                                  # a host talking to itself never meets the node
    if a.is_loopback:
        return from_ == "node"
    if a.is_multicast or a.is_unspecified or addr.endswith((".0", ".255")):
        return False
    if from_ in PEER_SIDE:                            # must be routed to the node by the peer
        return (a in ipaddress.ip_network("10.244.1.0/24") or addr == NODE_IP
                or a in ipaddress.ip_network("10.96.0.0/12"))
    return True


def _pick_in(rng, addr: str, prefix: int, pool) -> str | None:
    """A host of `pool` inside addr/prefix, or None. Only real hosts: a
    packet to an address nobody owns would leave by eth0 and could be routed
    back by the peer (a loop that multiplies the counters)."""
    net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    inside = [h for h in pool if ipaddress.ip_address(h) in net]
    return rng.choice(inside) if inside else None


def random_packets(seed: int, n: int, rules: str | None = None) -> tuple:
    """`n` packets for `random_case(seed)` (or for `rules`): destinations and
    ports mostly taken from the rules, sources from every place of the node."""
    if rules is None:
        rules = _RandomRules(random.Random(seed)).build().render()
    rng = random.Random(seed * 1_000_003 + 17)
    addrs, ports = _rule_values(rules)
    # The Service address is owned by nobody: send to it only when a rule tests it.
    pool = [d for d in DESTINATIONS if d != SERVICE_IP or re.search(r"-d 10\.(9[6-9]|10[0-9]|11[01])\.", rules)]
    out = []
    while len(out) < n:
        from_ = rng.choice(SOURCES)
        proto = rng.choices(("tcp", "udp", "icmp"), weights=(45, 35, 20))[0]
        for _ in range(20):                           # bounded: fall back to a Pod below
            dst = None
            if addrs and rng.random() < 0.6:
                dst = _pick_in(rng, *rng.choice(addrs), pool)
            if dst is None:
                dst = rng.choice(pool)
            if _usable_dst(dst, from_):
                break
        else:
            dst = BACKEND1 if from_ != "backend1" else BACKEND2
        dport = sport = src = None
        if proto != "icmp":
            dport = rng.choice(ports) if ports and rng.random() < 0.7 else rng.choice(_DPORTS)
            if rng.random() < 0.25:
                sport = rng.choice(ports) if ports and rng.random() < 0.5 else rng.choice(_SPORTS)
        if from_ == "node" and rng.random() < 0.1 and not ipaddress.ip_address(dst).is_loopback:
            src = rng.choice((NODE_IP, POD_GW))
        out.append(PacketSpec(from_, proto, dst, dport, sport, src))
    return tuple(out)


# --------------------------------------------------------------------------
# invalid_case

#: kind -> (whether the kernel loads it, what is special about it).
INVALID_KINDS = {
    # refused
    "loop_reachable": (False, "a jump loop reachable from a built-in chain (Too many links)"),
    "self_jump_reachable": (False, "a chain jumping to itself, reachable from a built-in chain"),
    "goto_loop_reachable": (False, "a goto loop reachable from a built-in chain"),
    "jump_missing_chain": (False, "a jump to a chain that does not exist"),
    "goto_missing_chain": (False, "a goto to a chain that does not exist"),
    "dnat_via_postrouting": (False, "DNAT in a user chain reached from nat POSTROUTING"),
    "dnat_in_input": (False, "DNAT in nat INPUT"),
    "snat_via_prerouting": (False, "SNAT in a user chain reached from nat PREROUTING"),
    "masquerade_in_output": (False, "MASQUERADE in nat OUTPUT"),
    "reject_in_mangle": (False, "REJECT in the mangle table"),
    "reject_in_nat_unreachable": (False, "REJECT in an unreachable nat chain (wrong table anywhere)"),
    "i_in_output": (False, "-i in the built-in OUTPUT chain"),
    "o_in_prerouting": (False, "-o in the built-in PREROUTING chain"),
    "nesting_16": (False, "jumps nested 16 deep below a built-in chain"),
    "bad_port": (False, "tcp port 70000"),
    "bad_probability": (False, "statistic --probability 1.5"),
    "tcp_reset_udp": (False, "REJECT --reject-with tcp-reset without -p tcp"),
    "multiport_no_proto": (False, "-m multiport without -p tcp/udp"),
    "drop_in_nat": (False, "DROP in the nat table (iptables: not intended for filtering)"),
    "ctdir_inverted": (False, "! --ctdir (iptables: cannot be inverted)"),
    "negated_any_address": (False, "! -s 0.0.0.0/0 or ! -d ADDR/0 (nf_tables: Invalid argument)"),
    "words_252": (False, "a rule line of 252 words (Parser cannot handle more arguments)"),
    "word_1024": (False, "a word of 1024 characters (Parameter too long!)"),
    # near misses, loaded
    "loop_unreachable": (True, "a jump loop no built-in chain reaches"),
    "self_jump_unreachable": (True, "a chain jumping to itself that nothing reaches"),
    "i_in_user_chain_from_output": (True, "-i in a user chain called from OUTPUT"),
    "o_in_user_chain_from_prerouting": (True, "-o in a user chain called from PREROUTING"),
    "nesting_15": (True, "jumps nested 15 deep below a built-in chain"),
    "dnat_shared_prerouting_output": (True, "DNAT in a user chain reached from PREROUTING and OUTPUT"),
    "masquerade_via_postrouting": (True, "MASQUERADE in a user chain reached from POSTROUTING only"),
    "dnat_unreachable": (True, "DNAT in a nat chain nothing reaches"),
    "snat_in_input": (True, "SNAT in nat INPUT"),
    "max_port_and_probability": (True, "port 65535 and probability 1.0"),
    "udp_port_70000": (True, "-p udp --dport 70000 (iptables 1.8.9 loads it as port 4464)"),
    "drop_policy_in_nat": (True, "a DROP policy on a nat built-in chain"),
    "inverted_proto_with_port": (True, "! -p tcp --dport 80 (nf_tables: any other protocol's port 80)"),
    "dnat_port_inverted_proto": (True, "! -p tcp -j DNAT --to-destination ADDR:PORT"),
    "words_251": (True, "a rule line of 251 words, the most iptables-restore takes"),
    "word_1023": (True, "a comment of 1023 characters (the kernel keeps 255)"),
}
_INVALID_ORDER = tuple(INVALID_KINDS)


def invalid_case(seed: int, kind: str | None = None) -> Case:
    """A ruleset with one known flaw the kernel refuses (`expect_load`
    False), or a near miss it loads (True), set in a small random valid
    ruleset. `kind` (a key of INVALID_KINDS) defaults to one chosen by seed,
    cycling through all kinds."""
    if kind is None:
        kind = _INVALID_ORDER[(seed - 1) % len(_INVALID_ORDER)]
    if kind not in INVALID_KINDS:
        raise ValueError(f"unknown invalid_case kind {kind!r}; one of {', '.join(_INVALID_ORDER)}")
    loads, _ = INVALID_KINDS[kind]
    rng = random.Random(seed)
    rules = _RandomRules(rng, tables=("filter", "nat"), chain_range=(1, 3)).build()
    tag = rng.randint(10, 99)
    X = lambda name: f"X{tag}-{name}"          # noqa: E731  chain names of the flaw
    addr = rng.choice(_DNAT_TO)

    def chains(table, *names):
        for c in names:
            rules.chain(table, c)

    def insert(table, chain, text):
        """The flaw's entry rule at a random place of the built-in chain."""
        t = rules.table(table)
        line = f"-A {chain} {text}"
        idx = [i for i, r in enumerate(t["rules"]) if r.startswith(f"-A {chain} ")]
        pos = rng.choice(idx + [len(t["rules"])]) if idx else len(t["rules"])
        t["rules"].insert(pos, line)

    def nest(depth, how):
        names = [X(f"D{i}") for i in range(1, depth + 1)]
        chains("filter", *names)
        insert("filter", rng.choice(TABLE_CHAINS["filter"]), f"{how} {names[0]}")
        for a, b in zip(names, names[1:]):
            rules.add("filter", a, f"{rng.choice(('-j', '-j', '-g'))} {b}")
        rules.add("filter", names[-1], "-p udp -j ACCEPT")

    table_f = rng.choice(("filter", "nat"))
    base_f = rng.choice(TABLE_CHAINS[table_f])
    if kind in ("loop_reachable", "loop_unreachable", "goto_loop_reachable"):
        a, b, c = X("A"), X("B"), X("C")
        chains(table_f, a, b, c)
        how = "-g" if kind == "goto_loop_reachable" else "-j"
        rules.add(table_f, a, f"-p tcp {how} {b}")
        rules.add(table_f, b, f"{how} {c}")
        rules.add(table_f, c, f"-m comment --comment loop {how} {a}")
        if kind != "loop_unreachable":
            insert(table_f, base_f, f"-j {a}")
    elif kind in ("self_jump_reachable", "self_jump_unreachable"):
        a = X("SELF")
        chains(table_f, a)
        rules.add(table_f, a, "-p udp -j RETURN")
        rules.add(table_f, a, f"-s {CLIENT}/32 -j {a}")
        if kind == "self_jump_reachable":
            insert(table_f, base_f, f"-j {a}")
    elif kind in ("jump_missing_chain", "goto_missing_chain"):
        how = "-j" if kind == "jump_missing_chain" else "-g"
        insert(table_f, base_f, f"-p tcp --dport 80 {how} {X('MISSING')}")
    elif kind == "dnat_via_postrouting":
        a = X("DNAT")
        chains("nat", a)
        rules.add("nat", a, f"-p tcp -j DNAT --to-destination {addr}:8080")
        insert("nat", "PREROUTING", f"-j {a}")
        insert("nat", "POSTROUTING", f"-d {SERVICE_IP}/32 -j {a}")
    elif kind == "dnat_shared_prerouting_output":
        a = X("DNAT")
        chains("nat", a)
        rules.add("nat", a, f"-d {SERVICE_IP}/32 -p tcp --dport 80 -j DNAT --to-destination {addr}:8080")
        insert("nat", "PREROUTING", f"-j {a}")
        insert("nat", "OUTPUT", f"-j {a}")
    elif kind == "dnat_in_input":
        insert("nat", "INPUT", f"-p tcp -j DNAT --to-destination {addr}")
    elif kind == "dnat_unreachable":
        a = X("DNAT")
        chains("nat", a)
        rules.add("nat", a, f"-p udp -j DNAT --to-destination {addr}:53")
    elif kind == "snat_via_prerouting":
        a = X("SNAT")
        chains("nat", a)
        rules.add("nat", a, f"-o eth0 -j SNAT --to-source {NODE_IP}")
        insert("nat", "POSTROUTING", f"-j {a}")
        insert("nat", "PREROUTING", f"-s {CLIENT}/32 -j {a}")
    elif kind == "snat_in_input":
        insert("nat", "INPUT", f"-s {REMOTE1}/32 -j SNAT --to-source {POD_GW}")
    elif kind == "masquerade_in_output":
        insert("nat", "OUTPUT", "-j MASQUERADE")
    elif kind == "masquerade_via_postrouting":
        a = X("MASQ")
        chains("nat", a)
        rules.add("nat", a, "-m mark --mark 0x4000/0x4000 -j MASQUERADE")
        insert("nat", "POSTROUTING", f"-j {a}")
    elif kind == "reject_in_mangle":
        chain = rng.choice(TABLE_CHAINS["mangle"])
        rules.add("mangle", chain, "-p tcp --dport 22 -j REJECT")
    elif kind == "reject_in_nat_unreachable":
        a = X("REJ")
        chains("nat", a)
        rules.add("nat", a, "-p udp -j REJECT")
    elif kind == "i_in_output":
        insert("filter", "OUTPUT", "-i eth0 -j ACCEPT")
    elif kind == "o_in_prerouting":
        rules.add(rng.choice(("nat", "mangle", "raw")), "PREROUTING", "-o eth0 -j ACCEPT")
    elif kind == "i_in_user_chain_from_output":
        a = X("IN")
        chains("filter", a)
        rules.add("filter", a, "! -i veth+ -j RETURN")
        rules.add("filter", a, "-i eth0 -j ACCEPT")
        insert("filter", "OUTPUT", f"-j {a}")
    elif kind == "o_in_user_chain_from_prerouting":
        a = X("OUT")
        chains("nat", a)
        rules.add("nat", a, "-o eth0 -j RETURN")
        insert("nat", "PREROUTING", f"-j {a}")
    elif kind == "nesting_16":
        nest(16, "-j")
    elif kind == "nesting_15":
        nest(15, rng.choice(("-j", "-g")))
    elif kind == "bad_port":
        insert("filter", "INPUT", f"-p tcp {rng.choice(('', '-m tcp '))}--dport 70000 -j DROP")
    elif kind == "udp_port_70000":
        insert("filter", "INPUT", f"-p udp {rng.choice(('', '-m udp '))}--dport 70000 -j DROP")
    elif kind == "bad_probability":
        insert("filter", "FORWARD", "-m statistic --mode random --probability 1.5 -j DROP")
    elif kind == "max_port_and_probability":
        insert("filter", "FORWARD", "-p tcp --dport 65535 -m statistic --mode random --probability 1.0 -j DROP")
    elif kind == "tcp_reset_udp":
        insert("filter", "INPUT", "-p udp -j REJECT --reject-with tcp-reset")
    elif kind == "multiport_no_proto":
        insert("filter", "INPUT", "-m multiport --dports 80,443 -j ACCEPT")
    elif kind == "drop_in_nat":
        insert("nat", rng.choice(TABLE_CHAINS["nat"]), f"-d {EXTERNAL}/32 -j DROP")
    elif kind == "drop_policy_in_nat":
        rules.table("nat")["policies"][rng.choice(("INPUT", "OUTPUT", "POSTROUTING"))] = "DROP"
    elif kind == "ctdir_inverted":
        insert("filter", "FORWARD", "-m conntrack ! --ctdir REPLY -j ACCEPT")
    elif kind == "negated_any_address":
        insert("filter", rng.choice(TABLE_CHAINS["filter"]),
               f"! -{rng.choice('sd')} {rng.choice(('0.0.0.0/0', '10.0.0.0/0'))} -j ACCEPT")
    elif kind == "inverted_proto_with_port":
        insert("filter", "INPUT", "! -p tcp --dport 80 -j ACCEPT")
    elif kind == "dnat_port_inverted_proto":
        insert("nat", "PREROUTING", f"-d {SERVICE_IP}/32 ! -p tcp -j DNAT --to-destination {addr}:8080")
    elif kind in ("words_251", "words_252"):
        comments = " ".join(["-m comment --comment a"] * (61 if kind == "words_251" else 62))
        tail = "-p tcp --syn " if kind == "words_251" else ""
        insert("filter", "INPUT", f"{tail}{comments} -j ACCEPT")        # 4 + 3 + 244 or 4 + 248 words
    elif kind in ("word_1023", "word_1024"):
        n = 1023 if kind == "word_1023" else 1024
        insert("filter", "FORWARD", f"-m comment --comment {rng.choice('xyz') * n} -j ACCEPT")
    text = rules.render()
    packets = random_packets(seed, 3, text) if loads else ()
    return Case(f"invalid-{seed}-{kind}", text, packets, loads)


# --------------------------------------------------------------------------
# kube_proxy_case

KUBE_KINDS = ("clusterip", "nodeport", "noendpoints", "hairpin")
_SPN = "default/backend:http"
_MARK = "0x4000"


def _hash(text: str) -> str:
    """kube-proxy's chain-name hash: base32(sha256(text))[:16]."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def _kube_text(chains: dict, policies=None) -> str:
    """Tables in iptables-save's order and form: built-in chains, user chains
    sorted by name, rules grouped by chain."""
    out = []
    for table in ("filter", "nat"):
        t = chains[table]
        out.append(f"*{table}")
        builtin = [c for c in TABLE_CHAINS[table]]
        users = sorted(c for c in t if c not in builtin)
        out += [f":{c} ACCEPT [0:0]" for c in builtin]
        out += [f":{c} - [0:0]" for c in users]
        for c in builtin + users:
            out += [f"-A {c} {r}" for r in t.get(c, [])]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def kube_proxy_case(endpoints: int, kind: str) -> Case:
    """kube-proxy's (iptables mode) rules for the Service default/backend
    (ClusterIP 10.96.5.81:80, NodePort 30080 for "nodeport") on the standard
    node, as iptables-save prints them, and the packets a lesson sends.

    Endpoints (port 8080) are taken in order from backend1, backend2, remote1;
    "hairpin" puts the client Pod first. "noendpoints" ignores `endpoints`
    and writes filter REJECTs instead. Written without nfacct (kube-proxy
    omits it when the counter cannot be created, as in a fresh namespace).
    """
    if kind not in KUBE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(KUBE_KINDS)}, not {kind!r}")
    pool = [BACKEND1, BACKEND2, REMOTE1]
    if kind == "hairpin":
        pool = [CLIENT] + pool
    if kind == "noendpoints":
        eps = []
    else:
        if not 1 <= endpoints <= len(pool):
            raise ValueError(f"{kind}: endpoints must be 1 to {len(pool)}, not {endpoints}")
        eps = sorted(f"{a}:{TARGET_PORT}" for a in pool[:endpoints])
    node_port = kind in ("nodeport", "noendpoints")
    h = _hash(_SPN + "tcp")
    svc, ext = f"KUBE-SVC-{h}", f"KUBE-EXT-{h}"
    filt = {c: [] for c in ("INPUT", "FORWARD", "OUTPUT", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL",
                            "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL", "KUBE-SERVICES")}
    nat = {c: [] for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "KUBE-MARK-MASQ",
                           "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES")}
    ct_new = "-m conntrack --ctstate NEW"
    filt["INPUT"] = [
        "-j KUBE-FIREWALL",
        f'{ct_new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        f'{ct_new} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    ]
    filt["FORWARD"] = [
        f'{ct_new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        f'{ct_new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        f'{ct_new} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    ]
    filt["OUTPUT"] = [
        "-j KUBE-FIREWALL",
        f'{ct_new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        f'{ct_new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    ]
    filt["KUBE-FIREWALL"] = [
        '! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" '
        "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"]
    filt["KUBE-FORWARD"] = [
        "-m conntrack --ctstate INVALID -j DROP",
        f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {_MARK}/{_MARK} -j ACCEPT',
        '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED '
        "-j ACCEPT",
    ]
    if not eps:
        filt["KUBE-SERVICES"].append(
            f'-d {SERVICE_IP}/32 -p tcp -m comment --comment "{_SPN} has no endpoints" -m tcp --dport {SERVICE_PORT} '
            "-j REJECT --reject-with icmp-port-unreachable")
        filt["KUBE-EXTERNAL-SERVICES"].append(
            f'-p tcp -m comment --comment "{_SPN} has no endpoints" -m addrtype --dst-type LOCAL -m tcp '
            f"--dport {NODE_PORT} -j REJECT --reject-with icmp-port-unreachable")
    nat["PREROUTING"] = ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    nat["OUTPUT"] = ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    nat["POSTROUTING"] = ['-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']
    nat["KUBE-MARK-MASQ"] = [f"-j MARK --set-xmark {_MARK}/{_MARK}"]
    nat["KUBE-POSTROUTING"] = [
        f"-m mark ! --mark {_MARK}/{_MARK} -j RETURN",
        f"-j MARK --set-xmark {_MARK}/0x0",
        '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]
    cluster = f'-d {SERVICE_IP}/32 -p tcp -m comment --comment "{_SPN} cluster IP" -m tcp --dport {SERVICE_PORT}'
    if eps:
        nat["KUBE-SERVICES"].append(f"{cluster} -j {svc}")
        nat[svc] = [f"! -s {CLUSTER_CIDR} {cluster} -j KUBE-MARK-MASQ"]
        n = len(eps)
        for i, ep in enumerate(eps):
            sep = f"KUBE-SEP-{_hash(_SPN + 'tcp' + ep)}"
            stat = f" -m statistic --mode random --probability {1.0 / (n - i):.10f}" if i < n - 1 else ""
            nat[svc].append(f'-m comment --comment "{_SPN} -> {ep}"{stat} -j {sep}')
            ip = ep.split(":")[0]
            nat[sep] = [f'-s {ip}/32 -m comment --comment "{_SPN}" -j KUBE-MARK-MASQ',
                        f'-p tcp -m comment --comment "{_SPN}" -m tcp -j DNAT --to-destination {ep}']
        if node_port:
            nat["KUBE-NODEPORTS"].append(f'-p tcp -m comment --comment "{_SPN}" -m tcp --dport {NODE_PORT} -j {ext}')
            nat[ext] = [f'-m comment --comment "masquerade traffic for {_SPN} external destinations" '
                        "-j KUBE-MARK-MASQ", f"-j {svc}"]
    nat["KUBE-SERVICES"].append(
        '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" '
        "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    text = _kube_text({"filter": filt, "nat": nat})

    def P(from_, dst, dport, proto="tcp"):
        return PacketSpec(from_, proto, dst, dport)
    if kind == "clusterip":
        packets = (P("client", SERVICE_IP, SERVICE_PORT), P("node", SERVICE_IP, SERVICE_PORT),
                   P("remote1", SERVICE_IP, SERVICE_PORT), P("client", SERVICE_IP, 81),
                   P("client", SERVICE_IP, SERVICE_PORT, "udp"))
    elif kind == "nodeport":
        packets = (P("external", NODE_IP, NODE_PORT), P("client", SERVICE_IP, SERVICE_PORT),
                   P("peer", NODE_IP, NODE_PORT), P("client", NODE_IP, NODE_PORT),
                   P("node", NODE_IP, NODE_PORT))
    elif kind == "noendpoints":
        packets = (P("client", SERVICE_IP, SERVICE_PORT), P("node", SERVICE_IP, SERVICE_PORT),
                   P("external", NODE_IP, NODE_PORT))
    else:
        packets = (P("client", SERVICE_IP, SERVICE_PORT),
                   PacketSpec("client", "tcp", SERVICE_IP, SERVICE_PORT, sport=40001),
                   P("backend1", SERVICE_IP, SERVICE_PORT) if endpoints > 1 else P("node", SERVICE_IP, SERVICE_PORT))
    what = {
        "clusterip": "Pods, the node and a remote Pod reach the ClusterIP 10.96.5.81:80 through KUBE-SERVICES, "
                     "KUBE-SVC and the statistic cascade; the node's packet is masqueraded; wrong port or UDP "
                     "misses",
        "nodeport": "external, peer, a Pod and the node reach NodePort 192.168.0.2:30080 through "
                    "addrtype LOCAL -> KUBE-NODEPORTS -> KUBE-EXT (mark, masquerade)",
        "noendpoints": "no endpoints: filter KUBE-SERVICES and KUBE-EXTERNAL-SERVICES REJECT the ClusterIP "
                       "and the NodePort",
        "hairpin": "hairpin: the client is an endpoint of its own Service; when it is chosen, KUBE-SEP marks "
                   "and KUBE-POSTROUTING masquerades to 10.244.1.1",
    }[kind]
    return Case(f"kube-proxy {kind}, {len(eps)} endpoint(s): {what}", text, packets, True)
