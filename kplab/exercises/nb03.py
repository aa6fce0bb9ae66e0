"""Exercises for notebook 3: chains, rules, matches and targets.

The standard node (DESIGN section 3): the node is 192.168.0.2 on eth0, its
Pods are client 10.244.1.7, backend1 10.244.1.3 and backend2 10.244.1.4; the
peer node is 192.168.0.3 (its Pod remote1 10.244.2.5) and `external` is a
host outside the cluster, 198.51.100.10.
"""
from __future__ import annotations

from .. import trace
from ..netfilter.iptables_save import save
from ._core import Exercise
from .checks import Probe, choice, rules

from .checks import BACKEND1, BACKEND2, EXTERNAL, NODE  # the standard node (DESIGN section 3)

EMPTY_FILTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""

# -- 3.1 predict: the first matching rule decides ---------------------------------------------

FIRST_MATCH_RULES = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -j LOG --log-prefix "ssh: "
-A INPUT -s 198.51.100.0/24 -m comment --comment "partner network" -j ACCEPT
-A INPUT -p tcp --dport 22 -j DROP
COMMIT
"""


def _first_match_verdict() -> str:
    return trace(FIRST_MATCH_RULES, "external", NODE, "tcp", 22).verdict


first_match = Exercise(
    id="3.1", kind="predict", title="The rule that decides",
    prompt=f"With the rules of ex.FIRST_MATCH_RULES (INPUT policy DROP; rule 1 logs TCP port 22, rule 2 "
           f"accepts sources in 198.51.100.0/24, rule 3 drops TCP port 22), the host `external` ({EXTERNAL}) opens an SSH connection "
           f"(TCP port 22) to the node ({NODE}). What happens to its first packet: ACCEPT, DROP or REJECT?",
    checker=choice(
        _first_match_verdict,
        options=("ACCEPT", "DROP", "REJECT"),
        aliases={"accepted": "ACCEPT", "dropped": "DROP", "rejected": "REJECT"},
        why={"DROP": "Rule 3 would drop it, but the walk never gets there: rule 2 matches first "
                     "(198.51.100.10 is in 198.51.100.0/24) and its ACCEPT ends the walk of INPUT. "
                     "The first matching rule with a verdict wins.",
             "REJECT": "No rule here says REJECT, and a policy is only ACCEPT or DROP.",
             }),
    hints=("Read the rules from the top, as the kernel does, and stop at the first rule that matches and "
           "has a verdict (ACCEPT, DROP, REJECT). LOG is not a verdict.",
           "Does 198.51.100.10 fall in 198.51.100.0/24? Then which rule matches first, rule 2 or rule 3?"),
    answer="ACCEPT",
    explanation="Rule 1 matches but only logs, so the walk goes on. Rule 2 matches (the source is in "
                "198.51.100.0/24, and it has no other match) and ACCEPT ends the walk of INPUT: the packet is "
                "delivered. Rule 3, the DROP, is never evaluated for it.",
    wrong_answers=(("DROP", "first"), ("REJECT", "no rule"), ("LOG", "not one of the choices")),
)

# -- 3.2 write: refuse SSH with a TCP reset ---------------------------------------------------


def _uses_tcp_reset(ruleset, text) -> str | None:
    if "--reject-with tcp-reset" not in save(ruleset):
        return ("SSH is refused, but with an ICMP error (REJECT's default, icmp-port-unreachable). "
                "A TCP client is told most plainly with a reset: add --reject-with tcp-reset.")
    return None


refuse_ssh = Exercise(
    id="3.2", kind="write", title="Refuse SSH, quickly",
    prompt="Write one rule for the filter table that refuses TCP connections to port 22 of the node, from "
           "anywhere, with a TCP reset (so the client gets 'connection refused' at once instead of waiting "
           "for a timeout), and changes nothing else.",
    checker=rules([
        Probe("SSH from outside", "external", NODE, "tcp", 22, verdict="REJECT",
              wrong="SSH to the node is not refused. Which chain sees packets addressed to the node itself, "
                    "and is the target REJECT (a DROP leaves the client waiting)?"),
        Probe("SSH from a Pod", "client", NODE, "tcp", 22, verdict="REJECT",
              wrong="SSH from a Pod to the node is not refused: match only the protocol and the port."),
        Probe("UDP to port 22", "external", NODE, "udp", 22, verdict="ACCEPT",
              wrong="UDP to port 22 is refused too: add -p tcp."),
        Probe("HTTPS to the node", "external", NODE, "tcp", 443, verdict="ACCEPT",
              wrong="Other ports are refused too: match only --dport 22."),
        Probe("SSH from client to backend1 (forwarded)", "client", BACKEND1, "tcp", 22, verdict="ACCEPT",
              wrong="SSH between Pods is refused too: it is forwarded, not addressed to the node. "
                    "Put the rule in the chain that sees only the node's own packets."),
    ], base=EMPTY_FILTER, table="filter", structure=_uses_tcp_reset),
    hints=("Packets addressed to the node itself pass the INPUT hook; the filter table's INPUT chain "
           "decides for them.",
           "A port match needs a protocol first: -p tcp --dport 22.",
           "The target is REJECT with an option: -j REJECT --reject-with tcp-reset."),
    answer="-A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset",
    explanation="INPUT sees the packets addressed to the node; -p tcp makes --dport legal and keeps UDP out; "
                "REJECT drops the packet and answers it, and --reject-with tcp-reset makes that answer a TCP "
                "RST (the kernel accepts tcp-reset only in a rule that matches -p tcp).",
    wrong_answers=(("-A INPUT --dport 22 -j REJECT --reject-with tcp-reset", "do not load"),
                   ("-A INPUT -p tcp --dport 22 -j DROP", "REJECT"),
                   ("-A INPUT -p tcp --dport 22 -j REJECT", "tcp-reset"),
                   ("-A INPUT -j REJECT --reject-with tcp-reset", "do not load"),
                   ("-A FORWARD -p tcp --dport 22 -j REJECT --reject-with tcp-reset", "which chain"),
                   ("-A INPUT -p tcp -j REJECT --reject-with tcp-reset", "only --dport 22")),
)

# -- 3.3 write: an allow-list with policy DROP ------------------------------------------------


def _policy_drop(ruleset, text) -> str | None:
    chain = ruleset.tables.get("filter").chains.get("INPUT") if "filter" in ruleset.tables else None
    if chain is None or chain.policy != "DROP":
        return ("Every test packet does what was asked, but the INPUT policy is not DROP: let the policy "
                "drop what no rule accepts (:INPUT DROP [0:0] in a whole table, from *filter to COMMIT), "
                "rather than a last -j DROP rule.")
    return None


ALLOW_LIST_ANSWER = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 192.168.0.0/24 -p tcp --dport 22 -j ACCEPT
-A INPUT -p tcp --dport 443 -j ACCEPT
COMMIT
"""

