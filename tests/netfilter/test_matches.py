"""Every match module, checked through a real walk on the standard node.

Each row puts one rule `-j DROP` in a chain whose policy is ACCEPT and sends
one packet: a match drops it, a miss lets it through and the trace says why
(the Step's `reason` is a sentence). Expectations follow the kernel's xt_*
modules (and, where marked, what the kernel on this machine was seen to do).
"""
from __future__ import annotations

import pytest

import kplab
from tests.netfilter.conftest import (BACKEND1, BACKEND2, NODE_IP, POD_GW, REMOTE1, SERVICE_IP, filter_rules,
                                      is_sentence, make_node, rule_steps, table)

# --------------------------------------------------------------------------
# helpers


def send(node, from_="client", dst=REMOTE1, proto="tcp", dport=80, sport=None, src=None, **over):
    """Send the first packet of a connection, with header fields overridden."""
    pkt = node.packet(from_, dst, proto, dport, sport, src)
    if "flags" in over:
        over["tcp_flags"] = frozenset(over.pop("flags"))
    if over:
        pkt = pkt.replace(**over)
    return node.send(pkt, from_)


def one_rule_node(tbl, chain, rule, target="-j DROP", extra=""):
    return make_node(table(tbl, f"-A {chain} {rule} {target}".rstrip()) + extra)


def assert_row(trace, tbl, chain, matched):
    steps = rule_steps(trace, tbl, chain)
    assert steps, f"the walk never reached {tbl} {chain}: {trace.journey()}"
    first = steps[0]
    assert first.index == 1
    if matched:
        assert first.matched is True, first.reason
        assert trace.verdict == "DROP"
        assert first.verdict == "DROP"
    else:
        assert first.matched is False
        assert is_sentence(first.reason), f"reason {first.reason!r} is not a sentence"
        assert trace.verdict == "ACCEPT"


# --------------------------------------------------------------------------
# Stateless matches: (id, table, chain, rule, packet, matched)

