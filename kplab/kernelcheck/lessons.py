"""Hand-written lesson cases for the kernel differential suite.

Each `Case` in `LESSONS` is one path or behaviour of
the netfilter reference (shared/reference/netfilter.md) on the standard node (DESIGN section 3):
a small ruleset (iptables-restore text) and the 2-6 packets a lesson would
send through it. The harness loads the rules into a real namespace, sends the
packets in order and compares the kernel with kplab's trace. Recent lists and
nth counters carry over from one packet of a case to the next; the lessons
named in `KEEP_CONNTRACK` also need the conntrack table kept between their
packets (do not flush it), since they show what a connection's later packets
do. Replies (the ESTABLISHED direction) are sent by the harness separately.

The `name` of a case says what it shows. Every ruleset here is loaded by the
kernel (iptables 1.8.9 nf_tables) and parsed by kplab (tests/netfilter/
test_generate.py checks the parsing).
"""
from __future__ import annotations

from kplab.kernelcheck.generate import Case, PacketSpec, kube_proxy_case

CLIENT, BACKEND1, BACKEND2 = "10.244.1.7", "10.244.1.3", "10.244.1.4"
POD_GW, NODE_IP, PEER_NODE = "10.244.1.1", "192.168.0.2", "192.168.0.3"
REMOTE1, EXTERNAL = "10.244.2.5", "198.51.100.10"


CONNMARK_KEPT = ("CONNMARK across packets: --save-mark copies the packet's mark into the connection, --restore-mark "
                 "brings it back for the connection's next packet (conntrack kept between packets); masks and a "
                 "left shift")

NAT_FIRST_PACKET = ("nat only for the first packet: the second packet of the same connection (same ports) is "
                    "translated by conntrack without walking nat PREROUTING; a new source port is a new connection")


def P(from_, proto, dst, dport=None, sport=None, src=None) -> PacketSpec:
    return PacketSpec(from_, proto, dst, dport, sport, src)


def rules(**tables) -> str:
    """iptables-restore text: each keyword a table, its value the lines
    (`:CHAIN - [0:0]` declarations and `-A` rules) in order."""
    out = []
    for name in ("raw", "mangle", "nat", "filter", "security"):
        if name in tables:
            out.append(f"*{name}")
            out += [line.strip() for line in tables[name].strip().splitlines() if line.strip()]
            out.append("COMMIT")
    return "\n".join(out) + "\n"


def lesson(name: str, text: str, *packets: PacketSpec) -> Case:
    assert 2 <= len(packets) <= 6, name
    return Case(name, text, tuple(packets), True)


