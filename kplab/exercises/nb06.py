"""Exercises for notebook 6: kube-proxy's rule layout.

The predictions are computed from rules kube-proxy would write (kplab.kube
renders the seed cluster, tested against kube-proxy's own test data) and
from the simulator. The cascades written by hand are checked with
`Node.all_paths`: every branch of the `statistic --mode random` rules, each
with its probability, so a check sees the exact share of new connections
each endpoint gets, not a sample.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import KplabError
from ._core import Exercise, right, wrong
from .checks import _numbered, as_ruleset_text, number

DATA = Path(__file__).resolve().parents[2] / "data" / "clusters"
SERVICE_PORT = "default/backend:http"     # the seed Service's port: ClusterIP 10.96.5.81:80
SERVICE = "10.96.5.81"

#: The Service address of the hand-written cascades (a free address of the Service CIDR 10.96.0.0/12).
VIP = "10.96.0.50"
#: Where each endpoint of the hand-written cascades lives (the standard node's Pods and the peer's).
POD_NAMES = {"10.244.1.3:8080": "backend1", "10.244.1.4:8080": "backend2", "10.244.2.5:8080": "remote1"}


# --------------------------------------------------------------------------
# Reading what kube-proxy writes

def render_seed(replicas: int = 1, node: str = "node-1"):
    """kube-proxy's rules on `node` for the seed cluster (data/clusters/seed.yaml with the
    lessons' kube-proxy configuration), the backend Deployment scaled to `replicas`."""
    from ..kube.cluster import Cluster
    from ..kube.proxier import render
    cluster = Cluster.load(str(DATA / "seed.yaml"), str(DATA / "kube-proxy-config.yaml"))
    if replicas != 1:
        cluster = cluster.scale("backend", replicas)
    return render(cluster.services(), cluster.slices(), cluster.proxy_config(node))


def cascade(ruleset, chain: str) -> list:
    """The endpoint rules of a service chain in order: [(target chain, --probability or None)].

    Rules that jump to KUBE-MARK-MASQ are left out: they mark and come back, they choose nothing.
    """
    from ..netfilter import matches as M
    out = []
    for rule in ruleset.tables["nat"].chains[chain].rules:
        target = rule.jump
        if target is None or target == "KUBE-MARK-MASQ":
            continue
        p = None
        for m in rule.matches:
            if type(m) is M.Statistic and m.mode == "random":
                p = m.probability
        out.append((target, p))
    return out


def _second_rule_probability(n: int = 4) -> float:
    from ..kube.proxier import service_chain_name
    rules = render_seed(n).ruleset
    return cascade(rules, service_chain_name(SERVICE_PORT, "tcp"))[1][1]


