"""Every target: what it does to the packet and to the walk, and how it is saved."""
from __future__ import annotations

import pytest

import kplab
from tests.netfilter.conftest import (BACKEND1, BACKEND2, CLIENT, NODE_IP, POD_GW, REMOTE1, SERVICE_IP,
                                      filter_rules, kube_rules, make_node, rule_steps, table)


def send(node, from_="client", dst=REMOTE1, proto="tcp", dport=80, sport=None, src=None, **over):
    pkt = node.packet(from_, dst, proto, dport, sport, src)
    if over:
        pkt = pkt.replace(**over)
    return node.send(pkt, from_)


def saved(tbl, chain, rule):
    rs = kplab.parse_rules(table(tbl, f"-A {chain} {rule}"))
    return rs.chain(tbl, chain).rules[0].spec()


# --------------------------------------------------------------------------
# ACCEPT, DROP

def test_accept_overrides_a_drop_policy():
    node = make_node("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.244.1.7 -j ACCEPT\nCOMMIT\n")
    t = send(node)
    assert t.verdict == "ACCEPT" and t.delivered_to == "remote1"
    assert t.matched_rules[-1].verdict == "ACCEPT"
    t = send(node, from_="backend1")
    assert t.verdict == "DROP"
    assert [s.kind for s in t.steps if s.hook == "FORWARD"][-1] == "policy"


def test_accept_ends_only_this_tables_walk():
    """ACCEPT in mangle FORWARD does not skip filter FORWARD."""
    node = make_node(table("mangle", "-A FORWARD -j ACCEPT", "-A FORWARD -j LOG --log-prefix never")
                     + filter_rules("FORWARD", "-j DROP"))
    t = send(node)
    assert t.verdict == "DROP"
    assert [(s.table, s.verdict) for s in t.matched_rules] == [("mangle", "ACCEPT"), ("filter", "DROP")]
    assert node.state.log == []


def test_drop_ends_the_packet():
    node = make_node(filter_rules("FORWARD", "-j DROP", "-j LOG"))
    t = send(node)
    assert t.verdict == "DROP" and t.final is None and t.delivered_to is None
    assert len(rule_steps(t)) == 1
    assert t.to_json()["delivered"] is None


# --------------------------------------------------------------------------
# REJECT

REJECT_ROWS = [
    ("default", "-j REJECT", "-j REJECT --reject-with icmp-port-unreachable"),
    ("port-unreachable", "-j REJECT --reject-with icmp-port-unreachable",
     "-j REJECT --reject-with icmp-port-unreachable"),
    ("net-unreachable", "-j REJECT --reject-with icmp-net-unreachable", "-j REJECT --reject-with icmp-net-unreachable"),
    ("net-unreach-alias", "-j REJECT --reject-with net-unreach", "-j REJECT --reject-with icmp-net-unreachable"),
    ("host-unreachable", "-j REJECT --reject-with icmp-host-unreachable",
     "-j REJECT --reject-with icmp-host-unreachable"),
    ("host-unreach-alias", "-j REJECT --reject-with host-unreach", "-j REJECT --reject-with icmp-host-unreachable"),
    ("proto-unreachable", "-j REJECT --reject-with icmp-proto-unreachable",
     "-j REJECT --reject-with icmp-proto-unreachable"),
    ("net-prohibited", "-j REJECT --reject-with icmp-net-prohibited", "-j REJECT --reject-with icmp-net-prohibited"),
    ("host-prohibited", "-j REJECT --reject-with icmp-host-prohibited",
     "-j REJECT --reject-with icmp-host-prohibited"),
    ("admin-prohibited", "-j REJECT --reject-with icmp-admin-prohibited",
     "-j REJECT --reject-with icmp-admin-prohibited"),
    ("admin-prohib-alias", "-j REJECT --reject-with admin-prohib", "-j REJECT --reject-with icmp-admin-prohibited"),
    ("tcp-reset", "-p tcp -j REJECT --reject-with tcp-reset", "-p tcp -j REJECT --reject-with tcp-reset"),
    ("tcp-rst-alias", "-p tcp -j REJECT --reject-with tcp-rst", "-p tcp -j REJECT --reject-with tcp-reset"),
]


