"""Rules, traces, connections and rule changes as pandas DataFrames.

Each function reads what the core already decided; none of them evaluates a
rule again.

* `ruleset_table(ruleset)`: one row per rule, like `iptables -L -n -v --line-numbers` (protocols by name).
* `trace_table(trace)`: one row per step of a Trace (`trace.to_records()`).
* `conntrack_table(node)`: one row per connection, like `conntrack -L`.
* `diff_table(diff)`: the rules one kube-proxy sync adds and removes.
"""
from __future__ import annotations

import pandas as pd

from ..netfilter import matches as M
from ..netfilter import targets as T
from ..netfilter.values import proto_text

# --------------------------------------------------------------------------
# ruleset_table

#: Columns of `ruleset_table`: the brief's nine first, then additions.
RULESET_COLUMNS = ["table", "chain", "num", "target", "prot", "opt", "source", "destination", "extra",
                   "in", "out", "saved"]


def _addr_column(m, family: int) -> str:
    if m is None:
        return "0.0.0.0/0" if family == 4 else "::/0"
    a = m.addr
    text = a.address_text() if a.prefixlen == a.bits else str(a)
    return ("!" if m.invert else "") + text


def _ports_text(name: str, rng, inv: bool) -> str:
    if rng is None:
        return ""
    lo, hi = rng
    neg = "!" if inv else ""
    return f"{name}:{neg}{lo}" if lo == hi else f"{name}s:{neg}{lo}:{hi}"


def _list_match(m) -> str:
    """A match module as `iptables -L` prints it (its save form when kplab has no -L form)."""
    t = type(m)
    if t is M.Comment:
        return f"/* {m.text} */"
    if t in (M.Tcp, M.Udp, M.Sctp):
        parts = [m.name]
        for which, short in (("sport", "spt"), ("dport", "dpt")):
            p = _ports_text(short, getattr(m, which), getattr(m, which + "_inv"))
            if p:
                parts.append(p)
        flags = getattr(m, "flags", None)
        if flags is not None:
            parts.append(f"flags:{'!' if m.flags_inv else ''}{flags[0]:#x}/{flags[1]:#x}")
        return " ".join(parts)
    if t is M.Multiport:
        return f"multiport {m.which} {'! ' if m.invert else ''}{m._text()}"
    if t is M.Statistic:
        if m.mode == "random":
            return f"statistic mode random {'! ' if m.invert else ''}probability {m.probability:.11f}"
        return (f"statistic mode nth {'! ' if m.invert else ''}every {m.every}"
                + (f" packet {m.packet}" if m.packet else ""))
    if t is M.Addrtype:
        parts = ["ADDRTYPE match"]
        if m.src:
            parts.append(f"src-type {'!' if m.src_inv else ''}{M._types_text(m.src)}")
        if m.dst:
            parts.append(f"dst-type {'!' if m.dst_inv else ''}{M._types_text(m.dst)}")
        if m.limit:
            parts.append(f"limit-{m.limit}")
        return " ".join(parts)
    if t is M.Mark:
        return f"mark match {'! ' if m.invert else ''}{m._text()}"
    if t is M.Conntrack:
        return " ".join(f"{'! ' if inv else ''}{n} {m._text(n, v)}" for n, v, inv in m.fields)
    if t is M.Nfacct:
        return f"nfacct-name  {m.counter}"
    if t is M.Recent:
        cmd = {"set": "SET", "rcheck": "CHECK", "update": "UPDATE", "remove": "REMOVE"}[m.command]
        parts = [f"recent: {'! ' if m.invert else ''}{cmd}"]
        if m.seconds:
            parts.append(f"seconds: {m.seconds}")
        if m.reap:
            parts.append("reap")
        if m.hitcount:
            parts.append(f"hit_count: {m.hitcount}")
        if m.rttl:
            parts.append("TTL-Match")
        parts.append(f"name: {m.list_name} side: {'source' if m.side == 'rsource' else 'dest'}")
        parts.append(f"mask: {m.mask.address_text()}")
        return " ".join(parts)
    if t is M.Icmp:
        return "icmp any" if m.type == 255 else f"icmptype {'!' if m.invert else ''}{m.type}"
    return m.save()


