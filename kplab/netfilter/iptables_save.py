"""Read and write the iptables-save / iptables-restore text format.

`parse()` reads what `iptables-save` prints and what `iptables-restore`
accepts (kube-proxy writes the latter: `-d 10.0.0.1` without `/32`,
`--or-mark`, unquoted comments, `-X` lines). It refuses, with the file and
line, what the kernel (iptables 1.8.9, nf_tables backend) refuses.

`save()` prints a ruleset exactly as `iptables-save` prints it after the
kernel loaded it: addresses with their prefix, generic options first, `-m
tcp` added where iptables adds it, marks and probabilities in the kernel's
form, comments quoted as xtables_save_string quotes them.

Lines are read as xtables_restore_parse_line() reads them: only the first
character says what a line is (`#` a comment, `*` a table, `:` a chain,
anything else a command), no blank is skipped before it, `COMMIT` must be
alone on its line, an empty line must be really empty, words are separated by
spaces, tabs and newlines only, and a line longer than 10239 bytes is read in
pieces. A command may come anywhere in its line (getopt), and a long option
may be any unambiguous prefix of one, among all of iptables' own options and
those of the modules loaded so far. tests/bad_inputs holds the cases.

Most lines of a dump are plain (`:CHAIN - [0:0]`, `-A CHAIN` with options
spelled in full): they take a fast path that looks the recurring pieces of a
rule up by their words (`_fast_rule`), builds exactly what the general path
builds, and hands every other line, and every error, to the general path
(`parse_rule`). A 10,000-Service dump (170,000 rules) parses in ~1.5 s.

Syntax of one rule line (after `-A CHAIN`), as iptables reads it:

    rule    := (["!"] generic | "-m" MODULE | ["!"] "--OPTION" VALUE*)* [target]
    generic := -s ADDR | -d ADDR | -p PROTO | -i IFACE | -o IFACE | -f | -c P,B
    target  := -j TARGET option* | -g CHAIN
"""
from __future__ import annotations

import gc
import os
import re
import stat
from dataclasses import dataclass

from ..errors import ParseError, RulesetError, printable
from .hooks import JUMP_STACK_SIZE, NO_IN_IFACE, NO_OUT_IFACE, TABLE_CHAINS, TARGET_HOOKS, TABLES
from .matches import (MATCHES, Destination, Fragment, InInterface, OpaqueMatch, OutInterface,
                      Protocol, Source)
from .rules import Opt, Rule, RuleContext, Ruleset, Table, new_chain, new_context, new_rule
from .targets import TARGETS, Goto, Jump, OpaqueTarget
from .values import OptionError, parse_addr_mask, parse_proto

# --------------------------------------------------------------------------
# Tokens

class _TokenError(ValueError):
    pass


def tokenize(line: str) -> list[str]:
    """Split a line into words exactly as iptables-restore (1.8.9) does.

    Words are separated by spaces, tabs and newlines (nothing else: a
    carriage return or a non-breaking space is part of a word). A double
    quote opens a quoted part that continues the current word; the closing
    quote always ends the word
    (`"a"b` is two words, `a"b c"` one). Inside quotes a backslash escapes the
    next character. A quote never closed takes the rest of the line, newline
    included, as the word's text.
    """
    if '"' not in line:
        return _blank_split(line)
    if "\\" in line:
        return _tokenize_escaped(line)
    parts = line.split('"')
    last = len(parts) - 1
    words, pending = [], None
    for k, part in enumerate(parts):
        if k & 1:                                  # inside quotes
            if k == last:                          # never closed
                part += "\n"
            words.append(part if pending is None else pending + part)
            pending = None
            continue
        pieces = _blank_split(part)
        if not pieces:
            continue
        if k < last and part[-1] not in " \t\n":
            words.extend(pieces[:-1])
            pending = pieces[-1]
        else:
            words.extend(pieces)
    return words


def unclosed_quote(line: str) -> bool:
    """Whether a line leaves a double quote open (iptables accepts it)."""
    if "\\" not in line:
        return line.count('"') % 2 == 1          # without escapes each quote opens or closes
    quoted = escaped = False
    for c in line:
        if quoted and escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
    return quoted


def _tokenize_escaped(line: str) -> list[str]:
    """The character-by-character reader, for lines with backslashes."""
    words, buf, quoted, escaped = [], [], False, False
    for c in line:
        if quoted:
            if escaped:
                buf.append(c)
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
                words.append("".join(buf))
                buf = []
            else:
                buf.append(c)
            continue
        if c == '"':
            quoted = True
        elif c in " \t\n":
            if buf:
                words.append("".join(buf))
                buf = []
        else:
            buf.append(c)
    if quoted:
        buf.append("\n")
        words.append("".join(buf))
    elif buf:
        words.append("".join(buf))
    return words


def _column(line: str, index: int) -> int | None:
    """The column where word `index` starts (for the caret in an error)."""
    col, n, i = None, -1, 0
    quoted = False
    start = True
    while i < len(line):
        c = line[i]
        if not quoted and c in " \t":
            start = True
        else:
            if start:
                n += 1
                if n == index:
                    return i
                start = False
            if c == '"':
                quoted = not quoted
        i += 1
    return col


# --------------------------------------------------------------------------
# One rule

#: iptables' own options (xshared.c, 1.8.9): long name -> the letter getopt returns. Every one of
#: them is in getopt's table, so a word like "--d" is ambiguous (--delete, --destination, ...)
#: even where only one would make sense.
GENERIC_LONG = {
    "append": "A", "delete": "D", "check": "C", "insert": "I", "replace": "R", "list": "L",
    "list-rules": "S", "flush": "F", "zero": "Z", "new-chain": "N", "delete-chain": "X",
    "rename-chain": "E", "policy": "P", "source": "s", "destination": "d", "src": "s", "dst": "d",
    "protocol": "p", "in-interface": "i", "jump": "j", "table": "t", "match": "m", "numeric": "n",
    "out-interface": "o", "verbose": "v", "wait": "w", "wait-interval": "W", "exact": "x",
    "fragments": "f", "version": "V", "help": "h", "line-numbers": "0", "modprobe": "M",
    "set-counters": "c", "goto": "g", "ipv4": "4", "ipv6": "6",
}
#: The commands (one per line; kplab applies A I D R N X F Z P E, and checks C L S).
COMMAND_LETTERS = frozenset("ADCIRLSFZNXEP")
#: Letters parse_rule treats apart (everything but -s -d -p -i -o -m -j -g -c).
_SPECIAL = COMMAND_LETTERS | frozenset("tnx0VhwWv46fM")
GENERIC = {f"-{g}": g for g in set(GENERIC_LONG.values()) if g != "0"}     # --line-numbers has no short form
GENERIC.update({f"--{k}": g for k, g in GENERIC_LONG.items()})
GENERIC["--fragment"] = "f"          # the unambiguous prefix everyone writes
PROTO_MODULES = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmp6"}
MAX_CHAIN_NAME = 28
IFNAMSIZ = 16


class _RuleError(Exception):
    def __init__(self, message, pos=None):
        super().__init__(message)
        self.message, self.pos = message, pos


@dataclass
class _Loaded:
    """A module while its options are being collected."""
    cls: object
    opts: list
    pos: int
    implicit: bool = False
    opaque_args: list | None = None

    def lookup(self, name: str):
        if self.opaque_args is not None:
            return None
        o = self.cls.OPTIONS
        if name in o:
            return name
        return self.cls.ALIASES.get(name)

    def names(self):
        if self.opaque_args is not None:
            return []
        return list(self.cls.OPTIONS) + list(self.cls.ALIASES)


class _SkipRule(Exception):
    """`-6` in an IPv4 rule (or `-4` in an IPv6 one): iptables-restore skips the line."""


@dataclass
class _Command:
    """A command found somewhere in a line (getopt lets it stand anywhere)."""
    letter: str
    start: int                  # index of the command word
    end: int                    # index after its arguments


def _xs_has_arg(words, k) -> bool:
    """iptables' xs_has_arg(): the next word exists and is not an option or "!"."""
    return k < len(words) and not words[k].startswith(("-", "!"))


def _command_span(words, i, letter) -> int:
    """The index after command `letter` at words[i] and the arguments it takes."""
    j = i + 1
    if letter in "AIDRCNEP":
        if j >= len(words):
            raise _RuleError(f"option \"{words[i]}\" requires an argument", i)
        j += 1                                   # the chain (getopt takes any next word)
    elif _xs_has_arg(words, j):                  # L S F Z X: an optional chain
        j += 1
    if letter in "IDLSZ" and j == i + 2 and _xs_has_arg(words, j):
        j += 1                                   # a rule number
    elif letter == "R" and _xs_has_arg(words, j):
        j += 1
    elif letter in "PE" and _xs_has_arg(words, j):
        j += 1                                   # the policy / the new name
    return j


