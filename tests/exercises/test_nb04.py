"""Notebook 4's exercises: the checks written beyond the generic builders."""
import kplab
from kplab.exercises import nb04


def test_after_return_is_computed_from_the_trace():
    assert nb04._after_return() == nb04.goto_return.answer == "FORWARD #2"


def test_next_after_return_with_a_jump_lands_in_the_caller():
    jumped = nb04.GOTO_RULES.replace("-g WEB", "-j WEB")
    tr = kplab.trace(jumped, "client", nb04.BACKEND2, "tcp", 80)
    assert nb04.next_after_return(tr) == "FROM-PODS #2"


def test_next_after_return_from_a_goto_off_a_builtin_is_the_policy():
    text = ("*filter\n:FORWARD DROP [0:0]\n:B - [0:0]\n-A FORWARD -g B\n-A FORWARD -j ACCEPT\n"
            "-A B -j RETURN\nCOMMIT\n")
    tr = kplab.trace(text, "client", nb04.BACKEND1, "tcp", 80)
    assert nb04.next_after_return(tr) == "FORWARD policy"
    assert tr.verdict == "DROP"


def test_next_after_return_without_return_is_none():
    tr = kplab.trace("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n", "client", nb04.BACKEND1, "tcp", 80)
    assert nb04.next_after_return(tr) is None


def test_goto_return_accepts_other_spellings():
    for spelling in ("forward #2", "FORWARD 2", "forward rule 2", "FORWARD#2"):
        assert nb04.goto_return.check(spelling).correct is True, spelling


def test_chain_firewall_accepts_goto_and_one_shared_chain():
    by_goto = nb04.FIREWALL_ANSWER.replace("-j TO-BACKEND", "-g TO-BACKEND")
    assert nb04.chain_firewall.check(by_goto).correct is True
    shared = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:TO-PODS - [0:0]
-A FORWARD -s 10.244.1.0/24 -j ACCEPT
-A FORWARD -d 10.244.1.0/24 -j TO-PODS
-A TO-PODS -d 10.244.1.3 -p tcp --dport 8080 -j ACCEPT
-A TO-PODS -s 10.244.0.0/16 -d 10.244.1.4 -p tcp --dport 5432 -j ACCEPT
COMMIT
"""
    assert nb04.chain_firewall.check(shared).correct is True


def test_chain_firewall_wants_a_drop_policy_even_with_a_final_drop_rule():
    text = nb04.FIREWALL_ANSWER.replace(":FORWARD DROP", ":FORWARD ACCEPT").replace(
        "-A TO-BACKEND1 -p tcp", "-A FORWARD -j DROP\n-A TO-BACKEND1 -p tcp")
    fb = nb04.chain_firewall.check(text)
    assert fb.correct is False and "policy" in str(fb)


def test_goto_bug_accepts_swapping_the_forward_rules():
    swapped = nb04.GOTO_BROKEN.replace(
        "-A FORWARD -s 10.244.1.0/24 -g POD-EGRESS\n-A FORWARD -d 10.244.1.0/24 -p tcp --dport 8080 -j ACCEPT\n",
        "-A FORWARD -d 10.244.1.0/24 -p tcp --dport 8080 -j ACCEPT\n-A FORWARD -s 10.244.1.0/24 -g POD-EGRESS\n")
    assert nb04.goto_bug.check(swapped).correct is True
