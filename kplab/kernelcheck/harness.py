"""Inject exactly one packet into a `Lab` and observe what the kernel did with it.

`send(lab, from_name, packet)` (also `lab.send(...)`):

1. flushes the node's conntrack table (one ctnetlink message) so the packet is the first
   of a new connection, and takes the counters the diff will start from (the snapshot
   the previous observation ended with, or a fresh `iptables-save -c`);
2. writes one hand-built IPv4/IPv6 packet (TCP with the Packet's flags, UDP, or ICMP echo)
   with the Packet's addresses, ports, TTL:
   - from a local Pod: an Ethernet frame on the Pod's eth0 (AF_PACKET), so it enters the
     node on the Pod's veth (PREROUTING);
   - from `node`: a raw IP socket (IP_HDRINCL) in the node, so it is locally created
     (routing, OUTPUT, POSTROUTING); a `mark` is set with SO_MARK;
   - from `peer`, a peer Pod or an external host: a frame on the peer's eth0 (any source
     address), entering the node on its `eth0`;
3. watches, with sockets opened before the send: a packet socket on every Pod's eth0 and
   on the peer's eth0 (frames coming in), and raw IP sockets in the node per protocol
   (what is delivered locally, after INPUT, with post-NAT headers). Each packet carries a
   tag (TCP sequence number, UDP/ICMP payload, IPv4 ID) so only its own copies, ICMP
   errors quoting it, or RSTs answering it count;
4. stops at the first delivery or error; when nothing arrives it stops once a marker
   frame sent right behind the packet has come out of the node's receive queue (plus a
   short grace), else after `timeout` (0.15 s);
5. reads the counters (`iptables-save -c`, diffed) and the node's conntrack entry
   (/proc/net/nf_conntrack of the node).

Derived: `verdict` ACCEPT if delivered anywhere, REJECT if an ICMP error or TCP RST came
back, else DROP; `delivered` = {to, src, sport, dst, dport} with `to` the Pod, `node`, or
for eth0 the peer-side host whose address is the destination (else "peer"), as
`Topology.receiver` names it; `dnat_to` / `snat_to` from the conntrack entry (reply source
vs original destination, reply destination vs original source), or from the delivered
headers when there is no entry.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import random
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

from ..packet import PROTO_NAMES, Packet

__all__ = ["KernelObservation", "send", "send_reply", "send_many", "build_packet", "parse_packet"]

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_BARRIER = 0x88B5          # IEEE 802 local experimental ethertype: never an IP packet
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_MARK = 36
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52

MARKER = b"kplab\x00"
TCP_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20,
            "ECE": 0x40, "CWR": 0x80}
ICMP4_ERRORS = frozenset({3, 4, 5, 11, 12})
ICMP6_ERRORS = frozenset({1, 2, 3, 4})
#: After the marker frame has left the node's receive queue, how long to keep looking.
GRACE = 0.002
#: For packets the node creates itself (sent synchronously through OUTPUT).
GRACE_LOCAL = 0.004


class HarnessError(RuntimeError):
    """A packet the harness cannot send (unknown protocol, wrong family, no delivery)."""


# --------------------------------------------------------------------------
# The observation

@dataclass(frozen=True)
class KernelObservation:
    """What the kernel did with one packet.

    `rule_hits`: Counter {(table, chain, 1-based index): packets} of rules whose counter grew;
    `policy_hits`: Counter {(table, chain): packets} of built-in chain policies applied;
    `rule_texts`: {(table, chain, index): "-A CHAIN ..."} for the rules hit.
    `final`: the packet as it arrived (a kplab Packet), `delivered` its headers and receiver.
    `conntrack`: the node's entry for the packet (conntrack -L format) or None;
    `ct_original` / `ct_reply`: its tuples as dicts. `icmp_error` / `rst`: what came back.
    `direction`: "ORIGINAL" for `send`, "REPLY" for `send_reply`.
    """

    origin: str
    packet: Packet
    verdict: str
    delivered: dict | None = None
    final: Packet | None = None
    dnat_to: str | None = None
    snat_to: str | None = None
    masquerade: bool = False
    rule_hits: Counter = field(default_factory=Counter)
    policy_hits: Counter = field(default_factory=Counter)
    rule_texts: dict = field(default_factory=dict)
    conntrack: str | None = None
    ct_original: dict | None = None
    ct_reply: dict | None = None
    icmp_error: dict | None = None
    rst: dict | None = None
    notes: tuple = ()
    captures: tuple = ()
    direction: str = "ORIGINAL"
    tag: int = 0
    elapsed: float = 0.0
    counted: bool = True

    @property
    def delivered_to(self) -> str | None:
        return self.delivered["to"] if self.delivered else None

    @property
    def hits(self) -> list:
        """[(table, chain, index, packets)] sorted, as a list."""
        return [(t, c, i, n) for (t, c, i), n in sorted(self.rule_hits.items())]

    def summary(self) -> str:
        parts = [f"{self.origin}: {self.packet} -> {self.verdict}"]
        if self.delivered:
            d = self.delivered
            parts.append(f"delivered to {d['to']} as {self.final}")
        if self.dnat_to:
            parts.append(f"DNAT to {self.dnat_to}")
        if self.snat_to:
            parts.append(f"SNAT to {self.snat_to}")
        if self.icmp_error:
            e = self.icmp_error
            parts.append(f"ICMP error type {e['type']} code {e['code']} from {e['src']}")
        if self.rst:
            parts.append(f"TCP RST from {_endpoint(self.rst['src'], self.rst['sport'])}")
        if self.rule_hits:
            parts.append("rules " + ", ".join(f"{t}/{c}#{i}" + (f"x{n}" if n > 1 else "")
                                              for (t, c, i), n in sorted(self.rule_hits.items())))
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------
# Building and parsing packets

def _csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _tag_payload(tag: int) -> bytes:
    return MARKER + struct.pack("!I", tag & 0xFFFFFFFF) + b"\0" * 6


def build_packet(pkt: Packet, tag: int, ack: int | None = None) -> bytes:
    """The IP packet (header included) for `pkt`, carrying `tag`.

    TCP: the sequence number is the tag; the ACK number is `ack` (or, with the ACK flag,
    a fixed value). UDP: the payload holds the tag. ICMP: id from the Packet, sequence
    and payload from the tag (type 8 / 128 by default). IPv4 ID = tag & 0xffff."""
    if pkt.fragment:
        raise HarnessError("the harness sends whole packets only (fragment=True is not supported)")
    v6 = ":" in pkt.src
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    src, dst = socket.inet_pton(fam, pkt.src), socket.inet_pton(fam, pkt.dst)
    proto = pkt.proto
    payload = _tag_payload(tag)
    if proto == "tcp":
        num = 6
        flags = 0
        for f in pkt.tcp_flags:
            flags |= TCP_BITS.get(f, 0)
        if ack is None:
            ack = 0x12345678 if flags & 0x10 else 0
        l4 = bytearray(struct.pack("!HHIIBBHHH", pkt.sport if pkt.sport is not None else 40000,
                                   pkt.dport if pkt.dport is not None else 80, tag & 0xFFFFFFFF,
                                   ack & 0xFFFFFFFF, 5 << 4, flags, 64240, 0, 0))
        cs_off = 16
    elif proto == "udp":
        num = 17
        l4 = bytearray(struct.pack("!HHHH", pkt.sport if pkt.sport is not None else 40000,
                                   pkt.dport if pkt.dport is not None else 80, 8 + len(payload), 0) + payload)
        cs_off = 6
    elif proto in ("icmp", "ipv6-icmp", "icmpv6"):
        num = 58 if v6 else 1
        itype = pkt.icmp_type if pkt.icmp_type is not None else (128 if v6 else 8)
        l4 = bytearray(struct.pack("!BBHHH", itype, pkt.icmp_code or 0, 0, (pkt.icmp_id or 0) & 0xFFFF,
                                   tag & 0xFFFF) + payload)
        cs_off = 2
    else:
        raise HarnessError(f"the harness sends TCP, UDP and ICMP only, not {proto!r}")
    if v6:
        pseudo = src + dst + struct.pack("!IxxxB", len(l4), num)
    elif num != 1:
        pseudo = src + dst + struct.pack("!xBH", num, len(l4))
    else:
        pseudo = b""
    c = _csum(pseudo + bytes(l4))
    if num == 17 and c == 0:
        c = 0xFFFF
    struct.pack_into("!H", l4, cs_off, c)
    ttl = pkt.ttl if pkt.ttl is not None else 64
    if v6:
        return struct.pack("!IHBB", 6 << 28, len(l4), num, ttl) + src + dst + bytes(l4)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), tag & 0xFFFF, 0x4000, ttl, num, 0,
                                src, dst))
    struct.pack_into("!H", hdr, 10, _csum(bytes(hdr)))
    return bytes(hdr) + bytes(l4)


class Seen:
    """One captured packet, parsed: addresses, ports, flags, ICMP fields, payload."""

    __slots__ = ("family", "proto", "src", "dst", "ttl", "ident", "sport", "dport", "seq", "ack", "flags",
                 "icmp_type", "icmp_code", "icmp_id", "icmp_seq", "payload")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def is_error(self) -> bool:
        if self.proto == "icmp":
            return self.icmp_type in ICMP4_ERRORS
        if self.proto == "ipv6-icmp":
            return self.icmp_type in ICMP6_ERRORS
        return False

    def has_tag(self, tag: int) -> bool:
        if self.proto == "tcp":
            return self.seq == (tag & 0xFFFFFFFF)
        if self.proto in ("udp", "icmp", "ipv6-icmp"):
            return bool(self.payload) and self.payload[:10] == _tag_payload(tag)[:10]
        return False

    def inner(self) -> "Seen | None":
        """The packet an ICMP error quotes."""
        if not self.is_error or not self.payload:
            return None
        return parse_packet(self.payload)

    def packet(self) -> Packet:
        flags = frozenset(f for f, b in TCP_BITS.items() if self.flags is not None and self.flags & b)
        return Packet(self.proto, self.src, self.dst, self.sport, self.dport, tcp_flags=flags,
                      icmp_type=self.icmp_type, icmp_code=self.icmp_code, icmp_id=self.icmp_id,
                      ttl=self.ttl if self.ttl is not None else 64)

    def __str__(self) -> str:
        return str(self.packet())


def _l4(seen: Seen, num: int, l4: bytes) -> Seen:
    seen.proto = PROTO_NAMES.get(num, str(num))
    if num == 6 and len(l4) >= 14:
        seen.sport, seen.dport, seen.seq, seen.ack, _, seen.flags = struct.unpack_from("!HHIIBB", l4)
        off = (l4[12] >> 4) * 4 if len(l4) >= 13 else 20
        seen.payload = l4[off:]
    elif num == 17 and len(l4) >= 8:
        seen.sport, seen.dport = struct.unpack_from("!HH", l4)
        seen.payload = l4[8:]
    elif num in (1, 58) and len(l4) >= 8:
        seen.icmp_type, seen.icmp_code = l4[0], l4[1]
        if (num == 1 and seen.icmp_type in ICMP4_ERRORS) or (num == 58 and seen.icmp_type in ICMP6_ERRORS):
            seen.payload = l4[8:]
        else:
            seen.icmp_id, seen.icmp_seq = struct.unpack_from("!HH", l4, 4)
            seen.payload = l4[8:]
    else:
        seen.payload = l4
    return seen


def parse_packet(b: bytes) -> Seen | None:
    """Parse an IP packet (IPv4 or IPv6, header included); None if it is not one."""
    if not b:
        return None
    v = b[0] >> 4
    if v == 4 and len(b) >= 20:
        ihl = (b[0] & 15) * 4
        tot = struct.unpack_from("!H", b, 2)[0]
        end = tot if ihl <= tot <= len(b) else len(b)
        s = Seen(family=4, src=socket.inet_ntop(socket.AF_INET, b[12:16]),
                 dst=socket.inet_ntop(socket.AF_INET, b[16:20]), ttl=b[8],
                 ident=struct.unpack_from("!H", b, 4)[0])
        return _l4(s, b[9], b[ihl:end])
    if v == 6 and len(b) >= 40:
        plen = struct.unpack_from("!H", b, 4)[0]
        s = Seen(family=6, src=socket.inet_ntop(socket.AF_INET6, b[8:24]),
                 dst=socket.inet_ntop(socket.AF_INET6, b[24:40]), ttl=b[7])
        return _l4(s, b[6], b[40:40 + plen])
    return None


def _endpoint(addr: str, port) -> str:
    host = f"[{addr}]" if ":" in addr else addr
    return host if port is None else f"{host}:{port}"


# --------------------------------------------------------------------------
# Conntrack entries

_CT_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id")


def parse_conntrack_line(line: str):
    """(conntrack -L style text, original tuple, reply tuple) from a /proc/net/nf_conntrack line."""
    toks = line.split()
    if toks and toks[0] in ("ipv4", "ipv6") and len(toks) > 2:
        toks = toks[2:]
    groups, cur, out = [], None, []
    for t in toks:
        k, eq, v = t.partition("=")
        if eq and k in ("src", "dst"):
            try:
                v = ipaddress.ip_address(v).compressed
            except ValueError:
                pass
            t = f"{k}={v}"
        if eq and k == "src":
            cur = {}
            groups.append(cur)
        if eq and cur is not None and k in _CT_KEYS and len(groups) <= 2 and k not in cur:
            cur[k] = int(v) if k not in ("src", "dst") else v
        if k != "zone" or v != "0":
            out.append(t)
    orig = groups[0] if groups else None
    reply = groups[1] if len(groups) > 1 else None
    return " ".join(out), orig, reply


def _tuple_of(p: Packet) -> dict:
    d = {"src": p.src, "dst": p.dst}
    if p.proto in ("icmp", "ipv6-icmp"):
        d["id"] = p.icmp_id or 0
    elif p.sport is not None:
        d["sport"], d["dport"] = p.sport, p.dport
    return d


def _matches(t: dict | None, want: dict) -> bool:
    return t is not None and all(t.get(k) == v for k, v in want.items())


def _find_entry(lines, pkt: Packet):
    """(text, original, reply, direction) of the entry `pkt` belongs to, or Nones."""
    want = _tuple_of(pkt)
    fallback = None
    for line in lines:
        text, o, r = parse_conntrack_line(line)
        if _matches(o, want):
            return text, o, r, "ORIGINAL"
        if _matches(r, want) and fallback is None:
            fallback = (text, o, r, "REPLY")
    return fallback or (None, None, None, None)


# --------------------------------------------------------------------------
# The rig: sockets opened once per Lab, in the right namespaces

class _Rig:
    def __init__(self, lab):
        self.lab = lab
        topo = lab.topology
        self.v6 = lab.v6
        self.ethertype = ETH_P_IPV6 if self.v6 else ETH_P_IP
        self.taps = {}                       # role -> packet socket on the role's eth0
        self.kinds = {}                      # fd -> (kind, role)
        self.ep = select.epoll()
        for name, _, _ in topo.pods:
            self._tap(name)
        self._tap("peer")
        # where each sender's frames go: (node-side MAC, far-end MAC)
        self.macs = {name: lab.macs[hif] for name, _, hif in topo.pods}
        self.macs["peer"] = lab.macs[topo.iface]
        # local delivery in the node: one raw socket per protocol
        self.local = {}
        fam = socket.AF_INET6 if self.v6 else socket.AF_INET
        for num in ((6, 17, 58) if self.v6 else (6, 17, 1)):
            s = lab.socket("node", fam, socket.SOCK_RAW, num)
            self._bufs(s)
            if self.v6:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            s.setblocking(False)
            self.local[num] = s
            self.kinds[s.fileno()] = ("local", "node")
            self.ep.register(s.fileno(), select.EPOLLIN)
        self.sender = lab.socket("node", fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
        if not self.v6:
            self.sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        # the marker frames, seen where they enter the node
        self.barriers = {}
        for hif in lab.macs:
            s = lab.socket("node", socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.bind((hif, ETH_P_BARRIER))
            s.setblocking(False)
            self.barriers[hif] = s
            self.kinds[s.fileno()] = ("barrier", hif)
            self.ep.register(s.fileno(), select.EPOLLIN)
        self.tag = random.Random(os.getpid() ^ id(lab)).randrange(1 << 31)
        self.socks = {fd: s for fd, s in
                      [(s.fileno(), s) for s in list(self.taps.values()) + list(self.local.values())
                       + list(self.barriers.values())]}

    def close(self):
        self.ep.close()

    @staticmethod
    def _bufs(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def _tap(self, role):
        # protocol 0 at creation and the real one at bind: the hook is registered once
        # (binding a socket that already listens waits for an RCU grace period)
        s = self.lab.socket(role, socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._bufs(s)
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass
        s.bind(("eth0", ETH_P_ALL))
        s.setblocking(False)
        self.taps[role] = s
        self.kinds[s.fileno()] = ("tap", role)
        self.ep.register(s.fileno(), select.EPOLLIN)

    def next_tag(self) -> int:
        self.tag = (self.tag + 1) & 0xFFFFFFFF
        return self.tag

    # --- receiving
    def drain(self):
        for s in self.socks.values():
            while True:
                try:
                    s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break

    def read(self, fd):
        """Yield (kind, role, Seen or marker tag) for everything queued on `fd`."""
        kind, role = self.kinds[fd]
        s = self.socks[fd]
        while True:
            try:
                if kind == "local" and self.v6:
                    data, anc, _, addr = s.recvmsg(65536, 256)
                else:
                    data, addr = s.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            if kind == "tap":
                if addr[2] == PACKET_OUTGOING or len(data) < 14:
                    continue
                et = struct.unpack_from("!H", data, 12)[0]
                if et not in (ETH_P_IP, ETH_P_IPV6):
                    continue
                seen = parse_packet(data[14:])
                if seen is not None:
                    yield kind, role, seen
            elif kind == "barrier":
                if data[14:20] == MARKER and len(data) >= 24:
                    yield kind, role, struct.unpack_from("!I", data, 20)[0]
            elif self.v6:
                dst, hop = None, None
                for level, typ, val in anc:
                    if level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO and len(val) >= 16:
                        dst = socket.inet_ntop(socket.AF_INET6, val[:16])
                    elif level == socket.IPPROTO_IPV6 and typ == IPV6_HOPLIMIT and len(val) >= 4:
                        hop = struct.unpack("=i", val[:4])[0]
                num = [n for n, x in self.local.items() if x is s][0]
                seen = _l4(Seen(family=6, src=addr[0].split("%")[0], dst=dst, ttl=hop), num, data)
                yield kind, role, seen
            else:
                seen = parse_packet(data)
                if seen is not None:
                    yield kind, role, seen

    # --- sending
    def frame(self, role, ip_bytes: bytes, barrier_tag: int | None = None) -> bytes:
        node_mac, far_mac = self.macs[role]
        dst, src = bytes.fromhex(node_mac.replace(":", "")), bytes.fromhex(far_mac.replace(":", ""))
        if barrier_tag is not None:
            body = MARKER + struct.pack("!I", barrier_tag) + b"\0" * 36
            return dst + src + struct.pack("!H", ETH_P_BARRIER) + body
        return dst + src + struct.pack("!H", self.ethertype) + ip_bytes


def _rig(lab) -> _Rig:
    rig = lab._state.get("rig")
    if rig is None:
        if not lab._started or lab._closed:
            from .netns import LabError
            raise LabError("start the Lab first (use `with Lab() as lab:`)")
        rig = lab._state["rig"] = _Rig(lab)
    return rig


def _sender_role(lab, name: str) -> str:
    """The namespace a packet `from` NAME is written in: a Pod's, the node's or the peer's."""
    origin = lab.topology.origin(name)          # raises TopologyError for unknown names
    if origin.local:
        return "node"
    if name in lab.names and name not in ("node", "peer"):
        return name
    return "peer"