allow_list = Exercise(
    id="3.3", kind="write", title="An allow-list",
    prompt="Write the whole filter table (from *filter to COMMIT) for a node that accepts only two kinds of "
           "packets addressed to itself: SSH (TCP port 22) from the node network 192.168.0.0/24, and HTTPS "
           "(TCP port 443) from anywhere. The INPUT policy drops everything else for the node. Traffic the "
           "node forwards (to and from its Pods) is not your business here: leave FORWARD open.",
    checker=rules([
        Probe("HTTPS from outside", "external", NODE, "tcp", 443, verdict="ACCEPT",
              wrong="HTTPS from outside is not accepted: add a rule that accepts TCP port 443 from anywhere."),
        Probe("SSH from the peer node", "peer", NODE, "tcp", 22, verdict="ACCEPT",
              wrong="SSH from the node network (the peer node, 192.168.0.3) is not accepted: accept "
                    "-s 192.168.0.0/24 -p tcp --dport 22."),
        Probe("port 80 from outside", "external", NODE, "tcp", 80, verdict="DROP",
              wrong="Port 80 gets in, though nothing should accept it. Is the INPUT policy DROP "
                    "(:INPUT DROP [0:0])?"),
        Probe("SSH from outside", "external", NODE, "tcp", 22, verdict="DROP",
              wrong="SSH from outside (198.51.100.10) gets in: the SSH rule must also match "
                    "-s 192.168.0.0/24."),
        Probe("UDP 443 from outside", "external", NODE, "udp", 443, verdict="DROP",
              wrong="UDP to port 443 gets in: the HTTPS rule should match -p tcp only."),
        Probe("client to backend1 (forwarded)", "client", BACKEND1, "tcp", 8080, verdict="ACCEPT",
              wrong="Traffic between Pods is dropped: it is forwarded, not addressed to the node. "
                    "Leave the FORWARD policy ACCEPT."),
    ], table="filter", structure=_policy_drop),
    hints=("An allow-list is a list of ACCEPT rules followed by nothing: the chain's policy does the "
           "dropping. Start from :INPUT DROP [0:0].",
           "One rule per kind of packet: -s 192.168.0.0/24 -p tcp --dport 22 -j ACCEPT for SSH, and a second "
           "one for port 443 without -s.",
           "Declare all three built-in chains of the filter table, then the two -A INPUT rules, then COMMIT."),
    answer=ALLOW_LIST_ANSWER,
    explanation="With policy DROP, INPUT drops every packet for the node that no rule accepted: the two ACCEPT "
                "rules are the whole allow-list. The SSH rule needs both -s 192.168.0.0/24 and --dport 22 (a "
                "rule matches only when all its matches hold). FORWARD keeps policy ACCEPT, so Pods are not "
                "affected. (A real host would also accept loopback traffic, -i lo, and replies to its own "
                "connections: notebook 5 shows the conntrack match for that.)",
    wrong_answers=((ALLOW_LIST_ANSWER.replace(":INPUT DROP", ":INPUT ACCEPT"), "policy"),
                   (ALLOW_LIST_ANSWER.replace("-s 192.168.0.0/24 ", ""), "192.168.0.0/24"),
                   (ALLOW_LIST_ANSWER.replace(":FORWARD ACCEPT", ":FORWARD DROP"), "forward"),
                   ("-A INPUT -s 192.168.0.0/24 -p tcp --dport 22 -j ACCEPT\n"
                    "-A INPUT -p tcp --dport 443 -j ACCEPT\n-A INPUT -j DROP", "policy"),
                   (ALLOW_LIST_ANSWER.replace("-p tcp --dport 443", "--dport 443"), "do not load")),
)