def _list_target(tgt) -> str:
    """What `iptables -L` prints after the matches for a target's options."""
    t = type(tgt)
    if tgt is None or t in (T.Standard, T.Jump):
        return ""
    if t is T.Goto:
        return "[goto]"
    if t is T.Dnat:
        return f"to:{tgt.range}" + (" random" if tgt.random else "") + (" persistent" if tgt.persistent else "")
    if t is T.Snat:
        return (f"to:{tgt.range}" + (" random" if tgt.random else "")
                + (" random-fully" if tgt.random_fully else "") + (" persistent" if tgt.persistent else ""))
    if t is T.Masquerade:
        parts = []
        if tgt.ports is not None:
            parts.append(f"masq ports: {tgt.ports[0]}" + (f"-{tgt.ports[1]}" if tgt.ports[1] != tgt.ports[0] else ""))
        if tgt.random:
            parts.append("random")
        if tgt.random_fully:
            parts.append("random-fully")
        return " ".join(parts)
    if t is T.MarkTarget:
        v, m = tgt.value, tgt.mask
        if m == 0xFFFFFFFF:
            return f"MARK set {v:#x}"
        if m == v:
            return f"MARK or {v:#x}"
        if m == 0:
            return f"MARK xor {v:#x}"
        if v == 0:
            return f"MARK and {(~m) & 0xFFFFFFFF:#x}"
        return f"MARK xset {v:#x}/{m:#x}"
    if t is T.Reject:
        return f"reject-with {tgt.reject_with}"
    if t is T.Log:
        return f"LOG flags 0 level {tgt.level}" + (f' prefix "{tgt.prefix}"' if tgt.prefix else "")
    return tgt.save().partition(" ")[2].partition(" ")[2]      # "-j NAME opts" -> "opts"


def _target_name(tgt) -> str:
    if tgt is None:
        return ""
    t = type(tgt)
    if t is T.Standard:
        return tgt.verdict
    if t in (T.Jump, T.Goto):
        return tgt.chain
    return getattr(tgt, "target", None) or tgt.name


def rule_row(table: str, chain: str, num: int, rule, family: int = 4) -> dict:
    """One rule as a `ruleset_table` row (dict)."""
    src = dst = proto = iin = iout = frag = None
    for m in rule.ip:
        t = type(m)
        if t is M.Source:
            src = m
        elif t is M.Destination:
            dst = m
        elif t is M.Protocol:
            proto = m
        elif t is M.InInterface:
            iin = m
        elif t is M.OutInterface:
            iout = m
        elif t is M.Fragment:
            frag = m
    prot = "all" if proto is None or proto.proto == 0 else proto_text(proto.proto)
    if proto is not None and proto.invert:
        prot = "!" + prot
    extra = [_list_match(m) for m in rule.matches]
    tail = _list_target(rule.target)
    if tail:
        extra.append(tail)
    return {
        "table": table, "chain": chain, "num": num,
        "target": _target_name(rule.target),
        "prot": prot,
        "opt": "--" if frag is None else ("!f" if frag.invert else "-f"),
        "source": _addr_column(src, family),
        "destination": _addr_column(dst, family),
        "extra": " ".join(e for e in extra if e),
        "in": "*" if iin is None else ("!" if iin.invert else "") + iin.iface,
        "out": "*" if iout is None else ("!" if iout.invert else "") + iout.iface,
        "saved": rule.text(chain),
    }


