"""Notebook 1's helpers (hooks_met, path_kind, hook_table) and the hook check's own explanations."""
import pytest

import kplab
from kplab.exercises import nb01

NODE = kplab.standard_node(nb01.WATCH_RULES)


@pytest.mark.parametrize("from_, dst, proto, dport, hooks, kind", [
    ("client", "10.244.2.5", "tcp", 80, ["PREROUTING", "FORWARD", "POSTROUTING"], "forwarded"),
    ("client", "10.244.1.3", "tcp", 8080, ["PREROUTING", "FORWARD", "POSTROUTING"], "forwarded"),
    ("client", "198.51.100.10", "tcp", 443, ["PREROUTING", "FORWARD", "POSTROUTING"], "forwarded"),
    ("peer", "192.168.0.2", "tcp", 10250, ["PREROUTING", "INPUT"], "for this host"),
    ("client", "192.168.0.2", "udp", 53, ["PREROUTING", "INPUT"], "for this host"),
    ("node", "10.244.1.3", "tcp", 8080, ["OUTPUT", "POSTROUTING"], "created by this host"),
    ("node", "192.168.0.2", "tcp", 22, ["OUTPUT", "POSTROUTING", "PREROUTING", "INPUT"],
     "created by this host, for itself"),
])
def test_hooks_met_and_path_kind(from_, dst, proto, dport, hooks, kind):
    trace = NODE.send_from(from_, dst, proto, dport)
    assert nb01.hooks_met(trace) == hooks
    assert nb01.path_kind(trace) == kind


def test_hooks_met_sees_only_hooks_with_chains():
    trace = kplab.standard_node("*filter\n-A FORWARD -j ACCEPT\nCOMMIT\n").send_from("client", "10.244.2.5", "tcp", 80)
    assert nb01.hooks_met(trace) == ["FORWARD"]


def test_hook_table_numbers_the_hooks_in_order():
    text = nb01.hook_table({
        "fwd": NODE.send_from("client", "10.244.2.5", "tcp", 80),
        "self": NODE.send_from("node", "192.168.0.2", "tcp", 22),
    })
    lines = text.splitlines()
    assert lines[0].split() == ["packet", "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "path"]
    assert lines[2].split() == ["fwd", "1", ".", "2", ".", "3", "forwarded"]
    assert lines[3].split()[:6] == ["self", "3", "4", ".", "1", "2"]
    assert lines[3].endswith("created by this host, for itself")
    # columns line up under their hook names
    assert lines[2].index("2") == lines[0].index("FORWARD") + len("FORWARD") // 2


@pytest.mark.parametrize("answer, words", [
    ("PREROUTING FORWARD", "node's own address"),
    ("PREROUTING → INPUT → POSTROUTING", "does not leave"),
    (["OUTPUT", "INPUT"], "creates"),
    (["INPUT", "PREROUTING"], "not in the right order"),
    ([1, 2], "Missing"),
])
def test_hook_check_explains_each_hook_off_the_path(answer, words):
    fb = nb01.hooks_to_node.check(answer)
    assert fb.correct is False and words.lower() in str(fb).lower()


def test_hook_check_accepts_spellings():
    assert nb01.hooks_to_node.check("prerouting, input").correct is True
    assert nb01.hooks_to_node.check("PREROUTING -> INPUT").correct is True
