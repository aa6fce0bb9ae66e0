"""Match modules: one small class per `-m` module, plus the generic criteria.

Each class parses its options (`from_options`), prints the exact form
iptables-save prints (`save`), decides (`matches`) and explains a miss
(`why_not`). The semantics follow the kernel's xt_* modules; comments name
the kernel behaviour where it surprises.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ..packet import PORT_PROTOS, ip
from .rules import Match, RuleContext
from .values import (AddrMask, OptionError, parse_addr_mask, parse_port_range, parse_proto,
                     parse_uint, parse_mark, port_range_text, proto_text, save_string, strtoui)

MATCHES: dict = {}


def register(cls):
    MATCHES[cls.name] = cls
    return cls


def _neg(invert: bool) -> str:
    return "! " if invert else ""


def _single(opts, cls_name):
    """Refuse an option given twice, as iptables does."""
    seen = set()
    for o in opts:
        if o.name in seen:
            raise OptionError(f"{cls_name}: option \"--{o.name}\" can only be used once")
        seen.add(o.name)


# ==========================================================================
# Generic criteria (-s -d -p -i -o -f)

@dataclass(frozen=True)
class Source(Match):
    addr: AddrMask
    invert: bool = False
    name: ClassVar[str] = "-s"

    def matches(self, pkt, ctx) -> bool:
        return self.addr.contains(ip(pkt.src)) != self.invert

    def why_not(self, pkt, ctx) -> str:
        return (f"source {pkt.src} is in {self.addr}, rule wants outside it" if self.invert
                else f"source {pkt.src} is not in {self.addr}")

    def save(self) -> str:
        return f"{_neg(self.invert)}-s {self.addr}"


@dataclass(frozen=True)
class Destination(Match):
    addr: AddrMask
    invert: bool = False
    name: ClassVar[str] = "-d"

    def matches(self, pkt, ctx) -> bool:
        return self.addr.contains(ip(pkt.dst)) != self.invert

    def why_not(self, pkt, ctx) -> str:
        return (f"destination {pkt.dst} is in {self.addr}, rule wants outside it" if self.invert
                else f"destination {pkt.dst} is not {self.addr}")

    def save(self) -> str:
        return f"{_neg(self.invert)}-d {self.addr}"


@dataclass(frozen=True)
class Protocol(Match):
    proto: int
    invert: bool = False
    name: ClassVar[str] = "-p"

    def matches(self, pkt, ctx) -> bool:
        return (self.proto == 0 or pkt.proto_num == self.proto) != self.invert

    def why_not(self, pkt, ctx) -> str:
        want = proto_text(self.proto)
        return (f"protocol is {pkt.proto}, rule wants anything but {want}" if self.invert
                else f"protocol is {pkt.proto}, rule wants {want}")

    def save(self) -> str:
        return f"{_neg(self.invert)}-p {proto_text(self.proto)}"


def iface_matches(pattern: str, name: str | None) -> bool:
    """Interface name test; a trailing `+` matches every name with that prefix."""
    if name is None:
        return False
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


@dataclass(frozen=True)
class _Interface(Match):
    """`-i`/`-o`: the interface the packet came in on or goes out by."""

    iface: str
    invert: bool = False
    FIELD: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""
    NONE: ClassVar[str] = ""

    def matches(self, pkt, ctx) -> bool:
        return iface_matches(self.iface, getattr(pkt, self.FIELD)) != self.invert

    def why_not(self, pkt, ctx) -> str:
        got = getattr(pkt, self.FIELD) or self.NONE
        return f"{self.LABEL} interface is {got}, rule wants {'not ' if self.invert else ''}{self.iface}"

    def save(self) -> str:
        return f"{_neg(self.invert)}{self.name} {self.iface}"


@dataclass(frozen=True)
class InInterface(_Interface):
    name: ClassVar[str] = "-i"
    FIELD: ClassVar[str] = "in_iface"
    LABEL: ClassVar[str] = "input"
    NONE: ClassVar[str] = "none (created on this host)"


@dataclass(frozen=True)
class OutInterface(_Interface):
    name: ClassVar[str] = "-o"
    FIELD: ClassVar[str] = "out_iface"
    LABEL: ClassVar[str] = "output"
    NONE: ClassVar[str] = "not chosen yet"


@dataclass(frozen=True)
class Fragment(Match):
    """`-f`: second and later fragments (kplab's packets are never fragments)."""
    invert: bool = False
    name: ClassVar[str] = "-f"

    def matches(self, pkt, ctx) -> bool:
        return pkt.fragment != self.invert

    def why_not(self, pkt, ctx) -> str:
        return "packet is not a later fragment" if not self.invert else "packet is a later fragment"

    def save(self) -> str:
        return f"{_neg(self.invert)}-f"


# ==========================================================================
# tcp, udp, sctp: ports and TCP flags

TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20}
TCP_FLAG_NAMES = dict(TCP_FLAG_BITS, ALL=0x3F, NONE=0)


def _flag_list(text: str) -> int:
    bits = 0
    for word in text.split(","):
        w = word.upper()
        if w not in TCP_FLAG_NAMES:
            raise OptionError(f"unknown TCP flag {word!r}")
        bits |= TCP_FLAG_NAMES[w]
    return bits


def _flag_text(bits: int) -> str:
    if not bits:
        return "NONE"
    return ",".join(n for n, b in TCP_FLAG_BITS.items() if bits & b)


def _pkt_flags(pkt) -> int:
    return sum(TCP_FLAG_BITS[f] for f in pkt.tcp_flags if f in TCP_FLAG_BITS)


FULL = (0, 65535)


def _port_ok(rng, inv, port) -> bool:
    if rng is None:
        return True
    return (port is not None and rng[0] <= port <= rng[1]) != inv


def _port_reason(which, rng, inv, port) -> str:
    want = port_range_text(*rng)
    return (f"{which} {port}, rule wants not {want}" if inv else f"{which} {port}, rule wants {want}")


@dataclass(frozen=True)
class _Ports(Match):
    """Shared by tcp, udp and sctp: `--sport` and `--dport` ranges.

    A range written as the full `:` (0-65535) is left out of the saved form;
    inverted, iptables 1.8.9 (nf_tables) drops the test altogether, so the
    rule matches every packet of the protocol and the module may vanish.
    """

    sport: tuple | None = None
    sport_inv: bool = False
    dport: tuple | None = None
    dport_inv: bool = False

    ALIASES: ClassVar[dict] = {"source-port": "sport", "destination-port": "dport"}
    REVERSED_OK: ClassVar[bool] = False
    WRAP: ClassVar[bool] = False
    PROTO: ClassVar[int] = 0

    @classmethod
    def _parse_ports(cls, opts):
        _single(opts, cls.name)
        kw, dropped = {}, False
        for o in opts:
            if o.name in ("sport", "dport"):
                rng = parse_port_range(o.value, allow_reversed=cls.REVERSED_OK, wrap=cls.WRAP)
                inv = o.invert
                if rng == FULL:
                    # The full range tests nothing: kept out of the saved form,
                    # and inverted (1.8.9, nf_tables) it is dropped altogether.
                    dropped = dropped or inv
                    continue
                if inv and rng[0] == 0 < rng[1] < 65535:
                    # nf_tables stores "not 0:N" as the range N+1:65535
                    rng, inv = (rng[1] + 1, 65535), False
                kw[o.name] = rng
                kw[o.name + "_inv"] = inv
        return kw, dropped

    def check(self, ctx: RuleContext) -> None:
        # `! -p tcp -m tcp --dport 80` loads too: nf_tables then compares the
        # transport header's port field of whatever protocol the packet has.
        if ctx.proto != self.PROTO:
            raise OptionError(f"{self.name} match: needs \"-p {self.name}\"")

    def _save_ports(self) -> list:
        out = []
        for which in ("sport", "dport"):
            rng, inv = getattr(self, which), getattr(self, which + "_inv")
            if rng is None or (rng == FULL and not inv):
                continue
            out.append(f"{_neg(inv)}--{which} {port_range_text(*rng)}")
        return out

    @property
    def merged_ports(self) -> bool:
        """iptables 1.8.9 (nf_tables) tests two single ports, both negated, as
        one 4-byte compare of (sport, dport): `! --sport X ! --dport Y` then
        means "not (sport X and dport Y)" (seen in the kernel's netlink
        bytecode: `payload load 4b @ transport header + 0; cmp neq`)."""
        return (self.sport is not None and self.dport is not None and self.sport_inv and self.dport_inv
                and self.sport[0] == self.sport[1] and self.dport[0] == self.dport[1])

    def matches(self, pkt, ctx) -> bool:
        if self.merged_ports:
            return not (pkt.sport == self.sport[0] and pkt.dport == self.dport[0])
        return _port_ok(self.sport, self.sport_inv, pkt.sport) and _port_ok(self.dport, self.dport_inv, pkt.dport)

    def why_not(self, pkt, ctx) -> str:
        if self.merged_ports:
            return (f"ports {pkt.sport} -> {pkt.dport}: the rule (nf_tables) wants any pair but "
                    f"{self.sport[0]} -> {self.dport[0]}")
        if not _port_ok(self.sport, self.sport_inv, pkt.sport):
            return _port_reason("source port", self.sport, self.sport_inv, pkt.sport)
        return _port_reason("destination port", self.dport, self.dport_inv, pkt.dport)

    def describe(self) -> str:
        return " ".join(self._save_ports()) or f"any {self.name}"


