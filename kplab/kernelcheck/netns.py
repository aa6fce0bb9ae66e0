"""The standard node (DESIGN section 3) built from real network namespaces.

`Lab(topology)` builds, inside namespaces of its own and nowhere else:

- `node`: the node under test. IPv4 forwarding on, rp_filter 0, no redirects, no ICMP
  rate limits (every REJECT really sends its error); IPv6 forwarding for IPv6 topologies.
  It holds the node IP on its `iface` (eth0), the `local_ips` on lo, the Pod gateway
  address on every Pod interface with a /32 (/128) route to the Pod, and a default route
  via the peer's gateway.
- one namespace per local Pod, joined to the node by a veth pair: the Pod side is `eth0`
  with the Pod IP/32 and `default via <pod_gateway> dev eth0 onlink`; the node side is
  named as the Topology says (`veth-client`, or the Pod's `host_iface`).
- `peer`: the other end of the node's eth0. It holds the gateway and the peer node IP on
  its eth0, the peer Pods and external hosts on lo, and routes for what the node owns
  (its Pod CIDR, its local IPs, the Service CIDR) via the node IP.

Namespaces are named `kplab-<pid>-<n>-<role>`; stale ones whose pid is dead are swept
when a Lab starts; `close()` (or leaving the `with` block) deletes everything. Nothing is
ever created in, or linked to, the namespace this process runs in, and every command
that touches netfilter runs only after checking that it is inside one of the Lab's own
namespaces (`LabError` otherwise).

Three choices make one injected packet observable, and nothing else move a counter:

- every interface is NOARP with a fixed MAC address, so neighbour resolution never delays or
  drops a packet. As a side effect the frames the node sends carry the node's own MAC as
  destination, so the Pods' and the peer's IP stacks see them as "for another host" and drop
  them silently (no RST, no ICMP port unreachable, no echo reply back through the node). The
  harness's packet sockets see every frame before that.
- in the node, a table of the harness's own (`inet kplab_harness`; iptables-save does not show
  it) spoils the TCP data offset / UDP length of locally delivered packets at the input hook,
  priority 1000, i.e. after every iptables INPUT chain and before conntrack confirms the entry:
  the node's TCP/UDP code then discards them without answering, while raw sockets still get a
  copy; ICMP echo requests are ignored (`icmp_echo_ignore_all`). REJECT in INPUT still answers.
- IPv6 runs without link-local addresses, DAD, router solicitations or multicast groups, and
  IPv4 topologies have IPv6 disabled: no background packet (ND, MLD, RS) reaches a chain.

kplab.kernelcheck is the only part of kplab that runs subprocesses, and this module is where.
Standard library only.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import itertools
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import weakref
from collections import Counter
from contextlib import contextmanager

from ..topology import SERVICE_CIDR, Topology

__all__ = ["Lab", "LabError", "Counters", "available", "sweep_stale", "lab_namespaces",
           "SERVICE_CIDR_V6"]

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
PREFIX = "kplab-"
#: The Service CIDR of IPv6 topologies (kubeadm's usual IPv6 default).
SERVICE_CIDR_V6 = "fd00:10:96::/112"
#: The harness's own nftables table in the node namespace (family inet).
HARNESS_TABLE = "kplab_harness"
#: iptables tables, in the order a packet meets them.
TABLES = ("raw", "mangle", "nat", "filter", "security")
#: Their built-in chains.
BUILTIN = {"raw": ("PREROUTING", "OUTPUT"),
           "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
           "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
           "filter": ("INPUT", "FORWARD", "OUTPUT"),
           "security": ("INPUT", "FORWARD", "OUTPUT")}
#: Bound on every subprocess (a guard against a hang, not a speed target).
COMMAND_TIMEOUT = 120

_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_STALE_RE = re.compile(r"^kplab-(\d+)-\d+-")
_counter = itertools.count()
_lock = threading.Lock()


class LabError(RuntimeError):
    """The lab cannot be built or used (missing tool, not root, refused operation)."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SBIN)


# --------------------------------------------------------------------------
# setns

