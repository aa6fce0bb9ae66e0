"""Deterministic kube-proxy-shaped rulesets for the benchmarks.

`kube_proxy_ruleset(services, endpoints, seed=0)` returns the text that
`iptables-save` prints on a node where kube-proxy (iptables mode, see
/work/shared/reference/kube-proxy-iptables-spec.md) programs `services`
ClusterIP Services (one TCP port, 80 -> 8080) with `endpoints` endpoints
each: the saved form, exactly as `python3 -m kplab save` prints it, so that
`save(parse(text)) == text`.

Shape (per Service `ns/svcN:http`, hash `<h>` = base32(sha256(spn + "tcp"))[:16]):

    -A KUBE-SERVICES -d CLUSTERIP/32 -p tcp -m comment --comment "ns/svcN:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-<h>
    -A KUBE-SVC-<h> ! -s 10.244.0.0/16 -d CLUSTERIP/32 -p tcp -m comment --comment "ns/svcN:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
    -A KUBE-SVC-<h> [-m comment ...] -m statistic --mode random --probability P -j KUBE-SEP-<x>   (n-1 times)
    -A KUBE-SVC-<h> [-m comment ...] -j KUBE-SEP-<x>
    -A KUBE-SEP-<x> -s EP/32 [-m comment ...] -j KUBE-MARK-MASQ
    -A KUBE-SEP-<x> -p tcp [-m comment ...] -m tcp -j DNAT --to-destination EP:8080

plus the fixed chains (built-in jumps, KUBE-MARK-MASQ, KUBE-POSTROUTING,
KUBE-FORWARD, KUBE-FIREWALL, the canaries) and the final nodeports rule of
nat KUBE-SERVICES. As kube-proxy does, the SVC->SEP and SEP rules lose their
comments when there are more than 1000 endpoint chains (large-cluster mode).
Services appear in KUBE-SERVICES in a seeded random order (kube-proxy walks
a Go map). ClusterIPs come from 10.96.0.0/12, endpoints from 10.244.0.0/16
(unique while there are fewer than 65,534 endpoints in total).

Rule count: FIXED_RULES + services * (2 + 3 * endpoints).
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import random
from dataclasses import dataclass

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
CLUSTER_CIDR = ipaddress.ip_network("10.244.0.0/16")
PORT, TARGET_PORT, PROTO = 80, 8080, "tcp"
MARK = "0x4000"
#: kube-proxy drops SVC/SEP comments above this many endpoint chains.
LARGE_CLUSTER_THRESHOLD = 1000
#: Rules that do not depend on the number of Services (filter 15, nat 8).
FIXED_RULES = 23
NODEPORTS_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"


def port_proto_hash(spn: str, proto: str = PROTO, endpoint: str = "") -> str:
    """kube-proxy's chain-name suffix: base32(sha256(spn + proto [+ endpoint]))[:16]."""
    return base64.b32encode(hashlib.sha256((spn + proto + endpoint).encode()).digest()).decode()[:16]


def probability_text(n: int) -> str:
    """What iptables-save prints for kube-proxy's `--probability` of 1/n.

    kube-proxy writes "%0.10f" of 1/n; the kernel keeps round(p * 2^31) and
    iptables-save prints that stored value with "%.11f".
    """
    written = float("%0.10f" % (1.0 / n))
    stored = int(written * 0x80000000 + 0.5)
    return "%.11f" % (stored / 0x80000000)


def rule_count(services: int, endpoints: int) -> int:
    """How many rules `kube_proxy_ruleset(services, endpoints)` holds."""
    return FIXED_RULES + services * (2 + 3 * endpoints)


def services_for_rules(rules: int, endpoints: int = 5) -> int:
    """The number of Services whose ruleset is closest to `rules` rules."""
    return max(1, round((rules - FIXED_RULES) / (2 + 3 * endpoints)))


@dataclass(frozen=True)
class Service:
    name: str              # ns/svcN:http (the service port name)
    cluster_ip: str
    chain: str             # KUBE-SVC-<h>
    endpoints: tuple       # ((ip, "ip:port", KUBE-SEP-<x>), ...) sorted by "ip:port"


def kube_proxy_services(services: int, endpoints: int, seed: int = 0) -> list[Service]:
    """The Services of the ruleset, in the order of nat KUBE-SERVICES."""
    if services < 0 or endpoints < 1:
        raise ValueError("need services >= 0 and endpoints >= 1")
    rng = random.Random(seed)
    svc_base = int(SERVICE_CIDR.network_address)
    # skip .0 (network), .1 (kubernetes API) and the broadcast address
    cips = rng.sample(range(2, SERVICE_CIDR.num_addresses - 1), services)
    ep_base = int(CLUSTER_CIDR.network_address)
    hosts = CLUSTER_CIDR.num_addresses - 2
    total = services * endpoints
    pool = rng.sample(range(1, hosts + 1), min(total, hosts))
    out = []
    for i in range(services):
        spn = f"ns/svc{i}:http"
        cip = str(ipaddress.IPv4Address(svc_base + cips[i]))
        eps = []
        for k in range(endpoints):
            ip = str(ipaddress.IPv4Address(ep_base + pool[(i * endpoints + k) % len(pool)]))
            eps.append(f"{ip}:{TARGET_PORT}")
        eps = sorted(set(eps))   # kube-proxy de-duplicates and sorts by "ip:port"
        out.append(Service(spn, cip, "KUBE-SVC-" + port_proto_hash(spn),
                           tuple((e.rsplit(":", 1)[0], e, "KUBE-SEP-" + port_proto_hash(spn, PROTO, e))
                                 for e in eps)))
    rng.shuffle(out)
    return out


