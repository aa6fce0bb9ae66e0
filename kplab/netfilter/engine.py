"""The walk: one packet through the hooks, tables and chains of one node.

The walk is pure given its inputs: the ruleset, the topology, the node's
state (conntrack table, recent lists, counters) as a copy, the clock's
reading and a chooser for random `statistic` draws. `Node` commits the
state afterwards; all-paths enumeration simply does not.

Order of everything is read from `hooks.py`; there is no per-hook branch
here beyond the packet paths themselves:

- arriving for this host: PREROUTING, routing, INPUT;
- arriving, to be forwarded: PREROUTING, routing, FORWARD, POSTROUTING;
- created here: routing, OUTPUT, re-routing, POSTROUTING (and, for a local
  destination, back in through `lo`: PREROUTING, INPUT).
"""
from __future__ import annotations

import copy
import weakref
from bisect import bisect_left
import random as _random
import zlib
from dataclasses import dataclass, field

from ..errors import UnsupportedError
from ..packet import ip
from .conntrack import ConntrackTable, Entry, Tuple, tcp_next_state, timeout_for
from .hooks import HOOK_ORDER, NAT_MANIP
from .matches import CT_STATES
from .targets import Goto, Jump
from .trace import Step, Trace

#: Past this many consecutive non-matching rules, the trace keeps one
#: "skipped" step with a count instead of one step per rule.
SUMMARISE_AFTER = 64

#: Chains at least this long get a destination index (see `_DstIndex`).
INDEX_MIN = 128


class _DstIndex:
    """Where, in a long chain, a packet's destination can match.

    kube-proxy's KUBE-SERVICES holds one rule per Service port, each with
    `-d CLUSTER_IP/32`; the kernel tries them one by one, and so does the
    trace (the count of rules evaluated is the lesson). The walk needs not
    *look* at a rule whose single-address `-d` differs from the packet's,
    though: such a rule cannot match, and its ip part (-s -d -p -i -o -f) has
    no side effects. The index lists, per destination, the rules that may
    match: those with that `-d`, and every rule without a single-address,
    non-inverted `-d`. The rules between are counted as evaluated and
    reported as misses, exactly as if walked.
    """

    __slots__ = ("by_dst", "others", "cache", "chain_ref")

    def __init__(self, chain):
        from .matches import Destination
        by_dst, others = {}, []
        full = {4: (1 << 32) - 1, 6: (1 << 128) - 1}
        for pos, rule in enumerate(chain.rules):
            for m in rule.ip:
                if type(m) is Destination:
                    a = m.addr
                    if not m.invert and a.mask == full[a.version]:
                        key = (a.version, a.addr)
                        got = by_dst.get(key)
                        if got is None:
                            by_dst[key] = [pos]
                        else:
                            got.append(pos)
                        break
                    others.append(pos)
                    break
            else:
                others.append(pos)
        self.by_dst, self.others, self.cache = by_dst, others, {}
        self.chain_ref = weakref.ref(chain)           # the cache never keeps a chain alive

    def candidates(self, dst) -> list:
        key = (dst.version, int(dst))
        got = self.cache.get(key)
        if got is None:
            mine = self.by_dst.get(key)
            got = sorted(mine + self.others) if mine else self.others
            if len(self.cache) < 4096:
                self.cache[key] = got
        return got


_INDEXES: dict = {}


_PREPARED: dict = {}


def prepare(ruleset) -> None:
    """Build the destination index of every long chain now, not in the first trace.

    Once per Ruleset object: looking through 60,000 chains again for each new Node
    would cost more than the trace itself."""
    seen = _PREPARED.get(id(ruleset))
    if seen is not None and seen() is ruleset:
        return
    if len(_PREPARED) > 64:
        _PREPARED.clear()
    _PREPARED[id(ruleset)] = weakref.ref(ruleset)     # never keeps a ruleset alive
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            if len(chain.rules) >= INDEX_MIN:
                _index_of(chain)


def _index_of(chain):
    """The chain's _DstIndex, built once per Chain object (while it lives)."""
    entry = _INDEXES.get(id(chain))
    if entry is not None and entry.chain_ref() is chain:
        return entry
    if len(_INDEXES) > 256:
        _INDEXES.clear()
    entry = _INDEXES[id(chain)] = _DstIndex(chain)
    return entry


@dataclass
class RecentEntry:
    stamps: list
    ttl: int


