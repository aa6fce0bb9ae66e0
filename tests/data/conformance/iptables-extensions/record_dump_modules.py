"""Record what the kernel does with the test lines of the modules real node dumps carry
(state, limit, connmark, CONNMARK, NFLOG, physdev, owner): writes
`cases-dump-modules.json`, in the format of `cases.json` (see README.md).

Run as root on the project's machine (iptables 1.8.9 nf_tables):

    python3 tests/data/conformance/iptables-extensions/record_dump_modules.py

Everything happens in one new network namespace of its own (`kplab-<pid>-conformance`),
connected to nothing and deleted at the end. For each case, as for cases.json:
`iptables -t TABLE -A CHAIN RULE` (RULE split with POSIX shell rules), the `-A` line of
`iptables-save -t TABLE`, the chain flushed; the saved form appended again (fixpoint); and
`*TABLE / -A CHAIN RULE / COMMIT` through `iptables-restore --noflush` (restore_same).

Upstream lines come from iptables' own `extensions/*.t` files (the text of each file is
below, with where it was read); lines marked `kplab` are the project's own, written to pin
down edge cases (prefixes, limits, hooks) and recorded the same way.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "cases-dump-modules.json"

#: (file, where it was read, its text). `*table` and `:CHAINS` lines as in the .t format.
UPSTREAM = [
    ("extensions/libxt_state.t", "an upstream iptables copy found by its text (version not pinned)", """\
:INPUT,FORWARD,OUTPUT
-m state --state INVALID;=;OK
-m state --state NEW,RELATED;=;OK
-m state --state UNTRACKED;=;OK
-m state wrong;;FAIL
-m state;;FAIL
"""),
    ("extensions/libxt_limit.t", "an upstream iptables copy found by its text (version not pinned)", """\
:INPUT,FORWARD,OUTPUT
-m limit --limit 1/sec;=;OK
-m limit --limit 1/min;=;OK
-m limit --limit 1000/hour;=;OK
-m limit --limit 1000/day;=;OK
-m limit --limit 1/sec --limit-burst 1;=;OK
"""),
    ("extensions/libxt_connmark.t", "an upstream iptables copy found by its text (the version with "
     "0x-prefixed expectations, as an upstream diff of the file shows)", """\
:PREROUTING,FORWARD,OUTPUT,POSTROUTING
*mangle
-m connmark --mark 0xffffffff;=;OK
-m connmark --mark 0xffffffff/0xffffffff;-m connmark --mark 0xffffffff;OK
-m connmark --mark 0xffffffff/0x0;=;OK
-m connmark --mark 0/0xffffffff;-m connmark --mark 0x0;OK
-m connmark --mark -1;;FAIL
-m connmark --mark 0xfffffffff;;FAIL
-m connmark;;FAIL
"""),
    ("extensions/libxt_CONNMARK.t", "an upstream iptables copy found by its text (the version expecting "
     "both masks in the saved form, as an upstream diff of the file shows)", """\
:PREROUTING,FORWARD,OUTPUT,POSTROUTING
*mangle
-j CONNMARK --restore-mark;-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff;OK
-j CONNMARK --save-mark;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff;OK
-j CONNMARK --save-mark --nfmask 0xfffffff --ctmask 0xffffffff;=;OK
-j CONNMARK --restore-mark --nfmask 0xfffffff --ctmask 0xffffffff;=;OK
-j CONNMARK;;FAIL
"""),
    ("extensions/libxt_NFLOG.t",
     "aosp-mirror/platform_external_iptables 05286bab77a6e0f9502e8fb99e1c53ed15663f3f", """\