def ruleset_table(ruleset, table: str | None = None, chain: str | None = None) -> pd.DataFrame:
    """The rules as `iptables -L -n -v --line-numbers` lists them, one row per rule.

    One difference on purpose: `prot` names the protocol (tcp, udp, all) as
    `iptables -L -v` does; with `-n`, iptables-nft prints its number (6, 17, 0).

    Columns: table, chain, num (1-based), target, prot, opt, source,
    destination, extra (the matches and target options, in -L's words:
    ``/* comment */ tcp dpt:80``, ``statistic mode random probability
    0.50000000000``, ``to:10.244.1.3:8080``), then in, out and saved (the
    rule in iptables-save form). `table` and `chain` select. Chains without
    rules have no rows; `df.attrs["policies"]` maps (table, chain) of every
    selected built-in chain to its policy, `df.attrs["chains"]` lists every
    selected (table, chain), empty ones included.
    """
    rows, policies, chains = [], {}, []
    family = ruleset.family
    for t in ruleset.ordered_tables():
        if table is not None and t.name != table:
            continue
        for c in t.chains.values():
            if chain is not None and c.name != chain:
                continue
            chains.append((t.name, c.name))
            if c.policy is not None:
                policies[(t.name, c.name)] = c.policy
            for i, r in enumerate(c.rules, 1):
                rows.append(rule_row(t.name, c.name, i, r, family))
    df = pd.DataFrame(rows, columns=RULESET_COLUMNS)
    df["num"] = df["num"].astype("int64")
    df.attrs["policies"] = policies
    df.attrs["chains"] = chains
    return df


# --------------------------------------------------------------------------
# trace_table

TRACE_COLUMNS = ["step", "kind", "hook", "table", "chain", "rule", "text", "matched", "verdict", "reason",
                 "count", "packet"]


def trace_table(trace, *, matched_only: bool = False) -> pd.DataFrame:
    """One row per step of `trace` (built from `trace.to_records()`).

    Columns: step (1-based, the stepper's numbering), kind, hook, table,
    chain, rule (the rule's 1-based index), text (the rule as saved),
    matched, verdict, reason (why a rule did not match, or what a
    conntrack/route/nat step did), count (rules a "skipped" row stands for),
    packet (the packet after the step). With `matched_only=True` only the
    rules that matched (and policies, NAT, routing, delivery) are kept.
    """
    records = trace.to_records()
    df = pd.DataFrame(records, columns=TRACE_COLUMNS)
    if matched_only and len(df):
        keep = ~(df["kind"].isin(["rule", "skipped"]) & (df["matched"] != True))  # noqa: E712
        df = df[keep].reset_index(drop=True)
    df["step"] = df["step"].astype("int64")
    df["rule"] = df["rule"].astype("Int64")
    df["count"] = df["count"].astype("int64")
    df.attrs["verdict"] = trace.verdict
    df.attrs["summary"] = trace.summary()
    return df


# --------------------------------------------------------------------------
# conntrack_table

CONNTRACK_COLUMNS = ["proto", "state", "timeout", "orig_src", "orig_dst", "orig_sport", "orig_dport",
                     "reply_src", "reply_dst", "reply_sport", "reply_dport", "flags", "nat", "mark", "id"]


def _ct_rows(ct, now, extra=None):
    rows = []
    entries = sorted(ct.entries.values(), key=lambda e: e.id)
    for e in entries:
        if now is not None and e.expires <= now:
            continue
        flags = []
        if "SEEN_REPLY" not in e.status:
            flags.append("UNREPLIED")
        if "ASSURED" in e.status:
            flags.append("ASSURED")
        nat = "+".join(w for w, bit in (("DNAT", "DST_NAT"), ("SNAT", "SRC_NAT")) if bit in e.status)
        row = {
            "proto": e.orig.proto,
            "state": e.tcp_state or "",
            "timeout": e.remaining(now if now is not None else 0.0),
            "orig_src": e.orig.src, "orig_dst": e.orig.dst,
            "orig_sport": e.orig.sport, "orig_dport": e.orig.dport,
            "reply_src": e.reply.src, "reply_dst": e.reply.dst,
            "reply_sport": e.reply.sport, "reply_dport": e.reply.dport,
            "flags": ",".join(flags),
            "nat": nat,
            "mark": e.mark,
            "id": e.id,
        }
        if extra:
            row = {**extra, **row}
        rows.append(row)
    return rows


