"""Exercises for notebook 7: the full Pod-to-Service flow across two nodes.

7.1 and 7.2 are predictions about a caller on node-2 whose Service has its
only Pod on node-1 (the seed cluster with the frontend scaled to two); the
right answers are computed by sending the packets through the cluster, so
they follow kplab.kube and the engine. 7.3 and 7.4 are rules on the standard
node with the seed's rules (`SEED_RULES`, data/rules/seed-node.rules).
"""
from __future__ import annotations

import re
from pathlib import Path

from ._core import Exercise, Feedback, wrong
from .checks import Probe, choice, rules

#: The course's data folder (the cluster YAML the predictions are computed from).
DATA = Path(__file__).resolve().parents[2] / "data"
SEED_CLUSTER = DATA / "clusters" / "seed.yaml"

CLIENT = "frontend-5c7d8b9f4-q7xkz"        # the seed's front-end Pod on node-1 (the lessons' "client")
BACKEND = "backend-6d8f7c9b4-x2vqk"        # the seed's backend Pod on node-1 (the lessons' "backend1")
SERVICE_IP = "10.96.5.81"
SEP = "KUBE-SEP-YOPU36KEXISEYTYN"          # the endpoint chain of 10.244.1.3:8080
SVC = "KUBE-SVC-POOGYJBNEVT3HFAO"          # the service chain of default/backend:http
HAIRPIN_RULE = f"-A {SEP} -s 10.244.1.3/32 -m comment --comment \"default/backend:http\" -j KUBE-MARK-MASQ"

#: node-1's rules for the seed (data/rules/seed-node.rules without its comment lines; a test keeps them equal).
SEED_RULES = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-YOPU36KEXISEYTYN - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-POOGYJBNEVT3HFAO - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-YOPU36KEXISEYTYN -s 10.244.1.3/32 -m comment --comment "default/backend:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-YOPU36KEXISEYTYN -p tcp -m comment --comment "default/backend:http" -m tcp -j DNAT --to-destination 10.244.1.3:8080
-A KUBE-SERVICES -d 10.96.5.81/32 -p tcp -m comment --comment "default/backend:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-POOGYJBNEVT3HFAO
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-POOGYJBNEVT3HFAO ! -s 10.244.0.0/16 -d 10.96.5.81/32 -p tcp -m comment --comment "default/backend:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-POOGYJBNEVT3HFAO -m comment --comment "default/backend:http -> 10.244.1.3:8080" -j KUBE-SEP-YOPU36KEXISEYTYN
COMMIT
"""

#: The seed's rules without the hairpin rule (the base of exercise 7.3).
NO_HAIRPIN = SEED_RULES.replace(HAIRPIN_RULE + "\n", "")

#: The seed's rules on a node where Docker set the FORWARD policy to DROP (exercise 7.4).
FORWARD_DROP = SEED_RULES.replace(":FORWARD ACCEPT [0:0]", ":FORWARD DROP [0:0]")


# -- the two-node scenario of 7.1 and 7.2 --------------------------------------------------------

def far_caller_cluster():
    """The seed cluster with the frontend scaled to two: the new frontend Pod runs on node-2,
    and the Service's only Pod stays on node-1."""
    from ..kube.cluster import Cluster
    return Cluster.load(str(SEED_CLUSTER)).scale("frontend", 2)


def far_caller(cluster) -> str:
    """The name of the frontend Pod on node-2."""
    return next(p.name for p in cluster.pods("frontend") if p.node == "node-2")


def _far_connection():
    cluster = far_caller_cluster()
    caller = far_caller(cluster)
    journey = cluster.send(caller, "backend")
    return cluster, caller, journey


def seen_source() -> str:
    """What the backend on node-1 sees as the source of the node-2 caller's connection:
    "pod" (the caller's own Pod IP), a node name (its IP), "service" or the address itself."""
    cluster, caller, journey = _far_connection()
    if journey.final is None:
        return "nothing"
    src = journey.final.src
    if src == cluster.pod(caller).ip:
        return "pod"
    for node in cluster.nodes():
        if node.ip == src:
            return node.name
    if src == cluster.service("backend").cluster_ip:
        return "service"
    return src