F, FWD = "filter", "FORWARD"
ROWS = [
    # -s / -d, with CIDRs, host bits and "!"
    ("src-host-match", F, FWD, "-s 10.244.1.7", dict(), True),
    ("src-host-miss", F, FWD, "-s 10.244.1.7", dict(from_="backend1"), False),
    ("src-cidr-match", F, FWD, "-s 10.244.1.0/24", dict(), True),
    ("src-cidr-miss", F, FWD, "-s 10.244.2.0/24", dict(), False),
    ("src-host-bits-normalised", F, FWD, "-s 10.244.1.99/24", dict(), True),
    ("src-dotted-mask", F, FWD, "-s 10.244.0.7/255.255.0.255", dict(), True),
    ("src-dotted-mask-miss", F, FWD, "-s 10.244.0.7/255.255.0.255", dict(from_="backend1"), False),
    ("src-not-match", F, FWD, "! -s 10.244.1.7/32", dict(from_="backend1"), True),
    ("src-not-miss", F, FWD, "! -s 10.244.1.7/32", dict(), False),
    ("src-zero-prefix-any", F, FWD, "-s 0.0.0.0/0", dict(from_="external", dst=BACKEND1), True),
    ("dst-host-match", F, FWD, "-d 10.244.2.5", dict(), True),
    ("dst-host-miss", F, FWD, "-d 10.244.2.5", dict(dst=BACKEND1), False),
    ("dst-not-match", F, FWD, "! -d 10.244.2.0/24", dict(dst=BACKEND1), True),
    ("dst-not-miss", F, FWD, "! -d 10.244.2.0/24", dict(), False),
    # -p, by name and number, with "!"
    ("proto-udp-match", F, FWD, "-p udp", dict(proto="udp", dport=53), True),
    ("proto-udp-miss", F, FWD, "-p udp", dict(), False),
    ("proto-number-match", F, FWD, "-p 6", dict(), True),
    ("proto-not-tcp-match", F, FWD, "! -p tcp", dict(proto="icmp"), True),
    ("proto-not-tcp-miss", F, FWD, "! -p tcp", dict(), False),
    ("proto-icmp-match", F, FWD, "-p icmp", dict(proto="icmp"), True),
    # -i / -o with "+" wildcards and "!"
    ("in-exact-match", F, FWD, "-i veth-client", dict(), True),
    ("in-exact-miss", F, FWD, "-i veth-client", dict(from_="backend1"), False),
    ("in-wildcard-match", F, FWD, "-i veth+", dict(), True),
    ("in-wildcard-miss", F, FWD, "-i eth+", dict(), False),
    ("in-wildcard-eth-match", F, FWD, "-i eth+", dict(from_="external", dst=BACKEND1), True),
    ("in-not-wildcard-miss", F, FWD, "! -i veth+", dict(), False),
    ("in-not-wildcard-match", F, FWD, "! -i veth+", dict(from_="external", dst=BACKEND1), True),
    ("in-prefix-is-not-exact", F, FWD, "-i veth", dict(), False),
    ("out-exact-match", F, FWD, "-o eth0", dict(), True),
    ("out-exact-miss", F, FWD, "-o eth0", dict(dst=BACKEND1), False),
    ("out-pod-veth-match", F, FWD, "-o veth-backend1", dict(dst=BACKEND1), True),
    ("out-wildcard-match", F, FWD, "-o veth-b+", dict(dst=BACKEND2), True),
    ("out-wildcard-miss", F, FWD, "-o veth+", dict(), False),
    ("out-not-match", F, FWD, "! -o eth0", dict(dst=BACKEND1), True),
    ("out-not-miss", F, FWD, "! -o eth0", dict(), False),
    # tcp: ports, ranges, flags
    ("tcp-dport-match", F, FWD, "-p tcp --dport 80", dict(dport=80), True),
    ("tcp-dport-miss", F, FWD, "-p tcp --dport 80", dict(dport=81), False),
    ("tcp-dport-on-udp-miss", F, FWD, "-p tcp --dport 80", dict(proto="udp", dport=80), False),
    ("tcp-dport-range-match", F, FWD, "-p tcp -m tcp --dport 80:90", dict(dport=90), True),
    ("tcp-dport-range-low-match", F, FWD, "-p tcp -m tcp --dport 80:90", dict(dport=80), True),
    ("tcp-dport-range-miss", F, FWD, "-p tcp -m tcp --dport 80:90", dict(dport=91), False),
    ("tcp-dport-open-low-match", F, FWD, "-p tcp --dport :1023", dict(dport=22), True),
    ("tcp-dport-open-high-miss", F, FWD, "-p tcp --dport 1024:", dict(dport=1023), False),
    ("tcp-dport-service-name", F, FWD, "-p tcp --dport https", dict(dport=443), True),
    ("tcp-dport-not-match", F, FWD, "-p tcp ! --dport 80", dict(dport=443), True),
    ("tcp-dport-not-miss", F, FWD, "-p tcp ! --dport 80", dict(dport=80), False),
    ("tcp-sport-match", F, FWD, "-p tcp --sport 40000", dict(), True),
    ("tcp-sport-miss", F, FWD, "-p tcp --sport 40000", dict(sport=40001), False),
    ("tcp-sport-long-name", F, FWD, "-p tcp --source-port 40000:40010", dict(sport=40010), True),
    ("tcp-flags-syn-match", F, FWD, "-p tcp --tcp-flags SYN,ACK SYN", dict(), True),
    ("tcp-flags-synack-miss", F, FWD, "-p tcp --tcp-flags SYN,ACK SYN", dict(flags=("SYN", "ACK")), False),
    ("tcp-flags-all-none", F, FWD, "-p tcp --tcp-flags ALL NONE", dict(flags=()), True),
    ("tcp-flags-all-none-miss", F, FWD, "-p tcp --tcp-flags ALL NONE", dict(), False),
    ("tcp-flags-not-match", F, FWD, "-p tcp ! --tcp-flags SYN,RST SYN", dict(flags=("RST",)), True),
    ("tcp-syn-match", F, FWD, "-p tcp --syn", dict(), True),
    ("tcp-syn-ack-miss", F, FWD, "-p tcp --syn", dict(flags=("ACK",)), False),
    ("tcp-syn-with-fin-miss", F, FWD, "-p tcp --syn", dict(flags=("SYN", "FIN")), False),
    ("tcp-syn-psh-match", F, FWD, "-p tcp --syn", dict(flags=("SYN", "PSH")), True),
    ("tcp-not-syn-match", F, FWD, "-p tcp ! --syn", dict(flags=("ACK",)), True),
    # udp
    ("udp-dport-match", F, FWD, "-p udp --dport 53", dict(proto="udp", dport=53), True),
    ("udp-dport-miss", F, FWD, "-p udp --dport 53", dict(proto="udp", dport=54), False),
    ("udp-sport-range-match", F, FWD, "-p udp -m udp --sport 30000:50000", dict(proto="udp", dport=53), True),
    ("udp-on-tcp-miss", F, FWD, "-p udp --dport 53", dict(dport=53), False),
    # icmp types and codes
    ("icmp-echo-request-match", F, FWD, "-p icmp --icmp-type echo-request", dict(proto="icmp"), True),
    ("icmp-echo-request-miss", F, FWD, "-p icmp --icmp-type echo-request", dict(proto="icmp", icmp_type=0), False),
    ("icmp-numeric-type-match", F, FWD, "-p icmp -m icmp --icmp-type 8", dict(proto="icmp"), True),
    ("icmp-type-code-match", F, FWD, "-p icmp --icmp-type 3/3",
     dict(proto="icmp", icmp_type=3, icmp_code=3), True),
    ("icmp-type-code-miss", F, FWD, "-p icmp --icmp-type 3/3",
     dict(proto="icmp", icmp_type=3, icmp_code=1), False),
    ("icmp-named-code-match", F, FWD, "-p icmp --icmp-type port-unreachable",
     dict(proto="icmp", icmp_type=3, icmp_code=3), True),
    ("icmp-type-any-code-match", F, FWD, "-p icmp --icmp-type destination-unreachable",
     dict(proto="icmp", icmp_type=3, icmp_code=13), True),
    ("icmp-any-match", F, FWD, "-p icmp --icmp-type any", dict(proto="icmp", icmp_type=11), True),
    ("icmp-not-match", F, FWD, "-p icmp ! --icmp-type echo-request", dict(proto="icmp", icmp_type=0), True),
    ("icmp-not-miss", F, FWD, "-p icmp ! --icmp-type echo-request", dict(proto="icmp"), False),
    # multiport
    ("multiport-dports-match", F, FWD, "-p tcp -m multiport --dports 80,443,8000:8080", dict(dport=443), True),
    ("multiport-dports-range-match", F, FWD, "-p tcp -m multiport --dports 80,443,8000:8080",
     dict(dport=8050), True),
    ("multiport-dports-miss", F, FWD, "-p tcp -m multiport --dports 80,443,8000:8080", dict(dport=81), False),
    ("multiport-sports-match", F, FWD, "-p udp -m multiport --sports 53,40000",
     dict(proto="udp", dport=9), True),
    ("multiport-sports-miss", F, FWD, "-p udp -m multiport --sports 53,123",
     dict(proto="udp", dport=53), False),
    ("multiport-ports-by-dport", F, FWD, "-p udp -m multiport --ports 53", dict(proto="udp", dport=53), True),
    ("multiport-ports-by-sport", F, FWD, "-p udp -m multiport --ports 53",
     dict(proto="udp", dport=9, sport=53), True),
    ("multiport-ports-miss", F, FWD, "-p udp -m multiport --ports 53", dict(proto="udp", dport=54), False),
    ("multiport-not-match", F, FWD, "-p tcp -m multiport ! --dports 80,443", dict(dport=22), True),
    ("multiport-not-miss", F, FWD, "-p tcp -m multiport ! --dports 80,443", dict(dport=443), False),
    # comment: never decides
    ("comment-match", F, FWD, '-m comment --comment "any packet at all"', dict(), True),
    ("comment-with-proto-miss", F, FWD, '-p udp -m comment --comment "only udp"', dict(), False),
    # mark with and without mask, with "!"
    ("mark-exact-match", F, FWD, "-m mark --mark 0x4000", dict(mark=0x4000), True),
    ("mark-exact-miss", F, FWD, "-m mark --mark 0x4000", dict(mark=0x4001), False),
    ("mark-mask-match", F, FWD, "-m mark --mark 0x4000/0x4000", dict(mark=0x4001), True),
    ("mark-mask-miss", F, FWD, "-m mark --mark 0x4000/0x4000", dict(mark=0x1), False),
    ("mark-decimal-match", F, FWD, "-m mark --mark 16", dict(mark=0x10), True),
    ("mark-not-match", F, FWD, "-m mark ! --mark 0x4000/0x4000", dict(mark=0), True),
    ("mark-not-miss", F, FWD, "-m mark ! --mark 0x4000/0x4000", dict(mark=0xC000), False),
    ("mark-zero-mask-always", F, FWD, "-m mark --mark 0x0/0x0", dict(mark=0x1234), True),
    # addrtype: UNICAST / LOCAL / BROADCAST / MULTICAST
    ("addrtype-dst-unicast-match", F, FWD, "-m addrtype --dst-type UNICAST", dict(), True),
    ("addrtype-src-local-miss", F, FWD, "-m addrtype --src-type LOCAL", dict(), False),
    ("addrtype-dst-local-match", F, "INPUT", "-m addrtype --dst-type LOCAL", dict(dst=NODE_IP), True),
    ("addrtype-dst-local-gw-match", F, "INPUT", "-m addrtype --dst-type LOCAL", dict(dst=POD_GW), True),
    ("addrtype-dst-loopback-local", "mangle", "PREROUTING", "-m addrtype --dst-type LOCAL",
     dict(dst="127.0.0.1"), True),
    ("addrtype-dst-not-local-miss", F, "INPUT", "-m addrtype ! --dst-type LOCAL", dict(dst=NODE_IP), False),
    ("addrtype-out-src-local-match", F, "OUTPUT", "-m addrtype --src-type LOCAL",
     dict(from_="node", dst=REMOTE1), True),
    ("addrtype-list-match", F, FWD, "-m addrtype --dst-type LOCAL,UNICAST", dict(), True),
    ("addrtype-broadcast-subnet-match", "mangle", "PREROUTING", "-m addrtype --dst-type BROADCAST",
     dict(proto="udp", dport=9, dst="192.168.0.255"), True),
    ("addrtype-broadcast-limited-match", "mangle", "PREROUTING", "-m addrtype --dst-type BROADCAST",
     dict(proto="udp", dport=9, dst="255.255.255.255"), True),
    ("addrtype-broadcast-miss", "mangle", "PREROUTING", "-m addrtype --dst-type BROADCAST",
     dict(proto="udp", dport=9), False),
    ("addrtype-multicast-match", "mangle", "PREROUTING", "-m addrtype --dst-type MULTICAST",
     dict(proto="udp", dport=5353, dst="224.0.0.251"), True),
    ("addrtype-multicast-miss", "mangle", "PREROUTING", "-m addrtype --dst-type MULTICAST",
     dict(proto="udp", dport=5353), False),
    # --limit-iface-in: only addresses on the input interface are LOCAL
    # (kernel seen: 192.168.0.2 arriving on a Pod veth is UNICAST there).
    ("addrtype-limit-in-eth0-match", "mangle", "PREROUTING", "-m addrtype --dst-type LOCAL --limit-iface-in",
     dict(from_="external", dst=NODE_IP), True),
    ("addrtype-limit-in-veth-miss", "mangle", "PREROUTING", "-m addrtype --dst-type LOCAL --limit-iface-in",
     dict(dst=NODE_IP), False),
    ("addrtype-limit-in-veth-unicast", "mangle", "PREROUTING",
     "-m addrtype --dst-type UNICAST --limit-iface-in", dict(dst=NODE_IP), True),
    # --limit-iface-out: the source must sit on the output interface
    ("addrtype-limit-out-match", "mangle", "POSTROUTING", "-m addrtype --src-type LOCAL --limit-iface-out",
     dict(from_="node", dst=REMOTE1), True),
    ("addrtype-limit-out-miss", "mangle", "POSTROUTING", "-m addrtype --src-type LOCAL --limit-iface-out",
     dict(from_="node", dst=REMOTE1, src=POD_GW), False),
]


