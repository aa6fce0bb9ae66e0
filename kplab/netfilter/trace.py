"""Trace and Step: the record of one packet's walk through a node.

The Trace is the product: the CLI prints it (as a numbered journey or as
the JSON contract of DESIGN section 4), the diagrams draw it and the widgets
step through it. None of them decides anything again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: Kinds of step, in the words the journey uses.
STEP_KINDS = ("rule", "skipped", "policy", "return", "conntrack", "nat", "route", "deliver",
              "drop", "reject", "note")


@dataclass(frozen=True)
class Step:
    """One thing that happened to the packet.

    For `kind == "rule"`: the rule at `index` (1-based, as iptables-save
    lists it) of `chain` in `table` at `hook` was evaluated; `matched` says
    whether all its matches held, `reason` why not, `verdict` what its
    target did. `kind == "skipped"` stands for `count` consecutive rules
    that did not match, starting at `index` (long chains only).
    `before`/`after` are the packet around the step (after differs only when
    the step changed it).
    """

    kind: str
    hook: str | None = None
    table: str | None = None
    chain: str | None = None
    index: int | None = None
    rule: str | None = None
    matched: bool | None = None
    verdict: str | None = None
    depth: int = 0
    before: object = None
    after: object = None
    count: int = 1
    note: str = ""
    _miss: tuple | None = field(default=None, compare=False, repr=False)

    @property
    def reason(self) -> str:
        """Why the rule did not match (or what happened, for other kinds)."""
        if self.note or self._miss is None:
            return self.note
        match, pkt, ctx = self._miss
        return match.why_not(pkt, ctx)

    @property
    def changed(self) -> bool:
        return self.after is not None and self.before is not None and self.after != self.before

    def to_json(self) -> dict:
        d = {"kind": self.kind, "hook": self.hook, "table": self.table, "chain": self.chain,
             "rule_index": self.index, "rule_text": self.rule, "matched": self.matched,
             "verdict": self.verdict, "reason": self.reason, "depth": self.depth}
        if self.kind == "skipped":
            d["count"] = self.count
        if self.changed:
            d["packet_before"] = self.before.headers()
            d["packet_after"] = self.after.headers()
        return d


@dataclass(frozen=True)
class Trace:
    """The walk of one packet through one node, and its outcome.

    `verdict` is ACCEPT (the packet went on: delivered locally or sent out),
    DROP or REJECT. `delivered_to` names who received it and `final` is the
    packet as it left; both are None when it was dropped. `probability` is
    the chance of this path (1.0 unless a `statistic` rule branched).
    """

    origin: str
    packet: object
    steps: tuple
    verdict: str
    final: object = None
    delivered_to: str | None = None
    dnat_to: str | None = None
    snat_to: str | None = None
    masquerade: bool = False
    probability: float = 1.0
    warnings: tuple = ()
    entry: object = None
    evaluated: int = 0
    direction: str | None = None      # the packet's conntrack direction: ORIGINAL or REPLY

    # ------------------------------------------------------------------
    @property
    def matched_rules(self) -> list:
        """Every rule whose matches all held, in the order the kernel met them."""
        return [s for s in self.steps if s.kind == "rule" and s.matched]

    @property
    def delivered(self) -> bool:
        return self.delivered_to is not None

    @property
    def path_key(self) -> tuple:
        """What makes two outcomes the same path (for grouping samples)."""
        return tuple((s.table, s.chain, s.index) for s in self.matched_rules)

    def input_json(self) -> dict:
        p = self.packet
        d = {"from": self.origin, "proto": p.proto, "src": p.src, "sport": p.sport, "dst": p.dst, "dport": p.dport}
        if p.icmp_type is not None:
            d.update(icmp_type=p.icmp_type, icmp_id=p.icmp_id)
        return d

    def delivered_json(self):
        if self.final is None or self.delivered_to is None:
            return None
        f = self.final
        return {"to": self.delivered_to, "src": f.src, "sport": f.sport, "dst": f.dst, "dport": f.dport}

    def outcome_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "matched_rules": [{"hook": s.hook, "table": s.table, "chain": s.chain, "rule_index": s.index,
                               "rule_text": s.rule, "verdict": s.verdict} for s in self.matched_rules],
            "dnat_to": self.dnat_to,
            "masquerade": self.masquerade,
            "snat_to": self.snat_to,
            "delivered": self.delivered_json(),
        }

    def to_json(self) -> dict:
        """The JSON object of `kplab trace --json` (DESIGN section 4)."""
        d = {"input": self.input_json()}
        d.update(self.outcome_json())
        d["steps"] = [s.to_json() for s in self.steps]
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d

    def to_records(self) -> list:
        """One plain dict per step (for pandas: `DataFrame(trace.to_records())`)."""
        out = []
        for n, s in enumerate(self.steps, 1):
            out.append({"step": n, "kind": s.kind, "hook": s.hook, "table": s.table, "chain": s.chain,
                        "rule": s.index, "text": s.rule, "matched": s.matched, "verdict": s.verdict,
                        "reason": s.reason, "count": s.count,
                        "packet": str(s.after if s.changed else s.before) if s.before is not None else None})
        return out

    def journey(self, verbose: bool = True) -> str:
        """A readable, numbered account of the walk.

        With `verbose=False` only the steps that did something are listed
        (matched rules, policies, NAT, routing, delivery).
        """
        p = self.packet
        lines = [f"{p} from {self.origin}"]
        n = 0
        for s in self.steps:
            if not verbose and s.kind in ("skipped",) or (not verbose and s.kind == "rule" and not s.matched):
                continue
            n += 1
            lines.append(f"{n:3d}. {_step_line(s)}")
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        """One sentence: what became of the packet."""
        if self.verdict == "ACCEPT" and self.final is not None:
            where = "this node" if self.delivered_to == "node" else self.delivered_to
            s = f"ACCEPT: delivered to {where} as {self.final}"
        elif self.verdict == "REJECT":
            s = "REJECT: dropped, and an error is sent back to the sender"
        else:
            s = f"{self.verdict}: the packet is dropped"
        extra = []
        if self.direction == "REPLY" and (self.dnat_to or self.snat_to):
            changed = [f"source {self.snat_to}" if self.snat_to else "", f"destination {self.dnat_to}" if self.dnat_to else ""]
            return s + f" (a reply: conntrack reversed the translation, {' and '.join(c for c in changed if c)})"
        if self.dnat_to:
            extra.append(f"DNAT to {self.dnat_to}")
        if self.masquerade:
            word = "masqueraded" if any(st.verdict == "MASQUERADE" for st in self.steps) else "source NAT"
            extra.append(f"{word}{' to ' + self.snat_to if self.snat_to else ' (source unchanged)'}")
        elif self.snat_to:
            extra.append(f"SNAT to {self.snat_to}")
        if self.probability < 1.0:
            extra.append(f"probability {self.probability:.4g}")
        return s + (f" ({'; '.join(extra)})" if extra else "")


def _step_line(s: Step) -> str:
    indent = "  " * s.depth
    if s.kind == "rule":
        where = f"{s.hook:<11} {s.table:<7} {indent}{s.chain} #{s.index}"
        if s.matched:
            return f"{where}: {s.rule}  => {s.verdict}"
        return f"{where}: no match ({s.reason})"
    if s.kind == "skipped":
        return (f"{s.hook:<11} {s.table:<7} {indent}{s.chain} #{s.index}-#{s.index + s.count - 1}: "
                f"{s.count} rules, none matched ({s.reason})")
    if s.kind == "policy":
        return f"{s.hook:<11} {s.table:<7} {s.chain}: end of built-in chain, policy {s.verdict}"
    if s.kind == "return":
        return f"{s.hook:<11} {s.table:<7} {indent}{s.chain}: {s.note}"
    head = f"{s.hook:<11} " if s.hook else ""
    return f"{head}{s.kind}: {s.reason}"
