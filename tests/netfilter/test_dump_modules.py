"""The modules real node dumps carry besides kube-proxy's: state, limit,
connmark/CONNMARK, NFLOG, physdev, owner; and the ones kplab leaves opaque
(set, socket).

Saved forms and acceptance are pinned rule by rule against the kernel in
test_extensions_conformance.py (cases-dump-modules.json); here: what each
module does to packets on the standard node, its why_not sentences, and the
semantics seen on this machine's kernel (tests/kernel's lessons compare the
same rules packet by packet with the kernel).
"""
from __future__ import annotations

import pytest

import kplab
from kplab.errors import ParseError, RulesetError, UnsupportedError
from tests.netfilter.conftest import (BACKEND1, BACKEND2, NODE_IP, POD_GW, REMOTE1, filter_rules, is_sentence,
                                      make_node, rule_steps, table)
from tests.netfilter.test_matches import assert_row, one_rule_node, send

F, FWD = "filter", "FORWARD"


def saved(tbl, chain, rule):
    rs = kplab.parse_rules(table(tbl, f"-A {chain} {rule}"))
    return rs.chain(tbl, chain).rules[0].spec()


def refused(text):
    with pytest.raises(ParseError) as info:
        kplab.parse_rules(text)
    return info.value


# --------------------------------------------------------------------------
# Saved forms: (table, chain, rule as written, as iptables-save prints it)