@dataclass
class NodeState:
    """Everything the kernel remembers between packets."""

    conntrack: ConntrackTable = field(default_factory=ConntrackTable)
    recent: dict = field(default_factory=dict)       # list name -> {(family, masked addr): RecentEntry}
    nth: dict = field(default_factory=dict)          # id(statistic match) -> counter
    nfacct: dict = field(default_factory=dict)       # counter name -> packets
    log: list = field(default_factory=list)
    limit: dict = field(default_factory=dict)        # id(limit match) -> (tokens ns, last ns)
    nflog: list = field(default_factory=list)        # (group, line) handed to NFLOG listeners

    def copy(self) -> "NodeState":
        return NodeState(self.conntrack.copy(), copy.deepcopy(self.recent), dict(self.nth),
                         dict(self.nfacct), list(self.log), dict(self.limit), list(self.nflog))


@dataclass
class Decision:
    stored: int
    value: bool

    @property
    def probability(self) -> float:
        p = self.stored / 0x80000000
        return p if self.value else 1.0 - p

    @property
    def both_possible(self) -> bool:
        return 0 < self.stored < 0x80000000


class Chooser:
    """Decides `statistic --mode random` draws: from a seeded generator, or
    (for all-paths enumeration) from a forced prefix, then `True` first."""

    def __init__(self, rng=None, forced: tuple = ()):
        self.rng = rng
        self.forced = forced
        self.decisions: list[Decision] = []

    def decide(self, stored: int) -> bool:
        k = len(self.decisions)
        if k < len(self.forced):
            v = self.forced[k]
        elif self.rng is not None:
            v = self.rng.getrandbits(31) < stored
        else:
            v = stored > 0
        self.decisions.append(Decision(stored, v))
        return v

    @property
    def probability(self) -> float:
        p = 1.0
        for d in self.decisions:
            p *= d.probability
        return p


class _CtView:
    """What `-m conntrack` sees of the packet's entry."""

    def __init__(self, walk):
        self.entry = walk.entry
        self.state = walk.ct_state
        self.direction = walk.ct_dir
        self.now = walk.now

    def state_bits(self) -> int:
        bits = 1 << CT_STATES.index(self.state or "INVALID")
        if self.entry is not None:
            if self.entry.snat:
                bits |= 1 << CT_STATES.index("SNAT")
            if self.entry.dnat:
                bits |= 1 << CT_STATES.index("DNAT")
        return bits

    def state_text(self) -> str:
        return ",".join(s for i, s in enumerate(CT_STATES) if self.state_bits() & (1 << i))

    def field(self, name):
        e = self.entry
        return {
            "ctproto": lambda: (e.orig.proto and _proto_num(e.orig.proto), True),
            "ctorigsrc": lambda: (e.orig.src, True), "ctorigdst": lambda: (e.orig.dst, True),
            "ctreplsrc": lambda: (e.reply.src, True), "ctrepldst": lambda: (e.reply.dst, True),
            "ctorigsrcport": lambda: (e.orig.sport, True), "ctorigdstport": lambda: (e.orig.dport, True),
            "ctreplsrcport": lambda: (e.reply.sport, True), "ctrepldstport": lambda: (e.reply.dport, True),
            "ctstatus": lambda: (_status_bits(e.status), True),
            "ctexpire": lambda: (e.remaining(self.now), True),
            "ctdir": lambda: (self.direction, True),
        }[name]()


def _proto_num(name):
    from ..packet import PROTO_NUMBERS
    return PROTO_NUMBERS.get(name, 0)


def _status_bits(status) -> int:
    from .matches import CT_STATUS
    return sum(1 << i for i, s in enumerate(CT_STATUS) if s in status)