:INPUT,FORWARD,OUTPUT
-j NFLOG --nflog-group 1;=;OK
-j NFLOG --nflog-group 65535;=;OK
-j NFLOG --nflog-group 65536;;FAIL
-j NFLOG --nflog-group 0;-j NFLOG;OK
# `--nflog-range` is broken and only supported by xtables-legacy.  It
# has been superseded by `--nflog--group`.
# -j NFLOG --nflog-range 1;=;OK
# -j NFLOG --nflog-range 4294967295;=;OK
# -j NFLOG --nflog-range 4294967296;;FAIL
# -j NFLOG --nflog-range -1;;FAIL
-j NFLOG --nflog-size 0;=;OK
-j NFLOG --nflog-size 1;=;OK
-j NFLOG --nflog-size 4294967295;=;OK
-j NFLOG --nflog-size 4294967296;;FAIL
-j NFLOG --nflog-size -1;;FAIL
-j NFLOG --nflog-prefix xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx;=;OK
-j NFLOG --nflog-prefix xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx;-j NFLOG --nflog-prefix xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx;OK
-j NFLOG --nflog-threshold 1;=;OK
# ERROR: line 13 (should fail: iptables -A INPUT -j NFLOG --nflog-threshold 0
# -j NFLOG --nflog-threshold 0;;FAIL
-j NFLOG --nflog-threshold 65535;=;OK
-j NFLOG --nflog-threshold 65536;;FAIL
-j NFLOG;=;OK
"""),
    ("extensions/libxt_physdev.t", "PKRoma/iptables 84faa6b539e79156a29f375a4eb14c24ec60be0b", """\
:INPUT,FORWARD
-m physdev --physdev-in lo;=;OK
-m physdev --physdev-is-in --physdev-in lo;=;OK
-m physdev --physdev-is-in --physdev-in 1234567890abcde;=;OK
:OUTPUT,FORWARD
# xt_physdev: using --physdev-out in the OUTPUT, FORWARD and POSTROUTING chains for non-bridged traffic is not supported anymore.
# ERROR: should fail: iptables -A FORWARD -m physdev --physdev-out lo
#-m physdev --physdev-out lo;;FAIL
# ERROR: cannot load: iptables -A OUTPUT -m physdev --physdev-is-out --physdev-out lo
#-m physdev --physdev-is-out --physdev-out lo;=;OK
:FORWARD
-m physdev --physdev-in lo --physdev-is-bridged;=;OK
:POSTROUTING
*mangle
-m physdev --physdev-out lo --physdev-is-bridged;=;OK
"""),
    ("extensions/libxt_owner.t", "shadowsocks/iptables a9084baa5d0ff6ccd28715b79ad2630bc77be49b", """\
