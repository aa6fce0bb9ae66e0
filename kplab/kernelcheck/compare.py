"""Field-by-field comparison of a kplab trace with what the kernel did.

The kernel side is a `KernelObservation` (see `harness.py`): the verdict,
where the packet arrived and with which headers, the per-rule packet
counters, and the conntrack entry. The kplab side is one Trace, or every
outcome of `Node.all_paths` when `statistic` rules make the path random (the
kernel's single path must then be one of kplab's).

Rule hits are compared as a multiset of (table, chain, rule index): the
counters say how often each rule matched, not in which order. When the
packet was rejected, the ICMP error or TCP RST the kernel sends is itself a
packet through OUTPUT and POSTROUTING; hits the kernel counted there that
kplab's walk of the original packet does not explain are reported as notes,
not mismatches.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Fields compared, in the order a report lists them.
FIELDS = ("verdict", "delivered", "dnat_to", "masquerade", "rule_hits")


@dataclass(frozen=True)
class Mismatch:
    field: str
    kplab: object
    kernel: object

    def __str__(self) -> str:
        return f"{self.field}: kplab {self.kplab!r} != kernel {self.kernel!r}"


@dataclass(frozen=True)
class Comparison:
    """One packet of one case: the kernel's observation against kplab's
    closest outcome (the one with the fewest mismatches)."""

    case: str
    packet: str
    kernel: object
    trace: object
    mismatches: tuple = ()
    notes: tuple = field(default=())
    outcomes: int = 1

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def report(self) -> str:
        lines = [f"{'ok ' if self.ok else 'MISMATCH'} {self.case}: {self.packet}"]
        for m in self.mismatches:
            lines.append(f"    {m}")
        if not self.ok:
            lines.append("    kplab path:  " + path_text(expected_hits(self.trace)))
            lines.append("    kernel path: " + path_text(self.kernel.rule_hits))
            lines.append(f"    kplab: {self.trace.summary()}")
        for n in self.notes:
            lines.append(f"    note: {n}")
        return "\n".join(lines)


def expected_hits(trace) -> Counter:
    """The per-rule counters the kernel should show after this trace."""
    return Counter((s.table, s.chain, s.index) for s in trace.matched_rules)


def path_text(hits) -> str:
    return ", ".join(f"{t}/{c}#{i}" + (f"x{n}" if n > 1 else "") for (t, c, i), n in sorted(hits.items())) or "(none)"


def kernel_masquerade(ruleset, hits) -> bool:
    """Whether a MASQUERADE or SNAT rule fired, read from the counters."""
    for (table, chain, index), n in hits.items():
        if n <= 0:
            continue
        c = ruleset.chain(table, chain)
        if c is not None and 0 < index <= len(c.rules):
            t = c.rules[index - 1].target
            if t is not None and t.name in ("MASQUERADE", "SNAT"):
                return True
    return False


_ERROR_HOOK_CHAINS = ("OUTPUT", "POSTROUTING")


def compare_one(trace, obs, ruleset):
    """(mismatches, notes) between one kplab outcome and the kernel."""
    out, notes = [], []
    if trace.verdict != obs.verdict:
        out.append(Mismatch("verdict", trace.verdict, obs.verdict))
    kd = trace.delivered_json()
    if kd != obs.delivered:
        out.append(Mismatch("delivered", kd, obs.delivered))
    if trace.dnat_to != obs.dnat_to and trace.verdict == "ACCEPT" and obs.verdict == "ACCEPT":
        out.append(Mismatch("dnat_to", trace.dnat_to, obs.dnat_to))
    km = kernel_masquerade(ruleset, obs.rule_hits)
    if trace.masquerade != km:
        out.append(Mismatch("masquerade", trace.masquerade, km))
    want, got = expected_hits(trace), Counter({k: v for k, v in obs.rule_hits.items() if v})
    if want != got:
        extra = got - want
        missing = want - got
        if obs.verdict == "REJECT" and not missing and all(
                _error_packet_chain(ruleset, k) for k in extra):
            notes.append("counters in OUTPUT/POSTROUTING from the error the REJECT sent: " + path_text(extra))
        else:
            out.append(Mismatch("rule_hits", path_text(want), path_text(got)))
    return out, notes


def _error_packet_chain(ruleset, key) -> bool:
    """Could the ICMP error / RST a REJECT sends (a locally generated packet)
    have passed this rule? Built-in OUTPUT/POSTROUTING, or chains they reach."""
    table, chain, _ = key
    if chain in _ERROR_HOOK_CHAINS:
        return True
    t = ruleset.table(table)
    if t is None:
        return False
    todo, seen = [c for c in _ERROR_HOOK_CHAINS if c in t.chains], set()
    while todo:
        c = todo.pop()
        if c == chain:
            return True
        if c in seen:
            continue
        seen.add(c)
        todo.extend(r.jump for r in t.chains[c].rules if r.jump)
    return False


def compare(case: str, packet: str, outcomes: list, obs, ruleset) -> Comparison:
    """Compare the kernel's observation with kplab's outcome(s); with several
    (random statistic paths) the kernel must match one of them."""
    best = None
    for t in outcomes:
        mism, notes = compare_one(t, obs, ruleset)
        if best is None or len(mism) < len(best[1]):
            best = (t, mism, notes)
        if not mism:
            break
    t, mism, notes = best
    return Comparison(case, packet, obs, t, tuple(mism), tuple(notes), len(outcomes))
