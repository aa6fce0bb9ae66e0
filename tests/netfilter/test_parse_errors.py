"""Every kind of refusal, with the line it names (and what the kernel accepts
that looks wrong). Rows were checked against iptables-restore 1.8.9 (nf_tables)
on this machine's kernel where marked "kernel"."""
from __future__ import annotations

import pytest

import kplab
from kplab import ParseError, RulesetError, UnsupportedError
from tests.netfilter.conftest import REMOTE1, make_node

# (id, text, error class, substrings of the message, line)
REFUSED = [
    ("unknown-table", "*filtre\nCOMMIT\n", ParseError, ["filtre"], 1),
    ("rule-before-table", "-A INPUT -j DROP\n*filter\nCOMMIT\n", ParseError, ["table"], 1),
    ("commit-outside-table", "*filter\nCOMMIT\nCOMMIT\n", ParseError, ["COMMIT"], 3),
    ("next-table-without-commit", "*filter\n-A INPUT -j DROP\n*nat\nCOMMIT\n", ParseError, ["COMMIT"], 3),
    ("bad-address", "*filter\n-A INPUT -s 10.0.0.300 -j DROP\nCOMMIT\n", ParseError, ["10.0.0.300"], 2),
    ("bad-address-d", "*filter\n\n-A INPUT -d 10.0.0.1.2 -j DROP\nCOMMIT\n", ParseError, ["10.0.0.1.2"], 3),
    ("bad-cidr-33", "*filter\n-A INPUT -s 10.0.0.0/33 -j DROP\nCOMMIT\n", ParseError, ["33"], 2),   # kernel
    ("bad-cidr-mask", "*filter\n-A INPUT -s 10.0.0.0/255.0.x.0 -j DROP\nCOMMIT\n", ParseError, ["mask"], 2),
    ("port-70000", "*filter\n-A INPUT -p tcp --dport 70000 -j DROP\nCOMMIT\n", ParseError, ["70000"], 2),  # kernel
    ("port-range-70000", "*filter\n-A INPUT -p tcp --sport 1:70000 -j DROP\nCOMMIT\n", ParseError, ["70000"], 2),
    ("multiport-70000", "*filter\n-A INPUT -p tcp -m multiport --dports 80,70000 -j DROP\nCOMMIT\n",
     ParseError, ["70000"], 2),
    ("dnat-port-70000", "*nat\n-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:70000\nCOMMIT\n",
     ParseError, ["70000"], 2),
    ("probability-1.5", "*filter\n-A INPUT -m statistic --mode random --probability 1.5 -j DROP\nCOMMIT\n",
     ParseError, ["probability"], 2),
    ("probability-negative", "*filter\n-A INPUT -m statistic --mode random --probability -0.1 -j DROP\nCOMMIT\n",
     ParseError, ["probability"], 2),
    ("unknown-option", "*filter\n-A INPUT -p tcp --dprot 80 -j DROP\nCOMMIT\n", ParseError, ["--dprot"], 2),
    ("option-of-unloaded-module", "*filter\n-A INPUT --ctstate NEW -j DROP\nCOMMIT\n", ParseError, ["--ctstate"], 2),
    ("option-without-value", "*filter\n-A INPUT -p tcp --dport\nCOMMIT\n", ParseError, ["--dport"], 2),
    ("generic-without-value", "*filter\n-A INPUT -s\nCOMMIT\n", ParseError, ["-s"], 2),
    ("jump-without-value", "*filter\n-A INPUT -j\nCOMMIT\n", ParseError, ["-j"], 2),
    ("quote-glued-to-word", '*filter\n-A INPUT -m comment --comment "a"b -j DROP\nCOMMIT\n', ParseError, ["b"], 2),
    ("jump-to-missing-chain", "*filter\n-A INPUT -j NOPE\nCOMMIT\n", ParseError, ["NOPE"], 2),
    ("goto-missing-chain", "*filter\n-A INPUT -g NOPE\nCOMMIT\n", ParseError, ["NOPE"], 2),
    ("append-to-missing-chain", "*filter\n-A NOPE -j DROP\nCOMMIT\n", ParseError, ["NOPE"], 2),
    ("reachable-loop", "*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\nCOMMIT\n",
     RulesetError, ["loop"], 6),                                                          # kernel: line 6
    ("reachable-self-jump", "*filter\n:A - [0:0]\n-A FORWARD -j A\n-A A -j A\nCOMMIT\n", RulesetError, ["loop"], 4),
    ("reachable-goto-loop", "*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -g A\n-A A -g B\n-A B -g A\nCOMMIT\n",
     RulesetError, ["loop"], 6),
    ("dnat-in-nat-input", "*nat\n-A INPUT -p tcp -j DNAT --to-destination 10.0.0.1\nCOMMIT\n",
     RulesetError, ["DNAT", "INPUT"], 2),
    ("dnat-via-user-chain-from-postrouting",
     "*nat\n:X - [0:0]\n-A POSTROUTING -j X\n-A X -p tcp -j DNAT --to-destination 10.0.0.1\nCOMMIT\n",
     RulesetError, ["DNAT", "POSTROUTING"], 4),
    ("dnat-via-two-user-chains-from-postrouting",
     "*nat\n:X - [0:0]\n:Y - [0:0]\n-A PREROUTING -j X\n-A POSTROUTING -j Y\n-A Y -j X\n"
     "-A X -p tcp -j DNAT --to-destination 10.0.0.1\nCOMMIT\n",
     RulesetError, ["DNAT", "POSTROUTING"], 7),
    ("masquerade-in-nat-output", "*nat\n-A OUTPUT -j MASQUERADE\nCOMMIT\n", RulesetError, ["MASQUERADE"], 2),
    ("snat-in-nat-prerouting", "*nat\n-A PREROUTING -j SNAT --to-source 10.0.0.1\nCOMMIT\n",
     RulesetError, ["SNAT", "PREROUTING"], 2),
    ("dnat-in-filter", "*filter\n-A INPUT -j DNAT --to-destination 10.0.0.1\nCOMMIT\n", RulesetError, ["DNAT"], 2),
    ("reject-in-mangle", "*mangle\n-A INPUT -j REJECT\nCOMMIT\n", RulesetError, ["REJECT", "mangle"], 2),
    ("reject-in-raw", "*raw\n-A PREROUTING -j REJECT\nCOMMIT\n", RulesetError, ["REJECT"], 2),
    ("reject-in-nat", "*nat\n-A PREROUTING -j REJECT\nCOMMIT\n", RulesetError, ["REJECT"], 2),
    ("reject-in-security", "*security\n-A INPUT -j REJECT\nCOMMIT\n", RulesetError, ["REJECT"], 2),
    ("reject-in-mangle-user-chain", "*mangle\n:X - [0:0]\n-A X -j REJECT\nCOMMIT\n", RulesetError, ["REJECT"], 3),
    ("in-iface-in-output", "*filter\n-A OUTPUT -i eth0 -j DROP\nCOMMIT\n", ParseError, ["-i"], 2),
    ("in-iface-in-postrouting", "*nat\n-A POSTROUTING -i eth0 -j ACCEPT\nCOMMIT\n", ParseError, ["-i"], 2),
    ("out-iface-in-prerouting", "*mangle\n-A PREROUTING -o eth0 -j ACCEPT\nCOMMIT\n", ParseError, ["-o"], 2),
    ("out-iface-in-input", "*filter\n-A INPUT ! -o eth0 -j ACCEPT\nCOMMIT\n", ParseError, ["-o"], 2),
    ("crlf", "*filter\r\n-A INPUT -j DROP\r\nCOMMIT\r\n", ParseError, ["CRLF"], 1),             # kernel: line 1
    ("crlf-later-line", "*filter\n-A INPUT -j DROP\r\nCOMMIT\n", ParseError, ["carriage return"], 2),  # kernel: 2
    ("bom", "\ufeff*filter\nCOMMIT\n", ParseError, ["BOM"], 1),                                 # kernel: line 1
    ("nul-byte", "*filter\n-A INPUT\x00 -j DROP\nCOMMIT\n", ParseError, ["binary"], 2),
    ("garbage", bytes(range(256)).decode("latin-1"), ParseError, [], 1),
    ("garbage-after-a-table", "*filter\n" + bytes(range(256)).decode("latin-1"), ParseError, [], 2),
    ("bad-policy", "*filter\n:INPUT REJECT [0:0]\nCOMMIT\n", ParseError, ["REJECT"], 2),
    ("counters-without-bracket", "*filter\n[1:0 -A INPUT -j DROP\nCOMMIT\n", ParseError, ["counters"], 2),  # kernel
    ("counters-without-rule", "*filter\n[0:0]\nCOMMIT\n", ParseError, [], 2),
    ("empty-interface", '*filter\n-A FORWARD -i "" -j DROP\nCOMMIT\n', ParseError, ["interface"], 2),  # kernel
    ("long-chain-name", "*filter\n:" + "X" * 29 + " - [0:0]\nCOMMIT\n", ParseError, ["X" * 29], 2),
    ("unknown-command", "*filter\n-Q INPUT\nCOMMIT\n", ParseError, ["-Q"], 2),
    ("delete-builtin", "*filter\n-X INPUT\nCOMMIT\n", ParseError, ["INPUT"], 2),
    ("reject-tcp-reset-udp", "*filter\n-A INPUT -p udp -j REJECT --reject-with tcp-reset\nCOMMIT\n",
     ParseError, ["tcp"], 2),
    ("tcp-option-without-p", "*filter\n-A INPUT --dport 80 -j DROP\nCOMMIT\n", ParseError, ["--dport"], 2),
    ("limit-iface-in-output",
     "*filter\n-A OUTPUT -m addrtype --dst-type LOCAL --limit-iface-in -j DROP\nCOMMIT\n", RulesetError,
     ["limit-iface-in"], 2),
]


