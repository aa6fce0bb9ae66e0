"""Connection tracking: entries, states, timeouts, `conntrack -L` text, NAT
bindings that outlive a rules change, and when tracking is on at all."""
from __future__ import annotations

import pytest

import kplab
from kplab.packet import Packet
from tests.netfilter.conftest import (BACKEND1, BACKEND2, CLIENT, NODE_IP, POD_GW, REMOTE1, SERVICE_IP,
                                      filter_rules, kube_rules, make_node, rule_steps, table)

DNAT = table("nat", f"-A PREROUTING -d {SERVICE_IP}/32 -p tcp -m tcp --dport 80 "
                    f"-j DNAT --to-destination {BACKEND1}:8080",
             f"-A PREROUTING -d {SERVICE_IP}/32 -p udp -m udp --dport 53 "
             f"-j DNAT --to-destination {BACKEND1}:5353")


def send(node, from_="client", dst=SERVICE_IP, proto="tcp", dport=80, sport=None, src=None, flags=None):
    pkt = node.packet(from_, dst, proto, dport, sport, src)
    if flags is not None:
        pkt = pkt.replace(tcp_flags=frozenset(flags))
    return node.send(pkt, from_)


def ct_steps(trace):
    return [s for s in trace.steps if s.kind == "conntrack"]


def only_entry(node):
    entries = node.state.conntrack.live(node.clock())
    assert len(entries) == 1, node.conntrack_text()
    return entries[0]


# --------------------------------------------------------------------------
# Creation and confirmation

def test_entry_created_new_and_confirmed_at_postrouting():
    node = make_node(DNAT)
    t = send(node)
    cts = ct_steps(t)
    assert cts[0].hook == "PREROUTING" and "new" in cts[0].reason.lower()
    assert cts[-1].hook == "POSTROUTING" and "confirmed:" in cts[-1].reason
    # NEW is decided before any table walk of the hook after raw
    first_rule = next(i for i, s in enumerate(t.steps) if s.kind == "rule")
    assert t.steps.index(cts[0]) < first_rule
    e = only_entry(node)
    assert "CONFIRMED" in e.status and "SEEN_REPLY" not in e.status
    assert e.tcp_state == "SYN_SENT"
    assert "[UNREPLIED]" in node.conntrack_text()


def test_entry_confirmed_at_input_for_local_delivery():
    node = make_node(table("nat", f"-A PREROUTING -d {SERVICE_IP}/32 -p tcp -j DNAT --to-destination {NODE_IP}:8080"))
    t = send(node)
    assert t.delivered_to == "node"
    confirm = [s for s in ct_steps(t) if "confirmed:" in s.reason]
    assert len(confirm) == 1 and confirm[0].hook == "INPUT"
    # confirmation comes after the INPUT tables
    input_rules = [i for i, s in enumerate(t.steps) if s.hook == "INPUT" and s.kind in ("rule", "policy")]
    assert all(i < t.steps.index(confirm[0]) for i in input_rules)


def test_local_out_entry_created_at_output():
    node = make_node(table("nat", f"-A OUTPUT -d {SERVICE_IP}/32 -p tcp -j DNAT --to-destination {BACKEND1}:8080"))
    t = send(node, from_="node")
    cts = ct_steps(t)
    assert cts[0].hook == "OUTPUT" and cts[-1].hook == "POSTROUTING"


def test_dropped_first_packet_leaves_no_entry():
    node = make_node(DNAT + filter_rules("FORWARD", "-j DROP"))
    send(node)
    assert node.conntrack_text() == ""
    assert len(node.state.conntrack) == 0


def test_commit_false_leaves_the_table_alone():
    node = make_node(DNAT)
    node.send(node.packet("client", SERVICE_IP, "tcp", 80), "client", commit=False)
    assert node.conntrack_text() == ""


# --------------------------------------------------------------------------
# Replies, SEEN_REPLY, ESTABLISHED, ASSURED

def test_reply_sets_seen_reply_and_established():
    node = make_node(DNAT + filter_rules("FORWARD", "-m conntrack --ctstate ESTABLISHED -j LOG --log-prefix est"))
    t = send(node)
    r = node.reply(t)
    assert "ESTABLISHED" in ct_steps(r)[0].reason
    assert len(node.state.log) == 1
    e = only_entry(node)
    assert "SEEN_REPLY" in e.status
    assert e.tcp_state == "SYN_RECV"
    text = node.conntrack_text()
    assert "[UNREPLIED]" not in text and "SYN_RECV" in text


def test_tcp_handshake_becomes_assured():
    node = make_node(DNAT)
    syn = send(node)
    node.reply(syn)                                       # SYN/ACK
    ack = send(node, flags=("ACK",))
    assert ack.dnat_to == f"{BACKEND1}:8080"
    e = only_entry(node)
    assert e.tcp_state == "ESTABLISHED"
    assert "ASSURED" in e.status
    text = node.conntrack_text()
    assert text.startswith("tcp      6 432000 ESTABLISHED ")
    assert "[ASSURED]" in text