def reply_rewriter() -> str:
    """The node(s) where the backend's reply gets its source turned back into the Service's address."""
    cluster, _caller, journey = _far_connection()
    reply = cluster.reply(journey)
    nodes = [h.node for h in reply.hops if h.trace is not None and h.trace.final is not None
             and h.trace.final.src != h.trace.packet.src]
    if not nodes:
        return "neither"
    return nodes[0] if len(set(nodes)) == 1 else "both"


NODE_CHOICES = ("node-1", "node-2", "both", "neither")

source_on_node1 = Exercise(
    id="7.1", kind="predict", title="Who is calling?",
    prompt="Scale the frontend to two replicas: the new frontend Pod runs on node-2, while the Service "
           "default/backend still has its only Pod (10.244.1.3) on node-1. The node-2 frontend opens a connection "
           "to 10.96.5.81:80. Which source address does the backend Pod on node-1 see? Answer \"pod\" (the "
           "caller's own Pod IP), \"node-2\" (node-2's address 192.168.0.3), \"node-1\" (192.168.0.2) or "
           "\"service\" (10.96.5.81).",
    checker=choice(seen_source, options=("pod", "node-2", "node-1", "service"),
                   aliases={"caller": "pod", "pod ip": "pod", "the caller's pod ip": "pod",
                            "192.168.0.3": "node-2", "192.168.0.2": "node-1", "10.96.5.81": "service",
                            "cluster ip": "service", "clusterip": "service"},
                   why={"node-2": "node-2 rewrote only the destination (DNAT). The KUBE-SVC chain marks a packet for "
                                  "masquerade only when its source is outside the cluster CIDR (! -s 10.244.0.0/16), "
                                  "and Pod addresses cross between nodes as they are.",
                        "node-1": "node-1 only forwards the packet into the backend Pod: the DNAT already happened "
                                  "on node-2, and nothing on the way rewrites the source.",
                        "service": "10.96.5.81 is where the caller sent the packet (its destination), and after the "
                                   "DNAT not even that: sources are never rewritten to a Service address."},
                   praise="The backend sees the caller's own Pod IP: Pod-to-Service traffic is DNATed on the "
                          "caller's node and never masqueraded (unless the Pod calls itself)."),
    hints=("Look for a MASQUERADE or SNAT step in the journeys of sections 2 and 3: when did the source change?",
           "The KUBE-SVC chain's first rule marks for masquerade only sources outside 10.244.0.0/16. "
           "Is the caller's address inside it?"),
    answer="pod",
    explanation="node-2 (the caller's node) DNATs 10.96.5.81:80 to 10.244.1.3:8080 in PREROUTING; the packet "
                "crosses the wire with the caller's Pod IP as source and node-1 simply forwards it. Only sources "
                "outside the cluster CIDR, and a Pod calling itself (hairpin), are masqueraded.",
    wrong_answers=(("node-2", "masquerade"), ("service", "destination"), ("gateway", "not one of the choices")),
)

reply_on_node2 = Exercise(
    id="7.2", kind="predict", title="Who undoes the DNAT?",
    prompt="Same connection as in 7.1: the backend on node-1 answers from 10.244.1.3:8080 to the caller on node-2. "
           "The caller must see an answer from 10.96.5.81:80. On which node is the reply's source turned back "
           "into 10.96.5.81:80? Answer \"node-1\", \"node-2\", \"both\" or \"neither\".",
    checker=choice(reply_rewriter, options=NODE_CHOICES,
                   why={"node-1": "node-1 has a conntrack entry for this connection too, but without NAT: it only "
                                  "saw a packet already addressed to 10.244.1.3. The translation is remembered "
                                  "where it was made.",
                        "both": "Only one node made the translation, so only one can undo it: the other node's "
                                "conntrack entry has the same addresses in both directions.",
                        "neither": "Something must undo it, or the caller's socket would get an answer from "
                                   "10.244.1.3:8080, a peer it never called, and reset it. Think of conntrack."},
                   praise="The node that made the DNAT (the caller's) keeps it in its conntrack entry and "
                          "reverses it for the reply."),
    hints=("Conntrack remembers a translation on the node that made it. Which node made the DNAT in 7.1?",
           "In section 4, compare the two nodes' `conntrack -L` lines: which one shows different addresses in "
           "its two directions?"),
    answer="node-2",
    explanation="The DNAT was made on node-2 (the caller's node), so node-2's conntrack entry holds both tuples; "
                "when the reply arrives from the wire, node-2 rewrites its source back to 10.96.5.81:80 before "
                "delivering it. node-1 just forwards both directions.",
    wrong_answers=(("node-1", "already addressed"), ("both", "only one"), ("neither", "conntrack")),
)


