"""The small value types of iptables rules: addresses with masks, port ranges,
marks, protocol and service names, and iptables' own quoting.

Each parser raises `OptionError` with a sentence that says what was wanted;
the rule parser adds the file and line. Each value prints itself in the form
`iptables-save` (nf_tables backend, iptables 1.8.9) prints it.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from ..packet import PROTO_NAMES, PROTO_NUMBERS


class OptionError(ValueError):
    """A bad option value; the parser turns it into a located ParseError."""


# --------------------------------------------------------------------------
# Addresses

@dataclass(frozen=True)
class AddrMask:
    """An address with a mask, as `-s`, `-d` and conntrack's `--ctorigsrc` hold it.

    The kernel keeps the address with its host bits cleared. `dotted` keeps
    the text form of a non-contiguous IPv4 mask, which iptables prints dotted.
    """

    version: int
    addr: int
    mask: int

    @property
    def bits(self) -> int:
        return 32 if self.version == 4 else 128

    @property
    def prefixlen(self) -> int | None:
        """The prefix length, or None for a non-contiguous mask."""
        full = (1 << self.bits) - 1
        inv = full ^ self.mask
        if inv & (inv + 1):
            return None
        return self.bits - inv.bit_length()

    def contains(self, address) -> bool:
        if address.version != self.version:
            return False
        return (int(address) & self.mask) == self.addr

    def address_text(self) -> str:
        cls = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        return str(cls(self.addr))

    def mask_text(self) -> str:
        """`/N`, or a dotted mask when it is not contiguous."""
        n = self.prefixlen
        if n is not None:
            return f"/{n}"
        cls = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        return "/" + str(cls(self.mask))

    def __str__(self) -> str:
        """Saved form of `-s`/`-d`: always with a mask."""
        return self.address_text() + self.mask_text()

    def short(self) -> str:
        """Saved form of conntrack's address options: no mask for a host."""
        return self.address_text() + ("" if self.prefixlen == self.bits else self.mask_text())

    @property
    def is_any(self) -> bool:
        return self.mask == 0


def _fast_v4(text: str):
    """Plain `a.b.c.d[/n]`, the common case, without the ipaddress module."""
    addr, slash, n = text.partition("/")
    parts = addr.split(".")
    if len(parts) != 4:
        return None
    v = 0
    for p in parts:
        if not p.isdigit() or len(p) > 3 or (len(p) > 1 and p[0] == "0"):
            return None
        b = int(p)
        if b > 255:
            return None
        v = (v << 8) | b
    if not slash:
        return AddrMask(4, v, 0xFFFFFFFF)
    if not n.isdigit() or len(n) > 2 or int(n) > 32:
        return None
    k = int(n)
    mask = (0xFFFFFFFF << (32 - k)) & 0xFFFFFFFF if k else 0
    return AddrMask(4, v & mask, mask)


@lru_cache(maxsize=65536)
def parse_addr_mask(text: str, family: int = 4) -> AddrMask:
    """`ADDRESS[/PREFIX|/DOTTED-MASK]`, the syntax of `-s`, `-d` and `--ctorigsrc`.

    Host names are refused: iptables would look them up in DNS, which a
    simulator must not do.
    """
    if family == 4:
        fast = _fast_v4(text)
        if fast is not None:
            return fast
    if not text:
        raise OptionError("empty address")
    addr_text, _, mask_text = text.partition("/")
    try:
        a = ipaddress.ip_address(addr_text)
    except ValueError:
        raise OptionError(f"{addr_text!r} is not an IPv{family} address"
                          + (" (host names are not resolved; write the address)" if any(c.isalpha() for c in addr_text) and ":" not in addr_text else "")) from None
    if a.version != family:
        raise OptionError(f"{addr_text!r} is an IPv{a.version} address in an IPv{family} rule")
    bits = 32 if family == 4 else 128
    full = (1 << bits) - 1
    if not mask_text and "/" not in text:
        mask = full
    elif mask_text.isdigit():
        n = int(mask_text)
        if n > bits:
            raise OptionError(f"invalid mask /{mask_text} (at most /{bits})")
        mask = (full << (bits - n)) & full if n else 0
    else:
        try:
            m = ipaddress.ip_address(mask_text)
            if m.version != family:
                raise ValueError
        except ValueError:
            raise OptionError(f"invalid mask {'/' + mask_text!r}") from None
        mask = int(m)
    return AddrMask(family, int(a) & mask, mask)


