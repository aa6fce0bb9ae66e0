"""Targets: what a rule does when all its matches hold.

Terminating targets (ACCEPT, DROP, REJECT, RETURN, the NAT targets) end the
walk of this table at this hook; MARK and LOG act and let the walk go on. A
jump (`-j CHAIN`) and a goto (`-g CHAIN`) are targets too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ..packet import PORT_PROTOS
from .rules import Target
from .values import SERVICES, OptionError, parse_address, proto_text, parse_mark, parse_port, parse_uint, save_string

TARGETS: dict = {}


def register(cls):
    TARGETS[cls.name] = cls
    return cls


def _no_options(cls, opts):
    if opts:
        raise OptionError(f"{cls.name}: takes no options")


@dataclass(frozen=True)
class Standard(Target):
    """ACCEPT, DROP and RETURN: the verdicts built into every chain."""
    verdict: str = "ACCEPT"

    @property
    def name(self):  # type: ignore[override]
        return self.verdict

    def save(self) -> str:
        return f"-j {self.verdict}"

    def apply(self, pkt, ctx):
        return self.verdict, pkt


class _StandardFactory:
    OPTIONS: dict = {}
    ALIASES: dict = {}

    def __init__(self, verdict):
        self.name = verdict

    def from_options(self, opts, ctx):
        _no_options(self, opts)
        return Standard(self.name)


for _v in ("ACCEPT", "DROP", "RETURN"):
    TARGETS[_v] = _StandardFactory(_v)


@dataclass(frozen=True)
class Jump(Target):
    """`-j CHAIN` calls a user chain; its end (or RETURN) comes back here."""
    chain: str = ""
    name: ClassVar[str] = "jump"

    def save(self) -> str:
        return f"-j {self.chain}"

    def apply(self, pkt, ctx):
        return f"JUMP:{self.chain}", pkt


@dataclass(frozen=True)
class Goto(Target):
    """`-g CHAIN` continues in a user chain with no way back: its end returns
    to the chain that called the current one."""
    chain: str = ""
    name: ClassVar[str] = "goto"

    def save(self) -> str:
        return f"-g {self.chain}"

    def apply(self, pkt, ctx):
        return f"GOTO:{self.chain}", pkt


# --------------------------------------------------------------------------
# REJECT

#: REJECT's types with their aliases, in the order libipt_REJECT / libip6t_REJECT try them:
#: a case-insensitive prefix of a name or an alias picks the first entry it fits
#: ("icmp-p" is icmp-proto-unreachable, "port" port-unreachable).
REJECT_TYPES_V4 = {
    "icmp-net-unreachable": ("net-unreach",), "icmp-host-unreachable": ("host-unreach",),
    "icmp-proto-unreachable": ("proto-unreach",), "icmp-port-unreachable": ("port-unreach",),
    "icmp-net-prohibited": ("net-prohib",), "icmp-host-prohibited": ("host-prohib",),
    "tcp-reset": ("tcp-rst",), "icmp-admin-prohibited": ("admin-prohib",),
}
REJECT_TYPES_V6 = {
    "icmp6-no-route": ("no-route",), "icmp6-adm-prohibited": ("adm-prohibited",),
    "icmp6-addr-unreachable": ("addr-unreach",), "icmp6-port-unreachable": ("port-unreach",),
    "tcp-reset": ("tcp-rst",), "icmp6-policy-fail": ("policy-fail",), "icmp6-reject-route": ("reject-route",),
}


@register
@dataclass(frozen=True)
class Reject(Target):
    """Drop the packet and answer with an ICMP error or a TCP RST."""
    reject_with: str = "icmp-port-unreachable"

    name: ClassVar[str] = "REJECT"
    OPTIONS: ClassVar[dict] = {"reject-with": (1, False)}

    @classmethod
    def from_options(cls, opts, ctx):
        table = REJECT_TYPES_V4 if ctx.family == 4 else REJECT_TYPES_V6
        if not opts:
            return cls("icmp-port-unreachable" if ctx.family == 4 else "icmp6-port-unreachable")
        want = opts[-1].value.lower()
        for full, aliases in table.items():
            if full.startswith(want) or any(a.startswith(want) for a in aliases):
                return cls(full)
        raise OptionError(f"REJECT: unknown reject type {opts[-1].value!r} (one of {', '.join(table)})")

    def check(self, ctx):
        if self.reject_with == "tcp-reset" and ctx.proto_name() != "tcp":
            raise OptionError("REJECT: --reject-with tcp-reset needs \"-p tcp\"")

    def save(self) -> str:
        return f"-j REJECT --reject-with {self.reject_with}"

    def apply(self, pkt, ctx):
        return "REJECT", pkt


# --------------------------------------------------------------------------
# NAT

@dataclass(frozen=True)
class NatRange:
    """`[ADDR[-ADDR]][:PORT[-PORT][/BASE]]`: where DNAT/SNAT may map to."""

    min_addr: str | None = None
    max_addr: str | None = None
    min_port: int | None = None
    max_port: int | None = None
    base: int | None = None

    def __str__(self) -> str:
        s = ""
        if self.min_addr:
            a = f"[{self.min_addr}]" if ":" in self.min_addr and self.min_port is not None else self.min_addr
            s = a if self.max_addr in (None, self.min_addr) else f"{a}-{self.max_addr}"
        if self.min_port is not None:
            s += f":{self.min_port}"
            if self.max_port != self.min_port:
                s += f"-{self.max_port}"
            if self.base is not None:
                s += f"/{self.base}"
        return s


#: `A.B.C.D:PORT` as iptables-save prints it (no leading zeros, port 1-99999: checked <= 65535).
_PLAIN_V4_PORT = re.compile(r"((?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                            r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])):([1-9][0-9]{0,4})\Z")


def parse_nat_range(text: str, family: int, what: str) -> NatRange:
    if family == 4:
        # the common form (one endpoint of a kube-proxy dump), read without the ipaddress module:
        # the same NatRange as below, since such an address prints as it is written
        m = _PLAIN_V4_PORT.match(text)
        if m is not None:
            port = int(m.group(2))
            if port <= 65535:
                return NatRange(m.group(1), m.group(1), port, port)
    addr_text, port_text = text, None
    if family == 6 and text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise OptionError(f"{what}: invalid address {text!r}")
        addr_text, rest = text[1:close], text[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise OptionError(f"{what}: invalid {text!r}")
            port_text = rest[1:]
    elif family == 4 and ":" in text:
        addr_text, _, port_text = text.partition(":")
    kw = {}
    if addr_text:
        lo, dash, hi = addr_text.partition("-")
        kw["min_addr"] = str(parse_address(lo, family))
        kw["max_addr"] = str(parse_address(hi, family)) if dash else kw["min_addr"]
    if port_text is not None:
        ports, slash, base = port_text.partition("/")
        try:
            if ports in SERVICES:                    # "ftp-data" is one name
                kw["min_port"] = kw["max_port"] = SERVICES[ports]
            else:
                lo, dash, hi = ports.partition("-")
                if dash and not (lo.isdigit() and hi.isdigit()):
                    raise OptionError(ports)
                kw["min_port"] = parse_port(lo)
                kw["max_port"] = parse_port(hi) if dash else kw["min_port"]
        except OptionError:
            raise OptionError(f"{what}: port {ports!r} not valid (a port is a number from 0 to 65535)") from None
        if kw["min_port"] > kw["max_port"]:
            raise OptionError(f"{what}: invalid port range {port_text!r} (low > high)")
        if slash:
            b = parse_port(base)
            if not 1 <= b <= 65535:
                raise OptionError(f"{what}: invalid base port {base!r} (1-65535)")
            kw["base"] = b
    if not kw:
        raise OptionError(f"{what}: empty range")
    return NatRange(**kw)


def _port_proto(ctx) -> bool:
    """A protocol with ports was named; `! -p tcp` counts too (it loads)."""
    return ctx.proto != 0 and proto_text(ctx.proto) in PORT_PROTOS


def _needs_port_proto(t, ctx, what):
    if t.range is not None and t.range.min_port is not None and not _port_proto(ctx):
        raise OptionError(f"{what}: a port range needs \"-p tcp\", \"-p udp\", \"-p sctp\" or \"-p dccp\"")


@register
@dataclass(frozen=True)
class Dnat(Target):
    """Rewrite the destination (first packet only; conntrack replays it)."""
    range: NatRange | None = None
    random: bool = False
    persistent: bool = False

    name: ClassVar[str] = "DNAT"
    OPTIONS: ClassVar[dict] = {"to-destination": (1, False), "random": (0, False), "persistent": (0, False)}
    needs_conntrack: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        tos = [o for o in opts if o.name == "to-destination"]
        if not tos:
            raise OptionError("DNAT: option \"--to-destination\" must be specified")
        if len(tos) > 1:
            raise OptionError("DNAT: multiple --to-destination are not supported")
        return cls(parse_nat_range(tos[0].value, ctx.family, "DNAT"),
                   any(o.name == "random" for o in opts), any(o.name == "persistent" for o in opts))

    def check(self, ctx):
        _needs_port_proto(self, ctx, "DNAT")

    def save(self) -> str:
        s = f"-j DNAT --to-destination {self.range}"
        return s + (" --random" if self.random else "") + (" --persistent" if self.persistent else "")

    def apply(self, pkt, ctx):
        return "DNAT", ctx.nat(self, pkt)


@register
@dataclass(frozen=True)
class Snat(Target):
    """Rewrite the source (first packet only; conntrack replays it)."""
    range: NatRange | None = None
    random: bool = False
    random_fully: bool = False
    persistent: bool = False

    name: ClassVar[str] = "SNAT"
    OPTIONS: ClassVar[dict] = {"to-source": (1, False), "random": (0, False), "random-fully": (0, False),
                               "persistent": (0, False)}
    needs_conntrack: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        tos = [o for o in opts if o.name == "to-source"]
        if not tos:
            raise OptionError("SNAT: option \"--to-source\" must be specified")
        if len(tos) > 1:
            raise OptionError("SNAT: multiple --to-source are not supported")
        names = {o.name for o in opts}
        return cls(parse_nat_range(tos[0].value, ctx.family, "SNAT"), "random" in names,
                   "random-fully" in names, "persistent" in names)

    def check(self, ctx):
        _needs_port_proto(self, ctx, "SNAT")

    def save(self) -> str:
        s = f"-j SNAT --to-source {self.range}"
        return (s + (" --random" if self.random else "") + (" --random-fully" if self.random_fully else "")
                + (" --persistent" if self.persistent else ""))

    def apply(self, pkt, ctx):
        return "SNAT", ctx.nat(self, pkt)


@register
@dataclass(frozen=True)
class Masquerade(Target):
    """Source NAT to the address of the interface the packet leaves by."""
    ports: tuple | None = None
    random: bool = False
    random_fully: bool = False

    name: ClassVar[str] = "MASQUERADE"
    OPTIONS: ClassVar[dict] = {"to-ports": (1, False), "random": (0, False), "random-fully": (0, False)}
    needs_conntrack: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        names = {o.name for o in opts}
        ports = None
        for o in opts:
            if o.name == "to-ports":
                lo, dash, hi = o.value.partition("-")
                try:
                    ports = (parse_port(lo), parse_port(hi) if dash else parse_port(lo))
                except OptionError:
                    raise OptionError(f"MASQUERADE: invalid port range {o.value!r}") from None
                if ports[0] > ports[1]:
                    raise OptionError(f"MASQUERADE: invalid port range {o.value!r} (low > high)")
        return cls(ports, "random" in names, "random-fully" in names)

    def check(self, ctx):
        if self.ports is not None and not _port_proto(ctx):
            raise OptionError("MASQUERADE: --to-ports needs \"-p tcp\", \"-p udp\", \"-p sctp\" or \"-p dccp\"")

    def save(self) -> str:
        s = "-j MASQUERADE"
        if self.ports is not None:
            s += f" --to-ports {self.ports[0]}" + (f"-{self.ports[1]}" if self.ports[1] != self.ports[0] else "")
        return s + (" --random" if self.random else "") + (" --random-fully" if self.random_fully else "")

    def apply(self, pkt, ctx):
        return "MASQUERADE", ctx.nat(self, pkt)


# --------------------------------------------------------------------------
# MARK, LOG

@register
@dataclass(frozen=True)
class MarkTarget(Target):
    """Change the packet mark: `mark = (mark & ~mask) ^ value` (all forms save
    as `--set-xmark value/mask`)."""
    value: int = 0
    mask: int = 0xFFFFFFFF

    name: ClassVar[str] = "MARK"
    OPTIONS: ClassVar[dict] = {"set-xmark": (1, False), "set-mark": (1, False), "and-mark": (1, False),
                               "or-mark": (1, False), "xor-mark": (1, False)}
    terminating: ClassVar[bool] = False

    @classmethod
    def from_options(cls, opts, ctx):
        if not opts:
            raise OptionError("MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required")
        if len(opts) > 1:
            raise OptionError("MARK: only one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark")
        o = opts[0]
        full = 0xFFFFFFFF
        if o.name in ("set-xmark", "set-mark"):
            v, m = parse_mark(o.value)
            m = full if m is None else m
            return cls(v, m if o.name == "set-xmark" else (m | v))
        v = parse_uint(o.value, 32, "mark")
        if o.name == "and-mark":
            return cls(0, full & ~v)
        if o.name == "or-mark":
            return cls(v, v)
        return cls(v, 0)

    def save(self) -> str:
        return f"-j MARK --set-xmark {self.value:#x}/{self.mask:#x}"

    def apply(self, pkt, ctx):
        return "CONTINUE", pkt.replace(mark=(pkt.mark & ~self.mask & 0xFFFFFFFF) ^ self.value)


LOG_LEVELS = {"emerg": 0, "panic": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4,
              "warn": 4, "notice": 5, "info": 6, "debug": 7}
LOG_FLAGS = ("log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid", "log-macdecode")


@register
@dataclass(frozen=True)
class Log(Target):
    """Write a line to the kernel log; the walk goes on."""
    prefix: str = ""
    level: int = 4
    flags: tuple = ()

    name: ClassVar[str] = "LOG"
    OPTIONS: ClassVar[dict] = dict({"log-level": (1, False), "log-prefix": (1, False)},
                                   **{f: (0, False) for f in LOG_FLAGS})
    terminating: ClassVar[bool] = False

    @classmethod
    def from_options(cls, opts, ctx):
        kw, flags = {}, set()
        for o in opts:
            if o.name == "log-level":
                v = o.value.lower()
                if v in LOG_LEVELS:
                    kw["level"] = LOG_LEVELS[v]
                else:
                    n = parse_uint(v, 8, "log level") if v.isdigit() else 99
                    if n > 7:
                        raise OptionError(f"LOG: unknown --log-level {o.value!r}")
                    kw["level"] = n
            elif o.name == "log-prefix":
                if not o.value:
                    raise OptionError("LOG: --log-prefix: argument must have a minimum length of 1 characters")
                # the kernel keeps 29 bytes
                kw["prefix"] = o.value.encode()[:29].decode("utf-8", "ignore")
            else:
                flags.add(o.name)
        return cls(flags=tuple(f for f in LOG_FLAGS if f in flags), **kw)

    def save(self) -> str:
        s = "-j LOG"
        if self.prefix:
            s += f" --log-prefix {save_string(self.prefix)}"
        if self.level != 4:
            s += f" --log-level {self.level}"
        for f in self.flags:
            s += f" --{f}"
        return s

    def apply(self, pkt, ctx):
        ctx.log(self, pkt)
        return "CONTINUE", pkt


# --------------------------------------------------------------------------
# CONNMARK, NFLOG

_CONNMARK_OPS = ("set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark", "save-mark", "restore-mark")


@register
@dataclass(frozen=True)
class ConnmarkTarget(Target):
    """Change the connection's mark, or copy marks between packet and connection
    (xt_connmark, revision 2, as iptables 1.8.9 loads it):

    - set:     ctmark = ((ctmark & ~ctmask) ^ value) shifted
    - save:    ctmark = (ctmark & ~ctmask) ^ ((packet mark & nfmask) shifted)
    - restore: packet mark = (packet mark & ~nfmask) ^ ((ctmark & ctmask) shifted)

    A packet without a conntrack entry is left alone. The walk goes on.
    """

    mode: str = "set"                   # set, save, restore
    ctmark: int = 0
    ctmask: int = 0xFFFFFFFF
    nfmask: int = 0xFFFFFFFF
    shift_dir: str = "left"
    shift_bits: int = 0

    name: ClassVar[str] = "CONNMARK"
    OPTIONS: ClassVar[dict] = {"set-xmark": (1, False), "set-mark": (1, False), "and-mark": (1, False),
                               "or-mark": (1, False), "xor-mark": (1, False), "save-mark": (0, False),
                               "restore-mark": (0, False), "ctmask": (1, False), "nfmask": (1, False),
                               "mask": (1, False), "left-shift-mark": (1, False), "right-shift-mark": (1, False)}
    terminating: ClassVar[bool] = False
    needs_conntrack: ClassVar[bool] = True

    @classmethod
    def from_options(cls, opts, ctx):
        full = 0xFFFFFFFF
        kw = {"ctmask": full, "nfmask": full}
        seen = []
        excl = {op: set(_CONNMARK_OPS) - {op} for op in _CONNMARK_OPS}
        excl.update(ctmask={"mask"}, nfmask={"mask"}, mask={"ctmask", "nfmask"})
        for o in opts:
            clash = next((s for s in seen if s in excl.get(o.name, ())), None)
            if clash is not None:
                raise OptionError(f"CONNMARK: option \"--{clash}\" cannot be used together with \"--{o.name}\"")
            seen.append(o.name)
            n = o.name
            if n in ("set-xmark", "set-mark"):
                try:
                    v, m = parse_mark(o.value)
                except OptionError:
                    raise OptionError(f"CONNMARK: bad integer value for option \"--{n}\" {o.value!r}, or out of "
                                      "range") from None
                m = full if m is None else m
                kw.update(mode="set", ctmark=v, ctmask=m if n == "set-xmark" else (v | m))
            elif n in ("and-mark", "or-mark", "xor-mark"):
                v = parse_uint(o.value, 32, f"CONNMARK --{n}")
                kw.update(mode="set", ctmark={"and-mark": 0}.get(n, v),
                          ctmask={"and-mark": full & ~v, "or-mark": v, "xor-mark": 0}[n])
            elif n in ("save-mark", "restore-mark"):
                kw["mode"] = n[:-5]
            elif n in ("ctmask", "nfmask"):
                kw[n] = parse_uint(o.value, 32, f"CONNMARK --{n}")
            elif n == "mask":
                kw["ctmask"] = kw["nfmask"] = parse_uint(o.value, 32, "CONNMARK --mask")
            else:
                bits = parse_uint(o.value, 8, f"CONNMARK --{n}")
                if bits > 32:
                    raise OptionError(f"CONNMARK: bad value for option \"--{n}\", or out of range (0-32)")
                kw.update(shift_dir=n.split("-")[0], shift_bits=bits)    # the last shift given wins
        if kw.get("shift_bits", 0) >= 32:
            raise OptionError(f"CONNMARK: --{kw['shift_dir']}-shift-mark 32: the kernel refuses a shift of 32 bits "
                              "(Invalid argument)")
        if "mode" not in kw:
            raise OptionError("CONNMARK target: No operation specified (--set-xmark, --set-mark, --and-mark, "
                              "--or-mark, --xor-mark, --save-mark or --restore-mark)")
        if kw["mode"] == "set":
            kw["nfmask"] = full                  # not used to set a mark, not saved
        if not kw.get("shift_bits"):
            kw.pop("shift_dir", None)
        return cls(**kw)

    def save(self) -> str:
        if self.mode == "set":
            s = f"-j CONNMARK --set-xmark {self.ctmark:#x}/{self.ctmask:#x}"
        else:
            s = f"-j CONNMARK --{self.mode}-mark --nfmask {self.nfmask:#x} --ctmask {self.ctmask:#x}"
        if self.shift_bits:
            s += f" --{self.shift_dir}-shift-mark {self.shift_bits}"
        return s

    def shift(self, value: int) -> int:
        if self.shift_dir == "right":
            return value >> self.shift_bits
        return (value << self.shift_bits) & 0xFFFFFFFF

    def apply(self, pkt, ctx):
        return "CONTINUE", ctx.connmark(self, pkt)


@register
@dataclass(frozen=True)
class Nflog(Target):
    """Hand the packet to a userspace logger (ulogd, ...) through netlink group
    `group`; the walk goes on, as after LOG.

    iptables 1.8.9 (nf_tables) writes an nft `log` expression: a prefix keeps up to
    127 bytes, `--nflog-range` is dropped (only the legacy backend knew it), and a
    threshold of 0 is no threshold (all seen on this machine)."""

    group: int = 0
    prefix: str = ""
    size: int | None = None
    threshold: int = 0

    name: ClassVar[str] = "NFLOG"
    OPTIONS: ClassVar[dict] = {"nflog-group": (1, False), "nflog-prefix": (1, False), "nflog-range": (1, False),
                               "nflog-size": (1, False), "nflog-threshold": (1, False)}
    terminating: ClassVar[bool] = False

    @classmethod
    def from_options(cls, opts, ctx):
        kw = {}
        names = {o.name for o in opts}
        if {"nflog-range", "nflog-size"} <= names:
            raise OptionError("NFLOG: option \"--nflog-range\" cannot be used together with \"--nflog-size\"")
        for o in opts:
            if o.name == "nflog-group":
                kw["group"] = parse_uint(o.value, 16, "NFLOG --nflog-group")
            elif o.name == "nflog-threshold":
                kw["threshold"] = parse_uint(o.value, 16, "NFLOG --nflog-threshold")
            elif o.name in ("nflog-size", "nflog-range"):
                n = parse_uint(o.value, 32, f"NFLOG --{o.name}")
                if o.name == "nflog-size":
                    kw["size"] = n
            else:
                if not o.value:
                    raise OptionError("NFLOG: --nflog-prefix: argument must have a minimum length of 1 characters")
                if "\n" in o.value:
                    raise OptionError("NFLOG: newlines not allowed in --nflog-prefix")
                kw["prefix"] = o.value.encode()[:127].decode("utf-8", "ignore")
        return cls(**kw)

    def save(self) -> str:
        s = "-j NFLOG"
        if self.prefix:
            s += f" --nflog-prefix {save_string(self.prefix)}"
        if self.group:
            s += f" --nflog-group {self.group}"
        if self.size is not None:
            s += f" --nflog-size {self.size}"
        if self.threshold:
            s += f" --nflog-threshold {self.threshold}"
        return s

    def apply(self, pkt, ctx):
        ctx.nflog(self, pkt)
        return "CONTINUE", pkt


# --------------------------------------------------------------------------

@dataclass(frozen=True)
class OpaqueTarget(Target):
    """A target kplab does not model, kept as written (see OpaqueMatch)."""
    target: str = ""
    args: tuple = ()
    supported: ClassVar[bool] = False

    @property
    def name(self):  # type: ignore[override]
        return self.target

    def save(self) -> str:
        return " ".join((f"-j {self.target}",) + self.args)

    def apply(self, pkt, ctx):
        return ctx.assume_opaque_target(self, pkt)
