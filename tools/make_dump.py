#!/usr/bin/env python3
"""Regenerate data/dumps/: a real-looking `iptables-save -c` dump of a Kubernetes node, made by kplab.

    python3 tools/make_dump.py            # (re)write data/dumps/shop.worker-2.rules and .topology.json
    python3 tools/make_dump.py --check    # exit 1 if the files on disk differ from what this script makes

How a dump is made (deterministic: the same inputs give the same bytes):

1. kube-proxy's rules for one node: `kplab.kube.proxier.render` of the cluster
   in data/dumps/<name>.yaml (exactly `kplab render --cluster ... --node ...`).
2. What else a real node of that cluster carries, all in modules kplab models:
   kubelet's and kube-proxy's canary chains (mangle, nat, filter) and
   kubelet's KUBE-IPTABLES-HINT; flannel's FLANNEL-FWD (filter) and
   FLANNEL-POSTRTG (nat) rules, as flanneld writes them; and a site firewall
   chain an administrator inserted at the top of INPUT and FORWARD.
3. The merged rules are parsed and saved by kplab (`kplab save`: the form
   iptables-save prints), then given counters: a traffic mix (FLOWS below:
   who talks to whom, how many connections, packets and bytes each way) is
   sent through a kplab Node with the dump's own topology, and every rule a
   packet matches, and every policy a packet meets, counts it, as the kernel
   counts them: nat rules see the first packet of a connection only, filter
   rules every packet. Statistic rules split connections by the kernel's
   odds, with a little seeded noise, as a real node's counters would show.
   Each rule then keeps the share of its count from the time it has existed
   (`window`): kube-proxy writes its chains with `iptables-restore --noflush
   --counters`, declaring each one, which flushes it and restarts its rules'
   counters at 0. Its top-level chains (KUBE-SERVICES, ...) are rewritten on
   every sync, its per-service chains on full syncs (at least hourly) or when
   their Service changes; the jumps from the built-in chains, the policies and
   other programs' chains count since the node booted. Built-in chains
   without rules show [0:0]: with the nf_tables backend they do not exist in
   the kernel (iptables creates them on demand).
4. The header and footer comments iptables-save v1.8.9 (nf_tables) prints
   around each table, with a fixed date.

The counters come from that model, not from a capture: they are consistent
with the rules (every count is a packet the rules would have counted), but
ICMP errors sent by REJECT rules and traffic not in FLOWS are not counted.
tests/kernel/test_dumps.py loads each dump into a real kernel
(`iptables-restore -c` in a scratch network namespace) and checks that
`iptables-save -c` prints it back unchanged.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kplab import Node, parse_rules                      # noqa: E402
from kplab.kube.cluster import Cluster                   # noqa: E402
from kplab.kube.dump import node_topology                # noqa: E402
from kplab.kube.proxier import render                    # noqa: E402

DUMPS_DIR = ROOT / "data" / "dumps"
IPTABLES_SAVE = "iptables-save v1.8.9 (nf_tables)"


@dataclass(frozen=True)
class Flow:
    """Connections of one kind: from a host of the topology to dst:dport.

    `out_pkts`/`in_pkts` are the packets per connection each way, `first`
    the size of the first packet, `out_size`/`in_size` the average size of
    the others (IP packet lengths, which is what iptables counts). The counts
    are totals over `since` seconds, at a steady rate."""

    label: str
    from_: str
    dst: str
    proto: str
    dport: int
    conns: int
    out_pkts: int = 1
    in_pkts: int = 1
    first: int = 60
    out_size: int = 52
    in_size: int = 52
    since: int | None = None     # seconds this traffic has been going on (None: since the node booted)


@dataclass(frozen=True)
class DumpSpec:
    name: str                    # data/dumps/<name>.yaml
    node: str                    # the node whose rules are dumped
    node_ip: str
    pod_cidr: str
    pods: dict                   # names for Pods of this node (topology)
    hosts: dict                  # hosts beyond eth0 (topology)
    extra: dict                  # table -> lines added before its COMMIT (a new table if absent)
    flows: tuple
    date: str                    # as ctime() prints it
    uptime: int                  # seconds since the node booted (the built-in chains' counters start)
    last_full_sync: int          # seconds since kube-proxy last rewrote every chain
    last_sync: int               # seconds since kube-proxy last rewrote its top-level chains
    seed: int = 2025

    @property
    def stem(self) -> str:
        return f"{self.name}.{self.node}"


CANARIES = [":KUBE-KUBELET-CANARY - [0:0]", ":KUBE-PROXY-CANARY - [0:0]"]

SHOP = DumpSpec(
    name="shop",
    node="worker-2",
    node_ip="10.10.0.12/24",
    pod_cidr="10.244.2.0/24",
    pods={"storefront": "10.244.2.8", "payments": "10.244.2.10"},
    hosts={"cp-1": "10.10.0.10", "worker-1": "10.10.0.11", "bastion": "10.10.0.5", "db": "10.10.0.50",
           "laptop": "198.51.100.23", "scanner": "203.0.113.66"},
    extra={
        "mangle": [":KUBE-IPTABLES-HINT - [0:0]"] + CANARIES,
        "filter": [":ADMIN-BLOCKLIST - [0:0]", ":FLANNEL-FWD - [0:0]"] + CANARIES + [
            '-I INPUT 1 -m comment --comment "site firewall: blocked networks" -j ADMIN-BLOCKLIST',
            '-I FORWARD 1 -m comment --comment "site firewall: blocked networks" -j ADMIN-BLOCKLIST',
            '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
            '-A ADMIN-BLOCKLIST -s 192.0.2.0/24 -m comment --comment "CHG-1182 old office range" -j DROP',
            '-A ADMIN-BLOCKLIST -s 203.0.113.0/24 -m comment --comment "INC-4711 port scans" -j DROP',
            '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
            '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        ],
        "nat": [":FLANNEL-POSTRTG - [0:0]"] + CANARIES + [
            '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
            '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
            '-A FLANNEL-POSTRTG -s 10.244.2.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
            '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.2.0/24 -m comment --comment "flanneld masq" -j RETURN',
            '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.2.0/24 -m comment --comment "flanneld masq" -j RETURN',
            '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" '
            '-j MASQUERADE --random-fully',
            '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" '
            '-j MASQUERADE --random-fully',
        ],
    },
    flows=(
        # Pods of this node calling Services
        Flow("storefront -> catalog", "storefront", "10.101.23.45", "tcp", 80, 48210, 7, 9, 60, 177, 1764),
        Flow("storefront -> DNS", "storefront", "10.96.0.10", "udp", 53, 131072, 1, 1, 78, 78, 142),
        Flow("catalog-2 -> DNS", "catalog-2", "10.96.0.10", "udp", 53, 20480, 1, 1, 76, 76, 140),
        Flow("catalog-3 -> DNS", "catalog-3", "10.96.0.10", "udp", 53, 20711, 1, 1, 76, 76, 140),
        # payments' only Pod failed its readiness probe 371 s ago: kube-proxy's sync then
        # replaced its chains by the REJECT rule, and every attempt since is refused
        Flow("storefront -> payments (no endpoints)", "storefront", "10.98.142.30", "tcp", 443, 1389, 1, 0,
             since=371),
        Flow("catalog-2 -> database", "catalog-2", "10.10.0.50", "tcp", 5432, 96, 2400, 2600, 60, 120, 900),
        Flow("catalog-3 -> database", "catalog-3", "10.10.0.50", "tcp", 5432, 96, 2380, 2570, 60, 120, 900),
        # Pods of other nodes calling Pods of this one (DNAT done on their node)
        Flow("storefront-1 -> catalog-2", "storefront-1", "10.244.2.5", "tcp", 8080, 16070, 7, 9, 60, 177, 1764),
        Flow("storefront-1 -> catalog-3", "storefront-1", "10.244.2.6", "tcp", 8080, 15995, 7, 9, 60, 177, 1764),
        Flow("catalog-1 -> DNS on this node", "catalog-1", "10.244.2.2", "udp", 53, 10240, 1, 1, 76, 76, 140),
        Flow("ingress -> storefront", "ingress-nginx-controller-1", "10.244.2.8", "tcp", 3000, 17311, 8, 10,
             60, 210, 1510),
        # The node itself
        Flow("flanneld -> kubernetes Service", "node", "10.96.0.1", "tcp", 443, 3, 5210, 6120, 60, 118, 790),
        Flow("kubelet -> API server", "node", "10.10.0.10", "tcp", 6443, 9, 40210, 45120, 60, 131, 820),
        Flow("kubelet probes catalog-2", "node", "10.244.2.5", "tcp", 8080, 17280, 5, 4, 60, 88, 190),
        Flow("kubelet probes catalog-3", "node", "10.244.2.6", "tcp", 8080, 17280, 5, 4, 60, 88, 190),
        Flow("kubelet probes storefront", "node", "10.244.2.8", "tcp", 3000, 17280, 5, 4, 60, 88, 210),
        Flow("kubelet probes payments", "node", "10.244.2.10", "tcp", 8443, 34560, 1, 1, 60, 52, 40),
        Flow("kubelet probes coredns", "node", "10.244.2.2", "tcp", 8181, 17280, 5, 4, 60, 88, 160),
        Flow("vxlan to worker-1", "node", "10.10.0.11", "udp", 8472, 1, 1384211, 0, 168, 312, 0),
        Flow("vxlan to cp-1", "node", "10.10.0.10", "udp", 8472, 1, 301877, 0, 160, 244, 0),
        # Into the node
        Flow("vxlan from worker-1", "worker-1", "10.10.0.12", "udp", 8472, 1, 1402377, 0, 210, 388, 0),
        Flow("vxlan from cp-1", "cp-1", "10.10.0.12", "udp", 8472, 1, 298154, 0, 150, 230, 0),
        Flow("API server -> kubelet", "cp-1", "10.10.0.12", "tcp", 10250, 2911, 9, 8, 60, 240, 690),
        Flow("ssh from the bastion", "bastion", "10.10.0.12", "tcp", 22, 14, 2140, 2530, 60, 91, 260),
        # From outside the cluster
        Flow("laptop -> NodePort 30080", "laptop", "10.10.0.12", "tcp", 30080, 8730, 10, 12, 60, 180, 1183),
        Flow("laptop -> load balancer :443", "laptop", "10.10.0.240", "tcp", 443, 26404, 14, 16, 60, 185, 1310),
        Flow("laptop -> load balancer :80", "laptop", "10.10.0.240", "tcp", 80, 3107, 5, 4, 60, 84, 150),
        Flow("scanner -> load balancer :443", "scanner", "10.10.0.240", "tcp", 443, 641, 2, 0),
        Flow("scanner -> ssh", "scanner", "10.10.0.12", "tcp", 22, 412, 2, 0),
        Flow("scanner -> NodePort 30080", "scanner", "10.10.0.12", "tcp", 30080, 118, 2, 0),
    ),
    date="Tue Mar 11 14:02:37 2025",
    uptime=2 * 86400 + 5 * 3600 + 13 * 60,
    last_full_sync=41 * 60 + 9,
    last_sync=371,
)

DUMPS = (SHOP,)


# --------------------------------------------------------------------------
# rules

def rendered_text(spec: DumpSpec) -> str:
    """kube-proxy's rules on the node (`kplab render`), as iptables-save prints them."""
    cluster = Cluster.load(str(DUMPS_DIR / f"{spec.name}.yaml"))
    return render(cluster.services(), cluster.slices(), cluster.proxy_config(spec.node)).save_text


