"""Exercises for notebook 2: tables and the order they run at each hook.

Also the helpers the notebook uses: `watch_rules` (a LOG rule in every
built-in chain, generated from the facts of `kplab.netfilter.hooks`),
`tables_met` (the tables a trace walked at each hook, in order) and
`priority_grid` (the priority of every table at every hook, as text).
"""
from __future__ import annotations

from ..netfilter.hooks import HOOKS, PRIORITY, TABLE_CHAINS, TABLES, priority
from ..node import Node
from ._core import Exercise, wrong
from .checks import Probe, rules, sequence

from .checks import EXTERNAL, NODE, REMOTE1  # the standard node (DESIGN section 3)

#: Pods leaving the cluster take the node's address (every Kubernetes node has such a rule).
MASQUERADE_PODS = "-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE"


# -- helpers for the notebook ------------------------------------------------------------------

def watch_rules(tables=TABLES, *, masquerade: bool = True) -> str:
    """iptables-restore text with one LOG rule in every built-in chain of
    each of `tables` (log prefix "TABLE CHAIN "), so that a trace lists every
    table a packet meets, in the order it meets them.

    With `masquerade` (and "nat" among the tables) the nat table also gets
    `MASQUERADE_PODS`: a NAT rule is what turns connection tracking on, and
    without connection tracking the kernel never walks the nat chains.
    """
    out = []
    for table in TABLES:
        if table not in tables:
            continue
        out.append(f"*{table}")
        out += [f'-A {chain} -j LOG --log-prefix "{table} {chain} "' for chain in TABLE_CHAINS[table]]
        if table == "nat" and masquerade:
            out.append(MASQUERADE_PODS)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def tables_met(trace, hook: str | None = None):
    """The tables `trace` walked, in order: at `hook` as a list, or for every
    hook as a dict {hook: [tables]} (hooks in the order the packet met them)."""
    walked: dict = {}
    last = None
    for step in trace.steps:
        if step.hook is None or step.table is None:
            continue
        seq = walked.setdefault(step.hook, [])
        if (step.hook, step.table) != last:
            seq.append(step.table)
            last = (step.hook, step.table)
    if hook is not None:
        return walked.get(hook, [])
    return walked


def priority_grid() -> str:
    """The priority of every table at every hook (from `kplab.netfilter.hooks`), as a text table.

    Lower numbers run first; "." means the table has no chain at that hook.
    Connection tracking is not a table but runs between raw and mangle, so it has a row too.
    """
    widths = [max(len(h), 5) for h in HOOKS]
    name_w = len("(conntrack)")
    head = "  ".join([f"{'table':<{name_w}}"] + [f"{h:>{w}}" for h, w in zip(HOOKS, widths)])
    lines = [head, "-" * len(head)]
    rows = [(t, [priority(t, h) for h in HOOKS]) for t in TABLES]
    ct = [PRIORITY["conntrack"] if h in ("PREROUTING", "OUTPUT") else None for h in HOOKS]
    rows.insert(1, ("(conntrack)", ct))
    for name, prios in rows:
        cells = [f"{'.' if p is None else p:>{w}}" for p, w in zip(prios, widths)]
        lines.append("  ".join([f"{name:<{name_w}}"] + cells))
    lines.append("Lower runs first. '.': no chain there. The nat table rewrites the destination at -100 "
                 "and the source at 100.")
    return "\n".join(lines)


# -- 2.1 predict: the tables at OUTPUT, in order -----------------------------------------------

def _output_tables() -> list:
    from .. import parse_rules
    node = Node(parse_rules(watch_rules()))
    return tables_met(node.send_from("node", EXTERNAL, "tcp", 443), "OUTPUT")


def _tables_check(correct):
    """`sequence` of table names, with the two typical slips explained."""
    base = sequence(correct, what="tables")

    def check(answer):
        fb = base(answer)
        if fb.correct or not isinstance(answer, (str, list, tuple)):
            return fb
        words = [str(a).strip().lower() for a in (answer.replace(",", " ").split()
                                                  if isinstance(answer, str) else answer)]
        if "conntrack" in words:
            return wrong("conntrack is not a table: it has no chains and no rules. It runs between raw (-300) "
                         "and mangle (-150) at priority -200; leave it out of the list.")
        if "nat" in words and "filter" in words and words.index("filter") < words.index("nat"):
            return wrong("At OUTPUT the nat table rewrites the destination (priority -100), so it runs before "
                         "filter (0): the kernel routes the packet again if its destination changed, and filter "
                         "sees the new destination. nat runs after filter only where it rewrites the source "
                         "(INPUT, POSTROUTING: priority 100).")
        return fb
    return check