@register
@dataclass(frozen=True)
class Tcp(_Ports):
    flags: tuple | None = None        # (mask bits, compare bits)
    flags_inv: bool = False
    option: int | None = None
    option_inv: bool = False

    name: ClassVar[str] = "tcp"
    PROTO: ClassVar[int] = 6
    OPTIONS: ClassVar[dict] = {"sport": (1, True), "dport": (1, True), "tcp-flags": (2, True),
                               "syn": (0, True), "tcp-option": (1, True)}
    ALIASES: ClassVar[dict] = {"source-port": "sport", "destination-port": "dport"}

    @classmethod
    def from_options(cls, opts, ctx):
        kw, dropped = cls._parse_ports(opts)
        flagged = [o for o in opts if o.name in ("tcp-flags", "syn")]
        if len(flagged) > 1:
            raise OptionError("tcp: only one of \"--syn\" and \"--tcp-flags\" may be given")
        for o in opts:
            if o.name == "tcp-flags":
                kw["flags"] = (_flag_list(o.values[0]), _flag_list(o.values[1]))
                kw["flags_inv"] = o.invert
            elif o.name == "syn":
                kw["flags"] = (0x17, 0x02)          # FIN,SYN,RST,ACK SYN
                kw["flags_inv"] = o.invert
            elif o.name == "tcp-option":
                kw["option"] = parse_uint(o.value, 8, "TCP option")
                kw["option_inv"] = o.invert
        if dropped and not kw:
            return None
        return cls(**kw)

    def save(self) -> str:
        parts = ["-m tcp"] + self._save_ports()
        if self.option is not None:
            parts.append(f"{_neg(self.option_inv)}--tcp-option {self.option}")
        if self.flags is not None:
            parts.append(f"{_neg(self.flags_inv)}--tcp-flags {_flag_text(self.flags[0])} {_flag_text(self.flags[1])}")
        return " ".join(parts)

    def _flags_ok(self, pkt) -> bool:
        if self.flags is None:
            return True
        return ((_pkt_flags(pkt) & self.flags[0]) == self.flags[1]) != self.flags_inv

    def matches(self, pkt, ctx) -> bool:
        if self.option is not None and not self.option_inv:
            return False                      # kplab's packets carry no TCP options
        return _Ports.matches(self, pkt, ctx) and self._flags_ok(pkt)

    def why_not(self, pkt, ctx) -> str:
        if self.option is not None and not self.option_inv:
            return f"packet carries no TCP option {self.option}"
        if not _Ports.matches(self, pkt, ctx):
            return _Ports.why_not(self, pkt, ctx)
        got = _flag_text(_pkt_flags(pkt) & self.flags[0])
        return (f"TCP flags {got} (of {_flag_text(self.flags[0])}), rule wants "
                f"{'not ' if self.flags_inv else ''}{_flag_text(self.flags[1])}")


@register
@dataclass(frozen=True)
class Udp(_Ports):
    name: ClassVar[str] = "udp"
    PROTO: ClassVar[int] = 17
    OPTIONS: ClassVar[dict] = {"sport": (1, True), "dport": (1, True)}
    # iptables 1.8.9 accepts an inverted range (4:3) for udp, which never
    # matches, and keeps the low 16 bits of a port above 65535.
    REVERSED_OK: ClassVar[bool] = True
    WRAP: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        kw, dropped = cls._parse_ports(opts)
        if dropped and not kw:
            return None
        return cls(**kw)

    def save(self) -> str:
        return " ".join(["-m udp"] + self._save_ports())


@register
@dataclass(frozen=True)
class Sctp(_Ports):
    name: ClassVar[str] = "sctp"
    PROTO: ClassVar[int] = 132
    OPTIONS: ClassVar[dict] = {"sport": (1, True), "dport": (1, True), "chunk-types": (2, True)}

    @classmethod
    def from_options(cls, opts, ctx):
        if any(o.name == "chunk-types" for o in opts):
            raise OptionError("sctp: --chunk-types is not modelled by kplab")
        kw, dropped = cls._parse_ports(opts)
        if dropped and not kw:
            return None
        return cls(**kw)

    def save(self) -> str:
        return " ".join(["-m sctp"] + self._save_ports())


# ==========================================================================
# icmp

ICMP_TYPES = {
    "any": (255, 0, 255),
    "echo-reply": (0, 0, 255), "pong": (0, 0, 255),
    "destination-unreachable": (3, 0, 255),
    "network-unreachable": (3, 0, 0), "host-unreachable": (3, 1, 1),
    "protocol-unreachable": (3, 2, 2), "port-unreachable": (3, 3, 3),
    "fragmentation-needed": (3, 4, 4), "source-route-failed": (3, 5, 5),
    "network-unknown": (3, 6, 6), "host-unknown": (3, 7, 7),
    "network-prohibited": (3, 9, 9), "host-prohibited": (3, 10, 10),
    "TOS-network-unreachable": (3, 11, 11), "TOS-host-unreachable": (3, 12, 12),
    "communication-prohibited": (3, 13, 13), "host-precedence-violation": (3, 14, 14),
    "precedence-cutoff": (3, 15, 15),
    "source-quench": (4, 0, 255),
    "redirect": (5, 0, 255), "network-redirect": (5, 0, 0), "host-redirect": (5, 1, 1),
    "TOS-network-redirect": (5, 2, 2), "TOS-host-redirect": (5, 3, 3),
    "echo-request": (8, 0, 255), "ping": (8, 0, 255),
    "router-advertisement": (9, 0, 255), "router-solicitation": (10, 0, 255),
    "time-exceeded": (11, 0, 255), "ttl-exceeded": (11, 0, 255),
    "ttl-zero-during-transit": (11, 0, 0), "ttl-zero-during-reassembly": (11, 1, 1),
    "parameter-problem": (12, 0, 255), "ip-header-bad": (12, 0, 0),
    "required-option-missing": (12, 1, 1),
    "timestamp-request": (13, 0, 255), "timestamp-reply": (14, 0, 255),
    "address-mask-request": (17, 0, 255), "address-mask-reply": (18, 0, 255),
}


