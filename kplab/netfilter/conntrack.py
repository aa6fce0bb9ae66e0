"""Connection tracking: the flows the kernel remembers.

The first packet of a flow creates an entry (NEW) holding two tuples: the
original direction as the packet arrived, and the reply direction the answer
will have. A NAT chosen for the first packet is written into the reply
tuple; later packets of the flow get the same translation without walking
the nat table, and replies get it reversed. That is why a client stays on
one backend after kube-proxy's rules change, and why a reply comes back from
the Service address.

Tables are plain data: `ConntrackTable` hands out copies, so a trace (or
all-paths enumeration) can run without touching the node's real table.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: Timeouts in seconds (nf_conntrack_proto_*.c defaults).
TCP_TIMEOUTS = {"SYN_SENT": 120, "SYN_RECV": 60, "ESTABLISHED": 432000, "FIN_WAIT": 120,
                "CLOSE_WAIT": 60, "LAST_ACK": 30, "TIME_WAIT": 120, "CLOSE": 10}
UDP_UNREPLIED, UDP_REPLIED = 30, 120
ICMP_TIMEOUT = 30
GENERIC_TIMEOUT = 600


@dataclass(frozen=True)
class Tuple:
    """One direction of a flow. For ICMP, `sport` is the echo id and `dport`
    the ICMP type (as the kernel's tuple keeps id and type)."""

    proto: str
    src: str
    dst: str
    sport: int | None
    dport: int | None

    def inverted(self) -> "Tuple":
        if self.proto in ("icmp", "ipv6-icmp"):
            rtype = {8: 0, 0: 8, 128: 129, 129: 128}.get(self.dport, self.dport)
            return Tuple(self.proto, self.dst, self.src, self.sport, rtype)
        return Tuple(self.proto, self.dst, self.src, self.dport, self.sport)

    @classmethod
    def of(cls, pkt) -> "Tuple":
        if pkt.proto in ("icmp", "ipv6-icmp"):
            return cls(pkt.proto, pkt.src, pkt.dst, pkt.icmp_id, pkt.icmp_type)
        return cls(pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)

    def text(self) -> str:
        if self.proto in ("icmp", "ipv6-icmp"):
            return f"src={self.src} dst={self.dst} type={self.dport} code=0 id={self.sport}"
        if self.sport is None:
            return f"src={self.src} dst={self.dst}"
        return f"src={self.src} dst={self.dst} sport={self.sport} dport={self.dport}"


@dataclass(frozen=True)
class Entry:
    """One tracked flow.

    `status` holds the kernel's IPS_* bits by name (CONFIRMED, SEEN_REPLY,
    ASSURED, SRC_NAT, DST_NAT); `nat_done` the manip types (`dst`, `src`)
    already decided, after which the nat table is not walked again.
    """

    id: int
    orig: Tuple
    reply: Tuple
    status: frozenset = frozenset()
    tcp_state: str | None = None
    expires: float = 0.0
    mark: int = 0
    nat_done: frozenset = frozenset()
    #: UDP: two seconds after the first packet; traffic after that makes a stream
    stream_ts: float = 0.0

    def replace(self, **kw) -> "Entry":
        return dataclasses.replace(self, **kw)

    @property
    def confirmed(self) -> bool:
        return "CONFIRMED" in self.status

    @property
    def dnat(self) -> bool:
        return "DST_NAT" in self.status

    @property
    def snat(self) -> bool:
        return "SRC_NAT" in self.status

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires - now))

    def text(self, now: float) -> str:
        """The entry as `conntrack -L` prints it."""
        num = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "ipv6-icmp": 58, "udplite": 136, "dccp": 33}
        head = f"{self.orig.proto:<8} {num.get(self.orig.proto, 0)} {self.remaining(now)} "
        if self.tcp_state:
            head += f"{self.tcp_state} "
        out = head + self.orig.text()
        if "SEEN_REPLY" not in self.status:
            out += " [UNREPLIED]"
        out += " " + self.reply.text()
        if "ASSURED" in self.status:
            out += " [ASSURED]"
        return out + f" mark={self.mark} use=1"


@dataclass
class ConntrackTable:
    """All confirmed entries of a node, indexed by both of their tuples."""

    entries: dict = field(default_factory=dict)     # id -> Entry
    index: dict = field(default_factory=dict)       # Tuple -> (id, "ORIGINAL"|"REPLY")
    next_id: int = 1

    def copy(self) -> "ConntrackTable":
        return ConntrackTable(dict(self.entries), dict(self.index), self.next_id)

    def lookup(self, t: Tuple, now: float):
        """(entry, direction) for a packet's tuple, or (None, None)."""
        hit = self.index.get(t)
        if hit is None:
            return None, None
        e = self.entries.get(hit[0])
        if e is None or e.expires <= now:
            if e is not None:
                self.remove(e.id)
            return None, None
        return e, hit[1]

    def tuple_in_use(self, t: Tuple, now: float, ignore: int | None = None) -> bool:
        """Whether another live entry already uses `t` (NAT must then pick another port)."""
        e, _ = self.lookup(t, now)
        return e is not None and e.id != ignore

    def store(self, e: Entry) -> None:
        old = self.entries.get(e.id)
        if old is not None:
            self.index.pop(old.orig, None)
            self.index.pop(old.reply, None)
        self.entries[e.id] = e
        self.index[e.orig] = (e.id, "ORIGINAL")
        self.index[e.reply] = (e.id, "REPLY")

    def remove(self, entry_id: int) -> None:
        e = self.entries.pop(entry_id, None)
        if e is not None:
            self.index.pop(e.orig, None)
            self.index.pop(e.reply, None)

    def flush(self) -> None:
        self.entries.clear()
        self.index.clear()

    def live(self, now: float) -> list:
        return [e for e in self.entries.values() if e.expires > now]

    def text(self, now: float) -> str:
        """The table as `conntrack -L` prints it (newest last)."""
        return "\n".join(e.text(now) for e in sorted(self.live(now), key=lambda e: e.id))

    def __len__(self) -> int:
        return len(self.entries)