output_order = Exercise(
    id="2.1", kind="predict", title="Every table at OUTPUT",
    prompt="A ruleset has a LOG rule in every built-in chain of every table (the rules of section 3). "
           "The node itself opens a connection to 198.51.100.10:443. At the OUTPUT hook, in which order "
           "do the tables see the packet? Answer with a list of table names.",
    checker=_tables_check(_output_tables),
    hints=("Which tables have an OUTPUT chain? The grid of section 2 has one column per hook.",
           "Lower priority numbers run first; find each table's number in the OUTPUT column.",
           "At OUTPUT the nat table rewrites the destination, like at PREROUTING: priority -100."),
    answer=["raw", "mangle", "nat", "filter", "security"],
    explanation="All five tables have an OUTPUT chain: raw (-300), then connection tracking (-200, not a "
                "table), mangle (-150), nat (-100, destination NAT), filter (0) and security (150). "
                "Destination NAT comes before filter so that filtering sees the packet's real destination.",
    wrong_answers=((["raw", "mangle", "filter", "nat", "security"], "before filter"),
                   (["raw", "conntrack", "mangle", "nat", "filter", "security"], "not a table"),
                   (["mangle", "nat", "filter", "security"], "Missing: raw"),
                   (["raw", "mangle", "nat", "security", "filter"], "position 4")),
)


# -- 2.2 write: classify in mangle, filter in filter -------------------------------------------

def _mark_then_filter(ruleset, text):
    found = {(t, r.target.name if r.target is not None else "", any(m.name == "mark" for m in r.matches))
             for t, _, _, r in ruleset.rules()}
    if any(t != "filter" and target in ("DROP", "REJECT") for t, target, _ in found):
        return ("Your rules drop the right packets, but outside the filter table: mangle is for changing "
                "packets (marks), dropping belongs in the filter table.")
    if not any(t == "mangle" and target == "MARK" for t, target, _ in found):
        return ("Your rules drop the right packets, but the exercise asks you to set the mark in the mangle "
                "table (-t mangle ... -j MARK --set-mark 0x1).")
    if not any(t == "filter" and target in ("DROP", "REJECT") and marked for t, target, marked in found):
        return "Drop in the filter table by the mark: -m mark --mark 0x1 -j DROP."
    return None


mark_then_drop = Exercise(
    id="2.2", kind="write", title="Mark in mangle, drop in filter",
    prompt="Classify early, decide later. Write two rules: in the mangle table's PREROUTING chain, set "
           "mark 0x1 on every packet from `client` (10.244.1.7); in the filter table, drop the forwarded "
           "packets that carry mark 0x1. `client` can still reach the node itself (192.168.0.2), and "
           "other Pods are not affected. Type them as `iptables -t TABLE -A ...` commands, one a line.",
    checker=rules([
        Probe("client → remote1", "client", REMOTE1, "tcp", 80, verdict="DROP",
              wrong="client still reaches remote1: in the filter table's FORWARD chain, drop packets "
                    "whose mark is the one the mangle rule set (-m mark --mark 0x1)."),
        Probe("client → external", "client", EXTERNAL, "tcp", 443, verdict="DROP",
              wrong="client still reaches the external host: drop every forwarded packet with mark 0x1."),
        Probe("client → the node (udp 53)", "client", NODE, "udp", 53, verdict="ACCEPT",
              wrong="client can no longer reach the node itself: drop marked packets in FORWARD only, not INPUT."),
        Probe("backend1 → remote1", "backend1", REMOTE1, "tcp", 80, verdict="ACCEPT",
              wrong="backend1 is blocked too: mark only packets from client (-s 10.244.1.7)."),
    ], table="filter", structure=_mark_then_filter),
    hints=("`iptables -t mangle -A PREROUTING ...` writes into the mangle table; without -t the table is filter.",
           "The MARK target sets the mark: -j MARK --set-mark 0x1. The mark match tests it: -m mark --mark 0x1.",
           "iptables -t mangle -A PREROUTING -s 10.244.1.7 -j MARK --set-mark 0x1, then "
           "iptables -A FORWARD -m mark --mark 0x1 -j DROP."),
    answer="iptables -t mangle -A PREROUTING -s 10.244.1.7 -j MARK --set-mark 0x1\n"
           "iptables -A FORWARD -m mark --mark 0x1 -j DROP",
    explanation="mangle PREROUTING (-150) runs before routing, so the mark is on the packet before it reaches "
                "FORWARD, where the filter table (0) drops it. Packets for the node get the mark too, but "
                "they take INPUT, where no rule looks at it. The mark is not in the packet on the wire: it is "
                "metadata the kernel keeps with the packet while it crosses this node.",
    wrong_answers=(("iptables -t mangle -A FORWARD -s 10.244.1.7 -j DROP", "filter table"),
                   ("iptables -A FORWARD -s 10.244.1.7 -j MARK --set-mark 0x1\n"
                    "iptables -A FORWARD -m mark --mark 0x1 -j DROP", "mangle"),
                   ("iptables -t mangle -A PREROUTING -s 10.244.1.7 -j MARK --set-mark 0x1\n"
                    "iptables -A INPUT -m mark --mark 0x1 -j DROP", "FORWARD"),
                   ("iptables -t mangle -A PREROUTING -j MARK --set-mark 0x1\n"
                    "iptables -A FORWARD -m mark --mark 0x1 -j DROP", "-s 10.244.1.7"),
                   ("iptables -t mangle -A PREROUTING -s 10.244.1.7 -j MARK --set-mark 0x1\n"
                    "iptables -A FORWARD -m mark --mark 0x2 -j DROP", "mark 0x1")),
)