SAVE_ROWS = [
    # state is saved under its own name (iptables 1.8.9 nf_tables), states in the kernel's order
    (F, FWD, "-m state --state ESTABLISHED,RELATED", "-m state --state RELATED,ESTABLISHED"),
    (F, FWD, "-m state --state new,est", "-m state --state NEW,ESTABLISHED"),
    (F, FWD, "-m state ! --state NEW", "-m state ! --state NEW"),
    # limit: the rate as nft stores it, read back; burst 5 (and 0) not printed
    (F, "INPUT", "-m limit", "-m limit --limit 3/hour"),
    (F, "INPUT", "-m limit --limit 5", "-m limit --limit 5/sec"),
    (F, "INPUT", "-m limit --limit 60/min", "-m limit --limit 1/sec"),
    (F, "INPUT", "-m limit --limit 9999/sec", "-m limit --limit 10000/sec"),
    (F, "INPUT", "-m limit --limit 25/minute --limit-burst 100", "-m limit --limit 25/min --limit-burst 100"),
    (F, "INPUT", "-m limit --limit 1/sec --limit-burst 0", "-m limit --limit 1/sec"),
    # connmark: the mask only when it is not 0xffffffff
    ("mangle", "PREROUTING", "-m connmark --mark 16", "-m connmark --mark 0x10"),
    ("mangle", "PREROUTING", "-m connmark ! --mark 0x80/0x80", "-m connmark ! --mark 0x80/0x80"),
    ("mangle", "PREROUTING", "-m connmark --mark 1/0xffffffff", "-m connmark --mark 0x1"),
    # CONNMARK: every set form as --set-xmark; save/restore with both masks
    ("mangle", "PREROUTING", "-j CONNMARK --set-mark 1", "-j CONNMARK --set-xmark 0x1/0xffffffff"),
    ("mangle", "PREROUTING", "-j CONNMARK --set-mark 1/2", "-j CONNMARK --set-xmark 0x1/0x3"),
    ("mangle", "PREROUTING", "-j CONNMARK --and-mark 0xff", "-j CONNMARK --set-xmark 0x0/0xffffff00"),
    ("mangle", "PREROUTING", "-j CONNMARK --or-mark 4", "-j CONNMARK --set-xmark 0x4/0x4"),
    ("mangle", "PREROUTING", "-j CONNMARK --xor-mark 4", "-j CONNMARK --set-xmark 0x4/0x0"),
    ("mangle", "PREROUTING", "-j CONNMARK --save-mark --mask 0xff",
     "-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff"),
    ("mangle", "PREROUTING", "-j CONNMARK --restore-mark",
     "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
    ("mangle", "PREROUTING", "-j CONNMARK --set-xmark 1/2 --mask 4", "-j CONNMARK --set-xmark 0x1/0x4"),
    ("mangle", "PREROUTING", "-j CONNMARK --restore-mark --left-shift-mark 32 --right-shift-mark 1",
     "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff --right-shift-mark 1"),
    # NFLOG: prefix, group, size, threshold; --nflog-range dropped, threshold 0 is none
    (F, FWD, "-j NFLOG --nflog-threshold 10 --nflog-size 128 --nflog-prefix x --nflog-group 5",
     "-j NFLOG --nflog-prefix x --nflog-group 5 --nflog-size 128 --nflog-threshold 10"),
    (F, FWD, "-j NFLOG --nflog-group 0", "-j NFLOG"),
    (F, FWD, "-j NFLOG --nflog-range 1", "-j NFLOG"),
    (F, FWD, "-j NFLOG --nflog-threshold 0", "-j NFLOG"),
    (F, FWD, '-j NFLOG --nflog-prefix "drop: "', '-j NFLOG --nflog-prefix "drop: "'),
    (F, FWD, "-j NFLOG --nflog-prefix " + "p" * 200, "-j NFLOG --nflog-prefix " + "p" * 127),
    # physdev: in the kernel's order
    (F, FWD, "-m physdev ! --physdev-in eth0 ! --physdev-is-in", "-m physdev ! --physdev-is-in ! --physdev-in eth0"),
    # owner: names to numbers, ranges with "-", socket first
    (F, "OUTPUT", "-m owner --uid-owner root", "-m owner --uid-owner 0"),
    (F, "OUTPUT", "-m owner --uid-owner 5:10", "-m owner --uid-owner 5-10"),
    (F, "OUTPUT", "-m owner --uid-owner 0x10", "-m owner --uid-owner 16"),
    (F, "OUTPUT", "-m owner --gid-owner 0 --uid-owner 1 --socket-exists",
     "-m owner --socket-exists --uid-owner 1 --gid-owner 0"),
    (F, "OUTPUT", "-m owner ! --gid-owner 0 --suppl-groups", "-m owner ! --gid-owner 0 --suppl-groups"),
]


@pytest.mark.parametrize("tbl,chain,rule,want", SAVE_ROWS, ids=[r[2][:60] for r in SAVE_ROWS])
def test_saved_form(tbl, chain, rule, want):
    assert saved(tbl, chain, rule) == want
    assert saved(tbl, chain, want) == want


# --------------------------------------------------------------------------
# Refused, as the kernel refuses them (with the line and a reason)

REFUSE_ROWS = [
    (F, FWD, "-m state", "must be specified"),
    (F, FWD, "-m state --state SNAT", "bad state"),
    (F, FWD, "-m state --state NEW,", "requires a list"),
    (F, "INPUT", "-m limit --limit 10001/sec", "too fast"),
    (F, "INPUT", "-m limit --limit 1/week", "bad rate"),
    (F, "INPUT", "-m limit --limit 0x10/sec", "bad rate"),
    (F, "INPUT", "-m limit --limit-burst 10001", "out of range"),
    (F, "INPUT", "-m limit ! --limit 1/sec", "cannot be inverted"),
    ("mangle", "PREROUTING", "-m connmark", "must be specified"),
    ("mangle", "PREROUTING", "-m connmark --mark 0xfffffffff", "out of range"),
    ("mangle", "PREROUTING", "-j CONNMARK", "No operation"),
    ("mangle", "PREROUTING", "-j CONNMARK --set-mark 1 --save-mark", "cannot be used together"),
    ("mangle", "PREROUTING", "-j CONNMARK --save-mark --nfmask 0xff --mask 0xf", "cannot be used together"),
    ("mangle", "PREROUTING", "-j CONNMARK --save-mark --right-shift-mark 32", "refuses a shift"),
    ("mangle", "PREROUTING", "-j CONNMARK --save-mark --right-shift-mark 33", "out of range"),
    (F, FWD, '-j NFLOG --nflog-prefix ""', "minimum length"),
    (F, FWD, "-j NFLOG --nflog-group 65536", "out of range"),
    (F, FWD, "-j NFLOG --nflog-range 1 --nflog-size 2", "cannot be used together"),
    (F, FWD, "-m physdev", "no physdev option"),
    (F, FWD, "-m physdev --physdev-in 1234567890abcdef", "IFNAMSIZ"),
    (F, "OUTPUT", "-m physdev --physdev-out eth0", "refused in OUTPUT"),
    (F, "OUTPUT", "-m physdev --physdev-is-out --physdev-in eth0", "refused in OUTPUT"),
    (F, "OUTPUT", "-m physdev --physdev-out eth0 ! --physdev-is-bridged", "refused in OUTPUT"),
    ("nat", "OUTPUT", "-m physdev --physdev-out eth0", "refused in OUTPUT"),
    (F, "OUTPUT", "-m owner", "at least one"),
    (F, "OUTPUT", "-m owner --uid-owner 10-5", "kernel refuses"),
    (F, "OUTPUT", "-m owner --uid-owner 4294967295", "bad value"),
    (F, "OUTPUT", "-m owner --uid-owner 1000-", "bad value"),
    (F, "OUTPUT", "-m owner --suppl-groups --gid-owner 0", "--gid-owner first"),
    (F, "INPUT", "-m owner --uid-owner 0", "not valid in filter INPUT"),
    (F, FWD, "-m owner --uid-owner 0", "not valid in filter FORWARD"),
    ("nat", "PREROUTING", "-m owner --socket-exists", "not valid in nat PREROUTING"),
]


@pytest.mark.parametrize("tbl,chain,rule,words", REFUSE_ROWS, ids=[r[2][:60] for r in REFUSE_ROWS])
def test_refused(tbl, chain, rule, words):
    e = refused(table(tbl, f"-A {chain} {rule}"))
    assert e.line == 2 and words in str(e), str(e)


def test_owner_refused_in_a_user_chain_reached_from_input():
    """Seen in the kernel: owner's hooks count through jumps (nft validates the
    chain from every base chain reaching it)."""
    e = refused(table(F, "-A INPUT -j X", "-A X -m owner --uid-owner 0", chains=["X"]))
    assert isinstance(e, RulesetError) and e.line == 4 and "reached from INPUT" in str(e)
    kplab.parse_rules(table(F, "-A OUTPUT -j X", "-A X -m owner --uid-owner 0", chains=["X"]))
    kplab.parse_rules(table(F, "-A X -m owner --uid-owner 0", chains=["X"]))          # reached from nowhere


def test_physdev_out_loads_in_a_user_chain_reached_from_output():
    """Seen in the kernel: xt_physdev's OUTPUT check sees the hook only in the
    built-in chain itself (nft_compat gives it no hook in a user chain)."""
    kplab.parse_rules(table(F, "-A OUTPUT -j X", "-A X -m physdev --physdev-out eth0", chains=["X"]))
    kplab.parse_rules(table(F, "-A OUTPUT -m physdev --physdev-out eth0 --physdev-is-bridged"))


# --------------------------------------------------------------------------
# One rule, one packet: (id, table, chain, rule, packet, matched)

ROWS = [
    # state: the first packet is NEW
    ("state-new", F, FWD, "-m state --state NEW", dict(), True),
    ("state-established-miss", F, FWD, "-m state --state ESTABLISHED", dict(), False),
    ("state-not-new-miss", F, FWD, "-m state ! --state NEW", dict(), False),
    ("state-invalid-synack", F, FWD, "-m state --state INVALID", dict(flags=("SYN", "ACK")), True),
    # limit: a full bucket lets the first packet through
    ("limit-first", F, FWD, "-m limit --limit 1/hour --limit-burst 1", dict(), True),
    # connmark: a new connection's mark is 0; no entry at all in raw
    ("connmark-zero", F, FWD, "-m connmark --mark 0x0", dict(), True),
    ("connmark-not-zero-miss", F, FWD, "-m connmark ! --mark 0x0", dict(), False),
    ("connmark-raw-miss", "raw", "PREROUTING", "-m connmark --mark 0x0", dict(), False),
    ("connmark-raw-negated-miss", "raw", "PREROUTING", "-m connmark ! --mark 0x1", dict(), False),
    # physdev: a routed packet matches negated tests only
    ("physdev-not-bridged", F, FWD, "-m physdev ! --physdev-is-bridged", dict(), True),
    ("physdev-bridged-miss", F, FWD, "-m physdev --physdev-is-bridged", dict(), False),
    ("physdev-in-miss", F, FWD, "-m physdev --physdev-in veth+", dict(), False),
    ("physdev-not-in", F, FWD, "-m physdev ! --physdev-in eth0 ! --physdev-is-in", dict(), True),
    ("physdev-mixed-miss", F, FWD, "-m physdev ! --physdev-in eth0 --physdev-is-in", dict(), False),
    ("physdev-input", F, "INPUT", "-m physdev ! --physdev-is-in", dict(from_="external", dst=NODE_IP), True),
    ("physdev-output", F, "OUTPUT", "-m physdev ! --physdev-is-bridged", dict(from_="node"), True),
    ("physdev-postrouting-out-miss", "mangle", "POSTROUTING", "-m physdev --physdev-out eth0", dict(), False),
    # owner: the node's own packets are root's; forwarded packets have no socket
    ("owner-uid0", F, "OUTPUT", "-m owner --uid-owner 0", dict(from_="node"), True),
    ("owner-uid-range-miss", F, "OUTPUT", "-m owner --uid-owner 1000-2000", dict(from_="node"), False),
    ("owner-not-uid", F, "OUTPUT", "-m owner ! --uid-owner 1000", dict(from_="node"), True),
    ("owner-gid0", F, "OUTPUT", "-m owner --uid-owner 0 --gid-owner 0", dict(from_="node"), True),
    ("owner-not-gid-miss", F, "OUTPUT", "-m owner ! --gid-owner 0", dict(from_="node"), False),
    ("owner-suppl-miss", F, "OUTPUT", "-m owner --gid-owner 5 --suppl-groups", dict(from_="node"), False),
    ("owner-socket", "mangle", "POSTROUTING", "-m owner --socket-exists", dict(from_="node"), True),
    ("owner-not-socket-miss", "mangle", "POSTROUTING", "-m owner ! --socket-exists", dict(from_="node"), False),
    ("owner-forwarded-socket-miss", "mangle", "POSTROUTING", "-m owner --socket-exists", dict(), False),
    ("owner-forwarded-not-socket", "mangle", "POSTROUTING", "-m owner ! --socket-exists", dict(), True),
    ("owner-forwarded-uid-miss", "mangle", "POSTROUTING", "-m owner --uid-owner 0", dict(), False),
    ("owner-forwarded-not-uid", "mangle", "POSTROUTING", "-m owner ! --uid-owner 0", dict(), True),
    ("owner-forwarded-suppl-miss", "mangle", "POSTROUTING", "-m owner ! --gid-owner 0 --suppl-groups", dict(),
     False),
]


@pytest.mark.parametrize("tbl,chain,rule,pkt,matched", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_match_row(tbl, chain, rule, pkt, matched):
    node = one_rule_node(tbl, chain, rule)
    assert_row(send(node, **pkt), tbl, chain, matched)


@pytest.mark.parametrize("rule,pkt,words", [
    ("-m state --state ESTABLISHED", dict(), ["NEW", "ESTABLISHED"]),
    ("-m physdev --physdev-in veth+", dict(), ["routed", "--physdev-in veth+"]),
    ("-m physdev --physdev-is-bridged", dict(), ["bridged"]),
])
def test_why_not_forward(rule, pkt, words):
    node = one_rule_node(F, FWD, rule)
    reason = rule_steps(send(node, **pkt), F, FWD)[0].reason
    assert is_sentence(reason) and all(w in reason for w in words), reason


def test_why_not_owner():
    node = one_rule_node("mangle", "POSTROUTING", "-m owner --uid-owner 0")
    reason = rule_steps(send(node), "mangle", "POSTROUTING")[0].reason
    assert "no socket" in reason and "--uid-owner" in reason
    node = one_rule_node(F, "OUTPUT", "-m owner --uid-owner 1000-2000")
    reason = rule_steps(send(node, from_="node"), F, "OUTPUT")[0].reason
    assert "uid 0" in reason and "1000-2000" in reason and "root" in reason


def test_why_not_connmark():
    node = one_rule_node("raw", "PREROUTING", "-m connmark ! --mark 0x1")
    reason = rule_steps(send(node), "raw", "PREROUTING")[0].reason
    assert "no conntrack entry" in reason and "not even negated" in reason
    node = one_rule_node(F, FWD, "-m connmark --mark 0x80/0x80")
    reason = rule_steps(send(node), F, FWD)[0].reason
    assert reason == "connection mark is 0x0, rule wants 0x80/0x80"


def test_state_is_ctstate_under_another_name():
    node = make_node(filter_rules(FWD, "-p udp -m state --state ESTABLISHED -j DROP"))
    first = send(node, proto="udp", dport=53)
    assert first.verdict == "ACCEPT"
    assert node.reply(first).verdict == "DROP"
    rs = kplab.parse_rules(filter_rules(FWD, "-m state --state NEW", "-m conntrack --ctstate NEW"))
    a, b = rs.chain(F, FWD).rules
    assert a != b and a.spec() == "-m state --state NEW" and rs.needs_conntrack


# --------------------------------------------------------------------------
# limit: a token bucket on the node's clock

LIMIT = "-p udp -m limit --limit 1/min --limit-burst 2 -j ACCEPT"


def limit_node(*rules):
    return make_node(table(F, ":FORWARD DROP [0:0]", *(f"-A FORWARD {r}" for r in rules)))


def test_limit_burst_then_one_per_period():
    node = limit_node(LIMIT)
    got = [send(node, proto="udp", dport=53, sport=5000 + i).verdict for i in range(3)]
    assert got == ["ACCEPT", "ACCEPT", "DROP"]
    trace = send(node, proto="udp", dport=53, sport=5003)
    reason = rule_steps(trace, F, FWD)[0].reason
    assert "1/min" in reason and "burst 2" in reason and "60 s" in reason
    node.advance(59.9)
    assert send(node, proto="udp", dport=53, sport=5004).verdict == "DROP"
    node.advance(0.1)
    assert send(node, proto="udp", dport=53, sport=5005).verdict == "ACCEPT"
    node.advance(3600)          # refilled, but never above the burst
    got = [send(node, proto="udp", dport=53, sport=5100 + i).verdict for i in range(3)]
    assert got == ["ACCEPT", "ACCEPT", "DROP"]


def test_limit_kernel_schedule():
    """The schedule the kernel was seen to follow (10/sec, burst 2, sends at
    these times in seconds): a refused packet takes nothing, so the refill
    keeps adding up across it."""
    node = limit_node("-p udp -m limit --limit 10/sec --limit-burst 2 -j ACCEPT")
    times = [0.015, 0.018, 0.023, 0.157, 0.162, 0.216, 0.292, 0.298]
    want = ["ACCEPT", "ACCEPT", "DROP", "ACCEPT", "DROP", "ACCEPT", "DROP", "DROP"]
    got, now = [], 0.0
    for k, t in enumerate(times):
        node.advance(t - now)
        now = t
        got.append(send(node, proto="udp", dport=53, sport=6000 + k).verdict)
    assert got == want


def test_limit_buckets_are_per_rule_and_only_spent_when_reached():
    node = limit_node("-p tcp -j ACCEPT", LIMIT, LIMIT,
                      "-p udp -m udp --dport 54 -m limit --limit 1/min --limit-burst 2 -j ACCEPT")
    # tcp never reaches the limits; udp 53 spends the first rule's bucket only
    for i in range(5):
        assert send(node, sport=7000 + i).verdict == "ACCEPT"
    got = [send(node, proto="udp", dport=53, sport=7100 + i).verdict for i in range(5)]
    # two from the first rule's bucket, two from the second (identical) rule's own, then none
    assert got == ["ACCEPT"] * 4 + ["DROP"]
    hits = [rule_steps(send(node, proto="udp", dport=54, sport=7200 + i), F, FWD)[-1].index for i in range(2)]
    assert hits == [4, 4]           # both earlier buckets are empty; the fourth rule's is still full



def test_limit_what_if_and_all_paths_do_not_spend():
    node = limit_node("-p udp -m limit --limit 1/hour --limit-burst 1 -j ACCEPT")
    pkt = node.packet("client", REMOTE1, "udp", 53)
    assert node.send(pkt, "client", commit=False).verdict == "ACCEPT"
    assert [t.verdict for t in node.all_paths(pkt, "client")] == ["ACCEPT"]
    assert node.send(pkt, "client").verdict == "ACCEPT"
    assert node.send(pkt.replace(sport=1), "client").verdict == "DROP"


# --------------------------------------------------------------------------
# connmark / CONNMARK

def test_connmark_set_is_seen_later_and_kept_in_the_entry():
    node = make_node(table("mangle", "-A PREROUTING -i eth0 -j CONNMARK --set-xmark 0x80/0x80")
                     + filter_rules(FWD, "-m connmark --mark 0x80/0x80 -j ACCEPT", "-j DROP"))
    t = send(node, from_="external", dst=BACKEND1)
    assert t.verdict == "ACCEPT" and t.entry.mark == 0x80
    assert "mark=128" in node.conntrack_text()
    assert send(node).verdict == "DROP"                    # from a Pod: mark 0
    assert node.reply(t).verdict == "ACCEPT"               # the reply belongs to the marked connection


def test_connmark_restore_and_save_with_masks():
    node = make_node(table("mangle",
                           "-A PREROUTING -i eth0 -j CONNMARK --set-mark 0x1234",
                           "-A PREROUTING -i veth+ -j MARK --set-mark 0xf0000",
                           "-A PREROUTING -i veth+ -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xf0",
                           "-A POSTROUTING -o eth0 -j CONNMARK --save-mark --nfmask 0xf0000 --ctmask 0xff0000"))
    t = send(node, from_="external", dst=BACKEND1)
    assert t.entry.mark == 0x1234
    r = node.reply(t)
    # packet mark: (0xf0000 & ~0xff) ^ (0x1234 & 0xf0) = 0xf0030
    assert r.final.mark == 0xF0030
    # ctmark after save: (0x1234 & ~0xff0000) ^ (0xf0030 & 0xf0000) = 0xf1234
    assert r.entry.mark == 0xF1234


def test_connmark_shifts():
    node = make_node(table("mangle",
                           "-A PREROUTING -j MARK --set-mark 0x3",
                           "-A PREROUTING -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff00 --left-shift-mark 8",
                           "-A FORWARD -j CONNMARK --restore-mark --nfmask 0xf --ctmask 0xff00 --right-shift-mark 8",
                           "-A FORWARD -j CONNMARK --set-xmark 0x1/0x0 --left-shift-mark 4"))
    t = send(node)
    assert t.final.mark == 0x3
    # save: 0 ^ (3 << 8) = 0x300; set: ((0x300 & ~0) ^ 1) << 4 = 0x3010
    assert t.entry.mark == 0x3010


def test_connmark_target_without_entry_does_nothing():
    node = make_node(table("raw", "-A PREROUTING -j CONNMARK --set-mark 0x5")
                     + table("mangle", "-A PREROUTING -m connmark --mark 0x5 -j DROP"))
    t = send(node)
    assert t.verdict == "ACCEPT" and t.entry.mark == 0


def test_connmark_of_a_dropped_new_packet_is_lost_of_a_confirmed_one_kept():
    rules = (table("mangle", "-A PREROUTING -p udp -j CONNMARK --or-mark 0x1",
                   "-A PREROUTING -p udp -m connmark --mark 0x3 -j CONNMARK --or-mark 0x4")
             + filter_rules(FWD, "-p udp --dport 53 -m connmark --mark 0x1 -m state --state ESTABLISHED -j DROP"))
    node = make_node(rules)
    first = send(node, proto="udp", dport=53)
    assert first.verdict == "ACCEPT" and first.entry.mark == 0x1
    reply = node.reply(first)
    assert reply.verdict == "ACCEPT"
    # the third packet is ESTABLISHED: dropped in FORWARD, but its mangle change stays
    third = send(node, proto="udp", dport=53)
    assert third.verdict == "DROP"
    entry = next(iter(node.state.conntrack.entries.values()))
    assert entry.mark == 0x1                # or-mark 0x1 again: unchanged
    node2 = make_node(table("mangle", "-A PREROUTING -p udp -j CONNMARK --set-mark 0x9")
                      + filter_rules(FWD, "-p udp -j DROP"))
    assert send(node2, proto="udp", dport=53).verdict == "DROP"
    assert node2.conntrack_text() == ""     # never confirmed: the mark went with it


def test_connmark_change_on_a_confirmed_entry_survives_a_later_drop():
    node = make_node(table("mangle", "-A PREROUTING -p udp -m state --state ESTABLISHED -j CONNMARK --set-mark 0x7")
                     + filter_rules(FWD, "-p udp -m state --state ESTABLISHED -j DROP"))
    first = send(node, proto="udp", dport=53)
    node.reply(first)                        # dropped (ESTABLISHED), but CONNMARK ran first
    entry = next(iter(node.state.conntrack.entries.values()))
    assert entry.mark == 0x7


def test_connmark_from_a_loaded_conntrack_table():
    node = make_node(filter_rules(FWD, "-m connmark --mark 0x80/0x80 -j DROP"))
    node.load_conntrack("udp      17 29 src=10.244.1.7 dst=10.244.2.5 sport=40000 dport=53 [UNREPLIED] "
                        "src=10.244.2.5 dst=10.244.1.7 sport=53 dport=40000 mark=128 use=1\n")
    assert send(node, proto="udp", dport=53).verdict == "DROP"
    assert send(node, proto="udp", dport=54).verdict == "ACCEPT"


# --------------------------------------------------------------------------
# NFLOG

def test_nflog_is_non_terminating_and_recorded():
    node = make_node(filter_rules(FWD, '-j NFLOG --nflog-group 5 --nflog-prefix "fwd: "', "-p tcp --dport 80 -j DROP"))
    t = send(node)
    assert t.verdict == "DROP"
    assert [s.verdict for s in t.matched_rules] == ["CONTINUE", "DROP"]
    assert node.state.nflog == [(5, node.state.nflog[0][1])] and node.state.nflog[0][1].startswith("fwd: IN=veth")
    assert node.state.log == []
    send(node, dport=443)
    assert len(node.state.nflog) == 2


# --------------------------------------------------------------------------
# set and socket stay opaque: named with their line; a path that does not reach them goes on

DUMP = """\
# Generated by iptables-save v1.8.9 (nf_tables)
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DIVERT - [0:0]
[12:720] -A PREROUTING -d 192.168.0.2/32 -p tcp -m tcp --dport 8443 -m socket --transparent -j DIVERT
-A PREROUTING -m physdev ! --physdev-is-bridged -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff
-A DIVERT -j MARK --set-xmark 0x1/0xffffffff
-A DIVERT -j ACCEPT
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m set --match-set ALLOWED-SSH src -m tcp --dport 22 -j ACCEPT
-A INPUT -m limit --limit 5/min -j NFLOG --nflog-prefix "input drop: " --nflog-group 1
-A FORWARD -m set ! --match-set cali40all-ipam-pools dst -j DROP
-A OUTPUT -m owner --uid-owner 0 -j ACCEPT
COMMIT
"""


def test_opaque_modules_are_named_with_their_line():
    with pytest.raises(ParseError) as info:
        kplab.parse_rules(DUMP)
    assert info.value.line == 9 and "socket" in str(info.value)
    rs = kplab.parse_rules(DUMP, unsupported="opaque")
    assert [w.split(": ", 1)[1] for w in rs.warnings] == [
        "-m socket is not modelled by kplab (loaded as opaque)",
        "-m set is not modelled by kplab (loaded as opaque)",
        "-m set is not modelled by kplab (loaded as opaque)"]
    assert [w.split(":")[1] for w in rs.warnings] == ["9", "19", "21"]
    # the opaque rules print back as written
    assert "-A FORWARD -m set ! --match-set cali40all-ipam-pools dst -j DROP" in rs.save()
    assert "-m socket --transparent -j DIVERT" in rs.save()


def test_a_path_that_does_not_reach_an_opaque_rule_goes_on():
    node = kplab.Node(kplab.parse_rules(DUMP, unsupported="opaque"))
    # the node's own packet: no opaque rule on its way out
    t = node.send_from("node", REMOTE1, "tcp", 80)
    assert t.verdict == "ACCEPT" and not t.warnings
    assert [(s.table, s.chain, s.index) for s in t.matched_rules] == [("filter", "OUTPUT", 1)]
    # the reply misses the socket rule on its port and is accepted by INPUT rule 1 (ESTABLISHED)
    # before the -m set rule
    r = node.reply(t)
    assert r.verdict == "ACCEPT" and r.delivered_to == "node" and not r.warnings
    assert [(s.table, s.chain, s.index) for s in r.matched_rules] == [("mangle", "PREROUTING", 2),
                                                                        ("filter", "INPUT", 1)]


def test_a_path_that_reaches_an_opaque_rule_names_it():
    node = kplab.Node(kplab.parse_rules(DUMP, unsupported="opaque"))
    with pytest.raises(UnsupportedError) as info:
        node.send_from("external", NODE_IP, "tcp", 8443)
    msg = str(info.value)
    assert "-m socket" in msg and "mangle PREROUTING rule #1 (line 9)" in msg
    with pytest.raises(UnsupportedError) as info:
        node.send_from("client", BACKEND2, "tcp", 80)
    assert "-m set" in str(info.value) and "filter FORWARD rule #1 (line 21)" in str(info.value)
    node = kplab.Node(kplab.parse_rules(DUMP, unsupported="opaque"), assume_unsupported="nomatch")
    t = node.send_from("external", NODE_IP, "tcp", 8443)
    assert t.verdict == "DROP"                     # the policy, after NFLOG (within the limit)
    assert [(s.table, s.chain, s.index, s.verdict) for s in t.matched_rules] == [
        ("mangle", "PREROUTING", 2, "CONTINUE"), ("filter", "INPUT", 3, "CONTINUE")]
    assert len(t.warnings) == 2 and "line 9" in t.warnings[0] and "line 19" in t.warnings[1]
    assert node.state.nflog[0][0] == 1 and node.state.nflog[0][1].startswith("input drop: ")
