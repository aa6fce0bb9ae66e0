"""Reading a Trace as a walk between places: hooks, routing decisions, the
local process, the ways in and out. Shared by hook_map and journey.

A *place* is one of HOOKS or:

* "IN": the packet arrives (from a Pod's veth or eth0),
* "OUT": it leaves the node (to a Pod or out of eth0),
* "LOCAL": the local process (a packet the node sends or receives),
* "RIN": the routing decision for arriving packets (INPUT or FORWARD?),
* "ROUT": the routing decision for packets the node creates,
* "LO": the loopback device (a packet the node sends to itself).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..netfilter.hooks import HOOKS

ROUTING = ("RIN", "ROUT", "LO")
PLACE_NAMES = {
    "IN": "in", "OUT": "out", "LOCAL": "local process", "RIN": "routing decision",
    "ROUT": "routing decision (local out)", "LO": "loopback (lo)",
}
TERMINAL = ("ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE")


@dataclass
class Stop:
    """One numbered stop of the walk: a place and the steps (1-based) there."""

    place: str
    steps: list

    @property
    def is_hook(self) -> bool:
        return self.place in HOOKS


def is_local_origin(trace) -> bool:
    if trace.origin == "node":
        return True
    s = trace.steps[0] if trace.steps else None
    return bool(s is not None and s.kind == "route" and s.hook is None
                and s.reason.startswith("created on this node"))


def stops(trace) -> list:
    """The walk as numbered stops (the start, each place in order, the end).

    Consecutive steps at the same place make one stop; a hook entered twice
    (through lo) makes two.
    """
    local = is_local_origin(trace)
    out = [Stop("LOCAL" if local else "IN", [])]
    for i, s in enumerate(trace.steps, 1):
        cur = out[-1].place
        if s.hook:
            place = s.hook
        elif s.kind == "route":
            if cur == "LOCAL" and len(out) == 1:
                place = "ROUT"
            elif cur == "POSTROUTING":
                place = "LO"
            else:
                place = "RIN"
        elif s.kind == "deliver":
            place = "LOCAL" if trace.delivered_to == "node" else "OUT"
        elif s.kind in ("drop", "reject") and cur == "PREROUTING":
            place = "RIN"                      # e.g. TTL expired when routing
        else:
            place = cur
        if place == cur:
            out[-1].steps.append(i)
        else:
            out.append(Stop(place, [i]))
    return out


def hook_sequence(trace) -> list:
    """The hooks of trace.steps in order, consecutive repeats merged."""
    seq = []
    for s in trace.steps:
        if s.hook and (not seq or seq[-1] != s.hook):
            seq.append(s.hook)
    return seq


def _target_word(rule_text: str | None) -> str:
    if not rule_text:
        return ""
    words = rule_text.split()
    for flag in ("-j", "-g"):
        if flag in words:
            i = words.index(flag)
            if i + 1 < len(words):
                return words[i + 1]
    return ""


def _endpoint(p, which):
    if p is None:
        return "?"
    return p.endpoint(which)


def change_of(step) -> tuple | None:
    """(role, sentence) when the step rewrote an address, else None.

    role is "dnat", "snat" or "conntrack" (a reply or a later packet that
    conntrack translates without walking the nat table).
    """
    b, a = step.before, step.after
    if step.kind == "rule" and step.matched and step.verdict in ("DNAT", "SNAT", "MASQUERADE"):
        if step.verdict == "DNAT":
            return "dnat", f"DNAT: destination {_endpoint(b, 'dst')} → {_endpoint(a or b, 'dst')}"
        if a is not None and b is not None and (a.src, a.sport) != (b.src, b.sport):
            return "snat", f"{step.verdict}: source {_endpoint(b, 'src')} → {_endpoint(a, 'src')}"
        return "snat", f"{step.verdict}: source unchanged, {_endpoint(b, 'src')}"
    if step.kind == "nat" and step.changed:
        if (a.dst, a.dport) != (b.dst, b.dport):
            what = f"destination {_endpoint(b, 'dst')} → {_endpoint(a, 'dst')}"
        else:
            what = f"source {_endpoint(b, 'src')} → {_endpoint(a, 'src')}"
        role = "conntrack" if "conntrack entry" in step.reason else "snat"
        return role, ("conntrack: " if role == "conntrack" else "") + what
    return None


def short_ct(note: str) -> str:
    """A conntrack step's note, without the tuples."""
    head, sep, _ = note.partition(": src=")
    return head if sep else note


