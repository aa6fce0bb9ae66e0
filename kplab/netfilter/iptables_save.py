"""Read and write the iptables-save / iptables-restore text format.

`parse()` reads what `iptables-save` prints and what `iptables-restore`
accepts (kube-proxy writes the latter: `-d 10.0.0.1` without `/32`,
`--or-mark`, unquoted comments, `-X` lines). It refuses, with the file and
line, what the kernel (iptables 1.8.9, nf_tables backend) refuses.

`save()` prints a ruleset exactly as `iptables-save` prints it after the
kernel loaded it: addresses with their prefix, generic options first, `-m
tcp` added where iptables adds it, marks and probabilities in the kernel's
form, comments quoted as xtables_save_string quotes them.

Syntax of one rule line (after `-A CHAIN`), as iptables reads it:

    rule    := (["!"] generic | "-m" MODULE | ["!"] "--OPTION" VALUE*)* [target]
    generic := -s ADDR | -d ADDR | -p PROTO | -i IFACE | -o IFACE | -f | -c P,B
    target  := -j TARGET option* | -g CHAIN
"""
from __future__ import annotations

import gc
from dataclasses import dataclass

from ..errors import ParseError, RulesetError
from .hooks import JUMP_STACK_SIZE, NO_IN_IFACE, NO_OUT_IFACE, TABLE_CHAINS, TARGET_HOOKS, TABLES
from .matches import (MATCHES, Destination, Fragment, InInterface, OpaqueMatch, OutInterface,
                      Protocol, Source)
from .rules import Chain, Opt, Rule, RuleContext, Ruleset, Table
from .targets import TARGETS, Goto, Jump, OpaqueTarget
from .values import OptionError, parse_addr_mask, parse_proto

# --------------------------------------------------------------------------
# Tokens

class _TokenError(ValueError):
    pass


def tokenize(line: str) -> list[str]:
    """Split a line into words exactly as iptables-restore (1.8.9) does.

    Words are separated by blanks. A double quote opens a quoted part that
    continues the current word; the closing quote always ends the word
    (`"a"b` is two words, `a"b c"` one). Inside quotes a backslash escapes the
    next character. A quote never closed takes the rest of the line, newline
    included, as the word's text.
    """
    if '"' not in line:
        return line.split()
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
        pieces = part.split()
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

GENERIC = {
    "-s": "s", "--source": "s", "--src": "s",
    "-d": "d", "--destination": "d", "--dst": "d",
    "-p": "p", "--protocol": "p",
    "-i": "i", "--in-interface": "i",
    "-o": "o", "--out-interface": "o",
    "-j": "j", "--jump": "j",
    "-g": "g", "--goto": "g",
    "-m": "m", "--match": "m",
    "-f": "f", "--fragment": "f",
    "-c": "c", "--set-counters": "c",
}
_GENERIC_LONG = sorted(k for k in GENERIC if k.startswith("--"))
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


