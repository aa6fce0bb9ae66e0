"""The kernel as judge of iptables text: a real iptables-restore (nf_tables) in a Lab's node namespace.

`KernelJudge(lab).accepts(text)` loads `text` with iptables-restore (not `--test`, which accepts
DNAT in INPUT, reachable loops and more that a real load refuses) inside the namespaces of a
`kplab.kernelcheck.Lab`, and says whether the kernel took it. iptables-restore flushes every table
it loads, so one load cannot leak into the next; the Lab is cleared once at the start.

`--nfacct-name NAME` counters must exist before a rule names them: each name is created once
(`nfacct add`), the way `Lab.load` does, so that a mutant is judged on its text alone.

A mutant like `-s KUBE-SVC-X` makes iptables look a host name up. The Lab's namespaces reach no
name server, so the lookup would wait out the resolver's timeouts (10 s); the judge marks the
name servers of /etc/resolv.conf unreachable inside the node namespace (a route of type
"unreachable", in the Lab's own namespace only), so a lookup fails at once, as it would on a
node that cannot resolve the name.
"""
from __future__ import annotations

import re

_NFACCT = re.compile(r"--nf[a-z-]*\s+(\S+)")          # --nfacct-name and its prefixes
_NAMESERVER = re.compile(r"^\s*nameserver\s+([0-9.]+)\s*$", re.MULTILINE)


class KernelJudge:
    def __init__(self, lab):
        self.lab = lab
        self.counters: set = set()
        lab.clear()
        try:
            with open("/etc/resolv.conf") as f:
                servers = set(_NAMESERVER.findall(f.read()))
        except OSError:
            servers = set()
        for server in sorted(servers):
            lab.run("node", ["ip", "route", "replace", "unreachable", f"{server}/32"])

    def accepts(self, text: str, *, fresh: bool = False) -> tuple:
        """(True, "") when iptables-restore loads `text`; else (False, its message).
        `fresh` first removes every table, so that `saved()` then shows `text` alone."""
        self._counters(text)
        if fresh:
            self.lab.clear()
        p = self.lab.run("node", ["iptables-restore"], input=text)
        return p.returncode == 0, (p.stderr or p.stdout or "").strip()

    def saved(self) -> str:
        """iptables-save in the node, without its comment lines."""
        return self.lab.save()

    def accepts_file(self, path: str) -> tuple:
        """The same for a file, read by iptables-restore itself (bytes as they are)."""
        with open(path, "rb") as f:
            self._counters(f.read().decode("utf-8", "replace"))
        p = self.lab.run("node", ["iptables-restore", path])
        return p.returncode == 0, (p.stderr or p.stdout or "").strip()

    def _counters(self, text: str) -> None:
        for name in {n.strip("\"'") for n in _NFACCT.findall(text)} - self.counters:
            self.counters.add(name)
            if name and not name.startswith("-"):
                self.lab.run("node", ["nfacct", "add", name])