def _icmp_type(text: str, names: dict, what: str, ranges: bool) -> tuple:
    """`NAME`, `TYPE` or `TYPE/CODE` (iptables' icmp also `TYPE/LOW:HIGH`) as
    (type, lowest code, highest code)."""
    if text in names:
        return names[text]
    t_text, slash, c_text = text.partition("/")
    t = parse_uint(t_text, 8, f"{what} type")
    if not slash:
        return t, 0, 255
    a, colon, b = c_text.partition(":") if ranges else (c_text, "", "")
    lo = parse_uint(a, 8, f"{what} code")
    return t, lo, parse_uint(b, 8, f"{what} code") if colon else lo


@register
@dataclass(frozen=True)
class Icmp(Match):
    type: int = 255
    code: tuple = (0, 255)
    invert: bool = False

    name: ClassVar[str] = "icmp"
    OPTIONS: ClassVar[dict] = {"icmp-type": (1, True)}

    @classmethod
    def from_options(cls, opts, ctx):
        _single(opts, "icmp")
        if not opts:
            return cls()
        o = opts[0]
        t, lo, hi = _icmp_type(o.value, ICMP_TYPES, "ICMP", ranges=True)
        if t == 255:                 # iptables 1.8.9 reads type 255 as "any"
            lo, hi = 0, 255
        return cls(t, (lo, hi), o.invert)

    def check(self, ctx):
        if ctx.proto_name() != "icmp":
            raise OptionError("icmp match: needs \"-p icmp\"")

    def save(self) -> str:
        if self.type == 255:
            return f"-m icmp {_neg(self.invert)}--icmp-type any"
        code = "" if self.code == (0, 255) else f"/{self.code[0]}"
        return f"-m icmp {_neg(self.invert)}--icmp-type {self.type}{code}"

    def matches(self, pkt, ctx) -> bool:
        ok = self.type == 255 or (pkt.icmp_type == self.type and pkt.icmp_code is not None
                                  and self.code[0] <= pkt.icmp_code <= self.code[1])
        return ok != self.invert

    def why_not(self, pkt, ctx) -> str:
        return f"ICMP type {pkt.icmp_type}/{pkt.icmp_code}, rule wants {_neg(self.invert)}{self.save().split()[-1]}"


ICMP6_TYPES = {
    "destination-unreachable": (1, 0, 255), "no-route": (1, 0, 0),
    "communication-prohibited": (1, 1, 1), "beyond-scope": (1, 2, 2),
    "address-unreachable": (1, 3, 3), "port-unreachable": (1, 4, 4),
    "failed-policy": (1, 5, 5), "reject-route": (1, 6, 6),
    "packet-too-big": (2, 0, 255), "time-exceeded": (3, 0, 255), "ttl-exceeded": (3, 0, 255),
    "ttl-zero-during-transit": (3, 0, 0), "ttl-zero-during-reassembly": (3, 1, 1),
    "parameter-problem": (4, 0, 255), "bad-header": (4, 0, 0), "unknown-header-type": (4, 1, 1),
    "unknown-option": (4, 2, 2), "echo-request": (128, 0, 255), "ping": (128, 0, 255),
    "echo-reply": (129, 0, 255), "pong": (129, 0, 255),
    "router-solicitation": (133, 0, 255), "router-advertisement": (134, 0, 255),
    "neighbour-solicitation": (135, 0, 255), "neighbor-solicitation": (135, 0, 255),
    "neighbour-advertisement": (136, 0, 255), "neighbor-advertisement": (136, 0, 255),
    "redirect": (137, 0, 255),
}


@register
@dataclass(frozen=True)
class Icmp6(Match):
    """ip6tables' `-m icmp6 --icmpv6-type TYPE[/CODE]`."""

    type: int = 0
    code: tuple = (0, 255)
    invert: bool = False

    name: ClassVar[str] = "icmp6"
    OPTIONS: ClassVar[dict] = {"icmpv6-type": (1, True)}

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("icmp6: option \"--icmpv6-type\" must be specified")
        _single(opts, "icmp6")
        o = opts[0]
        t, lo, hi = _icmp_type(o.value, ICMP6_TYPES, "ICMPv6", ranges=False)
        return cls(t, (lo, hi), o.invert)

    def check(self, ctx):
        if ctx.proto_name() != "ipv6-icmp":
            raise OptionError("icmp6 match: needs \"-p ipv6-icmp\"")

    def save(self) -> str:
        code = "" if self.code == (0, 255) else f"/{self.code[0]}"
        return f"-m icmp6 {_neg(self.invert)}--icmpv6-type {self.type}{code}"

    def matches(self, pkt, ctx) -> bool:
        ok = pkt.icmp_type == self.type and self.code[0] <= (pkt.icmp_code or 0) <= self.code[1]
        return ok != self.invert

    def why_not(self, pkt, ctx) -> str:
        return f"ICMPv6 type {pkt.icmp_type}/{pkt.icmp_code}, rule wants {_neg(self.invert)}{self.save().split()[-1]}"


# ==========================================================================
# multiport

@register
@dataclass(frozen=True)
class Multiport(Match):
    which: str = "dports"             # sports, dports or ports
    ports: tuple = ()                 # ((lo, hi), ...)
    invert: bool = False

    name: ClassVar[str] = "multiport"
    OPTIONS: ClassVar[dict] = {"sports": (1, True), "dports": (1, True), "ports": (1, True)}
    ALIASES: ClassVar[dict] = {"source-ports": "sports", "destination-ports": "dports"}

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("multiport: one of --sports, --dports or --ports is required")
        if len(opts) > 1:
            raise OptionError("multiport: only one of --sports, --dports and --ports may be given")
        o = opts[0]
        ports, used = [], 0
        for part in o.value.split(","):
            if not part:
                raise OptionError(f"multiport: empty port in {o.value!r}")
            rng = parse_port_range(part)
            used += 1 if rng[0] == rng[1] and ":" not in part else 2
            ports.append(rng)
        if used > 15:
            raise OptionError("multiport: too many ports specified (at most 15, a range counts as two)")
        return cls(o.name, tuple(ports), o.invert)

    def check(self, ctx):
        if ctx.proto_name() not in PORT_PROTOS:
            raise OptionError("multiport needs \"-p tcp\", \"-p udp\", \"-p udplite\", \"-p sctp\" or \"-p dccp\"")

    def _text(self) -> str:
        return ",".join(port_range_text(lo, hi) if lo != hi else str(lo) for lo, hi in self.ports)

    def save(self) -> str:
        return f"-m multiport {_neg(self.invert)}--{self.which} {self._text()}"

    def _hit(self, port) -> bool:
        return port is not None and any(lo <= port <= hi for lo, hi in self.ports)

    def matches(self, pkt, ctx) -> bool:
        if self.which == "sports":
            ok = self._hit(pkt.sport)
        elif self.which == "dports":
            ok = self._hit(pkt.dport)
        else:
            ok = self._hit(pkt.sport) or self._hit(pkt.dport)
        return ok != self.invert

    def why_not(self, pkt, ctx) -> str:
        got = {"sports": f"source port {pkt.sport}", "dports": f"destination port {pkt.dport}",
               "ports": f"ports {pkt.sport} and {pkt.dport}"}[self.which]
        return f"{got}, rule wants {'none of' if self.invert else 'one of'} {self._text()}"


# ==========================================================================
# comment, mark, nfacct

@register
@dataclass(frozen=True)
class Comment(Match):
    """A note for people; it always matches."""
    text: str = ""

    name: ClassVar[str] = "comment"
    OPTIONS: ClassVar[dict] = {"comment": (1, False)}

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("comment: option \"--comment\" must be specified")
        return cls(opts[-1].value[:255])      # the kernel keeps 255 characters

    def save(self) -> str:
        return f"-m comment --comment {save_string(self.text)}"

    def matches(self, pkt, ctx) -> bool:
        return True


