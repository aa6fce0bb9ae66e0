"""A node: a ruleset, a topology, and the state the kernel keeps between packets.

`Node.send()` walks one packet through the node and returns its `Trace`;
the conntrack table, recent lists and counters change as they would in the
kernel. Time and chance are explicit: the node reads an injectable clock
(for `recent --seconds` and conntrack timeouts) and draws from its own
seeded generator, so the same inputs give the same Trace.
"""
from __future__ import annotations

import random
from collections import deque

from .errors import KplabError, TooManyPathsError, TopologyError
from .netfilter.engine import Chooser, NodeState, Walk, prepare
from .netfilter.rules import Ruleset
from .packet import Packet, PacketError, ip
from .topology import Topology


class ManualClock:
    """A clock that moves only when told to: `clock.advance(30)`."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise KplabError("time only moves forward")
        self.t += seconds
        return self.t


class Node:
    """One Linux host running netfilter.

    >>> node = Node(ruleset)                                    # doctest: +SKIP
    >>> trace = node.send_from("client", "10.96.5.81", dport=80)  # doctest: +SKIP
    """

    def __init__(self, ruleset: Ruleset | None = None, topology: Topology | dict | None = None, *,
                 clock=None, seed: int = 0, assume_unsupported: str | None = None):
        self.ruleset = ruleset if ruleset is not None else Ruleset()
        if topology is None or isinstance(topology, dict):
            topology = Topology(topology, family=self.ruleset.family)
        self.topology = topology
        if topology.family != self.ruleset.family and self.ruleset.tables:
            raise TopologyError(f"the ruleset is IPv{self.ruleset.family} but the topology is IPv{topology.family}")
        self.clock = clock if clock is not None else ManualClock()
        self.seed = seed
        self.rng = random.Random(seed)
        if assume_unsupported not in (None, "match", "nomatch"):
            raise KplabError("assume_unsupported must be None, 'match' or 'nomatch'")
        self.assume_unsupported = assume_unsupported
        self.state = NodeState()
        prepare(self.ruleset)

    # ------------------------------------------------------------------
    def packet(self, from_: str, dst: str, proto: str = "tcp", dport: int | None = None,
               sport: int | None = None, src: str | None = None) -> Packet:
        """The first packet of a new connection from `from_` (a name of the
        topology) to `dst`, with the source address the kernel would use."""
        origin = self.topology.origin(from_)
        try:
            d = str(ip(dst))
        except ValueError:
            raise PacketError(f"destination {dst!r} is not an IP address") from None
        if src is None:
            src = origin.src if not origin.local else self.topology.node_source(d)
        if proto in ("icmp", "icmpv6", "ipv6-icmp") and ip(d).version == 6:
            proto = "ipv6-icmp"
        return Packet.make(proto, src, d, sport, dport)

    def send(self, packet: Packet, from_: str = "client", *, commit: bool = True) -> "Trace":
        """Walk `packet`, entering the node from `from_`; return the Trace.

        With `commit=False` the node's state is left as it was (a what-if).
        """
        origin = self.topology.origin(from_)
        if packet.family != self.topology.family:
            raise PacketError(f"an IPv{packet.family} packet on an IPv{self.topology.family} node")
        state = self.state.copy()
        walk = Walk(self.ruleset, self.topology, state, self.clock(), Chooser(rng=self.rng),
                    self.assume_unsupported)
        trace = walk.run(packet, origin)
        if commit:
            self.state = state
        return trace

    def send_from(self, from_: str, dst: str, proto: str = "tcp", dport: int | None = None,
                  sport: int | None = None, src: str | None = None, **kw):
        return self.send(self.packet(from_, dst, proto, dport, sport, src), from_, **kw)

    def reply(self, trace, **kw):
        """Send the answer to a delivered packet back from its receiver."""
        if trace.final is None or trace.delivered_to is None:
            raise KplabError("that packet was not delivered, so nothing answers it")
        frm = trace.delivered_to
        if frm not in self.topology.names():
            frm = "peer"
        return self.send(trace.final.reply().replace(in_iface=None, out_iface=None, ttl=64, mark=0), frm, **kw)

    def all_paths(self, packet: Packet, from_: str = "client", *, max_paths: int = 10000,
                  sample: int | None = None) -> list:
        """Every possible outcome, branching at each `statistic --mode random`
        draw, most likely first. The node's state is not changed.

        Past `max_paths` outcomes this raises TooManyPathsError (with the
        count, up to a bound) unless `sample` asks for that many seeded
        random paths instead.
        """
        origin = self.topology.origin(from_)
        now = self.clock()
        if sample is not None:
            rng = random.Random(self.seed)
            out = [Walk(self.ruleset, self.topology, self.state.copy(), now, Chooser(rng=rng),
                        self.assume_unsupported, rng=random.Random(self.seed)).run(packet, origin)
                   for _ in range(sample)]
            return out
        results, frontier = [], deque([()])
        while frontier:
            # Breadth first: where the draws multiply (2^n paths), the frontier outgrows
            # max_paths after a few walks instead of after max_paths of them.
            forced = frontier.popleft()
            chooser = Chooser(forced=forced)
            trace = Walk(self.ruleset, self.topology, self.state.copy(), now, chooser,
                         self.assume_unsupported, rng=random.Random(self.seed)).run(packet, origin)
            if trace.probability > 0:
                results.append(trace)
            _push_flips(frontier, chooser, len(forced))
            # every prefix waiting in the frontier leads to at least one more path
            if len(results) + len(frontier) > max_paths:
                total, exact = self._count_more(frontier, packet, origin, now, bound=100 * max_paths)
                total += len(results)
                raise TooManyPathsError(
                    f"{'' if exact else 'more than '}{total} possible paths (over the limit of {max_paths}): "
                    "raise --max-paths, or use --sample N to follow N seeded random paths", total)
        results.sort(key=lambda t: (-t.probability, t.dnat_to or ""))
        return results

    #: Counting the paths past the limit stops after this many evaluated rules (a deterministic
    #: bound; COUNT_SECONDS is only a last resort against a pathological ruleset).
    COUNT_RULES = 2_000_000
    COUNT_SECONDS = 30.0

    def _count_more(self, frontier, packet, origin, now, bound):
        """(paths still in `frontier`, exact?): walked one by one without keeping them, until
        `bound` walks, COUNT_RULES evaluated rules, or a frontier of more than `bound` / 10
        prefixes (the draws multiply: there are far more paths than allowed); past that, a
        lower bound (each prefix left leads to at least one path)."""
        import time
        n = work = 0
        wide = bound // 10
        deadline = time.monotonic() + self.COUNT_SECONDS
        while (frontier and n < bound and work < self.COUNT_RULES and len(frontier) <= wide
               and time.monotonic() < deadline):
            forced = frontier.popleft()
            chooser = Chooser(forced=forced)
            work += Walk(self.ruleset, self.topology, self.state.copy(), now, chooser,
                         self.assume_unsupported).run(packet, origin).evaluated
            n += 1
            _push_flips(frontier, chooser, len(forced))
        return n + len(frontier), not frontier

    # ------------------------------------------------------------------
    @property
    def conntrack(self):
        return self.state.conntrack

    def load_conntrack(self, text: str, source: str | None = None) -> None:
        """Start from a real node's connections (`conntrack -L` output)."""
        from .netfilter.conntrack import parse_conntrack
        self.state.conntrack = parse_conntrack(text, self.clock(), source)

    def conntrack_text(self) -> str:
        """The conntrack table as `conntrack -L` prints it."""
        return self.state.conntrack.text(self.clock())

    def advance(self, seconds: float) -> None:
        """Move this node's clock (only for the default ManualClock)."""
        if not hasattr(self.clock, "advance"):
            raise KplabError("this node's clock is not a ManualClock")
        self.clock.advance(seconds)

    def load(self, ruleset: Ruleset) -> None:
        """Replace the rules, keeping connections (as iptables-restore does)."""
        self.ruleset = ruleset
        prepare(ruleset)


from .netfilter.trace import Trace  # noqa: E402  (for type names in docs)


def _push_flips(frontier, chooser, start: int) -> None:
    """Queue the other branch of each draw this walk made past its forced prefix."""
    values = [d.value for d in chooser.decisions]
    for j in range(start, len(chooser.decisions)):
        if chooser.decisions[j].both_possible:
            frontier.append(tuple(values[:j]) + (not values[j],))
