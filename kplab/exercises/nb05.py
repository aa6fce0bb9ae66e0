"""Exercises for notebook 5: connection tracking and NAT.

The right answers of the predictions are computed by the simulator (a node
with kube-proxy's seed rules, or the notebook's port forward), so they
follow the engine, which is tested against the kernel.
"""
from __future__ import annotations

from pathlib import Path

from ._core import Exercise
from .checks import Probe, choice, rules

NODE = "192.168.0.2"          # the standard node (DESIGN section 3): eth0, Pods 10.244.1.0/24
SERVICE = "10.96.5.81"        # default/backend in the seed rules (data/rules/seed-node.rules)
SEED_RULES = Path(__file__).resolve().parents[2] / "data" / "rules" / "seed-node.rules"

#: The port forward of the notebook: the node's port 80 goes to backend2:8080.
PORT_FORWARD = """*nat
-A PREROUTING -d 192.168.0.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.4:8080
COMMIT
"""

#: The same forward after an edit: now to backend1.
PORT_FORWARD_MOVED = """*nat
-A PREROUTING -d 192.168.0.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.3:8080
COMMIT
"""


def _seed_node():
    from .. import standard_node
    return standard_node(str(SEED_RULES))


def nat_rules_walked(trace) -> int:
    """How many rules of the nat table a packet's walk evaluated."""
    return sum(1 for s in trace.steps if s.kind == "rule" and s.table == "nat")


def _second_packet_walks_nat() -> str:
    """The seed node: client opens a connection to the Service, backend answers, client sends its ACK."""
    from ..packet import Packet
    node = _seed_node()
    first = node.send_from("client", SERVICE, "tcp", 80)
    node.reply(first)
    second = node.send(Packet.tcp("10.244.1.7", SERVICE, 80, flags=("ACK",)), "client")
    return "yes" if nat_rules_walked(second) else "no"


IDLE_DAYS = 6


def _idle_connection_after_reload() -> str:
    """Where the next packet of a connection opened before `node.load`, then idle for days, goes."""
    from .. import parse_rules, standard_node
    from ..packet import Packet
    node = standard_node(parse_rules(PORT_FORWARD))
    ack = Packet.tcp("198.51.100.10", NODE, 80, flags=("ACK",))
    node.reply(node.send_from("external", NODE, "tcp", 80))
    node.send(ack, "external")                      # the handshake completes: ESTABLISHED
    node.load(parse_rules(PORT_FORWARD_MOVED))
    node.advance(IDLE_DAYS * 24 * 3600)
    return node.send(ack, "external").delivered_to or "nobody"


second_packet = Exercise(
    id="5.1", kind="predict", title="Does the second packet walk kube-proxy's nat rules?",
    prompt="On the seed node (kube-proxy's rules for the Service 10.96.5.81:80), client opens a TCP "
           "connection to the Service: its first packet walks PREROUTING -> KUBE-SERVICES -> KUBE-SVC-... -> "
           "KUBE-SEP-... and is DNATed to backend1. backend1 answers, and client sends the next packet of the "
           "same connection (an ACK). Does that packet evaluate any rule of the nat table? Answer \"yes\" or \"no\".",
    checker=choice(
        _second_packet_walks_nat, options=("yes", "no"),
        why={"yes": "The nat table is consulted once per connection, for its first packet. The conntrack entry "
                    "already holds the DNAT to backend1, and every later packet gets it from there: no nat rule "
                    "is evaluated."},
        aliases={"y": "yes", "n": "no", "true": "yes", "false": "no", "none": "no", "0": "no"},
        praise="Only the first packet of a connection meets the nat rules; conntrack applies the stored DNAT "
               "to every later packet."),
    hints=("What does the conntrack entry remember after the first packet?",
           "The kernel walks the nat table only for a packet whose connection has no NAT decided yet."),
    answer="no",
    explanation="The first packet created the conntrack entry and the nat rules decided its DNAT. Every later "
                "packet of that connection (either direction) finds the entry in PREROUTING and gets the stored "
                "translation without evaluating a single nat rule. That is why kube-proxy's random choice is made "
                "once per connection, not once per packet.",
    wrong_answers=(("yes", "once per connection"), ("maybe", "not one of the choices")),
)

