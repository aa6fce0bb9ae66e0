"""The differential suite: the same ruleset and packets through the kernel
and through kplab, compared field by field.

For each case: the kernel and kplab must agree on whether the ruleset loads;
if it loads, `kplab save` must print what the kernel's `iptables-save` prints;
then every packet is sent through both and compared (`compare.py`). Recent
lists and nth counters carry over from packet to packet on both sides;
conntrack is flushed before each packet unless the case keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import KplabError
from ..netfilter.iptables_save import parse, save
from ..node import Node
from .compare import Mismatch, compare


@dataclass
class CaseResult:
    """Everything the suite found for one case."""

    name: str
    kernel_loaded: bool = False
    kernel_message: str = ""
    kplab_loaded: bool = False
    kplab_message: str = ""
    problems: list = field(default_factory=list)        # Mismatch of acceptance/save
    comparisons: list = field(default_factory=list)     # Comparison per packet
    replies: list = field(default_factory=list)         # Comparison per reply

    @property
    def mismatches(self) -> list:
        return list(self.problems) + [c for c in self.comparisons + self.replies if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def report(self, verbose: bool = False) -> str:
        lines = []
        if self.problems:
            lines.append(f"MISMATCH {self.name}")
            lines += [f"    {p}" for p in self.problems]
        for c in self.comparisons + self.replies:
            if verbose or not c.ok:
                lines.append(c.report())
        return "\n".join(lines)


def _has_random(ruleset) -> bool:
    for _, _, _, r in ruleset.rules():
        for m in r.matches:
            if m.name == "statistic" and m.mode == "random" and 0 < m.stored < 0x80000000:
                return True
    return False


def _save_diff(want: str, got: str) -> str:
    a, b = want.splitlines(), got.splitlines()
    for k, (x, y) in enumerate(zip(a, b), 1):
        if x != y:
            return f"line {k}: kplab {x!r} | kernel {y!r}"
    return f"kplab has {len(a)} lines, kernel {len(b)}"


def run_case(lab, case, *, keep_conntrack: bool = False, replies: bool = True,
             check_save: bool = True) -> CaseResult:
    """Load `case` into the lab and into kplab; compare acceptance, save
    text and every packet (and, with `replies`, the answer to each packet
    that was delivered)."""
    res = CaseResult(case.name)
    res.kernel_loaded, res.kernel_message = lab.load(case.rules)
    try:
        rs = parse(case.rules, source=case.name)
        res.kplab_loaded = True
    except KplabError as e:
        rs, res.kplab_message = None, str(e)
    if res.kernel_loaded != res.kplab_loaded:
        res.problems.append(Mismatch("acceptance", res.kplab_message or "loads",
                                     res.kernel_message.strip() or "loads"))
        return res
    if not res.kernel_loaded:
        return res
    if check_save:
        kernel_text, kplab_text = lab.save(), save(rs)
        if kernel_text != kplab_text:
            res.problems.append(Mismatch("save", "kplab save", _save_diff(kplab_text, kernel_text)))
    node = Node(rs, lab.topology)
    random_paths = _has_random(rs)
    for spec in case.packets:
        try:
            pkt = node.packet(spec.from_, spec.dst, spec.proto, spec.dport, spec.sport, spec.src)
        except KplabError as e:
            res.problems.append(Mismatch("packet", str(e), "not sent"))
            continue
        if not keep_conntrack:
            node.state.conntrack.flush()
        outcomes = node.all_paths(pkt, spec.from_) if random_paths else []
        trace = node.send(pkt, spec.from_)
        obs = lab.send(spec.from_, pkt, flush=not keep_conntrack)
        c = compare(case.name, f"{pkt} from {spec.from_}", outcomes or [trace], obs, rs)
        res.comparisons.append(c)
        if replies and c.ok and obs.verdict == "ACCEPT" and not random_paths:
            rtrace = node.reply(trace)
            robs = lab.send_reply(obs)
            res.replies.append(compare(case.name, f"reply to {pkt}", [rtrace], robs, rs))
    return res


#: Critical values of the chi-square distribution at significance 0.001, by
#: degrees of freedom (standard statistical tables).
CHI2_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 6: 22.458, 7: 24.322, 8: 26.124,
            9: 27.877, 10: 29.588, 11: 31.264, 12: 32.909, 13: 34.528, 14: 36.123, 15: 37.697}


def distribution(lab, rules: str, from_: str, dst: str, dport: int, count: int = 300):
    """Send `count` new connections through the kernel; return (kernel counts
    per delivered destination, kplab's probability per destination, the
    chi-square statistic, the critical value at 0.001)."""
    ok, msg = lab.load(rules)
    if not ok:
        raise KplabError(f"the kernel refused the ruleset: {msg}")
    rs = parse(rules)
    node = Node(rs, lab.topology)
    pkt = node.packet(from_, dst, "tcp", dport)
    expected: dict = {}
    for o in node.all_paths(pkt, from_):
        key = o.final.endpoint("dst") if o.final is not None else o.verdict
        expected[key] = expected.get(key, 0.0) + o.probability
    seen: dict = {}
    for d in lab.send_many(from_, pkt, count):
        key = f"{d['dst']}:{d['dport']}" if d else "DROP"
        seen[key] = seen.get(key, 0) + 1
    chi2 = 0.0
    for key in set(expected) | set(seen):
        e = expected.get(key, 0.0) * count
        o = seen.get(key, 0)
        if e == 0:
            chi2 = float("inf") if o else chi2
            continue
        chi2 += (o - e) ** 2 / e
    dof = max(1, len(expected) - 1)
    return seen, expected, chi2, CHI2_001.get(dof, CHI2_001[15])
