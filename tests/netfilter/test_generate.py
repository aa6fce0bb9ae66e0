"""The kernel differential suite's inputs (kplab/kernelcheck/generate.py, tests/kernel/cases.py).

- determinism: the same seed gives the same text and packets, in this process
  and in others with a different hash seed;
- validity: every random ruleset (seeds 1..500) parses with kplab, with the
  shape promised (jump DAG under 10 chains deep, statistic 0 or 1 only);
- coverage: over seeds 1..200 every listed match and target appears;
- invalid_case: kplab refuses exactly what the kernel refuses. `expect_load`
  of each kind was verified by loading the rulesets with iptables-restore
  (1.8.9, nf_tables) in a throwaway namespace, so a failure here is a
  kplab/kernel disagreement: a kplab bug, not a test to relax;
- kube_proxy_case and the lessons: parse, have kube-proxy's exact shape, and
  trace without error.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import kplab
from kplab.kernelcheck import generate as G
from kplab.kernelcheck.lessons import KEEP_CONNTRACK, LESSONS

ROOT = Path(__file__).resolve().parents[2]
VALID_SEEDS = range(1, 501)
COVERAGE_SEEDS = range(1, 201)
PROTOS = ("tcp", "udp", "icmp")


@lru_cache(maxsize=None)
def case(seed: int) -> G.Case:
    return G.random_case(seed)


# --------------------------------------------------------------------------
# determinism

def test_same_seed_same_case():
    for seed in (1, 2, 17, 250, 499):
        a, b = G.random_case(seed), G.random_case(seed)
        assert a == b
        assert G.random_packets(seed, 9) == G.random_packets(seed, 9)
        assert G.invalid_case(seed) == G.invalid_case(seed)
    assert len({case(s).rules for s in range(1, 51)}) == 50, "different seeds give different rulesets"


def test_same_seed_same_case_in_another_process():
    """Nothing depends on set order or the hash seed (PYTHONHASHSEED)."""
    code = ("import json; from kplab.kernelcheck import generate as G; "
            "print(json.dumps([[G.random_case(s).rules, repr(G.random_case(s).packets), G.invalid_case(s).rules] "
            "for s in range(1, 41)]))")
    here = [[case(s).rules, repr(case(s).packets), G.invalid_case(s).rules] for s in range(1, 41)]
    for hash_seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120, check=True).stdout
        assert json.loads(out) == here


# --------------------------------------------------------------------------
# validity

def _jump_height(table) -> int:
    """The most chains on one jump/goto path from a built-in chain (built-in included)."""
    memo = {}

    def height(name, seen=()):
        assert name not in seen, f"jump loop through {name}"
        if name not in memo:
            kids = {r.jump for r in table.chains[name].rules if r.jump}
            memo[name] = 1 + max((height(k, seen + (name,)) for k in kids), default=0)
        return memo[name]
    return max(height(c.name) for c in table.builtin_chains())


def _check_packets(packets):
    for p in packets:
        assert isinstance(p, G.PacketSpec)
        assert p.from_ in G.SOURCES and p.proto in PROTOS
        ipaddress.ip_address(p.dst)
        if p.proto == "icmp":
            assert p.dport is None and p.sport is None
        else:
            assert isinstance(p.dport, int) and 1 <= p.dport <= 65535
            assert p.sport is None or 1 <= p.sport <= 65535
        assert p.dst != G.HOSTS[p.from_] or p.from_ == "node", "a host sending to itself never meets the node"
        if p.from_ in G.PEER_SIDE:
            assert (ipaddress.ip_address(p.dst) in ipaddress.ip_network("10.244.1.0/24")
                    or p.dst == G.NODE_IP or ipaddress.ip_address(p.dst) in ipaddress.ip_network("10.96.0.0/12"))
        if ipaddress.ip_address(p.dst).is_loopback:
            assert p.from_ == "node"


def test_random_cases_parse():
    """The self-check loop: seeds 1..500 all parse (kplab accepts what the kernel accepted)."""
    failures = []
    for seed in VALID_SEEDS:
        c = case(seed)
        assert c.expect_load is True and c.name == f"random-{seed}"
        try:
            kplab.parse_rules(c.rules)
        except kplab.KplabError as e:
            failures.append(f"seed {seed}: {e}")
    assert not failures, "\n".join(failures[:10])


def test_random_cases_have_the_promised_shape():
    for seed in COVERAGE_SEEDS:
        c = case(seed)
        rs = kplab.parse_rules(c.rules)
        assert {"filter", "nat"} <= set(rs.tables)
        for name in ("filter", "nat"):
            users = [ch for ch in rs.tables[name].chains.values() if ch.policy is None]
            assert 2 <= len(users) <= 8, (seed, name)
        for t in rs.tables.values():
            assert _jump_height(t) < 10, (seed, t.name)
        for p in re.findall(r"--probability (\S+)", c.rules):
            assert float(p) in (0.0, 1.0), (seed, p)
        assert len(c.packets) == 6
        _check_packets(c.packets)


def test_random_packets():
    hits = total = 0
    for seed in range(1, 101):
        packets = G.random_packets(seed, 10)
        assert len(packets) == 10
        _check_packets(packets)
        assert G.random_packets(seed, 6) == case(seed).packets
        nets = [ipaddress.ip_network(f"{a}/{p or 32}", strict=False)
                for a, p in re.findall(r"-[sd] (\d+\.\d+\.\d+\.\d+)(?:/(\d+))?", case(seed).rules)]
        for p in packets:
            total += 1
            hits += any(ipaddress.ip_address(p.dst) in n for n in nets if n.prefixlen)
    assert hits / total > 0.4, f"only {hits}/{total} destinations are tested by a rule"
    assert {p.from_ for s in range(1, 30) for p in G.random_packets(s, 10)} == set(G.SOURCES)


# --------------------------------------------------------------------------
# coverage

_CHAIN_LINE = re.compile(r"^-A \S+(.*)$", re.M)


def _no_target(text):
    return any(" -j " not in f" {r} " and " -g " not in f" {r} " for r in _CHAIN_LINE.findall(text))


def _user_jump(text):
    users = set(re.findall(r"^:(\S+) - ", text, re.M))
    return any(t in users for t in re.findall(r" -j (\S+)", text))


#: feature -> test on one ruleset text (covers G.MATCH_FEATURES and G.TARGET_FEATURES and more)
FEATURES = {
    "-s": lambda t: " -s " in t,
    "! -s": lambda t: "! -s " in t,
    "-d": lambda t: " -d " in t,
    "! -d": lambda t: "! -d " in t,
    "-s host bits (masked by the kernel)": lambda t: "-s 10.244.1.7/24" in t or "-d 10.244.1.7/24" in t
    or "-s 192.168.0.2/24" in t or "-d 192.168.0.2/24" in t,
    "-p tcp": lambda t: "-p tcp" in t,
    "-p udp": lambda t: "-p udp" in t,
    "-p icmp": lambda t: "-p icmp" in t,
    "! -p": lambda t: "! -p " in t,
    "--sport": lambda t: "--sport " in t,
    "--dport": lambda t: "--dport " in t,
    "--destination-port": lambda t: "--destination-port " in t,
    "port range": lambda t: re.search(r"-(?:-[sd]port|-destination-port) \d+:\d+", t) is not None,
    "! --dport": lambda t: "! --dport" in t,
    "explicit -m tcp": lambda t: "-m tcp " in t,
    "explicit -m udp": lambda t: "-m udp " in t,
    "--syn": lambda t: "--syn" in t,
    "-i": lambda t: " -i " in t,
    "-o": lambda t: " -o " in t,
    "! -i": lambda t: "! -i " in t,
    "! -o": lambda t: "! -o " in t,
    "-i veth+": lambda t: "-i veth+" in t,
    "-o veth+": lambda t: "-o veth+" in t,
    "-i in a user chain": lambda t: re.search(r"^-A [A-Z]-\S+ .*-i ", t, re.M) is not None,
    "-o in a user chain": lambda t: re.search(r"^-A [A-Z]-\S+ .*-o ", t, re.M) is not None,
    "multiport --dports": lambda t: "--dports " in t,
    "multiport --sports": lambda t: "--sports " in t,
    "multiport --ports": lambda t: "--ports " in t,
    "multiport negated": lambda t: re.search(r"-m multiport ! --", t) is not None,
    "icmp --icmp-type": lambda t: "--icmp-type " in t,
    "icmp negated": lambda t: "! --icmp-type" in t,
    "mark": lambda t: "-m mark --mark" in t,
    "mark negated": lambda t: "-m mark ! --mark" in t,
    "mark with mask": lambda t: re.search(r"--mark 0x[0-9a-f]+/0x", t) is not None,
    "addrtype --src-type LOCAL": lambda t: re.search(r"--src-type LOCAL\b", t) is not None,
    "addrtype --dst-type LOCAL": lambda t: re.search(r"--dst-type LOCAL\b", t) is not None,
    "addrtype UNICAST": lambda t: re.search(r"-type (?:LOCAL,)?UNICAST", t) is not None,
    "addrtype negated": lambda t: "! --src-type" in t or "! --dst-type" in t,
    "ctstate NEW": lambda t: re.search(r"--ctstate \S*NEW", t) is not None,
    "ctstate ESTABLISHED": lambda t: re.search(r"--ctstate \S*ESTABLISHED", t) is not None,
    "ctstate DNAT": lambda t: re.search(r"--ctstate \S*DNAT", t) is not None,
    "ctstate SNAT": lambda t: re.search(r"--ctstate \S*SNAT", t) is not None,
    "ctstate negated": lambda t: "! --ctstate" in t,
    "ctdir ORIGINAL": lambda t: "--ctdir ORIGINAL" in t,
    "ctdir REPLY": lambda t: "--ctdir REPLY" in t,
    "comment": lambda t: "-m comment --comment" in t,
    "statistic probability 0": lambda t: re.search(r"--probability 0(\.0+)?\b", t) is not None,
    "statistic probability 1": lambda t: re.search(r"--probability 1(\.0+)?\b", t) is not None,
    "statistic negated": lambda t: "! --probability" in t,
    "ACCEPT": lambda t: "-j ACCEPT" in t,
    "DROP": lambda t: "-j DROP" in t,
    "REJECT (default)": lambda t: re.search(r"-j REJECT$", t, re.M) is not None,
    "REJECT icmp type": lambda t: "--reject-with icmp-" in t,
    "REJECT tcp-reset": lambda t: "--reject-with tcp-reset" in t,
    "RETURN": lambda t: "-j RETURN" in t,
    "MARK --set-xmark": lambda t: "--set-xmark " in t,
    "MARK --set-mark": lambda t: "--set-mark " in t,
    "MARK --or-mark": lambda t: "--or-mark " in t,
    "MARK --xor-mark": lambda t: "--xor-mark " in t,
    "MARK --and-mark": lambda t: "--and-mark " in t,
    "LOG": lambda t: "-j LOG" in t,
    "LOG --log-prefix": lambda t: "--log-prefix " in t,
    "LOG --log-level": lambda t: "--log-level " in t,
    "no target": _no_target,
    "jump to a user chain": _user_jump,
    "goto": lambda t: " -g " in t,
    "DNAT": lambda t: "-j DNAT " in t,
    "DNAT with port": lambda t: re.search(r"--to-destination [\d.]+:\d+", t) is not None,
    "DNAT without port": lambda t: re.search(r"--to-destination [\d.]+$", t, re.M) is not None,
    "DNAT in nat OUTPUT": lambda t: re.search(r"^-A OUTPUT .*-j DNAT", t, re.M) is not None,
    "SNAT to 192.168.0.2": lambda t: "-j SNAT --to-source 192.168.0.2" in t,
    "SNAT to 10.244.1.1": lambda t: "-j SNAT --to-source 10.244.1.1" in t,
    "MASQUERADE": lambda t: "-j MASQUERADE" in t,
    "MASQUERADE --random-fully": lambda t: "-j MASQUERADE --random-fully" in t,
    "policy DROP": lambda t: re.search(r"^:\S+ DROP ", t, re.M) is not None,
    "table raw": lambda t: "*raw" in t,
    "table mangle": lambda t: "*mangle" in t,
    "table security": lambda t: "*security" in t,
}


@lru_cache(maxsize=None)
def coverage() -> dict:
    """feature -> number of seeds in COVERAGE_SEEDS whose ruleset has it."""
    return {f: sum(bool(test(case(s).rules)) for s in COVERAGE_SEEDS) for f, test in FEATURES.items()}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_coverage(feature):
    assert coverage()[feature] > 0, f"{feature!r} never appears over seeds {COVERAGE_SEEDS}"


#: each feature generate.py lists -> the check above that finds it
LISTED = {
    "-s": "-s", "-d": "-d", "-p": "-p tcp", "--sport": "--sport", "--dport": "--dport",
    "port range": "port range", "-i": "-i", "-o": "-o", "iface wildcard": "-i veth+", "!": "! -s",
    "multiport": "multiport --dports", "icmp": "icmp --icmp-type", "mark": "mark",
    "addrtype": "addrtype --dst-type LOCAL", "conntrack ctstate": "ctstate NEW", "conntrack ctdir": "ctdir REPLY",
    "comment": "comment", "statistic": "statistic probability 1",
    "ACCEPT": "ACCEPT", "DROP": "DROP", "REJECT": "REJECT (default)", "REJECT tcp-reset": "REJECT tcp-reset",
    "RETURN": "RETURN", "MARK --set-xmark": "MARK --set-xmark", "MARK --or-mark": "MARK --or-mark",
    "MARK --xor-mark": "MARK --xor-mark", "MARK --and-mark": "MARK --and-mark", "LOG": "LOG",
    "no target": "no target", "jump": "jump to a user chain", "goto": "goto", "DNAT": "DNAT",
    "DNAT with port": "DNAT with port", "SNAT": "SNAT to 192.168.0.2", "MASQUERADE": "MASQUERADE",
    "policy DROP": "policy DROP",
}


def test_every_listed_feature_is_checked():
    assert set(LISTED) == set(G.MATCH_FEATURES + G.TARGET_FEATURES)
    assert set(LISTED.values()) <= set(FEATURES)


# --------------------------------------------------------------------------
# invalid_case against what the kernel did

N_KINDS = len(G.INVALID_KINDS)


def _seeds_of(kind):
    """Three seeds that give `kind` (invalid_case cycles through the kinds)."""
    i = list(G.INVALID_KINDS).index(kind)
    return (i + 1, i + 1 + N_KINDS, i + 1 + 2 * N_KINDS)


def test_invalid_case_cycles_through_kinds():
    kinds = [G.invalid_case(s).name.split("-", 2)[2] for s in range(1, N_KINDS + 1)]
    assert sorted(kinds) == sorted(G.INVALID_KINDS)
    assert any(not loads for loads, _ in G.INVALID_KINDS.values())
    assert any(loads for loads, _ in G.INVALID_KINDS.values())
    with pytest.raises(ValueError):
        G.invalid_case(1, kind="no such kind")


@pytest.mark.parametrize("kind", list(G.INVALID_KINDS))
def test_invalid_case_kplab_agrees_with_kernel(kind):
    """expect_load is what iptables-restore did with this kind (verified in a
    namespace): kplab must refuse exactly the refused ones."""
    loads, why = G.INVALID_KINDS[kind]
    for seed in _seeds_of(kind):
        c = G.invalid_case(seed)
        assert c.name == f"invalid-{seed}-{kind}"
        assert c.expect_load is loads
        if loads:
            try:
                kplab.parse_rules(c.rules)
            except kplab.ParseError as e:
                pytest.fail(f"the kernel loads {why}; kplab refuses it: {e}")
            _check_packets(c.packets)
            assert c.packets
        else:
            with pytest.raises(kplab.ParseError):
                kplab.parse_rules(c.rules)
                pytest.fail(f"the kernel refuses {why}; kplab loads it")
            assert c.packets == ()


def test_invalid_case_flaw_is_the_only_one():
    """The background of every invalid case is itself valid: the random part
    alone (the same generator with the same seed) parses."""
    for seed in range(1, 2 * N_KINDS + 1):
        rng = G.random.Random(seed)
        text = G._RandomRules(rng, tables=("filter", "nat"), chain_range=(1, 3)).build().render()
        kplab.parse_rules(text)


# --------------------------------------------------------------------------
# kube_proxy_case

KUBE = [(k, n) for k in ("clusterip", "nodeport") for n in (1, 2, 3)] + [("noendpoints", 0)] + [
    ("hairpin", n) for n in (1, 2, 3, 4)]


def _section(text, table):
    m = re.search(rf"^\*{table}\n(.*?)^COMMIT$", text, re.M | re.S)
    return [line for line in m.group(1).splitlines() if line and not line.startswith("#")]


def _kernel_probabilities(text):
    """kube-proxy writes "%.10f"; iptables-save prints the stored value with 11 decimals."""
    return re.sub(r"--probability (\S+)",
                  lambda m: f"--probability {round(float(m.group(1)) * 2**31) / 2**31:.11f}", text)


@pytest.mark.parametrize("kind,n", KUBE)
def test_kube_proxy_case_shape(kind, n):
    c = G.kube_proxy_case(n, kind)
    assert c.expect_load is True and 3 <= len(c.packets) <= 6
    _check_packets(c.packets)
    rs = kplab.parse_rules(c.rules)
    # iptables-save form, apart from kube-proxy's "%.10f" probabilities
    assert kplab.save_rules(rs) == _kernel_probabilities(c.rules)
    probs = re.findall(r"--probability (\S+)", c.rules)
    eps = 0 if kind == "noendpoints" else n
    assert probs == [f"{1 / (eps - i):.10f}" for i in range(eps - 1)]
    assert "KUBE-SVC-POOGYJBNEVT3HFAO" in c.rules or kind == "noendpoints"
    assert ("-j MASQUERADE --random-fully" in c.rules) and ("--set-xmark 0x4000/0x4000" in c.rules)
    assert ("--dport 30080" in c.rules) == (kind in ("nodeport", "noendpoints"))
    assert ("-j REJECT" in c.rules) == (kind == "noendpoints")
    if kind == "hairpin":
        assert "--to-destination 10.244.1.7:8080" in c.rules
        assert c.packets[0] == G.PacketSpec("client", "tcp", G.SERVICE_IP, 80)


def test_kube_proxy_case_matches_the_seed_node():
    """One endpoint on backend1 is the course's seed node: the same nat table,
    and the same filter table but for the nfacct match (a fresh namespace
    has no nfacct counter, and kube-proxy then leaves it out)."""
    seed = (ROOT / "data" / "rules" / "seed-node.rules").read_text()
    c = G.kube_proxy_case(1, "clusterip")
    assert _section(c.rules, "nat") == _section(seed, "nat")
    seed_filter = [line.replace(" -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts", "")
                   for line in _section(seed, "filter")]
    assert _section(c.rules, "filter") == seed_filter


@pytest.mark.parametrize("n", (1, 2, 3))
def test_kube_proxy_case_reaches_every_endpoint(n):
    c = G.kube_proxy_case(n, "clusterip")
    node = kplab.standard_node(kplab.parse_rules(c.rules))
    paths = node.all_paths(node.packet("client", G.SERVICE_IP, "tcp", 80), "client")
    eps = sorted(f"{a}:8080" for a in (G.BACKEND1, G.BACKEND2, G.REMOTE1)[:n])
    assert sorted(p.dnat_to for p in paths) == eps
    assert all(abs(p.probability - 1 / n) < 1e-6 for p in paths)


def test_kube_proxy_case_refuses_bad_arguments():
    with pytest.raises(ValueError):
        G.kube_proxy_case(1, "loadbalancer")
    with pytest.raises(ValueError):
        G.kube_proxy_case(0, "clusterip")
    with pytest.raises(ValueError):
        G.kube_proxy_case(5, "hairpin")


# --------------------------------------------------------------------------
# lessons (tests/kernel/cases.py)

def test_lessons_parse_and_trace():
    names = [c.name for c in LESSONS]
    assert len(names) == len(set(names))
    assert KEEP_CONNTRACK <= set(names)
    for c in LESSONS:
        assert c.expect_load is True
        assert 2 <= len(c.packets) <= 6, c.name
        _check_packets(c.packets)
        node = kplab.standard_node(kplab.parse_rules(c.rules))
        for p in c.packets:
            t = node.send_from(p.from_, p.dst, p.proto, p.dport, sport=p.sport, src=p.src)
            assert t.verdict in ("ACCEPT", "DROP", "REJECT"), c.name


def test_lessons_cover_the_paths():
    """Each path of the netfilter reference has a lesson."""
    text = "\n".join(c.name for c in LESSONS).lower()
    for topic in ("forward", "local in", "local out", "hairpin", "nodeport", "reject", "tcp-reset", "drop policy",
                  "goto", "marks across tables", "addrtype", "ctstate", "multiport", "recent", "table order",
                  "raw table", "security table", "nat only for the first packet"):
        assert topic in text or topic.replace("ctstate", "conntrack state") in text, topic