:OUTPUT,POSTROUTING
*mangle
-m owner --uid-owner root;-m owner --uid-owner 0;OK
-m owner --uid-owner 0-10;=;OK
-m owner --gid-owner root;-m owner --gid-owner 0;OK
-m owner --gid-owner 0-10;=;OK
-m owner --uid-owner root --gid-owner root;-m owner --uid-owner 0 --gid-owner 0;OK
-m owner --uid-owner 0-10 --gid-owner 0-10;=;OK
-m owner ! --uid-owner root;-m owner ! --uid-owner 0;OK
-m owner --socket-exists;=;OK
:INPUT
-m owner --uid-owner root;;FAIL
"""),
]

#: Why this kernel differs from an upstream line: {(file, line): explanation}.
DISAGREEMENTS = {
    ("extensions/libxt_NFLOG.t", 18): "iptables 1.8.9 (nf_tables) keeps a prefix of up to 127 bytes (the nft "
                                      "log expression's limit); the file expects it cut to 63 characters "
                                      "(xt_NFLOG's prefix field, the legacy path)",
}

#: kplab's own lines: (extension, table, chains, rule). Recorded, not expected.
KPLAB = [
    ("state", "filter", "FORWARD", [
        "-m state --state ESTABLISHED,RELATED", "-m state ! --state NEW", "-m state --state new,est",
        "-m state --state E", "-m state --state N,I,R,U", "-m state --state SNAT", "-m state --state DNAT",
        "-m state --state NEW,", "-m state --state ,NEW", "-m state --state NEW --state INVALID",
        "-m state --state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED", "-m state --state NEW,NEW",
        "-m state --state ''", "-m state --state NEW -m state --state ESTABLISHED",
        "-m state --state NEW -m conntrack --ctstate NEW", "-m state --state NEWX",
    ]),
    ("state", "nat", "PREROUTING", ["-m state --state NEW"]),
    ("state", "raw", "PREROUTING", ["-m state --state UNTRACKED"]),
    ("limit", "filter", "INPUT", [
        "-m limit", "-m limit --limit 5", "-m limit --limit 3/minute", "-m limit --limit 3/m",
        "-m limit --limit 1/s", "-m limit --limit 1/SEC", "-m limit --limit 2/h", "-m limit --limit 2/d",
        "-m limit --limit 7/sec", "-m limit --limit 60/min", "-m limit --limit 3600/hour",
        "-m limit --limit 10000/sec", "-m limit --limit 9999/sec", "-m limit --limit 10001/sec",
        "-m limit --limit 0/sec", "-m limit --limit 1/week", "-m limit --limit 1/", "-m limit --limit abc",
        "-m limit --limit 2/3sec", "-m limit --limit 5/seconds", "-m limit --limit 5/secondsx",
        "-m limit --limit 3/day", "-m limit --limit 7/min", "-m limit --limit 13/hour", "-m limit --limit 3/sec",
        "-m limit --limit 400/min", "-m limit --limit 6000/min", "-m limit --limit 7/hour",
        "-m limit --limit 1/sec --limit-burst 0", "-m limit --limit-burst 10000", "-m limit --limit-burst 10001",
        "-m limit --limit-burst 5", "-m limit --limit 1/sec --limit-burst 5", "-m limit ! --limit 1/sec",
        "-m limit --limit 1/sec --limit 2/sec", "-m limit --limit 5x", "-m limit --limit ' 5/sec'",
        "-m limit --limit +5/sec", "-m limit --limit -1/sec", "-m limit --limit 0x10/sec",
        "-m limit --limit 25/minute --limit-burst 100", "-m limit --limit-burst -1",
        "-m limit --limit-burst 0x10", "-m limit --limit 1/second --limit-burst 1",
        "-p tcp -m limit --limit 1/sec -m tcp --dport 22",
    ]),
    ("connmark", "filter", "FORWARD", [
        "-m connmark --mark 0x10/0x10", "-m connmark ! --mark 1", "-m connmark --mark 16",
        "-m connmark --mark 0x10/0xf0", "-m connmark --mark 1 --mark 2", "-m connmark ! --mark 0x0/0x80",
        "-m connmark --mark 0x4000/0x4000 -m connmark ! --mark 0x1/0x1",
    ]),
    ("connmark", "nat", "PREROUTING", ["-m connmark --mark 0x1"]),
    ("connmark", "raw", "PREROUTING", ["-m connmark --mark 0x1"]),
    ("connmark", "filter", "INPUT", ["-m connmark --mark 0x1"]),
    ("CONNMARK", "mangle", "PREROUTING", [
        "-j CONNMARK --set-mark 1", "-j CONNMARK --set-mark 1/2", "-j CONNMARK --set-xmark 0x80/0x80",
        "-j CONNMARK --set-xmark 5", "-j CONNMARK --and-mark 0xff", "-j CONNMARK --or-mark 4",
        "-j CONNMARK --xor-mark 4", "-j CONNMARK --save-mark --mask 0xff",
        "-j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80", "-j CONNMARK --save-mark --ctmask 0xf0",
        "-j CONNMARK --restore-mark --nfmask 0xf", "-j CONNMARK --set-mark 1 --save-mark",
        "-j CONNMARK --mask 1 --nfmask 2 --save-mark", "-j CONNMARK --set-xmark 1/2 --mask 4",
        "-j CONNMARK --mask 4 --set-xmark 1/2", "-j CONNMARK --restore-mark --left-shift-mark 8",
        "-j CONNMARK --save-mark --right-shift-mark 4", "-j CONNMARK --save-mark --right-shift-mark 32",
        "-j CONNMARK --save-mark --right-shift-mark 33",
        "-j CONNMARK --set-xmark 0x1/0x1 --left-shift-mark 1",
        "-j CONNMARK --set-mark", "-j CONNMARK ! --set-mark 1", "-j CONNMARK --ctmask 0xff",
        "-j CONNMARK --set-mark 0x100000000", "-j CONNMARK --and-mark -1", "-j CONNMARK --save-mark --mask 0",
        "-j CONNMARK --set-mark 1 --set-mark 2", "-j CONNMARK --set-mark 1 --or-mark 2",
        "-j CONNMARK --save-mark --nfmask 0xff --mask 0xf",
        "-j CONNMARK --restore-mark --mask 0xffffffff --left-shift-mark 0",
        "-j CONNMARK --restore-mark --left-shift-mark 1 --right-shift-mark 2",
        "-j CONNMARK --restore-mark --left-shift-mark 32 --right-shift-mark 1",
        "-j CONNMARK --restore-mark --right-shift-mark 1 --left-shift-mark 32",
        "-j CONNMARK --set-mark 5 --right-shift-mark 3",
    ]),
    ("CONNMARK", "filter", "FORWARD", ["-j CONNMARK --set-mark 1", "-j CONNMARK --restore-mark"]),
    ("CONNMARK", "nat", "PREROUTING", ["-j CONNMARK --set-mark 1"]),
    ("CONNMARK", "raw", "PREROUTING", ["-j CONNMARK --set-mark 1"]),
    ("NFLOG", "filter", "FORWARD", [
        "-j NFLOG --nflog-prefix 'a b'", "-j NFLOG --nflog-prefix 'say \"hi\"'",
        "-j NFLOG --nflog-threshold 10 --nflog-size 128 --nflog-prefix x --nflog-group 5",
        "-j NFLOG --nflog-range 1", "-j NFLOG --nflog-range 1 --nflog-size 2", "-j NFLOG --nflog-prefix ''",
        "-j NFLOG --nflog-threshold 0", "-j NFLOG --nflog-group -1", "-j NFLOG --nflog-group 2 --nflog-group 3",
        "-j NFLOG --nflog-group 0x10", "-j NFLOG --nflog-prefix 'drop: '", "-j NFLOG ! --nflog-group 1",
        "-j NFLOG --nflog-prefix é", "-j NFLOG --nflog-threshold 1 --nflog-group 1",
        "-j NFLOG --nflog-prefix " + "p" * 127, "-j NFLOG --nflog-prefix " + "p" * 128,
        "-j NFLOG --nflog-prefix " + "p" * 200,
    ]),
    ("NFLOG", "nat", "POSTROUTING", ["-j NFLOG --nflog-group 3"]),
    ("NFLOG", "mangle", "PREROUTING", ["-j NFLOG --nflog-group 3"]),
    ("NFLOG", "raw", "OUTPUT", ["-j NFLOG"]),
    ("physdev", "filter", "FORWARD", [
        "-m physdev", "-m physdev --physdev-is-bridged", "-m physdev ! --physdev-is-bridged",
        "-m physdev --physdev-out eth0", "-m physdev --physdev-is-out", "-m physdev --physdev-in veth+",
        "-m physdev ! --physdev-in eth0 ! --physdev-is-in", "-m physdev --physdev-in 1234567890abcdef",
        "-m physdev --physdev-in eth0 --physdev-is-in", "-m physdev --physdev-in ''",
        "-m physdev --physdev-out eth0 --physdev-in veth0 --physdev-is-out --physdev-is-in --physdev-is-bridged",
        "-m physdev --physdev-in a --physdev-in b", "-m physdev --physdev-in eth0/1",
    ]),
    ("physdev", "filter", "OUTPUT", [
        "-m physdev ! --physdev-is-bridged", "-m physdev --physdev-out eth0", "-m physdev --physdev-is-out",
        "-m physdev ! --physdev-is-out", "-m physdev ! --physdev-out eth0",
        "-m physdev --physdev-out eth0 --physdev-is-bridged",
        "-m physdev --physdev-out eth0 ! --physdev-is-bridged", "-m physdev --physdev-in eth0",
    ]),
    ("physdev", "filter", "INPUT", ["-m physdev --physdev-out eth0", "-m physdev --physdev-is-in"]),
    ("physdev", "nat", "OUTPUT", ["-m physdev --physdev-out eth0"]),
    ("physdev", "nat", "POSTROUTING", ["-m physdev --physdev-out eth0", "-m physdev ! --physdev-is-out"]),
    ("physdev", "nat", "PREROUTING", ["-m physdev --physdev-is-in", "-m physdev --physdev-out eth0"]),
    ("physdev", "mangle", "OUTPUT", ["-m physdev --physdev-is-out --physdev-is-bridged"]),
    ("owner", "filter", "OUTPUT", [
        "-m owner --uid-owner 0", "-m owner", "-m owner --uid-owner 10-5", "-m owner --uid-owner 5:10",
        "-m owner --uid-owner 4294967294", "-m owner --uid-owner 4294967295", "-m owner --uid-owner nobody",
        "-m owner --gid-owner 0 --suppl-groups", "-m owner --suppl-groups --gid-owner 0",
        "-m owner ! --socket-exists", "-m owner --gid-owner 0 --uid-owner 1 --socket-exists",
        "-m owner --uid-owner 0x10", "-m owner --uid-owner 1-2-3", "-m owner --uid-owner ''",
        "-m owner --uid-owner 0 --uid-owner 1", "-m owner --uid-owner -1", "-m owner --gid-owner nogroup",
        "-m owner ! --gid-owner 0 --suppl-groups", "-m owner --gid-owner 0 ! --suppl-groups",
        "-m owner --uid-owner 010", "-m owner --uid-owner 5-5", "-m owner --uid-owner 1000-",
        "-m owner --uid-owner ' 5'", "-m owner ! --uid-owner 0 ! --gid-owner 0 ! --socket-exists",
    ]),
    ("owner", "nat", "OUTPUT", ["-m owner --uid-owner 0"]),
    ("owner", "nat", "POSTROUTING", ["-m owner --uid-owner 0"]),
    ("owner", "raw", "OUTPUT", ["-m owner --uid-owner 0"]),
    ("owner", "security", "OUTPUT", ["-m owner --socket-exists"]),
    ("owner", "filter", "INPUT", ["-m owner --socket-exists"]),
    ("owner", "filter", "FORWARD", ["-m owner --uid-owner 0"]),
    ("owner", "nat", "PREROUTING", ["-m owner --uid-owner 0"]),
    ("owner", "nat", "INPUT", ["-m owner --uid-owner 0"]),
    ("owner", "mangle", "PREROUTING", ["-m owner --uid-owner 0"]),
]


def _parse_t(path, text):
    """Test lines of a .t file: (line number, table, [chains], rule, expected field, result)."""
    table, chains = "filter", []
    for n, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            chains = line[1:].split(",")
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        rule, expected, result = line.split(";")[:3]
        yield n, table, chains, rule, expected, result


class Netns:
    def __init__(self):
        self.name = f"kplab-{os.getpid()}-0-conformance"

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def run(self, argv, input=None):
        p = subprocess.run(["ip", "netns", "exec", self.name] + argv, input=input, capture_output=True,
                           text=True, timeout=60)
        return p.returncode, (p.stdout + p.stderr).strip()

    def saved_lines(self, table):
        _, out = self.run(["iptables-save", "-t", table])
        return [l for l in out.splitlines() if l.startswith("-A ")]

    def flush(self, table):
        self.run(["iptables", "-t", table, "-F"])


def restore_text(table, chain, words):
    """The rule as iptables-restore input (the quoting tests/netfilter/test_extensions_conformance.py uses)."""
    quoted = " ".join(w if w and all(c.isalnum() or c in "-_.:/,+!=" for c in w) else
                      '"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in words)
    return f"*{table}\n-A {chain} {quoted}\nCOMMIT\n"


def record(ns, table, chain, rule):
    words = shlex.split(rule)
    code, msg = ns.run(["iptables", "-t", table, "-A", chain] + words)
    saved = ns.saved_lines(table) if code == 0 else []
    ns.flush(table)
    out = {"kernel_ok": code == 0, "kernel_saved": saved[0] if saved else None, "kernel_exit_code": code,
           "refused_by": None if code == 0 else ("kernel" if code == 4 else "iptables"),
           "kernel_message": msg or None}
    if code == 0 and len(saved) != 1:
        raise SystemExit(f"{table} {chain} {rule!r}: expected one saved line, got {saved}")
    if code == 0:
        again = shlex.split(saved[0])[2:]
        c2, _ = ns.run(["iptables", "-t", table, "-A", chain] + again)
        out["saved_form_is_fixpoint"] = c2 == 0 and ns.saved_lines(table) == saved
        ns.flush(table)
    else:
        out["saved_form_is_fixpoint"] = None
    c3, _ = ns.run(["iptables-restore", "--noflush"], input=restore_text(table, chain, words))
    restored = ns.saved_lines(table) if c3 == 0 else []
    ns.flush(table)
    out["restore_same"] = (c3 == 0) == (code == 0) and restored == saved
    return out


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    cases = []
    with Netns() as ns:
        for path, where, text in UPSTREAM:
            base = path.split("/")[-1]
            ext = base[len("libxt_"):-2]
            for n, table, chains, rule, expected, result in _parse_t(path, text):
                for chain in chains:
                    want = None if result != "OK" else f"-A {chain} {rule if expected == '=' else expected}"
                    c = {"id": f"{base}:{n}:{chain}", "file": path, "line": n, "extension": ext,
                         "upstream": {"read_from": where}, "table": table, "chain": chain, "rule": rule,
                         "expected_field": expected, "expected_file": want, "expected_ok_file": result == "OK"}
                    c.update(record(ns, table, chain, rule))
                    agree = c["kernel_ok"] == c["expected_ok_file"] and (not c["kernel_ok"]
                                                                         or c["kernel_saved"] == want)
                    c["unsupported_here"] = False
                    c["agrees_with_file"] = agree
                    if not agree and (path, n) not in DISAGREEMENTS:
                        raise SystemExit(f"{path}:{n} {chain}: the kernel differs from the file: explain it")
                    c["disagreement"] = None if agree else DISAGREEMENTS[(path, n)]
                    cases.append(c)
        for ext, table, chains, rules in KPLAB:
            for chain in chains.split(","):
                for k, rule in enumerate(rules, 1):
                    c = {"id": f"kplab:{ext}:{table}:{chain}:{k}", "file": None, "line": None, "extension": ext,
                         "upstream": None, "table": table, "chain": chain, "rule": rule, "expected_field": None,
                         "expected_file": None, "expected_ok_file": None}
                    c.update(record(ns, table, chain, rule))
                    c["unsupported_here"] = False
                    c["agrees_with_file"] = True
                    c["disagreement"] = None
                    cases.append(c)
    version = subprocess.run(["iptables", "--version"], capture_output=True, text=True).stdout.strip()
    doc = {"format_version": 1,
           "source": {"upstream_files": [(p, w) for p, w, _ in UPSTREAM],
                      "kplab_lines": "the project's own edge cases (file null), recorded the same way"},
           "verified_with": f"{version}, Linux {os.uname().release}",
           "verification": "as cases.json: 'iptables -t TABLE -A CHAIN RULE' in an empty, unconnected network "
                           "namespace, the saved line from 'iptables-save -t TABLE', the chain flushed after "
                           "every case; saved form appended again (fixpoint); 'iptables-restore --noflush' of "
                           "'*TABLE / -A CHAIN RULE / COMMIT' (restore_same)",
           "counts": {"cases": len(cases), "accepted": sum(c["kernel_ok"] for c in cases),
                      "refused": sum(not c["kernel_ok"] for c in cases)},
           "cases": cases}
    lines = ["{"]
    keys = [k for k in doc if k != "cases"]
    for k in keys:
        lines.append(f" {json.dumps(k)}: {json.dumps(doc[k], ensure_ascii=False)},")
    lines.append(' "cases": [')
    lines.append(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
    lines.append(" ]")
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(cases)} cases -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