def parse_rule(words: list, table: str, chain: str, family: int = 4, *,
               chains=(), unsupported: str = "error", line: int | None = None,
               counters=None, cache: dict | None = None) -> Rule:
    """Parse the words of one rule (what follows `-A CHAIN`).

    `chains` are the chain names of the table known so far (a `-j NAME` that
    is neither a target nor one of them is refused, as iptables does).
    `unsupported` is "error" (refuse modules kplab does not model) or
    "opaque" (keep them, unexamined). Raises `_RuleError`.
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
        g = GENERIC.get(w)
        owner = None
        if g is None and w.startswith("-") and len(w) > 1:
            owner, name = _find_owner(w, modules, target, proto)
            if owner is None and w.startswith("--") and len(w) > 2:
                g = _generic_prefix(w, modules, target)
        if g is not None:
            if g == "f":
                if frag is not None:
                    raise _RuleError("multiple -f flags not allowed", i)
                frag = Fragment(invert)
                invert = False
                i += 1
                continue
            if i + 1 >= n:
                raise _RuleError(f"option \"{w}\" requires an argument", i)
            val = words[i + 1]
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
                        raise _RuleError(f"can't use -i with {chain}", i)
                    if g == "o" and chain in NO_OUT_IFACE:
                        raise _RuleError(f"can't use -o with {chain}", i)
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
                        raise _RuleError(f"match \"{val}\" is not modelled by kplab" if val else
                                         "empty match name", i + 1)
                elif g in "jg":
                    if target is not None or jump is not None:
                        raise _RuleError("multiple -j/-g flags not allowed", i)
                    if invert:
                        raise _RuleError("cannot have ! before -j", i)
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
                        raise _RuleError(f"chain or target {val!r} does not exist", i + 1)
                elif g == "c":
                    a, comma, b = val.partition(",")
                    if not (comma and a.isdigit() and b.isdigit()):
                        raise _RuleError(f"-c needs PACKETS,BYTES, got {val!r}", i + 1)
                    counters = (int(a), int(b))
            except OptionError as e:
                raise _RuleError(str(e), i + 1) from None
            invert = False
            i += 2
            continue
        if w.startswith("-") and len(w) > 1:
            if owner is None:
                last = target if target is not None and target.opaque_args is not None else (
                    modules[-1] if modules and modules[-1].opaque_args is not None else None)
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
                raise _RuleError(f"unknown option \"{w}\"", i)
            if owner == "implicit":
                owner = _Loaded(MATCHES[PROTO_MODULES[proto.proto]], [], i, implicit=True)
                modules.append(owner)
            nargs, invertible = owner.cls.OPTIONS[name]
            if invert and not invertible:
                raise _RuleError(f"option \"--{name}\" cannot be inverted", i)
            if i + nargs >= n and nargs:
                raise _RuleError(f"option \"--{name}\" requires an argument", i)
            values = tuple(words[i + 1:i + 1 + nargs])
            owner.opts.append(Opt(name, values, invert, i))
            invert = False
            i += 1 + nargs
            continue
        raise _RuleError(f"bad argument \"{w}\"", i)
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
            if not getattr(obj, "per_rule_state", False):
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


def _generic_prefix(w, modules, target):
    """getopt_long accepts an unambiguous prefix of a long option."""
    cands = [k for k in _GENERIC_LONG if k.startswith(w)]
    if not cands:
        return None
    others = [n for m in modules + ([target] if target else []) for n in m.names() if ("--" + n).startswith(w)]
    if len({GENERIC[k] for k in cands}) == 1 and not others:
        return GENERIC[cands[0]]
    return None


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


def _find_owner(w, modules, target, proto):
    """Which loaded module takes option `w`: the target first, then the
    matches in the order they were loaded, then the protocol's own match
    (`-p tcp --dport 80` loads `-m tcp`), as iptables' command_default does."""
    if not w.startswith("--"):
        return None, None
    name = w[2:]
    # iptables merges each newly loaded module's options in front of the
    # older ones, so the most recently loaded module that knows the option
    # takes it (a rule may load `-m recent` twice).
    if target is None or (modules and modules[-1].pos > target.pos):
        for o in reversed(modules):
            if o.opaque_args is None:
                cls = o.cls
                if name in cls.OPTIONS:
                    return o, name
                canon = cls.ALIASES.get(name)
                if canon:
                    return o, canon
        if target is not None and target.opaque_args is None:
            canon = target.lookup(name)
            if canon:
                return target, canon
        owners = modules[::-1] + ([target] if target is not None else [])
    else:
        owners = modules[::-1]
        owners.insert(sum(1 for m in modules if m.pos > target.pos), target)
        for o in owners:
            canon = o.lookup(name)
            if canon:
                return o, canon
    implicit_cls = None
    if proto is not None and proto.proto in PROTO_MODULES:
        implicit_cls = MATCHES[PROTO_MODULES[proto.proto]]
        if any(m.cls is implicit_cls for m in modules):
            implicit_cls = None
    if implicit_cls is not None and (name in implicit_cls.OPTIONS or name in implicit_cls.ALIASES):
        return "implicit", implicit_cls.ALIASES.get(name, name)
    # unambiguous prefix of a loaded module's option
    hits = []
    for o in owners:
        for n in o.names():
            if n.startswith(name):
                hits.append((o, o.lookup(n)))
    if implicit_cls is not None:
        for n in list(implicit_cls.OPTIONS) + list(implicit_cls.ALIASES):
            if n.startswith(name):
                hits.append(("implicit", implicit_cls.ALIASES.get(n, n)))
    uniq = {(id(o), c) for o, c in hits}
    if len(uniq) == 1:
        return hits[0]
    return None, None


# --------------------------------------------------------------------------
# Whole files

COMMANDS = {
    "-A": "A", "--append": "A", "-I": "I", "--insert": "I", "-D": "D", "--delete": "D",
    "-R": "R", "--replace": "R", "-N": "N", "--new-chain": "N", "--new": "N",
    "-X": "X", "--delete-chain": "X", "-F": "F", "--flush": "F", "-Z": "Z", "--zero": "Z",
    "-P": "P", "--policy": "P", "-E": "E", "--rename-chain": "E",
}


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
        return Table(self.name, {c: Chain(c, tuple(self.chains[c]), self.policies[c]) for c in builtin + users})


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
        return _parse(text, source, family, unsupported)
    finally:
        if gc_was_on:
            gc.enable()