@pytest.mark.parametrize("tbl,chain,rule,pkt,matched", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_stateless_match(tbl, chain, rule, pkt, matched):
    node = one_rule_node(tbl, chain, rule)
    trace = send(node, **pkt)
    assert_row(trace, tbl, chain, matched)


def test_local_packet_has_no_input_interface():
    """A locally created packet has no input interface: `-i X` misses, `! -i X` hits
    (in a user chain called from OUTPUT, where iptables allows -i)."""
    for rule, matched in (("-i eth0", False), ("! -i eth0", True), ("-i +", True)):
        node = make_node(table("filter", "-A OUTPUT -j CHK", f"-A CHK {rule} -j DROP", chains=["CHK"]))
        trace = send(node, from_="node", dst=REMOTE1)
        assert trace.verdict == ("DROP" if matched else "ACCEPT"), rule
        if not matched:
            assert is_sentence(rule_steps(trace, "filter", "CHK")[0].reason)


def test_matches_are_anded_and_first_failure_explained():
    node = one_rule_node(F, FWD, "-s 10.244.1.7 -p tcp -m tcp --dport 443")
    trace = send(node, dport=80)
    step = rule_steps(trace, F, FWD)[0]
    assert not step.matched and "80" in step.reason and "443" in step.reason
    assert send(node, dport=443).verdict == "DROP"


# --------------------------------------------------------------------------
# statistic


@pytest.mark.parametrize("rule,expect", [
    ("-m statistic --mode random --probability 0", "never"),
    ("-m statistic --mode random --probability 0.0", "never"),
    ("-m statistic --mode random --probability 1", "always"),
    ("-m statistic --mode random --probability 1.0", "always"),
    ("-m statistic --mode random ! --probability 0", "always"),
    ("-m statistic --mode random ! --probability 1", "never"),
], ids=["p0", "p0.0", "p1", "p1.0", "not-p0", "not-p1"])
def test_statistic_random_extremes(rule, expect):
    for seed in range(3):
        node = make_node(filter_rules(FWD, f"-p udp {rule} -j DROP"), seed=seed)
        verdicts = {send(node, proto="udp", dport=53, sport=1000 + i).verdict for i in range(40)}
        assert verdicts == ({"DROP"} if expect == "always" else {"ACCEPT"})
    trace = send(node, proto="udp", dport=53)
    if expect == "never":
        assert is_sentence(rule_steps(trace, F, FWD)[0].reason)


def test_statistic_random_half_is_seeded_and_reproducible():
    def run(seed):
        node = make_node(filter_rules(FWD, "-p udp -m statistic --mode random --probability 0.5 -j DROP"),
                         seed=seed)
        return [send(node, proto="udp", dport=53, sport=1000 + i).verdict for i in range(200)]
    a, b = run(7), run(7)
    assert a == b
    drops = a.count("DROP")
    assert 60 < drops < 140            # about half, with a lot of room
    assert run(8) != a


@pytest.mark.parametrize("every,packet,dropped", [
    # Seen on the kernel (6.18, iptables 1.8.9): "--packet p" is the p-th packet,
    # counting from 0, of every n: --every 3 --packet 0 drops packets 0, 3, 6.
    (3, 0, [0, 3, 6]),
    (3, 1, [1, 4, 7]),
    (3, 2, [2, 5, 8]),
    (2, 0, [0, 2, 4, 6, 8]),
    (1, 0, list(range(9))),
])
def test_statistic_nth_sequence(every, packet, dropped):
    node = make_node(filter_rules(FWD, f"-p udp -m statistic --mode nth --every {every} --packet {packet} -j DROP"))
    traces = [send(node, proto="udp", dport=53, sport=2000 + i) for i in range(9)]
    got = [i for i, t in enumerate(traces) if t.verdict == "DROP"]
    assert got == dropped
    for t in traces:
        if t.verdict == "ACCEPT":
            assert is_sentence(rule_steps(t, F, FWD)[0].reason)


@pytest.mark.parametrize("every,packet", [(1, 0), (3, 0), (3, 2)])
def test_statistic_nth_saved_form_keeps_packet(every, packet):
    """iptables-save (1.8.9, kernel seen) always prints --packet, 0 included,
    so that its output loads again."""
    text = filter_rules("INPUT", f"-m statistic --mode nth --every {every} --packet {packet}")
    saved = kplab.save_rules(kplab.parse_rules(text))
    assert f"-A INPUT -m statistic --mode nth --every {every} --packet {packet}\n" in saved
    assert kplab.save_rules(kplab.parse_rules(saved)) == saved


def test_statistic_nth_counts_only_packets_that_reach_it():
    """The counter moves only when the match is evaluated (after -p udp held)."""
    node = make_node(filter_rules(FWD, "-p udp -m statistic --mode nth --every 2 --packet 0 -j DROP"))
    out = []
    for i in range(4):
        send(node, proto="tcp", dport=80, sport=3000 + i)          # never reaches the statistic match
        out.append(send(node, proto="udp", dport=53, sport=4000 + i).verdict)
    assert out == ["DROP", "ACCEPT", "DROP", "ACCEPT"]


def test_statistic_nth_inverted():
    node = make_node(filter_rules(FWD, "-p udp -m statistic --mode nth ! --every 3 --packet 0 -j DROP"))
    got = [send(node, proto="udp", dport=53, sport=5000 + i).verdict for i in range(6)]
    assert got == ["ACCEPT", "DROP", "DROP", "ACCEPT", "DROP", "DROP"]


# --------------------------------------------------------------------------
# conntrack

DNAT_NAT = table("nat", f"-A PREROUTING -d {SERVICE_IP}/32 -p tcp -m tcp --dport 80 "
                        f"-j DNAT --to-destination {BACKEND1}:8080")
MASQ_NAT = table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE")


def ct_node(rule, nat=""):
    return make_node(filter_rules(FWD, f"{rule} -j DROP") + nat)


def test_ctstate_new_match_and_established_miss():
    node = ct_node("-m conntrack --ctstate NEW")
    first = send(node, proto="udp", dport=53)
    assert_row(first, F, FWD, True)
    node = ct_node("-m conntrack --ctstate ESTABLISHED")
    first = send(node, proto="udp", dport=53)
    assert_row(first, F, FWD, False)
    assert "NEW" in rule_steps(first, F, FWD)[0].reason
    reply = node.reply(first)
    assert reply.verdict == "DROP"
    assert rule_steps(reply, F, FWD)[0].matched


def test_ctstate_dropped_new_packet_leaves_no_entry():
    """An entry is confirmed only when its packet survives: a NEW packet
    dropped in FORWARD leaves nothing, so the next one is NEW again."""
    node = ct_node("-m conntrack --ctstate NEW")
    assert send(node, proto="udp", dport=53).verdict == "DROP"
    assert node.conntrack_text() == ""
    assert send(node, proto="udp", dport=53).verdict == "DROP"


def test_ctstate_new_then_established_second_packet():
    node = make_node(filter_rules(FWD, f"-d {REMOTE1} -m conntrack --ctstate ESTABLISHED -j DROP"))
    first = send(node, proto="udp", dport=53)
    assert first.verdict == "ACCEPT"
    # no reply yet: the second original packet is still NEW
    assert send(node, proto="udp", dport=53).verdict == "ACCEPT"
    assert node.reply(first).verdict == "ACCEPT"
    assert send(node, proto="udp", dport=53).verdict == "DROP"


@pytest.mark.parametrize("flags", [("FIN",), ("FIN", "ACK"), ("SYN", "ACK"), ("RST",), ()],
                         ids=["fin", "fin-ack", "syn-ack", "rst", "no-flags"])
def test_ctstate_invalid_tcp_without_entry(flags):
    """nf_conntrack_proto_tcp: with no entry, only SYN (or, loosely, an ACK)
    may start one; FIN, SYN/ACK, RST and no flags at all are INVALID."""
    node = ct_node("-m conntrack --ctstate INVALID")
    trace = send(node, flags=flags)
    assert_row(trace, F, FWD, True)
    assert len(node.state.conntrack.live(0)) == 0


@pytest.mark.parametrize("flags", [("SYN",), ("ACK",), ("PSH", "ACK")], ids=["syn", "ack-loose", "psh-ack-loose"])
def test_ctstate_invalid_miss_for_packets_that_start_a_connection(flags):
    node = ct_node("-m conntrack --ctstate INVALID")
    trace = send(node, flags=flags)
    assert_row(trace, F, FWD, False)
    assert "INVALID" in rule_steps(trace, F, FWD)[0].reason


def test_ctstate_new_for_loose_ack_pickup():
    node = ct_node("-m conntrack --ctstate NEW")
    assert send(node, flags=("ACK",)).verdict == "DROP"


def test_ctstate_dnat():
    node = ct_node("-m conntrack --ctstate DNAT", DNAT_NAT)
    assert_row(send(node, dst=SERVICE_IP, dport=80), F, FWD, True)
    assert_row(send(node, dst=BACKEND1, dport=8080, sport=40001), F, FWD, False)


def test_ctstate_new_and_dnat_together():
    node = ct_node("-m conntrack --ctstate NEW,DNAT", DNAT_NAT)
    assert send(node, dst=SERVICE_IP, dport=80).verdict == "DROP"
    node = ct_node("-m conntrack ! --ctstate DNAT", DNAT_NAT)
    assert send(node, dst=SERVICE_IP, dport=80).verdict == "ACCEPT"
    assert send(node, dst=BACKEND1, dport=8080, sport=40001).verdict == "DROP"


def test_ctstate_snat_visible_from_the_second_packet():
    """SNAT happens in POSTROUTING, after FORWARD: the first packet is not yet
    SNAT in FORWARD, the second (and the reply) are."""
    node = ct_node("-m conntrack --ctstate SNAT", MASQ_NAT)
    first = send(node, proto="udp", dport=53)
    assert_row(first, F, FWD, False)
    assert first.final.src == NODE_IP
    second = send(node, proto="udp", dport=53)
    assert_row(second, F, FWD, True)


def test_ctstate_snat_not_set_when_masquerade_keeps_the_address():
    """IPS_SRC_NAT is set only when the tuple really changed: the node's own
    packet to its Pod already has the veth's address 10.244.1.1."""
    nat = table("nat", "-A POSTROUTING -o veth+ -j MASQUERADE")
    node = make_node(table("filter", "-A OUTPUT -m conntrack --ctstate SNAT -j DROP") + nat)
    t1 = send(node, from_="node", dst=BACKEND1, proto="udp", dport=53)
    assert t1.verdict == "ACCEPT" and t1.final.src == POD_GW and t1.snat_to is None
    assert t1.masquerade is True
    t2 = send(node, from_="node", dst=BACKEND1, proto="udp", dport=53)
    assert t2.verdict == "ACCEPT"


@pytest.mark.parametrize("direction,original_dropped,reply_dropped", [
    ("ORIGINAL", True, False),
    ("REPLY", False, True),
])
def test_ctdir(direction, original_dropped, reply_dropped):
    """Seen on the kernel: --ctdir ORIGINAL matches the originator's packets,
    REPLY the answers."""
    node = make_node(filter_rules(FWD, f"-p udp -m conntrack --ctdir {direction} -j DROP"))
    first = send(node, proto="udp", dport=53)
    assert (first.verdict == "DROP") == original_dropped
    if not original_dropped:
        assert is_sentence(rule_steps(first, F, FWD)[0].reason)
        reply = node.reply(first)
        assert (reply.verdict == "DROP") == reply_dropped


def test_ctorigdst_and_ctreplsrc_after_dnat():
    node = ct_node(f"-m conntrack --ctorigdst {SERVICE_IP}", DNAT_NAT)
    t = send(node, dst=SERVICE_IP, dport=80)
    assert_row(t, F, FWD, True)
    assert t.steps[-1].kind != "deliver"
    assert_row(send(node, dst=BACKEND1, dport=8080, sport=40002), F, FWD, False)
    node = ct_node(f"-m conntrack --ctreplsrc {BACKEND1}", DNAT_NAT)
    assert_row(send(node, dst=SERVICE_IP, dport=80), F, FWD, True)
    assert_row(send(node, dst=BACKEND2, dport=8080, sport=40003), F, FWD, False)
    node = ct_node("-m conntrack --ctorigdst 10.96.0.0/12", DNAT_NAT)
    assert send(node, dst=SERVICE_IP, dport=80).verdict == "DROP"
    node = ct_node("-m conntrack ! --ctorigdst 10.96.0.0/12", DNAT_NAT)
    assert send(node, dst=SERVICE_IP, dport=80).verdict == "ACCEPT"


def test_ctrepldst_after_masquerade():
    node = ct_node("-m conntrack --ctrepldst 192.168.0.2", MASQ_NAT)
    first = send(node, proto="udp", dport=53)
    assert first.verdict == "ACCEPT"           # reply tuple not yet rewritten in FORWARD
    assert send(node, proto="udp", dport=53).verdict == "DROP"


def test_ctstatus_seen_reply():
    node = make_node(filter_rules(FWD, "-p udp -m conntrack --ctstatus SEEN_REPLY -j DROP"))
    first = send(node, proto="udp", dport=53)
    assert_row(first, F, FWD, False)
    assert node.reply(first).verdict == "DROP"


def test_ctstatus_confirmed_only_after_the_first_packet():
    node = make_node(filter_rules(FWD, "-p udp -m conntrack --ctstatus CONFIRMED -j DROP"))
    assert send(node, proto="udp", dport=53).verdict == "ACCEPT"
    assert send(node, proto="udp", dport=53).verdict == "DROP"


def test_ctstatus_list_matches_any_listed_bit():
    """xt_conntrack: `--ctstatus A,B` holds when any of the bits is set (kernel
    seen: SEEN_REPLY,ASSURED matched a replied, not yet assured UDP flow)."""
    node = make_node(filter_rules(FWD, "-p udp -m conntrack --ctstatus SEEN_REPLY,ASSURED -j DROP"))
    first = send(node, proto="udp", dport=53)
    assert first.verdict == "ACCEPT"
    assert node.reply(first).verdict == "DROP"


def test_ctstatus_none_never_matches():
    """`--ctstatus NONE` sets no bit: the kernel's test `status & mask` is
    never true, so it never matches and `! --ctstatus NONE` always does
    (kernel seen)."""
    node = make_node(filter_rules(FWD, "-p udp -m conntrack --ctstatus NONE -j DROP"))
    assert send(node, proto="udp", dport=53).verdict == "ACCEPT"
    node = make_node(filter_rules(FWD, "-p udp -m conntrack ! --ctstatus NONE -j DROP"))
    assert send(node, proto="udp", dport=53).verdict == "DROP"


def test_ctexpire_on_a_confirmed_entry():
    """--ctexpire tests the seconds left; a later packet has refreshed them
    (a UDP flow without reply: 30 s)."""
    node = make_node(table("filter", "-A FORWARD -p udp -m conntrack --ctstatus CONFIRMED "
                                     "-m conntrack --ctexpire 20:40 -j DROP"))
    assert send(node, proto="udp", dport=53).verdict == "ACCEPT"     # not confirmed yet
    node.advance(5)
    assert send(node, proto="udp", dport=53).verdict == "DROP"       # refreshed: 30 s left
    node = make_node(table("filter", "-A FORWARD -p udp -m conntrack --ctstatus CONFIRMED "
                                     "-m conntrack --ctexpire 100:200 -j DROP"))
    send(node, proto="udp", dport=53)
    second = send(node, proto="udp", dport=53)
    assert second.verdict == "ACCEPT"
    reason = rule_steps(second, F, FWD)[0].reason
    assert is_sentence(reason) and "ctexpire" in reason


@pytest.mark.parametrize("rule,pkt,matched", [
    ("-m conntrack --ctproto 17", dict(proto="udp", dport=53), True),
    ("-m conntrack --ctproto 17", dict(), False),
    ("-m conntrack --ctproto tcp", dict(), True),
    ("-m conntrack ! --ctproto 6", dict(proto="udp", dport=53), True),
])
def test_ctproto(rule, pkt, matched):
    node = ct_node(rule)
    assert_row(send(node, **pkt), F, FWD, matched)


# --------------------------------------------------------------------------
# recent

def test_recent_set_then_rcheck_hitcount_within_seconds():
    node = make_node(filter_rules(
        FWD,
        "-p tcp -m tcp --dport 22 -m recent --set --name SSH --rsource",
        "-p tcp -m tcp --dport 22 -m recent --rcheck --seconds 60 --hitcount 3 --name SSH --rsource -j DROP"))
    got = []
    for i in range(3):
        got.append(send(node, dport=22, sport=41000 + i).verdict)
        node.advance(10)
    assert got == ["ACCEPT", "ACCEPT", "DROP"]
    t = send(node, dport=22, sport=41010, from_="backend1")    # another source: its own entry
    assert t.verdict == "ACCEPT"
    reason = rule_steps(t, F, FWD)[1].reason
    assert is_sentence(reason)
    node.advance(61)                                          # every stamp is now older than 60 s
    assert send(node, dport=22, sport=41020).verdict == "ACCEPT"


def test_recent_seconds_boundary_counts_a_stamp_exactly_that_old():
    """xt_recent skips a stamp only when it is strictly older than --seconds."""
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name T",
        "-p udp --dport 2 -m recent --rcheck --seconds 10 --name T -j DROP"))
    send(node, proto="udp", dport=1)
    node.advance(10)
    assert send(node, proto="udp", dport=2).verdict == "DROP"
    node.advance(1)
    assert send(node, proto="udp", dport=2).verdict == "ACCEPT"


