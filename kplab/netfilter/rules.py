"""Rules, chains, tables and rulesets as plain, immutable data.

A `Rule` is a list of matches and at most one target. A match module (`-m
tcp`, `-m conntrack`, ...) and a target (`-j DNAT`, ...) are each one small
class registered by name; the class parses its own options, prints its saved
form and decides whether a packet matches (with a reason when it does not).
The generic criteria (`-s -d -i -o -p -f`) are matches too, kept apart only
because iptables-save always prints them first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Iterator, NamedTuple

from .hooks import SAVE_TABLE_ORDER, TABLE_CHAINS
from .values import proto_text


class Opt(NamedTuple):
    """One option as written: `[!] --name VALUE...`; `pos` is its token index."""

    name: str
    values: tuple
    invert: bool = False
    pos: int = 0

    @property
    def value(self) -> str:
        return self.values[0]


class Module:
    """What match modules and targets share: a name, options, a saved form.

    `OPTIONS` maps each long option to `(number of values, invertible)`;
    `ALIASES` maps other spellings to the canonical name. `from_options`
    builds the instance or raises `OptionError`; `check` runs once the whole
    rule is read (protocol requirements and the like).
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[dict] = {}
    ALIASES: ClassVar[dict] = {}
    #: False for opaque placeholders of modules kplab does not model.
    supported: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts: list, ctx: "RuleContext"):
        raise NotImplementedError

    def check(self, ctx: "RuleContext") -> None:
        """Refuse combinations the kernel refuses; `ctx` is the whole rule."""

    def save(self) -> str:
        raise NotImplementedError


class Match(Module):
    """A test on the packet (or on state the kernel keeps about it).

    `matches(packet, ctx)` is the hot path; `why_not(packet, ctx)` returns
    the sentence a trace shows when it is False. Matches whose result depends
    on state (conntrack, recent, statistic) set `stateful`, so the trace asks
    for the reason at once instead of later.
    """

    stateful: ClassVar[bool] = False
    #: True when loading this match turns connection tracking on.
    needs_conntrack: ClassVar[bool] = False

    def matches(self, pkt, ctx) -> bool:
        raise NotImplementedError

    def why_not(self, pkt, ctx) -> str:
        return f"{self.save()} does not match"

    def describe(self) -> str:
        """A short human phrase of what the match wants (for tables and diagrams)."""
        return self.save()


class Target(Module):
    """What happens to a packet when all matches of its rule hold.

    `apply(packet, ctx)` returns `(word, packet)`: `word` is the verdict the
    trace records (`ACCEPT`, `DROP`, `REJECT`, `RETURN`, `CONTINUE`, `DNAT`,
    `SNAT`, `MASQUERADE`, `JUMP:X`, `GOTO:X`) and `packet` the packet
    afterwards (changed by MARK, for example).
    """

    terminating: ClassVar[bool] = True
    needs_conntrack: ClassVar[bool] = False

    def apply(self, pkt, ctx):
        raise NotImplementedError


@dataclass(frozen=True)
class RuleContext:
    """What a module may look at while checking itself: the rule around it."""

    table: str
    chain: str
    family: int
    proto: int = 0
    proto_invert: bool = False
    matches: tuple = ()

    def proto_name(self) -> str | None:
        return None if self.proto_invert or self.proto == 0 else proto_text(self.proto)


@dataclass(frozen=True)
class Rule:
    """One rule: generic criteria, match modules, and an optional target.

    `line` is where the rule came from in its file (for error messages); it
    and `counters` take no part in equality, so a saved and re-parsed rule
    equals the original.
    """

    ip: tuple = ()
    matches: tuple = ()
    target: Target | None = None
    line: int | None = field(default=None, compare=False)
    counters: tuple | None = field(default=None, compare=False)

    @property
    def all_matches(self) -> tuple:
        return self.ip + self.matches

    @property
    def supported(self) -> bool:
        return all(m.supported for m in self.matches) and (self.target is None or self.target.supported)

    def unsupported(self) -> list:
        """The modules of this rule kplab does not model (loaded as opaque)."""
        out = [m for m in self.matches if not m.supported]
        if self.target is not None and not self.target.supported:
            out.append(self.target)
        return out

    @property
    def jump(self) -> str | None:
        """The user chain this rule jumps or goes to, if any."""
        return getattr(self.target, "chain", None)

    def spec(self) -> str:
        """The rule without `-A CHAIN`, exactly as iptables-save prints it."""
        cached = self.__dict__.get("_spec")
        if cached is not None:
            return cached
        parts = [m.save() for m in self.ip]
        parts += [m.save() for m in self.matches]
        if self.target is not None:
            parts.append(self.target.save())
        cached = " ".join(p for p in parts if p)
        object.__setattr__(self, "_spec", cached)
        return cached

    def text(self, chain: str) -> str:
        s = self.spec()
        return f"-A {chain} {s}" if s else f"-A {chain}"