@pytest.mark.parametrize("rule,want", [r[1:] for r in REJECT_ROWS], ids=[r[0] for r in REJECT_ROWS])
def test_reject_saved_form_and_verdict(rule, want):
    assert saved("filter", "FORWARD", rule) == want
    node = make_node(filter_rules("FORWARD", rule, "-j ACCEPT"))
    t = send(node)
    assert t.verdict == "REJECT"
    assert t.final is None and t.delivered_to is None
    assert t.matched_rules[-1].verdict == "REJECT"
    assert len(t.matched_rules) == 1
    assert t.to_json()["verdict"] == "REJECT"


def test_reject_tcp_reset_needs_tcp():
    with pytest.raises(kplab.ParseError) as e:
        kplab.parse_rules(filter_rules("FORWARD", "-p udp -j REJECT --reject-with tcp-reset"))
    assert e.value.line == 2
    with pytest.raises(kplab.ParseError):
        kplab.parse_rules(filter_rules("FORWARD", "-j REJECT --reject-with tcp-reset"))


@pytest.mark.parametrize("chain,from_,dst", [("INPUT", "client", NODE_IP), ("OUTPUT", "node", REMOTE1)])
def test_reject_in_input_and_output(chain, from_, dst):
    node = make_node(filter_rules(chain, "-j REJECT"))
    assert send(node, from_=from_, dst=dst).verdict == "REJECT"


# --------------------------------------------------------------------------
# RETURN, jump and goto

def test_return_in_user_chain_resumes_after_the_jump():
    node = make_node(table("filter",
                           "-A FORWARD -j CHK", "-A FORWARD -j DROP",
                           "-A CHK -j RETURN", "-A CHK -j ACCEPT", chains=["CHK"]))
    t = send(node)
    assert t.verdict == "DROP"
    assert [(s.chain, s.index, s.verdict) for s in t.matched_rules] == [
        ("FORWARD", 1, "JUMP:CHK"), ("CHK", 1, "RETURN"), ("FORWARD", 2, "DROP")]
    assert any(s.kind == "return" for s in t.steps)


@pytest.mark.parametrize("policy", ["ACCEPT", "DROP"])
def test_return_in_builtin_chain_applies_the_policy(policy):
    node = make_node(f"*filter\n:FORWARD {policy} [0:0]\n-A FORWARD -j RETURN\n"
                     f"-A FORWARD -j {'DROP' if policy == 'ACCEPT' else 'ACCEPT'}\nCOMMIT\n")
    t = send(node)
    assert t.verdict == policy
    pol = [s for s in t.steps if s.kind == "policy"]
    assert pol and pol[-1].verdict == policy and pol[-1].chain == "FORWARD"


def test_return_not_taken_when_its_matches_fail():
    node = make_node(table("filter",
                           "-A FORWARD -j CHK", "-A FORWARD -j ACCEPT",
                           "-A CHK -s 10.244.1.3 -j RETURN", "-A CHK -j DROP", chains=["CHK"]))
    assert send(node).verdict == "DROP"
    assert send(node, from_="backend1").verdict == "ACCEPT"


JUMP_GOTO = """*filter
:FORWARD DROP [0:0]
:A - [0:0]
:B - [0:0]
-A FORWARD -j A
-A FORWARD -j ACCEPT
-A A {how} B
-A A -j DROP
-A B -p udp -j DROP
COMMIT
"""


def test_jump_returns_to_the_caller():
    """-j B: at the end of B the walk resumes in A, after the jump."""
    t = send(make_node(JUMP_GOTO.format(how="-j")))
    assert t.verdict == "DROP"
    assert [(s.chain, s.index) for s in t.matched_rules] == [("FORWARD", 1), ("A", 1), ("A", 2)]


def test_goto_returns_to_the_callers_caller():
    """-g B: B has no return address in A; its end goes back to FORWARD."""
    t = send(make_node(JUMP_GOTO.format(how="-g")))
    assert t.verdict == "ACCEPT"
    assert [(s.chain, s.index, s.verdict) for s in t.matched_rules] == [
        ("FORWARD", 1, "JUMP:A"), ("A", 1, "GOTO:B"), ("FORWARD", 2, "ACCEPT")]