def test_recent_reap_keeps_an_entry_with_a_recent_stamp_whole():
    """xt_recent's --reap drops the oldest entry of the list only when even its
    newest stamp is too old; it never prunes stamps (kernel seen: 4 stamps,
    3 of them older than --seconds, still count for --hitcount 4)."""
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name X",
        "-p udp --dport 2 -m recent --rcheck --seconds 2 --reap --name X",
        "-p udp --dport 2 -m recent --rcheck --hitcount 4 --name X -j DROP"))
    for _ in range(3):
        send(node, proto="udp", dport=1)
    node.advance(3)
    send(node, proto="udp", dport=1)
    node.advance(0.3)
    assert send(node, proto="udp", dport=2).verdict == "DROP"


def test_recent_hitcount_above_255():
    """A list keeps as many stamps as its largest --hitcount needs (kernel seen:
    --hitcount 300 matches from the 300th packet on)."""
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 9 -m recent --set --name X",
        "-p udp --dport 9 -m recent --rcheck --hitcount 300 --name X -j DROP"))
    got = [send(node, proto="udp", dport=9, sport=1000 + i).verdict for i in range(302)]
    assert [i for i, v in enumerate(got) if v == "DROP"] == [299, 300, 301]


def test_recent_rcheck_miss_without_entry_has_reason():
    node = make_node(filter_rules(FWD, "-m recent --rcheck --name NOBODY -j DROP"))
    t = send(node)
    assert_row(t, F, FWD, False)