_libc = None


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace `fd` refers to."""
    if hasattr(os, "setns"):                       # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(CLONE_NEWNET)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _current_netns_ino() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def available() -> tuple[bool, str]:
    """(True, "") when this machine can run a Lab; else (False, the reason)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "needs root (network namespaces, iptables, raw sockets)"
    for tool in ("ip", "iptables-restore", "iptables-save", "iptables", "nft"):
        if _which(tool) is None:
            return False, f"`{tool}` is not installed"
    if not os.path.exists("/proc/thread-self/ns/net"):
        return False, "no network namespaces (/proc/thread-self/ns/net missing)"
    try:
        p = subprocess.run([_which("ip"), "netns", "list"], capture_output=True, text=True,
                           timeout=COMMAND_TIMEOUT)
    except OSError as e:
        return False, f"`ip netns` does not run: {e}"
    if p.returncode != 0:
        return False, f"`ip netns` is unavailable: {p.stderr.strip()}"
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lab_namespaces(pid: int | None = None) -> list[str]:
    """Names of kplab namespaces present (of process `pid` only, if given)."""
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return []
    out = []
    for n in names:
        m = _STALE_RE.match(n)
        if m and (pid is None or int(m.group(1)) == pid):
            out.append(n)
    return sorted(out)


def sweep_stale() -> list[str]:
    """Delete `kplab-<pid>-*` namespaces whose process is gone; return their names."""
    stale = [n for n in lab_namespaces() if not _pid_alive(int(_STALE_RE.match(n).group(1)))]
    if stale:
        _ip_batch(["netns del " + n for n in stale], force=True)
    return stale


def _ip_batch(lines, netns: str | None = None, force: bool = False) -> subprocess.CompletedProcess:
    """One `ip [-n NETNS] -batch -` call."""
    argv = [_which("ip") or "ip"]
    if netns is not None:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    return subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT)


# --------------------------------------------------------------------------
# Counters read from iptables-save -c

class Counters:
    """Per-rule and per-policy packet counters of one family, as `iptables-save -c` shows.

    `rules`: {(table, chain, index): (packets, bytes)} with 1-based rule indexes;
    `policies`: {(table, chain): (packets, bytes)} for built-in chains;
    `texts`: {(table, chain, index): "-A CHAIN ..."}.
    """

    __slots__ = ("rules", "policies", "texts")

    def __init__(self, rules=None, policies=None, texts=None):
        self.rules = rules or {}
        self.policies = policies or {}
        self.texts = texts or {}

    _POLICY = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]")
    _RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+)(.*)$")

    @classmethod
    def parse(cls, text: str) -> "Counters":
        rules, policies, texts = {}, {}, {}
        table, index = None, {}
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            if line[0] == "*":
                table, index = line[1:].strip(), {}
                continue
            if line[0] == ":":
                m = cls._POLICY.match(line)
                if m and m.group(2) != "-":
                    policies[(table, m.group(1))] = (int(m.group(3)), int(m.group(4)))
                continue
            if line[0] == "[":
                m = cls._RULE.match(line)
                if m:
                    chain = m.group(3)
                    i = index[chain] = index.get(chain, 0) + 1
                    rules[(table, chain, i)] = (int(m.group(1)), int(m.group(2)))
                    texts[(table, chain, i)] = f"-A {chain}{m.group(4)}"
        return cls(rules, policies, texts)

    def diff(self, before: "Counters | None"):
        """(rule_hits, policy_hits): packets counted since `before`, only those > 0."""
        b_rules = before.rules if before else {}
        b_pol = before.policies if before else {}
        # A counter below its `before` value was zeroed in between: count from zero.
        hits = Counter()
        for k, (p, _) in self.rules.items():
            b = b_rules.get(k, (0, 0))[0]
            d = p - b if p >= b else p
            if d > 0:
                hits[k] = d
        pol = Counter()
        for k, (p, _) in self.policies.items():
            b = b_pol.get(k, (0, 0))[0]
            d = p - b if p >= b else p
            if d > 0:
                pol[k] = d
        return hits, pol


# --------------------------------------------------------------------------
# The lab

def _mac(index: int, side: int) -> str:
    """Fixed, locally administered MACs: side 1 = the node's interface, 2 = the far end."""
    return f"02:6b:70:{(index >> 8) & 0xff:02x}:{index & 0xff:02x}:{side:02x}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "_"