# --------------------------------------------------------------------------
# One packet

class _Outcome:
    __slots__ = ("deliveries", "errors", "rsts", "captures", "barrier", "notes", "send_error")

    def __init__(self):
        self.deliveries, self.errors, self.rsts, self.captures, self.notes = [], [], [], [], []
        self.barrier = None
        self.send_error = None


def _inject(lab, rig, role, pkt: Packet, tag: int, ack: int | None, out: _Outcome):
    data = build_packet(pkt, tag, ack)
    if role == "node":
        try:
            if pkt.mark:
                rig.sender.setsockopt(socket.SOL_SOCKET, SO_MARK, pkt.mark)
            addr = (pkt.dst, 0, 0, 0) if rig.v6 else (pkt.dst, 0)
            rig.sender.sendto(data, addr)
        except OSError as e:
            out.send_error = e.errno
            out.notes.append(f"sendto from the node failed: {errno.errorcode.get(e.errno, e.errno)} "
                             f"({e.strerror})" + (" - dropped in OUTPUT/POSTROUTING" if e.errno == errno.EPERM
                                                  else ""))
        finally:
            if pkt.mark:
                rig.sender.setsockopt(socket.SOL_SOCKET, SO_MARK, 0)
        out.barrier = time.monotonic()          # OUTPUT runs inside sendto
        return GRACE_LOCAL
    tap = rig.taps[role]
    tap.send(rig.frame(role, data))
    tap.send(rig.frame(role, b"", barrier_tag=tag))
    if pkt.mark:
        out.notes.append("the mark of a packet entering from another namespace is not kept (veth scrubs it)")
    return GRACE