@pytest.mark.parametrize("command,third", [("update", "DROP"), ("rcheck", "ACCEPT")])
def test_recent_update_refreshes_the_stamp_rcheck_does_not(command, third):
    node = make_node(filter_rules(
        FWD,
        f"-m recent --{command} --seconds 10 --name X -j DROP",
        "-m recent --set --name X"))
    assert send(node, sport=1).verdict == "ACCEPT"   # t=0: no entry yet; set
    node.advance(5)
    assert send(node, sport=2).verdict == "DROP"     # t=5: seen 5 s ago
    node.advance(9)
    assert send(node, sport=3).verdict == third      # t=14: update refreshed the stamp at t=5


def test_recent_remove():
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name R",
        "-p udp --dport 2 -m recent --remove --name R -j DROP"))
    assert send(node, proto="udp", dport=2).verdict == "ACCEPT"    # not in the list
    send(node, proto="udp", dport=1)
    assert send(node, proto="udp", dport=2).verdict == "DROP"      # found and removed
    assert send(node, proto="udp", dport=2).verdict == "ACCEPT"    # gone


def test_recent_set_always_matches_and_not_set_never():
    node = make_node(filter_rules(FWD, "-m recent --set --name S -j DROP"))
    assert send(node).verdict == "DROP"
    node = make_node(filter_rules(FWD, "-m recent ! --set --name S -j DROP"))
    t = send(node)
    assert_row(t, F, FWD, False)