def test_udp_reply_within_two_seconds_keeps_the_short_timeout():
    """Kernel 6.18 (seen here): a UDP flow that got its reply at once stays on
    the 30 s timeout and is not ASSURED; only traffic more than 2 s after the
    flow began makes it a stream (120 s, ASSURED)."""
    node = make_node(DNAT)
    t = send(node, proto="udp", dport=53)
    node.advance(1)
    node.reply(t)
    text = node.conntrack_text()
    assert text.startswith("udp      17 30 ") and "[UNREPLIED]" not in text and "ASSURED" not in text
    send(node, proto="udp", dport=53)
    assert "ASSURED" not in node.conntrack_text()
    node.advance(2)                                       # 3 s after the first packet
    send(node, proto="udp", dport=53)
    text = node.conntrack_text()
    assert text.startswith("udp      17 120 ") and "[ASSURED]" in text


def test_state_update_survives_a_later_drop():
    """nf_conntrack_in updates a confirmed entry before any filter runs: a
    reply dropped in FORWARD still marks the flow SEEN_REPLY (kernel seen),
    so the next original packet is ESTABLISHED."""
    node = make_node(filter_rules("FORWARD", f"-d {CLIENT} -p udp -j DROP",
                                  f"-d {REMOTE1} -m conntrack --ctstate ESTABLISHED -j LOG --log-prefix est"))
    t = send(node, dst=REMOTE1, proto="udp", dport=53)
    assert node.reply(t).verdict == "DROP"
    assert "[UNREPLIED]" not in node.conntrack_text()
    send(node, dst=REMOTE1, proto="udp", dport=53)
    assert len(node.state.log) == 1


def test_timeout_refresh_survives_a_later_drop():
    node = make_node(filter_rules("FORWARD", "-m conntrack --ctstate ESTABLISHED -j LOG",
                                  "-m conntrack --ctstatus CONFIRMED -j DROP"))
    send(node, dst=REMOTE1, proto="udp", dport=53)
    node.advance(20)
    assert send(node, dst=REMOTE1, proto="udp", dport=53).verdict == "DROP"   # refreshes to 30 s
    node.advance(20)                                                        # 40 s after the first
    assert node.conntrack_text() != ""


# --------------------------------------------------------------------------
# Timeouts

def test_udp_entry_expires_after_30s_unreplied():
    node = make_node(DNAT)
    first = send(node, proto="udp", dport=53)
    assert rule_steps(first, "nat")
    node.advance(29)
    second = send(node, proto="udp", dport=53)
    assert rule_steps(second, "nat") == []                # same connection
    assert second.dnat_to == f"{BACKEND1}:5353"
    node.advance(31)                                      # 31 s after the last packet
    assert node.conntrack_text() == ""
    third = send(node, proto="udp", dport=53)
    assert rule_steps(third, "nat")                       # NEW again: walks nat again
    assert "new" in ct_steps(third)[0].reason.lower()


def test_expired_entry_disappears_from_the_listing():
    node = make_node(DNAT)
    send(node, proto="udp", dport=53)
    node.advance(10)
    assert node.conntrack_text().startswith("udp      17 20 ")
    node.advance(20)
    assert node.conntrack_text() == ""


def test_tcp_syn_sent_timeout_is_120s():
    node = make_node(DNAT)
    send(node)
    node.advance(119)
    assert node.conntrack_text().startswith("tcp      6 1 SYN_SENT ")
    node.advance(1)
    assert node.conntrack_text() == ""


def test_icmp_timeout_is_30s():
    node = make_node(table("filter", "-A FORWARD -m conntrack --ctstate NEW"))
    send(node, dst=REMOTE1, proto="icmp")
    assert node.conntrack_text().startswith("icmp     1 30 ")
    node.advance(30)
    assert node.conntrack_text() == ""


# --------------------------------------------------------------------------
# conntrack -L text

def test_conntrack_text_tcp_with_dnat():
    node = make_node(DNAT)
    send(node)
    assert node.conntrack_text() == (
        "tcp      6 120 SYN_SENT src=10.244.1.7 dst=10.96.5.81 sport=40000 dport=80 [UNREPLIED] "
        "src=10.244.1.3 dst=10.244.1.7 sport=8080 dport=40000 mark=0 use=1")


def test_conntrack_text_udp_and_icmp():
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"))
    send(node, dst=REMOTE1, proto="udp", dport=53)
    send(node, dst=REMOTE1, proto="icmp")
    lines = node.conntrack_text().split("\n")
    assert lines == [
        "udp      17 30 src=10.244.1.7 dst=10.244.2.5 sport=40000 dport=53 [UNREPLIED] "
        "src=10.244.2.5 dst=192.168.0.2 sport=53 dport=40000 mark=0 use=1",
        "icmp     1 30 src=10.244.1.7 dst=10.244.2.5 type=8 code=0 id=1 [UNREPLIED] "
        "src=10.244.2.5 dst=192.168.0.2 type=0 code=0 id=1 mark=0 use=1",
    ]