# -- 7.3: the hairpin rule -----------------------------------------------------------------------

def _in_sep_chain(ruleset, text):
    svc = ruleset.chain("nat", SVC)
    if svc is not None and len(svc.rules) > 2:
        return (f"The test packets work, but put the rule in {SEP}, not in {SVC}: only the endpoint chain knows "
                "which Pod was chosen, and hairpin means \"the caller is the chosen Pod\". With two or more "
                "endpoints your rule would masquerade connections that go to another Pod.")
    return None


_hairpin_rules = rules([
    Probe("backend1 calls its own Service", "backend1", SERVICE_IP, "tcp", 80, delivered_to="backend1",
          masquerade=True,
          wrong="backend1 calling its own Service is still not masqueraded, so it would see a packet from "
                "itself and answer it inside its own network namespace. Mark it for masquerade in the "
                "KUBE-SEP chain, before the DNAT rule."),
    Probe("client calls the Service", "client", SERVICE_IP, "tcp", 80, delivered_to="backend1", masquerade=False,
          wrong="Your rule masquerades the client too: the backend would no longer see who called. Match only "
                "packets whose source is the endpoint itself (-s 10.244.1.3/32)."),
    Probe("the node calls the Service", "node", SERVICE_IP, "tcp", 80, delivered_to="backend1", masquerade=True,
          wrong="The node's own connections to the Service are no longer masqueraded: did you change other rules?"),
], base=NO_HAIRPIN, table="nat", structure=_in_sep_chain)


def _appended_after_dnat(answer: str) -> bool:
    """Does the answer add a masquerade-mark rule to the KUBE-SEP chain after its DNAT rule?"""
    lines = [ln.strip() for ln in answer.splitlines()]
    if not any(ln.startswith("*") for ln in lines):             # bare lines: appended after the base's DNAT
        return any(re.match(rf"(iptables\s+(-t\s+nat\s+)?)?-A\s+{SEP}\b.*MASQ", ln) for ln in lines)
    seen_dnat = False
    for ln in lines:
        if re.match(rf"-A\s+{SEP}\b", ln):
            if "DNAT" in ln:
                seen_dnat = True
            elif "MASQ" in ln and seen_dnat:
                return True
    return False


def _hairpin_check(answer) -> Feedback:
    fb = _hairpin_rules(answer)
    if not fb.correct and isinstance(answer, str) and _appended_after_dnat(answer) \
            and "do not load" not in fb.message:
        return wrong(f"Your rule is appended (-A) to {SEP} after its DNAT rule, and DNAT is a terminating "
                     "target: the chain ends there and your rule is never reached. Insert it first with "
                     f"-I {SEP} 1 ...", fb.details)
    return fb


hairpin_rule = Exercise(
    id="7.3", kind="write", title="Write the hairpin rule",
    prompt=f"Here are node-1's rules without kube-proxy's hairpin rule. Write the one rule (nat table) that makes "
           f"backend1 (10.244.1.3) masqueraded when it calls its own Service 10.96.5.81:80 and the endpoint chain "
           f"{SEP} picks it, while the client's connections keep their source.",
    checker=_hairpin_check,
    hints=("Section 5: the masquerade is decided by a mark set in the nat table and applied in KUBE-POSTROUTING. "
           "Which chain sets the mark?",
           f"The rule belongs in {SEP} and must match only the endpoint's own address (-s). It jumps to "
           "KUBE-MARK-MASQ.",
           f"Rules appended with -A come after the DNAT rule, which ends the chain: use -I {SEP} 1."),
    answer=f"-I {SEP} 1 -s 10.244.1.3/32 -j KUBE-MARK-MASQ",
    explanation="kube-proxy writes `-s <endpoint IP> -j KUBE-MARK-MASQ` as the first rule of every KUBE-SEP chain: "
                "a packet from the endpoint itself, about to be DNATed back to that endpoint, is marked, and "
                "KUBE-POSTROUTING masquerades it, so the Pod answers the node's address and the reply passes the "
                "node's conntrack, which reverses both translations.",
    wrong_answers=((f"-A {SEP} -s 10.244.1.3/32 -j KUBE-MARK-MASQ", "never reached"),
                   (f"-I {SEP} 1 -j KUBE-MARK-MASQ", "-s 10.244.1.3/32"),
                   (f"-I {SEP} 1 -s 10.244.1.3/32 -j MASQUERADE", "do not load"),
                   (f"-I {SVC} 1 -s 10.244.1.3/32 -j KUBE-MARK-MASQ", "KUBE-SEP")),
)


