"""Check builders: each returns a function answer -> Feedback.

* `choice` for predictions with one right word ("DROP", "nat", "backend2");
  the right word may be computed by the simulator (pass a function), so the
  exercise cannot drift from what kplab (and the kernel) does.
* `number` for counts and probabilities, `sequence` for orders.
* `rules` for written or repaired rules: the learner's rules are loaded into
  a fresh standard node and every `Probe` is sent; each probe says what the
  packet must do and what to tell the learner when it does not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import KplabError
from ._core import Feedback, right, wrong

_ANY = object()


def _norm(text) -> str:
    return re.sub(r"\s+", " ", str(text).strip().strip(".").strip("'\"`")).lower()


def _resolve(value):
    return value() if callable(value) else value


def choice(correct, *, why: dict | None = None, aliases: dict | None = None, options=None,
           praise: str = "") -> Callable[[Any], Feedback]:
    """One right answer among words. `why` maps a wrong answer to the sentence that explains it;
    `aliases` maps other spellings to canonical ones; `options` (if given) lists what may be picked."""
    why = {_norm(k): v for k, v in (why or {}).items()}
    aliases = {_norm(k): _norm(v) for k, v in (aliases or {}).items()}

    def check(answer) -> Feedback:
        if not isinstance(answer, str):
            return wrong(f"Answer with a string, e.g. {_example(correct)!r}; you gave {type(answer).__name__}.")
        want = _norm(_resolve(correct))
        got = aliases.get(_norm(answer), _norm(answer))
        if got == want:
            return right(praise)
        if options is not None:
            allowed = [_norm(o) for o in _resolve(options)]
            if got not in allowed:
                return wrong(f"{answer!r} is not one of the choices: {', '.join(map(str, _resolve(options)))}.")
        return wrong(why.get(got, f"{answer!r} is not it. Look again, or ask for a hint."))
    return check


def _example(correct) -> str:
    value = _resolve(correct)
    return str(value) if isinstance(value, str) else "..."


def number(correct, *, tolerance: float = 1e-9, low: str = "", high: str = "", why: dict | None = None,
           praise: str = "") -> Callable[[Any], Feedback]:
    """A number; `low`/`high` say what it means to be under or over. Fractions like "1/3" are accepted."""
    def check(answer) -> Feedback:
        value = _to_number(answer)
        if value is None:
            return wrong(f"Answer with a number (like 3, 0.5 or \"1/3\"); you gave {answer!r}.")
        want = float(_resolve(correct))
        if abs(value - want) <= tolerance:
            return right(praise)
        for k, v in (why or {}).items():
            if abs(value - float(k)) <= tolerance:
                return wrong(v)
        if value < want:
            return wrong(low or f"{answer} is too small.")
        return wrong(high or f"{answer} is too large.")
    return check


def _to_number(answer):
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)):
        return float(answer)
    if isinstance(answer, str):
        text = answer.strip()
        m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", text)
        if m and float(m.group(2)) != 0:
            return float(m.group(1)) / float(m.group(2))
        try:
            return float(text)
        except ValueError:
            return None
    return None


def sequence(correct, *, why: Callable[[list, list], str] | None = None, praise: str = "",
             what: str = "items") -> Callable[[Any], Feedback]:
    """An ordered list of words (tables in the order they run, hooks a packet meets...)."""
    def check(answer) -> Feedback:
        if isinstance(answer, str):
            answer = [a for a in re.split(r"[\s,>→-]+", answer) if a]
        if not isinstance(answer, (list, tuple)):
            return wrong(f"Answer with a list of {what}, like {list(_resolve(correct))[:2]!r}.")
        got = [_norm(a) for a in answer]
        want = [_norm(a) for a in _resolve(correct)]
        if got == want:
            return right(praise)
        missing = [w for w in want if w not in got]
        extra = [g for g in got if g not in want]
        if missing:
            return wrong(f"Missing: {', '.join(missing)}.")
        if extra:
            return wrong(f"Not part of the answer: {', '.join(extra)}.")
        if why:
            msg = why(got, want)
            if msg:
                return wrong(msg)
        first = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        return wrong(f"The right {what}, but not in the right order: position {first + 1} should be "
                     f"{want[first]!r}, not {got[first]!r}.")
    return check


# -- the standard node's addresses (DESIGN section 3), for probes and prompts -------------------

def _standard_addresses():
    from ..topology import STANDARD
    pods = {p["name"]: p["ip"] for p in STANDARD["pods"]}
    peer = STANDARD["peer"]
    return (STANDARD["node"]["ip"].split("/")[0], pods["client"], pods["backend1"], pods["backend2"],
            {p["name"]: p["ip"] for p in peer["pods"]}["remote1"],
            {e["name"]: e["ip"] for e in peer["externals"]}["external"])


#: The node 192.168.0.2, its Pods client, backend1, backend2, the peer's Pod remote1, the host external.
NODE, CLIENT, BACKEND1, BACKEND2, REMOTE1, EXTERNAL = _standard_addresses()


# -- rules: the learner's rules, run through the simulator -------------------------------------

@dataclass(frozen=True)
class Probe:
    """A packet to send, what it must do, and what to say when it does not.

    `verdict` is the expected ACCEPT, DROP or REJECT; `delivered_to`,
    `dnat_to` and `masquerade` are checked when given. With `reply=True`
    the packet is sent (and committed), then its reply is checked instead.
    """

    label: str
    from_: str
    dst: str
    proto: str = "tcp"
    dport: int | None = None
    sport: int | None = None
    src: str | None = None
    verdict: str | None = None
    delivered_to: Any = _ANY
    dnat_to: Any = _ANY
    masquerade: Any = _ANY
    reply: bool = False
    wrong: str = ""

    def run(self, node):
        trace = node.send_from(self.from_, self.dst, self.proto, self.dport, sport=self.sport, src=self.src)
        if self.reply:
            trace = node.reply(trace)
        return trace

    def differences(self, trace) -> list:
        out = []
        if self.verdict is not None and trace.verdict != self.verdict:
            out.append(f"verdict {trace.verdict}, expected {self.verdict}")
        if self.delivered_to is not _ANY and trace.delivered_to != self.delivered_to:
            out.append(f"delivered to {trace.delivered_to or 'nobody'}, expected {self.delivered_to or 'nobody'}")
        if self.dnat_to is not _ANY and trace.dnat_to != self.dnat_to:
            out.append(f"DNAT to {trace.dnat_to or 'none'}, expected {self.dnat_to or 'none'}")
        if self.masquerade is not _ANY and bool(trace.masquerade) != bool(self.masquerade):
            out.append("masqueraded" if trace.masquerade else "not masqueraded, expected masquerade")
        return out


def outcome(trace) -> str:
    """One short phrase for what happened to a packet."""
    word = trace.verdict
    if trace.delivered_to:
        word = f"delivered to {trace.delivered_to}"
    elif trace.verdict == "ACCEPT":
        word = "accepted"
    extra = []
    if trace.dnat_to:
        extra.append(f"DNAT {trace.dnat_to}")
    if trace.masquerade:
        extra.append("masqueraded")
    return word + (f" ({', '.join(extra)})" if extra else "")


def as_ruleset_text(answer: str, base: str = "", table: str = "filter") -> str:
    """The learner's answer as iptables-restore text.

    Accepts a whole file (with `*table` ... `COMMIT`), bare rule lines
    (`-A FORWARD ...`, added to `base` in `table`), or `iptables [-t T] -A ...`
    commands as typed in a shell.
    """
    if not isinstance(answer, str):
        raise TypeError(f"rules are text, not {type(answer).__name__}")
    lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
    if any(ln.startswith("*") for ln in lines):
        return answer.strip() + "\n"
    added: dict = {}
    for ln in lines:
        if ln.startswith("#"):
            continue
        tbl = table
        words = ln.split()
        if words and words[0] in ("iptables", "sudo", "ip6tables"):
            words = [w for w in words if w not in ("sudo",)][1:]
            if "-t" in words:
                i = words.index("-t")
                if i + 1 < len(words):
                    tbl = words[i + 1]
                    del words[i:i + 2]
            ln = " ".join(words)
        added.setdefault(tbl, []).append(ln)
    return merge_rules(base, added)


def merge_rules(base: str, added: dict) -> str:
    """`base` (iptables-restore text) with `added` {table: [lines]} appended before each COMMIT."""
    out, current, seen = [], None, set()
    for line in base.strip().splitlines() if base.strip() else []:
        s = line.strip()
        if s.startswith("*"):
            current = s[1:]
        if s == "COMMIT" and current in added:
            out.extend(added[current])
            seen.add(current)
        out.append(line)
    for tbl, lines in added.items():
        if tbl not in seen:
            out.append(f"*{tbl}")
            out.extend(lines)
            out.append("COMMIT")
    return "\n".join(out) + "\n"


def rules(probes, *, base: str = "", table: str = "filter", topology=None,
          structure: Callable[[Any, str], str | None] | None = None,
          praise: str = "") -> Callable[[Any], Feedback]:
    """Load the learner's rules (see `as_ruleset_text`), send every probe, each through a fresh
    node (a probe's `reply` sets up its own connection), compare.

    `structure(ruleset, text)` may return a sentence when the rules work but
    are not built the way the exercise asks (e.g. "use a user-defined chain").
    """
    probes = tuple(probes)

    def check(answer) -> Feedback:
        from .. import parse_rules
        from ..node import Node
        text = as_ruleset_text(answer, base, table)
        try:
            ruleset = parse_rules(text, source="your rules")
        except KplabError as exc:
            return wrong(f"Your rules do not load: {exc}", _numbered(text))
        details, first = [], None
        for probe in probes:
            trace = probe.run(Node(ruleset, topology))
            diffs = probe.differences(trace)
            details.append(f"{'✓' if not diffs else '✗'} {probe.label}: {outcome(trace)}")
            if diffs and first is None:
                first = probe.wrong or f"{probe.label}: {'; '.join(diffs)}."
        if first is not None:
            return wrong(first, details)
        if structure is not None:
            msg = structure(ruleset, text)
            if msg:
                return wrong(msg, details)
        return right(praise or "Every test packet does what was asked.", details)
    return check


def _numbered(text: str) -> tuple:
    return tuple(f"{i:>3}  {line}" for i, line in enumerate(text.splitlines(), 1))