def parse_address(text: str, family: int = 4):
    """A single address (no mask)."""
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise OptionError(f"{text!r} is not an IP address") from None
    if a.version != family:
        raise OptionError(f"{text!r} is an IPv{a.version} address in an IPv{family} rule")
    return a


# --------------------------------------------------------------------------
# Ports and services

#: Service names iptables resolves through /etc/services (a common subset).
SERVICES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "time": 37, "domain": 53,
    "tftp": 69, "gopher": 70, "finger": 79, "http": 80, "www": 80, "kerberos": 88, "pop3": 110,
    "sunrpc": 111, "auth": 113, "ntp": 123, "netbios-ns": 137, "netbios-dgm": 138,
    "netbios-ssn": 139, "imap": 143, "imap2": 143, "snmp": 161, "snmp-trap": 162, "bgp": 179,
    "ldap": 389, "https": 443, "microsoft-ds": 445, "syslog": 514, "submission": 587,
    "ldaps": 636, "rsync": 873, "imaps": 993, "pop3s": 995, "openvpn": 1194, "mysql": 3306,
    "postgresql": 5432, "echo": 7, "discard": 9, "daytime": 13, "chargen": 19,
    "bootps": 67, "bootpc": 68, "isakmp": 500, "nfs": 2049, "x11": 6000,
}


def parse_port(text: str, wrap: bool = False) -> int:
    """A port number (0-65535) or a service name.

    `wrap`: iptables 1.8.9's udp match keeps only the low 16 bits of a
    larger number (`--dport 70000` loads as 4464); everything else refuses it.
    """
    if text.isdigit():
        n = int(text)
        if n > 65535:
            if wrap and n < 1 << 32:
                return n & 0xFFFF
            raise OptionError(f"port {text} is out of range (0-65535)")
        return n
    if text in SERVICES:
        return SERVICES[text]
    raise OptionError(f"invalid port/service {text!r}")


def parse_port_range(text: str, sep: str = ":", allow_reversed: bool = False,
                     wrap: bool = False) -> tuple[int, int]:
    """`PORT`, `LOW:HIGH`, `LOW:` (to 65535), `:HIGH` (from 0) or `:` (all)."""
    if sep in text:
        lo_text, _, hi_text = text.partition(sep)
        lo = parse_port(lo_text, wrap) if lo_text else 0
        hi = parse_port(hi_text, wrap) if hi_text else 65535
        if lo > hi and not allow_reversed:
            raise OptionError(f"invalid port range {text!r} (low > high)")
        return lo, hi
    p = parse_port(text, wrap)
    return p, p


def port_range_text(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}:{hi}"


def parse_proto(text: str) -> int:
    """`-p` value: a name (tcp, udp, ...) or a number; `all` is 0."""
    t = text.lower()
    if t.isdigit():
        n = int(t)
        if n > 255:
            raise OptionError(f"invalid protocol number {text}")
        return n
    if t in PROTO_NUMBERS:
        return PROTO_NUMBERS[t]
    raise OptionError(f"unknown protocol {text!r}")


def proto_text(num: int) -> str:
    return PROTO_NAMES.get(num, str(num))


# --------------------------------------------------------------------------
# Numbers

def parse_uint(text: str, bits: int = 32, what: str = "value") -> int:
    """An unsigned integer in decimal, hex (0x) or octal (0), as strtoul reads it."""
    t = text.strip()
    try:
        if t.lower().startswith("0x"):
            n = int(t[2:], 16)
        elif len(t) > 1 and t.startswith("0") and t.isdigit():
            n = int(t, 8)
        elif t.isdigit():
            n = int(t)
        else:
            raise ValueError
    except ValueError:
        raise OptionError(f"{what} {text!r} is not a number") from None
    if n >= 1 << bits:
        raise OptionError(f"{what} {text} is out of range (at most {(1 << bits) - 1})")
    return n


def parse_mark(text: str) -> tuple[int, int | None]:
    """`VALUE[/MASK]`, both 32-bit numbers."""
    v, slash, m = text.partition("/")
    value = parse_uint(v, 32, "mark")
    mask = parse_uint(m, 32, "mask") if slash else None
    return value, mask


# --------------------------------------------------------------------------
# Quoting

_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def save_string(value: str) -> str:
    """Quote a value the way iptables-save does (xtables_save_string).

    Plain words are printed as they are; anything else goes in double quotes
    with `"`, `\\` and `'` escaped by a backslash.
    """
    if value and all(c in _NO_QUOTE for c in value):
        return value
    out = []
    for c in value:
        if c in "\"\\'":
            out.append("\\")
        out.append(c)
    return '"' + "".join(out) + '"'