@register
@dataclass(frozen=True)
class Mark(Match):
    value: int = 0
    mask: int | None = None
    invert: bool = False

    name: ClassVar[str] = "mark"
    OPTIONS: ClassVar[dict] = {"mark": (1, True)}

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("mark: option \"--mark\" must be specified")
        _single(opts, "mark")
        v, m = parse_mark(opts[0].value)
        return cls(v, m, opts[0].invert)

    def _text(self) -> str:
        return f"{self.value:#x}" + ("" if self.mask is None else f"/{self.mask:#x}")

    def save(self) -> str:
        return f"-m mark {_neg(self.invert)}--mark {self._text()}"

    def matches(self, pkt, ctx) -> bool:
        mask = 0xFFFFFFFF if self.mask is None else self.mask
        return ((pkt.mark & mask) == self.value) != self.invert

    def why_not(self, pkt, ctx) -> str:
        return f"mark is {pkt.mark:#x}, rule wants {_neg(self.invert)}{self._text()}"


@register
@dataclass(frozen=True)
class Nfacct(Match):
    """An accounting object: counts bytes and packets, always matches."""
    counter: str = ""

    name: ClassVar[str] = "nfacct"
    OPTIONS: ClassVar[dict] = {"nfacct-name": (1, False)}
    stateful: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("nfacct: option \"--nfacct-name\" must be specified")
        name = opts[-1].value
        if len(name) > 31:
            raise OptionError("nfacct: --nfacct-name is longer than 31 characters")
        return cls(name)

    def save(self) -> str:
        # iptables 1.8.9 prints two spaces here (libxt_nfacct's save adds
        # one before its own " --nfacct-name"); iptables-save output has them.
        return f"-m nfacct --nfacct-name  {save_string(self.counter)}"

    def matches(self, pkt, ctx) -> bool:
        ctx.count_nfacct(self.counter)
        return True


# ==========================================================================
# statistic

_STRTOD = re.compile(r"[ \t\n\v\f\r]*([+-]?)(?:(inf(?:inity)?)|(nan(?:\([0-9a-z_]*\))?)"
                     r"|(0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?)"
                     r"|((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?))\Z", re.IGNORECASE)


def strtod(text: str):
    """`text` as C's strtod() reads a whole argument (what xtables' double options
    use): leading blanks, decimal or hex, inf and nan allowed; None if it is not one."""
    m = _STRTOD.match(text)
    if m is None:
        return None
    sign, inf, nan, hexa, dec = m.groups()
    if inf:
        return float(sign + "inf")
    if nan:
        return float("nan")
    if hexa:
        return float.fromhex(sign + hexa)
    return float(sign + dec)


@register
@dataclass(frozen=True)
class Statistic(Match):
    """`--mode random`: matches with a probability; `--mode nth`: every n-th packet.

    The kernel keeps the probability as `round(p * 2^31)` and compares a
    random 31-bit number with it, so the real odds are `stored / 2^31`.
    """

    mode: str = "random"
    stored: int = 0             # random: round(p * 2^31)
    every: int = 0              # nth
    packet: int = 0
    invert: bool = False

    name: ClassVar[str] = "statistic"
    OPTIONS: ClassVar[dict] = {"mode": (1, False), "probability": (1, True), "every": (1, True),
                               "packet": (1, False)}
    stateful: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        _single(opts, "statistic")
        o = {x.name: x for x in opts}
        if "mode" not in o:
            raise OptionError("statistic: option \"--mode\" must be specified"
                              if o else "statistic: --probability must be specified when using random mode")
        mode = o["mode"].value
        if mode == "random":
            if "probability" not in o:
                raise OptionError("statistic: --probability must be specified when using random mode")
            if "every" in o or "packet" in o:
                raise OptionError("statistic: --every and --packet go with --mode nth")
            p = strtod(o["probability"].value)
            if p is None or p < 0.0 or p > 1.0:        # as iptables: NaN passes both tests
                raise OptionError(f"statistic: --probability must be a number from 0 to 1, not "
                                  f"{o['probability'].value!r}")
            # lround(p * 2^31); lround(NaN) is LONG_MIN on x86-64, kept as 0 in the 32-bit field
            stored = 0 if p != p else int(p * 0x80000000 + 0.5)
            return cls("random", stored=stored, invert=o["probability"].invert)
        if mode == "nth":
            if "probability" in o:
                raise OptionError("statistic: --probability goes with --mode random")
            if "every" not in o:
                raise OptionError("statistic: --every must be specified when using nth mode")
            if "packet" not in o:
                raise OptionError("statistic: option \"--every\" also requires \"--packet\"")
            every = parse_uint(o["every"].value, 32, "--every")
            packet = parse_uint(o["packet"].value, 32, "--packet")
            if every == 0:
                raise OptionError("statistic: --every must be at least 1")
            if packet > every - 1:
                raise OptionError("statistic: the --packet p must be 0 <= p <= n-1")
            return cls("nth", every=every, packet=packet, invert=o["every"].invert)
        raise OptionError(f"statistic: bad mode {mode!r} (random or nth)")

    @property
    def per_rule_state(self) -> bool:
        """nth mode counts packets per rule: never share one object between rules."""
        return self.mode == "nth"

    @property
    def probability(self) -> float:
        """The kernel's real odds of a match (before `!`)."""
        return self.stored / 0x80000000

    def save(self) -> str:
        if self.mode == "random":
            return f"-m statistic --mode random {_neg(self.invert)}--probability {self.probability:.11f}"
        # iptables 1.8.9 prints --packet even when it is 0 (seen on this machine)
        return f"-m statistic --mode nth {_neg(self.invert)}--every {self.every} --packet {self.packet}"

    def matches(self, pkt, ctx) -> bool:
        if self.mode == "random":
            return ctx.random_match(self) != self.invert
        return ctx.nth_match(self) != self.invert

    def why_not(self, pkt, ctx) -> str:
        if self.mode == "random":
            p = self.probability if not self.invert else 1 - self.probability
            return f"the random draw missed (probability {p:.4g})"
        return f"not the packet {self.packet} of every {self.every}"

    def describe(self) -> str:
        if self.mode == "random":
            return f"probability {self.probability:.4g}" + (" (inverted)" if self.invert else "")
        return self.save()


# ==========================================================================
# addrtype

ADDR_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
              "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")


def _prefix_list(text: str, names, what: str, first=()) -> int:
    """A comma list of names as libxt_conntrack and libxt_addrtype read it: each item is a
    case-insensitive prefix of a name (strncasecmp over the item's length), the first name
    in the kernel's order wins ("E" is ESTABLISHED, "N" NEW); an empty item is refused.
    `first` are names tried before `names` that set no bit (NONE for --ctstatus).
    Returns the bits (1 << index in `names`)."""
    bits = 0
    for item in text.split(","):
        want = item.upper()
        if not want:
            raise OptionError(f"{what} \"{item}\": an empty item in the list")
        if any(n.startswith(want) for n in first):
            continue
        for bit, name in _order(names):
            if name.startswith(want):
                bits |= 1 << bit
                break
        else:
            raise OptionError(f"{what} \"{item}\"")
    return bits


def _order(names, _cache={}):
    key = tuple(names)
    if key not in _cache:
        _cache[key] = [(names.index(n), n) for n in _KERNEL_ORDER.get(key, key)]
    return _cache[key]


def _types(text: str) -> int:
    return _prefix_list(text, ADDR_TYPES, "addrtype: bad type")


def _types_text(bits: int) -> str:
    return ",".join(n for i, n in enumerate(ADDR_TYPES) if bits & (1 << i))