# -- 2.3 debug: filtering in the nat table ------------------------------------------------------

NAT_FILTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -p tcp --dport 25 -j DROP
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE
COMMIT
"""

NAT_FILTER_FIXED = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -s 10.244.0.0/16 ! -d 10.244.0.0/16 -p tcp --dport 25 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE
COMMIT
"""

#: A typical slip: the DROP moved to mangle, which loads (mangle may drop) but is not its place.
DROP_IN_MANGLE = """*mangle
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -p tcp --dport 25 -j DROP
COMMIT
*nat
-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE
COMMIT
"""


def _filter_only_in_filter(ruleset, text):
    for table, chain, _, rule in ruleset.rules():
        name = rule.target.name if rule.target is not None else ""
        if name in ("DROP", "REJECT") and table != "filter":
            return (f"Your rules work, but they drop in the {table} table ({chain}): filtering belongs in the "
                    f"filter table, whose FORWARD chain sees the Pods' packets on their way out.")
    return None


nat_filtering = Exercise(
    id="2.3", kind="debug", title="No mail from Pods, fixed in the right table",
    prompt="Pods reach the world outside the cluster masqueraded behind the node's address, but must not "
           "send mail (TCP port 25) out of the cluster. The author put the mail block next to the "
           "MASQUERADE rule, and the loader refuses the file. Fix it (give the whole fixed ruleset): Pods' "
           "mail to the outside is dropped, everything else from Pods to the outside is still masqueraded, "
           "and mail between Pods still flows.",
    checker=rules([
        Probe("client → external:25", "client", EXTERNAL, "tcp", 25, delivered_to=None,
              wrong="client still sends mail to the outside: drop TCP port 25 from Pods (-s 10.244.0.0/16) "
                    "to outside the cluster (! -d 10.244.0.0/16) in the filter table's FORWARD chain."),
        Probe("backend1 → external:25", "backend1", EXTERNAL, "tcp", 25, delivered_to=None,
              wrong="backend1 still sends mail to the outside: match every Pod, -s 10.244.0.0/16."),
        Probe("client → external:443", "client", EXTERNAL, "tcp", 443, verdict="ACCEPT", masquerade=True,
              wrong="client's web traffic to the outside is no longer masqueraded (or no longer gets out): "
                    "keep the MASQUERADE rule in the nat table's POSTROUTING chain."),
        Probe("client → remote1:25 (inside the cluster)", "client", REMOTE1, "tcp", 25, verdict="ACCEPT",
              wrong="Mail between Pods is blocked too: keep ! -d 10.244.0.0/16 so that only mail leaving "
                    "the cluster is dropped."),
        Probe("node → external:25", "node", EXTERNAL, "tcp", 25, verdict="ACCEPT",
              wrong="The node's own mail is blocked too: only Pods' mail is to be dropped."),
    ], table="filter", structure=_filter_only_in_filter),
    hints=("Load the starter: the error names the line and the reason.",
           "nat rewrites addresses; accepting or dropping is the filter table's job. Which filter chain sees a "
           "Pod's packet to the outside?",
           "Move the DROP rule, matches unchanged, into *filter as -A FORWARD ...; keep MASQUERADE in *nat."),
    answer=NAT_FILTER_FIXED,
    explanation="iptables refuses DROP (and REJECT) in the nat table: nat is for rewriting addresses, and it "
                "is walked only for the first packet of each connection, so it is no place to filter. A Pod's "
                "packet to the outside is forwarded, so the filter table's FORWARD chain sees it, before nat "
                "POSTROUTING masquerades what is left.",
    starter=NAT_FILTER,
    wrong_answers=((NAT_FILTER, "do not load"),
                   (NAT_FILTER.replace("--dport 25 -j DROP", "--dport 25 -j REJECT"), "do not load"),
                   ("*filter\n-A FORWARD -s 10.244.0.0/16 ! -d 10.244.0.0/16 -p tcp --dport 25 -j DROP\nCOMMIT\n",
                    "MASQUERADE"),
                   (NAT_FILTER_FIXED.replace("-A FORWARD", "-A INPUT"), "FORWARD"),
                   (NAT_FILTER_FIXED.replace("-A FORWARD -s 10.244.0.0/16 ! -d 10.244.0.0/16",
                                             "-A FORWARD -s 10.244.0.0/16"), "between Pods"),
                   (DROP_IN_MANGLE, "filter table")),
)


EXERCISES = (output_order, mark_then_drop, nat_filtering)