def endpoint_shares(ruleset, from_: str = "client", dst: str = VIP, proto: str = "tcp", dport: int = 80,
                    topology=None) -> dict:
    """The exact share of new connections from `from_` to dst:dport that each DNAT
    destination ("ip:port") gets, from every path through the random statistic rules;
    connections that no rule DNATs are under the key None. Largest share first."""
    from ..node import Node
    node = Node(ruleset, topology)
    shares: dict = {}
    for t in node.all_paths(node.packet(from_, dst, proto, dport), from_):
        shares[t.dnat_to] = shares.get(t.dnat_to, 0.0) + t.probability
    # largest share first; among equal shares the destinations in order, "no DNAT" last
    return dict(sorted(shares.items(), key=lambda kv: (-round(kv[1], 12), kv[0] is None, kv[0] or "")))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def shares(expected: dict, *, base: str, dst: str = VIP, dport: int = 80, from_: str = "client",
           tolerance: float = 1e-3, praise: str = ""):
    """A check: the learner's nat rules (added to `base`, or a whole file) must give each
    endpoint of `expected` ({"ip:port": share}) its share of new connections, within
    `tolerance`, and leave none without a DNAT."""
    names = dict(POD_NAMES)

    def label(addr):
        return f"{names[addr]} ({addr})" if addr in names else str(addr)

    def check(answer):
        from .. import parse_rules
        text = as_ruleset_text(answer, base, "nat")
        try:
            ruleset = parse_rules(text, source="your rules")
        except KplabError as exc:
            return wrong(f"Your rules do not load: {exc}", _numbered(text))
        try:
            got = endpoint_shares(ruleset, from_, dst, "tcp", dport)
        except KplabError as exc:
            return wrong(f"kplab could not follow every path through your rules: {exc}")
        details = []
        for addr, want in expected.items():
            have = got.get(addr, 0.0)
            mark = "✓" if abs(have - want) <= tolerance else "✗"
            details.append(f"{mark} {label(addr)}: {_pct(have)} of new connections (wanted {_pct(want)})")
        unmatched = got.get(None, 0.0)
        if unmatched > tolerance:
            details.append(f"✗ no DNAT: {_pct(unmatched)} of new connections")
        strays = sorted(a for a in got if a is not None and a not in expected and got[a] > tolerance)
        for a in strays:
            details.append(f"✗ {a}: {_pct(got[a])} of new connections (not an endpoint)")
        starved = [a for a in expected if got.get(a, 0.0) <= tolerance]
        if starved:
            return wrong(f"{label(starved[0])} never gets a connection: no rule sends connections to it, or a "
                         "rule before its own takes everything that reaches it (a rule without a statistic match "
                         "matches every packet).", details)
        if unmatched > tolerance:
            return wrong(f"{_pct(unmatched)} of new connections match no rule and are not DNATed: they would go "
                         f"to {dst} itself, which no host has. The last rule must take everything left: give it "
                         "no statistic match.", details)
        if strays:
            return wrong(f"Some connections go to {strays[0]}, which is not an endpoint of this Service.", details)
        off = [a for a, want in expected.items() if abs(got.get(a, 0.0) - want) > tolerance]
        if off:
            return wrong("The shares are uneven: a rule only sees what the rules before it left. With k "
                         "endpoints still to serve, a rule must take 1/k of what reaches it, so the first of n "
                         "rules has probability 1/n and the last has no statistic match.", details)
        return right(praise or "Every endpoint gets its share of new connections, and none is left over.", details)
    return check


# --------------------------------------------------------------------------
# The exercises

second_probability = Exercise(
    id="6.1", kind="predict", title="The second rule of a four-endpoint cascade",
    prompt="Scale the seed Deployment backend to 4 replicas. kube-proxy's KUBE-SVC-... chain for "
           "default/backend:http then has one statistic rule per endpoint (after its KUBE-MARK-MASQ rule). "
           "What --probability does the rule for the second endpoint carry? Answer with a number "
           "(a fraction like \"1/5\" is fine). Predict before you run the next cell.",
    checker=number(
        _second_rule_probability, tolerance=1e-3,
        why={0.25: "1/4 is the first rule's probability. The second rule sees only the 3/4 of connections the "
                   "first one left: to give its endpoint 1/4 of all connections it must take a larger part of "
                   "what reaches it.",
             0.5: "1/2 is the third rule's: it sees what the first two left (half of all), when two endpoints "
                  "remain."},
        low="Too small: the second rule only sees the connections the first rule left (3/4 of them), and one "
            "endpoint in three of those remaining must get them.",
        high="Too large: with three endpoints still to serve, the second rule must leave two thirds of what "
             "reaches it to the rules after it.",
        praise="1/3: the second rule sees the 3/4 the first rule left and takes a third of them, 1/4 of all."),
    hints=("The first rule takes 1/4 of all new connections. What fraction of connections reaches the second?",
           "kube-proxy writes 1/k for the rule that has k endpoints left to choose from, itself included."),
    answer="1/3",
    explanation="kube-proxy gives the rule for endpoint i (1-based) of n the probability 1/(n-i+1): 1/4, 1/3, "
                "1/2, then a rule with no statistic match. The second rule sees 3/4 of the connections and takes "
                "1/3 of them: 1/4 of all, the same as every other endpoint. It is written --probability "
                "0.3333333333; iptables-save shows 0.33333333349, the odds the kernel stores (round(p * 2^31) / 2^31).",
    wrong_answers=(("0.25", "first rule"), ("1/2", "third rule"), ("0.1", "too small"), ("0.9", "too large"),
                   ("a third", "answer with a number")),
)