@register
@dataclass(frozen=True)
class Addrtype(Match):
    """The routing type of an address (LOCAL, UNICAST, BROADCAST, ...)."""

    src: int = 0
    src_inv: bool = False
    dst: int = 0
    dst_inv: bool = False
    limit: str | None = None     # "in" or "out"

    name: ClassVar[str] = "addrtype"
    OPTIONS: ClassVar[dict] = {"src-type": (1, True), "dst-type": (1, True),
                               "limit-iface-in": (0, False), "limit-iface-out": (0, False)}

    @classmethod
    def from_options(cls, opts, ctx):
        _single(opts, "addrtype")
        kw = {}
        for o in opts:
            if o.name == "src-type":
                kw.update(src=_types(o.value), src_inv=o.invert)
            elif o.name == "dst-type":
                kw.update(dst=_types(o.value), dst_inv=o.invert)
            else:
                if "limit" in kw:
                    raise OptionError("addrtype: option \"--limit-iface-in\" cannot be used together with \"--limit-iface-out\"")
                kw["limit"] = o.name[len("limit-iface-"):]
        if "src" not in kw and "dst" not in kw:
            raise OptionError("addrtype: you must specify --src-type or --dst-type")
        return cls(**kw)

    def allowed_hooks(self):
        """--limit-iface-in needs an input interface, -out an output one."""
        if self.limit == "in":
            return ("PREROUTING", "INPUT", "FORWARD")
        if self.limit == "out":
            return ("OUTPUT", "POSTROUTING", "FORWARD")
        return None

    def save(self) -> str:
        parts = ["-m addrtype"]
        if self.src:
            parts.append(f"{_neg(self.src_inv)}--src-type {_types_text(self.src)}")
        if self.dst:
            parts.append(f"{_neg(self.dst_inv)}--dst-type {_types_text(self.dst)}")
        if self.limit:
            parts.append(f"--limit-iface-{self.limit}")
        return " ".join(parts)

    def _iface(self, pkt):
        return {"in": pkt.in_iface, "out": pkt.out_iface}.get(self.limit)

    def _ok(self, addr, bits, inv, pkt, ctx) -> bool:
        if not bits:
            return True
        t = ctx.addr_type(addr, self._iface(pkt) if self.limit else None)
        return bool(bits & (1 << ADDR_TYPES.index(t))) != inv

    def matches(self, pkt, ctx) -> bool:
        return (self._ok(pkt.src, self.src, self.src_inv, pkt, ctx)
                and self._ok(pkt.dst, self.dst, self.dst_inv, pkt, ctx))

    def why_not(self, pkt, ctx) -> str:
        for which, addr, bits, inv in (("source", pkt.src, self.src, self.src_inv),
                                       ("destination", pkt.dst, self.dst, self.dst_inv)):
            if not self._ok(addr, bits, inv, pkt, ctx):
                t = ctx.addr_type(addr, self._iface(pkt) if self.limit else None)
                return f"{which} {addr} is {t}, rule wants {_neg(inv)}{_types_text(bits)}"
        return "addrtype does not match"


# ==========================================================================
# conntrack

CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
CT_STATUS = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")


#: The order in which libxt_conntrack tries the names (the first one a prefix fits wins).
_KERNEL_ORDER = {
    CT_STATES: ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT"),
}


def _state_bits(text: str, names, what: str) -> int:
    return _prefix_list(text, names, f"conntrack: bad {what}", first=("NONE",) if what == "ctstatus" else ())


@register
@dataclass(frozen=True)
class Conntrack(Match):
    """Tests on the packet's connection-tracking entry (`xt_conntrack`).

    `fields` holds the options in the kernel's save order, each as
    (option, value, invert).
    """

    fields: tuple = ()

    name: ClassVar[str] = "conntrack"
    OPTIONS: ClassVar[dict] = dict({n: (1, True) for n in (
        "ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst",
        "ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport",
        "ctstatus", "ctexpire")}, ctdir=(1, False))
    ORDER: ClassVar[tuple] = tuple(OPTIONS)
    stateful: ClassVar[bool] = True
    needs_conntrack: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("conntrack: at least one option is required")
        _single(opts, "conntrack")
        vals = {}
        for o in opts:
            n, v = o.name, o.value
            if n == "ctstate":
                val = _state_bits(v, CT_STATES, "ctstate")
            elif n == "ctstatus":
                val = _state_bits(v, CT_STATUS, "ctstatus")
            elif n == "ctproto":
                val = parse_proto(v)
            elif n in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
                val = parse_addr_mask(v, ctx.family)
            elif n.endswith("port"):
                val = parse_port_range(v, allow_reversed=True)
            elif n == "ctexpire":
                a, colon, b = v.partition(":")
                lo = parse_uint(a, 32, "--ctexpire")
                hi = parse_uint(b, 32, "--ctexpire") if colon else lo
                val = (lo, hi)
            else:  # ctdir
                if v.upper() not in ("ORIGINAL", "REPLY"):
                    raise OptionError(f"conntrack: bad --ctdir {v!r} (ORIGINAL or REPLY)")
                val = v.upper()
            vals[n] = (val, o.invert)
        return cls(tuple((n, *vals[n]) for n in cls.ORDER if n in vals))

    @staticmethod
    def _text(n, val) -> str:
        if n == "ctstate":
            return ",".join(s for i, s in enumerate(CT_STATES) if val & (1 << i))
        if n == "ctstatus":
            return ",".join(s for i, s in enumerate(CT_STATUS) if val & (1 << i)) or "NONE"
        if n == "ctproto":
            return str(val)
        if isinstance(val, AddrMask):
            return val.short()
        if isinstance(val, tuple):
            return port_range_text(*val)
        return str(val)

    def save(self) -> str:
        return " ".join(["-m conntrack"] + [f"{_neg(inv)}--{n} {self._text(n, v)}" for n, v, inv in self.fields])

    def _fail(self, pkt, ctx):
        """The first option that fails, with what the entry has, or None.

        As the kernel's conntrack_mt(): the state test first; then, for a
        packet with no entry (not tracked yet, as in the raw table, or
        invalid), the match holds exactly when a --ctstate test was given
        (and passed) -- the other options are not looked at."""
        ct = ctx.conntrack_view(pkt)
        state = next((f for f in self.fields if f[0] == "ctstate"), None)
        if state is not None:
            _, val, inv = state
            if bool(ct.state_bits() & val) == inv:
                return "ctstate", val, inv, ct.state_text()
        if ct.entry is None:
            if state is not None:
                return None
            n, val, inv = self.fields[0]
            return n, val, inv, "no conntrack entry"
        for n, val, inv in self.fields:
            if n == "ctstate":
                continue
            got, ok = ct.field(n)
            if n == "ctstatus":
                hit = bool(got & val)        # any listed bit; NONE (no bit) never holds
            elif n == "ctproto":
                hit = got == val
            elif isinstance(val, AddrMask):
                hit = val.contains(ip(got))
            elif n == "ctdir":
                hit = got == val
            else:
                hit = got is not None and val[0] <= got <= val[1]
            if hit == inv:
                return n, val, inv, got
        return None

    def matches(self, pkt, ctx) -> bool:
        return self._fail(pkt, ctx) is None

    def why_not(self, pkt, ctx) -> str:
        f = self._fail(pkt, ctx)
        if f is None:
            return "conntrack matches"
        n, val, inv, got = f
        if n == "ctstatus" and isinstance(got, int):
            got = self._text(n, got)
        return f"{n} is {got}, rule wants {_neg(inv)}{self._text(n, val)}"


# ==========================================================================
# recent