def _parse(text, source, family, unsupported) -> Ruleset:
    tables: dict[str, Table] = {}
    warnings: list[str] = []
    cache: dict = {}
    cur: _TableBuilder | None = None
    lines = text.split("\n")
    for ln, raw in enumerate(lines, 1):
        if raw.endswith("\r"):
            raise ParseError("line ends with a carriage return (CRLF line endings); convert the file to "
                             "Unix line endings", file=source, line=ln, text=raw.rstrip("\r"))
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def err(msg, pos=None, cls=ParseError, hint=None):
            col = _column(raw, pos) if pos is not None else None
            return cls(msg, file=source, line=ln, text=raw, column=col, hint=hint)

        if line.startswith("*"):
            if cur is not None:
                raise err(f"table {cur.name!r} (line {cur.line}) has no COMMIT before the next table")
            name = line[1:].strip()
            if name not in TABLES:
                raise err(f"unknown table {name!r} (known: {', '.join(TABLES)})")
            cur = _TableBuilder(name, ln)
            continue
        if line == "COMMIT":
            if cur is None:
                raise err("COMMIT outside a table (no *table line before it)")
            if cur.touched:
                tables[cur.name] = _finish_table(cur, source, family)
            else:
                tables.pop(cur.name, None)
            cur = None
            continue
        if cur is None:
            raise err("line before the first *table line (every rule belongs to a table: start with "
                      "*filter, *nat, ...)")
        counters = None
        if line.startswith("["):
            close = line.find("]")
            pc, colon, bc = line[1:close].partition(":") if close > 0 else ("", "", "")
            if close < 0 or not (colon and pc.isdigit() and bc.isdigit()):
                raise err("bad counters: expected [PACKETS:BYTES]", 0)
            counters = (int(pc), int(bc))
            line = line[close + 1:].lstrip()
            raw = line
            if not line:
                raise err("counters [PACKETS:BYTES] with no rule after them")
        if line.startswith(":"):
            parts = line[1:].split()
            if len(parts) < 2:
                raise err("chain line needs a name and a policy: \":NAME POLICY [0:0]\"")
            name, policy = parts[0], parts[1]
            builtin = name in TABLE_CHAINS[cur.name]
            if builtin:
                # "-" keeps the current policy (iptables-restore input may say so)
                if policy not in ("ACCEPT", "DROP", "-"):
                    raise err(f"bad policy {policy!r} for built-in chain {name} (ACCEPT or DROP)", 1)
                if policy != "-":
                    cur.policies[name] = policy
            else:
                _check_chain_name(name, err)
                # Declaring a user chain that exists flushes it (nf_tables).
                cur.chains[name] = []
                cur.policies[name] = None
            cur.touched = True
            continue
        try:
            words = tokenize(line)
        except _TokenError as e:
            raise err(str(e)) from None
        _check_limits(words, err)
        cmd = COMMANDS.get(words[0])
        if cmd is None:
            if words[0] in ("-t", "--table"):
                raise err("\"-t\" cannot be used in iptables-restore input; use a *table line", 0)
            raise err(f"unknown command {words[0]!r} (expected -A, -I, -D, -R, -N, -X, -F, -Z, -P, -E, "
                      ":CHAIN, COMMIT or *table)", 0)
        if '"' in line and unclosed_quote(line):
            warnings.append(f"{source or 'rules'}:{ln}: a double quote is not closed; iptables-restore takes "
                            "the rest of the line as one word, as kplab does")
        _command(cur, cmd, words, raw if not counters else line, ln, source, family, unsupported,
                 counters, warnings, err, cache)
        if cmd in "AINPE":
            cur.touched = True
    if cur is not None:
        raise ParseError(f"table {cur.name!r} (line {cur.line}) has no COMMIT at the end of the file",
                         file=source, line=len(lines) if lines[-1] else max(1, len(lines) - 1))
    return Ruleset(tables, family, tuple(warnings), source)


# iptables-restore builds an argv of at most 255 entries (its own name, "-t", the table, then the
# line's words) and copies each word into a 1024-byte buffer: longer lines and words are refused.
MAX_WORDS = 251
MAX_WORD = 1023


def _check_limits(words, err):
    if len(words) > MAX_WORDS:
        raise err(f"{len(words)} words on one line: iptables-restore handles at most {MAX_WORDS} "
                  "(\"Parser cannot handle more arguments\"); split the rule", 0)
    for i, w in enumerate(words):
        if len(w) > MAX_WORD:
            raise err(f"a word of {len(w):,} characters: iptables-restore refuses words longer than "
                      f"{MAX_WORD} characters (\"Parameter too long!\")", i)


