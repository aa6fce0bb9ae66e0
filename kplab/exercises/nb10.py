"""Exercises for notebook 10: bring your own node (a real iptables-save dump).

Every exercise works on the course's sample dump, data/dumps/shop.worker-2.rules
(node worker-2 of a three-node cluster: node IP 10.10.0.12, Pods in
10.244.2.0/24), traced on its own topology (shop.worker-2.topology.json).
The right answers are computed from the dump with kplab (explain, a trace), so
they cannot drift from what the rules say.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path

from ..errors import KplabError
from ._core import Exercise, right, wrong
from .checks import number, outcome

DUMPS = Path(__file__).resolve().parents[2] / "data" / "dumps"
RULES = DUMPS / "shop.worker-2.rules"
TOPOLOGY = DUMPS / "shop.worker-2.topology.json"

NODE_IP = "10.10.0.12"            # worker-2, the node the dump comes from
CATALOG = "shop/catalog:http"
STOREFRONT = "shop/storefront:http"
CONNECTIONS = 900


@lru_cache(maxsize=1)
def _dump():
    """(ruleset, topology, explain views by name), read once."""
    from .. import Topology, load_rules
    from ..kube.explain import explain
    rules = load_rules(str(RULES))
    topo = Topology.load(str(TOPOLOGY))
    return rules, topo, {v.name: v for v in explain(rules)}


def _node():
    """A fresh node for the dump (empty conntrack table)."""
    from ..node import Node
    rules, topo, _ = _dump()
    return Node(rules, topo)


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0]


# -- 10.1 ------------------------------------------------------------------------------------------

def local_connections() -> float:
    """Of CONNECTIONS new connections to shop/catalog, how many the dump's odds send to a
    catalog Pod on worker-2 itself (an endpoint inside the node's Pod CIDR)."""
    _, topo, views = _dump()
    share = sum(e.probability for e in views[CATALOG].endpoints
                if ipaddress.ip_address(_host(e.address)) in topo.pod_cidr)
    return CONNECTIONS * share


stay_on_the_node = Exercise(
    id="10.1", kind="predict", title="How many connections stay on worker-2?",
    prompt=f"The storefront Pod on worker-2 opens {CONNECTIONS} new connections to shop/catalog "
           "(10.101.23.45:80). Using the Service's endpoints and the probabilities in the dump, how many "
           "of them do you expect to be DNAT'ed to a catalog Pod that runs on worker-2 itself "
           "(Pod CIDR 10.244.2.0/24)? Answer with a number.",
    checker=number(local_connections, tolerance=2,
                   why={300: "300 is one endpoint's share (a third of the connections). Two of catalog's "
                             "three endpoints are in worker-2's Pod CIDR: 10.244.2.5 and 10.244.2.6.",
                        450: "450 takes rule 2's --probability 0.5 as its share of all connections. Rule 2 "
                             "only sees what rule 1 left, so its endpoint gets 1/2 of 2/3 = 1/3.",
                        900: "Not all of them: 10.244.1.4 is in 10.244.1.0/24, the Pod CIDR of worker-1, so "
                             "a third of the connections leave the node.",
                        0: "Two of the three endpoints are on worker-2: look at their addresses."},
                   low="Too few: add up the shares of every endpoint inside 10.244.2.0/24.",
                   high="Too many: one of the three endpoints is on another node."),
    hints=("List the Service's endpoints and their shares: explain(rules), or the table of section 2.",
           "The endpoints in 10.244.2.0/24 run on worker-2. Each of the three endpoints gets 1/3 of the "
           "new connections, whatever the probability written on its rule.",
           f"Two endpoints of three are local: 2/3 of {CONNECTIONS}."),
    answer=600,
    explanation="kube-proxy's cascade (--probability 0.333, then 0.5, then the last rule) gives each of the "
                "three endpoints 1/3 of the new connections. 10.244.2.5 and 10.244.2.6 are in worker-2's Pod "
                "CIDR, so 2/3 of 900 = 600 connections stay on the node; the other 300 go to 10.244.1.4 on "
                "worker-1. (iptables mode does not prefer local endpoints for cluster-IP traffic.)",
    wrong_answers=((450, "1/2 of 2/3"), (300, "two of"), (900, "worker-1")),
)


# -- 10.2 ------------------------------------------------------------------------------------------

_EXAMPLE = {"from": "laptop", "dst": "...", "proto": "tcp", "dport": 0}


def _packet_fields(answer):
    """(from, dst, proto, dport) of a packet description, or a Feedback saying what is wrong."""
    if not isinstance(answer, dict):
        return wrong(f"Answer with a dict describing the packet, like {_EXAMPLE!r}; you gave "
                     f"{type(answer).__name__}.")
    frm = answer.get("from", answer.get("from_"))
    missing = [k for k, v in (("from", frm), ("dst", answer.get("dst")), ("dport", answer.get("dport")))
               if v is None]
    if missing:
        return wrong(f"The packet needs {', '.join(repr(m) for m in missing)}: e.g. {_EXAMPLE!r}.")
    proto = str(answer.get("proto", "tcp")).lower()
    dport = answer["dport"]
    if isinstance(dport, str) and dport.strip().isdigit():
        dport = int(dport)
    if isinstance(dport, bool) or not isinstance(dport, int) or not 0 <= dport <= 65535:
        return wrong(f"'dport' is a port number (0-65535), not {answer['dport']!r}.")
    return str(frm), str(answer["dst"]).strip(), proto, dport


def _check_nodeport(answer):
    fields = _packet_fields(answer)
    if not isinstance(fields, tuple):
        return fields
    frm, dst, proto, dport = fields
    _, topo, views = _dump()
    svc = views[STOREFRONT]
    if frm != "laptop":
        return wrong(f"Send it from laptop, the client outside the cluster (you sent it from {frm!r}): a "
                     "NodePort is how traffic from outside reaches a Service.")
    try:
        ipaddress.ip_address(dst)
    except ValueError:
        return wrong(f"'dst' must be an IP address, not {dst!r}.")
    if dst == svc.cluster_ip:
        return wrong(f"{dst} is the Service's cluster IP. Routers outside the cluster do not route the "
                     "Service CIDR to a node; a NodePort is a port on the node's own address.")
    others = {a: n for n, a in topo.externals if a.startswith("10.10.0.")}
    if dst in others:
        return wrong(f"{dst} is {others[dst]}. The NodePort is open there too, but this dump holds worker-2's "
                     f"rules: send the packet to worker-2 ({NODE_IP}).")
    if dst in views["ingress-nginx/ingress-nginx-controller:https"].load_balancer_ips:
        return wrong(f"{dst} is the load-balancer IP of ingress-nginx, another Service. Use the node's own "
                     "address and storefront's NodePort.")
    try:
        trace = _node().send_from(frm, dst, proto, dport)
    except (KplabError, ValueError) as exc:
        return wrong(f"kplab could not send that packet: {exc}")
    ext = svc.chains.get("external")
    via = any(s.chain == "KUBE-NODEPORTS" and s.verdict == f"JUMP:{ext}" for s in trace.matched_rules)
    endpoints = {e.address for e in svc.endpoints}
    details = (f"{trace.packet} from {frm}: {outcome(trace)}",)
    if via and trace.verdict == "ACCEPT" and trace.dnat_to in endpoints:
        return right(f"It matched the NodePort rule in nat KUBE-NODEPORTS and was DNAT'ed to a storefront "
                     f"Pod ({trace.dnat_to}).", details)
    if dst == NODE_IP and dport == svc.port:
        return wrong(f"Port {dport} is the Service's port, which only the cluster IP listens on. Its NodePort "
                     f"is {svc.node_port}.", details)
    if dst == NODE_IP and dport in {int(e.address.rsplit(':', 1)[1]) for e in svc.endpoints}:
        return wrong(f"Port {dport} is the container port of the storefront Pods, not a port of the node. "
                     "Find the NodePort in the dump (nat KUBE-NODEPORTS).", details)
    if proto != (svc.protocol or "tcp"):
        return wrong(f"The NodePort rule matches {svc.protocol}, not {proto}.", details)
    return wrong("That packet does not reach shop/storefront through its NodePort: look for the Service's "
                 "rule in nat KUBE-NODEPORTS, and send to the node's own address.", details)


reach_the_nodeport = Exercise(
    id="10.2", kind="write", title="Reach the storefront through its NodePort",
    prompt="Describe the first packet of a connection from laptop (a client outside the cluster) that reaches "
           "shop/storefront through its NodePort on worker-2: a dict with keys 'from', 'dst', 'proto' and "
           "'dport'. The check sends it through the dump's node.",
    checker=_check_nodeport,
    hints=("A NodePort is a port opened on the node's own address: which address is worker-2's?",
           "The port is in the dump: the storefront rule in nat KUBE-NODEPORTS (--dport), or the NodePort "
           "column of the Services table.",
           f"'dst' is {NODE_IP}; 'dport' is shop/storefront's NodePort."),
    answer={"from": "laptop", "dst": NODE_IP, "proto": "tcp", "dport": 30080},
    explanation="A NodePort Service opens its port on every node's own address. The packet to 10.10.0.12:30080 "
                "misses every cluster-IP rule in nat KUBE-SERVICES, matches the last one (addrtype LOCAL: the "
                "address is the node's) and goes to KUBE-NODEPORTS, whose --dport 30080 rule jumps to the "
                "Service's KUBE-EXT chain: marked for masquerade, then DNAT'ed to one of the two storefront Pods.",
    wrong_answers=(({"from": "laptop", "dst": "10.104.198.7", "proto": "tcp", "dport": 80}, "cluster IP"),
                   ({"from": "laptop", "dst": NODE_IP, "proto": "tcp", "dport": 80}, "NodePort is 30080"),
                   ({"from": "laptop", "dst": NODE_IP, "proto": "tcp", "dport": 3000}, "container port"),
                   ({"from": "laptop", "dst": "10.10.0.11", "proto": "tcp", "dport": 30080}, "worker-2"),
                   ({"from": "storefront", "dst": NODE_IP, "proto": "tcp", "dport": 30080}, "outside the cluster")),
)


# -- 10.3 ------------------------------------------------------------------------------------------

BLOCKED = {"from_": "scanner", "dst": "10.10.0.240", "proto": "tcp", "dport": 443}


def _drop_step():
    """The step of the dump's trace for BLOCKED that dropped the packet."""
    trace = _node().send_from(**BLOCKED)
    return next(s for s in reversed(trace.matched_rules) if s.verdict in ("DROP", "REJECT"))


def _chain_and_number(answer):
    """(table or None, chain, number) from "ADMIN-BLOCKLIST 2", "filter ADMIN-BLOCKLIST #2",
    ("ADMIN-BLOCKLIST", 2) ..., or a Feedback."""
    rules, _, _ = _dump()
    if isinstance(answer, (tuple, list)) and all(isinstance(a, (str, int)) and not isinstance(a, bool)
                                                 for a in answer):
        text = " ".join(str(a) for a in answer)
    elif isinstance(answer, str):
        text = answer
    else:
        return wrong("Answer with the chain and the rule number, like \"KUBE-SERVICES 3\" (or "
                     f"(\"KUBE-SERVICES\", 3)); you gave {type(answer).__name__}.")
    words = [w for w in re.split(r"[\s,;:#()'\"]+", text) if w]
    tables = [w.lower() for w in words if w.lower() in rules.tables]
    chains = {n for t in rules.tables.values() for n in t.chains}
    named = [w for w in words if w in chains or w.upper() in chains]
    numbers = [int(w) for w in words if w.isdigit()]
    if not named:
        return wrong(f"Name a chain of the dump (you wrote {text.strip()[:60]!r}): the table of a trace shows "
                     "the chain and rule of each step.")
    if len(numbers) != 1:
        return wrong("Give one rule number too: its 1-based position in the chain, as iptables-save "
                     "lists it (the trace table's 'rule' column).")
    return (tables[0] if tables else None), named[-1].upper() if named[-1].upper() in chains else named[-1], \
        numbers[0]


def _check_drop(answer):
    got = _chain_and_number(answer)
    if not isinstance(got, tuple):
        return got
    table, chain, num = got
    want = _drop_step()
    if table not in (None, want.table) and chain == want.chain:
        return wrong(f"{chain} is a chain of the {want.table} table, not {table}.")
    if (chain, num) == (want.chain, want.index):
        return right(f"{want.table} {want.chain} rule {want.index} drops it: {want.rule}")
    if chain == want.chain:
        return wrong(f"Right chain, wrong rule: {chain} rule {num} is not the one that matched. Count the "
                     "rules from 1 in the order iptables-save lists them, and check each one's source "
                     "address against the scanner's.")
    trace = _node().send_from(**BLOCKED)
    fired = {(s.chain, s.index): s for s in trace.matched_rules}
    if (chain, num) in fired:
        s = fired[(chain, num)]
        if s.verdict.startswith(("JUMP:", "GOTO:")):
            return wrong(f"{chain} rule {num} matched, but it only jumps to {s.verdict.split(':', 1)[1]}: the "
                         "packet's fate is decided in the chain it jumps to.")
        return wrong(f"{chain} rule {num} matched ({s.verdict}), but the packet went on after it: find the "
                     "rule whose verdict is DROP.")
    hooks = list(dict.fromkeys(s.hook for s in trace.matched_rules if s.hook))
    if chain == "INPUT":
        return wrong("INPUT never sees this packet: after the DNAT to an ingress Pod it is not for the node "
                     f"but forwarded (the trace's hooks: {', '.join(hooks)}).")
    return wrong(f"The packet never matched {chain} rule {num}. Trace it and read the last rule that "
                 "matched.")


find_the_drop = Exercise(
    id="10.3", kind="debug", title="Who drops the scanner?",
    prompt="A client at 203.0.113.66 (scanner) cannot reach the shop through the load balancer "
           "(10.10.0.240:443), while laptop can. Trace the scanner's packet through the dump's node and find "
           "the rule that drops it: answer with its chain and rule number, e.g. \"KUBE-SERVICES 3\".",
    checker=_check_drop,
    hints=("Send the packet with node.send_from(**ex.find_the_drop.starter) and look at the trace's matched "
           "rules (viz.trace_table(..., matched_only=True)).",
           "The packet is DNAT'ed to the ingress Pod first, so it is forwarded: look at the FORWARD hook.",
           "FORWARD rule 1 jumps to a chain an administrator added; the DROP is in there."),
    answer="ADMIN-BLOCKLIST 2",
    explanation="kube-proxy DNATs the packet to the ingress Pod (10.244.1.6:443) in nat PREROUTING, so it is "
                "forwarded. filter FORWARD rule 1, which an administrator inserted above kube-proxy's rules, "
                "jumps to ADMIN-BLOCKLIST, and its rule 2 drops everything from 203.0.113.0/24 "
                "(\"INC-4711 port scans\"). Its counter in the dump shows the packets it has dropped.",
    wrong_answers=(("FORWARD 1", "only jumps"), ("ADMIN-BLOCKLIST 1", "wrong rule"),
                   ("INPUT 1", "forwarded"), ("KUBE-SEP-IDMLCM3HSSA2OWEU 2", "went on")),
    starter=BLOCKED,
)


EXERCISES = (stay_on_the_node, reach_the_nodeport, find_the_drop)