dnat_8080 = Exercise(
    id="5.2", kind="write", title="Publish backend1 on the node's port 8080",
    prompt="Write one nat rule that sends TCP connections to the node's address 192.168.0.2, port 8080, to "
           "backend1 (10.244.1.3) port 80, whoever sends them from the network. Other ports, UDP, and traffic "
           "to other hosts must not change.",
    checker=rules([
        Probe("external to 192.168.0.2:8080 reaches backend1", "external", NODE, "tcp", 8080,
              delivered_to="backend1",
              wrong="A connection from outside to 192.168.0.2:8080 does not reach backend1: packets that "
                    "arrive from the network meet nat PREROUTING (OUTPUT only sees packets the node itself makes)."),
        Probe("... and arrives on port 80", "external", NODE, "tcp", 8080, dnat_to="10.244.1.3:80",
              wrong="The connection reaches backend1 but not on port 80: without a port, DNAT keeps the "
                    "original 8080. Write --to-destination 10.244.1.3:80."),
        Probe("external to 192.168.0.2:80 is left alone", "external", NODE, "tcp", 80, dnat_to=None,
              delivered_to="node",
              wrong="Port 80 of the node is rewritten too: match only --dport 8080."),
        Probe("UDP to 192.168.0.2:8080 is left alone", "external", NODE, "udp", 8080, dnat_to=None,
              wrong="UDP to port 8080 is rewritten too: match -p tcp."),
        Probe("client to remote1:8080 is left alone", "client", "10.244.2.5", "tcp", 8080, dnat_to=None,
              delivered_to="remote1",
              wrong="client's connection to remote1 (10.244.2.5) port 8080 is sent to backend1 too: match the "
                    "node's own address with -d 192.168.0.2 (or -m addrtype --dst-type LOCAL)."),
    ], table="nat"),
    hints=("Changing where a packet goes is DNAT, in the nat table, before routing decides where it goes.",
           "Packets from the network pass nat PREROUTING; match -d 192.168.0.2 -p tcp --dport 8080.",
           "The rule starts with -A PREROUTING and ends with -j DNAT --to-destination ADDRESS:PORT."),
    answer="-A PREROUTING -d 192.168.0.2 -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.3:80",
    explanation="nat PREROUTING sees every packet that arrives from the network before the routing decision, so "
                "a DNAT there makes the node forward the connection to backend1 instead of delivering it "
                "locally. -d and --dport keep other traffic as it was; the port in --to-destination changes "
                "8080 into 80. Replies come back through conntrack, which turns the source back into "
                "192.168.0.2:8080.",
    wrong_answers=(
        ("-A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.3:80", "-d 192.168.0.2"),
        ("-A PREROUTING -d 192.168.0.2 -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.3",
         "--to-destination 10.244.1.3:80"),
        ("-A OUTPUT -d 192.168.0.2 -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.3:80", "PREROUTING"),
        ("-A INPUT -d 192.168.0.2 -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.3:80", "do not load"),
        ("-A PREROUTING -d 192.168.0.2 -p tcp -j DNAT --to-destination 10.244.1.3:80", "--dport 8080"),
    ),
)

MASQ_BROKEN = """*nat
-A POSTROUTING -s 10.244.1.0/24 ! -d 10.244.0.0/16 -o eth1 -j MASQUERADE
COMMIT
"""

MASQ_FIXED = """*nat
-A POSTROUTING -s 10.244.1.0/24 ! -d 10.244.0.0/16 -o eth0 -j MASQUERADE
COMMIT
"""