def tcp_next_state(state: str | None, flags: frozenset, direction: str) -> str | None:
    """A compact version of the kernel's TCP state machine (enough for the
    handshake, data and close); None means the packet is invalid here."""
    syn, ack, fin, rst = ("SYN" in flags), ("ACK" in flags), ("FIN" in flags), ("RST" in flags)
    if state is None:
        # Only a SYN opens a flow; with nf_conntrack_tcp_loose (the default) a
        # bare ACK picks up one already under way. RST, FIN, SYN/ACK: INVALID.
        if syn and not (ack or fin or rst):
            return "SYN_SENT"
        if ack and not (syn or fin or rst):
            return "ESTABLISHED"
        return None
    if rst:
        return "CLOSE"
    if state == "SYN_SENT":
        if direction == "REPLY" and syn and ack:
            return "SYN_RECV"
        if direction == "ORIGINAL" and syn and not ack:
            return "SYN_SENT"
        return state
    if state == "SYN_RECV":
        if direction == "ORIGINAL" and ack and not syn:
            return "ESTABLISHED"
        return state
    if state == "ESTABLISHED":
        if fin:
            return "FIN_WAIT"
        return state
    if state in ("FIN_WAIT", "CLOSE_WAIT", "LAST_ACK"):
        if fin:
            return "LAST_ACK" if state != "LAST_ACK" else "TIME_WAIT"
        if ack and state == "LAST_ACK":
            return "TIME_WAIT"
        return state
    return state


def timeout_for(proto: str, tcp_state: str | None, status: frozenset) -> int:
    if proto == "tcp":
        return TCP_TIMEOUTS.get(tcp_state or "SYN_SENT", 120)
    if proto in ("udp", "udplite"):
        return UDP_REPLIED if "SEEN_REPLY" in status else UDP_UNREPLIED
    if proto in ("icmp", "ipv6-icmp"):
        return ICMP_TIMEOUT
    return GENERIC_TIMEOUT


_PROTO_BY_NUM = {"6": "tcp", "17": "udp", "1": "icmp", "132": "sctp", "58": "ipv6-icmp", "136": "udplite", "33": "dccp"}


def parse_conntrack(text: str, now: float = 0.0, source: str | None = None) -> ConntrackTable:
    """Read `conntrack -L` output (or /proc/net/nf_conntrack) into a table.

    Timeouts are taken relative to `now`; NAT is recognised from the reply
    tuple (a reply source other than the original destination means DNAT, a
    reply destination other than the original source means SNAT).
    """
    from ..errors import ParseError
    table = ConntrackTable()
    for ln, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("conntrack v"):
            continue
        words = line.split()
        if words[0] in ("ipv4", "ipv6") and len(words) > 2:
            words = words[2:]

        def fail(msg):
            return ParseError(msg, file=source, line=ln, text=raw)

        if len(words) < 4 or not words[1].isdigit() or not words[2].isdigit():
            raise fail("expected 'PROTO NUMBER TIMEOUT ...' as conntrack -L prints it")
        proto = _PROTO_BY_NUM.get(words[1], words[0])
        timeout = int(words[2])
        rest = words[3:]
        state = None
        if rest and "=" not in rest[0] and not rest[0].startswith("["):
            state = rest[0]
            rest = rest[1:]
        tuples, cur, flags = [], {}, set()
        for w in rest:
            if w.startswith("["):
                flags.add(w.strip("[]"))
                continue
            k, eq, v = w.partition("=")
            if not eq:
                raise fail(f"unexpected word {w!r}")
            if k == "src" and "src" in cur:
                tuples.append(cur)
                cur = {}
            if k in ("src", "dst", "sport", "dport", "type", "code", "id"):
                cur[k] = v
            elif k == "mark":
                cur.setdefault("_mark", v)
        tuples.append(cur)
        if len(tuples) < 2 or any("src" not in t or "dst" not in t for t in tuples[:2]):
            raise fail("an entry needs an original and a reply tuple (src=... dst=...)")
        icmp = proto in ("icmp", "ipv6-icmp")

        def tup(t):
            try:
                if icmp:
                    return Tuple(proto, t["src"], t["dst"], int(t.get("id", 0)), int(t.get("type", 0)))
                return Tuple(proto, t["src"], t["dst"], int(t["sport"]) if "sport" in t else None,
                             int(t["dport"]) if "dport" in t else None)
            except ValueError:
                raise fail("a port, id or type is not a number") from None

        orig, reply = tup(tuples[0]), tup(tuples[1])
        status = {"CONFIRMED"}
        if "UNREPLIED" not in flags:
            status.add("SEEN_REPLY")
        if "ASSURED" in flags:
            status.add("ASSURED")
        if (reply.src, reply.sport) != (orig.dst, orig.dport) and not icmp or (icmp and reply.src != orig.dst):
            status.add("DST_NAT")
        if (reply.dst, reply.dport) != (orig.src, orig.sport) and not icmp or (icmp and reply.dst != orig.src):
            status.add("SRC_NAT")
        mark = int(tuples[0].get("_mark", tuples[1].get("_mark", "0")), 0)
        e = Entry(table.next_id, orig, reply, frozenset(status), state if proto == "tcp" else None,
                  now + timeout, mark, frozenset({"dst", "src"}))
        table.next_id += 1
        table.store(e)
    return table