def parse_rule(words: list, table: str, chain: str, family: int = 4, *,
               chains=(), unsupported: str = "error", line: int | None = None,
               counters=None, cache: dict | None = None, scan: list | None = None) -> Rule:
    """Parse the words of one rule (what follows `-A CHAIN`).

    `chains` are the chain names of the table known so far (a `-j NAME` that
    is neither a target nor one of them is refused, as iptables does).
    `unsupported` is "error" (refuse modules kplab does not model) or
    "opaque" (keep them, unexamined). Raises `_RuleError`.

    `scan`, a list, asks only where the line's command is: the words are read
    as getopt reads them (so an option's argument is never taken for a
    command), the `_Command` found is appended to `scan`, and nothing is built.
    """
    if cache is None:
        cache = {}
    src = dst = proto = iin = iout = frag = None
    modules: list[_Loaded] = []
    target: _Loaded | None = None
    jump = None
    invert = False
    n = len(words)
    i = 0
    while i < n:
        w = words[i]
        if w == "!":
            if invert:
                raise _RuleError("multiple \"!\" flags not allowed", i)
            invert = True
            i += 1
            continue
        if w == "--":
            # getopt: "--" ends the options; iptables refuses any word after it
            if i + 1 < n:
                raise _RuleError("\"--\" ends the options: iptables-restore refuses the words after it "
                                 "(\"unknown arguments found on commandline\")", i + 1)
            break
        g = GENERIC.get(w)
        owner = None
        if g is None and w.startswith("--") and len(w) > 2:
            kind, found = _resolve_long(w, modules, target, proto)
            if kind == "generic":
                g = found
            elif kind == "ambiguous":
                if not _opaque_last(modules, target):
                    raise _RuleError(f"option \"{w}\" is ambiguous: it could be {', '.join(found)} "
                                     "(iptables: \"unknown option\"); write the option in full", i)
            elif kind is not None:
                owner, name = kind, found
        if g is not None:
            if g not in _SPECIAL:
                pass                                # the common options: -s -d -p -i -o -m -j -g -c
            elif g in COMMAND_LETTERS:
                if invert:
                    raise _RuleError(f"cannot have \"!\" before {w}", i)
                if scan is None or scan:
                    was = f" (iptables: \"Cannot use -{g} with -{scan[0].letter}\")" if scan else ""
                    raise _RuleError(f"{w}: only one command per line{was}", i)
                j = _command_span(words, i, g)
                scan.append(_Command(g, i, j))
                i = j
                continue
            elif g == "t":
                raise _RuleError("\"-t\" cannot be used in iptables-restore input; the *table line says "
                                 "which table a rule goes to", i)
            elif g in "nx0":
                raise _RuleError(f"illegal option \"{w}\" with this command (it only goes with -L)", i)
            elif g in "VhwW":
                raise _RuleError(f"option \"{w}\" has no place in iptables-restore input", i)
            elif g == "v":
                i += 1
                continue
            elif g in "46":
                if invert:
                    raise _RuleError(f"cannot have \"!\" before {w}", i)
                if (g == "4") != (family == 4) and scan is None:
                    raise _SkipRule()
                i += 1
                continue
            elif g == "f":
                if frag is not None:
                    raise _RuleError("multiple -f flags not allowed", i)
                frag = Fragment(invert)
                invert = False
                i += 1
                continue
            if i + 1 >= n:
                what = {"j": " (a target such as ACCEPT, or a chain)", "g": " (a chain)"}.get(g, "")
                raise _RuleError(f"option \"{w}\" requires an argument{what}", i)
            val = words[i + 1]
            if g == "M":
                i += 2
                continue
            try:
                if g in "sd":
                    if (src if g == "s" else dst) is not None:
                        raise _RuleError(f"multiple -{g} flags not allowed", i)
                    if "," in val:
                        raise _RuleError("internal: address lists are expanded before parsing", i + 1)
                    key = (g, val, invert, family)
                    obj = cache.get(key)
                    if obj is None:
                        am = parse_addr_mask(val, family)
                        if am.mask == 0 and invert:
                            raise _RuleError(f"\"! -{g} {val}\" never matches; the kernel refuses it", i)
                        obj = cache[key] = (Source if g == "s" else Destination)(am, invert)
                    if g == "s":
                        src = obj
                    else:
                        dst = obj
                elif g == "p":
                    if proto is not None:
                        raise _RuleError("multiple -p flags not allowed", i)
                    num = parse_proto(val)
                    if num == 0 and invert:
                        raise _RuleError("rule would never match protocol (\"! -p 0\")", i)
                    proto = Protocol(num, invert)
                elif g in "io":
                    if (iin if g == "i" else iout) is not None:
                        raise _RuleError(f"multiple -{g} flags not allowed", i)
                    if not val:
                        raise _RuleError("empty interface name (iptables: \"Empty interface is likely to be "
                                         "undesired\")", i + 1)
                    if len(val) >= IFNAMSIZ:
                        raise _RuleError(f"interface name {val!r} must be shorter than {IFNAMSIZ} characters", i + 1)
                    if g == "i" and chain in NO_IN_IFACE:
                        raise _RuleError(f"can't use -i with {chain}: its packets have no input interface "
                                         "(match -o, the output interface, instead)", i)
                    if g == "o" and chain in NO_OUT_IFACE:
                        raise _RuleError(f"can't use -o with {chain}: its packets have no output interface yet "
                                         "(match -i, the input interface, instead)", i)
                    m = (InInterface if g == "i" else OutInterface)(val, invert)
                    if g == "i":
                        iin = m
                    else:
                        iout = m
                elif g == "m":
                    if invert:
                        raise _RuleError("unexpected \"!\" before -m", i)
                    cls = MATCHES.get(val)
                    if cls is not None:
                        modules.append(_Loaded(cls, [], i))
                    elif unsupported == "opaque" and val:
                        modules.append(_Loaded(None, [], i, opaque_args=[val]))
                    else:
                        raise _RuleError(f"match \"{val}\" is not modelled by kplab (load the rules with "
                                         "unsupported=\"opaque\", as `kplab trace` does, to keep it unexamined)"
                                         if val else "empty match name", i + 1)
                elif g in "jg":
                    if target is not None or jump is not None:
                        raise _RuleError("multiple -j/-g flags not allowed", i)
                    if invert:
                        raise _RuleError("cannot have ! before -j", i)
                    if val in TABLE_CHAINS.get(table, ()) and val in chains:
                        raise _RuleError(f"a rule cannot {'jump' if g == 'j' else 'go'} to the built-in chain "
                                         f"{val} (the kernel refuses it: \"No such file or directory\"); "
                                         "use a user chain", i + 1)
                    if g == "g":
                        if val not in chains:
                            raise _RuleError(f"chain {val!r} does not exist (goto)", i + 1)
                        jump = Goto(val)
                    elif val in TARGETS:
                        target = _Loaded(TARGETS[val], [], i)
                    elif val in chains:
                        jump = Jump(val)
                    elif unsupported == "opaque" and val and val.upper() == val and val not in TABLE_CHAINS["mangle"]:
                        target = _Loaded(None, [], i, opaque_args=[val])
                    else:
                        raise _RuleError(f"chain or target {val!r} does not exist{_target_hint(val, chains)}",
                                         i + 1)
                elif g == "c":
                    counters, used = _set_counters(words, i)
                    invert = False
                    i += used
                    continue
            except OptionError as e:
                raise _RuleError(str(e), i + 1) from None
            invert = False
            i += 2
            continue
        if w.startswith("-") and len(w) > 1:
            if owner is None:
                last = _opaque_last(modules, target)
                if last is not None:
                    if invert:
                        last.opaque_args.append("!")
                    last.opaque_args.append(w)
                    i += 1
                    while i < n and not words[i].startswith("-") and words[i] != "!":
                        last.opaque_args.append(words[i])
                        i += 1
                    invert = False
                    continue
                raise _RuleError(f"unknown option \"{w}\"{_option_hint(w, modules, target)}", i)
            if owner == "implicit":
                owner = _Loaded(MATCHES[PROTO_MODULES[proto.proto]], [], i, implicit=True)
                modules.append(owner)
            nargs, invertible = owner.cls.OPTIONS[name]
            if invert and not invertible:
                raise _RuleError(f"option \"--{name}\" cannot be inverted", i)
            if i + nargs >= n and nargs:
                raise _RuleError(f"option \"--{name}\" requires an argument", i)
            for o in owner.opts:
                if o.name == name:
                    again = f" (a second one needs its own -m {owner.cls.name})" if owner is not target else ""
                    raise _RuleError(f"{owner.cls.name}: option \"--{name}\" can only be used once{again}", i)
            values = tuple(words[i + 1:i + 1 + nargs])
            owner.opts.append(Opt(name, values, invert, i))
            invert = False
            i += 1 + nargs
            continue
        raise _RuleError(f"bad argument \"{w}\"", i)
    if scan is not None:
        return None
    if invert:
        raise _RuleError("\"!\" at the end of the rule negates nothing", n - 1)

    # iptables drops "-i +", "-p all" and "-s 0.0.0.0/0": they match everything.
    if src is not None and src.addr.mask == 0:
        src = None
    if dst is not None and dst.addr.mask == 0:
        dst = None
    if iin is not None and iin.iface == "+" and not iin.invert:
        iin = None
    if iout is not None and iout.iface == "+" and not iout.invert:
        iout = None
    ip = tuple([x for x in (src, dst, iin, iout, proto if proto is None or proto.proto else None, frag)
                if x is not None])
    pnum, pinv = (proto.proto, proto.invert) if proto else (0, False)
    ctx = None
    built = []
    for m in modules:
        if m.opaque_args is not None:
            built.append(OpaqueMatch(module=m.opaque_args[0], args=tuple(m.opaque_args[1:])))
            continue
        key = (m.cls, tuple([o[:3] for o in m.opts]), family, pnum, pinv)
        obj = cache.get(key, cache)
        if obj is cache:
            if ctx is None:
                ctx = RuleContext(table, chain, family, pnum, pinv)
            try:
                obj = m.cls.from_options(m.opts, ctx)
                if obj is not None:
                    obj.check(ctx)
            except OptionError as e:
                raise _RuleError(str(e), m.opts[0].pos if m.opts else m.pos) from None
            if not (getattr(obj, "per_rule_state", False) or getattr(obj, "checks_chain", False)):
                cache[key] = obj
        if obj is not None:
            built.append(obj)
    tgt = jump
    if target is not None:
        if target.opaque_args is not None:
            tgt = OpaqueTarget(target=target.opaque_args[0], args=tuple(target.opaque_args[1:]))
        else:
            key = (target.cls.name, tuple([o[:3] for o in target.opts]), family, pnum, pinv)
            tgt = cache.get(key)
            if tgt is None:
                if ctx is None:
                    ctx = RuleContext(table, chain, family, pnum, pinv)
                try:
                    tgt = target.cls.from_options(target.opts, ctx)
                    tgt.check(ctx)
                except OptionError as e:
                    raise _RuleError(str(e), target.opts[0].pos if target.opts else target.pos) from None
                cache[key] = tgt
    return Rule(ip, tuple(built), tgt, line=line, counters=counters)