masquerade_never_fires = Exercise(
    id="5.3", kind="debug", title="The masquerade rule that never fires",
    prompt="These rules should make the node's Pods reach hosts outside the cluster with the node's address "
           "(MASQUERADE), and leave Pod-to-Pod traffic alone. Yet external hosts still see connections from "
           "10.244.1.x. Trace a packet from client to 198.51.100.10, find why the rule never matches, and give "
           "the fixed rules (the whole text).",
    checker=rules([
        Probe("client to external is masqueraded", "client", "198.51.100.10", "tcp", 443, masquerade=True,
              delivered_to="external",
              wrong="client still reaches 198.51.100.10 with its own address: trace that packet and read why "
                    "the MASQUERADE rule does not match. Which interface does the packet leave by?"),
        Probe("backend2 to external is masqueraded", "backend2", "198.51.100.10", "udp", 53, masquerade=True,
              wrong="backend2's UDP to 198.51.100.10 is not masqueraded: the rule should cover every Pod of the "
                    "node and every protocol."),
        Probe("client to remote1 keeps its address", "client", "10.244.2.5", "tcp", 80, masquerade=False,
              wrong="Pod-to-Pod traffic to the other node (remote1) is masqueraded now: keep ! -d 10.244.0.0/16, "
                    "Pods must see each other's real addresses."),
        Probe("client to backend1 keeps its address", "client", "10.244.1.3", "tcp", 80, masquerade=False,
              wrong="Traffic between Pods of this node is masqueraded now: keep the rule to packets that leave "
                    "by the node's uplink."),
    ], table="nat"),
    hints=("Trace client -> 198.51.100.10 and read the POSTROUTING step: what does the rule want that the "
           "packet does not have?",
           "The standard node reaches everything outside its Pods through eth0 (via 192.168.0.1).",
           "Change -o eth1 into -o eth0."),
    answer=MASQ_FIXED,
    explanation="-o matches the interface the routing decision chose. The node has no eth1: it reaches hosts "
                "outside its Pod network through eth0, so a rule with -o eth1 never matches and the Pods' "
                "addresses leak out. With -o eth0 the rule fires for the first packet of each outgoing "
                "connection; ! -d 10.244.0.0/16 keeps Pod-to-Pod traffic unchanged.",
    starter=MASQ_BROKEN,
    wrong_answers=(
        (MASQ_BROKEN, "which interface"),
        ("*nat\n-A POSTROUTING -s 10.244.1.0/24 -j MASQUERADE\nCOMMIT\n", "Pod-to-Pod"),
        ("*nat\n-A POSTROUTING -s 10.244.1.0/24 ! -d 10.244.0.0/16 -o eth0 -p tcp -j MASQUERADE\nCOMMIT\n",
         "every protocol"),
        ("*nat\n-A PREROUTING -s 10.244.1.0/24 ! -d 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n", "do not load"),
    ),
)

idle_after_reload = Exercise(
    id="5.4", kind="predict", title="An idle connection under new rules",
    prompt="The node runs the port forward of section 1 (its port 80 goes to backend2:8080). external opens a "
           "connection to 192.168.0.2:80 and completes the handshake (ESTABLISHED). Then the rules are replaced "
           "(node.load) by a forward to backend1 (ex.PORT_FORWARD_MOVED). The connection stays idle, no packet "
           f"either way, for {IDLE_DAYS} days; then external sends its next packet on it. Which Pod receives that "
           "packet: \"backend1\" or \"backend2\"?",
    checker=choice(
        _idle_connection_after_reload, options=("backend1", "backend2"),
        why={"backend2": "An open connection does keep its DNAT, but only while its conntrack entry lives: an "
                         "ESTABLISHED TCP entry expires after 432000 s (5 days) without a packet. After "
                         f"{IDLE_DAYS} days the entry is gone, so this packet is the first of a connection as far "
                         "as conntrack knows: it walks the new nat rules."},
        praise="The entry expired after 5 days of silence, so the packet walked the new rules to backend1 (which "
               "knows nothing of the connection: its TCP answers with a reset)."),
    hints=("Open connections keep their translation as long as their conntrack entry exists. How long is that?",
           "An ESTABLISHED TCP entry lives 432000 seconds without traffic. How many seconds are 6 days?"),
    answer="backend1",
    explanation="Loading new rules leaves open connections alone, but an idle ESTABLISHED TCP entry is deleted "
                "after 432000 s (5 days). Six days later the packet finds no entry: conntrack treats it as the "
                "first packet of a connection (the kernel picks up connections in the middle by default), the "
                "nat table's new rule sends it to backend1, and backend1, which never saw the handshake, answers "
                "with a TCP reset. Long-lived idle connections (databases, SSH) use keepalives partly for this.",
    wrong_answers=(("backend2", "5 days"), ("node", "not one of the choices")),
)

EXERCISES = (second_packet, dnat_8080, masquerade_never_fires, idle_after_reload)