def _q(comment: str) -> str:
    return f'-m comment --comment "{comment}"'


def kube_proxy_ruleset(services: int, endpoints: int, seed: int = 0) -> str:
    """iptables-save text of a kube-proxy node (see the module docstring)."""
    svcs = kube_proxy_services(services, endpoints, seed)
    large = sum(len(s.endpoints) for s in svcs) > LARGE_CLUSTER_THRESHOLD
    cidr = str(CLUSTER_CIDR)
    canaries = ("KUBE-KUBELET-CANARY", "KUBE-PROXY-CANARY")

    out = ["*mangle"]
    out += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")]
    out += [f":{c} - [0:0]" for c in canaries]
    out.append("COMMIT")

    out.append("*filter")
    out += [f":{c} ACCEPT [0:0]" for c in ("INPUT", "FORWARD", "OUTPUT")]
    fchains = sorted(canaries + ("KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL", "KUBE-FORWARD", "KUBE-NODEPORTS",
                                 "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"))
    out += [f":{c} - [0:0]" for c in fchains]
    new = "-m conntrack --ctstate NEW"
    lbfw = f'{new} {_q("kubernetes load balancer firewall")} -j KUBE-PROXY-FIREWALL'
    ext = f'{new} {_q("kubernetes externally-visible service portals")} -j KUBE-EXTERNAL-SERVICES'
    portals = f'{new} {_q("kubernetes service portals")} -j KUBE-SERVICES'
    out += [
        "-A INPUT -j KUBE-FIREWALL",
        f"-A INPUT {lbfw}",
        f'-A INPUT {_q("kubernetes health check service ports")} -j KUBE-NODEPORTS',
        f"-A INPUT {ext}",
        f"-A FORWARD {lbfw}",
        f'-A FORWARD {_q("kubernetes forwarding rules")} -j KUBE-FORWARD',
        f"-A FORWARD {portals}",
        f"-A FORWARD {ext}",
        "-A OUTPUT -j KUBE-FIREWALL",
        f"-A OUTPUT {lbfw}",
        f"-A OUTPUT {portals}",
        f'-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 {_q("block incoming localnet connections")} '
        "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        f'-A KUBE-FORWARD {_q("kubernetes forwarding rules")} -m mark --mark {MARK}/{MARK} -j ACCEPT',
        f'-A KUBE-FORWARD {_q("kubernetes forwarding conntrack rule")} '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "COMMIT",
    ]

    # nat: rules grouped by chain, chains in iptables-save order (built-ins,
    # then user chains sorted by name).
    chains: dict[str, list[str]] = {c: [] for c in canaries + ("KUBE-MARK-MASQ", "KUBE-NODEPORTS",
                                                                "KUBE-POSTROUTING", "KUBE-SERVICES")}
    chains["KUBE-MARK-MASQ"].append(f"-j MARK --set-xmark {MARK}/{MARK}")
    chains["KUBE-POSTROUTING"] += [
        f"-m mark ! --mark {MARK}/{MARK} -j RETURN",
        f"-j MARK --set-xmark {MARK}/0x0",
        f'{_q("kubernetes service traffic requiring SNAT")} -j MASQUERADE --random-fully',
    ]
    svc_rules = chains["KUBE-SERVICES"]
    for s in svcs:
        cluster = f'-d {s.cluster_ip}/32 -p tcp {_q(s.name + " cluster IP")} -m tcp --dport {PORT}'
        svc_rules.append(f"{cluster} -j {s.chain}")
        rules = chains[s.chain] = [f"! -s {cidr} {cluster} -j KUBE-MARK-MASQ"]
        n = len(s.endpoints)
        for i, (ip, ep, sep) in enumerate(s.endpoints):
            com = "" if large else _q(f"{s.name} -> {ep}") + " "
            stat = f"-m statistic --mode random --probability {probability_text(n - i)} " if i < n - 1 else ""
            rules.append(f"{com}{stat}-j {sep}")
            scom = "" if large else _q(s.name) + " "
            chains[sep] = [f"-s {ip}/32 {scom}-j KUBE-MARK-MASQ",
                           f"-p tcp {scom}-m tcp -j DNAT --to-destination {ep}"]
    svc_rules.append(f'{_q(NODEPORTS_COMMENT)} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')

    out.append("*nat")
    out += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    names = sorted(chains)
    out += [f":{c} - [0:0]" for c in names]
    out += [
        f'-A PREROUTING {_q("kubernetes service portals")} -j KUBE-SERVICES',
        f'-A OUTPUT {_q("kubernetes service portals")} -j KUBE-SERVICES',
        f'-A POSTROUTING {_q("kubernetes postrouting rules")} -j KUBE-POSTROUTING',
    ]
    for c in names:
        prefix = f"-A {c} "
        out += [prefix + r for r in chains[c]]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python3 bench/_rulesets.py SERVICES ENDPOINTS [SEED] > rules.txt
    import sys
    args = [int(a) for a in sys.argv[1:]] or [3, 2]
    sys.stdout.write(kube_proxy_ruleset(*args))