@pytest.mark.parametrize("text,cls,words,line", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_with_line(text, cls, words, line):
    with pytest.raises(cls) as info:
        kplab.parse_rules(text)
    e = info.value
    assert e.line == line, str(e)
    msg = str(e)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert msg.startswith(f"line {line}: ")
    assert "\n" not in msg


def test_source_names_the_file_in_the_message():
    with pytest.raises(ParseError) as info:
        kplab.parse_rules("*filter\n-A INPUT -s 1.2.3.400\nCOMMIT\n", source="node.rules")
    assert str(info.value).startswith("node.rules:2: ")
    assert info.value.file == "node.rules"


def test_missing_commit_at_end_of_file():
    """The table is never committed; iptables-restore names the line after the
    last one ("COMMIT expected at line 3"), kplab may name the last line."""
    with pytest.raises(ParseError) as info:
        kplab.parse_rules("*filter\n-A INPUT -j DROP\n")
    assert "COMMIT" in str(info.value)
    assert info.value.line in (2, 3)


def test_load_refuses_non_utf8(tmp_path):
    p = tmp_path / "garbage.rules"
    p.write_bytes(b"*filter\n-A INPUT -m comment --comment \xff\xfe\x00\x81 -j DROP\nCOMMIT\n")
    with pytest.raises(ParseError) as info:
        kplab.load_rules(str(p))
    assert "garbage.rules" in str(info.value)


def test_load_missing_file_is_a_kplab_error(tmp_path):
    with pytest.raises(kplab.KplabError):
        kplab.load_rules(str(tmp_path / "nope.rules"))


# --------------------------------------------------------------------------
# What looks wrong but the kernel accepts

ACCEPTED = [
    ("unreachable-loop", "*filter\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\nCOMMIT\n"),       # kernel
    ("unreachable-self-jump", "*filter\n:A - [0:0]\n-A A -j A\nCOMMIT\n"),                     # kernel
    ("diamond-is-no-loop", "*filter\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n-A INPUT -j A\n-A INPUT -j B\n"
                           "-A A -j C\n-A B -j C\nCOMMIT\n"),
    ("dnat-via-user-chain-from-prerouting",
     "*nat\n:X - [0:0]\n-A PREROUTING -j X\n-A OUTPUT -j X\n-A X -p tcp -j DNAT --to-destination 10.0.0.1\nCOMMIT\n"),
    ("dnat-in-unreachable-user-chain", "*nat\n:X - [0:0]\n-A X -p tcp -j DNAT --to-destination 10.0.0.1\nCOMMIT\n"),
    ("snat-in-nat-input", "*nat\n-A INPUT -j SNAT --to-source 10.0.0.1\nCOMMIT\n"),
    ("in-iface-in-user-chain-from-output",
     "*filter\n:X - [0:0]\n-A OUTPUT -j X\n-A X -i eth0 -j DROP\nCOMMIT\n"),
    ("out-iface-in-user-chain-from-input",
     "*filter\n:X - [0:0]\n-A INPUT -j X\n-A X -o eth0 -j DROP\nCOMMIT\n"),
    ("reject-in-filter-user-chain", "*filter\n:X - [0:0]\n-A FORWARD -j X\n-A X -j REJECT\nCOMMIT\n"),
    ("empty-file", ""),
    ("comments-only", "# Generated by iptables-save\n# nothing\n"),
    ("counters-prefix", "*filter\n:INPUT ACCEPT [10:600]\n[3:180] -A INPUT -j DROP\nCOMMIT\n"),
    # iptables completes a short address with zero bytes: -d 10.0.0 is 10.0.0.0/32
    ("short-address", "*filter\n\n-A INPUT -d 10.0.0 -j DROP\nCOMMIT\n"),                           # kernel
    # iptables-restore reads counters only with --counters: without it their values are not checked
    ("counters-not-numbers", "*filter\n[1:x] -A INPUT -j DROP\nCOMMIT\n"),                     # kernel
    ("unbalanced-quote", '*filter\n-A INPUT -m comment --comment "abc -j DROP\nCOMMIT\n'),       # kernel
]


@pytest.mark.parametrize("text", [r[1] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_accepted(text):
    kplab.parse_rules(text)


def test_unbalanced_quote_takes_the_rest_of_the_line():
    """iptables-restore 1.8.9 (kernel seen) loads it: the comment is the rest
    of the line, newline included, and the rule has no target."""
    rs = kplab.parse_rules('*filter\n-A INPUT -m comment --comment "abc -j DROP\nCOMMIT\n')
    rule = rs.chain("filter", "INPUT").rules[0]
    assert rule.target is None
    assert kplab.save_rules(rs).endswith('-A INPUT -m comment --comment "abc -j DROP\n"\nCOMMIT\n')


def test_in_iface_in_user_chain_from_output_never_matches_local_packets():
    node = make_node("*filter\n:X - [0:0]\n-A OUTPUT -j X\n-A X -i eth0 -j DROP\nCOMMIT\n")
    assert node.send_from("node", REMOTE1, "tcp", 80).verdict == "ACCEPT"


# --------------------------------------------------------------------------
# Modules kplab does not model (-m set)

SET_RULES = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
             "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"
             "-A FORWARD -m set --match-set blocked src -j DROP\nCOMMIT\n")


def test_unsupported_module_refused_by_default():
    with pytest.raises(ParseError) as info:
        kplab.parse_rules(SET_RULES)
    assert info.value.line == 5
    assert "set" in str(info.value)
    with pytest.raises(ParseError):
        kplab.parse_rules(SET_RULES, unsupported="error")


def test_unsupported_module_loaded_as_opaque_with_a_warning():
    rs = kplab.parse_rules(SET_RULES, unsupported="opaque")
    assert len(rs.warnings) == 1
    assert "set" in rs.warnings[0] and ":5" in rs.warnings[0]
    rule = rs.chain("filter", "FORWARD").rules[0]
    assert not rule.supported
    assert rule.text("FORWARD") == "-A FORWARD -m set --match-set blocked src -j DROP"


def test_trace_reaching_an_opaque_rule_raises():
    rs = kplab.parse_rules(SET_RULES, unsupported="opaque")
    node = kplab.Node(rs)
    with pytest.raises(UnsupportedError) as info:
        node.send_from("client", REMOTE1, "tcp", 80)
    assert "set" in str(info.value)
    # a walk that never reaches it is fine
    assert node.send_from("client", "192.168.0.2", "tcp", 22).verdict == "ACCEPT"


@pytest.mark.parametrize("assume,verdict", [("match", "DROP"), ("nomatch", "ACCEPT")])
def test_trace_with_an_assumption(assume, verdict):
    rs = kplab.parse_rules(SET_RULES, unsupported="opaque")
    node = kplab.Node(rs, assume_unsupported=assume)
    t = node.send_from("client", REMOTE1, "tcp", 80)
    assert t.verdict == verdict
    assert t.warnings and "set" in t.warnings[0]


def test_bad_assumption_is_refused():
    with pytest.raises(kplab.KplabError):
        kplab.Node(kplab.parse_rules(SET_RULES, unsupported="opaque"), assume_unsupported="maybe")


def test_unsupported_target_opaque():
    text = "*mangle\n-A PREROUTING -j TPROXY --on-port 1 --tproxy-mark 0x1/0x1\nCOMMIT\n"
    with pytest.raises(ParseError) as info:
        kplab.parse_rules(text)
    assert "TPROXY" in str(info.value) and info.value.line == 2
    rs = kplab.parse_rules(text, unsupported="opaque")
    assert rs.warnings
    with pytest.raises(UnsupportedError):
        kplab.Node(rs).send_from("client", REMOTE1, "tcp", 80)
    t = kplab.Node(rs, assume_unsupported="nomatch").send_from("client", REMOTE1, "tcp", 80)
    assert t.verdict == "ACCEPT" and t.warnings


# Seen on this machine's kernel (iptables 1.8.9, nf_tables): the udp match keeps
# the low 16 bits of a port above 65535, where tcp refuses it.
@pytest.mark.parametrize("rule, saved", [
    ("-p udp --dport 70000", "-p udp -m udp --dport 4464"),
    ("-p udp --sport 1:70000", "-p udp -m udp --sport 1:4464"),
    ("-p udp --dport 65536", "-p udp -m udp --dport 0"),
    ("-p tcp ! --sport 0:1023", "-p tcp -m tcp --sport 1024:65535"),
    ("-p tcp ! --sport 0", "-p tcp -m tcp ! --sport 0"),
    ("! -p tcp --dport 80", "! -p tcp -m tcp --dport 80"),
    ("-s 0.0.0.0/0 -j ACCEPT", "-j ACCEPT"),
    ("-d 1.2.3.4/0", ""),
])
def test_kernel_normalisations(rule, saved):
    from kplab.netfilter import parse
    rs = parse(f"*filter\n-A INPUT {rule}\nCOMMIT\n")
    assert rs.chain("filter", "INPUT").rules[0].spec() == saved


@pytest.mark.parametrize("text, words", [
    ("*filter\n-A INPUT ! -d 1.2.3.4/0\nCOMMIT\n", ["never matches"]),
    ("*filter\n-A INPUT -m conntrack ! --ctdir REPLY\nCOMMIT\n", ["cannot be inverted"]),
    ("*nat\n-A PREROUTING -p udp -j DROP\nCOMMIT\n", ["nat table"]),
])
def test_kernel_refusals(text, words):
    from kplab.netfilter import parse
    with pytest.raises(ParseError) as e:
        parse(text)
    assert e.value.line == 2 and all(w in str(e.value) for w in words)