def test_return_in_goto_chain_returns_to_the_callers_caller():
    text = JUMP_GOTO.format(how="-g").replace("-A B -p udp -j DROP", "-A B -j RETURN\n-A B -j DROP")
    t = send(make_node(text))
    assert t.verdict == "ACCEPT"
    assert [(s.chain, s.index) for s in t.matched_rules][-1] == ("FORWARD", 2)


@pytest.mark.parametrize("policy", ["ACCEPT", "DROP"])
def test_goto_from_builtin_chain_ends_at_the_policy(policy):
    other = "DROP" if policy == "ACCEPT" else "ACCEPT"
    text = (f"*filter\n:FORWARD {policy} [0:0]\n:B - [0:0]\n-A FORWARD -g B\n-A FORWARD -j {other}\n"
            "-A B -p udp -j ACCEPT\nCOMMIT\n")
    t = send(make_node(text))
    assert t.verdict == policy
    assert [s.chain for s in t.matched_rules] == ["FORWARD"]
    assert [s for s in t.steps if s.kind == "policy"][-1].verdict == policy


def test_nested_jumps_return_in_order():
    text = table("filter",
                 "-A FORWARD -j L1", "-A FORWARD -j LOG --log-prefix back-in-forward",
                 "-A L1 -j L2", "-A L1 -j LOG --log-prefix back-in-l1",
                 "-A L2 -j LOG --log-prefix in-l2",
                 chains=["L1", "L2"])
    node = make_node(text)
    t = send(node)
    assert t.verdict == "ACCEPT"
    assert [line.split("IN=")[0] for line in node.state.log] == ["in-l2", "back-in-l1", "back-in-forward"]
    depths = [(s.chain, s.depth) for s in t.matched_rules]
    assert depths == [("FORWARD", 0), ("L1", 1), ("L2", 2), ("L1", 1), ("FORWARD", 0)]


# --------------------------------------------------------------------------
# DNAT

def dnat_node(to, match="-p tcp -m tcp --dport 80", dst=SERVICE_IP):
    return make_node(table("nat", f"-A PREROUTING -d {dst}/32 {match} -j DNAT --to-destination {to}"))


@pytest.mark.parametrize("to,dport,want", [
    (BACKEND1, 80, f"{BACKEND1}:80"),                       # address only: the port is kept
    (f"{BACKEND1}:8080", 80, f"{BACKEND1}:8080"),
    (f"{BACKEND1}:8080-8090", 80, f"{BACKEND1}:8080"),     # out of range: the first port
], ids=["address", "address-port", "port-range"])
def test_dnat_forms(to, dport, want):
    node = dnat_node(to)
    t = send(node, dst=SERVICE_IP, dport=dport)
    assert t.verdict == "ACCEPT"
    assert t.dnat_to == want
    assert f"{t.final.dst}:{t.final.dport}" == want
    assert t.delivered_to == "backend1"
    assert t.final.src == CLIENT and t.final.sport == 40000
    assert t.masquerade is False and t.snat_to is None
    assert [s.verdict for s in t.matched_rules] == ["DNAT"]


def test_dnat_port_only_keeps_the_address():
    """`--to-destination :8080` (kernel: accepted, saved as written) changes the port only."""
    assert saved("nat", "PREROUTING", "-p tcp -j DNAT --to-destination :8080") == \
        "-p tcp -j DNAT --to-destination :8080"
    node = dnat_node(":8080")
    t = send(node, dst=SERVICE_IP)
    assert t.dnat_to == f"{SERVICE_IP}:8080" and t.final.dst == SERVICE_IP


def test_dnat_port_range_keeps_a_port_already_in_range():
    """nf_nat: a destination port already inside the range is left alone."""
    node = dnat_node(f"{BACKEND1}:8080-8090", match="-p tcp -m tcp --dport 8000:9000")
    t = send(node, dst=SERVICE_IP, dport=8085)
    assert t.dnat_to == f"{BACKEND1}:8085"