@register
@dataclass(frozen=True)
class Recent(Match):
    """Lists of recently seen addresses (`xt_recent`), shared by name on a node."""

    command: str = "set"           # set, rcheck, update, remove
    invert: bool = False
    seconds: int = 0
    reap: bool = False
    hitcount: int = 0
    rttl: bool = False
    list_name: str = "DEFAULT"
    mask: AddrMask | None = None
    side: str = "rsource"

    name: ClassVar[str] = "recent"
    OPTIONS: ClassVar[dict] = {"set": (0, True), "rcheck": (0, True), "update": (0, True),
                               "remove": (0, True), "seconds": (1, False), "reap": (0, False),
                               "hitcount": (1, False), "rttl": (0, False), "name": (1, False),
                               "mask": (1, False), "rsource": (0, False), "rdest": (0, False)}
    stateful: ClassVar[bool] = True
    COMMANDS: ClassVar[tuple] = ("set", "rcheck", "update", "remove")

    @classmethod
    def from_options(cls, opts, ctx):
        kw = {}
        cmds = [o for o in opts if o.name in cls.COMMANDS]
        if len(cmds) > 1:
            raise OptionError(f"recent: option \"--{cmds[1].name}\" cannot be used together with \"--{cmds[0].name}\"")
        if not cmds:
            raise OptionError("recent: you must specify one of --set, --rcheck, --update or --remove")
        kw["command"], kw["invert"] = cmds[0].name, cmds[0].invert
        for o in opts:
            if o.name == "seconds":
                kw["seconds"] = parse_uint(o.value, 32, "--seconds")
            elif o.name == "hitcount":
                kw["hitcount"] = parse_uint(o.value, 32, "--hitcount")
            elif o.name in ("reap", "rttl"):
                kw[o.name] = True
            elif o.name == "name":
                name = o.value[:199]                   # iptables keeps 199 characters
                if not name:
                    raise OptionError("recent: --name must not be empty")
                if "/" in name or name in (".", ".."):
                    # xt_recent names a file after the list (/proc/net/xt_recent/NAME)
                    raise OptionError(f"recent: --name {name!r} is not a valid file name (no \"/\", not . or ..): "
                                      "the kernel refuses it (Invalid argument)")
                kw["list_name"] = name
            elif o.name == "mask":
                m = parse_addr_mask(o.value, ctx.family)
                kw["mask"] = AddrMask(ctx.family, m.addr, m.addr)
            elif o.name in ("rsource", "rdest"):
                kw["side"] = o.name
        if kw.get("rttl") and kw["command"] in ("set", "remove"):
            raise OptionError(f"recent: option \"--rttl\" cannot be used together with \"--{kw['command']}\"")
        if kw.get("reap") and not kw.get("seconds"):
            raise OptionError("recent: --reap needs --seconds")
        if (kw.get("seconds") or kw.get("hitcount")) and kw["command"] in ("set", "remove"):
            raise OptionError(f"recent: --seconds and --hitcount go with --rcheck or --update, not --{kw['command']}")
        # The kernel keeps at most 65535 stamps per address (xt_recent).
        if kw.get("hitcount", 0) > 65535:
            raise OptionError("recent: hitcount is larger than the kernel's maximum (65535)", )
        if "mask" not in kw:
            full = (1 << (32 if ctx.family == 4 else 128)) - 1
            kw["mask"] = AddrMask(ctx.family, full, full)
        return cls(**kw)

    def save(self) -> str:
        parts = ["-m recent", f"{_neg(self.invert)}--{self.command}"]
        if self.seconds:
            parts.append(f"--seconds {self.seconds}")
        if self.reap:
            parts.append("--reap")
        if self.hitcount:
            parts.append(f"--hitcount {self.hitcount}")
        if self.rttl:
            parts.append("--rttl")
        parts.append(f"--name {save_string(self.list_name)}")
        parts.append(f"--mask {self.mask.address_text()}")
        parts.append(f"--{self.side}")
        return " ".join(parts)

    def matches(self, pkt, ctx) -> bool:
        return ctx.recent(self, pkt)

    def why_not(self, pkt, ctx) -> str:
        addr = pkt.src if self.side == "rsource" else pkt.dst
        if self.command in ("rcheck", "update"):
            need = f" {self.hitcount} times" if self.hitcount else ""
            within = f" within {self.seconds} s" if self.seconds else ""
            return (f"{addr} is {'in' if self.invert else 'not in'} list {self.list_name}{need}{within}")
        return f"{addr} {'was' if self.invert else 'was not'} in list {self.list_name}"


# ==========================================================================
# state: the old name of conntrack --ctstate

#: The names `--state` knows, in the order libxt_conntrack's state_parse_state() tries them
#: (a case-insensitive prefix picks the first name it fits: "E" is ESTABLISHED).
STATE_NAMES = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED")


def _state_list(text: str) -> int:
    """`--state LIST` as libxt_conntrack's state_parse_states() reads it (CT_STATES bits)."""
    bits = 0
    arg = text
    while "," in arg:
        item, _, rest = arg.partition(",")
        if not item or not _state_item(item):
            raise OptionError(f"state: bad state \"{arg}\" (INVALID, NEW, ESTABLISHED, RELATED or UNTRACKED)")
        bits |= _state_item(item)
        arg = rest
    if not arg:
        raise OptionError("state: \"--state\" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED")
    got = _state_item(arg)
    if not got:
        raise OptionError(f"state: bad state \"{arg}\" (INVALID, NEW, ESTABLISHED, RELATED or UNTRACKED)")
    return bits | got


def _state_item(item: str) -> int:
    want = item.upper()
    for name in STATE_NAMES:
        if name.startswith(want):
            return 1 << CT_STATES.index(name)
    return 0


@register
@dataclass(frozen=True)
class State(Conntrack):
    """`-m state --state LIST`: iptables loads it as conntrack's state test (the
    kernel's xt_conntrack, flagged as the `state` alias), and iptables-save
    (1.8.9, nf_tables) prints it back as `-m state --state`, not as
    `-m conntrack --ctstate` (seen on this machine). Same semantics as
    `--ctstate`, without the SNAT and DNAT pseudo-states."""

    name: ClassVar[str] = "state"
    OPTIONS: ClassVar[dict] = {"state": (1, True)}
    ORDER: ClassVar[tuple] = ("state",)

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("state: option \"--state\" must be specified")
        o = opts[0]
        return cls((("ctstate", _state_list(o.value), o.invert),))

    def save(self) -> str:
        _, val, inv = self.fields[0]
        return f"-m state {_neg(inv)}--state {self._text('ctstate', val)}"

    def why_not(self, pkt, ctx) -> str:
        _, val, inv = self.fields[0]
        ct = ctx.conntrack_view(pkt)
        return f"state is {ct.state or 'INVALID'}, rule wants {_neg(inv)}{self._text('ctstate', val)}"


# ==========================================================================
# limit: a token bucket per rule