def test_recent_rttl_needs_the_same_ttl():
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name TT",
        "-p udp --dport 2 -m recent --rcheck --rttl --name TT -j DROP"))
    send(node, proto="udp", dport=1)
    assert send(node, proto="udp", dport=2, ttl=50).verdict == "ACCEPT"
    assert send(node, proto="udp", dport=2).verdict == "DROP"
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name TT",
        "-p udp --dport 2 -m recent --rcheck --name TT -j DROP"))
    send(node, proto="udp", dport=1)
    assert send(node, proto="udp", dport=2, ttl=50).verdict == "DROP"    # without --rttl TTL is ignored


def test_recent_rdest():
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name D --rdest",
        "-p udp --dport 2 -m recent --rcheck --name D --rdest -j DROP",
    ))
    send(node, proto="udp", dport=1, dst=REMOTE1)
    # another client, same destination: found by destination
    assert send(node, from_="backend1", proto="udp", dport=2, dst=REMOTE1).verdict == "DROP"
    assert send(node, proto="udp", dport=2, dst=BACKEND2).verdict == "ACCEPT"
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name D --rdest",
        "-p udp --dport 2 -m recent --rcheck --name D --rsource -j DROP",
    ))
    send(node, proto="udp", dport=1, dst=REMOTE1)
    assert send(node, from_="backend1", proto="udp", dport=2, dst=REMOTE1).verdict == "ACCEPT"