# -- 7.4: Docker's FORWARD policy ----------------------------------------------------------------

def _keeps_drop_policy(ruleset, text):
    chain = ruleset.chain("filter", "FORWARD")
    if chain is not None and chain.policy != "DROP":
        return ("The Pods work again, but you opened forwarding for everything by setting the policy to "
                f"{chain.policy}: keep the DROP policy and accept the Pods' traffic with a rule.")
    return None


forward_drop = Exercise(
    id="7.4", kind="debug", title="Docker closed the FORWARD chain",
    prompt="Docker was installed on node-1, and Docker sets the filter table's FORWARD policy to DROP. Since then "
           "no Pod on the node can reach the Service, nor a Pod on the other node. `starter` holds the node's "
           "rules. Keep the DROP policy (the security team wants it) and make the Pods' traffic work again: "
           "answer with the rule(s) to add to the filter table, or with the whole fixed ruleset.",
    checker=rules([
        Probe("client calls the Service", "client", SERVICE_IP, "tcp", 80, delivered_to="backend1",
              wrong="The client's first packet to the Service is still dropped in FORWARD. KUBE-FORWARD accepts "
                    "only marked packets and established connections; a new Pod connection falls through to the "
                    "DROP policy. Accept the Pods' traffic (their source is in 10.244.0.0/16)."),
        Probe("client calls a Pod on node-2", "client", "10.244.2.5", "tcp", 8080, delivered_to="remote1",
              wrong="Pod-to-Pod traffic to the other node is still dropped by the FORWARD policy."),
        Probe("a Pod on node-2 calls backend1", "remote1", "10.244.1.3", "tcp", 8080, delivered_to="backend1",
              wrong="Packets from Pods on the other node, arriving from the wire, are still dropped: accept by the "
                    "source range of all Pods, not just this node's."),
        Probe("an outside host routes through the node", "external", "203.0.113.5", "tcp", 80, verdict="DROP",
              wrong="You opened forwarding for everything: an outside host can now use node-1 as a router. "
                    "Accept only the Pods' traffic."),
    ], base=FORWARD_DROP, table="filter", structure=_keeps_drop_policy),
    hints=("Follow a new connection from the client through the filter FORWARD chain: which rule accepts it? "
           "What happens at the end of the chain?",
           "KUBE-FORWARD accepts marked packets and RELATED,ESTABLISHED ones. The first packet of a Pod's "
           "connection is neither.",
           "One rule that accepts packets whose source is a Pod address (the cluster CIDR 10.244.0.0/16) is "
           "enough: replies are then accepted by KUBE-FORWARD's conntrack rule."),
    answer="-A FORWARD -s 10.244.0.0/16 -j ACCEPT",
    starter=FORWARD_DROP,
    explanation="Docker (since 1.13) sets `iptables -P FORWARD DROP`. kube-proxy's KUBE-FORWARD only accepts "
                "masquerade-marked packets and established connections, so the first packet of every "
                "Pod connection forwarded by the node falls to the policy. Accepting the cluster CIDR as source "
                "(flannel adds rules like it) lets Pods' new connections through; their replies match KUBE-FORWARD's "
                "RELATED,ESTABLISHED rule.",
    wrong_answers=((FORWARD_DROP, "DROP policy"),
                   (SEED_RULES, "everything"),
                   ("-A FORWARD -s 10.244.1.0/24 -j ACCEPT", "other node"),
                   ("-A FORWARD -j ACCEPT", "everything")),
)

EXERCISES = (source_on_node1, reply_on_node2, hairpin_rule, forward_drop)