_ADDR_OPTS = {"-s": "s", "--source": "s", "--src": "s", "-d": "d", "--destination": "d", "--dst": "d"}


def expand_address_lists(words: list) -> list:
    """`-s A,B` and `-d C,D` as the iptables command reads them: one rule per
    (source, destination) pair, sources in the outer loop."""
    where = {}
    for k, w in enumerate(words[:-1]):
        g = _ADDR_OPTS.get(w)
        if g is not None and "," in words[k + 1]:
            if k > 0 and words[k - 1] == "!":
                raise _RuleError("! not allowed with multiple source or destination IP addresses", k - 1)
            where[g] = k + 1
    if not where:
        return [words]
    out = []
    srcs = words[where["s"]].split(",") if "s" in where else [None]
    dsts = words[where["d"]].split(",") if "d" in where else [None]
    for a in srcs:
        for b in dsts:
            v = list(words)
            if a is not None:
                v[where["s"]] = a
            if b is not None:
                v[where["d"]] = b
            out.append(v)
    return out


# --------------------------------------------------------------------------
# The fast path for common rules
#
# A node dump of 10,000 Services is 170,000 rules, and most of them are a few
# shapes whose pieces recur thousands of times (`-p tcp`, `-m comment --comment
# "..."`, `-m tcp --dport 80`, `-m statistic --mode random --probability 0.2`,
# `-j KUBE-MARK-MASQ`). `parse_rule` reads every word with all of getopt's
# rules (prefixes of long options, option owners, implicit protocol modules,
# opaque modules, positions for error messages), which costs ~20 us a rule.
# `_fast_rule` reads only the plain shape of a rule -- generic options, and
# `-m MODULE` or `-j TARGET` each followed by its own options spelled in full --
# and keys each built module and target by its exact words, so a recurring
# piece is looked up instead of parsed. It builds exactly the objects
# `parse_rule` builds, through the same cache; anything else (an abbreviation,
# an unknown or opaque module, an implicit `-p tcp --dport`, `-c`, `-f`, `-4`,
# a repeated option, any error at all) makes it give up, and the line goes
# through `parse_rule`, which then finds the error and words it. So the fast
# path never changes a result, an error or a warning, only how soon a valid
# rule is built. tests/netfilter/test_fast_path.py checks that both paths give
# equal rulesets and the same errors.

#: False sends every rule through `parse_rule` (the tests compare both paths).
FAST_PATH = True

#: The generic options `_fast_rule` reads, with their long forms: word -> letter.
_FAST_GENERIC = {w: g for w, g in GENERIC.items() if g in "sdpiomjg"}
#: Each table's built-in chains (no rule may jump to one).
_BUILTIN = {t: frozenset(cs) for t, cs in TABLE_CHAINS.items()}
#: `_fast_rule`'s "not found" (a module may build None, so None cannot say it).
_MISSING = object()
#: Per module or target class: {"--word": (canonical name, number of values, invertible)}
#: (`_option_words`; the classes' OPTIONS and ALIASES are constants).
_OPTION_WORDS: dict = {}


def _option_words(cls) -> dict:
    """The long options of `cls` as words spelled in full ("--dport", "--destination-port")
    -> (canonical name, number of values, invertible), as _Loaded.lookup resolves them;
    without the words getopt gives to iptables' own options first (GENERIC)."""
    words = {}
    for alias, canon in cls.ALIASES.items():
        if canon in cls.OPTIONS:
            words["--" + alias] = (canon, *cls.OPTIONS[canon])
    for name, spec in cls.OPTIONS.items():               # a name is looked up before an alias
        words["--" + name] = (name, *spec)
    for w in GENERIC:
        words.pop(w, None)
    _OPTION_WORDS[cls] = words
    return words


def _fast_rule(words, i, table, chain, family, chains, cache, pieces, line, counters):
    """The Rule in words[i:] (`line` and `counters` are the Rule's), or None when the
    rule is not of the plain shape this reader knows (then `parse_rule` reads it).

    `cache` is `parse_rule`'s cache (pieces keyed by their meaning). `pieces` is
    this reader's: under the rule's protocol, a `-m`/`-j` part's words; a `-p`
    value; a chain name -> what was built from them."""
    n = len(words)
    start = i
    src = dst = iin = iout = proto = jump = target = mods = None
    invert = False
    while i < n:
        w = words[i]
        if w == "!":
            if invert:
                return None
            invert = True
            i += 1
            continue
        g = _FAST_GENERIC.get(w)
        if g is None or i + 1 >= n:
            return None
        val = words[i + 1]
        i += 2
        if g == "m" or g == "j":
            if invert:
                return None
            if g == "m":
                cls = MATCHES.get(val)
                if cls is None:
                    return None
            else:
                if target is not None or jump is not None or (val in _BUILTIN[table] and val in chains):
                    return None
                cls = TARGETS.get(val)
                if cls is None:
                    if val not in chains:
                        return None
                    jump = pieces.get(val)
                    if jump is None:
                        jump = pieces[val] = Jump(val)
                    continue
            # The options that follow go to this module: getopt gives a long option spelled
            # in full to the module loaded last that knows it (_exact_owner).
            known = _OPTION_WORDS.get(cls)
            if known is None:
                known = _option_words(cls)
            j = i
            while j < n:
                w = words[j]
                k = j
                if w == "!":
                    k += 1
                    if k >= n:
                        break
                    w = words[k]
                spec = known.get(w)
                if spec is None:
                    break             # the next generic option, -m, -j (or a word parse_rule must read)
                nargs = spec[1]
                if (k > j and not spec[2]) or (nargs and k + nargs >= n):
                    return None
                j = k + 1 + nargs
            part = (tuple(words[i - 2:j]), cls, i - start)
            if g == "j":
                target = part
            elif mods is None:
                mods = [part]
            else:
                mods.append(part)
            i = j
            continue
        if g == "s" or g == "d":
            if (src if g == "s" else dst) is not None or "," in val:
                return None
            key = (g, val, invert, family)
            obj = cache.get(key)
            if obj is None:
                try:
                    am = parse_addr_mask(val, family)
                except Exception:                       # parse_rule words it (or fails the same way)
                    return None
                if am.mask == 0 and invert:
                    return None
                obj = cache[key] = (Source if g == "s" else Destination)(am, invert)
            if g == "s":
                src = obj
            else:
                dst = obj
        elif g == "p":
            if proto is not None:
                return None
            key = ("-p", val, invert)
            proto = pieces.get(key)
            if proto is None:
                try:
                    num = parse_proto(val)
                except Exception:
                    return None
                if num == 0 and invert:
                    return None
                proto = pieces[key] = Protocol(num, invert)
        elif g == "g":
            if target is not None or jump is not None or invert or val not in chains or val in _BUILTIN[table]:
                return None
            jump = Goto(val)
        else:                                           # -i, -o
            if (iin if g == "i" else iout) is not None or not val or len(val) >= IFNAMSIZ:
                return None
            if chain in (NO_IN_IFACE if g == "i" else NO_OUT_IFACE):
                return None
            m = (InInterface if g == "i" else OutInterface)(val, invert)
            if g == "i":
                iin = m
            else:
                iout = m
        invert = False
    if invert:
        return None

    # What parse_rule does once the words are read: iptables drops "-s 0.0.0.0/0", "-i +"
    # and "-p all", and prints the generic options in this order.
    ip = ()
    if src is not None and src.addr.mask:
        ip = (src,)
    if dst is not None and dst.addr.mask:
        ip += (dst,)
    if iin is not None and (iin.iface != "+" or iin.invert):
        ip += (iin,)
    if iout is not None and (iout.iface != "+" or iout.invert):
        ip += (iout,)
    if proto is None:
        pkey = pnum = 0
        pinv = False
    else:
        pnum, pinv = proto.proto, proto.invert
        pkey = pnum if not pinv else -1 - pnum
        if pnum:
            ip += (proto,)
    matches = ()
    if mods is not None or target is not None:
        bucket = pieces.get(pkey)                       # the pieces built under this protocol
        if bucket is None:
            bucket = pieces[pkey] = {}
        if mods is not None:
            built = []
            for part in mods:
                obj = bucket.get(part[0], _MISSING)
                if obj is _MISSING:
                    obj = _fast_piece(part, bucket, (table, chain, family, pnum, pinv), cache, True)
                    if obj is _MISSING:
                        return None
                if obj is not None:
                    built.append(obj)
            matches = tuple(built)
        if target is not None:
            jump = bucket.get(target[0])
            if jump is None:
                jump = _fast_piece(target, bucket, (table, chain, family, pnum, pinv), cache, False)
                if jump is _MISSING:
                    return None
    return new_rule(ip, matches, jump, line, counters)