_object_new = object.__new__


def new_rule(ip: tuple, matches: tuple, target, line, counters) -> Rule:
    """`Rule(ip, matches, target, line=line, counters=counters)`, three times as fast.

    The parser makes one Rule per line of a dump (170,000 for 10,000 Services),
    and a frozen dataclass's __init__ sets each field through object.__setattr__;
    this fills the instance's __dict__ directly. Rule has no __post_init__ and
    no slots; tests/netfilter/test_fast_path.py checks that both give the same.
    """
    r = _object_new(Rule)
    d = r.__dict__
    d["ip"] = ip
    d["matches"] = matches
    d["target"] = target
    d["line"] = line
    d["counters"] = counters
    return r


def new_context(table: str, chain: str, family: int, proto: int, proto_invert: bool) -> RuleContext:
    """`RuleContext(table, chain, family, proto, proto_invert)`, as `new_rule` makes a Rule
    (the parser makes one for each module or target it has not seen before)."""
    c = _object_new(RuleContext)
    d = c.__dict__
    d["table"] = table
    d["chain"] = chain
    d["family"] = family
    d["proto"] = proto
    d["proto_invert"] = proto_invert
    d["matches"] = ()
    return c


def new_chain(name: str, rules: tuple, policy: str | None) -> "Chain":
    """`Chain(name, rules, policy)`, as `new_rule` makes a Rule (a dump of 10,000
    Services has 60,000 chains)."""
    c = _object_new(Chain)
    d = c.__dict__
    d["name"] = name
    d["rules"] = rules
    d["policy"] = policy
    d["counters"] = (0, 0)
    return c


@dataclass(frozen=True)
class Chain:
    """An ordered list of rules; built-in chains have a policy (ACCEPT or DROP)."""

    name: str
    rules: tuple = ()
    policy: str | None = None
    counters: tuple = (0, 0)

    @property
    def builtin(self) -> bool:
        return self.policy is not None

    def __len__(self) -> int:
        return len(self.rules)


@dataclass(frozen=True)
class Table:
    """One table (raw, mangle, nat, filter, security) and its chains."""

    name: str
    chains: dict = field(default_factory=dict)

    def __hash__(self):
        return hash((self.name, tuple(self.chains)))

    def chain(self, name: str) -> Chain:
        return self.chains[name]

    def builtin_chains(self) -> list:
        return [self.chains[c] for c in TABLE_CHAINS[self.name] if c in self.chains]

    def user_chains(self) -> list:
        return [c for c in self.chains.values() if not c.builtin]

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())


@dataclass(frozen=True)
class Ruleset:
    """All tables of one node, for one address family (4 or 6).

    `warnings` lists what loaded but cannot be modelled exactly (opaque
    modules), with line numbers; `source` names the file it came from.
    """

    tables: dict = field(default_factory=dict)
    family: int = 4
    warnings: tuple = ()
    source: str | None = field(default=None, compare=False)

    def __hash__(self):
        return id(self)

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return None if t is None else t.chains.get(chain)

    def rule_count(self) -> int:
        return sum(t.rule_count() for t in self.tables.values())

    def ordered_tables(self) -> Iterator[Table]:
        for name in SAVE_TABLE_ORDER:
            if name in self.tables:
                yield self.tables[name]

    def rules(self) -> Iterator[tuple]:
        """Every rule as (table, chain, 1-based index, rule)."""
        for t in self.ordered_tables():
            for c in t.chains.values():
                for i, r in enumerate(c.rules, 1):
                    yield t.name, c.name, i, r

    @property
    def needs_conntrack(self) -> bool:
        """Whether some rule turns connection tracking on (a NAT target or a
        conntrack-based match). Without one, the kernel tracks nothing and
        never walks the nat chains."""
        cached = self.__dict__.get("_needs_ct")
        if cached is None:
            cached = any(
                (r.target is not None and r.target.needs_conntrack)
                or any(m.needs_conntrack for m in r.matches)
                for _, _, _, r in self.rules())
            object.__setattr__(self, "_needs_ct", cached)
        return cached

    def recent_hitcount(self, list_name: str) -> int:
        """The largest `--hitcount` of the `-m recent` rules naming a list."""
        cached = self.__dict__.get("_recent_hits")
        if cached is None:
            cached = {}
            for _, _, _, r in self.rules():
                for m in r.matches:
                    if m.name == "recent":
                        cached[m.list_name] = max(cached.get(m.list_name, 0), m.hitcount)
            object.__setattr__(self, "_recent_hits", cached)
        return cached.get(list_name, 0)

    def save(self) -> str:
        from .iptables_save import save
        return save(self)