def merged_text(spec: DumpSpec) -> str:
    """The rendered rules with the node's other chains added (iptables-restore input)."""
    out, current, seen = [], None, set()
    for line in rendered_text(spec).splitlines():
        if line.startswith("*"):
            current = line[1:]
        if line == "COMMIT" and current in spec.extra:
            out.extend(spec.extra[current])
            seen.add(current)
        out.append(line)
    for table, lines in spec.extra.items():
        if table not in seen:
            out[:0] = [f"*{table}", *lines, "COMMIT"]
    return "\n".join(out) + "\n"


def ruleset(spec: DumpSpec):
    return parse_rules(merged_text(spec), source=f"{spec.stem} (merged)")


def topology(spec: DumpSpec, rules):
    return node_topology(rules, node_ip=spec.node_ip, pod_cidr=spec.pod_cidr, pods=spec.pods, hosts=spec.hosts)


# --------------------------------------------------------------------------
# counters

class Tally:
    """Packets per rule (table, chain, index) and per policy (table, chain), by packet size."""

    def __init__(self):
        self.rules: dict = {}          # key -> {size: packets}
        self.policies: dict = {}

    def add(self, trace, packets: int, size: int) -> None:
        if packets <= 0:
            return
        for s in trace.steps:
            if s.kind == "rule" and s.matched:
                sizes = self.rules.setdefault((s.table, s.chain, s.index), {})
            elif s.kind == "policy":
                sizes = self.policies.setdefault((s.table, s.chain), {})
            else:
                continue
            sizes[size] = sizes.get(size, 0) + packets


