"""Small fixtures for the netfilter tests: rules text in, a standard node out.

`make_node(text, **kw)` builds the standard node (DESIGN section 3) on `text`
(a name that leaves `node` free for the tests' own variables);
`filter_rules(chain, *rules)` wraps rules in a `*filter` table;
`kube_rules(...)` writes a small kube-proxy-shaped nat table (one Service,
its endpoints, KUBE-MARK-MASQ / KUBE-POSTROUTING) for the path tests.
"""
from __future__ import annotations

import textwrap

import kplab

# Addresses of the standard node, by name (DESIGN section 3).
NODE_IP = "192.168.0.2"
POD_GW = "10.244.1.1"
CLIENT = "10.244.1.7"
BACKEND1 = "10.244.1.3"
BACKEND2 = "10.244.1.4"
REMOTE1 = "10.244.2.5"
PEER_NODE = "192.168.0.3"
EXTERNAL = "198.51.100.10"
SERVICE_IP = "10.96.5.81"


def make_node(text: str, **kw) -> kplab.Node:
    """The standard node running the rules in `text` (iptables-save text)."""
    return kplab.standard_node(kplab.parse_rules(textwrap.dedent(text)), **kw)


def table(name: str, *lines: str, chains=()) -> str:
    """One table section: built-in chains come for free, `chains` declares user chains."""
    head = [f"*{name}"] + [f":{c} - [0:0]" for c in chains]
    return "\n".join(head + list(lines) + ["COMMIT"]) + "\n"


def filter_rules(chain: str, *rules: str, chains=()) -> str:
    """`*filter` with `-A CHAIN rule` for each rule."""
    return table("filter", *(f"-A {chain} {r}" for r in rules), chains=chains)


def rule_steps(trace, table_name=None, chain=None):
    """The rule steps of a trace, optionally of one table/chain."""
    return [s for s in trace.steps if s.kind == "rule"
            and (table_name is None or s.table == table_name)
            and (chain is None or s.chain == chain)]


def is_sentence(text) -> bool:
    """A non-empty explanation of more than one word."""
    return isinstance(text, str) and len(text.split()) >= 2


def kube_rules(endpoints=((BACKEND1, 8080),), service_ip=SERVICE_IP, port=80, node_port=None,
               probabilities=None, random_fully=False, filter_lines=()) -> str:
    """A small kube-proxy (iptables mode) ruleset for one TCP Service.

    The chains have kube-proxy's shape: KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP
    (statistic cascade written with "%.10f" like kube-proxy), hairpin
    masquerade through KUBE-MARK-MASQ and KUBE-POSTROUTING, and optionally a
    NodePort through KUBE-NODEPORTS / KUBE-EXT.
    """
    n = len(endpoints)
    if probabilities is None:
        probabilities = [1.0 / (n - i) for i in range(n - 1)]
    seps = [f"KUBE-SEP-E{i}" for i in range(n)]
    chains = ["KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES", "KUBE-SVC-WEB"] + seps
    if node_port:
        chains.append("KUBE-EXT-WEB")
    svc = f"-d {service_ip}/32 -p tcp -m comment --comment \"default/web:http cluster IP\" -m tcp --dport {port}"
    lines = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        + (" --random-fully" if random_fully else ""),
        f"-A KUBE-SERVICES {svc} -j KUBE-SVC-WEB",
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule '
        'in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
        f"-A KUBE-SVC-WEB ! -s 10.244.0.0/16 {svc} -j KUBE-MARK-MASQ",
    ]
    if node_port:
        lines += [
            f'-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport {node_port} '
            "-j KUBE-EXT-WEB",
            '-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web:http external '
            'destinations" -j KUBE-MARK-MASQ',
            "-A KUBE-EXT-WEB -j KUBE-SVC-WEB",
        ]
    for i, ((addr, eport), sep) in enumerate(zip(endpoints, seps)):
        stat = (f" -m statistic --mode random --probability {probabilities[i]:.10f}"
                if i < n - 1 else "")
        lines.append(f'-A KUBE-SVC-WEB -m comment --comment "default/web:http -> {addr}:{eport}"{stat} -j {sep}')
        lines.append(f'-A {sep} -s {addr}/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ')
        lines.append(f'-A {sep} -p tcp -m comment --comment "default/web:http" -m tcp '
                     f"-j DNAT --to-destination {addr}:{eport}")
    out = table("nat", *lines, chains=chains)
    if filter_lines:
        out = table("filter", *filter_lines) + out
    return out