def test_dnat_address_range():
    node = dnat_node(f"{BACKEND1}-{BACKEND2}:8080")
    seen = set()
    for sport in range(40000, 40040):
        t = send(node, dst=SERVICE_IP, sport=sport)
        assert t.final.dst in (BACKEND1, BACKEND2) and t.final.dport == 8080
        assert t.delivered_to == {BACKEND1: "backend1", BACKEND2: "backend2"}[t.final.dst]
        seen.add(t.final.dst)
    # nf_nat hashes the flow's addresses, not its ports: one client keeps one address
    assert len(seen) == 1
    # the choice is a function of the flow's addresses: the same again on a new node
    again = dnat_node(f"{BACKEND1}-{BACKEND2}:8080")
    assert send(again, dst=SERVICE_IP).final.dst == send(dnat_node(f"{BACKEND1}-{BACKEND2}:8080"),
                                                        dst=SERVICE_IP).final.dst


def test_dnat_in_output_for_local_traffic():
    node = make_node(table("nat", f"-A OUTPUT -d {SERVICE_IP}/32 -p tcp -j DNAT --to-destination {BACKEND1}:8080"))
    t = send(node, from_="node", dst=SERVICE_IP)
    assert t.dnat_to == f"{BACKEND1}:8080" and t.delivered_to == "backend1"
    assert t.final.src == NODE_IP        # source chosen for the pre-NAT destination


# --------------------------------------------------------------------------
# SNAT, MASQUERADE

def test_snat_to_address():
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j SNAT --to-source 192.168.0.2"))
    t = send(node)
    assert t.final.src == NODE_IP and t.final.sport == 40000
    assert t.masquerade is True and t.snat_to == f"{NODE_IP}:40000"
    assert t.matched_rules[-1].verdict == "SNAT"


def test_snat_to_port_range():
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -p tcp -j SNAT --to-source 192.168.0.2:5000-5010"))
    t = send(node)
    assert t.final.src == NODE_IP and 5000 <= t.final.sport <= 5010
    assert t.snat_to == f"{NODE_IP}:{t.final.sport}"


def test_snat_not_fired_for_other_interface():
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j SNAT --to-source 192.168.0.2"))
    t = send(node, dst=BACKEND1)
    assert t.final.src == CLIENT and t.masquerade is False and t.snat_to is None


def test_masquerade_uses_the_outgoing_interface_address():
    node = make_node(table("nat", "-A POSTROUTING -j MASQUERADE"))
    out = send(node)                                   # leaves by eth0
    assert out.final.src == NODE_IP and out.final.sport == 40000
    assert out.masquerade is True and out.snat_to == f"{NODE_IP}:40000"
    assert out.matched_rules[-1].verdict == "MASQUERADE"
    pod = send(node, from_="remote1", dst=BACKEND1)    # leaves by veth-backend1
    assert pod.final.src == POD_GW
    assert pod.delivered_to == "backend1"


def test_masquerade_hairpin_to_pod_gateway():
    node = make_node(kube_rules(endpoints=((CLIENT, 8080),)))
    t = send(node, dst=SERVICE_IP)
    assert t.final.dst == CLIENT and t.final.dport == 8080
    assert t.final.src == POD_GW
    assert t.masquerade is True and t.delivered_to == "client"


def test_masquerade_of_node_traffic_keeps_its_address():
    """The rule fires, but 192.168.0.2 is already the address of eth0."""
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"))
    t = send(node, from_="node", dst=REMOTE1)
    assert t.final.src == NODE_IP and t.final.sport == 40000
    assert t.masquerade is True
    assert t.snat_to is None


def test_masquerade_to_ports():
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -p tcp -j MASQUERADE --to-ports 6000-6010"))
    t = send(node)
    assert t.final.src == NODE_IP and 6000 <= t.final.sport <= 6010


def _random_fully_port(seed, sport=40000):
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE --random-fully"), seed=seed)
    return send(node, sport=sport).final.sport


def test_masquerade_random_fully_is_seeded_and_reproducible():
    ports = [_random_fully_port(seed) for seed in range(6)]
    assert all(1024 <= p <= 65535 for p in ports)
    assert any(p != 40000 for p in ports)
    assert len(set(ports)) > 1                        # the seed matters
    assert ports == [_random_fully_port(seed) for seed in range(6)]


def test_masquerade_keeps_the_port_without_random():
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"))
    assert {send(node, sport=p).final.sport for p in (40000, 40001)} == {40000, 40001}


