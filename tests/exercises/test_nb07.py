"""Notebook 7's exercises: the embedded rules match the data, the computed answers are the facts the
notebook states, and the hairpin check recognises a rule appended after the DNAT."""
from pathlib import Path

import pytest

from kplab.exercises import nb07

ROOT = Path(__file__).resolve().parents[2]


def test_seed_rules_are_the_data_file():
    text = (ROOT / "data" / "rules" / "seed-node.rules").read_text()
    assert "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")) + "\n" == nb07.SEED_RULES


def test_the_broken_rulesets_differ_by_one_line():
    seed = nb07.SEED_RULES.splitlines()
    assert set(seed) - set(nb07.NO_HAIRPIN.splitlines()) == {nb07.HAIRPIN_RULE}
    assert len(nb07.NO_HAIRPIN.splitlines()) == len(seed) - 1
    changed = [(a, b) for a, b in zip(seed, nb07.FORWARD_DROP.splitlines()) if a != b]
    assert changed == [(":FORWARD ACCEPT [0:0]", ":FORWARD DROP [0:0]")]


def test_the_predictions_are_what_the_notebook_says():
    cluster = nb07.far_caller_cluster()
    caller = nb07.far_caller(cluster)
    assert cluster.pod(caller).node == "node-2"
    assert [p.node for p in cluster.pods("backend")] == ["node-1"]
    assert nb07.seen_source() == "pod"
    assert nb07.reply_rewriter() == "node-2"


@pytest.mark.parametrize("answer, appended", [
    (f"-A {nb07.SEP} -s 10.244.1.3/32 -j KUBE-MARK-MASQ", True),
    (f"iptables -t nat -A {nb07.SEP} -s 10.244.1.3/32 -j KUBE-MARK-MASQ", True),
    (f"-I {nb07.SEP} 1 -s 10.244.1.3/32 -j KUBE-MARK-MASQ", False),
    (nb07.SEED_RULES, False),
    (nb07.NO_HAIRPIN.replace("-A KUBE-SERVICES -d", nb07.HAIRPIN_RULE + "\n-A KUBE-SERVICES -d"), True),
])
def test_appended_after_dnat(answer, appended):
    assert nb07._appended_after_dnat(answer) is appended


@pytest.mark.parametrize("answer", [
    nb07.SEED_RULES,                                                         # the whole fixed file
    f"iptables -t nat -I {nb07.SEP} 1 -s 10.244.1.3 -j KUBE-MARK-MASQ",      # as typed in a shell
    f"-I {nb07.SEP} 1 -s 10.244.1.3/32 -j MARK --set-xmark 0x4000/0x4000",  # the mark itself
])
def test_hairpin_accepts_other_right_answers(answer):
    assert nb07.hairpin_rule.check(answer).correct is True


@pytest.mark.parametrize("answer", [
    "-I FORWARD 1 -s 10.244.0.0/16 -j ACCEPT",
    "-A FORWARD -s 10.244.0.0/16 -j ACCEPT\n-A FORWARD -d 10.244.0.0/16 -j ACCEPT",     # what flannel writes
    nb07.FORWARD_DROP.replace("COMMIT", "-A FORWARD -s 10.244.0.0/16 -j ACCEPT\nCOMMIT", 1),
])
def test_forward_drop_accepts_other_right_answers(answer):
    assert nb07.forward_drop.check(answer).correct is True
