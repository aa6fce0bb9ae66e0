"""Helpers for test_kube_proxy_flows.py: run kube-proxy's own packet-flow
expectations (tests/data/conformance/kube-proxy/packet_flows.json) through
kplab's real-kernel engine and translate the result back into the words of
kube-proxy's test tracer (`tracePacket` in proxier_test.go).

Two semantics meet here, and the translation between them is explicit:

* Upstream's tracer walks nat PREROUTING for every source, follows every
  `statistic` branch, lists all DNAT destinations, sets `masq` when any
  explored branch jumped to KUBE-MARK-MASQ, then walks the filter chains
  KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS, KUBE-PROXY-FIREWALL
  directly (see the data's README, "the test tracer").
* kplab walks the packet the way the kernel does: from a Pod or from outside
  through PREROUTING, routing, INPUT or FORWARD, POSTROUTING; from the node
  itself through OUTPUT, POSTROUTING (and back in through `lo` for a local
  destination). `Node.all_paths` gives every outcome of the random
  `statistic` draws; the mark set by KUBE-MARK-MASQ only shows as a real
  MASQUERADE in KUBE-POSTROUTING.

The mapping (kplab outcomes -> upstream words), applied by `mismatches`:

* endpoints: the *set* of `dnat_to` over all outcomes (upstream lists them
  in rule order, the byte order of "ip:port"; sets are compared, and the
  upstream list is checked to have no duplicates);
* a verdict word W ("REJECT", "DROP", or "ACCEPT" as for a health-check
  node port): every outcome ends with verdict W, decided by a rule of one
  of the four filter chains upstream walks (not by a chain policy);
* no verdict word ("" or endpoints only): every outcome is ACCEPT and no
  rule of those four chains decided anything;
* DNAT happened in nat PREROUTING for arriving packets, in nat OUTPUT for
  packets the node creates (upstream walks PREROUTING for both);
* masq: some outcome was really masqueraded (a MASQUERADE rule fired in
  POSTROUTING). This "any outcome" reading is the kernel counterpart of
  upstream's "any explored branch jumped to KUBE-MARK-MASQ".
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from kplab.netfilter import parse
from kplab.node import Node
from kplab.topology import Topology

DATA = Path(__file__).parent.parent / "data" / "conformance" / "kube-proxy" / "packet_flows.json"

#: Where the tests' Pod addresses live. The model's `pod_cidr` is kube-proxy's
#: local-traffic detector, which some cases switch off (null); the Pods are
#: still Pods, so the topology uses these ranges whatever the detector says.
POD_RANGES = {4: ipaddress.ip_network("10.0.0.0/8"), 6: ipaddress.ip_network("fd00:10::/64")}


def load_cases() -> list:
    return json.loads(DATA.read_text())["test_cases"]


@dataclass(frozen=True)
class FlowCase:
    case_id: str
    step: int
    flow: dict
    step_data: dict

    @property
    def id(self) -> str:
        return f"{self.case_id}/{self.step}/{self.flow['name']}"

    @property
    def family(self) -> int:
        return step_family(self.step_data)


def all_flows() -> list:
    out = []
    for c in load_cases():
        for s in c["steps"]:
            for f in s["flows"]:
                out.append(FlowCase(c["id"], s["step"], f, s))
    return out


def step_family(step: dict) -> int:
    model = step.get("model")
    if model and model["proxier"]["ip_family"] == "IPv6":
        return 6
    # the literal TestTracePacket rules are IPv4
    return 4


# ----------------------------------------------------------------------
# Translation 1: the fake iptables' storage -> what kube-proxy installed.

def requote_fake_comments(text: str) -> str:
    """Quote the multi-word comments of the jump rules kube-proxy installs
    with `EnsureRule` (`-A PREROUTING ... --comment kubernetes service
    portals -j KUBE-SERVICES`).

    Real kube-proxy passes those arguments to iptables as an argv array, so
    the comment is one argument. Upstream's FakeIPTables stores the rule as
    the arguments joined by spaces and loses the quoting; the README says so
    ("their comments are unquoted"). Restored as written, the real
    iptables-restore refuses the line ("Bad argument `service'", checked on
    iptables 1.8.9 nft and legacy), and so, correctly, does kplab. This puts
    the quotes back: after `--comment`, an unquoted run of words up to the
    next option (a word starting with "-") is one argument.
    """
    out = []
    for line in text.splitlines():
        words = line.split(" ")
        if line.startswith("-A ") and "--comment" in words:
            i = words.index("--comment") + 1
            if i < len(words) and not words[i].startswith('"'):
                j = i
                while j < len(words) and not words[j].startswith("-"):
                    j += 1
                if j - i > 1:
                    words = words[:i] + ['"' + " ".join(words[i:j]) + '"'] + words[j:]
            line = " ".join(words)
        out.append(line)
    return "\n".join(out) + "\n"


_RULESETS: dict = {}


def ruleset_for(fc: FlowCase):
    key = (fc.case_id, fc.step)
    if key not in _RULESETS:
        _RULESETS[key] = parse(requote_fake_comments(fc.step_data["ruleset"]),
                               source=f"{fc.case_id} step {fc.step} ruleset", family=fc.family)
    return _RULESETS[key]


# ----------------------------------------------------------------------
# Translation 2: upstream's node (a set of "local" IPs) -> a kplab topology.

def topology_for(fc: FlowCase) -> Topology:
    """The standard node, with every node_ip of the step's family local, and
    the flow's source (if a Pod address) as a local Pod named "src".

    IPv4: 192.168.0.2/24 on eth0 (the proxier's node_ip); 192.168.1.2 and
    192.168.99.11 as further local addresses. IPv6: 2001:db8::1/64 on eth0;
    2001:db8:1::2 local; the standard v6 peer gateway is 2001:db8::1, which
    here is the node's own address, so the peer moves to 2001:db8::fe/::3.
    """
    fam = fc.family
    node_ips = [a for a in fc.step_data["node_ips"] if ipaddress.ip_address(a).version == fam]
    if fam == 4:
        primary = "192.168.0.2"
        # kube-proxy sets net.ipv4.conf.all.route_localnet=1 (localhost NodePorts)
        spec = {"node": {"ip": primary + "/24", "local_ips": [a for a in node_ips if a != primary],
                         "route_localnet": True}}
    else:
        primary = "2001:db8::1"
        spec = {"node": {"ip": primary + "/64", "local_ips": [a for a in node_ips if a != primary]},
                "peer": {"gateway_ip": "2001:db8::fe", "node_ip": "2001:db8::3"}}
    origin, _ = origin_for(fc)
    if origin == "src":
        std = Topology(None, family=fam).spec["pods"]
        spec["pods"] = [{"name": "src", "ip": fc.flow["source_ip"]}] + \
            [p for p in std if p["ip"] != fc.flow["source_ip"]]
    return Topology(spec, family=fam)


def origin_for(fc: FlowCase) -> tuple:
    """(from_ name, why): where the flow's packet enters the node.

    * the node's own addresses and loopback: created on the node ("node");
    * a Pod address (POD_RANGES): a local Pod "src" (it crosses PREROUTING
      like upstream's tracer assumes for every source);
    * anything else: an outside host on eth0 ("external" with the source
      address overridden).
    """
    src = fc.flow["source_ip"]
    a = ipaddress.ip_address(src)
    if a.is_loopback or src in fc.step_data["node_ips"]:
        return "node", "node-originated"
    if a in POD_RANGES[a.version]:
        return "src", "pod"
    return "external", "external"


# ----------------------------------------------------------------------
# Running one flow, and the translation back.

#: The filter chains upstream's tracer walks (directly, in this order) after
#: nat PREROUTING. Their verdicts are the only ones it reports.
TRACER_FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL")
VERDICT_WORDS = ("ACCEPT", "DROP", "REJECT")


def kube_filter_verdicts(trace) -> list:
    """The verdicts that rules of TRACER_FILTER_CHAINS (filter table) gave
    this packet in the kernel walk, whichever hook reached them (INPUT,
    FORWARD or OUTPUT)."""
    return [s.verdict for s in trace.matched_rules
            if s.table == "filter" and s.chain in TRACER_FILTER_CHAINS and s.verdict in VERDICT_WORDS]


def dnat_hooks(trace) -> set:
    """The hooks at which a DNAT rule fired."""
    return {s.hook for s in trace.matched_rules if s.verdict == "DNAT"}


@dataclass
class Observed:
    endpoints: frozenset
    verdicts: frozenset
    masq: bool
    outcomes: list
    origin: str

    def summary(self) -> str:
        lines = [f"kplab, from {self.origin!r}: {len(self.outcomes)} outcome(s)"]
        for t in self.outcomes:
            lines.append(f"  p={t.probability:.3f} verdict={t.verdict} dnat_to={t.dnat_to} "
                         f"masquerade={t.masquerade} delivered_to={t.delivered_to}")
            for s in t.matched_rules:
                lines.append(f"     {s.hook:<11} {s.table:<6} {s.rule}  => {s.verdict}")
        return "\n".join(lines)


def run_flow(fc: FlowCase) -> Observed:
    rs = ruleset_for(fc)
    topo = topology_for(fc)
    node = Node(rs, topo)
    f = fc.flow
    origin, _ = origin_for(fc)
    pkt = node.packet(origin, f["dest_ip"], f["effective_protocol"], f["dest_port"], src=f["source_ip"])
    outcomes = node.all_paths(pkt, origin)
    return Observed(
        endpoints=frozenset(t.dnat_to for t in outcomes if t.dnat_to is not None),
        verdicts=frozenset(t.verdict for t in outcomes),
        masq=any(t.masquerade for t in outcomes),
        outcomes=outcomes,
        origin=origin,
    )


@dataclass(frozen=True)
class Expected:
    endpoints: frozenset
    verdict_word: str | None      # "REJECT", "DROP", "ACCEPT" or None
    masq: bool
    raw: str


def parse_expected(raw: str, masq: bool) -> Expected:
    items = [x for x in raw.split(", ") if x]
    words = [x for x in items if x in VERDICT_WORDS]
    eps = [x for x in items if x not in words]
    assert len(set(eps)) == len(eps), f"upstream listed an endpoint twice: {raw!r}"
    assert len(words) <= 1 and not (words and eps), f"unexpected upstream output shape: {raw!r}"
    return Expected(frozenset(eps), words[0] if words else None, masq, raw)


def expected_of(fc: FlowCase) -> Expected:
    return parse_expected(fc.flow["expected_output"], fc.flow["expected_masq"])


def mismatches(exp: Expected, obs: Observed) -> list:
    """Differences between the upstream words and kplab's outcomes, under the
    mapping of this module's docstring; [] when they agree.

    Besides the outcome, the *reason* must be the one upstream saw:

    * an upstream verdict word W means: on every outcome the packet met a
      rule of one of TRACER_FILTER_CHAINS with target W, and that decided
      it (so "ACCEPT" is a rule's ACCEPT, not a chain policy);
    * no verdict word means: no rule of those chains decided anything (any
      ACCEPT came from a policy or, for masqueraded forwarded traffic, from
      KUBE-FORWARD, which upstream does not walk);
    * endpoints were chosen by a DNAT in nat PREROUTING for a packet that
      arrives, and in nat OUTPUT for a packet the node creates (upstream
      walks PREROUTING for both; kube-proxy hooks the same KUBE-SERVICES
      chain into both).
    """
    out = []
    if exp.endpoints != obs.endpoints:
        out.append(f"endpoints: upstream {sorted(exp.endpoints)}, kplab {sorted(obs.endpoints)}")
    for t in obs.outcomes:
        where = f"outcome dnat_to={t.dnat_to}"
        got = kube_filter_verdicts(t)
        if exp.verdict_word is not None:
            if t.verdict != exp.verdict_word or got != [exp.verdict_word]:
                out.append(f"{where}: upstream {exp.verdict_word} by a rule of {'/'.join(TRACER_FILTER_CHAINS)}; "
                           f"kplab verdict {t.verdict}, rules of those chains gave {got}")
        else:
            if t.verdict != "ACCEPT" or got:
                out.append(f"{where}: upstream no filter verdict (ACCEPT); kplab verdict {t.verdict}, "
                           f"rules of {'/'.join(TRACER_FILTER_CHAINS)} gave {got}")
        if t.dnat_to is not None:
            want = {"OUTPUT"} if obs.origin == "node" else {"PREROUTING"}
            if dnat_hooks(t) != want:
                out.append(f"{where}: DNAT expected at {sorted(want)}, kplab did it at {sorted(dnat_hooks(t))}")
    if exp.masq != obs.masq:
        out.append(f"masq: upstream {exp.masq}, kplab {obs.masq} (any outcome masqueraded)")
    return out