def conntrack_table(node_or_table, *, now: float | None = None) -> pd.DataFrame:
    """The connections a node tracks, like `conntrack -L`, one row per entry.

    `node_or_table` is a `kplab.Node` (its live entries at its clock's
    time), a `ConntrackTable` (with `now`, else every entry and timeouts
    counted from 0), or a cluster network (`kplab.kube.flow.ClusterNetwork`,
    or a `Cluster`'s `.network()`): then a first column `node` says whose
    table each row is from.

    Columns: proto, state (TCP state, empty for other protocols), timeout
    (seconds left), orig_src, orig_dst, orig_sport, orig_dport, reply_src,
    reply_dst, reply_sport, reply_dport (for ICMP the ports are the echo id
    and the type, as the kernel's tuple keeps them), flags (UNREPLIED,
    ASSURED), then nat (DNAT, SNAT or DNAT+SNAT), mark and id.
    """
    obj = node_or_table
    nodes = getattr(obj, "nodes", None)
    if isinstance(nodes, dict):                 # a ClusterNetwork
        rows = []
        for name, node in nodes.items():
            rows.extend(_ct_rows(node.state.conntrack, node.clock() if now is None else now, {"node": name}))
        df = pd.DataFrame(rows, columns=["node"] + CONNTRACK_COLUMNS)
    else:
        state = getattr(obj, "state", None)
        if state is not None and hasattr(state, "conntrack"):
            ct, when = state.conntrack, obj.clock() if now is None else now
        elif hasattr(obj, "entries"):
            ct, when = obj, now
        else:
            raise TypeError(f"conntrack_table wants a Node, a ConntrackTable or a ClusterNetwork, "
                            f"not {type(obj).__name__}")
        df = pd.DataFrame(_ct_rows(ct, when), columns=CONNTRACK_COLUMNS)
    for col in ("orig_sport", "orig_dport", "reply_sport", "reply_dport"):
        df[col] = df[col].astype("Int64")
    for col in ("timeout", "mark", "id"):
        df[col] = df[col].astype("int64")
    return df


# --------------------------------------------------------------------------
# diff_table

DIFF_COLUMNS = ["table", "chain", "change", "rule", "what"]


def diff_table(render_diff) -> pd.DataFrame:
    """What one kube-proxy sync changes (`kplab.kube.proxier.diff(old, new)`).

    One row per rule added or removed: table, chain, change ("added" or
    "removed"), rule (iptables-save form), what ("rule"). A chain created
    or deleted has a row of its own with what="chain" and rule=None, first
    (created) or last (deleted) among its chain's rows. Chains come in the
    diff's order (sorted by table and name); within a chain, removed rules
    before added ones, each in rule order.
    """
    d = render_diff
    added_c, removed_c = set(d.chains_added), set(d.chains_removed)
    keys = sorted(added_c | removed_c | set(d.rules_added) | set(d.rules_removed))
    rows = []
    for key in keys:
        t, c = key
        if key in added_c:
            rows.append({"table": t, "chain": c, "change": "added", "rule": None, "what": "chain"})
        for r in d.rules_removed.get(key, ()):
            rows.append({"table": t, "chain": c, "change": "removed", "rule": r, "what": "rule"})
        for r in d.rules_added.get(key, ()):
            rows.append({"table": t, "chain": c, "change": "added", "rule": r, "what": "rule"})
        if key in removed_c:
            rows.append({"table": t, "chain": c, "change": "removed", "rule": None, "what": "chain"})
    df = pd.DataFrame(rows, columns=DIFF_COLUMNS)
    df.attrs["services_added"] = tuple(d.services_added)
    df.attrs["services_removed"] = tuple(d.services_removed)
    df.attrs["services_changed"] = tuple(d.services_changed)
    return df


__all__ = ["CONNTRACK_COLUMNS", "DIFF_COLUMNS", "RULESET_COLUMNS", "TRACE_COLUMNS", "conntrack_table",
           "diff_table", "rule_row", "ruleset_table", "trace_table"]