class Lab:
    """The standard node of a `Topology`, built in namespaces of its own.

    >>> with Lab() as lab:                                  # doctest: +SKIP
    ...     ok, msg = lab.load("*filter\\n-A FORWARD -j DROP\\nCOMMIT\\n")
    ...     obs = lab.send("client", kplab.Packet.udp("10.244.1.7", "10.244.2.5", 53))

    `topology`: a `kplab.Topology` (default: the standard IPv4 node; `ipv6=True` gives
    the standard IPv6 one). `legacy=True` uses iptables-legacy instead of nf_tables.
    `timeout` bounds how long `send` waits for a packet to show up (seconds).
    """

    def __init__(self, topology: Topology | None = None, *, ipv6: bool = False, legacy: bool = False,
                 timeout: float = 0.15):
        if topology is None:
            topology = Topology(family=6 if ipv6 else 4)
        elif isinstance(topology, dict):
            topology = Topology(topology, family=6 if ipv6 else 4)
        self.topology = topology
        self.family = topology.family
        self.legacy = legacy
        self.timeout = float(timeout)
        self._pid = os.getpid()
        with _lock:
            self._n = next(_counter)
        base = f"{PREFIX}{self._pid}-{self._n}-"
        #: role ("node", "peer" or a local Pod's name) -> namespace name
        self.names = {"node": base + "node", "peer": base + "peer"}
        for i, (name, _, _) in enumerate(topology.pods):
            self.names[name] = base + f"pod{i}-{_safe(name)}"
        self._created: list[str] = []
        self._ns_ino: dict[str, int] = {}
        self._home_ino: int | None = None
        self._sockets: list[socket.socket] = []
        self._fds: list[int] = []
        self._state: dict = {}            # harness state (sockets, tags), see harness.py
        self._ctr_base: dict = {}         # family -> Counters snapshot the next diff starts from
        self._started = False
        self._closed = False
        self.build_seconds = None
        #: MAC of each node interface and of its far end
        self.macs: dict[str, tuple[str, str]] = {}
        self._finalizer = None

    # ------------------------------------------------------------------
    # lifecycle
    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._started else "not started")
        return f"<kplab Lab {self.names['node']} IPv{self.family} {state}>"

    @property
    def v6(self) -> bool:
        return self.family == 6

    def start(self) -> "Lab":
        """Build the namespaces, links, addresses and routes (idempotent)."""
        if self._started:
            return self
        if self._closed:
            raise LabError("this Lab is closed; make a new one")
        ok, why = available()
        if not ok:
            raise LabError(why)
        t0 = time.perf_counter()
        self._home_ino = _current_netns_ino()
        sweep_stale()
        self._finalizer = weakref.finalize(self, Lab._cleanup, list(self.names.values()),
                                           self._sockets, self._fds)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        self._started = True
        self.build_seconds = time.perf_counter() - t0
        return self

    def close(self) -> None:
        """Delete every namespace of this Lab (and with them every link and rule)."""
        if self._closed:
            return
        self._closed = True
        rig = self._state.get("rig")
        if rig is not None:
            rig.close()
        self._state.clear()
        if self._finalizer is not None:
            self._finalizer()          # runs _cleanup once
        else:
            Lab._cleanup(list(self.names.values()), self._sockets, self._fds)

    @staticmethod
    def _cleanup(names, sockets, fds) -> None:
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass
        sockets.clear()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        fds.clear()
        present = set(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else set()
        gone = [n for n in names if n in present]
        if gone:
            _ip_batch(["netns del " + n for n in gone], force=True)

    # ------------------------------------------------------------------
    # running things inside the lab's namespaces
    def _check_role(self, role: str) -> str:
        if role not in self.names:
            raise LabError(f"unknown namespace {role!r}: use one of {', '.join(self.names)}")
        if not self._ns_ino.get(role):
            raise LabError(f"namespace {role!r} is not built (start the Lab first)")
        if self._closed:
            raise LabError("this Lab is closed")
        return self.names[role]

    @contextmanager
    def inside(self, role: str):
        """Run the body with this thread inside namespace `role`; always come back.

        Refuses (LabError) unless the namespace entered is the Lab's own and differs from
        the one this process started in."""
        name = self._check_role(role)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                ino = os.fstat(target).st_ino
                if ino != self._ns_ino[role] or ino == self._home_ino:
                    raise LabError(f"refusing to enter {name}: it is not the namespace this Lab built")
                _setns(target)
            finally:
                os.close(target)
            try:
                now = _current_netns_ino()
                if now != self._ns_ino[role] or now == self._home_ino:
                    raise LabError(f"refusing to run: setns into {name} did not take effect")
                yield
            finally:
                _setns(home)
                if _current_netns_ino() != os.fstat(home).st_ino:     # pragma: no cover
                    raise LabError("could not return to the original network namespace")
        finally:
            os.close(home)

    def run(self, role: str, argv, input: str | None = None, timeout: float = COMMAND_TIMEOUT,
            ) -> subprocess.CompletedProcess:
        """Run a command inside namespace `role` (what `ip netns exec NS ...` does, minus
        the /sys remount none of our tools needs). The child inherits the namespace."""
        if role == "node":
            self._ctr_base.clear()        # it may change counters: the next diff re-reads them
        return self._run(role, argv, input, timeout)

    def _run(self, role: str, argv, input: str | None = None, timeout: float = COMMAND_TIMEOUT,
             ) -> subprocess.CompletedProcess:
        argv = list(argv)
        exe = _which(argv[0])
        if exe is None:
            raise LabError(f"`{argv[0]}` is not installed")
        argv[0] = exe
        with self.inside(role):
            return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)

    def _popen(self, role: str, argv, input: str | None = None):
        argv = list(argv)
        argv[0] = _which(argv[0]) or argv[0]
        with self.inside(role):
            p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return p

    def socket(self, role: str, family: int, type: int, proto: int = 0) -> socket.socket:
        """A socket created inside namespace `role` (it stays there); closed with the Lab."""
        with self.inside(role):
            s = socket.socket(family, type, proto)
        self._sockets.append(s)
        return s

    def open_in(self, role: str, path: str) -> int:
        """A read-only fd opened inside namespace `role` (for /proc/thread-self/net/...)."""
        with self.inside(role):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def sysctl(self, role: str, values: dict) -> None:
        """Write /proc/sys/net values inside namespace `role` ("net/ipv4/ip_forward": "1")."""
        with self.inside(role):
            for key, value in values.items():
                with open("/proc/sys/" + key, "w") as f:
                    f.write(str(value))

    # ------------------------------------------------------------------
    # building
    def _build(self) -> None:
        topo, v6 = self.topology, self.v6
        with _lock:
            lines = [f"netns add {n}" for n in self.names.values()]
            p = _ip_batch(lines)
        self._created = list(self.names.values())
        if p.returncode != 0:
            raise LabError(f"ip netns add failed: {p.stderr.strip()}")
        for role, name in self.names.items():
            self._ns_ino[role] = os.stat(os.path.join(NETNS_DIR, name)).st_ino
            if self._ns_ino[role] == self._home_ino:          # pragma: no cover
                raise LabError(f"{name} is this process's own namespace")

        # Defaults first: they apply to the interfaces created next.
        if v6:
            quiet = {f"net/ipv6/conf/{w}/{k}": v for w in ("all", "default")
                     for k, v in (("accept_dad", 0), ("addr_gen_mode", 1), ("accept_ra", 0),
                                  ("router_solicitations", 0), ("autoconf", 0))}
        else:
            quiet = {f"net/ipv6/conf/{w}/disable_ipv6": 1 for w in ("all", "default")}
        for role in self.names:
            self.sysctl(role, quiet)
        node_sys = {
            "net/ipv4/ip_forward": 1,
            "net/ipv4/icmp_ratelimit": 0,
            "net/ipv4/icmp_ratemask": 0,
            "net/ipv4/icmp_msgs_per_sec": 1000000,
            "net/ipv4/icmp_msgs_burst": 1000000,
            "net/ipv4/icmp_echo_ignore_all": 1,
        }
        for w in ("all", "default"):
            node_sys[f"net/ipv4/conf/{w}/route_localnet"] = int(self.topology.route_localnet)
            node_sys[f"net/ipv4/conf/{w}/rp_filter"] = 0
            node_sys[f"net/ipv4/conf/{w}/send_redirects"] = 0
            node_sys[f"net/ipv4/conf/{w}/accept_redirects"] = 0
        if v6:
            node_sys["net/ipv6/icmp/ratelimit"] = 0
            node_sys["net/ipv6/icmp/echo_ignore_all"] = 1
        self.sysctl("node", node_sys)
        # The harness's TCP sequence numbers are tags, not a real stream: conntrack must judge
        # TCP packets by their flags only (as kplab does), not by window tracking.
        try:
            self.sysctl("node", {"net/netfilter/nf_conntrack_tcp_be_liberal": 1})
        except FileNotFoundError:          # pragma: no cover - conntrack not built in
            pass

        plen = 128 if v6 else 32
        nodad = " nodad" if v6 else ""
        flags = "arp off multicast off"
        node_ip = topo.node_if
        # --- the node: every link is created from inside it, the far ends go straight
        # into the Pod / peer namespaces.
        node = ["link set lo up"]
        ifaces = [(topo.iface, self.names["peer"], 0)]
        ifaces += [(hif, self.names[name], i + 1) for i, (name, _, hif) in enumerate(topo.pods)]
        for hif, far_ns, i in ifaces:
            self.macs[hif] = (_mac(i, 1), _mac(i, 2))
            node.append(f"link add {hif} address {_mac(i, 1)} type veth peer name eth0 "
                        f"address {_mac(i, 2)} netns {far_ns}")
            node.append(f"link set {hif} {flags} up")
        node.append(f"addr add {node_ip.with_prefixlen} dev {topo.iface}{nodad}")
        for a in topo.local_ips:
            node.append(f"addr add {a}/{plen} dev lo{nodad}")
        for name, addr, hif in topo.pods:
            node.append(f"addr add {topo.pod_gateway}/{plen} dev {hif}{nodad}")
            node.append(f"route add {addr}/{plen} dev {hif}")
        node.append(f"route add default via {topo.gateway} dev {topo.iface} onlink")
        p = _ip_batch(node, self.names["node"])
        if p.returncode != 0:
            raise LabError(f"building the node failed: {p.stderr.strip()}")

        # --- Pods and peer, in parallel
        jobs = []
        for name, addr, hif in topo.pods:
            pod = ["link set lo up", f"link set eth0 {flags} up",
                   f"addr add {addr}/{plen} dev eth0{nodad}",
                   f"route add default via {topo.pod_gateway} dev eth0 onlink"]
            jobs.append((name, pod))
        prefix = node_ip.network.prefixlen
        peer = ["link set lo up", f"link set eth0 {flags} up",
                f"addr add {topo.gateway}/{prefix} dev eth0{nodad}"]
        if topo.peer_node != topo.gateway:
            peer.append(f"addr add {topo.peer_node}/{prefix} dev eth0{nodad}")
        seen = {topo.gateway, topo.peer_node}
        for _, a in topo.peer_pods + topo.externals:
            if a not in seen:
                seen.add(a)
                peer.append(f"addr add {a}/{plen} dev lo{nodad}")
        owned = [str(topo.pod_cidr), SERVICE_CIDR_V6 if v6 else SERVICE_CIDR]
        owned += [f"{a}/{plen}" for a in topo.local_ips]
        for net in owned:
            if ipaddress.ip_network(net, strict=False).version == self.family:
                peer.append(f"route add {net} via {topo.node_ip} dev eth0 onlink")
        jobs.append(("peer", peer))
        procs = []
        for role, lines in jobs:
            argv = [_which("ip") or "ip", "-n", self.names[role], "-batch", "-"]
            procs.append((role, subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE, text=True)))
        for (role, lines), (_, proc) in zip(jobs, procs):
            _, err = proc.communicate("\n".join(lines) + "\n", timeout=COMMAND_TIMEOUT)
            if proc.returncode != 0:
                raise LabError(f"building {role} failed: {err.strip()}")

        # --- per-interface settings in the node, then IPv6 forwarding (after multicast
        # is off, so the node joins no all-routers group and sends no MLD report).
        per_if = {}
        for hif, _, _ in ifaces:
            per_if[f"net/ipv4/conf/{hif}/rp_filter"] = 0
            per_if[f"net/ipv4/conf/{hif}/send_redirects"] = 0
        if v6:
            per_if["net/ipv6/conf/all/forwarding"] = 1
            per_if["net/ipv6/conf/default/forwarding"] = 1
        self.sysctl("node", per_if)

        # --- the harness's own table: locally delivered packets are made "for another
        # host" after every iptables INPUT chain, so the node's stack never answers them.
        if _which("nft") is None:
            raise LabError("`nft` is not installed (the harness needs it in the node namespace)")
        nft = (f"table inet {HARNESS_TABLE} {{\n"
               f"  chain quiet {{ type filter hook input priority 1000; policy accept;\n"
               f"    meta l4proto tcp @th,96,8 set 0x0\n"
               f"    meta l4proto udp @th,32,16 set 0xffff\n  }}\n}}\n")
        p = self._run("node", ["nft", "-f", "-"], input=nft)
        if p.returncode != 0:
            raise LabError(f"nft in the node failed: {p.stderr.strip()}")

    # ------------------------------------------------------------------
    # rules
    def _is_v6(self, ipv6: bool | None) -> bool:
        return self.v6 if ipv6 is None else bool(ipv6)

    def _tool(self, v6: bool, what: str) -> str:
        base = "ip6tables" if v6 else "iptables"
        if self.legacy:
            return f"{base}-legacy" + (f"-{what}" if what else "")
        return base + (f"-{what}" if what else "")

    def clear(self, ipv6: bool | None = None) -> None:
        """Remove every iptables table of the family (the harness's own table stays)."""
        v6 = self._is_v6(ipv6)
        if self.legacy:
            # legacy tables cannot be deleted: flush them, drop user chains, reset policies
            text = self._run("node", [self._tool(v6, "save")]).stdout
            present = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("*")]
            reset = "".join(f"*{t}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in BUILTIN.get(t, ())) + "COMMIT\n"
                            for t in present)
            if reset:
                p = self._run("node", [self._tool(v6, "restore")], input=reset)
                if p.returncode != 0:
                    raise LabError(f"clearing the tables failed: {p.stderr.strip()}")
        else:
            fam = "ip6" if v6 else "ip"
            script = "".join(f"table {fam} {t}\ndelete table {fam} {t}\n" for t in TABLES)
            p = self._run("node", ["nft", "-f", "-"], input=script)
            if p.returncode != 0:
                raise LabError(f"clearing the {fam} tables failed: {p.stderr.strip()}")
        self._ctr_base.pop(v6, None)

    def load(self, rules_text: str, ipv6: bool | None = None, *, replace: bool = True) -> tuple[bool, str]:
        """Load iptables-save text with iptables-restore in the node: (ok, message).

        `replace` (default) first removes every table of the family, so tables the text
        does not mention do not keep older rules. `--nfacct-name NAME` counters are created
        first (`nfacct add NAME`). `message` is iptables-restore's stderr (empty when ok)."""
        v6 = self._is_v6(ipv6)
        if replace:
            self.clear(v6)
        names = sorted({n.strip("\"'") for n in re.findall(r"--nfacct-name\s+(\S+)", rules_text)})
        if names:
            if _which("nfacct") is None:
                return False, "the rules use --nfacct-name but `nfacct` is not installed"
            for n in names:
                self._run("node", ["nfacct", "add", n])      # "File exists" is fine
        p = self._run("node", [self._tool(v6, "restore")], input=rules_text)
        self._ctr_base.pop(v6, None)
        msg = (p.stderr or "").strip()
        if p.returncode != 0:
            return False, msg or (p.stdout or "").strip() or f"{self._tool(v6, 'restore')} exited {p.returncode}"
        return True, msg

    def save(self, ipv6: bool | None = None, *, counters: bool = False) -> str:
        """iptables-save (with `-c` if `counters`) in the node, without its '#' lines."""
        v6 = self._is_v6(ipv6)
        argv = [self._tool(v6, "save")] + (["-c"] if counters else [])
        p = self._run("node", argv)
        if p.returncode != 0:
            raise LabError(f"{argv[0]} failed: {p.stderr.strip()}")
        return "".join(ln + "\n" for ln in p.stdout.splitlines() if not ln.startswith("#"))

    def counters(self, ipv6: bool | None = None) -> Counters:
        """The current per-rule and per-policy counters (one iptables-save -c)."""
        v6 = self._is_v6(ipv6)
        c = Counters.parse(self.save(v6, counters=True))
        self._ctr_base[v6] = c
        return c

    def zero_counters(self, ipv6: bool | None = None) -> None:
        """Zero every rule and policy counter of the family (`iptables -t T -Z`, all tables
        at once)."""
        v6 = self._is_v6(ipv6)
        present = [ln[1:].strip() for ln in self.save(v6).splitlines() if ln.startswith("*")]
        procs = [self._popen("node", [self._tool(v6, ""), "-w", "-t", t, "-Z"]) for t in present]
        errors = []
        for t, p in zip(present, procs):
            _, err = p.communicate(timeout=COMMAND_TIMEOUT)
            if p.returncode != 0:
                errors.append(f"{t}: {err.strip()}")
        self._ctr_base.pop(v6, None)
        if errors:
            raise LabError("zeroing counters failed: " + "; ".join(errors))

    # ------------------------------------------------------------------
    # conntrack
    def _ct_netlink(self) -> socket.socket:
        s = self._state.get("ctnl")
        if s is None:
            s = self.socket("node", socket.AF_NETLINK, socket.SOCK_RAW, 12)   # NETLINK_NETFILTER
            s.bind((0, 0))
            s.settimeout(2.0)
            self._state["ctnl"] = s
            self._state["ctseq"] = 0
        return s

    def flush_conntrack(self) -> None:
        """Empty the node's conntrack table (one ctnetlink message, like `conntrack -F`)."""
        s = self._ct_netlink()
        self._state["ctseq"] += 1
        seq = self._state["ctseq"]
        # nlmsghdr + nfgenmsg(AF_UNSPEC, v0, res_id 0); IPCTNL_MSG_CT_DELETE without a tuple
        msg = struct.pack("=IHHII", 20, (1 << 8) | 2, 0x1 | 0x4, seq, 0) + struct.pack("=BBH", 0, 0, 0)
        s.send(msg)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _, rseq, _ = struct.unpack_from("=IHHII", data, off)
                if mtype == 2 and rseq == seq:                  # NLMSG_ERROR (0 = ack)
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    if err not in (0, -2):                      # ENOENT: table already empty
                        raise LabError(f"conntrack flush failed: {os.strerror(-err)}")
                    return
                off += max((length + 3) & ~3, 16)
        raise LabError("conntrack flush: no answer from the kernel")    # pragma: no cover

    def conntrack_lines(self) -> list[str]:
        """The node's conntrack table, one line per entry (/proc/net/nf_conntrack format)."""
        fd = self._state.get("ctfd")
        if fd is None:
            try:
                fd = self._state["ctfd"] = self.open_in("node", "/proc/thread-self/net/nf_conntrack")
            except FileNotFoundError:          # kernel without CONFIG_NF_CONNTRACK_PROCFS
                fd = self._state["ctfd"] = -1
        if fd < 0:
            p = self._run("node", ["conntrack", "-L", "-f", "ipv6" if self.v6 else "ipv4"])
            return [" ".join(ln.split()) for ln in p.stdout.splitlines() if "src=" in ln]
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return [" ".join(ln.split()) for ln in b"".join(chunks).decode().splitlines() if ln.strip()]

    # ------------------------------------------------------------------
    # packets (harness.py)
    def packet(self, from_name: str, dst: str, proto: str = "tcp", dport: int | None = None,
               sport: int | None = None, src: str | None = None):
        """The first packet of a connection from `from_name` to `dst`, with the source the
        kernel would pick (same rules as `kplab.Node.packet`)."""
        from ..node import Node
        return Node(None, self.topology).packet(from_name, dst, proto, dport, sport, src)

    def send(self, from_name: str, packet, **kw):
        """Inject one packet from `from_name`; see `kplab.kernelcheck.harness.send`."""
        from .harness import send
        return send(self, from_name, packet, **kw)

    def send_reply(self, observation, **kw):
        """Answer an observed packet from its receiver; see `harness.send_reply`."""
        from .harness import send_reply
        return send_reply(self, observation, **kw)

    def send_many(self, from_name: str, packet, count: int, **kw):
        """`count` new connections, quickly; see `harness.send_many`."""
        from .harness import send_many
        return send_many(self, from_name, packet, count, **kw)