def test_masquerade_remaps_a_clashing_port():
    """Two Pods with the same source port behind one address: the second gets
    another port so the reply tuples stay unique."""
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"))
    a = send(node, from_="client")
    b = send(node, from_="backend1")
    assert a.final.sport == 40000
    assert b.final.src == NODE_IP and b.final.sport != 40000
    assert 1024 <= b.final.sport <= 65535


# --------------------------------------------------------------------------
# MARK

MARK_ROWS = [
    ("set-mark", "--set-mark 0x4000", "--set-xmark 0x4000/0xffffffff", 0x4000),
    ("set-mark-mask", "--set-mark 0x1/0x3", "--set-xmark 0x1/0x3", 0xFD),
    ("set-xmark", "--set-xmark 0x10/0xf0", "--set-xmark 0x10/0xf0", 0x1F),
    ("set-xmark-no-mask", "--set-xmark 0x10", "--set-xmark 0x10/0xffffffff", 0x10),
    ("or-mark", "--or-mark 0x4000", "--set-xmark 0x4000/0x4000", 0x40FF),
    ("and-mark", "--and-mark 0x0f", "--set-xmark 0x0/0xfffffff0", 0x0F),
    ("xor-mark", "--xor-mark 0x0f", "--set-xmark 0xf/0x0", 0xF0),
    ("xor-mark-kube", "--xor-mark 0x4000", "--set-xmark 0x4000/0x0", 0x40FF),
    ("and-mark-kube", "--and-mark 0x4000", "--set-xmark 0x0/0xffffbfff", 0x0),
]


@pytest.mark.parametrize("opt,want_saved,want_mark", [r[1:] for r in MARK_ROWS], ids=[r[0] for r in MARK_ROWS])
def test_mark_forms(opt, want_saved, want_mark):
    assert saved("mangle", "PREROUTING", f"-j MARK {opt}") == f"-j MARK {want_saved}"
    node = make_node(table("mangle", "-A PREROUTING -j MARK --set-mark 0xff", f"-A PREROUTING -j MARK {opt}"))
    t = send(node)
    assert t.verdict == "ACCEPT"
    assert t.final.mark == want_mark
    second = t.matched_rules[1]
    assert second.verdict == "CONTINUE"
    assert second.before.mark == 0xFF and second.after.mark == want_mark


def test_mark_is_non_terminating_and_seen_by_later_rules():
    node = make_node(table("mangle", "-A FORWARD -j MARK --set-mark 0x7")
                     + filter_rules("FORWARD", "-m mark --mark 0x7 -j DROP"))
    assert send(node).verdict == "DROP"


# --------------------------------------------------------------------------
# LOG, no target

def test_log_is_non_terminating_and_appends_to_the_log():
    node = make_node(filter_rules("FORWARD", '-j LOG --log-prefix "fwd: "', "-p tcp -j DROP"))
    t = send(node)
    assert t.verdict == "DROP"
    assert [s.verdict for s in t.matched_rules] == ["CONTINUE", "DROP"]
    assert len(node.state.log) == 1
    line = node.state.log[0]
    assert line.startswith("fwd: ")
    for part in (f"SRC={CLIENT}", f"DST={REMOTE1}", "IN=veth-client", "OUT=eth0", "PROTO=TCP", "DPT=80"):
        assert part in line
    send(node, sport=40001)
    assert len(node.state.log) == 2


def test_log_saved_form():
    assert saved("filter", "INPUT", '-j LOG --log-prefix "in: " --log-level 6') == \
        '-j LOG --log-prefix "in: " --log-level 6'
    assert saved("filter", "INPUT", "-j LOG --log-level warning") == "-j LOG"


def test_rule_without_target_continues():
    node = make_node(filter_rules("FORWARD", "-s 10.244.1.7", "-j DROP"))
    t = send(node)
    assert t.verdict == "DROP"
    first = t.matched_rules[0]
    assert first.verdict == "CONTINUE" and first.rule == "-A FORWARD -s 10.244.1.7/32"
    assert t.to_json()["matched_rules"][0]["verdict"] == "CONTINUE"


def test_rule_without_matches_or_target():
    node = make_node(filter_rules("FORWARD", ""))
    t = send(node)
    assert t.verdict == "ACCEPT"
    assert t.matched_rules[0].rule == "-A FORWARD" and t.matched_rules[0].verdict == "CONTINUE"
