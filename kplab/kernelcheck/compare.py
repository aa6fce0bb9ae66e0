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
_LOCAL_ERROR_CHAINS = ("OUTPUT", "POSTROUTING", "PREROUTING", "INPUT")


def random_port_rule(ruleset, hits) -> bool:
    """Whether a NAT rule that picks a random source port (--random,
    --random-fully) fired: the kernel's choice of port is not predictable."""
    for (table, chain, index), n in hits.items():
        c = ruleset.chain(table, chain)
        if n > 0 and c is not None and 0 < index <= len(c.rules):
            t = c.rules[index - 1].target
            if t is not None and t.name in ("MASQUERADE", "SNAT") and (t.random or t.random_fully):
                return True
    return False


def _same_delivery(kd, od, random_port: bool) -> bool:
    if kd == od or kd is None or od is None or not random_port:
        return kd == od
    a, b = dict(kd), dict(od)
    pa, pb = a.pop("sport"), b.pop("sport")
    return a == b and (pa is None) == (pb is None) and (pb is None or 1 <= pb <= 65535)


def compare_one(trace, obs, ruleset):
    """(mismatches, notes) between one kplab outcome and the kernel."""
    out, notes = [], []
    verdict = obs.verdict
    rejecting = [s for s in trace.matched_rules if s.verdict == "REJECT"]
    if (trace.verdict == "REJECT" and verdict == "DROP" and rejecting
            and obs.rule_hits.get((rejecting[-1].table, rejecting[-1].chain, rejecting[-1].index), 0) > 0):
        # The REJECT rule fired in the kernel too, but the error it sent was
        # itself dropped on its way out (OUTPUT/POSTROUTING), so none came back.
        verdict = "REJECT"
        notes.append("the kernel's REJECT rule fired, but its ICMP error / RST was dropped on the way out")
    if trace.verdict != verdict:
        out.append(Mismatch("verdict", trace.verdict, obs.verdict))
    kd = trace.delivered_json()
    random_port = random_port_rule(ruleset, obs.rule_hits)
    if not _same_delivery(kd, obs.delivered, random_port):
        out.append(Mismatch("delivered", kd, obs.delivered))
    elif random_port and kd != obs.delivered:
        notes.append(f"source port chosen at random: kplab {kd['sport']}, kernel {obs.delivered['sport']}")
    if trace.dnat_to != obs.dnat_to and trace.verdict == "ACCEPT" and obs.verdict == "ACCEPT":
        out.append(Mismatch("dnat_to", trace.dnat_to, obs.dnat_to))
    want, got = expected_hits(trace), Counter({k: v for k, v in obs.rule_hits.items() if v})
    own = got
    if want != got:
        extra = got - want
        missing = want - got
        local = trace.origin == "node"
        if verdict == "REJECT" and not missing and all(
                _error_packet_chain(ruleset, k, local) for k in extra):
            notes.append("counters in OUTPUT/POSTROUTING from the error the REJECT sent: " + path_text(extra))
            own = got - extra              # the error packet's own hits
        else:
            out.append(Mismatch("rule_hits", path_text(want), path_text(got)))
    km = kernel_masquerade(ruleset, own)
    if trace.masquerade != km:
        out.append(Mismatch("masquerade", trace.masquerade, km))
    return out, notes


def _error_packet_chain(ruleset, key, local: bool = False) -> bool:
    """Could the ICMP error / RST a REJECT sends (a locally generated packet)
    have passed this rule? Built-in OUTPUT/POSTROUTING, or chains they reach;
    when the rejected packet came from the node itself, the error is
    delivered back to it through lo, so PREROUTING and INPUT too."""
    table, chain, _ = key
    bases = _LOCAL_ERROR_CHAINS if local else _ERROR_HOOK_CHAINS
    if chain in bases:
        return True
    t = ruleset.table(table)
    if t is None:
        return False
    todo, seen = [c for c in bases if c in t.chains], set()
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