def place_summary(trace, stop) -> str:
    """What happened at one stop, in a line (for the text twins)."""
    steps = [trace.steps[i - 1] for i in stop.steps]
    parts = []
    seg = None            # [table, evaluated, notable list, decision]

    def close():
        if seg is None:
            return
        t, n, notable, decision = seg
        words = f"{t}: {n} rule{'s' if n != 1 else ''} evaluated"
        if notable:
            words += ", " + "; ".join(notable)
        if decision:
            words += ", " + decision
        parts.append(words)

    for s in steps:
        if s.kind in ("rule", "skipped", "policy", "return") and s.table:
            if seg is None or seg[0] != s.table:
                close()
                seg = [s.table, 0, [], ""]
            if s.kind == "rule":
                seg[1] += 1
                if s.matched and s.verdict and not s.verdict.startswith(("JUMP:", "GOTO:")) \
                        and s.verdict != "RETURN":
                    word = s.verdict if s.verdict != "CONTINUE" else (_target_word(s.rule) or "CONTINUE")
                    ch = change_of(s)
                    detail = f" ({ch[1].split(': ', 1)[1]})" if ch else ""
                    seg[2].append(f"{word} by {s.chain} #{s.index}{detail}")
            elif s.kind == "skipped":
                seg[1] += s.count
            elif s.kind == "policy":
                seg[3] = f"policy {s.verdict}"
            continue
        close()
        seg = None
        if s.kind == "conntrack":
            parts.append("conntrack: " + short_ct(s.reason))
        elif s.kind == "nat":
            parts.append("nat: " + s.reason)
        elif s.kind == "route":
            parts.append(s.reason)
        elif s.kind in ("drop", "reject"):
            parts.append(f"{s.kind.upper()}: {s.reason}")
        elif s.kind == "deliver":
            parts.append(s.reason)
        elif s.reason:
            parts.append(s.reason)
    close()
    return "; ".join(parts) if parts else "nothing to evaluate"


def stop_line(trace, stop, where: str = "") -> str:
    """One stop as a line of the text twin (without its number)."""
    pre = f"{where} " if where else ""
    p = stop.place
    if p == "IN" and not stop.steps:
        return f"{pre}in: {trace.packet} arrives from {trace.origin}"
    if p == "LOCAL" and not stop.steps:
        return f"{pre}local process: the node sends {trace.packet}"
    if p in HOOKS:
        return f"{pre}{p}: {place_summary(trace, stop)}"
    if p == "OUT":
        return f"{pre}out: delivered to {trace.delivered_to} as {trace.final}"
    if p == "LOCAL":
        return f"{pre}local process: delivered to this node as {trace.final}"
    return f"{pre}{PLACE_NAMES[p]}: {place_summary(trace, stop)}"


def ct_table(step) -> str:
    """'confirm' for a conntrack step that confirms an entry, else 'conntrack'."""
    r = step.reason
    return "confirm" if (r.startswith("entry ") and " confirmed" in r.partition(":")[0]) else "conntrack"


def walked_tables(trace, stop) -> set:
    """The tables (and 'conntrack'/'confirm') that acted at a hook stop."""
    out = set()
    for i in stop.steps:
        s = trace.steps[i - 1]
        if s.kind == "conntrack":
            out.add(ct_table(s))
        elif s.kind == "nat":
            out.add("nat")
        elif s.table:
            out.add(s.table)
    return out


def stop_outcome(trace, stop) -> tuple | None:
    """(role, short label) for what a stop did to the packet, or None."""
    label = None
    for i in stop.steps:
        s = trace.steps[i - 1]
        ch = change_of(s)
        if ch:
            label = ch
        if s.kind == "rule" and s.matched and s.verdict in ("DROP", "REJECT"):
            return s.verdict.lower(), f"{s.verdict} by {s.table} {s.chain} #{s.index}"
        if s.kind == "policy" and s.verdict in ("DROP", "REJECT"):
            return s.verdict.lower(), f"{s.verdict}: {s.table} {s.chain} policy"
        if s.kind in ("drop", "reject"):
            return s.kind, f"{s.kind.upper()}: {s.reason}"
    return label


def outcome_words(trace) -> str:
    if trace.verdict == "ACCEPT" and trace.delivered_to:
        where = "this node" if trace.delivered_to == "node" else trace.delivered_to
        return f"delivered to {where}"
    if trace.verdict == "REJECT":
        return "rejected"
    return "dropped"