def test_conntrack_mark_is_not_the_packet_mark():
    """`mark=` is the connection mark (CONNMARK); a MARK on the packet,
    even in raw before conntrack runs, leaves it 0."""
    node = make_node(table("raw", "-A PREROUTING -j MARK --set-mark 0x5") + DNAT)
    t = send(node)
    assert t.final.mark == 0x5
    assert "mark=0 use=1" in node.conntrack_text()


def test_conntrack_text_is_newest_last():
    node = make_node(DNAT)
    send(node, sport=1111)
    send(node, sport=2222)
    lines = node.conntrack_text().split("\n")
    assert "sport=1111" in lines[0] and "sport=2222" in lines[1]


# --------------------------------------------------------------------------
# NAT bindings outlive a rules change

def test_existing_connection_stays_on_its_backend_after_reload():
    two = kube_rules(endpoints=((BACKEND1, 8080), (BACKEND2, 8080)))
    node = make_node(two, seed=3)
    first = send(node, flags=("SYN",))
    chosen = first.dnat_to
    assert chosen in (f"{BACKEND1}:8080", f"{BACKEND2}:8080")
    other = BACKEND2 if chosen.startswith(BACKEND1) else BACKEND1
    node.load(kplab.parse_rules(kube_rules(endpoints=((other, 8080),))))
    again = send(node, flags=("ACK",))
    assert again.dnat_to == chosen
    assert rule_steps(again, "nat") == []
    fresh = send(node, sport=40001)
    assert fresh.dnat_to == f"{other}:8080"


def test_existing_connection_survives_removal_of_the_service():
    node = make_node(DNAT)
    send(node, proto="udp", dport=53)
    node.load(kplab.parse_rules(table("nat", "-A PREROUTING -p udp -j DNAT --to-destination 10.244.1.4:1")))
    assert send(node, proto="udp", dport=53).dnat_to == f"{BACKEND1}:5353"


# --------------------------------------------------------------------------
# Conntrack on or off

def test_conntrack_off_for_a_filter_only_ruleset():
    node = make_node(filter_rules("FORWARD", "-p tcp -j ACCEPT"))
    t = send(node, dst=REMOTE1)
    assert ct_steps(t) == []
    assert t.entry is None
    assert node.conntrack_text() == ""


def test_nat_table_without_nat_target_is_never_walked():
    """Kernel seen: a nat table holding only a plain rule turns nothing on,
    and its chains are never walked."""
    node = make_node(table("nat", "-A PREROUTING -j LOG --log-prefix nat", "-A POSTROUTING -j LOG"))
    t = send(node, dst=REMOTE1)
    assert rule_steps(t, "nat") == []
    assert ct_steps(t) == []
    assert node.state.log == []


@pytest.mark.parametrize("text", [
    DNAT,
    table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"),
    table("nat", "-A POSTROUTING -o eth9 -j SNAT --to-source 192.168.0.2"),
    filter_rules("INPUT", "-m conntrack --ctstate INVALID -j DROP"),
], ids=["dnat", "masquerade", "snat-never-matching", "conntrack-match-elsewhere"])
def test_conntrack_on_when_a_rule_needs_it(text):
    node = make_node(text)
    t = send(node, dst=REMOTE1)
    assert ct_steps(t)
    assert node.conntrack_text() != ""


def test_conntrack_on_makes_nat_walked_for_new_connections():
    node = make_node(table("nat", "-A PREROUTING -j LOG --log-prefix nat",
                           "-A PREROUTING -d 203.0.113.1/32 -p tcp -j DNAT --to-destination 10.244.1.3"))
    send(node, dst=REMOTE1)
    send(node, dst=REMOTE1)
    assert len(node.state.log) == 1                       # only the first packet of the connection


def test_invalid_packet_gets_no_entry_and_skips_nat():
    node = make_node(DNAT)
    t = send(node, flags=("FIN",))
    assert t.entry is None
    assert rule_steps(t, "nat") == []
    assert t.dnat_to is None
    assert node.conntrack_text() == ""


def test_reply_direction_lookup_uses_the_translated_tuple():
    node = make_node(DNAT)
    t = send(node)
    # the backend answers to the client from its own address: found as REPLY
    r = node.send(Packet.tcp(BACKEND1, CLIENT, 40000, sport=8080, flags=("SYN", "ACK")), "backend1")
    assert r.final.src == SERVICE_IP and r.final.sport == 80
    assert r.entry.id == t.entry.id


def test_pod_gateway_is_local_but_not_hairpin():
    node = make_node(DNAT)
    t = send(node, dst=POD_GW, dport=22)
    assert t.delivered_to == "node" and t.dnat_to is None


def test_icmp_echo_reply_is_established():
    node = make_node(filter_rules("FORWARD", f"-p icmp -d {CLIENT} -m conntrack --ctstate ESTABLISHED "
                                             "-j LOG --log-prefix est"))
    t = send(node, dst=REMOTE1, proto="icmp")
    r = node.reply(t)
    assert r.packet.icmp_type == 0 and r.verdict == "ACCEPT" and r.delivered_to == "client"
    assert len(node.state.log) == 1
    assert "[UNREPLIED]" not in node.conntrack_text()