def share_to_node(replicas: int, node: str = "node-2", from_node: str = "node-1") -> float:
    """The share of a Pod's new connections to the seed Service that node `from_node`'s rules
    send to endpoints running on `node`, with the backend Deployment scaled to `replicas`."""
    from ..kube.cluster import Cluster
    from ..kube.proxier import render
    cluster = Cluster.load(str(DATA / "seed.yaml"), str(DATA / "kube-proxy-config.yaml")).scale("backend", replicas)
    where = {e.hostport: e.node for e in cluster.endpoints(SERVICE_PORT)}
    rules = render(cluster.services(), cluster.slices(), cluster.proxy_config(from_node)).ruleset
    got = endpoint_shares(rules, "client", SERVICE, "tcp", 80)
    return sum(p for addr, p in got.items() if where.get(addr) == node)


leaving_node = Exercise(
    id="6.2", kind="predict", title="How much traffic leaves the node?",
    prompt="Scale backend to 5 replicas: two backend Pods then run on node-1 and three on node-2. client, a Pod on "
           "node-1, opens many connections to the Service 10.96.5.81:80. What share of them do node-1's rules "
           "send to a Pod on node-2? Answer with a number (a fraction like \"1/4\" or a decimal like 0.25).",
    checker=number(
        lambda: share_to_node(5), tolerance=1e-3,
        why={0.0: "kube-proxy does not prefer the endpoints of its own node for a ClusterIP (the default "
                  "internalTrafficPolicy: Cluster): the KUBE-SVC chain lists every ready endpoint of the whole "
                  "cluster, each with an equal share.",
             0.5: "Not half per node: the cascade gives each endpoint, not each node, an equal share.",
             0.4: "2/5 is the share that stays on node-1 (its two endpoints); the question asks what leaves."},
        low="Too small: every one of the 5 endpoints gets the same share, wherever it runs.",
        high="Too large: the two endpoints on node-1 get their shares too.",
        praise="3/5: each of the 5 endpoints gets 1/5, and three of them run on node-2."),
    hints=("Does the KUBE-SVC chain on node-1 list only node-1's endpoints?",
           "Each endpoint gets 1/n of the new connections, wherever it runs."),
    answer="3/5",
    explanation="With the default internalTrafficPolicy (Cluster), kube-proxy on every node writes a KUBE-SVC "
                "chain with all ready endpoints of the Service and gives each 1/n. Three of the five run on "
                "node-2, so 3/5 of client's connections cross to node-2, even though two backends run next to "
                "it. internalTrafficPolicy: Local would keep them on node-1 (a KUBE-SVL chain with the local "
                "endpoints only).",
    wrong_answers=(("0", "internalTrafficPolicy"), ("1/2", "each endpoint"), ("2/5", "stays on node-1"),
                   ("0.2", "too small"),
                   ("1", "too large")),
)

TWO_BASE = f"""*nat
:SVC-WEB - [0:0]
:SEP-1 - [0:0]
:SEP-2 - [0:0]
-A PREROUTING -d {VIP}/32 -p tcp -m tcp --dport 80 -j SVC-WEB
-A OUTPUT -d {VIP}/32 -p tcp -m tcp --dport 80 -j SVC-WEB
-A SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.1.3:8080
-A SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.1.4:8080
COMMIT
"""

two_endpoints = Exercise(
    id="6.3", kind="write", title="A cascade for two endpoints",
    prompt=f"The rules below (ex.two_endpoints_base) send connections to {VIP}:80 into the chain SVC-WEB, and "
           "have one chain per endpoint: SEP-1 DNATs to backend1 (10.244.1.3:8080), SEP-2 to backend2 "
           "(10.244.1.4:8080). Write the rules of SVC-WEB (lines starting with -A SVC-WEB) so that each "
           "backend gets half of the new connections and none is left without a DNAT.",
    checker=shares({"10.244.1.3:8080": 0.5, "10.244.1.4:8080": 0.5}, base=TWO_BASE,
                   praise="Half and half: the first rule takes 1/2, the second takes all that is left."),
    hints=("A statistic match: -m statistic --mode random --probability P matches a fraction P of the packets "
           "that reach the rule.",
           "Only the rules before the last need a probability: the last one catches all that is left.",
           "-A SVC-WEB -m statistic --mode random --probability 0.5 -j SEP-1, then -A SVC-WEB -j SEP-2."),
    answer="-A SVC-WEB -m statistic --mode random --probability 0.5 -j SEP-1\n-A SVC-WEB -j SEP-2",
    explanation="The first rule matches half of the new connections and jumps to SEP-1; the other half fall "
                "through to the second rule, which has no statistic match and takes them all. That is exactly "
                "what kube-proxy writes for two endpoints (--probability 0.5000000000, then an unconditional "
                "jump).",
    wrong_answers=(
        ("-A SVC-WEB -j SEP-1\n-A SVC-WEB -j SEP-2", "never gets a connection"),
        ("-A SVC-WEB -m statistic --mode random --probability 0.5 -j SEP-1\n"
         "-A SVC-WEB -m statistic --mode random --probability 0.5 -j SEP-2", "match no rule"),
        ("-A SVC-WEB -m statistic --mode random --probability 0.3333 -j SEP-1\n-A SVC-WEB -j SEP-2", "uneven"),
        ("-A SVC-WEB -m statistic --probability 0.5 -j SEP-1\n-A SVC-WEB -j SEP-2", "do not load"),
    ),
)
two_endpoints_base = TWO_BASE