# -- 3.4 debug: a broad ACCEPT before the DROP ------------------------------------------------

ORDER_BROKEN = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 10.244.1.0/24 -j ACCEPT
-A FORWARD ! -s 10.244.0.0/16 -d 10.244.1.3 -j DROP
-A FORWARD -s 10.244.1.0/24 -j ACCEPT
COMMIT
"""

ORDER_FIXED = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD ! -s 10.244.0.0/16 -d 10.244.1.3 -j DROP
-A FORWARD -d 10.244.1.0/24 -j ACCEPT
-A FORWARD -s 10.244.1.0/24 -j ACCEPT
COMMIT
"""

rule_order = Exercise(
    id="3.4", kind="debug", title="The database is open to the world",
    prompt="backend1 (10.244.1.3) runs a database: only Pods (10.244.0.0/16, on any node) may reach it. The "
           "other Pods of this node are open to everyone, and this node's Pods may reach anything. The "
           "ruleset in ex.rule_order.starter was written for that, yet the host external (198.51.100.10) "
           "still reaches backend1. Fix it and answer with the whole fixed ruleset.",
    checker=rules([
        Probe("external to backend1 (database)", "external", BACKEND1, "tcp", 5432, verdict="DROP",
              wrong="external (198.51.100.10) still reaches backend1. Which rule decides for that packet? Read "
                    "the rules from the top: the first rule that matches wins."),
        Probe("client to backend1", "client", BACKEND1, "tcp", 5432, verdict="ACCEPT",
              wrong="Pods can no longer reach backend1: drop only sources outside 10.244.0.0/16 (keep the !)."),
        Probe("external to backend2", "external", BACKEND2, "tcp", 8080, verdict="ACCEPT",
              wrong="backend2 no longer accepts traffic from outside, but only backend1 is private. Did you "
                    "delete the rule that accepts traffic to this node's Pods? The FORWARD policy is DROP."),
        Probe("remote1 (a Pod on the peer node) to backend1", "remote1", BACKEND1, "tcp", 5432,
              verdict="ACCEPT",
              wrong="remote1 (10.244.2.5, a Pod on the other node) cannot reach backend1, but Pods of every "
                    "node may (10.244.0.0/16)."),
        Probe("client to the outside", "client", EXTERNAL, "tcp", 443, verdict="ACCEPT",
              wrong="This node's Pods can no longer reach the outside: keep the last rule."),
    ], table="filter"),
    hints=("Send the packet from external to backend1 in your head: which rule is the first to match it?",
           "-d 10.244.1.0/24 matches 10.244.1.3 too. A more specific rule must come before a broader one "
           "that decides the other way.",
           "Swap the first two -A FORWARD lines."),
    answer=ORDER_FIXED,
    explanation="Rule 1 accepted every packet to this node's Pods, backend1 included, so the DROP below it was "
                "never reached for them: first match wins. With the DROP first, packets to backend1 from "
                "outside 10.244.0.0/16 are dropped, and everything else to the Pods falls through to the "
                "broad ACCEPT.",
    wrong_answers=((ORDER_BROKEN, "first rule that matches"),
                   (ORDER_BROKEN.replace("-A FORWARD -d 10.244.1.0/24 -j ACCEPT\n", ""), "backend2"),
                   (ORDER_FIXED.replace("! -s 10.244.0.0/16 ", ""), "pods can no longer"),
                   (ORDER_FIXED.replace("! -s 10.244.0.0/16", "! -s 10.244.1.0/24"), "remote1")),
    starter=ORDER_BROKEN,
)

EXERCISES = (first_match, refuse_ssh, allow_list, rule_order)
