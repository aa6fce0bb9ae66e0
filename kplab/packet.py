"""The packet: the headers netfilter looks at, as an immutable value.

A NAT or MARK target never changes a packet in place: it returns a new one
(`dataclasses.replace`), so every step of a trace can show the packet before
and after it.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import KplabError

#: Protocol names iptables prints, by number (xtables_chain_protos, then /etc/protocols).
PROTO_NAMES = {
    0: "all", 1: "icmp", 2: "igmp", 4: "ipencap", 6: "tcp", 17: "udp", 33: "dccp",
    41: "ipv6", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 89: "ospf", 103: "pim",
    112: "vrrp", 132: "sctp", 135: "mh", 136: "udplite",
}
PROTO_NUMBERS = {name: num for num, name in PROTO_NAMES.items()}
PROTO_NUMBERS.update({"icmpv6": 58, "ipv6-mh": 135})

#: Protocols whose packets carry ports.
PORT_PROTOS = frozenset({"tcp", "udp", "sctp", "dccp", "udplite"})

TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


@lru_cache(maxsize=65536)
def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address once; packets and rules compare many times."""
    return ipaddress.ip_address(text)


class PacketError(KplabError, ValueError):
    """A packet description that cannot exist (bad address, port out of range)."""


@dataclass(frozen=True)
class Packet:
    """One IP packet's headers, as netfilter sees them.

    `proto` is a lower-case name (`tcp`, `udp`, `icmp`, `sctp`, `ipv6-icmp`,
    ...). Ports are set for protocols that have them; ICMP uses `icmp_type`,
    `icmp_code` and `icmp_id` (the echo identifier, which conntrack treats as
    a port). `in_iface`/`out_iface` are filled in by the node as the packet
    moves; `mark` is the skb mark that MARK sets and `-m mark` tests.

    >>> Packet.tcp("10.244.1.7", "10.96.5.81", 80).sport
    40000
    """

    proto: str
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    tcp_flags: frozenset = field(default=frozenset())
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    mark: int = 0
    ttl: int = 64
    in_iface: str | None = None
    out_iface: str | None = None
    fragment: bool = False

    def __post_init__(self):
        for name in ("src", "dst"):
            try:
                ip(getattr(self, name))
            except (ValueError, TypeError):
                raise PacketError(f"{name} {getattr(self, name)!r} is not an IP address") from None
        if ip(self.src).version != ip(self.dst).version:
            raise PacketError(f"src {self.src} and dst {self.dst} are of different IP versions")
        for name in ("sport", "dport"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 0 <= v <= 65535):
                raise PacketError(f"{name} {v!r} is not a port number (0-65535)")
        if not isinstance(self.mark, int) or not 0 <= self.mark <= 0xFFFFFFFF:
            raise PacketError(f"mark {self.mark!r} is not a 32-bit value")

    # --- constructors -------------------------------------------------
    @classmethod
    def tcp(cls, src: str, dst: str, dport: int, sport: int = 40000, flags=("SYN",), **kw) -> "Packet":
        """A TCP segment; by default the SYN that opens a connection."""
        return cls("tcp", src, dst, sport, dport, tcp_flags=frozenset(flags), **kw)

    @classmethod
    def udp(cls, src: str, dst: str, dport: int, sport: int = 40000, **kw) -> "Packet":
        return cls("udp", src, dst, sport, dport, **kw)

    @classmethod
    def icmp(cls, src: str, dst: str, type: int = 8, code: int = 0, id: int = 1, **kw) -> "Packet":
        """An ICMP message; by default an echo request (ping)."""
        proto = "ipv6-icmp" if ip(src).version == 6 else "icmp"
        if proto == "ipv6-icmp" and type == 8:
            type = 128
        return cls(proto, src, dst, icmp_type=type, icmp_code=code, icmp_id=id, **kw)

    @classmethod
    def make(cls, proto: str, src: str, dst: str, sport: int | None = None,
             dport: int | None = None) -> "Packet":
        """The first packet of a new connection of `proto` (SYN, datagram, echo request)."""
        if proto == "tcp":
            return cls.tcp(src, dst, dport if dport is not None else 80, sport if sport is not None else 40000)
        if proto in ("icmp", "ipv6-icmp", "icmpv6"):
            return cls.icmp(src, dst, id=sport if sport is not None else 1)
        if proto in PORT_PROTOS:
            return cls(proto, src, dst, sport if sport is not None else 40000, dport if dport is not None else 80)
        raise PacketError(f"unknown protocol {proto!r}: use tcp, udp, sctp or icmp")

    # --- views ----------------------------------------------------------
    @property
    def family(self) -> int:
        return ip(self.src).version

    @property
    def proto_num(self) -> int:
        return PROTO_NUMBERS.get(self.proto, 0)

    def replace(self, **changes) -> "Packet":
        return dataclasses.replace(self, **changes)

    def reply(self) -> "Packet":
        """The answer the destination sends back (SYN/ACK, datagram, echo reply)."""
        if self.proto in ("icmp", "ipv6-icmp"):
            rtype = {8: 0, 128: 129}.get(self.icmp_type, self.icmp_type)
            return Packet(self.proto, self.dst, self.src, icmp_type=rtype, icmp_code=self.icmp_code,
                          icmp_id=self.icmp_id)
        flags = frozenset({"SYN", "ACK"}) if self.tcp_flags == frozenset({"SYN"}) else (
            frozenset({"ACK"}) if self.proto == "tcp" else frozenset())
        return Packet(self.proto, self.dst, self.src, self.dport, self.sport, tcp_flags=flags)

    def endpoint(self, which: str) -> str:
        """`ip:port` of the source or destination (IPv6 in brackets)."""
        addr, port = (self.src, self.sport) if which == "src" else (self.dst, self.dport)
        host = f"[{addr}]" if ":" in addr else addr
        return host if port is None else f"{host}:{port}"

    def headers(self) -> dict:
        """The headers as plain data (for JSON, tables and widgets)."""
        d = {"proto": self.proto, "src": self.src, "sport": self.sport, "dst": self.dst, "dport": self.dport}
        if self.proto == "tcp":
            d["flags"] = ",".join(f for f in TCP_FLAGS if f in self.tcp_flags)
        if self.icmp_type is not None:
            d.update(icmp_type=self.icmp_type, icmp_code=self.icmp_code, icmp_id=self.icmp_id)
        if self.mark:
            d["mark"] = f"{self.mark:#x}"
        return d

    def __str__(self) -> str:
        if self.proto in ("icmp", "ipv6-icmp"):
            return f"{self.proto} {self.src} > {self.dst} type {self.icmp_type} id {self.icmp_id}"
        return f"{self.proto} {self.endpoint('src')} > {self.endpoint('dst')}"