THREE_CHAINS = f"""*nat
:SVC-WEB - [0:0]
:SEP-1 - [0:0]
:SEP-2 - [0:0]
:SEP-3 - [0:0]
-A PREROUTING -d {VIP}/32 -p tcp -m tcp --dport 80 -j SVC-WEB
-A OUTPUT -d {VIP}/32 -p tcp -m tcp --dport 80 -j SVC-WEB
"""
THREE_SEPS = """-A SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.1.3:8080
-A SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.1.4:8080
-A SEP-3 -p tcp -m tcp -j DNAT --to-destination 10.244.2.5:8080
COMMIT
"""


def _three(*svc_rules: str) -> str:
    """The three-endpoint rules with these SVC-WEB rules."""
    return THREE_CHAINS + "".join(f"-A SVC-WEB {r}\n" for r in svc_rules) + THREE_SEPS


STARVED = _three("-m statistic --mode random --probability 0.5 -j SEP-1",
                 "-m statistic --mode random --probability 0.5 -j SEP-2",
                 "-m statistic --mode random --probability 0.5 -j SEP-3")
FAIR = _three("-m statistic --mode random --probability 0.3333333333 -j SEP-1",
              "-m statistic --mode random --probability 0.5 -j SEP-2",
              "-j SEP-3")

starved_endpoint = Exercise(
    id="6.4", kind="debug", title="The starved third endpoint",
    prompt="Someone wrote this cascade by hand for three endpoints (backend1, backend2 and remote1 on the other "
           "node), giving every rule --probability 0.5 \"so that each gets a fair coin\". remote1 gets far fewer "
           "connections than the others, and some connections reach nobody. Find out the real shares "
           "(node.all_paths), then fix the SVC-WEB rules and give the whole fixed text.",
    checker=shares({"10.244.1.3:8080": 1 / 3, "10.244.1.4:8080": 1 / 3, "10.244.2.5:8080": 1 / 3},
                   base=THREE_CHAINS + THREE_SEPS,
                   praise="A third each: 1/3, then 1/2 of the rest, then everything left, as kube-proxy writes it."),
    hints=("Follow 100 connections: how many does rule 1 take, how many reach rule 2, how many rule 3, and how "
           "many fall off the end of the chain?",
           "A rule sees only what the rules before it left. With k endpoints left it must take 1/k of that.",
           "Probabilities 1/3, 1/2, and a last rule with no statistic match."),
    answer=FAIR,
    explanation="With 0.5 everywhere the first endpoint gets 1/2, the second 1/4 (half of the half left), the "
                "third 1/8, and the last 1/8 of connections match no rule: they leave SVC-WEB without a DNAT and go to "
                f"{VIP}, which no host has. kube-proxy's recipe, 1/n, 1/(n-1), ..., 1/2, then an unconditional "
                "jump, gives each endpoint 1/n and leaves nothing over.",
    starter=STARVED,
    wrong_answers=(
        (STARVED, "match no rule"),
        (_three("-m statistic --mode random --probability 0.5 -j SEP-1",
                "-m statistic --mode random --probability 0.5 -j SEP-2", "-j SEP-3"), "uneven"),
        (FAIR.replace("-A SVC-WEB -j SEP-3\n", ""), "never gets a connection"),
        (FAIR.replace("0.3333333333", "0.3333333333 --bogus"), "do not load"),
    ),
)

EXERCISES = (second_probability, leaving_node, two_endpoints, starved_endpoint)