LESSONS = [
    lesson(
        "forward: a Pod's packet to another local Pod or to a remote Pod goes PREROUTING, FORWARD, POSTROUTING "
        "(mangle counts each hook; filter FORWARD decides by port)",
        rules(mangle="""
            -A PREROUTING -i veth+
            -A FORWARD -i veth-client -o veth-backend1
            -A FORWARD -o eth0
            -A POSTROUTING -o veth+
            -A POSTROUTING -o eth0
        """, filter="""
            -A FORWARD -s 10.244.1.7/32 -d 10.244.1.3/32 -p tcp --dport 8080 -j ACCEPT
            -A FORWARD -p udp -j DROP
            -A FORWARD -d 10.244.2.0/24 -j ACCEPT
        """),
        P("client", "tcp", BACKEND1, 8080),
        P("client", "udp", BACKEND1, 53),
        P("backend2", "tcp", REMOTE1, 80),
        P("client", "icmp", BACKEND1),
    ),
    lesson(
        "local in: packets for the node's own addresses go PREROUTING then INPUT (mangle, filter, nat INPUT) "
        "and are delivered to the node",
        rules(mangle="""
            -A INPUT -i veth+
            -A INPUT -i eth0
        """, nat="""
            -A INPUT -p udp
            -A INPUT -d 192.168.0.2/32
        """, filter="""
            -A INPUT -i veth+ -p tcp --dport 22 -j ACCEPT
            -A INPUT -i eth0 -s 198.51.100.0/24 -j DROP
            -A INPUT -p udp --dport 53 -j ACCEPT
        """),
        P("client", "tcp", POD_GW, 22),
        P("external", "tcp", NODE_IP, 22),
        P("peer", "udp", NODE_IP, 53),
        P("client", "tcp", NODE_IP, 22),
    ),
    lesson(
        "local out: packets the node creates go OUTPUT then POSTROUTING; to a local Pod (source 10.244.1.1), "
        "to a remote Pod via eth0, and to its own address via lo (then PREROUTING and INPUT on lo)",
        rules(raw="""
            -A OUTPUT -o lo
        """, mangle="""
            -A OUTPUT -d 10.244.1.0/24
            -A POSTROUTING -o lo
            -A PREROUTING -i lo
        """, filter="""
            -A OUTPUT -s 10.244.1.1/32 -d 10.244.1.3/32 -p tcp --dport 8080 -j ACCEPT
            -A OUTPUT -o eth0 -p udp -j DROP
            -A OUTPUT -o lo -j ACCEPT
            -A INPUT -i lo -p tcp --dport 22 -j ACCEPT
        """),
        P("node", "tcp", BACKEND1, 8080),
        P("node", "tcp", REMOTE1, 80),
        P("node", "udp", EXTERNAL, 53),
        P("node", "tcp", NODE_IP, 22),
        P("node", "icmp", "127.0.0.1"),
    ),
    lesson(
        "local out to a Service: nat OUTPUT DNATs a node-created packet, the route is looked up again "
        "(to the Pod's veth) and POSTROUTING sees the new destination",
        rules(nat="""
            :SVC-OUT - [0:0]
            -A OUTPUT -d 10.96.0.40/32 -p tcp --dport 80 -j SVC-OUT
            -A SVC-OUT -p tcp -j DNAT --to-destination 10.244.1.4:8080
            -A POSTROUTING -o veth-backend2
            -A POSTROUTING -o eth0
        """, filter="""
            -A OUTPUT -d 10.244.1.4/32 -p tcp --dport 8080 -m conntrack --ctstate DNAT -j ACCEPT
            -A OUTPUT -d 10.96.0.40/32 -j DROP
        """),
        P("node", "tcp", "10.96.0.40", 80),
        P("node", "tcp", "10.96.0.40", 81),
        P("client", "tcp", "10.96.0.40", 80),
    ),
    lesson(
        "hairpin: a Pod reaching itself through a Service is DNATed back to itself and masqueraded "
        "to the node's veth address 10.244.1.1 (mark in nat PREROUTING, MASQUERADE in POSTROUTING)",
        rules(nat="""
            :HP-SVC - [0:0]
            :HP-MASQ - [0:0]
            -A PREROUTING -d 10.96.0.10/32 -p tcp --dport 80 -j HP-SVC
            -A HP-SVC -s 10.244.1.7/32 -j MARK --or-mark 0x4000
            -A HP-SVC -p tcp -j DNAT --to-destination 10.244.1.7:8080
            -A POSTROUTING -j HP-MASQ
            -A HP-MASQ -m mark ! --mark 0x4000/0x4000 -j RETURN
            -A HP-MASQ -j MASQUERADE
        """),
        P("client", "tcp", "10.96.0.10", 80),
        P("backend1", "tcp", "10.96.0.10", 80),
    ),
    lesson(
        "NodePort from outside: addrtype LOCAL in nat PREROUTING catches 192.168.0.2:30080, DNAT to a Pod, "
        "mark and masquerade so the reply comes back through the node",
        rules(nat="""
            :NP - [0:0]
            -A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 30080 -j NP
            -A NP -j MARK --set-xmark 0x4000/0x4000
            -A NP -p tcp -j DNAT --to-destination 10.244.1.3:8080
            -A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
        """, filter="""
            -A FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
            -A FORWARD -i eth0 -j DROP
        """),
        P("external", "tcp", NODE_IP, 30080),
        P("peer", "tcp", NODE_IP, 30080),
        P("external", "tcp", NODE_IP, 30081),
        P("external", "tcp", BACKEND1, 8080),
    ),
    lesson(
        "REJECT: an ICMP error by default (port-unreachable) or as chosen, a TCP RST with tcp-reset; "
        "in FORWARD, INPUT and OUTPUT",
        rules(filter="""
            -A FORWARD -p tcp --dport 23 -j REJECT --reject-with tcp-reset
            -A FORWARD -p udp --dport 69 -j REJECT
            -A FORWARD -p icmp -j REJECT --reject-with icmp-host-prohibited
            -A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset
            -A OUTPUT -o eth0 -p udp --dport 69 -j REJECT --reject-with icmp-admin-prohibited
        """),
        P("client", "tcp", BACKEND1, 23),
        P("client", "udp", BACKEND1, 69),
        P("client", "icmp", BACKEND2),
        P("external", "tcp", NODE_IP, 25),
        P("node", "udp", REMOTE1, 69),
        P("client", "tcp", BACKEND1, 80),
    ),
    lesson(
        "DROP policy: what no rule accepts falls to the chain's policy (FORWARD and INPUT DROP, "
        "an allow list and lo)",
        rules(filter="""
            :INPUT DROP [0:0]
            :FORWARD DROP [0:0]
            :OUTPUT ACCEPT [0:0]
            -A INPUT -i lo -j ACCEPT
            -A INPUT -p tcp --dport 22 -s 10.244.1.0/24 -j ACCEPT
            -A FORWARD -p tcp --dport 80 -j ACCEPT
            -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        """),
        P("client", "tcp", BACKEND1, 80),
        P("client", "tcp", BACKEND1, 81),
        P("external", "tcp", NODE_IP, 22),
        P("client", "tcp", POD_GW, 22),
        P("node", "tcp", NODE_IP, 22),
    ),
    lesson(
        "goto and return: RETURN resumes after the jumping rule; the end of (or RETURN in) a chain entered "
        "by -g returns to the caller's caller; a goto from a built-in chain ends at its policy",
        rules(filter="""
            :L-A - [0:0]
            :L-B - [0:0]
            :L-C - [0:0]
            -A FORWARD -s 10.244.1.0/24 -j L-A
            -A FORWARD -p udp -j DROP
            -A L-A -p tcp -g L-B
            -A L-A -p tcp -j DROP
            -A L-A -p udp -j L-B
            -A L-A -p udp -j ACCEPT
            -A L-B -p tcp --dport 8080 -j RETURN
            -A L-B -p tcp --dport 9090 -j DROP
            -A L-B -p udp --dport 53 -j RETURN
            -A OUTPUT -p udp -g L-C
            -A OUTPUT -p udp -j DROP
            -A L-C -p udp --dport 53 -j RETURN
            -A L-C -p udp --dport 54 -j DROP
        """),
        P("client", "tcp", BACKEND1, 8080),
        P("client", "tcp", BACKEND1, 9090),
        P("client", "udp", BACKEND1, 53),
        P("client", "tcp", BACKEND1, 80),
        P("node", "udp", REMOTE1, 53),
        P("node", "udp", REMOTE1, 54),
    ),
    lesson(
        "marks across tables: mangle sets the packet mark, filter and security test it later at the same "
        "packet's FORWARD and OUTPUT hooks",
        rules(mangle="""
            -A PREROUTING -s 10.244.1.7/32 -j MARK --set-xmark 0x10/0xff
            -A FORWARD -m mark --mark 0x10/0xff
            -A OUTPUT -p tcp -j MARK --set-mark 0x20
        """, filter="""
            -A FORWARD -m mark --mark 0x10/0xff -p tcp -j DROP
            -A FORWARD -m mark --mark 0x10/0xff -j MARK --or-mark 0x100
            -A OUTPUT -m mark --mark 0x20 -o eth0 -j ACCEPT
        """, security="""
            -A FORWARD -m mark --mark 0x110/0xfff
            -A OUTPUT -m mark --mark 0x20
        """),
        P("client", "tcp", BACKEND1, 80),
        P("backend2", "tcp", BACKEND1, 80),
        P("client", "udp", BACKEND1, 53),
        P("node", "tcp", REMOTE1, 80),
    ),
    lesson(
        "addrtype: --dst-type LOCAL is any of the node's own addresses (192.168.0.2, 10.244.1.1, 127/8), "
        "UNICAST the rest; --src-type LOCAL for packets the node sends",
        rules(nat="""
            -A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 8080 -j DNAT --to-destination 10.244.1.3
        """, filter="""
            -A INPUT -m addrtype --dst-type LOCAL
            -A INPUT -m addrtype --src-type LOCAL -j ACCEPT
            -A FORWARD -m addrtype --dst-type UNICAST ! --src-type LOCAL
            -A FORWARD -m addrtype --dst-type LOCAL -j DROP
            -A OUTPUT -m addrtype --src-type LOCAL --dst-type LOCAL
        """),
        P("client", "tcp", POD_GW, 80),
        P("client", "tcp", BACKEND1, 80),
        P("external", "tcp", NODE_IP, 8080),
        P("node", "tcp", "127.0.0.1", 80),
        P("client", "tcp", NODE_IP, 8080),
    ),
    lesson(
        "conntrack state: the first packet of a connection is NEW, the harness's reply is ESTABLISHED "
        "(--ctdir REPLY); a NEW connection the other way is dropped",
        rules(filter="""
            -A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir REPLY
            -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
            -A FORWARD -m conntrack --ctstate NEW -s 10.244.1.7/32 -j ACCEPT
            -A FORWARD -m conntrack --ctstate NEW -j DROP
        """),
        P("client", "tcp", BACKEND1, 80),
        P("backend1", "tcp", CLIENT, 80),
        P("client", "udp", BACKEND2, 53),
        P("remote1", "tcp", BACKEND1, 80),
    ),
    lesson(
        "conntrack DNAT state: a DNATed connection shows ctstate DNAT in filter, an untranslated one does not",
        rules(nat="""
            -A PREROUTING -d 10.96.0.50/32 -p tcp --dport 80 -j DNAT --to-destination 10.244.1.4:8080
        """, filter="""
            -A FORWARD -m conntrack --ctstate DNAT -j ACCEPT
            -A FORWARD -m conntrack ! --ctstate DNAT -p tcp --dport 8080 -j DROP
        """),
        P("client", "tcp", "10.96.0.50", 80),
        P("client", "tcp", BACKEND2, 8080),
        P("remote1", "tcp", "10.96.0.50", 80),
    ),
    lesson(
        "multiport: one rule for a list of ports and ranges (--dports, --sports, negated)",
        rules(filter="""
            -A FORWARD -p tcp -m multiport --dports 80,443,8000:8100 -j ACCEPT
            -A FORWARD -p udp -m multiport --sports 53,123 -j ACCEPT
            -A FORWARD -p tcp -m multiport ! --dports 22 -j REJECT --reject-with tcp-reset
            -A FORWARD -j DROP
        """),
        P("client", "tcp", BACKEND1, 80),
        P("client", "tcp", BACKEND1, 8050),
        P("client", "tcp", BACKEND1, 22),
        P("client", "tcp", BACKEND1, 9000),
        P("client", "udp", BACKEND1, 9999, sport=53),
        P("client", "udp", BACKEND1, 9999),
    ),
    lesson(
        "recent: the first packet puts its source in a list (--set), a second packet from the same source is caught "
        "by --rcheck; another source is not",
        rules(filter="""
            -A FORWARD -p tcp --dport 22 -m recent --rcheck --name SSH -j REJECT --reject-with tcp-reset
            -A FORWARD -p tcp --dport 22 -m recent --set --name SSH -j ACCEPT
        """),
        P("client", "tcp", BACKEND1, 22),
        P("client", "tcp", BACKEND1, 22, sport=40001),
        P("backend2", "tcp", BACKEND1, 22),
    ),
    lesson(
        "table order: raw, mangle, nat in PREROUTING (nat sees the mangle mark), filter before security "
        "in FORWARD (security sees filter's mark), mangle POSTROUTING last",
        rules(raw="""
            -A PREROUTING -s 10.244.1.7/32 -j MARK --set-xmark 0x1/0xf
        """, mangle="""
            -A PREROUTING -m mark --mark 0x1/0xf -j MARK --or-mark 0x2
            -A POSTROUTING -m mark --mark 0x7/0xf
        """, nat="""
            -A PREROUTING -d 10.96.0.20/32 -p tcp -m mark --mark 0x3/0xf -j DNAT --to-destination 10.244.1.3:8080
        """, filter="""
            -A FORWARD -m mark --mark 0x3/0xf -j MARK --or-mark 0x4
        """, security="""
            -A FORWARD -m mark --mark 0x7/0xf -p tcp --dport 8080
            -A FORWARD -m mark --mark 0x0/0xf -p tcp -j DROP
        """),
        P("client", "tcp", "10.96.0.20", 80),
        P("backend1", "tcp", "10.96.0.20", 80),
        P("client", "udp", BACKEND2, 53),
    ),
    lesson(
        "raw table: runs first in PREROUTING and OUTPUT, before conntrack; a DROP there ends the packet "
        "before any other table",
        rules(raw="""
            -A PREROUTING -s 198.51.100.10/32 -j DROP
            -A PREROUTING -i eth0
            -A OUTPUT -p udp --dport 9 -j DROP
        """, mangle="""
            -A PREROUTING -i eth0
        """, filter="""
            -A INPUT -i eth0 -p tcp --dport 80 -j ACCEPT
        """),
        P("external", "tcp", NODE_IP, 80),
        P("peer", "tcp", NODE_IP, 80),
        P("node", "udp", REMOTE1, 9),
        P("node", "udp", REMOTE1, 10),
    ),
    lesson(
        "security table: after filter in INPUT, FORWARD and OUTPUT; filter's ACCEPT does not skip it",
        rules(filter="""
            -A INPUT -p tcp --dport 8443 -j ACCEPT
            -A FORWARD -j ACCEPT
        """, security="""
            -A INPUT -p tcp --dport 8443 -j DROP
            -A FORWARD -d 10.244.1.4/32 -j DROP
            -A OUTPUT -o eth0
        """),
        P("external", "tcp", NODE_IP, 8443),
        P("client", "tcp", BACKEND2, 80),
        P("client", "tcp", BACKEND1, 80),
        P("node", "tcp", REMOTE1, 80),
    ),
    lesson(
        NAT_FIRST_PACKET,
        rules(nat="""
            -A PREROUTING -p udp
            -A PREROUTING -d 10.96.0.30/32 -p udp --dport 53 -j DNAT --to-destination 10.244.1.3:53
        """, filter="""
            -A FORWARD -p udp -m conntrack --ctstate DNAT
        """),
        P("client", "udp", "10.96.0.30", 53, sport=40000),
        P("client", "udp", "10.96.0.30", 53, sport=40000),
        P("client", "udp", "10.96.0.30", 53, sport=40002),
    ),
    lesson(
        "source NAT: MASQUERADE takes the outgoing interface's address (192.168.0.2 on eth0, kept for the "
        "node's own packets), SNAT sets one (10.244.1.1 towards a Pod)",
        rules(nat="""
            -A POSTROUTING -s 10.244.1.0/24 ! -d 10.244.0.0/16 -o eth0 -j MASQUERADE
            -A POSTROUTING -s 10.244.2.0/24 -o veth-backend1 -j SNAT --to-source 10.244.1.1
            -A POSTROUTING -s 192.168.0.2/32 -o eth0 -j MASQUERADE
        """),
        P("client", "tcp", EXTERNAL, 80),
        P("client", "tcp", REMOTE1, 80),
        P("remote1", "tcp", BACKEND1, 8080),
        P("node", "tcp", EXTERNAL, 80),
    ),
    lesson(
        "ICMP types: echo-request by name or number, negated types",
        rules(filter="""
            -A INPUT -p icmp --icmp-type echo-request -s 198.51.100.0/24 -j DROP
            -A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
            -A FORWARD -p icmp -m icmp ! --icmp-type echo-request -j DROP
            -A FORWARD -p icmp --icmp-type 8/0 -d 10.244.1.4/32 -j DROP
        """),
        P("external", "icmp", NODE_IP),
        P("peer", "icmp", NODE_IP),
        P("client", "icmp", POD_GW),
        P("client", "icmp", BACKEND2),
        P("client", "icmp", BACKEND1),
    ),
    lesson(
        "interfaces: -i/-o by name and with a + wildcard, negated; a user chain called from OUTPUT may test -i "
        "(a locally created packet has no input interface)",
        rules(filter="""
            :IFCHK - [0:0]
            -A FORWARD -i veth+ -o eth0 -j ACCEPT
            -A FORWARD -i eth0 -o veth-backend1 -j ACCEPT
            -A FORWARD ! -i veth-client -o veth+ -j DROP
            -A OUTPUT -j IFCHK
            -A IFCHK -i eth0 -j DROP
            -A IFCHK ! -i veth+ -o veth-b+
        """),
        P("client", "tcp", REMOTE1, 80),
        P("remote1", "tcp", BACKEND1, 80),
        P("remote1", "tcp", BACKEND2, 80),
        P("backend1", "tcp", BACKEND2, 80),
        P("client", "tcp", BACKEND2, 80),
        P("node", "tcp", BACKEND2, 80),
    ),
    lesson(
        "statistic: probability 1 always and 0 never matches; nth mode counts the packets that reach the rule "
        "(--every 2 --packet 0: one of each two UDP packets from the client)",
        rules(filter="""
            -A FORWARD -p tcp -m statistic --mode random --probability 0 -j DROP
            -A FORWARD -p tcp --dport 81 -m statistic --mode random --probability 1 -j DROP
            -A FORWARD -s 10.244.1.7/32 -p udp -m statistic --mode nth --every 2 --packet 0 -j DROP
        """),
        P("client", "tcp", BACKEND1, 80),
        P("client", "tcp", BACKEND1, 81),
        P("client", "udp", BACKEND1, 53, sport=40001),
        P("client", "udp", BACKEND1, 53, sport=40002),
        P("client", "udp", BACKEND1, 53, sport=40003),
    ),
    lesson(
        "LOG and no-target rules only count: the walk goes on to the next rule",
        rules(filter="""
            -A FORWARD -p tcp -j LOG --log-prefix "fwd: "
            -A FORWARD -p tcp --dport 80
            -A FORWARD -p tcp --dport 80 -j DROP
        """),
        P("client", "tcp", BACKEND1, 80),
        P("client", "tcp", BACKEND1, 443),
    ),
    lesson(
        "state: -m state is conntrack's state test under its old name (saved as -m state); replies are "
        "ESTABLISHED, first packets NEW",
        rules(filter="""
            -A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
            -A FORWARD -m state --state NEW -s 10.244.1.7/32 -j ACCEPT
            -A FORWARD -m state ! --state NEW -j DROP
            -A FORWARD -m state --state INVALID -j DROP
            -A FORWARD -p tcp -j DROP
        """),
        P("client", "tcp", BACKEND1, 80),
        P("backend2", "tcp", REMOTE1, 80),
        P("client", "udp", BACKEND2, 53),
        P("external", "tcp", BACKEND1, 80),
    ),
    lesson(
        "limit: a token bucket per rule, full at load: the first --limit-burst new connections pass at once, "
        "the next one waits for the rate (1/min) and falls through to DROP; replies are ESTABLISHED and take no token",
        rules(filter="""
            -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
            -A FORWARD -p udp -m state --state NEW -m limit --limit 1/min --limit-burst 2 -j ACCEPT
            -A FORWARD -p udp -j DROP
            -A FORWARD -p tcp -m limit --limit 1/hour --limit-burst 1 -j ACCEPT
            -A FORWARD -p tcp -j DROP
        """),
        P("client", "udp", BACKEND1, 53, sport=40001),
        P("client", "udp", BACKEND1, 53, sport=40002),
        P("client", "udp", BACKEND1, 53, sport=40003),
        P("client", "tcp", BACKEND1, 80),
        P("client", "tcp", BACKEND1, 81),
    ),
    lesson(
        "connmark: CONNMARK marks a connection that came in on eth0 (as AWS's CNI does); the Pod's reply gets the "
        "mark back with --restore-mark (only the --nfmask bits of its own mark change); -m connmark tests the connection's mark, and never matches in raw "
        "(no conntrack entry yet), even negated",
        rules(raw="""
            -A PREROUTING -m connmark ! --mark 0x80/0x80
            -A PREROUTING -m connmark --mark 0x0
        """, mangle="""
            -A PREROUTING -i eth0 -m state --state NEW -j CONNMARK --set-xmark 0x80/0x80
            -A PREROUTING -i veth+ -j MARK --set-mark 0x1
            -A PREROUTING -i veth+ -j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80
            -A PREROUTING -m connmark --mark 0x80/0x80
        """, filter="""
            -A FORWARD -m mark --mark 0x81/0xff -j ACCEPT
            -A FORWARD -m connmark --mark 0x80/0x80 -j ACCEPT
            -A FORWARD -m connmark ! --mark 0x80/0x80 -p tcp --dport 81 -j DROP
        """),
        P("external", "tcp", BACKEND1, 80),
        P("client", "tcp", REMOTE1, 81),
        P("client", "tcp", REMOTE1, 80),
        P("peer", "udp", BACKEND2, 53),
    ),
    lesson(
        CONNMARK_KEPT,
        rules(mangle="""
            -A PREROUTING -j CONNMARK --restore-mark
            -A PREROUTING -m mark --mark 0x0 -p udp --dport 53 -j MARK --set-mark 0x7
            -A PREROUTING -m mark --mark 0x0 -p udp --dport 54 -j MARK --set-mark 0x9
            -A PREROUTING -j CONNMARK --save-mark
            -A POSTROUTING -p udp --dport 53 -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff00 --left-shift-mark 8
            -A POSTROUTING -m connmark --mark 0x707/0xffff
        """, filter="""
            -A FORWARD -m mark --mark 0x7/0xff -m connmark --mark 0x7
            -A FORWARD -m connmark --mark 0x9/0xff -j DROP
        """),
        P("client", "udp", BACKEND1, 53, sport=40000),
        P("client", "udp", BACKEND1, 53, sport=40000),
        P("client", "udp", BACKEND1, 54, sport=40001),
        P("client", "udp", BACKEND1, 54, sport=40001),
    ),
    lesson(
        "NFLOG: hands the packet to a userspace logger and lets the walk go on, like LOG",
        rules(filter="""
            -A FORWARD -p tcp -j NFLOG --nflog-group 5 --nflog-prefix "fwd: "
            -A FORWARD -p tcp --dport 80 -j NFLOG
            -A FORWARD -p tcp --dport 80 -j DROP
            -A INPUT -j NFLOG --nflog-group 2 --nflog-threshold 10 --nflog-size 128
        """),
        P("client", "tcp", BACKEND1, 80),
        P("client", "tcp", BACKEND1, 443),
        P("external", "tcp", NODE_IP, 22),
    ),
    lesson(
        "physdev: the routed node bridges nothing, so every physdev test misses unless negated: "
        "! --physdev-is-bridged matches every routed packet, --physdev-in veth+ none",
        rules(mangle="""
            -A POSTROUTING -m physdev --physdev-out eth0 -j DROP
            -A POSTROUTING -m physdev ! --physdev-is-out
        """, filter="""
            -A FORWARD -m physdev --physdev-is-bridged -j DROP
            -A FORWARD -m physdev --physdev-in veth+ -j DROP
            -A FORWARD -m physdev ! --physdev-is-bridged
            -A FORWARD -m physdev ! --physdev-in eth0 ! --physdev-is-out
            -A FORWARD -m physdev ! --physdev-is-in --physdev-is-bridged -j DROP
            -A INPUT -m physdev ! --physdev-is-in
            -A OUTPUT -m physdev ! --physdev-is-bridged
            -A OUTPUT -m physdev --physdev-out eth0 --physdev-is-bridged -j DROP
        """),
        P("client", "tcp", BACKEND1, 80),
        P("client", "tcp", REMOTE1, 80),
        P("external", "tcp", NODE_IP, 22),
        P("node", "tcp", REMOTE1, 80),
    ),
    lesson(
        "owner: only packets the node creates have a socket (kplab: root's, uid 0 gid 0); a forwarded packet "
        "matches only negated owner tests",
        rules(mangle="""
            -A OUTPUT -m owner --uid-owner 0 -j MARK --set-mark 0x1
            -A POSTROUTING -m owner --socket-exists
            -A POSTROUTING -m owner ! --socket-exists
            -A POSTROUTING -m owner ! --uid-owner 1000
        """, nat="""
            -A POSTROUTING -o eth0 -m owner --uid-owner 0 -j MASQUERADE
        """, filter="""
            -A OUTPUT -p tcp --dport 81 -m owner --uid-owner 1000-2000 -j DROP
            -A OUTPUT -p tcp --dport 82 -m owner --uid-owner 0 --gid-owner 0 -j DROP
            -A OUTPUT -p tcp --dport 83 -m owner ! --gid-owner 0 -j DROP
            -A OUTPUT -m mark --mark 0x1 -m owner --gid-owner 5 --suppl-groups -j DROP
        """),
        P("node", "tcp", REMOTE1, 80),
        P("node", "tcp", REMOTE1, 81),
        P("node", "tcp", REMOTE1, 82),
        P("node", "tcp", REMOTE1, 83),
        P("client", "tcp", REMOTE1, 80),
    ),
    kube_proxy_case(2, "clusterip"),
    kube_proxy_case(1, "nodeport"),
    kube_proxy_case(0, "noendpoints"),
    kube_proxy_case(1, "hairpin"),
    kube_proxy_case(2, "hairpin"),
]

#: Lessons whose packets must be sent without flushing conntrack in between.
KEEP_CONNTRACK = frozenset({NAT_FIRST_PACKET, CONNMARK_KEPT})