def _fast_piece(part, bucket, context, cache, is_match):
    """Build a module or target from its words (`-m NAME --option VALUE ...`; `pos`, the index
    of the first option in the rule's words) as `parse_rule` does: the same options, cache key,
    context and checks. Remember it in `bucket` under its words; _MISSING on any error."""
    key, cls, pos = part
    known = _OPTION_WORDS[cls]
    if not getattr(cls, "supported", True):
        return _MISSING                                 # opaque: parse_rule warns about it
    opts, said = [], []
    k, n = 2, len(key)
    while k < n:
        inv = key[k] == "!"
        if inv:
            k += 1
        canon, nargs, _ = known[key[k]]
        values = key[k + 1:k + 1 + nargs]
        for o in said:
            if o[0] == canon:
                return _MISSING                         # "can only be used once"
        opts.append(Opt(canon, values, inv, pos + k - 2))
        said.append((canon, values, inv))               # Opt[:3], parse_rule's cache key
        k += 1 + nargs
    table, chain, family, pnum, pinv = context
    ckey = ((cls if is_match else cls.name), tuple(said), family, pnum, pinv)
    obj = cache.get(ckey, _MISSING)
    if obj is _MISSING:
        ctx = new_context(table, chain, family, pnum, pinv)
        try:
            obj = cls.from_options(opts, ctx)
            if obj is not None:
                obj.check(ctx)
        except Exception:                               # parse_rule words it (or fails the same way)
            return _MISSING
        if not (is_match and (getattr(obj, "per_rule_state", False) or getattr(obj, "checks_chain", False))):
            cache[ckey] = obj                           # (per-rule objects are built for each rule)
        return obj
    if not (is_match and (getattr(obj, "per_rule_state", False) or getattr(obj, "checks_chain", False))):
        bucket[key] = obj                               # seen twice: worth remembering by its words
    return obj


def _declare_chain(cur, raw) -> bool:
    """`:NAME - [0:0]`, a user chain as iptables-save declares it (printable ASCII, a name
    _chain_line accepts): True when done, False to have `_line` read the line. A dump of
    10,000 Services declares 60,000 chains."""
    if cur is None or len(raw) >= MAX_WORD or not (raw.isascii() and raw.isprintable()):
        return False                                    # (a long line is read in pieces: _long_line)
    parts = raw[1:].split()
    if len(parts) < 2:
        return False
    name = parts[0]
    if (len(name) > MAX_CHAIN_NAME or name in TABLE_CHAINS[cur.name] or name.startswith(("-", "!"))
            or name in VERDICT_NAMES):
        return False
    cur.chains[name] = []                               # declaring a chain again flushes it
    cur.policies[name] = None
    cur.touched = True
    return True


def _address_list(words, start) -> bool:
    """Whether expand_address_lists would make several rules of words[start:]."""
    for k in range(start, len(words) - 1):
        if words[k] in _ADDR_OPTS and "," in words[k + 1]:
            return True
    return False


def _append_line(st, raw, ln) -> bool:
    """A plain `-A CHAIN RULE` line, read by `_fast_rule`: True when it is done, False to
    have `_line` read it. Plain: printable ASCII (so str.split() splits where iptables-restore
    does: at spaces), no backslash, quotes closed, no comma that makes an address list, not
    longer than a word may be. For such a line `_line` does nothing but what is done here."""
    cur = st.cur
    if cur is None or len(raw) >= MAX_WORD or not (raw.isascii() and raw.isprintable()) or "\\" in raw:
        return False                                    # (a long line is read in pieces: _long_line)
    if '"' in raw:
        if raw.count('"') % 2:
            return False                                # a quote left open: _line warns
        words = tokenize(raw)
    else:
        words = raw.split()
    if len(words) > MAX_WORDS:
        return False
    rules = cur.chains.get(words[1]) if len(words) > 1 else None
    if rules is None or ("," in raw and _address_list(words, 2)):
        return False
    rule = _fast_rule(words, 2, cur.name, words[1], st.family, cur.chains, st.cache, st.pieces, ln, None)
    if rule is None:
        return False
    rules.append(rule)
    cur.touched = True
    return True


def _opaque_last(modules, target):
    """The module an unknown option belongs to when the last one loaded is opaque (else None)."""
    if target is not None and target.opaque_args is not None:
        return target
    if modules and modules[-1].opaque_args is not None:
        return modules[-1]
    return None


def _target_hint(val, chains) -> str:
    """What to do about `-j NAME` when NAME is neither a target nor a chain of the table."""
    import difflib
    close = difflib.get_close_matches(val, list(TARGETS) + [c for c in chains if c not in TABLE_CHAINS["mangle"]],
                                      n=1, cutoff=0.8)
    if close:
        return f" (did you mean {close[0]}?)"
    if val and val.isprintable() and not val.startswith("-"):
        return f" (declare a chain with \":{val} - [0:0]\" before the rules that use it)"
    return ""