def _key(trace):
    return (trace.verdict, trace.dnat_to, trace.delivered_to)


def _split(conns: int, shares: list, rng: random.Random) -> list:
    """`conns` connections over outcomes of probabilities `shares`, with binomial-sized noise
    (integers only, so the result is the same on every machine)."""
    counts, left = [], conns
    for i, p in enumerate(shares):
        if i == len(shares) - 1:
            counts.append(left)
            break
        mean = round(conns * p)
        spread = math.isqrt(max(0, round(conns * p * (1 - p))))
        n = min(left, max(0, mean + rng.randint(-spread, spread)))
        counts.append(n)
        left -= n
    return counts


def _representative(rules, topo, pkt, from_, want, tries: int = 256):
    """A node, and the first packet's trace committed on it, that took the outcome `want`."""
    for seed in range(tries):
        node = Node(rules, topo, seed=seed)
        t = node.send(pkt, from_)
        if _key(t) == want:
            return node, t
    raise RuntimeError(f"no seed below {tries} gives the outcome {want} for {pkt}")


def simulate_flow(flow: Flow, spec: DumpSpec, rules, topo) -> Tally:
    """The packets and bytes each rule and policy counts for `flow`'s connections."""
    tally = Tally()
    rng = random.Random(f"{spec.name}/{spec.node}/{spec.seed}/{flow.label}")
    probe = Node(rules, topo)
    pkt = probe.packet(flow.from_, flow.dst, flow.proto, flow.dport, sport=33000 + len(flow.label))
    outcomes: dict = {}
    for t in probe.all_paths(pkt, flow.from_):
        outcomes[_key(t)] = outcomes.get(_key(t), 0.0) + t.probability
    keys = list(outcomes)
    for want, n in zip(keys, _split(flow.conns, [outcomes[k] for k in keys], rng)):
        if n == 0:
            continue
        node, first = _representative(rules, topo, pkt, flow.from_, want)
        if first.verdict != "ACCEPT":
            # nothing answers: every packet the client (re)sends is a first packet
            tally.add(first, n * flow.out_pkts, flow.first)
            continue
        tally.add(first, n, flow.first)
        if flow.in_pkts:
            tally.add(node.reply(first), n * flow.in_pkts, flow.in_size)
        if flow.out_pkts > 1:
            later = pkt.replace(tcp_flags=frozenset({"ACK"})) if flow.proto == "tcp" else pkt
            tally.add(node.send(later, flow.from_), n * (flow.out_pkts - 1), flow.out_size)
    return tally


