"""hooks.priority: the facts of hooks.py read back per (table, hook)."""
import pytest

from kplab.netfilter import hooks
from kplab.netfilter.hooks import HOOK_ORDER, HOOKS, TABLE_CHAINS, TABLES, priority, tables_at


@pytest.mark.parametrize("table, hook, expected", [
    ("raw", "PREROUTING", -300),
    ("raw", "OUTPUT", -300),
    ("raw", "INPUT", None),
    ("mangle", "POSTROUTING", -150),
    ("nat", "PREROUTING", -100),
    ("nat", "OUTPUT", -100),
    ("nat", "INPUT", 100),
    ("nat", "POSTROUTING", 100),
    ("nat", "FORWARD", None),
    ("filter", "FORWARD", 0),
    ("filter", "PREROUTING", None),
    ("security", "INPUT", 150),          # iptables-nft; iptables-legacy used 50
])
def test_priority(table, hook, expected):
    assert priority(table, hook) == expected


@pytest.mark.parametrize("hook", HOOKS)
def test_priorities_give_the_order_of_tables_at_each_hook(hook):
    at = tables_at(hook)
    assert set(at) == {t for t in TABLES if priority(t, hook) is not None}
    assert list(at) == sorted(at, key=lambda t: priority(t, hook))
    assert [t for t in HOOK_ORDER[hook] if t in TABLE_CHAINS] == list(at)


def test_security_runs_after_nat_at_input():
    assert priority("nat", "INPUT") < priority("security", "INPUT")


@pytest.mark.parametrize("table, hook", [("nats", "INPUT"), ("filter", "input"), ("", "")])
def test_unknown_names_are_refused(table, hook):
    with pytest.raises(ValueError):
        hooks.priority(table, hook)