#: libxt_limit's units: the rate is kept as the time per packet in 1/10000 s (XT_LIMIT_SCALE).
LIMIT_SCALE = 10000
_RATE_UNITS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
#: print_rate()'s table (and add_nft_limit()'s), longest period first.
_PRINT_UNITS = (("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1))
_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _atoi(text: str) -> int:
    """C's atoi() as a uint32_t: leading blanks, a sign, digits; 0 without digits
    (strtol saturates, the cast keeps the low 32 bits)."""
    m = _ATOI.match(text)
    if m is None:
        return 0
    v = max(-(1 << 63), min((1 << 63) - 1, int(m.group(1))))
    return v & 0xFFFFFFFF


def _parse_rate(text: str) -> int:
    """libxt_limit's parse_rate(): `N[/second|minute|hour|day]` (any case-insensitive
    prefix of the unit) as the time per packet in 1/10000 s."""
    _, slash, unit = text.partition("/")
    mult = 1
    if slash:
        for name, m in _RATE_UNITS:
            if unit and name.startswith(unit.lower()):
                mult = m
                break
        else:
            raise OptionError(f"limit: bad rate \"{text}\" (N/second, N/minute, N/hour or N/day)")
    r = _atoi(text)
    if r == 0:
        raise OptionError(f"limit: bad rate \"{text}\" (N/second, N/minute, N/hour or N/day)")
    avg = LIMIT_SCALE * mult // r
    if avg == 0:
        raise OptionError(f"limit: rate too fast \"{text}\" (at most 10000/second)")
    return avg


def _unit_index(avg: int) -> int:
    """The loop print_rate() and add_nft_limit() share: the longest period that still
    divides into a whole number of packets "well enough"."""
    i = 1
    while i < len(_PRINT_UNITS):
        mult = _PRINT_UNITS[i][1] * LIMIT_SCALE
        if avg > mult or mult // avg < mult % avg:
            break
        i += 1
    return i - 1


@register
@dataclass(frozen=True)
class Limit(Match):
    """`-m limit --limit N/unit --limit-burst B`: a token bucket per rule.

    iptables 1.8.9 (nf_tables) does not load xt_limit: it writes an nft `limit`
    expression of `rate` packets per `unit` seconds (add_nft_limit()), and that
    is what the kernel runs (nft_limit): a bucket holding `burst` packets' worth
    of time, full when the rule is loaded, refilled continuously (one second per
    second, capped at `burst` packets); a packet matches when a whole packet's
    worth (`unit / rate` seconds) is in it, and takes it out; a packet that
    does not match takes nothing. So the first `burst` packets match at once,
    then one per `unit / rate` seconds. kplab runs it on the node's clock
    (a ManualClock moves only with `advance`), in nanoseconds as the kernel.
    `--limit-burst 0` becomes nft's default of 5; iptables-save prints the
    rate read back from nft (`60/min` is saved as `1/sec`).
    """

    rate: int = 3
    unit: int = 3600
    burst: int = 5

    name: ClassVar[str] = "limit"
    OPTIONS: ClassVar[dict] = {"limit": (1, False), "limit-burst": (1, False)}
    stateful: ClassVar[bool] = True
    per_rule_state: ClassVar[bool] = True        # one bucket per rule, never shared

    @classmethod
    def from_options(cls, opts, ctx):
        avg = _parse_rate("3/hour")
        burst = 5
        for o in opts:
            if o.name == "limit":
                avg = _parse_rate(o.value)
            else:
                n = strtoui(o.value)
                if n is None or n > 10000:
                    raise OptionError(f"limit: bad value for option \"--limit-burst\" {o.value!r}, or out of "
                                      "range (0-10000)")
                burst = n or 5                   # nft_limit: a burst of 0 means its default, 5
        i = _unit_index(avg)
        mult = _PRINT_UNITS[i][1] * LIMIT_SCALE
        return cls(mult // avg, _PRINT_UNITS[i][1], burst)

    @property
    def cost_ns(self) -> int:
        """One packet's worth of time, in nanoseconds (nft_limit's cost)."""
        return self.unit * 1_000_000_000 // self.rate

    def _rate_text(self) -> str:
        avg = LIMIT_SCALE * self.unit // self.rate     # nft_parse_limit()
        name, secs = _PRINT_UNITS[_unit_index(avg)]
        return f"{secs * LIMIT_SCALE // avg}/{name}"

    def save(self) -> str:
        s = f"-m limit --limit {self._rate_text()}"
        return s + (f" --limit-burst {self.burst}" if self.burst != 5 else "")

    def matches(self, pkt, ctx) -> bool:
        return ctx.limit_match(self)

    def why_not(self, pkt, ctx) -> str:
        wait = ctx.limit_wait(self)
        return (f"over the rate limit of {self._rate_text()} (burst {self.burst}): the bucket is empty, the next "
                f"packet passes in {wait:.3g} s")

    def describe(self) -> str:
        return f"at most {self._rate_text()}, bursts of {self.burst}"


# ==========================================================================
# connmark: the connection's mark

FULL_MARK = 0xFFFFFFFF


@register
@dataclass(frozen=True)
class Connmark(Match):
    """`-m connmark --mark VALUE[/MASK]`: `(conntrack mark & MASK) == VALUE`.

    As xt_connmark: a packet without a conntrack entry (not tracked yet, as in
    the raw table, or invalid) never matches, not even with `!`."""

    value: int = 0
    mask: int = FULL_MARK
    invert: bool = False

    name: ClassVar[str] = "connmark"
    OPTIONS: ClassVar[dict] = {"mark": (1, True)}
    stateful: ClassVar[bool] = True
    needs_conntrack: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("connmark: option \"--mark\" must be specified")
        v, m = parse_mark(opts[0].value)
        return cls(v, FULL_MARK if m is None else m, opts[0].invert)

    def _text(self) -> str:
        return f"{self.value:#x}" if self.mask == FULL_MARK else f"{self.value:#x}/{self.mask:#x}"

    def save(self) -> str:
        return f"-m connmark {_neg(self.invert)}--mark {self._text()}"

    def matches(self, pkt, ctx) -> bool:
        e = ctx.conntrack_view(pkt).entry
        if e is None:
            return False
        return ((e.mark & self.mask) == self.value) != self.invert

    def why_not(self, pkt, ctx) -> str:
        e = ctx.conntrack_view(pkt).entry
        if e is None:
            return ("the packet has no conntrack entry (not tracked yet, or invalid): -m connmark never matches "
                    "it, not even negated")
        return f"connection mark is {e.mark:#x}, rule wants {_neg(self.invert)}{self._text()}"


# ==========================================================================
# physdev: bridge ports

#: physdev's options in the order iptables-save prints them.
PHYSDEV_ORDER = ("physdev-is-in", "physdev-in", "physdev-is-out", "physdev-out", "physdev-is-bridged")


@register
@dataclass(frozen=True)
class Physdev(Match):
    """`-m physdev`: the bridge ports of a bridged packet.

    kplab's node routes; it bridges nothing. For a packet that did not cross a
    bridge the kernel's physdev_mt() matches exactly when every option the rule
    gives is negated (`! --physdev-is-bridged` matches every routed packet,
    `--physdev-in X` none). `fields` are (option, interface or None, negated),
    in the saved order.
    """

    fields: tuple = ()

    name: ClassVar[str] = "physdev"
    OPTIONS: ClassVar[dict] = {"physdev-in": (1, True), "physdev-out": (1, True), "physdev-is-in": (0, True),
                               "physdev-is-out": (0, True), "physdev-is-bridged": (0, True)}

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("physdev: no physdev option specified")
        got = {}
        for o in opts:
            val = None
            if o.name in ("physdev-in", "physdev-out"):
                val = o.value
                if len(val.encode()) >= 16:
                    raise OptionError(f"physdev: interface name {val!r} must be shorter than IFNAMSIZ (15)")
            got[o.name] = (val, o.invert)
        return cls(tuple((n, *got[n]) for n in PHYSDEV_ORDER if n in got))

    def _given(self, name):
        return next((f for f in self.fields if f[0] == name), None)

    #: The check depends on the chain, so the parser never reuses one rule's object for another.
    checks_chain: ClassVar[bool] = True

    def check(self, ctx):
        """xt_physdev's check: --physdev-out and --physdev-is-out, unless with a plain
        --physdev-is-bridged, are refused in OUTPUT ("only supported in the FORWARD and
        POSTROUTING chains with bridged traffic"). Through nf_tables the check sees the
        hook only in the built-in chain itself: the same rule in a user chain that OUTPUT
        jumps to loads (seen on this machine)."""
        bridged = self._given("physdev-is-bridged")
        out = self._given("physdev-out") or self._given("physdev-is-out")
        if ctx.chain == "OUTPUT" and out and (bridged is None or bridged[2]):
            raise OptionError(f"physdev: --{out[0]} is refused in OUTPUT unless with --physdev-is-bridged "
                              "(the kernel: \"only supported in the FORWARD and POSTROUTING chains with bridged "
                              "traffic\", Invalid argument)")

    def save(self) -> str:
        parts = ["-m physdev"]
        for n, val, inv in self.fields:
            parts.append(f"{_neg(inv)}--{n}" + (f" {val}" if val is not None else ""))
        return " ".join(parts)

    def matches(self, pkt, ctx) -> bool:
        return all(inv for _, _, inv in self.fields)

    def why_not(self, pkt, ctx) -> str:
        n, val, _ = next(f for f in self.fields if not f[2])
        what = f"--{n}" + (f" {val}" if val is not None else "")
        return (f"the packet was routed, not bridged (kplab's node has no bridge): {what} only matches a "
                "bridged packet")


# ==========================================================================
# owner: the socket that sent a locally created packet

#: The owner of every packet the node itself creates: kplab has no processes, so its
#: packets are taken to come from a socket of root's (uid 0, gid 0, no supplementary
#: groups), as the kernel harness's own packets do (and node agents such as kubelet
#: and kube-proxy run as root).
NODE_SOCKET_OWNER = (0, 0, ())

_UID_NUM = re.compile(r"[ \t\n\v\f\r]*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
UID_MAX = 0xFFFFFFFF - 1           # (uid_t)-1 is reserved


def _owner_range(text: str, opt: str, lookup) -> tuple:
    """libxt_owner: a user (group) name first, else `N` or `N-M` / `N:M`, numbers up to
    4294967294 read as strtoul base 0 reads them."""
    if lookup is not None and text:
        try:
            n = lookup(text)
            return n, n
        except (KeyError, OverflowError, ValueError):
            pass

    def num(s):
        m = _UID_NUM.match(s)
        if m is None:
            return None, s
        g = m.group(1)
        v = int(g[2:], 16) if g[1:2] in ("x", "X") else int(g, 8) if g[0] == "0" else int(g)
        return (v if v <= UID_MAX else None), s[m.end():]

    bad = OptionError(f"owner: bad value for \"--{opt}\" option: \"{text}\" (a name, N or N-M, "
                      f"numbers up to {UID_MAX})")
    lo, rest = num(text)
    if lo is None:
        raise bad
    hi = lo
    if rest[:1] in ("-", ":"):
        hi, rest = num(rest[1:])
        if hi is None:
            raise bad
    if rest:
        raise bad
    if hi < lo:
        raise OptionError(f"owner: --{opt} {text}: the range ends below its start; the kernel refuses it "
                          "(Invalid argument)")
    return lo, hi


def _user_lookup():
    try:
        import pwd
        return lambda name: pwd.getpwnam(name).pw_uid
    except ImportError:                      # not on Unix: "root" is still 0
        return lambda name: {"root": 0}[name]


def _group_lookup():
    try:
        import grp
        return lambda name: grp.getgrnam(name).gr_gid
    except ImportError:
        return lambda name: {"root": 0}[name]


@register
@dataclass(frozen=True)
class Owner(Match):
    """`-m owner`: who owns the socket a locally created packet was sent from.

    Valid only in OUTPUT and POSTROUTING (the kernel refuses the rule anywhere
    else, user chains reached from there included). A packet without a socket
    (every forwarded packet) matches exactly when every option is negated, as
    in owner_mt(). kplab's node has no processes: the packets it creates come
    from a socket of NODE_SOCKET_OWNER (root). User and group names are looked
    up on the machine kplab runs on, as iptables looks them up on the node.
    """

    uid: tuple | None = None
    uid_inv: bool = False
    gid: tuple | None = None
    gid_inv: bool = False
    suppl: bool = False
    socket: bool = False
    socket_inv: bool = False

    name: ClassVar[str] = "owner"
    OPTIONS: ClassVar[dict] = {"uid-owner": (1, True), "gid-owner": (1, True), "suppl-groups": (0, False),
                               "socket-exists": (0, True)}
    stateful: ClassVar[bool] = False

    @classmethod
    def from_options(cls, opts, ctx):
        kw = {}
        for o in opts:
            if o.name == "uid-owner":
                kw.update(uid=_owner_range(o.value, o.name, _user_lookup()), uid_inv=o.invert)
            elif o.name == "gid-owner":
                kw.update(gid=_owner_range(o.value, o.name, _group_lookup()), gid_inv=o.invert)
            elif o.name == "suppl-groups":
                if "gid" not in kw:
                    raise OptionError("owner: --suppl-groups: you need to use --gid-owner first")
                kw["suppl"] = True
            else:
                kw.update(socket=True, socket_inv=o.invert)
        if not kw:
            raise OptionError("owner: at least one of --uid-owner, --gid-owner or --socket-exists is required")
        return cls(**kw)

    def allowed_hooks(self):
        return ("OUTPUT", "POSTROUTING")

    hook_text = "-m owner"

    @staticmethod
    def _range_text(r) -> str:
        return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"

    def save(self) -> str:
        parts = ["-m owner"]
        if self.socket:
            parts.append(f"{_neg(self.socket_inv)}--socket-exists")
        if self.uid is not None:
            parts.append(f"{_neg(self.uid_inv)}--uid-owner {self._range_text(self.uid)}")
        if self.gid is not None:
            parts.append(f"{_neg(self.gid_inv)}--gid-owner {self._range_text(self.gid)}")
        if self.suppl:
            parts.append("--suppl-groups")
        return " ".join(parts)

    def _fail(self, owner):
        """Why the match fails for a socket owned by `owner` (None: no socket), or None."""
        if owner is None:
            given = [(self.socket, self.socket_inv, "--socket-exists"),
                     (self.uid is not None, self.uid_inv, "--uid-owner"),
                     (self.gid is not None, self.gid_inv, "--gid-owner"), (self.suppl, False, "--suppl-groups")]
            plain = [what for on, inv, what in given if on and not inv]
            if plain:
                return (f"the packet has no socket (it was not created on this node): {plain[0]} only matches a "
                        "packet the node sent")
            return None
        uid, gid, groups = owner
        if self.socket and self.socket_inv:
            return "the packet has a socket (the node created it), rule wants ! --socket-exists"
        if self.uid is not None and (self.uid[0] <= uid <= self.uid[1]) == self.uid_inv:
            return (f"the packet's socket belongs to uid {uid} (kplab: the node's own packets are root's), rule wants "
                    f"{_neg(self.uid_inv)}{self._range_text(self.uid)}")
        if self.gid is not None:
            ok = self.gid[0] <= gid <= self.gid[1] or (self.suppl and any(
                self.gid[0] <= g <= self.gid[1] for g in groups))
            if ok == self.gid_inv:
                return (f"the packet's socket belongs to gid {gid} (kplab: the node's own packets are root's), rule "
                        f"wants {_neg(self.gid_inv)}{self._range_text(self.gid)}")
        return None

    def matches(self, pkt, ctx) -> bool:
        return self._fail(ctx.socket_owner(pkt)) is None

    def why_not(self, pkt, ctx) -> str:
        return self._fail(ctx.socket_owner(pkt)) or "owner matches"


# ==========================================================================
# Opaque: a module kplab does not model

@dataclass(frozen=True)
class OpaqueMatch(Match):
    """A `-m` module kplab does not model, kept as written.

    It loads so that a real node's dump can be traced, but a walk that
    reaches it cannot decide it alone: see `assume_unsupported`.
    """

    module: str = ""
    args: tuple = ()
    supported: ClassVar[bool] = False

    @property
    def name(self):  # type: ignore[override]
        return self.module

    def save(self) -> str:
        return " ".join((f"-m {self.module}",) + self.args)

    def matches(self, pkt, ctx) -> bool:
        return ctx.assume_opaque(self)

    def why_not(self, pkt, ctx) -> str:
        return f"-m {self.module} is not modelled; assumed not to match"