def _check_chain_name(name, err):
    if len(name) > MAX_CHAIN_NAME:
        raise err(f"chain name {name!r} is longer than {MAX_CHAIN_NAME} characters", 1)
    if name.startswith(("-", "!")) or name in TARGETS or name in ("", "RETURN"):
        raise err(f"invalid chain name {name!r}", 1)


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

    if cmd == "A":
        c = need_chain()
        chains[c].extend(rules_from(2, c))
    elif cmd == "I":
        c = need_chain()
        pos, start = 1, 2
        if len(words) > 2 and words[2].isdigit():
            pos, start = int(words[2]), 3
            if not 1 <= pos <= len(chains[c]) + 1:
                raise err(f"index of insertion {pos} is too big (chain {c} has {len(chains[c])} rules)", 2)
        for r in rules_from(start, c):          # each goes to the same place in turn
            chains[c].insert(pos - 1, r)
    elif cmd == "D":
        c = need_chain()
        if len(words) == 3 and words[2].isdigit():
            k = int(words[2])
            if not 1 <= k <= len(chains[c]):
                raise err(f"index of deletion {k} is too big (chain {c} has {len(chains[c])} rules)", 2)
            del chains[c][k - 1]
        else:
            r = rule_from(2, c)
            for k, old in enumerate(chains[c]):
                if old == r:
                    del chains[c][k]
                    break
            else:
                raise err(f"no such rule in chain {c} to delete", 2)
    elif cmd == "R":
        c = need_chain()
        if len(words) < 3 or not words[2].isdigit():
            raise err("-R needs a chain and a rule number", 0)
        k = int(words[2])
        if not 1 <= k <= len(chains[c]):
            raise err(f"index of replacement {k} is too big (chain {c} has {len(chains[c])} rules)", 2)
        chains[c][k - 1] = rule_from(3, c)
    elif cmd == "N":
        if len(words) != 2:
            raise err("-N needs exactly one chain name", 0)
        _check_chain_name(words[1], err)
        if words[1] in chains:
            raise err(f"chain {words[1]!r} already exists", 1)
        chains[words[1]] = []
        cur.policies[words[1]] = None
    elif cmd == "F":
        for c in ([need_chain()] if len(words) > 1 else list(chains)):
            chains[c].clear()
    elif cmd == "X":
        targets = [need_chain()] if len(words) > 1 else [c for c in chains if c not in TABLE_CHAINS[cur.name]]
        for c in targets:
            if c in TABLE_CHAINS[cur.name]:
                raise err(f"cannot delete built-in chain {c}", 1)
            users = [(o, r.line) for o, rs in chains.items() if o not in targets for r in rs if r.jump == c]
            if users:
                raise err(f"cannot delete chain {c}: rule in chain {users[0][0]} (line {users[0][1]}) "
                          "still jumps to it", 1)
            if chains[c] and len(words) > 1:
                raise err(f"cannot delete chain {c}: it is not empty (flush it with -F first)", 1)
        for c in targets:
            del chains[c]
            del cur.policies[c]
    elif cmd == "Z":
        pass
    elif cmd == "P":
        c = need_chain()
        if c not in TABLE_CHAINS[cur.name]:
            raise err(f"only built-in chains have a policy ({c} is a user chain)", 1)
        if len(words) != 3 or words[2] not in ("ACCEPT", "DROP"):
            raise err("-P needs a chain and ACCEPT or DROP", 0)
        cur.policies[c] = words[2]
    elif cmd == "E":
        c = need_chain()
        if len(words) != 3:
            raise err("-E needs the old and the new chain name", 0)
        new = words[2]
        _check_chain_name(new, err)
        if new in chains:
            raise err(f"chain {new!r} already exists", 2)
        cur.chains = {(new if k == c else k): v for k, v in chains.items()}
        cur.policies = {(new if k == c else k): v for k, v in cur.policies.items()}
        for k, rs in cur.chains.items():
            for n, r in enumerate(rs):
                if r.jump == c:
                    rs[n] = Rule(r.ip, r.matches, type(r.target)(new), line=r.line, counters=r.counters)


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

    Each chain is visited once per built-in chain (linear in the size of the
    jump graph, however many paths lead to a chain).
    """
    def fail(msg, rule):
        raise RulesetError(msg, file=source, line=rule.line if rule is not None else None)

    chains = table.chains
    limited = []                       # (chain, rule, allowed hooks, what)
    for c in chains.values():
        for r in c.rules:
            t = r.target
            if table.name == "nat" and t is not None and t.name == "DROP":
                fail("DROP in the nat table is refused (\"nat table is not intended for filtering\"); "
                     "drop in the filter table", r)
            if t is not None and t.name in TARGET_HOOKS:
                tbl, hooks = TARGET_HOOKS[t.name]
                if tbl != table.name:
                    fail(f"{t.name} is only valid in the {tbl} table, not {table.name}", r)
                limited.append((c.name, r, hooks, t.name))
            for m in r.matches:
                ah = getattr(m, "allowed_hooks", None)
                if ah is not None and ah() is not None:
                    limited.append((c.name, r, ah(), f"-m {m.name} --limit-iface-{m.limit}"))
    bases = [b.name for b in table.builtin_chains()]
    height = _heights(table, bases, fail)
    for b in bases:
        if height[b] >= JUMP_STACK_SIZE:
            path = _longest_path(table, b, height)
            rule = _jump_rule(table, path[-2], path[-1])
            fail(f"jumps nest {len(path) - 1} deep from built-in chain {b} (the kernel allows "
                 f"{JUMP_STACK_SIZE - 1}): {' -> '.join(path)}", rule)
    if not limited:
        return
    hooks_of = _hooks_reaching(table, bases)
    for cname, r, allowed, what in limited:
        bad = sorted(h for h in hooks_of.get(cname, ()) if h not in allowed)
        if bad:
            via = "" if cname in TABLE_CHAINS[table.name] else f" (chain {cname} is reached from {bad[0]})"
            fail(f"{what} is not valid in {table.name} {bad[0]}{via}; valid hooks: {', '.join(allowed)}", r)


def _targets(chain):
    """The user chains a chain jumps or goes to, in rule order, each once."""
    seen = {}
    for r in chain.rules:
        j = r.jump
        if j is not None and j not in seen:
            seen[j] = r
    return seen


def _heights(table, bases, fail) -> dict:
    """Longest jump path below each chain reachable from a built-in chain,
    refusing a reachable loop. Iterative depth-first search with colours."""
    chains = table.chains
    height: dict = {}
    on_path: dict = {}
    for b in bases:
        if b in height:
            continue
        stack = [(b, iter(_targets(chains[b]).items()))]
        on_path[b] = True
        best = {b: 0}
        while stack:
            name, it = stack[-1]
            for child, rule in it:
                if on_path.get(child):
                    path = [n for n, _ in stack]
                    loop = " -> ".join(path[path.index(child):] + [child])
                    fail(f"jump loop reachable from built-in chain {b}: {loop} "
                         "(the kernel refuses it: Too many links)", rule)
                if child in height:
                    best[name] = max(best[name], height[child] + 1)
                    continue
                on_path[child] = True
                best[child] = 0
                stack.append((child, iter(_targets(chains[child]).items())))
                break
            else:
                stack.pop()
                on_path[name] = False
                height[name] = best[name]
                if stack:
                    parent = stack[-1][0]
                    best[parent] = max(best[parent], height[name] + 1)
    return height


def _longest_path(table, base, height) -> list:
    path = [base]
    while height[path[-1]] > 0:
        kids = _targets(table.chains[path[-1]])
        path.append(max(kids, key=lambda k: height.get(k, -1)))
    return path


def _jump_rule(table, frm, to):
    return _targets(table.chains[frm]).get(to)


def _hooks_reaching(table, bases) -> dict:
    """For each chain, the built-in chains (hooks) from which it is reached."""
    chains = table.chains
    hooks_of: dict = {}
    for b in bases:
        seen = {b}
        todo = [b]
        while todo:
            name = todo.pop()
            hooks_of.setdefault(name, set()).add(b)
            for child in _targets(chains[name]):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
    return hooks_of


def guess_family(text: str) -> int:
    """6 when the rules' addresses are IPv6 (ip6tables-save text), else 4."""
    import re
    if re.search(r"(?:-[sd]|--to-destination|--to-source) \[?[0-9a-fA-F]*:[0-9a-fA-F]*:", text):
        return 6
    return 4


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


def load(path: str, **kw) -> Ruleset:
    """Read and parse a rules file (see `parse`)."""
    from ..errors import KplabError
    try:
        # newline="": keep a CRLF file's carriage returns, which iptables-restore refuses
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ParseError(f"not UTF-8 text (byte {e.start}): is this an iptables-save file?", file=path) from None
    except OSError as e:
        raise KplabError(f"{path}: {e.strerror}") from None
    return parse(text, source=path, **kw)
