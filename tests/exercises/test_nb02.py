"""Notebook 2's helpers (watch_rules, tables_met, priority_grid) and its checks' own logic."""
import pytest

import kplab
from kplab.exercises import nb02
from kplab.netfilter.hooks import HOOKS, TABLE_CHAINS, TABLES, tables_at


def test_watch_rules_log_in_every_builtin_chain():
    rs = kplab.parse_rules(nb02.watch_rules())
    for table in TABLES:
        for chain in TABLE_CHAINS[table]:
            rules = rs.chain(table, chain).rules
            assert rules[0].target.name == "LOG", (table, chain)
    assert rs.needs_conntrack                     # the MASQUERADE rule turns conntrack on
    only = kplab.parse_rules(nb02.watch_rules(("mangle",), masquerade=False))
    assert set(only.tables) == {"mangle"} and not only.needs_conntrack
    assert "MASQUERADE" not in nb02.watch_rules(masquerade=False)


@pytest.fixture(scope="module")
def node():
    return kplab.standard_node(nb02.watch_rules())


@pytest.mark.parametrize("from_, dst, dport", [
    ("client", "10.244.2.5", 80),          # forwarded
    ("peer", "192.168.0.2", 10250),        # for this host
    ("node", "198.51.100.10", 443),        # created by this host
])
def test_first_packet_meets_every_table_of_each_hook_in_order(node, from_, dst, dport):
    walked = nb02.tables_met(node.send_from(from_, dst, "tcp", dport, sport=41000 + dport % 1000))
    assert walked, "the trace met no table"
    for hook, tables in walked.items():
        assert tuple(tables) == tables_at(hook), hook


def test_later_packets_skip_nat(node):
    first = node.send_from("peer", "192.168.0.2", "tcp", 10250, sport=45000)
    node.reply(first)
    later = node.send(kplab.Packet.tcp("192.168.0.3", "192.168.0.2", 10250, sport=45000, flags=("ACK",)), "peer")
    assert "nat" in nb02.tables_met(first, "PREROUTING")
    assert nb02.tables_met(later) == {"PREROUTING": ["raw", "mangle"], "INPUT": ["mangle", "filter", "security"]}
    assert nb02.tables_met(later, "FORWARD") == []


def test_security_after_nat_at_input(node):
    trace = node.send_from("peer", "192.168.0.2", "tcp", 10250, sport=46000)
    assert nb02.tables_met(trace, "INPUT") == ["mangle", "filter", "nat", "security"]


def test_priority_grid():
    lines = nb02.priority_grid().splitlines()
    assert lines[0].split() == ["table"] + list(HOOKS)
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:2 + len(TABLES) + 1]}
    assert rows["raw"] == ["-300", ".", ".", "-300", "."]
    assert rows["(conntrack)"] == ["-200", ".", ".", "-200", "."]
    assert rows["mangle"] == ["-150"] * 5
    assert rows["nat"] == ["-100", "100", ".", "-100", "100"]
    assert rows["filter"] == [".", "0", "0", "0", "."]
    assert rows["security"] == [".", "150", "150", "150", "."]


@pytest.mark.parametrize("answer, words", [
    ("raw conntrack mangle nat filter security", "not a table"),
    ("raw, mangle, filter, nat, security", "before filter"),
    (["raw", "mangle", "nat", "security", "filter"], "position 4"),
    ([None], "Missing"),
])
def test_table_order_check(answer, words):
    fb = nb02.output_order.check(answer)
    assert fb.correct is False and words.lower() in str(fb).lower()


@pytest.mark.parametrize("answer, words", [
    # the mark set in mangle, but the drop also in mangle
    ("iptables -t mangle -A PREROUTING -s 10.244.1.7 -j MARK --set-mark 0x1\n"
     "iptables -t mangle -A FORWARD -m mark --mark 0x1 -j DROP", "filter table"),
    # the mark set in mangle, the filter rule drops by source, not by the mark
    ("iptables -t mangle -A PREROUTING -s 10.244.1.7 -j MARK --set-mark 0x1\n"
     "iptables -A FORWARD -s 10.244.1.7 -j DROP", "by the mark"),
])
def test_mark_structure(answer, words):
    fb = nb02.mark_then_drop.check(answer)
    assert fb.correct is False and words in str(fb)


def test_mark_accepts_a_whole_file_and_an_interface_match():
    text = ("*mangle\n-A PREROUTING -i veth-client -j MARK --set-xmark 0x1/0xffffffff\nCOMMIT\n"
            "*filter\n-A FORWARD -m mark --mark 0x1 -j DROP\nCOMMIT\n")
    assert nb02.mark_then_drop.check(text).correct is True


def test_nat_filtering_accepts_reject_in_filter():
    fixed = nb02.NAT_FILTER_FIXED.replace("--dport 25 -j DROP", "--dport 25 -j REJECT")
    assert nb02.nat_filtering.check(fixed).correct is True