def test_recent_mask_groups_addresses():
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name M --mask 255.255.255.0",
        "-p udp --dport 2 -m recent --rcheck --name M --mask 255.255.255.0 -j DROP"))
    send(node, proto="udp", dport=1)                                   # 10.244.1.7
    assert send(node, from_="backend1", proto="udp", dport=2).verdict == "DROP"        # 10.244.1.3: same /24
    assert send(node, from_="remote1", dst=BACKEND1, proto="udp", dport=2).verdict == "ACCEPT"
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name M",
        "-p udp --dport 2 -m recent --rcheck --name M -j DROP"))
    send(node, proto="udp", dport=1)
    assert send(node, from_="backend1", proto="udp", dport=2).verdict == "ACCEPT"


def test_recent_lists_are_separate_by_name():
    node = make_node(filter_rules(
        FWD,
        "-p udp --dport 1 -m recent --set --name A",
        "-p udp --dport 2 -m recent --rcheck --name B -j DROP"))
    send(node, proto="udp", dport=1)
    assert send(node, proto="udp", dport=2).verdict == "ACCEPT"


# --------------------------------------------------------------------------
# nfacct

def test_nfacct_always_matches_and_counts():
    node = make_node(filter_rules(FWD, "-m nfacct --nfacct-name web -j DROP"))
    assert send(node).verdict == "DROP"
    assert send(node, sport=40001).verdict == "DROP"
    assert node.state.nfacct.get("web") == 2


