"""The small value types of iptables rules: addresses with masks, port ranges,
marks, protocol and service names, and iptables' own quoting.

Each parser raises `OptionError` with a sentence that says what was wanted;
the rule parser adds the file and line. Each value prints itself in the form
`iptables-save` (nf_tables backend, iptables 1.8.9) prints it.
"""
from __future__ import annotations

import ipaddress
import re
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
    if not text.isascii():            # str.isdigit() takes "²" and other digits int() refuses
        return None
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


_UINT = re.compile(r"[ \t\n\v\f\r]*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def strtoui(text: str, limit: int | None = None) -> int | None:
    """`text` as xtables_strtoui(..., base 0) reads a whole argument: leading blanks and a
    "+" allowed, 0x for hex, a leading 0 for octal ("010" is 8, "08" is refused); None if it
    is not such a number or is above `limit`."""
    m = _UINT.match(text)
    if m is None:
        return None
    g = m.group(1)
    v = int(g[2:], 16) if g[1:2] in ("x", "X") else int(g, 8) if g[0] == "0" else int(g)
    return v if limit is None or v <= limit else None


def _numeric_v4(text: str, is_mask: bool = False) -> int | None:
    """libxtables' __numeric_to_ipaddr(): at most 19 characters are read, each byte is a
    base-0 number up to 255, and an address of fewer than four parts is completed with
    zero bytes ("10.244" is 10.244.0.0) -- not a mask."""
    p = text[:19]
    out = []
    for _ in range(3):
        dot = p.find(".")
        if dot < 0:
            if is_mask:
                return None
            b = strtoui(p, 255)
            if b is None:
                return None
            out.append(b)
            out += [0] * (4 - len(out))
            return (out[0] << 24) | (out[1] << 16) | (out[2] << 8) | out[3]
        b = strtoui(p[:dot], 255)
        if b is None:
            return None
        out.append(b)
        p = p[dot + 1:]
    b = strtoui(p, 255)
    if b is None:
        return None
    return (out[0] << 24) | (out[1] << 16) | (out[2] << 8) | b


_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def _inet_aton(text: str) -> int | None:
    """glibc's inet_aton (exact, as getaddrinfo uses it for a host name that is a number):
    `a`, `a.b`, `a.b.c` or `a.b.c.d`, each part decimal, 0x hex or 0 octal, the last one
    filling the bytes left ("167772161" and "10.1.257" are addresses)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    vals = []
    for part in parts:
        m = _ATON_PART.fullmatch(part)
        if m is None or part in ("0x", "0X"):
            return None
        vals.append(int(part[2:], 16) if part[1:2] in ("x", "X") else int(part, 8) if part[0] == "0" else int(part))
    *head, last = vals
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    v = 0
    for h in head:
        v = (v << 8) | h
    return (v << (8 * (4 - len(head)))) | last


def _v4_addr_mask(text: str) -> AddrMask:
    """`-s`/`-d` in an IPv4 rule as xtables_ipparse_multiple reads one address: the mask
    first (a dotted mask or a base-0 prefix length; /0 makes the address text irrelevant,
    as in "any/0"), then the address: iptables' numeric form, then what the resolver reads
    as a number. Host and network names are refused: kplab does not resolve names."""
    addr_text, slash, mask_text = text.partition("/")
    if slash:
        mask = _numeric_v4(mask_text, is_mask=True)
        if mask is None:
            bits = strtoui(mask_text, 32)
            if bits is None:
                raise OptionError(f"invalid mask {'/' + mask_text!r}"
                                  + (" (at most /32)" if strtoui(mask_text) is not None else
                                     " (write /N with N from 0 to 32, or a dotted mask such as /255.255.0.0)"))
            mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF if bits else 0
    else:
        mask = 0xFFFFFFFF
    if mask == 0:
        return AddrMask(4, 0, 0)
    if not addr_text:
        raise OptionError("empty address")
    a = _numeric_v4(addr_text)
    if a is None:
        a = _inet_aton(addr_text)
    if a is None:
        if ":" in addr_text:
            try:
                if ipaddress.ip_address(addr_text).version == 6:
                    raise OptionError(f"{addr_text!r} is an IPv6 address in an IPv4 rule")
            except ValueError:
                pass
        raise OptionError(f"{addr_text!r} is not an IPv4 address"
                          + (" (host names are not resolved; write the address)"
                             if any(c.isalpha() for c in addr_text) else
                             " (write four numbers from 0 to 255, a.b.c.d, and /N for a network)"))
    return AddrMask(4, a & mask, mask)


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
        return _v4_addr_mask(text)
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
    n = strtoui(text)
    if n is not None:
        if n > 65535:
            if wrap and n < 1 << 32:
                return n & 0xFFFF
            raise OptionError(f"port {text} is out of range (0-65535)")
        return n
    if text in SERVICES:
        return SERVICES[text]
    raise OptionError(f"invalid port/service {text!r} (a port is a number from 0 to 65535, or a service name "
                      "such as http)")


def parse_port_range(text: str, sep: str = ":", allow_reversed: bool = False,
                     wrap: bool = False) -> tuple[int, int]:
    """`PORT`, `LOW:HIGH`, `LOW:` (to 65535), `:HIGH` (from 0) or `:` (all)."""
    if sep in text:
        lo_text, _, hi_text = text.partition(sep)
        lo = parse_port(lo_text, wrap) if lo_text else 0
        hi = parse_port(hi_text, wrap) if hi_text else 65535
        if lo > hi and not allow_reversed:
            raise OptionError(f"invalid port range {text!r} (low > high: write the lower port first)")
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
    n = strtoui(text)
    if n is None:
        raise OptionError(f"{what} {text!r} is not a number")
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