def _option_hint(w, modules, target) -> str:
    """Why an option is unknown, when kplab can tell: it belongs to a module not loaded
    yet, or it is a misspelling of one that is."""
    name = w.lstrip("-")
    owners = sorted({c.name for c in list(MATCHES.values()) + list(TARGETS.values())
                     if isinstance(getattr(c, "OPTIONS", None), dict)
                     and (name in c.OPTIONS or name in getattr(c, "ALIASES", {}))})
    if owners and w.startswith("--"):
        loads = " or ".join(f"-j {o}" if o.isupper() else f"-m {o}" for o in owners[:4])
        extra = " (or -p tcp / -p udp for port options)" if {"tcp", "udp"} & set(owners) else ""
        return f" (it is an option of {loads}: load the module before its options{extra})"
    import difflib
    known = ["--" + n for m in modules + ([target] if target is not None else []) for n in m.names()]
    known += ["--" + k for k in GENERIC_LONG]
    close = difflib.get_close_matches(w, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _exact_owner(name, modules, target):
    """The loaded module that takes option `--name` spelled in full, or None.

    iptables merges each newly loaded module's options in front of the older
    ones, so the most recently loaded module that knows the option takes it
    (a rule may load `-m recent` twice); a target loaded after the last match
    comes first."""
    if target is None or (modules and modules[-1].pos > target.pos):
        order = modules[::-1] + ([target] if target is not None else [])
    else:
        order = modules[::-1]
        order.insert(sum(1 for m in modules if m.pos > target.pos), target)
    for o in order:
        canon = o.lookup(name)
        if canon:
            return o, canon
    return None


def _resolve_long(w, modules, target, proto):
    """What a `--word` means to getopt_long: ("generic", letter), (module, option),
    ("implicit", option) for the protocol's own match, ("ambiguous", [names]) or (None, None).

    getopt_long takes an exact name first, else a prefix of exactly one option (names
    that lead to the same option, like --destination and --dst, count once). Its table
    holds all of iptables' own options and those of the loaded modules. When the word
    is unknown or ambiguous, iptables loads the match of `-p PROTO` and tries again."""
    name = w[2:]
    letter = GENERIC_LONG.get(name)
    if letter is not None:
        return "generic", letter
    found = _exact_owner(name, modules, target)
    if found is not None:
        return found
    owners = modules + ([target] if target is not None else [])
    hits = {}
    for long, g in GENERIC_LONG.items():
        if long.startswith(name):
            hits.setdefault(("generic", g), ("generic", g, "--" + long))
    for o in owners:
        for n in o.names():
            if n.startswith(name):
                hits.setdefault((id(o), o.lookup(n)), (o, o.lookup(n), "--" + n))
    if len(hits) == 1:
        o, canon, _ = next(iter(hits.values()))
        return o, canon
    implicit_cls = None
    if proto is not None and proto.proto in PROTO_MODULES:
        implicit_cls = MATCHES[PROTO_MODULES[proto.proto]]
        if any(m.cls is implicit_cls for m in modules):
            implicit_cls = None
    if implicit_cls is not None:
        if name in implicit_cls.OPTIONS or name in implicit_cls.ALIASES:
            return "implicit", implicit_cls.ALIASES.get(name, name)
        for n in list(implicit_cls.OPTIONS) + list(implicit_cls.ALIASES):
            if n.startswith(name):
                canon = implicit_cls.ALIASES.get(n, n)
                hits.setdefault(("implicit", canon), ("implicit", canon, "--" + n))
        if len(hits) == 1:
            o, canon, _ = next(iter(hits.values()))
            return o, canon
    if hits:
        return "ambiguous", sorted({h[2] for h in hits.values()})
    return None, None


def _set_counters(words, i):
    """`-c PACKETS,BYTES` or `-c PACKETS BYTES` (as iptables reads them, with sscanf
    "%llu"): ((packets, bytes), words used)."""
    val = words[i + 1]
    comma = val.find(",", 1)
    used = 2
    if comma >= 0:
        ptext, btext = val, val[comma + 1:]
    elif _xs_has_arg(words, i + 2):
        ptext, btext = val, words[i + 2]
        used = 3
    else:
        raise _RuleError("-c needs a packet and a byte counter (-c PACKETS,BYTES)", i)
    out = []
    for text, what in ((ptext, "packet"), (btext, "byte")):
        m = _LLU.match(text)
        if m is None:
            raise _RuleError(f"-c: the {what} counter {text!r} is not a number", i + 1)
        out.append(int(m.group(0)) % (1 << 64))
    return tuple(out), used


_LLU = re.compile(r"\s*[+-]?\d+")


# --------------------------------------------------------------------------
# Whole files

#: The command words at the start of a line (getopt also finds them later in it, and accepts
#: unambiguous prefixes of the long forms: see _find_command).
COMMANDS = {k: g for k, g in GENERIC.items() if g in COMMAND_LETTERS}
#: User chains may not be named after the standard verdicts (":DROP - [0:0]" is refused; -N also
#: refuses the name of any target iptables knows, see _check_new_chain).
VERDICT_NAMES = ("ACCEPT", "DROP", "QUEUE", "RETURN")
#: Targets of iptables 1.8.9 (libxt_*, libipt_*): `-N NAME` refuses these names too.
XTABLES_TARGETS = frozenset((
    "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNMARK", "CONNSECMARK", "CT", "DNAT", "DNPT", "DSCP",
    "ECN", "HL", "HMARK", "IDLETIMER", "LED", "LOG", "MARK", "MASQUERADE", "NETMAP", "NFLOG", "NFQUEUE",
    "NOTRACK", "RATEEST", "REDIRECT", "REJECT", "SECMARK", "SET", "SNAT", "SNPT", "SYNPROXY", "TCPMSS",
    "TCPOPTSTRIP", "TEE", "TOS", "TPROXY", "TRACE", "TTL", "ULOG", "ERROR", "standard"))
#: iptables-restore reads its input with fgets() into a 10240-byte buffer: a longer line comes in
#: pieces of 10239 bytes, and each piece is parsed as a line of its own.
LINE_PIECE = 10239
_ODD_SPACE = re.compile(r"[^\S \t\n]")
_BLANKS = re.compile(r"[ \t\n]+")


def _blank_split(text: str) -> list:
    """Words separated by blanks as iptables-restore knows them: space, tab and newline only
    (a carriage return, a form feed or a non-breaking space is part of a word)."""
    if text.isascii():
        # str.split() also splits at \r \v \f and \x1c-\x1f: only when none is there
        if ("\r" not in text and "\x0b" not in text and "\x0c" not in text and "\x1c" not in text
                and "\x1d" not in text and "\x1e" not in text and "\x1f" not in text):
            return text.split()
    elif _ODD_SPACE.search(text) is None:
        return text.split()
    return [w for w in _BLANKS.split(text) if w]


class _TableBuilder:
    def __init__(self, name: str, line: int):
        self.name, self.line = name, line
        # nf_tables creates the table only when the section declares or adds
        # something: "*nat" then "COMMIT" alone leaves no nat table.
        self.touched = False
        self.chains: dict[str, list] = {}
        self.policies: dict[str, str | None] = {}
        for c in TABLE_CHAINS[name]:
            self.chains[c] = []
            self.policies[c] = "ACCEPT"

    def freeze(self) -> Table:
        builtin = [c for c in TABLE_CHAINS[self.name] if c in self.chains]
        users = sorted(c for c in self.chains if c not in TABLE_CHAINS[self.name])
        chains, policies = self.chains, self.policies
        return Table(self.name, {c: new_chain(c, tuple(chains[c]), policies[c]) for c in builtin + users})


def parse(text: str, source: str | None = None, *, family: int | None = None,
          unsupported: str = "error") -> Ruleset:
    """Parse iptables-save output or iptables-restore input into a Ruleset.

    `source` names the file in error messages. `family` is 4 or 6; by default
    it is guessed from the addresses in the text. `unsupported` is "error"
    (refuse a module kplab does not model, as `kplab save` must) or "opaque"
    (load it unexamined and list it in `Ruleset.warnings`).
    """
    if text.startswith("\ufeff"):
        raise ParseError("the file starts with a byte-order mark (BOM); save it as plain UTF-8",
                         file=source, line=1)
    if "\x00" in text:
        ln = text[:text.index("\x00")].count("\n") + 1
        raise ParseError("binary data (a NUL byte): this is not iptables-save text", file=source, line=ln)
    if family is None:
        family = guess_family(text)
    # Parsing builds many small objects that all stay alive: the cyclic
    # garbage collector would only rescan them again and again.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        ruleset = _parse(text, source, family, unsupported)
        if gc_was_on and len(text) > FREEZE_AFTER:
            # A large ruleset is millions of young objects: the first collection after the
            # parse would walk them all (0.5-2 s, in the middle of the first trace). Move
            # them out of the collector's sight; refcounting still frees them (they hold no
            # cycles), only cyclic garbage that exists right now stays until gc.unfreeze().
            gc.freeze()
        return ruleset
    finally:
        if gc_was_on:
            gc.enable()


#: Inputs longer than this (about 10,000 rules) are frozen out of the cyclic collector after parsing.
FREEZE_AFTER = 2_000_000


_CUT = " (the file ends in this line, without a newline: was it cut short?)"


class _State:
    """What _parse carries from line to line."""

    def __init__(self, source, family, unsupported):
        self.source, self.family, self.unsupported = source, family, unsupported
        self.tables: dict = {}
        self.warnings: list = []
        self.cache: dict = {}           # parse_rule's pieces, by meaning
        self.pieces: dict = {}          # _fast_rule's pieces, by their words
        self.cur: _TableBuilder | None = None
        self.seen_table = False
        self.cut_line = None

    def warn(self, ln, text):
        self.warnings.append(printable(f"{self.source or 'rules'}:{ln}: {text}"))


def _parse(text, source, family, unsupported) -> Ruleset:
    st = _State(source, family, unsupported)
    lines = text.split("\n")
    last = len(lines)
    if lines[-1]:
        st.cut_line = last              # the text ends inside its last line: cut short?
    fast = FAST_PATH
    for ln, raw in enumerate(lines, 1):
        if not raw:
            continue                  # an empty line (or the end of the text after its last newline)
        if fast and (_append_line(st, raw, ln) if raw.startswith("-A ") else
                     raw[0] == ":" and _declare_chain(st.cur, raw)):
            continue
        if len(raw) * 4 >= LINE_PIECE and len(raw.encode("utf-8", "surrogatepass")) >= LINE_PIECE:
            _long_line(st, raw, ln, newline=ln < last)
            continue
        _line(st, raw, ln)
    if st.cur is not None:
        raise ParseError(f"table {st.cur.name!r} (line {st.cur.line}) has no COMMIT at the end of the file; "
                         "end the table with a line COMMIT" + (_CUT if st.cut_line else ""),
                         file=source, line=len(lines) if lines[-1] else max(1, len(lines) - 1))
    return Ruleset(st.tables, family, tuple(st.warnings), source)


def _long_line(st, raw, ln, newline):
    """A line iptables-restore reads in pieces of LINE_PIECE bytes: each piece is a line."""
    data = raw.encode("utf-8", "surrogatepass") + (b"\n" if newline else b"")
    pieces = [data[k:k + LINE_PIECE] for k in range(0, len(data), LINE_PIECE)]
    for k, chunk in enumerate(pieces):
        piece = chunk.decode("utf-8", "replace")
        if piece.endswith("\n"):
            piece = piece[:-1]
        if piece:
            _line(st, piece, ln, (k + 1, len(pieces), len(raw)))


def _line(st, raw, ln, piece=None):
    """One line as xtables_restore_parse_line() reads it: only its first character says
    what it is (no blank is skipped before it), and a rule line is split into words."""
    source = st.source
    cur = st.cur

    def err(msg, pos=None, cls=ParseError, hint=None):
        if "\r" in raw and not piece:
            msg = ("line ends with a carriage return (CRLF line endings); convert the file to Unix line "
                   "endings" if raw.endswith("\r") else
                   f"a carriage return (\\r) inside the line, which iptables-restore takes as part of a word: {msg}")
            pos = None
        if piece:
            k, count, size = piece
            msg = (f"a line of {size:,} characters, which iptables-restore reads in pieces of {LINE_PIECE} "
                   f"bytes, each parsed as a line of its own; piece {k} of {count}: {msg}")
        if ln == st.cut_line:
            msg += _CUT
        col = _column(raw, pos) if pos is not None and not piece else None
        return cls(msg, file=source, line=ln, text=None if piece else raw, column=col, hint=hint)

    c0 = raw[0]
    if c0 == "#":
        return
    if cur is not None and raw == "COMMIT":
        if cur.touched:
            st.tables[cur.name] = _finish_table(cur, source, st.family)
        else:
            st.tables.pop(cur.name, None)
        st.cur = None
        return
    if c0 == "*" and cur is None:
        words = _blank_split(raw[1:])
        if not words:
            raise err("no table name after \"*\" (write *filter, *nat, *mangle, *raw or *security)")
        name = words[0]
        if name not in TABLES:
            raise err(f"unknown table {name!r} (known: {', '.join(TABLES)})")
        if len(words) > 1:
            st.warn(ln, f"the words after *{name} are ignored, as iptables-restore ignores them: "
                        f"{' '.join(words[1:])[:60]}")
        st.cur = _TableBuilder(name, ln)
        st.seen_table = True
        return
    if c0 == ":" and cur is not None:
        _chain_line(st, raw, ln, err)
        return
    if cur is None:
        raise err(_outside_table(st, raw))
    # A rule line: counters first ("[PACKETS:BYTES] -A ..."), then the words.
    line = raw
    counters = None
    if c0 == "[":
        counters, line = _rule_counters(st, raw, ln, err)
    try:
        words = tokenize(line)
    except _TokenError as e:
        raise err(str(e)) from None
    if not words:
        raise err("a line of blanks inside a table: iptables-restore refuses it (\"no command specified\"); "
                  "an empty line must be really empty")
    if len(words) > MAX_WORDS or len(line) >= MAX_WORD:   # (no word is longer than its line)
        _check_limits(words, err)
    cmd = COMMANDS.get(words[0])
    if cmd is None:
        words, cmd = _find_command(st, words, err)
    if '"' in line and unclosed_quote(line):
        st.warn(ln, "a double quote is not closed; iptables-restore takes the rest of the line as one word, "
                    "as kplab does")
    if "\r" in line:
        st.warn(ln, "a carriage return (\\r) in the line: iptables-restore keeps it as part of the last word "
                    "(CRLF line endings?)")
    if cmd == "A" and FAST_PATH and len(words) > 1:
        rules = cur.chains.get(words[1])
        if rules is not None and ("," not in line or not _address_list(words, 2)):
            rule = _fast_rule(words, 2, cur.name, words[1], st.family, cur.chains, st.cache, st.pieces, ln,
                              counters)
            if rule is not None:
                rules.append(rule)
                cur.touched = True
                return
    try:
        _command(cur, cmd, words, line, ln, source, st.family, st.unsupported, counters, st.warnings, err,
                 st.cache)
    except _SkipRule:
        return                        # -6 in an IPv4 rule: iptables-restore skips the line
    if cmd in "AINPE":
        cur.touched = True


def _outside_table(st, raw) -> str:
    """Why a line outside a table is refused (iptables-restore: "line N failed")."""
    stripped = raw.strip(" \t")
    if not stripped:
        return ("a line of blanks outside a table: iptables-restore refuses it; an empty line must be "
                "really empty")
    if raw == "COMMIT":
        return "COMMIT outside a table (no *table line before it)"
    if stripped[0] in "#*:[" or stripped == "COMMIT":
        return (f"{stripped.split()[0][:20]!r} must start in the first column: iptables-restore does not skip "
                "blanks at the start of a line")
    if raw[0] == ":":
        return "a chain line outside a table (start the table with *filter, *nat, ...)"
    if st.seen_table:
        return ("a line outside a table: the table before it ended with COMMIT (start the next one with "
                "*filter, *nat, ...)")
    return ("line before the first *table line (every rule belongs to a table: start with *filter, "
            "*nat, ...)")


def _chain_line(st, raw, ln, err):
    """`:NAME POLICY [PACKETS:BYTES]` (iptables-restore reads the first two words; the rest,
    counters included, is ignored unless it runs with --counters)."""
    cur = st.cur
    parts = _blank_split(raw[1:])
    if not parts:
        raise err("chain line without a chain name: write \":NAME POLICY [0:0]\"")
    name = parts[0]
    if len(name) > MAX_CHAIN_NAME:
        raise err(f"chain name {name!r} is longer than {MAX_CHAIN_NAME} characters", 0)
    if len(parts) < 2:
        raise err(f"chain line needs a name and a policy: \":{name} - [0:0]\" for a user chain, "
                  f"\":{name} ACCEPT [0:0]\" for a built-in one")
    policy = parts[1]
    if name in TABLE_CHAINS[cur.name]:
        # "-" keeps the current policy (iptables-restore input may say so)
        if policy not in ("ACCEPT", "DROP", "-"):
            raise err(f"bad policy {policy!r} for built-in chain {name} (ACCEPT or DROP)", 1)
        if policy != "-":
            cur.policies[name] = policy
    else:
        if name.startswith(("-", "!")):
            raise err(f"invalid chain name {name!r}: a chain name may not start with {name[0]!r}", 0)
        if name in VERDICT_NAMES:
            raise err(f"invalid chain name {name!r}: it is the name of a verdict (choose another name)", 0)
        # Declaring a user chain that exists flushes it (nf_tables).
        cur.chains[name] = []
        cur.policies[name] = None
    cur.touched = True


def _rule_counters(st, raw, ln, err):
    """`[PACKETS:BYTES]` before a rule, cut out exactly as iptables-restore does it (strtok on
    ":" then "]", which writes string ends into the line: a ":" later in the rule, when the
    brackets hold none, cuts the rule there). Without --counters iptables-restore ignores the
    values, so only the shape can be wrong: ((packets, bytes) or None, the rule text)."""
    n = len(raw)
    close = raw.find("]")
    if close < 0:
        raise err("bad counters: no \"]\" (iptables: \"need ]\"); write [PACKETS:BYTES] before the rule", 0)
    p = 1
    while p < n and raw[p] == ":":
        p += 1
    if p >= n:
        raise err("bad counters: expected [PACKETS:BYTES] before the rule (iptables: \"need :\")", 0)
    cuts = []
    q = raw.find(":", p)
    if q < 0:
        raise err("bad counters: expected [PACKETS:BYTES] before the rule (iptables: \"need ]\")", 0)
    pcnt = raw[p:q]
    cuts.append(q)
    p2 = q + 1
    while p2 < n and raw[p2] == "]":
        p2 += 1
    if p2 >= n:
        raise err("bad counters: expected [PACKETS:BYTES] before the rule (iptables: \"need ]\")", 0)
    q2 = raw.find("]", p2)
    bcnt = raw[p2:] if q2 < 0 else raw[p2:q2]
    if q2 >= 0:
        cuts.append(q2)
    start = close + 1
    end = min([c for c in cuts if c >= start], default=n)
    if end < n:
        st.warn(ln, f"the counters cut the rule at column {end + 1}, as iptables-restore cuts it")
    if pcnt.isdigit() and bcnt.isdigit():
        return (int(pcnt), int(bcnt)), raw[start:end]
    st.warn(ln, f"counters [{pcnt[:20]}:{bcnt[:20]}] are not numbers; iptables-restore ignores them "
                "(it reads counters only with --counters)")
    return None, raw[start:end]


def _find_command(st, words, err):
    """The line's command when it is not the first word (getopt lets options come first):
    (the words with the command and its arguments moved to the front, the command letter)."""
    w0 = words[0]
    if w0 == "COMMIT":
        raise err("COMMIT must be alone on its line, with nothing before or after it (iptables-restore "
                  "reads this line as a rule)", 0)
    if w0.startswith("*"):
        cur = st.cur
        raise err(f"table {cur.name!r} (line {cur.line}) has no COMMIT before the next table (end each table "
                  "with a line COMMIT)", 0)
    if w0[0] in "#:[":
        raise err(f"{w0[:20]!r} must start in the first column: iptables-restore does not skip blanks at "
                  "the start of a line", 0)
    found: list = []
    cur = st.cur
    try:
        parse_rule(words, cur.name, None, st.family, chains=cur.chains, unsupported=st.unsupported,
                   scan=found)
    except _RuleError as e:
        if not found:
            raise err(e.message if w0.startswith("-") else f"bad argument {w0!r}: a line in a table starts "
                      "with a command (-A, -I, -D, -R, -N, -X, -F, -Z, -P, -E), or is :CHAIN or COMMIT",
                      e.pos if w0.startswith("-") else 0) from None
    if not found:
        if not w0.startswith("-"):
            raise err(f"bad argument {w0!r}: a line in a table starts with a command (-A, -I, -D, -R, -N, -X, "
                      "-F, -Z, -P, -E), or is :CHAIN or COMMIT", 0)
        raise err("no command in this line (iptables: \"no command specified\"): start it with -A CHAIN, "
                  "-I CHAIN, ...", 0)
    c = found[0]
    moved = words[c.start:c.end] + words[:c.start] + words[c.end:]
    return moved, c.letter


# iptables-restore builds an argv of at most 255 entries (its own name, "-t", the table, then the
# line's words) and copies each word into a 1024-byte buffer: longer lines and words are refused.
MAX_WORDS = 251
MAX_WORD = 1023


def _check_limits(words, err):
    if len(words) > MAX_WORDS:
        raise err(f"{len(words):,} words on one line: iptables-restore handles at most {MAX_WORDS} "
                  "(\"Parser cannot handle more arguments\"); split the rule", 0)
    for i, w in enumerate(words):
        if len(w) > MAX_WORD:
            raise err(f"a word of {len(w):,} characters: iptables-restore refuses words longer than "
                      f"{MAX_WORD} characters (\"Parameter too long!\")", i)


def _command(cur, cmd, words, raw, ln, source, family, unsupported, counters, warnings, err, cache):
    chains = cur.chains

    def need_chain(pos=1):
        if len(words) <= pos:
            raise err(f"{words[0]} needs a chain name", 0)
        c = words[pos]
        if c not in chains:
            raise err(f"chain {c!r} does not exist in table {cur.name} (declare it with \":{c} - [0:0]\")", pos)
        return c

    def rules_from(start, chain):
        """The rule(s) of this line: `-s a,b -d c,d` expands into one rule per
        combination, sources outermost, as the iptables command does."""
        out = []
        try:
            variants = expand_address_lists(words[start:]) if "," in raw else [words[start:]]
        except _RuleError as e:
            raise err(e.message, None if e.pos is None else e.pos + start) from None
        for variant in variants:
            try:
                r = parse_rule(variant, cur.name, chain, family, chains=chains, unsupported=unsupported,
                               line=ln, counters=counters, cache=cache)
            except _RuleError as e:
                raise err(e.message, None if e.pos is None else e.pos + start) from None
            for u in r.unsupported():
                warnings.append(f"{source or 'rules'}:{ln}: {'-m' if not hasattr(u, 'target') else '-j'} "
                                f"{u.name} is not modelled by kplab (loaded as opaque)")
            out.append(r)
        return out

    def rule_from(start, chain):
        rs = rules_from(start, chain)
        if len(rs) != 1:
            raise err(f"{words[0]} takes one rule, but the address lists make {len(rs)}", start)
        return rs[0]

    def rulenum(pos, what):
        text = words[pos]
        if not text.isdigit() or int(text) < 1:
            raise err(f"invalid rule number {text!r} for {words[0]}: rule numbers start at 1", pos)
        return int(text)

    def no_more(pos, allowed=()):
        for k in range(pos, len(words)):
            if words[k] not in allowed:
                raise err(f"bad argument {words[k]!r} after {words[0]} {' '.join(words[1:k])}".rstrip(), k)

    if cmd == "A":
        c = need_chain()
        chains[c].extend(rules_from(2, c))
    elif cmd == "I":
        c = need_chain()
        pos, start = 1, 2
        if _xs_has_arg(words, 2):
            pos, start = rulenum(2, "-I"), 3
            if pos > len(chains[c]) + 1:
                raise err(f"index of insertion {pos} is too big (chain {c} has {len(chains[c])} rules)", 2)
        for r in rules_from(start, c):          # each goes to the same place in turn
            chains[c].insert(pos - 1, r)
    elif cmd == "D":
        c = need_chain()
        if _xs_has_arg(words, 2):
            k = rulenum(2, "-D")
            no_more(3, ("-v", "--verbose"))
            if k > len(chains[c]):
                raise err(f"index of deletion {k} is too big (chain {c} has {len(chains[c])} rules)", 2)
            del chains[c][k - 1]
        else:
            r = rule_from(2, c)
            for k, old in enumerate(chains[c]):
                if old == r:
                    del chains[c][k]
                    break
            else:
                raise err(f"no such rule in chain {c} to delete (iptables: \"Bad rule (does a matching rule "
                          "exist in that chain?)\")", 2)
    elif cmd == "C":
        c = need_chain()
        r = rule_from(2, c)
        if r not in chains[c]:
            raise err(f"-C: no such rule in chain {c} (iptables: \"Bad rule (does a matching rule exist in "
                      "that chain?)\")", 2)
    elif cmd == "R":
        c = need_chain()
        if not _xs_has_arg(words, 2):
            raise err("-R needs a chain and a rule number (-R CHAIN N RULE)", 0)
        k = rulenum(2, "-R")
        if k > len(chains[c]):
            raise err(f"index of replacement {k} is too big (chain {c} has {len(chains[c])} rules)", 2)
        chains[c][k - 1] = rule_from(3, c)
    elif cmd == "N":
        if len(words) < 2:
            raise err("-N needs a chain name", 0)
        no_more(2)
        _check_new_chain(words[1], err, 1)
        if words[1] in chains:
            raise err(f"chain {words[1]!r} already exists", 1)
        chains[words[1]] = []
        cur.policies[words[1]] = None
    elif cmd in "LS":
        pos = 1
        if _xs_has_arg(words, 1):
            need_chain()
            pos = 2
            if _xs_has_arg(words, 2):
                rulenum(2, words[0])
                pos = 3
        no_more(pos, ("-v", "--verbose", "-n", "--numeric", "-x", "--exact", "--line-numbers"))
    elif cmd == "F":
        named = _xs_has_arg(words, 1)
        targets = [need_chain()] if named else list(chains)
        no_more(2 if named else 1, ("-v", "--verbose"))
        for c in targets:
            chains[c].clear()
    elif cmd == "X":
        named = _xs_has_arg(words, 1)
        targets = [need_chain()] if named else [c for c in chains if c not in TABLE_CHAINS[cur.name]]
        no_more(2 if named else 1, ("-v", "--verbose"))
        for c in targets:
            if c in TABLE_CHAINS[cur.name]:
                raise err(f"cannot delete built-in chain {c}", 1)
            users = [(o, r.line) for o, rs in chains.items() if o not in targets for r in rs if r.jump == c]
            if users:
                raise err(f"cannot delete chain {c}: rule in chain {users[0][0]} (line {users[0][1]}) "
                          "still jumps to it", 1)
            if chains[c] and named:
                raise err(f"cannot delete chain {c}: it is not empty (flush it with -F first)", 1)
        for c in targets:
            del chains[c]
            del cur.policies[c]
    elif cmd == "Z":
        if _xs_has_arg(words, 1):
            need_chain()
            if _xs_has_arg(words, 2):
                raise err("-Z with a rule number: iptables-nft refuses it (zero the whole chain)", 2)
            no_more(2, ("-v", "--verbose"))
        else:
            no_more(1, ("-v", "--verbose"))
    elif cmd == "P":
        c = need_chain()
        if c not in TABLE_CHAINS[cur.name]:
            raise err(f"only built-in chains have a policy ({c} is a user chain)", 1)
        if not _xs_has_arg(words, 2) or words[2] not in ("ACCEPT", "DROP"):
            raise err("-P needs a chain and ACCEPT or DROP", 0)
        no_more(3)
        cur.policies[c] = words[2]
    elif cmd == "E":
        c = need_chain()
        if not _xs_has_arg(words, 2):
            raise err("-E needs the old and the new chain name", 0)
        no_more(3)
        new = words[2]
        _check_new_chain(new, err, 2)
        if new in chains:
            raise err(f"chain {new!r} already exists", 2)
        cur.chains = {(new if k == c else k): v for k, v in chains.items()}
        cur.policies = {(new if k == c else k): v for k, v in cur.policies.items()}
        for k, rs in cur.chains.items():
            for n, r in enumerate(rs):
                if r.jump == c:
                    rs[n] = Rule(r.ip, r.matches, type(r.target)(new), line=r.line, counters=r.counters)


def _check_new_chain(name, err, pos):
    """A name `-N` or `-E` may give a chain (iptables' own checks)."""
    if len(name) > MAX_CHAIN_NAME:
        raise err(f"chain name {name!r} is longer than {MAX_CHAIN_NAME} characters", pos)
    if name.startswith(("-", "!")):
        raise err(f"invalid chain name {name!r}: a chain name may not start with {name[0]!r}", pos)
    if name in VERDICT_NAMES or name in TARGETS or name in XTABLES_TARGETS:
        raise err(f"invalid chain name {name!r}: it is the name of a target (iptables: \"chain name may not "
                  "clash with target name\")", pos)


def _finish_table(cur: _TableBuilder, source, family) -> Table:
    """Check what the kernel checks when the table is committed, then freeze it."""
    table = cur.freeze()
    validate_table(table, source)
    return table


def validate_table(table: Table, source: str | None = None) -> None:
    """Refuse what nf_tables refuses at commit time.

    - a jump or goto nesting deeper than 16 chains from a built-in chain
      (which is how a reachable loop fails: "Too many links");
    - a target in a table it does not belong to (REJECT outside filter, the
      NAT targets outside nat), anywhere;
    - a target (or addrtype --limit-iface-*) reached from a hook where it is
      invalid, even through user chains.

    Linear in the size of the table: one pass over the rules (which also
    collects the jump graph), one depth-first search of the graph from the
    built-in chains, and, when some rule is limited to some hooks, one pass
    in topological order that gives each chain the hooks it is reached from.
    """
    def fail(msg, rule):
        raise RulesetError(msg, file=source, line=rule.line if rule is not None else None)

    chains = table.chains
    nat = table.name == "nat"
    limited = []                       # (chain, rule, allowed hooks, what)
    graph = {}                         # chain -> {user chain it jumps or goes to: first rule that does}
    for c in chains.values():
        kids = graph[c.name] = {}
        for r in c.rules:
            t = r.target
            if t is not None:
                name = t.name
                if nat and name == "DROP":
                    fail("DROP in the nat table is refused (\"nat table is not intended for filtering\"); "
                         "drop in the filter table", r)
                if name in TARGET_HOOKS:
                    tbl, hooks = TARGET_HOOKS[name]
                    if tbl != table.name:
                        fail(f"{name} is only valid in the {tbl} table, not {table.name}", r)
                    limited.append((c.name, r, hooks, name))
                j = getattr(t, "chain", None)           # Rule.jump
                if j is not None and j not in kids:
                    kids[j] = r
            for m in r.matches:
                ah = getattr(m, "allowed_hooks", None)
                if ah is not None and ah() is not None:
                    limited.append((c.name, r, ah(), getattr(m, "hook_text", None)
                                    or f"-m {m.name} --limit-iface-{m.limit}"))
    bases = [b.name for b in table.builtin_chains()]
    height, order = _heights(graph, bases, fail)
    for b in bases:
        if height[b] >= JUMP_STACK_SIZE:
            path = _longest_path(graph, b, height)
            # the rule whose jump goes past the limit (the line the kernel names first)
            rule = graph[path[JUMP_STACK_SIZE - 1]].get(path[JUMP_STACK_SIZE])
            shown = path if len(path) <= 20 else path[:8] + ["..."] + path[-3:]
            fail(f"jumps nest {len(path) - 1} deep from built-in chain {b} (the kernel allows "
                 f"{JUMP_STACK_SIZE - 1}): {' -> '.join(shown)}", rule)
    if not limited:
        return
    hooks_of = _hooks_reaching(graph, bases, order)
    verdicts: dict = {}                # (hooks, allowed) -> the hooks not allowed, sorted
    for cname, r, allowed, what in limited:
        key = (hooks_of.get(cname, _NO_HOOKS), tuple(allowed))
        bad = verdicts.get(key)
        if bad is None:
            bad = verdicts[key] = sorted(h for h in key[0] if h not in allowed)
        if bad:
            via = "" if cname in TABLE_CHAINS[table.name] else f" (chain {cname} is reached from {bad[0]})"
            fail(f"{what} is not valid in {table.name} {bad[0]}{via}; valid hooks: {', '.join(allowed)}", r)


def _heights(graph, bases, fail) -> tuple:
    """Longest jump path below each chain reachable from a built-in chain, refusing a
    reachable loop (iterative depth-first search), and the chains in the order the
    search finished them (children before parents).

    `graph` maps each chain to the chains it jumps to, with the first rule that does.
    While a chain is on the search's path its height is ON_PATH."""
    ON_PATH = -1
    height: dict = {}
    order: list = []
    get = height.get
    for b in bases:
        if b in height:
            continue
        height[b] = ON_PATH
        stack = [(b, iter(graph[b]))]
        while stack:
            name, it = stack[-1]
            for child in it:
                h = get(child)
                if h is None:
                    kids = graph[child]
                    if len(kids) <= 1:
                        # a leaf, or a chain whose one target is done (KUBE-SEP-* -> KUBE-MARK-MASQ):
                        # it finishes at once, as it would after a push and a pop
                        hk = get(next(iter(kids)), ON_PATH) if kids else -1
                        if not kids or hk >= 0:
                            height[child] = hk + 1
                            order.append(child)
                            continue
                    height[child] = ON_PATH
                    stack.append((child, iter(kids)))
                    break
                if h == ON_PATH:
                    path = [n for n, _ in stack]
                    loop = " -> ".join(path[path.index(child):] + [child])
                    fail(f"jump loop reachable from built-in chain {b}: {loop} "
                         "(the kernel refuses it: Too many links)", graph[name][child])
            else:
                stack.pop()
                kids = graph[name]
                height[name] = max(map(height.__getitem__, kids)) + 1 if kids else 0
                order.append(name)
    return height, order


def _longest_path(graph, base, height) -> list:
    path = [base]
    while height[path[-1]] > 0:
        kids = graph[path[-1]]
        path.append(max(kids, key=lambda k: height.get(k, -1)))
    return path


def _hooks_reaching(graph, bases, order) -> dict:
    """For each chain reachable from a built-in chain, the built-in chains (hooks) it is
    reached from, as a frozenset. Each chain passes its hooks on to the chains it jumps
    to, parents before children: in the reverse of the order `_heights` finished them in
    (the reachable graph has no loop, or `_heights` refused it)."""
    hooks_of: dict = {b: frozenset((b,)) for b in bases}
    for name in reversed(order):
        mine = hooks_of[name]
        for child in graph[name]:
            got = hooks_of.get(child)
            # frozensets, shared: most chains are reached from one chain and take its set as it is
            hooks_of[child] = mine if got is None or got is mine else got | mine
    return hooks_of


_NO_HOOKS = frozenset()


def guess_family(text: str) -> int:
    """6 when the rules' addresses are IPv6 (ip6tables-save text), else 4.

    An IPv6 address after -s, -d, --to-destination or --to-source has two colons with
    only hex digits between them. Only the lines with such a pair (in IPv4 text, a time
    in a comment at most) are searched for the option: searching the whole text for it
    takes four times as long (tens of ms for a 10,000-Service dump)."""
    pos = 0
    while True:
        m = _COLON_PAIR.search(text, pos)
        if m is None:
            return 4
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        if end < 0:
            end = len(text)
        if _V6_OPTION.search(text, start, end):
            return 6
        pos = end


_COLON_PAIR = re.compile(r":[0-9a-fA-F]*:")
_V6_OPTION = re.compile(r"(?:-[sd]|--to-destination|--to-source) \[?[0-9a-fA-F]*:[0-9a-fA-F]*:")


# --------------------------------------------------------------------------
# Writing

def save(ruleset: Ruleset, *, counters: bool = False) -> str:
    """The ruleset as `iptables-save` prints it (without the `#` lines)."""
    out = []
    for t in ruleset.ordered_tables():
        out.append(f"*{t.name}")
        for c in t.chains.values():
            out.append(f":{c.name} {c.policy or '-'} [0:0]")
        for c in t.chains.values():
            for r in c.rules:
                line = r.text(c.name)
                if counters:
                    p, b = r.counters or (0, 0)
                    line = f"[{p}:{b}] {line}"
                out.append(line)
        out.append("COMMIT")
    return "\n".join(out) + ("\n" if out else "")


#: The largest rules file `load` reads. kplab parses a file in memory and needs about ten times
#: its size; the iptables-save dump of a 10,000-Service cluster is a few tens of MB.
MAX_FILE_BYTES = 128 * 2**20


def load(path: str, **kw) -> Ruleset:
    """Read and parse a rules file (see `parse`). A file larger than MAX_FILE_BYTES is
    refused before it is read (a device or a pipe is read up to that size only)."""
    from ..errors import KplabError
    limit = MAX_FILE_BYTES
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size > limit:
                raise ParseError(_too_large(st.st_size), file=path)
            data = f.read(limit + 1)
            if len(data) > limit:
                raise ParseError(_too_large(None), file=path)
    except IsADirectoryError:
        raise KplabError(f"{path}: is a directory, not a rules file (give the iptables-save file in it)") from None
    except OSError as e:
        raise KplabError(f"{path}: cannot read it: {e.strerror}") from None
    try:
        # decoded whole, without newline translation: a CRLF file keeps its carriage
        # returns, which iptables-restore refuses
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise ParseError(f"not UTF-8 text (byte 0x{data[e.start]:02x}, column {column}): iptables-save writes UTF-8 "
                         "text; is this the right file? (re-save it as UTF-8)", file=path, line=line) from None
    del data                          # not kept while the text is parsed (tens of MB for a large dump)
    return parse(text, source=path, **kw)


def _too_large(size) -> str:
    what = f"{size:,} bytes" if size is not None else "more than that"
    return (f"the file is {what}: kplab reads rules files of at most {MAX_FILE_BYTES // 2**20} MiB (it parses "
            "them in memory, about ten times their size; a kube-proxy dump of 10,000 Services is a few tens of "
            "MB): is it the right file? If so, load one table at a time")
