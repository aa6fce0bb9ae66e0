"""Netfilter's facts: hooks, tables, priorities and where targets are valid.

Facts are data, not branches: the engine, the validator and the diagrams all
read these tables. Priorities are those of the kernel's
`include/uapi/linux/netfilter_ipv4.h` (`enum nf_ip_hook_priorities`); lower
numbers run first at a hook -- except the security table: iptables-nft (the
nf_tables backend, Debian's default and kplab's reference) registers its
chains at priority 150, after the nat table's INPUT chain (100), where the
legacy backend used 50 (`nft list ruleset` on a node shows
"type filter hook input priority 150" for table ip security).
"""
from __future__ import annotations

HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

#: Priority of each table (and of conntrack itself) at every hook it sits on.
PRIORITY = {
    "raw": -300,
    "conntrack": -200,
    "mangle": -150,
    "nat-dst": -100,
    "filter": 0,
    "nat-src": 100,
    "security": 150,            # iptables-nft; 50 with iptables-legacy
    "confirm": 2**31 - 1,
}

#: The built-in chains of each table, in hook order.
TABLE_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

#: The order iptables-save (nf_tables backend) prints tables in.
SAVE_TABLE_ORDER = ("mangle", "security", "raw", "filter", "nat")

#: What runs at each hook, in priority order. "conntrack" looks up or creates
#: the connection's entry; "confirm" makes a new entry permanent.
HOOK_ORDER = {
    "PREROUTING": ("raw", "conntrack", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "nat", "security", "confirm"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "conntrack", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat", "confirm"),
}

#: The nat table's kind of translation at each hook: destination NAT before
#: routing, source NAT after it (netfilter's NF_NAT_MANIP_DST / _SRC).
NAT_MANIP = {
    "PREROUTING": "dst",
    "OUTPUT": "dst",
    "INPUT": "src",
    "POSTROUTING": "src",
}

#: Targets the kernel accepts only in some tables and hooks (xt_target .table
#: and .hooks). A ruleset that reaches one from another hook, even through user
#: chains, is refused at load time.
TARGET_HOOKS = {
    "DNAT": ("nat", ("PREROUTING", "OUTPUT")),
    "SNAT": ("nat", ("POSTROUTING", "INPUT")),
    "MASQUERADE": ("nat", ("POSTROUTING",)),
    "REDIRECT": ("nat", ("PREROUTING", "OUTPUT")),
    "REJECT": ("filter", ("INPUT", "FORWARD", "OUTPUT")),
}

#: Built-in chains in which iptables refuses `-i` (no input interface yet) or
#: `-o` (no output interface yet). It checks the chain's name only.
NO_IN_IFACE = ("OUTPUT", "POSTROUTING")
NO_OUT_IFACE = ("PREROUTING", "INPUT")

#: nf_tables refuses a ruleset whose jumps nest deeper than this from a base
#: chain (NFT_JUMP_STACK_SIZE); a reachable jump loop is the common way to hit it.
JUMP_STACK_SIZE = 16

#: Tables iptables knows.
TABLES = tuple(TABLE_CHAINS)


def tables_at(hook: str) -> tuple[str, ...]:
    """The tables with a built-in chain at `hook`, in the order they run."""
    return tuple(t for t in HOOK_ORDER[hook] if t in TABLE_CHAINS)


def priority(table: str, hook: str) -> int | None:
    """The priority at which `table`'s built-in chain at `hook` runs (lower
    runs first), or None when `table` has no chain at `hook`.

    The nat table sits at two priorities: -100 where it rewrites the
    destination (PREROUTING, OUTPUT) and 100 where it rewrites the source
    (INPUT, POSTROUTING).

    >>> priority("nat", "PREROUTING"), priority("nat", "POSTROUTING"), priority("filter", "PREROUTING")
    (-100, 100, None)
    """
    if table not in TABLE_CHAINS:
        raise ValueError(f"unknown table {table!r}: iptables knows {', '.join(TABLES)}")
    if hook not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}: the hooks are {', '.join(HOOKS)}")
    if hook not in TABLE_CHAINS[table]:
        return None
    if table == "nat":
        return PRIORITY["nat-" + NAT_MANIP[hook]]
    return PRIORITY[table]