def test_nfacct_not_reached_does_not_count():
    node = make_node(filter_rules(FWD, "-p udp -m nfacct --nfacct-name dns -j DROP"))
    t = send(node)
    assert_row(t, F, FWD, False)
    assert node.state.nfacct.get("dns", 0) == 0
    send(node, proto="udp", dport=53)
    assert node.state.nfacct.get("dns") == 1


def test_nfacct_counts_even_when_a_later_match_fails():
    """Matches run in order: nfacct before tcp counts a packet the rule then misses."""
    node = make_node(filter_rules(FWD, "-p tcp -m nfacct --nfacct-name c -m tcp --dport 443 -j DROP"))
    t = send(node, dport=80)
    assert_row(t, F, FWD, False)
    assert node.state.nfacct.get("c") == 1


# --------------------------------------------------------------------------
# mark set by a rule, tested by a later rule (no hand-made packet marks)

def test_mark_set_in_mangle_is_seen_by_filter():
    text = (table("mangle", "-A PREROUTING -s 10.244.1.7 -j MARK --set-mark 0x10")
            + filter_rules(FWD, "-m mark --mark 0x10 -j DROP"))
    node = make_node(text)
    assert send(node).verdict == "DROP"
    assert send(node, from_="backend1").verdict == "ACCEPT"


@pytest.mark.parametrize("sport, dport, dropped", [
    (40001, 1, True),      # sport is 40001 but dport is not 53: "not (40001 and 53)" holds
    (40002, 53, True),
    (40001, 53, False),
    (40002, 1, True),
])
def test_two_negated_single_ports_are_one_compare(sport, dport, dropped):
    """iptables 1.8.9 (nf_tables) compiles `! --sport X ! --dport Y` into one
    4-byte compare of the port pair (kernel bytecode: cmp neq on transport
    header + 0, 4 bytes), so the rule holds unless BOTH ports equal."""
    node = make_node(filter_rules(FWD, "-p tcp -m tcp ! --sport 40001 ! --dport 53 -j DROP"))
    t = send(node, proto="tcp", dport=dport, sport=sport)
    assert (t.verdict == "DROP") == dropped