#: Chains kube-proxy declares (so flushes and rewrites, counters back to 0) on every sync.
TOP_LEVEL = {"filter": {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
                        "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL"},
             "nat": {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"}}
#: Per-service-port chains: rewritten on a full sync, or when their Service or endpoints change.
PER_SERVICE = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def window(spec: DumpSpec, table: str, chain: str) -> int:
    """How many seconds a rule of `chain` has been counting when the dump is taken.

    kube-proxy feeds its rules to `iptables-restore --noflush --counters`, declaring each
    chain it writes (`:CHAIN - [0:0]`): the chain is flushed and its rules come back with
    zero counters. Top-level chains are written on every sync, per-service chains on full
    syncs (at least hourly) and when their Service changes; the jumps from the built-in
    chains, the built-in chains' policies and other programs' chains are never rewritten."""
    if chain in TOP_LEVEL.get(table, ()):
        return spec.last_sync
    if chain.startswith(PER_SERVICE):
        return spec.last_full_sync
    return spec.uptime


def counters(spec: DumpSpec, rules, topo) -> tuple:
    """Every rule's and policy's (packets, bytes) when the dump is taken: each flow's
    packets, cut to the time the rule has been counting. Returns (rules, policies)."""
    out_rules: dict = {}
    out_policies: dict = {}
    for flow in spec.flows:
        since = flow.since or spec.uptime
        tally = simulate_flow(flow, spec, rules, topo)
        for into, got in ((out_rules, tally.rules), (out_policies, tally.policies)):
            for key, sizes in got.items():
                w = min(window(spec, key[0], key[1]), since)
                p0, b0 = into.get(key, (0, 0))
                for size, packets in sizes.items():
                    n = packets * w // since
                    p0, b0 = p0 + n, b0 + n * size
                into[key] = (p0, b0)
    return out_rules, out_policies


# --------------------------------------------------------------------------
# the dump

def dump_text(spec: DumpSpec) -> str:
    """The node's `iptables-save -c` output."""
    rules = ruleset(spec)
    rule_counts, policy_counts = counters(spec, rules, topology(spec, rules))
    out, table, index = [], None, {}
    for line in rules.save().splitlines():
        if line.startswith("*"):
            table, index = line[1:], {}
            out.append(f"# Generated by {IPTABLES_SAVE} on {spec.date}")
            out.append(line)
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            p = b = 0
            if policy != "-" and rules.chain(table, name).rules:
                p, b = policy_counts.get((table, name), (0, 0))
            out.append(f":{name} {policy} [{p}:{b}]")
        elif line.startswith("-A "):
            chain = line.split()[1]
            i = index[chain] = index.get(chain, 0) + 1
            p, b = rule_counts.get((table, chain, i), (0, 0))
            out.append(f"[{p}:{b}] {line}")
        elif line == "COMMIT":
            out.append(line)
            out.append(f"# Completed on {spec.date}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def topology_json(spec: DumpSpec) -> str:
    return json.dumps(topology(spec, ruleset(spec)).to_dict(), indent=2) + "\n"


def build() -> dict:
    """{path relative to the repository: text} for every dump."""
    files = {}
    for spec in DUMPS:
        files[f"data/dumps/{spec.stem}.rules"] = dump_text(spec)
        files[f"data/dumps/{spec.stem}.topology.json"] = topology_json(spec)
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the files on disk; exit 1 if they differ")
    args = ap.parse_args(argv)
    stale = []
    for rel, text in build().items():
        path = ROOT / rel
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
        else:
            path.write_text(text)
            print(f"wrote {rel} ({text.count(chr(10))} lines)")
    if stale:
        print("out of date (run python3 tools/make_dump.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
