"""The check builders on their own."""
from kplab.exercises import Probe, choice, number, rules, sequence
from kplab.exercises.checks import as_ruleset_text


def test_choice_normalises_and_explains():
    check = choice("DROP", why={"accept": "ACCEPT is the policy, but a rule fired first."})
    assert check(" drop. ").correct
    fb = check("ACCEPT")
    assert not fb.correct and "policy" in fb.message
    assert not check(3).correct


def test_choice_from_the_simulator_is_lazy():
    calls = []
    check = choice(lambda: calls.append(1) or "nat")
    assert calls == []
    assert check("NAT").correct and calls == [1]


def test_number_accepts_fractions_and_says_low_or_high():
    check = number(1 / 3, tolerance=0.01, low="too few", high="too many")
    assert check("1/3").correct and check(0.333).correct
    assert check(0.2).message == "too few" and check("1/2").message == "too many"
    assert not check("a third").correct


def test_sequence_says_what_is_out_of_order():
    check = sequence(["raw", "mangle", "nat"], what="tables")
    assert check("raw, mangle, nat").correct
    assert "position 2" in check(["raw", "nat", "mangle"]).message
    assert "Missing: nat" in check(["raw", "mangle"]).message


BLOCK_SSH = [
    Probe("SSH from outside", "external", "192.168.0.2", "tcp", 22, verdict="DROP",
          wrong="SSH to the node still gets in."),
    Probe("DNS over UDP port 22?", "external", "192.168.0.2", "udp", 22, verdict="ACCEPT",
          wrong="Your rule also drops UDP to port 22: add -p tcp."),
    Probe("HTTP to the node", "external", "192.168.0.2", "tcp", 80, verdict="ACCEPT",
          wrong="HTTP is dropped too: match only port 22 (--dport 22)."),
]


def test_rules_check_runs_probes_with_specific_feedback():
    check = rules(BLOCK_SSH, table="filter")
    assert check("-A INPUT -p tcp --dport 22 -j DROP").correct
    assert check("iptables -A INPUT -p tcp --dport 22 -j DROP").correct
    fb = check("-A INPUT -m multiport -p udp,tcp --dports 22 -j DROP")
    assert fb.correct is False
    fb = check("-A INPUT --dport 22 -j DROP")
    assert fb.correct is False and "line 1" in fb.message.lower() or "your rules do not load" in fb.message.lower()
    fb = check("-A INPUT -p tcp -j DROP")
    assert fb.correct is False and "--dport 22" in fb.message
    assert any(d.startswith("✗ HTTP") for d in fb.details)


def test_as_ruleset_text_forms():
    assert as_ruleset_text("iptables -t nat -A OUTPUT -j ACCEPT") == "*nat\n-A OUTPUT -j ACCEPT\nCOMMIT\n"
    base = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
    assert as_ruleset_text("-A INPUT -j DROP", base) == "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n"
    full = "*filter\n-A INPUT -j DROP\nCOMMIT"
    assert as_ruleset_text(full, base) == full + "\n"