def _is_rst_for(seen, tag: int, pkt) -> bool:
    """A TCP RST answering our packet. For a segment without ACK the RST
    acknowledges our tag + 1; for one with ACK (a SYN/ACK reply) it carries no
    ACK and its sequence number is our ack: recognise it by its ports."""
    if seen.proto != "tcp" or not (seen.flags or 0) & TCP_BITS["RST"]:
        return False
    if seen.ack == ((tag + 1) & 0xFFFFFFFF):
        return True
    return (pkt is not None and seen.dst == pkt.src and seen.src == pkt.dst
            and seen.dport == pkt.sport and seen.sport == pkt.dport)


def _watch(lab, rig, tag: int, out: _Outcome, grace: float, timeout: float, recv_names: dict, pkt=None):
    """Collect until the first delivery/error, or the marker + grace, or the timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        now = time.monotonic()
        if out.deliveries or out.errors or out.rsts:
            return
        if out.barrier is not None and now >= out.barrier + grace:
            return
        if now >= deadline:
            if out.barrier is None:
                out.notes.append(f"the marker frame never came out of the node: waited the full {timeout:.3f} s")
            return
        wait = deadline - now
        if out.barrier is not None:
            wait = min(wait, out.barrier + grace - now)
        for fd, _ in rig.ep.poll(max(wait, 0.0)):
            for kind, role, seen in rig.read(fd):
                if kind == "barrier":
                    if seen == tag and out.barrier is None:
                        out.barrier = time.monotonic()
                    continue
                where = recv_names(kind, role, seen)
                if _is_rst_for(seen, tag, pkt):
                    out.rsts.append((where, seen))
                    out.captures.append(f"{where}: TCP RST {seen}")
                elif seen.has_tag(tag) and not seen.is_error:
                    out.deliveries.append((where, seen))
                    out.captures.append(f"{where}: {seen}")
                elif seen.is_error:
                    inner = seen.inner()
                    if inner is not None and inner.has_tag(tag):
                        out.errors.append((where, seen, inner))
                        out.captures.append(f"{where}: ICMP error type {seen.icmp_type} code {seen.icmp_code} "
                                            f"from {seen.src} quoting {inner}")


def _receiver(lab):
    topo = lab.topology

    def name(kind, role, seen):
        if kind == "local":
            return "node"
        if role == "peer":
            return topo.receiver(seen.dst, topo.iface)
        return role
    return name


def _observe(lab, origin: str, pkt: Packet, *, flush: bool, counters: bool, conntrack: bool,
             timeout: float | None, direction: str = "ORIGINAL", ack: int | None = None,
             role: str | None = None) -> KernelObservation:
    t_start = time.perf_counter()
    rig = _rig(lab)
    if pkt.family != lab.family:
        raise HarnessError(f"an IPv{pkt.family} packet cannot be sent in an IPv{lab.family} lab")
    role = role or _sender_role(lab, origin)
    v6 = lab.v6
    if flush:
        lab.flush_conntrack()
    before = lab._ctr_base.get(v6) if counters else None
    if counters and before is None:
        before = lab.counters(v6)
    rig.drain()
    tag = rig.next_tag()
    out = _Outcome()
    grace = _inject(lab, rig, role, pkt, tag, ack, out)
    _watch(lab, rig, tag, out, grace, lab.timeout if timeout is None else timeout, _receiver(lab), pkt)

    rule_hits, policy_hits, texts = Counter(), Counter(), {}
    if counters:
        after = lab.counters(v6)
        rule_hits, policy_hits = after.diff(before)
        texts = {k: after.texts.get(k) for k in rule_hits}
    else:
        lab._ctr_base.pop(v6, None)

    notes = list(out.notes)
    delivered = final = None
    if out.deliveries:
        where, seen = out.deliveries[0]
        final = seen.packet()
        delivered = {"to": where, "src": final.src, "sport": final.sport, "dst": final.dst, "dport": final.dport}
        if len(out.deliveries) > 1:
            notes.append("delivered more than once: " + ", ".join(w for w, _ in out.deliveries))
        verdict = "ACCEPT"
    elif out.errors or out.rsts:
        verdict = "REJECT"
    else:
        verdict = "DROP"
    icmp_error = rst = None
    if out.errors:
        where, e, inner = out.errors[0]
        icmp_error = {"type": e.icmp_type, "code": e.icmp_code, "src": e.src, "dst": e.dst, "at": where,
                      "quoted": str(inner)}
    if out.rsts:
        where, r = out.rsts[0]
        rst = {"src": r.src, "sport": r.sport, "dst": r.dst, "dport": r.dport, "at": where}

    ct_text = ct_o = ct_r = None
    if conntrack:
        ct_text, ct_o, ct_r, ct_dir = _find_entry(lab.conntrack_lines(), pkt)
        if ct_dir is not None and ct_dir != direction:
            notes.append(f"the conntrack entry matched the packet in the {ct_dir} direction")
    dnat_to = snat_to = None
    icmp = pkt.proto in ("icmp", "ipv6-icmp")
    if direction == "ORIGINAL" and ct_o is not None and ct_r is not None:
        o_dst = (ct_o["dst"], None if icmp else ct_o.get("dport"))
        r_src = (ct_r["src"], None if icmp else ct_r.get("sport"))
        if r_src != o_dst:
            dnat_to = _endpoint(*r_src)
        o_src = (ct_o["src"], None if icmp else ct_o.get("sport"))
        r_dst = (ct_r["dst"], None if icmp else ct_r.get("dport"))
        if r_dst != o_src:
            snat_to = _endpoint(*r_dst)
    elif final is not None:
        sent_dst = (pkt.dst, None if icmp else pkt.dport)
        sent_src = (pkt.src, None if icmp else pkt.sport)
        if (final.dst, final.dport) != sent_dst:
            dnat_to = _endpoint(final.dst, final.dport)
        if (final.src, final.sport) != sent_src:
            snat_to = _endpoint(final.src, final.sport)
    return KernelObservation(
        origin=origin, packet=pkt, verdict=verdict, delivered=delivered, final=final, dnat_to=dnat_to,
        snat_to=snat_to, masquerade=snat_to is not None, rule_hits=rule_hits, policy_hits=policy_hits,
        rule_texts=texts, conntrack=ct_text, ct_original=ct_o, ct_reply=ct_r, icmp_error=icmp_error, rst=rst,
        notes=tuple(notes), captures=tuple(out.captures), direction=direction, tag=tag,
        elapsed=time.perf_counter() - t_start, counted=counters)


def send(lab, from_name: str, packet: Packet, *, flush: bool = True, counters: bool = True,
         conntrack: bool = True, timeout: float | None = None) -> KernelObservation:
    """Inject `packet` from `from_name` (a local Pod, "node", "peer", a peer Pod or an
    external host of the Lab's topology) and observe it. `flush` empties conntrack first
    (the packet opens a new connection); `counters` reads iptables-save -c after it;
    `conntrack` reads its entry. The source address is the Packet's, as given."""
    return _observe(lab, from_name, packet, flush=flush, counters=counters, conntrack=conntrack,
                    timeout=timeout)


def send_reply(lab, observation: KernelObservation, *, counters: bool = True, conntrack: bool = True,
               timeout: float | None = None) -> KernelObservation:
    """The receiver of an accepted packet answers it (SYN/ACK, UDP datagram, echo reply,
    with the arrived headers swapped), without flushing conntrack; the observation says
    where the answer arrives and with which headers (direction "REPLY")."""
    if observation.verdict != "ACCEPT" or observation.final is None:
        raise HarnessError(f"nothing was delivered ({observation.verdict}): there is no receiver to answer")
    final = observation.final
    reply = final.reply()
    ack = None
    if final.proto == "tcp":
        ack = (observation.tag + 1) & 0xFFFFFFFF if "SYN" in final.tcp_flags else 0x12345678
    to = observation.delivered["to"]
    role = "node" if to == "node" else (to if to in lab.names and to not in ("node", "peer") else "peer")
    return _observe(lab, to, reply, flush=False, counters=counters, conntrack=conntrack, timeout=timeout,
                    direction="REPLY", ack=ack, role=role)


def send_many(lab, from_name: str, packet: Packet, count: int, *, flush: str | bool = "once",
              vary: bool = True, timeout: float | None = None) -> list:
    """Send `count` packets like `packet`, each opening a new connection, as fast as
    possible (no counters, no conntrack reads): for statistic/random distributions.

    `vary` gives each packet its own source port (ICMP: echo id), counting up from the
    Packet's; `flush`: "once" empties conntrack before the first packet, "each" before
    every packet (then `vary=False` sends the same packet each time), False never.
    Returns one item per packet: the `delivered` dict ({to, src, sport, dst, dport}) or
    None when it was not delivered."""
    rig = _rig(lab)
    if packet.family != lab.family:
        raise HarnessError(f"an IPv{packet.family} packet cannot be sent in an IPv{lab.family} lab")
    role = _sender_role(lab, from_name)
    if flush not in ("once", "each", False, True, None):
        raise ValueError("flush must be 'once', 'each' or False")
    if flush in ("once", True):
        lab.flush_conntrack()
    lab._ctr_base.pop(lab.v6, None)          # counters move: the next diff re-reads them
    receiver = _receiver(lab)
    timeout = lab.timeout if timeout is None else timeout
    icmp = packet.proto in ("icmp", "ipv6-icmp")
    results = []
    for i in range(int(count)):
        p = packet
        if vary:
            if icmp:
                p = packet.replace(icmp_id=((packet.icmp_id or 0) + i) & 0xFFFF)
            else:
                base = packet.sport if packet.sport is not None else 40000
                p = packet.replace(sport=1024 + (base - 1024 + i) % (65536 - 1024))
        if flush == "each":
            lab.flush_conntrack()
        rig.drain()
        tag = rig.next_tag()
        out = _Outcome()
        grace = _inject(lab, rig, role, p, tag, None, out)
        _watch(lab, rig, tag, out, grace, timeout, receiver, p)
        if out.deliveries:
            where, seen = out.deliveries[0]
            results.append({"to": where, "src": seen.src, "sport": seen.sport, "dst": seen.dst,
                            "dport": seen.dport})
        else:
            results.append(None)
    return results