class Walk:
    """One packet's journey; also the context every match and target sees."""

    def __init__(self, ruleset, topology, state: NodeState, now: float, chooser: Chooser,
                 assume_unsupported: str | None = None, summarise: bool = True, rng=None):
        self.ruleset = ruleset
        # NAT port choices (--random, --random-fully, clashes) draw from here;
        # statistic draws go through the chooser.
        self.rng = rng if rng is not None else (chooser.rng or _random.Random(0))
        self.topo = topology
        self.state = state
        self.now = now
        self.chooser = chooser
        self.assume = assume_unsupported
        self.summarise = summarise
        self.steps: list[Step] = []
        self.ct_on = ruleset.needs_conntrack
        self.entry: Entry | None = None
        self.ct_dir: str | None = None
        self.ct_state: str | None = None
        self.new_entry = False
        self.masquerade = False
        self.nat_words: list = []
        self.evaluated = 0
        self.warnings: list = []
        self.hook = self.table = self.chain = None
        self.rule_index = None
        self.route = None
        self.local_origin = False

    # ------------------------------------------------------------------
    # The packet paths

    def run(self, pkt, origin) -> Trace:
        sent = pkt
        self.local_origin = origin.local
        if origin.local:
            verdict, pkt, out = self._local(pkt)
        else:
            pkt = pkt.replace(in_iface=origin.iface, out_iface=None)
            verdict, pkt, out = self._arriving(pkt)
        final = pkt if verdict == "ACCEPT" else None
        return self._finish(sent, origin.name, verdict, final, out)

    def _arriving(self, pkt):
        verdict, pkt = self._hook("PREROUTING", pkt)
        if verdict != "ACCEPT":
            return verdict, pkt, None
        route = self.topo.route(pkt.dst)
        if route.local:
            self._step("route", note=f"{pkt.dst} is an address of this node: deliver locally (INPUT)")
            verdict, pkt = self._hook("INPUT", pkt)
            return verdict, pkt, "node"
        if pkt.ttl <= 1:
            self._step("drop", note="TTL expired in transit: dropped, ICMP time-exceeded sent back")
            return "DROP", pkt, None
        pkt = pkt.replace(out_iface=route.iface, ttl=pkt.ttl - 1)
        via = f" via {route.gateway}" if route.gateway else ""
        self._step("route", note=f"{pkt.dst} is not local: forward out {route.iface}{via} (FORWARD)")
        verdict, pkt = self._hook("FORWARD", pkt)
        if verdict != "ACCEPT":
            return verdict, pkt, None
        verdict, pkt = self._hook("POSTROUTING", pkt)
        return verdict, pkt, route

    def _local(self, pkt):
        route = self.route = self.topo.route(pkt.dst)
        pkt = pkt.replace(in_iface=None, out_iface=route.iface)
        self._step("route", note=f"created on this node; route to {pkt.dst}: out {route.iface}"
                                 + (f" via {route.gateway}" if route.gateway else ""))
        verdict, pkt = self._hook("OUTPUT", pkt)
        if verdict != "ACCEPT":
            return verdict, pkt, None
        route = self.route                 # re-routed inside nat OUTPUT if DNAT changed it
        # The rest of OUTPUT still saw the first route's device (the hook's
        # state is fixed when the hook starts); POSTROUTING sees the new one.
        pkt = pkt.replace(out_iface=route.iface)
        verdict, pkt = self._hook("POSTROUTING", pkt)
        if verdict != "ACCEPT":
            return verdict, pkt, None
        if route.local:
            pkt = pkt.replace(in_iface="lo", out_iface=None)
            self._step("route", note="looped back through lo: in again at PREROUTING, then INPUT")
            verdict, pkt = self._hook("PREROUTING", pkt)
            if verdict != "ACCEPT":
                return verdict, pkt, None
            verdict, pkt = self._hook("INPUT", pkt)
            return verdict, pkt, "node"
        return verdict, pkt, route

    def _reroute(self, hook, before, after):
        """nat OUTPUT changed the destination of a packet this host created:
        the kernel routes it again right there (ip_route_me_harder), so the
        later tables already see the new output interface. A packet with a
        loopback source cannot be routed off the host: it is dropped."""
        route = self.topo.route(after.dst)
        if ip(after.src).is_loopback and not route.local and not (
                self.topo.route_localnet and ip(after.src).version == 4):
            self._step("drop", hook, note=f"destination changed to {after.dst}, but a packet from {after.src} "
                                          "may not leave this host (martian source): dropped when re-routing")
            return "DROP", after
        self.route = route
        self._step("route", hook, note=f"destination changed to {after.dst}: re-routed out {route.iface} "
                                       "(rules later in OUTPUT still see the first route's interface)")
        return "ACCEPT", after

    def _finish(self, sent, origin_name, verdict, final, out) -> Trace:
        delivered = None
        if verdict == "ACCEPT" and final is not None:
            if out == "node":
                delivered = "node"
            else:
                delivered = self.topo.receiver(final.dst, out.iface)
            self._step("deliver", note=f"delivered to {delivered} as {final}")
        dnat_to = snat_to = None
        end = final
        if end is None:
            # where the packet stood when it was dropped
            end = next((s.after for s in reversed(self.steps) if s.after is not None), sent)
        # Any translation counts, by a rule (first packet) or by conntrack
        # replaying it (later packets and replies).
        if (end.dst, end.dport) != (sent.dst, sent.dport):
            dnat_to = end.endpoint("dst")
        if (end.src, end.sport) != (sent.src, sent.sport):
            snat_to = end.endpoint("src")
        return Trace(origin=origin_name, packet=sent, steps=tuple(self.steps), verdict=verdict, final=final,
                     delivered_to=delivered, dnat_to=dnat_to, snat_to=snat_to,
                     masquerade=self.masquerade, probability=self.chooser.probability,
                     warnings=tuple(self.warnings), entry=self.entry, evaluated=self.evaluated,
                     direction=self.ct_dir)

    # ------------------------------------------------------------------
    # Hooks

    def _hook(self, hook, pkt):
        for stage in HOOK_ORDER[hook]:
            if stage == "conntrack":
                pkt = self._ct_in(hook, pkt)
            elif stage == "confirm":
                self._ct_confirm(hook)
            elif stage == "nat":
                verdict, pkt = self._nat(hook, pkt)
                if verdict != "ACCEPT":
                    return verdict, pkt
            else:
                verdict, pkt = self._table(hook, stage, pkt)
                if verdict != "ACCEPT":
                    if self.entry is not None and not self.entry.confirmed:
                        self.entry = None      # an unconfirmed entry dies with its packet
                    return verdict, pkt
        return "ACCEPT", pkt

    def _table(self, hook, table_name, pkt):
        table = self.ruleset.tables.get(table_name)
        if table is None or hook not in table.chains:
            return "ACCEPT", pkt
        return self._walk_chain(hook, table, table.chains[hook], pkt)

    def _walk_chain(self, hook, table, base, pkt):
        """Walk a built-in chain with jumps, gotos and returns, iteratively
        (a deep jump nest never meets Python's recursion limit)."""
        self.hook, self.table = hook, table.name
        chains = table.chains
        frames = []                      # return addresses: (chain, next index)
        cur, i = base, 0
        steps = self.steps
        tname = table.name
        miss_run = []
        while True:
            rules = cur.rules
            n = len(rules)
            self.chain = cur.name
            cands = None
            if n >= INDEX_MIN and self.summarise:
                cand_dst = pkt.dst
                cands = _index_of(cur).candidates(ip(cand_dst))
            while i < n:
                if cands is not None:
                    if pkt.dst != cand_dst:
                        cand_dst = pkt.dst
                        cands = _index_of(cur).candidates(ip(cand_dst))
                    k = bisect_left(cands, i)
                    j = cands[k] if k < len(cands) else n
                    if j > i:                      # rules i..j-1 cannot match: their -d differs
                        miss_run.append((i, None, None, j - i))
                        self.evaluated += j - i
                        self.rule_index = j
                        i = j
                        if i >= n:
                            break
                rule = rules[i]
                self.evaluated += 1
                self.rule_index = i + 1
                failed = None
                for m in rule.ip:
                    if not m.matches(pkt, self):
                        failed = m
                        break
                else:
                    for m in rule.matches:
                        if not m.matches(pkt, self):
                            failed = m
                            break
                if failed is not None:
                    # Kept light: a Step is built only if the trace keeps this miss.
                    miss_run.append((i, rule, failed, failed.why_not(pkt, self) if failed.stateful else None))
                    i += 1
                    continue
                if miss_run:
                    self._flush_misses(miss_run, hook, tname, cur, len(frames), pkt)
                    miss_run = []
                t = rule.target
                text = rule.text(cur.name)
                depth = len(frames)
                if t is None:
                    steps.append(Step("rule", hook, tname, cur.name, i + 1, text, True, "CONTINUE", depth, pkt))
                    i += 1
                    continue
                if isinstance(t, Jump):
                    steps.append(Step("rule", hook, tname, cur.name, i + 1, text, True, f"JUMP:{t.chain}", depth, pkt))
                    frames.append((cur, i + 1))
                    cur, i = chains[t.chain], 0
                    break
                if isinstance(t, Goto):
                    steps.append(Step("rule", hook, tname, cur.name, i + 1, text, True, f"GOTO:{t.chain}", depth, pkt))
                    cur, i = chains[t.chain], 0
                    break
                word, after = t.apply(pkt, self)
                steps.append(Step("rule", hook, tname, cur.name, i + 1, text, True, word, depth, pkt,
                                  after if after is not pkt else None))
                pkt = after
                if word == "CONTINUE":
                    i += 1
                    continue
                if word == "RETURN":
                    if frames:
                        cur, i = frames.pop()
                        steps.append(Step("return", hook, tname, cur.name, None, None, None, None, len(frames),
                                          pkt, note=f"back in {cur.name} after rule #{i}"))
                        break
                    return self._policy(hook, table, base, pkt, "RETURN in a built-in chain")
                if word in ("ACCEPT", "DNAT", "SNAT", "MASQUERADE"):
                    return "ACCEPT", pkt
                return word, pkt          # DROP or REJECT
            else:
                if miss_run:
                    self._flush_misses(miss_run, hook, tname, cur, len(frames), pkt)
                    miss_run = []
                if frames:
                    left = cur.name
                    cur, i = frames.pop()
                    steps.append(Step("return", hook, tname, left, None, None, None, None, len(frames), pkt,
                                      note=f"end of {left}: back in {cur.name} after rule #{i}"))
                    continue
                return self._policy(hook, table, base, pkt, "end of chain")

    def _flush_misses(self, run, hook, table, chain_obj, depth, pkt):
        """Record a run of rules that did not match: each as a step, or, for a
        long run, the first few and one "skipped" step with the count.

        An entry (i, None, None, count) stands for `count` rules from i on
        that the destination index passed over; they are looked at only if a
        step must show them."""
        chain = chain_obj.name
        if any(e[1] is None for e in run):
            total = sum(e[3] if e[1] is None else 1 for e in run)
            summarise = self.summarise and total > SUMMARISE_AFTER
            run = self._expand(run, chain_obj.rules, pkt, 4 if summarise else None)
            if summarise:
                rest = total - 3
                run = run[:3] + [(run[3][0], None, None, rest)]
        if run and run[-1][1] is None:         # already summarised: 3 steps, then the count
            keep, (start, _r, _f, rest) = run[:-1], run[-1]
        else:
            keep = run[:3] if self.summarise and len(run) > SUMMARISE_AFTER else run
            start, rest = (run[len(keep)][0], len(run) - len(keep)) if len(keep) < len(run) else (None, 0)
        for i, rule, failed, reason in keep:
            if reason is None:
                self.steps.append(Step("rule", hook, table, chain, i + 1, rule.text(chain), False, None, depth,
                                       pkt, None, 1, "", (failed, pkt, self)))
            else:
                self.steps.append(Step("rule", hook, table, chain, i + 1, rule.text(chain), False, None, depth,
                                       pkt, None, 1, reason))
        if rest:
            self.steps.append(Step("skipped", hook, table, chain, start + 1, None, False, None, depth,
                                   pkt, None, rest, f"{rest} more rules evaluated, none matched"))

    def _expand(self, run, rules, pkt, limit):
        """Individual (i, rule, failed match, reason) entries for a run with
        index-skipped blocks, the first `limit` of them (all if None)."""
        out = []
        for e in run:
            if e[1] is not None:
                out.append(e)
            else:
                for pos in range(e[0], e[0] + e[3]):
                    if limit is not None and len(out) >= limit:
                        break
                    rule = rules[pos]
                    failed = next((m for m in rule.ip if not m.matches(pkt, self)), None)
                    out.append((pos, rule, failed, None))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _policy(self, hook, table, base, pkt, why):
        verdict = base.policy or "ACCEPT"
        self.steps.append(Step("policy", hook, table.name, base.name, None, None, None, verdict, 0, pkt,
                               note=f"{why}: policy {verdict}"))
        return verdict, pkt

    # ------------------------------------------------------------------
    # Connection tracking

    def _ct_in(self, hook, pkt):
        if not self.ct_on:
            return pkt
        if self.entry is not None:
            return pkt                     # looped back through lo: the skb keeps its entry
        t = Tuple.of(pkt)
        e, d = self.state.conntrack.lookup(t, self.now)
        if e is not None:
            # The kernel updates a known flow in place here, before any table
            # runs: a later DROP does not undo it.
            was_seen = "SEEN_REPLY" in e.status
            status = set(e.status)
            if pkt.proto == "tcp":
                tcp_state = tcp_next_state(e.tcp_state, pkt.tcp_flags, d)
                if e.tcp_state in ("SYN_RECV", "ESTABLISHED") and tcp_state == "ESTABLISHED":
                    status.add("ASSURED")
                timeout = timeout_for("tcp", tcp_state, frozenset(status))
            else:
                tcp_state = None
                timeout = timeout_for(pkt.proto, None, frozenset())
                if pkt.proto in ("udp", "udplite") and was_seen and self.now > e.stream_ts:
                    # still active two seconds after it began: a UDP stream
                    timeout = timeout_for(pkt.proto, None, frozenset({"SEEN_REPLY"}))
                    status.add("ASSURED")
            if d == "REPLY":
                status.add("SEEN_REPLY")      # set after the protocol's own update, as the kernel does
            e = e.replace(status=frozenset(status), tcp_state=tcp_state, expires=self.now + timeout)
            if e.confirmed:
                self.state.conntrack.store(e)
            self.entry, self.ct_dir = e, d
            self.ct_state = "ESTABLISHED" if (d == "REPLY" or was_seen) else "NEW"
            self._step("conntrack", hook, note=f"entry {e.id} found ({self.ct_dir.lower()} direction): "
                                               f"state {self.ct_state}")
            return pkt
        tcp_state = None
        if pkt.proto == "tcp":
            tcp_state = tcp_next_state(None, pkt.tcp_flags, "ORIGINAL")
            if tcp_state is None:
                self.ct_state = "INVALID"
                self._step("conntrack", hook, note="no entry, and this TCP packet cannot start one: INVALID")
                return pkt
        if pkt.proto in ("icmp", "ipv6-icmp") and pkt.icmp_type not in (8, 128, 13, 15, 17):
            self.ct_state = "INVALID"
            self._step("conntrack", hook, note="ICMP error with no related connection: INVALID")
            return pkt
        cid = self.state.conntrack.next_id
        self.state.conntrack.next_id += 1
        # The entry's mark is the connection mark (CONNMARK), not the packet's.
        e = Entry(cid, t, t.inverted(), frozenset(), tcp_state,
                  self.now + timeout_for(pkt.proto, tcp_state, frozenset()), 0, stream_ts=self.now + 2)
        self.entry, self.ct_dir, self.ct_state, self.new_entry = e, "ORIGINAL", "NEW", True
        self._step("conntrack", hook, note=f"new connection: entry {cid} created (NEW, not yet confirmed)")
        return pkt

    def _ct_confirm(self, hook):
        e = self.entry
        if e is None:
            return
        if not e.confirmed:
            e = e.replace(status=e.status | {"CONFIRMED"})
            self.entry = e
            self._step("conntrack", hook, note=f"entry {e.id} confirmed: {e.orig.text()} <-> {e.reply.text()}")
        self.state.conntrack.store(e)

    def conntrack_view(self, pkt):
        return _CtView(self)

    # ------------------------------------------------------------------
    # NAT

    def _nat(self, hook, pkt):
        verdict, after = self._nat_stage(hook, pkt)
        if verdict == "ACCEPT" and hook == "OUTPUT" and after.dst != pkt.dst:
            return self._reroute(hook, pkt, after)
        return verdict, after

    def _nat_stage(self, hook, pkt):
        e = self.entry
        if e is None:
            if self.ct_on and self.ruleset.tables.get("nat") is not None:
                self._step("nat", hook, note="no conntrack entry for this packet: the nat table is not consulted")
            return "ACCEPT", pkt
        manip = NAT_MANIP[hook]
        if manip in e.nat_done:
            after = self._apply_binding(manip, pkt)
            if after != pkt:
                self._step("nat", hook, before=pkt, after=after,
                           note=f"conntrack entry {e.id} rewrites the {'destination' if manip == 'dst' else 'source'} "
                                f"(no nat rules for an existing connection): now {after}")
            return "ACCEPT", after
        verdict, after = self._table(hook, "nat", pkt)
        e = self.entry
        if e is None:
            return verdict, after
        if verdict == "ACCEPT" and manip == "src" and not e.snat:
            after = self._null_binding_src(hook, after)
            e = self.entry
        self.entry = e.replace(nat_done=e.nat_done | {manip})
        return verdict, after

    def _apply_binding(self, manip, pkt):
        e, d = self.entry, self.ct_dir
        icmp = pkt.proto in ("icmp", "ipv6-icmp")
        if manip == "dst":
            if d == "ORIGINAL" and e.dnat:
                return pkt.replace(dst=e.reply.src, dport=pkt.dport if icmp else e.reply.sport)
            if d == "REPLY" and e.snat:
                return pkt.replace(dst=e.orig.src, dport=pkt.dport if icmp else e.orig.sport)
        else:
            if d == "ORIGINAL" and e.snat:
                return pkt.replace(src=e.reply.dst, sport=pkt.sport if icmp else e.reply.dport)
            if d == "REPLY" and e.dnat:
                return pkt.replace(src=e.orig.dst, sport=pkt.sport if icmp else e.orig.dport)
        return pkt

    def _null_binding_src(self, hook, pkt):
        """No SNAT rule fired: the kernel still keeps the reply tuple unique,
        remapping the source port if another flow already uses it."""
        e = self.entry
        if pkt.sport is None or not self.state.conntrack.tuple_in_use(e.reply, self.now, e.id):
            return pkt
        port = self._free_port(e, pkt.src, pkt.sport, None, random=False)
        after = pkt.replace(sport=port)
        self._set_snat(pkt.src, port)
        self._step("nat", hook, before=pkt, after=after,
                   note=f"source port {pkt.sport} clashes with another connection: remapped to {port}")
        return after

    def _set_snat(self, src, sport):
        e = self.entry
        reply = Tuple(e.reply.proto, e.reply.src, src, e.reply.sport, sport if sport is not None else e.reply.dport)
        changed = reply != e.reply
        self.entry = e.replace(reply=reply, status=e.status | ({"SRC_NAT"} if changed else set()))

    def _pick_addr(self, lo: str, hi: str, pkt) -> str:
        """An address of a NAT range. The kernel hashes the flow's addresses
        (so one client keeps one address); kplab uses a stable hash too."""
        a, b = int(ip(lo)), int(ip(hi))
        if a == b:
            return lo
        h = zlib.crc32(f"{pkt.src}>{pkt.dst}".encode())
        return str(type(ip(lo))(a + h % (b - a + 1)))

    def _free_port(self, e, new_src, want, rng_range, random):
        """A source port keeping the reply tuple unique: the original port if
        free (and no --random), else one from the range, seeded."""
        lo, hi = rng_range if rng_range else ((1024, 65535) if want >= 1024 else (600, 1023) if want >= 512 else (1, 511))
        def free(p):
            t = Tuple(e.reply.proto, e.reply.src, new_src, e.reply.sport, p)
            return not self.state.conntrack.tuple_in_use(t, self.now, e.id)
        if not random and lo <= want <= hi and free(want):
            return want
        span = hi - lo + 1
        start = self.rng.randrange(span)
        for k in range(min(span, 65536)):
            p = lo + (start + k) % span
            if free(p):
                return p
        return want

    def nat(self, target, pkt):
        """Set up the translation a DNAT, SNAT or MASQUERADE rule asks for
        (first packet only) and return the packet as rewritten."""
        e = self.entry
        name = target.name
        self.nat_words.append(name)
        if e is None:
            return pkt
        icmp = pkt.proto in ("icmp", "ipv6-icmp")
        if name == "DNAT":
            r = target.range
            dst = self._pick_addr(r.min_addr, r.max_addr, pkt) if r.min_addr else pkt.dst
            dport = pkt.dport
            if r.min_port is not None and not icmp:
                if r.base is not None:
                    dport = r.min_port + (pkt.dport - r.base) % (r.max_port - r.min_port + 1)
                elif not (r.min_port <= pkt.dport <= r.max_port):
                    dport = r.min_port
            reply = Tuple(e.reply.proto, dst, e.reply.dst, dport if not icmp else e.reply.sport, e.reply.dport)
            changed = reply != e.reply
            self.entry = e.replace(reply=reply, status=e.status | ({"DST_NAT"} if changed else set()))
            return pkt.replace(dst=dst, dport=dport)
        self.masquerade = True
        if name == "MASQUERADE":
            src = self.topo.iface_address(pkt.out_iface)
            if src is None:
                return pkt
            ports, random = target.ports, target.random or target.random_fully
        else:
            r = target.range
            src = self._pick_addr(r.min_addr, r.max_addr, pkt) if r.min_addr else pkt.src
            ports = (r.min_port, r.max_port) if r.min_port is not None else None
            random = target.random or target.random_fully
        sport = pkt.sport
        if sport is not None and not icmp:
            sport = self._free_port(e, src, sport, ports, random)
        self._set_snat(src, sport if not icmp else None)
        return pkt.replace(src=src, sport=sport)

    # ------------------------------------------------------------------
    # What matches and targets ask for

    def random_match(self, stat) -> bool:
        return self.chooser.decide(stat.stored)

    def nth_match(self, stat) -> bool:
        """xt_statistic's nth mode: a per-rule counter that starts at
        `(every - 1) - packet` (libxt_statistic) and matches when it wraps to 0,
        so packets packet+1, packet+1+every, ... match."""
        key = id(stat)
        last = stat.every - 1
        count = self.state.nth.get(key, last - stat.packet)
        nxt = 0 if count == last else count + 1
        self.state.nth[key] = nxt
        return nxt == 0

    def count_nfacct(self, name):
        self.state.nfacct[name] = self.state.nfacct.get(name, 0) + 1

    def addr_type(self, addr, iface=None):
        return self.topo.addr_type(addr, iface)

    def recent(self, m, pkt) -> bool:
        """xt_recent's recent_mt(), step by step.

        A list keeps its addresses in least-recently-updated order (a dict's
        order here: an update moves the address to the end); `--reap` drops
        the list's oldest address when even its newest stamp is too old.
        """
        addr = pkt.src if m.side == "rsource" else pkt.dst
        ttl = pkt.ttl + (1 if pkt.out_iface is not None and pkt.in_iface is not None else 0)
        key = (ip(addr).version, int(ip(addr)) & m.mask.mask)
        table = self.state.recent.setdefault(m.list_name, {})
        e = table.get(key)
        if e is not None and m.rttl and e.ttl != ttl:
            e = None
        ret = m.invert
        if e is None:
            if m.command != "set":
                return ret
            table[key] = RecentEntry([self.now], ttl)
            return not ret
        if m.command == "set":
            ret = not ret
        elif m.command == "remove":
            del table[key]
            return not ret
        else:
            t = self.now - m.seconds
            hits = 0
            for stamp in e.stamps:
                if m.seconds and t > stamp:
                    continue
                hits += 1
                if not m.hitcount or hits >= m.hitcount:
                    ret = not ret
                    break
            if m.reap and table:
                oldest_key = next(iter(table))
                oldest = table[oldest_key]
                if not (oldest is e and m.command == "update" and ret) and t > oldest.stamps[-1]:
                    del table[oldest_key]
        if m.command == "set" or (m.command == "update" and ret):
            e.stamps.append(self.now)
            # A list keeps max(ip_pkt_list_tot=20, the largest --hitcount of any
            # rule naming it) stamps, rounded up to a power of two (xt_recent).
            keep = 1 << (max(20, self.ruleset.recent_hitcount(m.list_name)) - 1).bit_length()
            del e.stamps[:-keep]
            e.ttl = ttl
            table.pop(key, None)
            table[key] = e
        return ret

    def _log_line(self, prefix, pkt):
        return (f"{prefix}IN={pkt.in_iface or ''} OUT={pkt.out_iface or ''} SRC={pkt.src} DST={pkt.dst} "
                f"PROTO={pkt.proto.upper()}" + (f" SPT={pkt.sport} DPT={pkt.dport}" if pkt.sport is not None else ""))

    def log(self, target, pkt):
        self.state.log.append(self._log_line(target.prefix, pkt))

    def nflog(self, target, pkt):
        self.state.nflog.append((target.group, self._log_line(target.prefix, pkt)))

    # limit: nft_limit's token bucket, in nanoseconds of the node's clock
    def _bucket(self, m):
        now = int(round(self.now * 1_000_000_000))
        cap = m.cost_ns * m.burst
        tokens, last = self.state.limit.get(id(m), (cap, now))
        return min(cap, tokens + max(0, now - last)), now

    def limit_match(self, m) -> bool:
        tokens, now = self._bucket(m)
        if tokens >= m.cost_ns:
            self.state.limit[id(m)] = (tokens - m.cost_ns, now)
            return True
        self.state.limit[id(m)] = (tokens, now)
        return False

    def limit_wait(self, m) -> float:
        """Seconds until the bucket holds a whole packet again (read only)."""
        tokens, _ = self._bucket(m)
        return max(0, m.cost_ns - tokens) / 1e9

    def connmark(self, target, pkt):
        """CONNMARK: change the entry's mark (kept at once for a confirmed entry, as the
        kernel writes ct->mark in place) or restore the packet's mark from it."""
        e = self.entry
        if e is None:
            return pkt
        if target.mode == "restore":
            new = (pkt.mark & ~target.nfmask & 0xFFFFFFFF) ^ target.shift(e.mark & target.ctmask)
            return pkt.replace(mark=new)
        if target.mode == "set":
            mark = target.shift((e.mark & ~target.ctmask & 0xFFFFFFFF) ^ target.ctmark)
        else:
            mark = (e.mark & ~target.ctmask & 0xFFFFFFFF) ^ target.shift(pkt.mark & target.nfmask)
        if mark != e.mark:
            self.entry = e = e.replace(mark=mark)
            if e.confirmed:
                self.state.conntrack.store(e)
        return pkt

    def socket_owner(self, pkt):
        """(uid, gid, supplementary groups) of the socket that sent the packet, or None:
        only packets this node creates have one (see matches.NODE_SOCKET_OWNER)."""
        from .matches import NODE_SOCKET_OWNER
        return NODE_SOCKET_OWNER if self.local_origin else None

    def _where(self) -> str:
        where = f"{self.table} {self.chain} rule #{self.rule_index}"
        try:
            line = self.ruleset.chain(self.table, self.chain).rules[self.rule_index - 1].line
        except (AttributeError, IndexError, TypeError):
            line = None
        return where + (f" (line {line})" if line is not None else "")

    def assume_opaque(self, match) -> bool:
        if self.assume is None:
            raise UnsupportedError(
                f"the walk reached {self._where()}, which uses -m {match.name}: kplab does not model it",
                hint="say what to assume with --assume-unsupported match|nomatch")
        self.warnings.append(f"{self._where()}: -m {match.name} assumed to {'match' if self.assume == 'match' else 'not match'}")
        return self.assume == "match"

    def assume_opaque_target(self, target, pkt):
        if self.assume is None:
            raise UnsupportedError(
                f"the walk reached {self._where()}, whose target -j {target.name} kplab does not model",
                hint="with --assume-unsupported, it is treated as a target that lets the packet go on")
        self.warnings.append(f"{self._where()}: -j {target.name} treated as non-terminating")
        return "CONTINUE", pkt

    # ------------------------------------------------------------------
    def _step(self, kind, hook=None, *, note="", before=None, after=None):
        self.steps.append(Step(kind, hook, before=before, after=after, note=note))
