"""`kplab.kube.explain`: a kube-proxy dump read back into Services.

Four sources of dumps, four kinds of evidence:

* the course's seed node (data/rules/seed-node.rules): the exact JSON;
* the benchmark generator (bench/_rulesets.py): names, cluster IPs,
  endpoints in rule order, 1/5 each; with and without comments; and the
  engine (`Node.all_paths`) gives the same odds for every Service;
* kube-proxy's own test data (tests/data/conformance/kube-proxy): each of
  the 43 packet-flow steps (30 test cases) and the full-sync dumps of
  model_to_dump.json are compared with what the step's *model* (Services,
  EndpointSlices, proxier settings) says kube-proxy programs, field by
  field, as far as the rules carry the information; the engine agrees
  on cluster-IP and external traffic; stripping every comment changes
  names only;
* hand-written corner cases: session affinity, misleading comments,
  IPv6, chains kube-proxy did not write.

No test measures absolute time (see the module's report for timings).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import sys
from pathlib import Path

import pytest

import kplab
from kplab.kube.explain import ServiceView, explain, port_proto_hash, spn_of, to_json
from kplab.netfilter.matches import Comment
from kplab.node import Node
from tests.netfilter._kube_flows import FlowCase, requote_fake_comments, step_family, topology_for

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "data" / "rules" / "seed-node.rules"
CONF = ROOT / "tests" / "data" / "conformance" / "kube-proxy"

_spec = importlib.util.spec_from_file_location("kplab_bench_rulesets", ROOT / "bench" / "_rulesets.py")
rulesets = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, rulesets)
_spec.loader.exec_module(rulesets)

CONTRACT_KEYS = {"name", "protocol", "cluster_ip", "port", "node_port", "external_ips", "load_balancer_ips",
                 "endpoints", "no_endpoints"}
POLICY_KEYS = {"external_traffic_policy", "internal_traffic_policy"}
EPS = 1e-12


# ---------------------------------------------------------------------------
# helpers

def by_name(views) -> dict:
    out = {v.name: v for v in views}
    assert len(out) == len(views), f"duplicate names: {[v.name for v in views]}"
    return out


def odds(endpoints) -> list:
    return [(e.address, e.probability) for e in endpoints]


def assert_odds(got, want, what=""):
    assert [a for a, _ in got] == [a for a, _ in want], f"{what}: endpoints {got} != {want}"
    for (a, p), (_, q) in zip(got, want):
        assert abs(p - q) < EPS, f"{what}: {a} gets {p}, expected {q}"


def strip_comments(rs):
    """The same ruleset with every `-m comment` removed (a stripped dump)."""
    tables = {}
    for tname, t in rs.tables.items():
        chains = {}
        for cname, c in t.chains.items():
            rules = tuple(dataclasses.replace(r, matches=tuple(m for m in r.matches if type(m) is not Comment))
                          for r in c.rules)
            chains[cname] = dataclasses.replace(c, rules=rules)
        tables[tname] = dataclasses.replace(t, chains=chains)
    return dataclasses.replace(rs, tables=tables)


def engine_odds(node, from_, dst, proto, dport, **kw):
    """{dnat_to: probability} and the verdicts of all paths, by kplab's engine."""
    pkt = node.packet(from_, dst, proto, dport, **kw)
    dist, verdicts = {}, set()
    for t in node.all_paths(pkt, from_):
        verdicts.add(t.verdict)
        if t.dnat_to is not None:
            dist[t.dnat_to] = dist.get(t.dnat_to, 0.0) + t.probability
    return dist, verdicts


def assert_engine_agrees(dist, endpoints, what):
    want = {e.address: e.probability for e in endpoints}
    assert set(dist) == set(want), f"{what}: engine {dist}, explain {want}"
    for a, p in want.items():
        assert abs(dist[a] - p) < EPS, f"{what}: {a}: engine {dist[a]}, explain {p}"


# ---------------------------------------------------------------------------
# kube-proxy's categorisation, from the conformance model (spec section 4)

def kernel_cascade(eps: list) -> list:
    """What kube-proxy's statistic cascade gives each endpoint, with the
    odds the kernel stores: p(k) = "%0.10f" % (1/k), kept as round(p*2^31)."""
    out, left, n = [], 1.0, len(eps)
    for i, ep in enumerate(eps):
        if i == n - 1:
            out.append((ep, left))
        else:
            p = int(float("%0.10f" % (1.0 / (n - i))) * 0x80000000 + 0.5) / 0x80000000
            out.append((ep, left * p))
            left *= 1 - p
    return out


def norm_ip(text: str) -> str:
    text = text.strip()
    if ":" in text:
        return str(ipaddress.ip_address(text))
    return ".".join(str(int(x)) for x in text.split("."))


def norm_cidr(text: str) -> str:
    addr, _, bits = text.strip().partition("/")
    return str(ipaddress.ip_network(f"{norm_ip(addr)}/{int(bits)}", strict=False))


def family_of(ip: str) -> int:
    return ipaddress.ip_address(norm_ip(ip)).version


def expected_from_model(model) -> dict:
    """service port name -> what the rules kube-proxy writes for it say."""
    px = model["proxier"]
    fam = 6 if px["ip_family"] == "IPv6" else 4
    out = {}
    for svc in model["services"]:
        cip = svc["cluster_ip"]
        if not cip or cip == "None" or svc["type"] == "ExternalName" or family_of(cip) != fam:
            continue
        ns, name = svc["namespace"], svc["name"]
        ext_ips = [norm_ip(a) for a in svc["external_ips"] if family_of(a) == fam]
        lb_ips = [norm_ip(i["ip"]) for i in svc["lb_ingress"]
                  if i["ip_mode"] in (None, "VIP") and family_of(i["ip"]) == fam]
        svc_external = svc["type"] in ("LoadBalancer", "NodePort") or bool(svc["external_ips"])
        etp_local = svc["external_traffic_policy"] == "Local" and svc_external
        itp_local = svc["internal_traffic_policy"] == "Local"
        for port in svc["ports"]:
            spn = f"{ns}/{name}:{port['name']}" if port["name"] else f"{ns}/{name}"
            proto = (port["protocol"] or "TCP").lower()
            eps = {}
            for sl in model["endpoint_slices"]:
                if sl["namespace"] != ns or sl["service"] != name or sl["address_type"] != px["ip_family"]:
                    continue
                for sp in sl["ports"]:
                    if sp["name"] != port["name"] or (sp["protocol"] or "TCP") != (port["protocol"] or "TCP"):
                        continue
                    for e in sl["endpoints"]:
                        ip = e["addresses"][0]
                        if family_of(ip) != fam:
                            continue
                        ep = f"[{norm_ip(ip)}]:{sp['port']}" if fam == 6 else f"{norm_ip(ip)}:{sp['port']}"
                        c = e["conditions"]
                        ready = True if c["ready"] is None else c["ready"]
                        serving = True if c["serving"] is None else c["serving"]
                        term = bool(c["terminating"])
                        local = e["node_name"] == px["node_name"]
                        if ep in eps and eps[ep][3]:
                            continue                      # a local copy wins
                        eps[ep] = (ready, serving, term, local)
            order = sorted(eps)
            cluster = [e for e in order if eps[e][0]] or [e for e in order if eps[e][1] and eps[e][2]]
            local = ([e for e in order if eps[e][0] and eps[e][3]]
                     or [e for e in order if eps[e][1] and eps[e][2] and eps[e][3]])
            node_port = port["node_port"] or None
            port_external = bool(node_port or ext_ips or lb_ips)
            has_eps = bool(cluster or local)
            has_internal = has_eps and (not itp_local or bool(local))
            has_external = has_eps and (not etp_local or bool(local))
            ranges = [norm_cidr(r) for r in svc["lb_source_ranges"] if r.strip()]
            out[spn] = {
                "name": spn, "protocol": proto, "cluster_ip": norm_ip(cip), "port": port["port"],
                "node_port": node_port,
                "endpoints": kernel_cascade(local if itp_local else cluster) if has_internal else [],
                "no_endpoints": ("REJECT" if not has_eps else
                                 "DROP" if not has_internal or (port_external and not has_external) else None),
                "internal_traffic_policy": ("Local" if itp_local else "Cluster") if has_eps else None,
                "external_traffic_policy": (("Local" if etp_local else "Cluster")
                                            if has_eps and port_external else None),
                "external_endpoints": ((kernel_cascade(local if etp_local else cluster) if has_external else [])
                                       if port_external else None),
                "external_ips": ext_ips, "load_balancer_ips": lb_ips,
                # without endpoints the rules cannot tell external IPs from LB IPs
                "classified": has_eps,
                "session_affinity": ("ClientIP" if svc["session_affinity"] == "ClientIP"
                                     and (has_internal or has_external) else None),
                "session_affinity_timeout": ((svc["session_affinity_timeout"] or 10800)
                                             if svc["session_affinity"] == "ClientIP"
                                             and (has_internal or has_external) else None),
                "lb_source_ranges": ranges if has_eps and lb_ips else [],
                "health_check_node_port": (svc["health_check_node_port"] or None
                                           if svc["type"] == "LoadBalancer"
                                           and svc["external_traffic_policy"] == "Local" else None),
            }
    return out


def compare_with_model(views, model, what):
    exp = expected_from_model(model)
    got = by_name(views)
    assert set(got) == set(exp), f"{what}: services {sorted(got)} != model {sorted(exp)}"
    for name, e in exp.items():
        v = got[name]
        w = f"{what} {name}"
        for f in ("protocol", "cluster_ip", "port", "node_port", "no_endpoints", "internal_traffic_policy",
                  "external_traffic_policy", "session_affinity", "session_affinity_timeout",
                  "health_check_node_port"):
            assert getattr(v, f) == e[f], f"{w}: {f} = {getattr(v, f)!r}, model says {e[f]!r}"
        assert_odds(odds(v.endpoints), e["endpoints"], w)
        if e["external_endpoints"] is None:
            assert v.external_endpoints is None, w
        else:
            assert_odds(odds(v.external_endpoints), e["external_endpoints"], w + " (external)")
        if e["classified"]:
            assert v.external_ips == e["external_ips"], w
            assert v.load_balancer_ips == e["load_balancer_ips"], w
            assert v.unclassified_ips == [], w
        else:
            assert sorted(v.external_ips + v.load_balancer_ips + v.unclassified_ips) == \
                sorted(e["external_ips"] + e["load_balancer_ips"]), w
            # what is classified is classified right
            assert set(v.external_ips) <= set(e["external_ips"]), w
            assert set(v.load_balancer_ips) <= set(e["load_balancer_ips"]), w
        assert sorted(v.lb_source_ranges) == sorted(e["lb_source_ranges"]), w
        total = sum(p for _, p in e["endpoints"])
        assert abs(total - (1.0 if e["endpoints"] else 0.0)) < 1e-9, w


# ---------------------------------------------------------------------------
# the seed node

def test_seed_node_exact_json():
    views = explain(kplab.load_rules(str(SEED)))
    assert to_json(views) == {"services": [{
        "name": "default/backend:http", "protocol": "tcp", "cluster_ip": "10.96.5.81", "port": 80,
        "node_port": None, "external_ips": [], "load_balancer_ips": [],
        "endpoints": [{"address": "10.244.1.3:8080", "probability": 1.0}], "no_endpoints": None,
        "external_traffic_policy": None, "internal_traffic_policy": "Cluster"}]}
    v = views[0]
    assert v.name_verified and v.name_source == "comment"
    assert v.chains == {"internal": "KUBE-SVC-POOGYJBNEVT3HFAO"}
    assert v.endpoints[0].chain == "KUBE-SEP-YOPU36KEXISEYTYN"
    assert v.notes == [] and v.unmatched == 0.0


def test_json_keys_are_the_contract_plus_the_policies():
    obj = to_json(explain(kplab.load_rules(str(SEED))))
    assert set(obj) == {"services"}
    for s in obj["services"]:
        assert set(s) == CONTRACT_KEYS | POLICY_KEYS
        for e in s["endpoints"]:
            assert set(e) == {"address", "probability"}
    json.dumps(obj)                                     # plain JSON values only
    detail = to_json(explain(kplab.load_rules(str(SEED))), detail=True)["services"][0]
    assert CONTRACT_KEYS | POLICY_KEYS < set(detail)
    json.dumps(detail)


def test_seed_node_engine_agrees():
    rs = kplab.load_rules(str(SEED))
    v = explain(rs)[0]
    dist, verdicts = engine_odds(kplab.standard_node(rs), "client", v.cluster_ip, "tcp", v.port)
    assert_engine_agrees(dist, v.endpoints, "seed")


def test_empty_and_filter_only_rulesets():
    assert explain(kplab.parse_rules("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")) == []
    assert to_json([]) == {"services": []}
    rs = kplab.parse_rules(
        "*filter\n:KUBE-SERVICES - [0:0]\n"
        '-A KUBE-SERVICES -d 10.96.0.9/32 -p udp -m comment --comment "kube-system/dns:dns has no endpoints" '
        "-m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n")
    [v] = explain(rs)
    assert (v.name, v.protocol, v.cluster_ip, v.port, v.no_endpoints, v.endpoints) == \
        ("kube-system/dns:dns", "udp", "10.96.0.9", 53, "REJECT", [])
    assert v.internal_traffic_policy is None and v.external_traffic_policy is None


# ---------------------------------------------------------------------------
# the benchmark generator

@pytest.fixture(scope="module")
def bench():
    n, m = 12, 5
    text = rulesets.kube_proxy_ruleset(n, m)
    return rulesets.kube_proxy_services(n, m), kplab.parse_rules(text)


def _check_bench(svcs, views, named=True):
    got = by_name(views)
    assert len(got) == len(svcs)
    for s in svcs:
        v = got[s.name if named else s.chain]
        assert v.name_source == ("comment" if named else "chain")
        assert v.name_verified == named
        assert (v.protocol, v.cluster_ip, v.port, v.node_port, v.no_endpoints) == ("tcp", s.cluster_ip, 80, None, None)
        assert [e.address for e in v.endpoints] == [ep for _, ep, _ in s.endpoints]
        assert [e.chain for e in v.endpoints] == [sep for _, _, sep in s.endpoints]
        for e in v.endpoints:
            assert abs(e.probability - 0.2) < 1e-9
        assert abs(sum(e.probability for e in v.endpoints) - 1.0) < 1e-9
        assert v.internal_traffic_policy == "Cluster" and v.external_traffic_policy is None
        assert v.external_endpoints is None and v.session_affinity is None and v.notes == []


def test_bench_dump_five_endpoints_a_fifth_each(bench):
    svcs, rs = bench
    views = explain(rs)
    _check_bench(svcs, views)
    assert [v.name for v in views] == sorted(v.name for v in views)


def test_bench_large_cluster_mode_names_come_from_kube_services():
    """Above 1000 endpoints kube-proxy drops the SVC/SEP comments; the
    KUBE-SERVICES comments still name every Service."""
    n, m = 205, 5
    text = rulesets.kube_proxy_ruleset(n, m, seed=3)
    assert '"ns/svc0:http -> ' not in text                  # really large-cluster mode
    svcs = rulesets.kube_proxy_services(n, m, seed=3)
    _check_bench(svcs, explain(kplab.parse_rules(text)))


def test_bench_without_any_comment_reads_the_same_graph(bench):
    svcs, rs = bench
    _check_bench(svcs, explain(strip_comments(rs)), named=False)


def test_bench_engine_agrees_for_every_service(bench):
    """node.all_paths from the client Pod to each cluster IP gives explain's odds."""
    svcs, rs = bench
    node = kplab.standard_node(rs)
    for v in explain(rs):
        dist, verdicts = engine_odds(node, "client", v.cluster_ip, "tcp", v.port)
        assert verdicts == {"ACCEPT"}
        assert_engine_agrees(dist, v.endpoints, v.name)
        # the same float arithmetic ((1-p1)(1-p2)...p_i): equal to the last bit
        assert dist == {e.address: e.probability for e in v.endpoints}
        assert abs(sum(dist.values()) - 1.0) < 1e-9


@pytest.mark.parametrize("m", [1, 2, 3, 7, 10])
def test_bench_other_endpoint_counts(m):
    text = rulesets.kube_proxy_ruleset(3, m, seed=m)
    rs = kplab.parse_rules(text)
    node = kplab.standard_node(rs)
    for v in explain(rs):
        assert len(v.endpoints) == m
        assert_odds(odds(v.endpoints), kernel_cascade([e.address for e in v.endpoints]), v.name)
        for e in v.endpoints:
            assert abs(e.probability - 1 / m) < 1e-9
        dist, _ = engine_odds(node, "client", v.cluster_ip, "tcp", 80)
        assert_engine_agrees(dist, v.endpoints, v.name)


# ---------------------------------------------------------------------------
# kube-proxy's conformance data

def _steps():
    cases = json.loads((CONF / "packet_flows.json").read_text())["test_cases"]
    return [pytest.param(c, s, id=f"{c['id']}/{s['step']}") for c in cases for s in c["steps"]]


STEPS = _steps()
_PARSED: dict = {}


def parsed(case, step):
    key = (case["id"], step["step"])
    if key not in _PARSED:
        _PARSED[key] = kplab.parse_rules(requote_fake_comments(step["ruleset"]), family=step_family(step))
    return _PARSED[key]


def test_conformance_data_is_the_expected_size():
    cases = {c["id"] for c, _ in (p.values for p in STEPS)}
    assert len(cases) == 30 and len(STEPS) == 43


# TestTracePacket's rules are written in the test (no model): what they say, by reading them.
TRACE_PACKET = {
    "ns1/svc1:p80": dict(cluster_ip="172.30.0.41", node_port=None, external_ips=[], load_balancer_ips=[],
                         endpoints=[("10.180.0.1:80", 1.0)], no_endpoints=None, external_traffic_policy=None),
    "ns2/svc2:p80": dict(cluster_ip="172.30.0.42", node_port=3001, external_ips=["192.168.99.22"],
                         load_balancer_ips=["1.2.3.4"], endpoints=[("10.180.0.2:80", 1.0)], no_endpoints="DROP",
                         external_traffic_policy="Local", health_check_node_port=30000, external_endpoints=[]),
    "ns3/svc3:p80": dict(cluster_ip="172.30.0.43", node_port=3003, external_ips=[], load_balancer_ips=[],
                         endpoints=[("10.180.0.3:80", 1.0)], no_endpoints=None, external_traffic_policy="Cluster"),
    "ns4/svc4:p80": dict(cluster_ip="172.30.0.44", node_port=None, external_ips=["192.168.99.33"],
                         load_balancer_ips=[], endpoints=[("10.180.0.4:80", 0.5), ("10.180.0.5:80", 0.5)],
                         no_endpoints=None, external_traffic_policy="Cluster"),
    "ns5/svc5:p80": dict(cluster_ip="172.30.0.45", node_port=3002, external_ips=[], load_balancer_ips=["5.6.7.8"],
                         endpoints=[("10.180.0.3:80", 1.0)], no_endpoints=None, external_traffic_policy="Cluster",
                         lb_source_ranges=["203.0.113.0/25"]),
    "ns6/svc6:p80": dict(cluster_ip="172.30.0.46", node_port=None, external_ips=[], load_balancer_ips=[],
                         endpoints=[], no_endpoints="REJECT", external_traffic_policy=None,
                         internal_traffic_policy=None),
}


@pytest.mark.parametrize("case,step", STEPS)
def test_conformance_step_matches_its_model(case, step):
    views = explain(parsed(case, step))
    what = f"{case['id']}/{step['step']}"
    if step["model"] is None:
        got = by_name(views)
        assert set(got) == set(TRACE_PACKET)
        for name, want in TRACE_PACKET.items():
            v = got[name]
            for f, val in want.items():
                if f in ("endpoints", "external_endpoints"):
                    assert_odds(odds(getattr(v, f)), val, f"{what} {name}")
                else:
                    assert getattr(v, f) == val, f"{what} {name}: {f} = {getattr(v, f)!r}, want {val!r}"
            assert v.protocol == "tcp" and v.port == 80
        return
    compare_with_model(views, step["model"], what)
    for v in views:
        if v.chains:
            assert v.name_verified, f"{what}: {v.name} does not hash to its chains"


def _model_dumps():
    pairs = json.loads((CONF / "model_to_dump.json").read_text())["dump_pairs"]
    return [pytest.param(p, id=p["id"]) for p in pairs if p["sync"] == "full"]


@pytest.mark.parametrize("pair", _model_dumps())
def test_full_sync_restore_text_matches_its_model(pair):
    """The full-sync texts of model_to_dump.json (kube-proxy's restore input):
    ClientIP affinity, LB source ranges, addresses with leading zeros."""
    rs = kplab.parse_rules(pair["expected_restore_input_sorted"])
    compare_with_model(explain(rs), pair["model"], pair["id"])


def test_session_affinity_is_read_and_does_not_skew_the_odds():
    pair = next(p for p in json.loads((CONF / "model_to_dump.json").read_text())["dump_pairs"]
                if p["id"] == "TestOverallIPTablesRules")
    got = by_name(explain(kplab.parse_rules(pair["expected_restore_input_sorted"])))
    v = got["ns5/svc5:p80"]
    assert (v.session_affinity, v.session_affinity_timeout) == ("ClientIP", 10800)
    assert odds(v.endpoints) == [("10.180.0.3:80", 1.0)]
    assert v.lb_source_ranges == ["203.0.113.0/25"] and v.chains["firewall"] == "KUBE-FW-NUKIZ6OKUXPJNT4C"
    assert all(w.session_affinity is None for n, w in got.items() if n != "ns5/svc5:p80")


AFFINITY = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
:KUBE-SEP-3 - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.7.7/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-A
-A KUBE-SVC-A -m recent --rcheck --seconds 600 --reap --name KUBE-SEP-1 --mask 255.255.255.255 --rsource -j KUBE-SEP-1
-A KUBE-SVC-A -m recent --rcheck --seconds 600 --reap --name KUBE-SEP-2 --mask 255.255.255.255 --rsource -j KUBE-SEP-2
-A KUBE-SVC-A -m recent --rcheck --seconds 600 --reap --name KUBE-SEP-3 --mask 255.255.255.255 --rsource -j KUBE-SEP-3
-A KUBE-SVC-A -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1
-A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2
-A KUBE-SVC-A -j KUBE-SEP-3
-A KUBE-SEP-1 -p tcp -m recent --set --name KUBE-SEP-1 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.1.3:8443
-A KUBE-SEP-2 -p tcp -m recent --set --name KUBE-SEP-2 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.1.4:8443
-A KUBE-SEP-3 -p tcp -m recent --set --name KUBE-SEP-3 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.2.5:8443
COMMIT
"""


def test_affinity_without_comments_and_the_engine_agrees():
    """Chains kube-proxy would not name this way: the walk goes by the graph.
    A first connection meets empty recent lists, so the odds are the cascade's."""
    rs = kplab.parse_rules(AFFINITY)
    [v] = explain(rs)
    assert (v.name, v.name_source, v.cluster_ip, v.port) == ("KUBE-SVC-A", "chain", "10.96.7.7", 443)
    assert (v.session_affinity, v.session_affinity_timeout) == ("ClientIP", 600)
    assert [e.address for e in v.endpoints] == ["10.244.1.3:8443", "10.244.1.4:8443", "10.244.2.5:8443"]
    assert abs(sum(e.probability for e in v.endpoints) - 1) < 1e-12
    assert all(abs(e.probability - 1 / 3) < 1e-9 for e in v.endpoints)
    dist, _ = engine_odds(kplab.standard_node(rs), "client", "10.96.7.7", "tcp", 443)
    assert_engine_agrees(dist, v.endpoints, "affinity")


def test_comments_name_but_do_not_route():
    """A lying comment never changes the endpoints; a name that hashes to
    the chains (here from the KUBE-SVC / KUBE-SEP comments) wins over one
    that does not, and the disagreement is noted."""
    text = SEED.read_text()
    text = text.replace('"default/backend:http cluster IP" -m tcp --dport 80 -j KUBE-SVC',
                        '"evil/name:x cluster IP" -m tcp --dport 80 -j KUBE-SVC')
    text = text.replace('"default/backend:http -> 10.244.1.3:8080"', '"default/backend:http -> 6.6.6.6:1"')
    [v] = explain(kplab.parse_rules(text))
    assert odds(v.endpoints) == [("10.244.1.3:8080", 1.0)]
    assert v.name == "default/backend:http" and v.name_verified
    assert any("'evil/name:x'" in n and "does not hash" in n for n in v.notes)


def test_an_unverifiable_name_is_still_used():
    """Only one comment, and it does not hash to the chain: it is the name
    (a person wrote it), flagged."""
    rs = strip_comments(kplab.load_rules(str(SEED)))
    text = kplab.save_rules(rs).replace(
        "-A KUBE-SERVICES -d 10.96.5.81/32 -p tcp -m tcp",
        '-A KUBE-SERVICES -d 10.96.5.81/32 -p tcp -m comment --comment "evil/name:x cluster IP" -m tcp')
    [v] = explain(kplab.parse_rules(text))
    assert (v.name, v.name_source, v.name_verified) == ("evil/name:x", "comment", False)
    assert any("does not hash" in n for n in v.notes)
    assert odds(v.endpoints) == [("10.244.1.3:8080", 1.0)]


OLD_STYLE = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SERVICES -d 10.96.100.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-AAAAAAAAAAAAAAAA ! -s 10.244.0.0/16 -d 10.96.100.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-AAAAAAAAAAAAAAAA -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-MARK-MASQ
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "default/web" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-1
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "default/web" -j KUBE-SEP-2
-A KUBE-SEP-1 -s 10.244.1.3/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-1 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.1.3:8080
-A KUBE-SEP-2 -s 10.244.2.5/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-2 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.2.5:8080
COMMIT
"""


def test_older_kube_proxy_layout():
    """Before KUBE-EXT (about 1.23) a NodePort jumped straight to KUBE-SVC."""
    rs = kplab.parse_rules(OLD_STYLE)
    [v] = explain(rs)
    assert (v.name, v.cluster_ip, v.port, v.node_port) == ("default/web", "10.96.100.10", 80, 30080)
    assert (v.internal_traffic_policy, v.external_traffic_policy) == ("Cluster", "Cluster")
    assert odds(v.endpoints) == odds(v.external_endpoints) == [("10.244.1.3:8080", 0.5), ("10.244.2.5:8080", 0.5)]
    dist, _ = engine_odds(kplab.standard_node(rs), "external", "192.168.0.2", "tcp", 30080)
    assert_engine_agrees(dist, v.endpoints, "old NodePort")


@pytest.mark.parametrize("case,step", STEPS)
def test_conformance_without_comments_changes_only_names(case, step):
    """Every comment stripped: what the nat graph says is the same; names
    become KUBE-SVC-<hash>; filter-only Services split per rule."""
    rs = parsed(case, step)
    full, bare = explain(rs), explain(strip_comments(rs))
    chained = [v for v in full if v.chains]
    bare_by_chain = {v.chains.get("internal") or v.chains.get("external"): v for v in bare if v.chains}
    assert len(bare_by_chain) == len(chained)
    for v in chained:
        b = bare_by_chain[v.chains.get("internal") or v.chains.get("external")]
        h = (v.chains.get("internal") or v.chains.get("external"))[9:]
        assert b.name == "KUBE-SVC-" + h and b.name_source == "chain" and port_proto_hash(v.name, v.protocol) == h
        for f in ("protocol", "port", "node_port", "internal_traffic_policy", "external_traffic_policy",
                  "session_affinity", "lb_source_ranges", "chains"):
            assert getattr(b, f) == getattr(v, f), (v.name, f)
        if v.cluster_ip is not None and v.chains.get("internal"):
            assert b.cluster_ip == v.cluster_ip
        assert odds(b.endpoints) == odds(v.endpoints)
        assert (b.external_endpoints is None) == (v.external_endpoints is None)
        if v.external_endpoints is not None:
            assert odds(b.external_endpoints) == odds(v.external_endpoints)
        assert sorted(b.external_ips + b.load_balancer_ips + b.unclassified_ips) == \
            sorted(v.external_ips + v.load_balancer_ips + v.unclassified_ips)
        assert set(b.load_balancer_ips) <= set(v.load_balancer_ips)
        if v.no_endpoints == "DROP" and v.external_traffic_policy == "Local" and v.internal_traffic_policy != "Local":
            assert b.no_endpoints == "DROP"          # tied to the service port by address alone
    # filter-only Services: every address keeps its verdict
    def verdicts(views):
        out = set()
        for v in views:
            if v.no_endpoints and not v.chains:
                for a in [v.cluster_ip] + v.external_ips + v.load_balancer_ips + v.unclassified_ips:
                    if a:
                        out.add((v.protocol, a, v.port, v.no_endpoints))
                if v.node_port:
                    out.add((v.protocol, "nodeport", v.node_port, v.no_endpoints))
        return out
    assert verdicts(bare) == verdicts(full)


def _node_for(step, pod_ip):
    fc = FlowCase("explain", step["step"], {"source_ip": pod_ip}, step)
    return Node(None, topology_for(fc)), fc


@pytest.mark.parametrize("case,step", STEPS)
def test_conformance_engine_agrees(case, step):
    """kplab's engine, all paths: a local Pod to each cluster IP gets
    `endpoints` (or the REJECT/DROP), an outside host to each external IP,
    unfirewalled LB IP and the NodePort gets `external_endpoints`."""
    rs = parsed(case, step)
    fam = step_family(step)
    pod = "10.0.99.99" if fam == 4 else "fd00:10::99"
    fc = FlowCase("explain", step["step"], {"source_ip": pod}, step)
    node = Node(rs, topology_for(fc))
    ext_fc = FlowCase("explain", step["step"], {"source_ip": "198.51.100.10" if fam == 4 else "2001:db8:ff::10"},
                      step)
    ext_node = Node(rs, topology_for(ext_fc))
    node_ip = "192.168.0.2" if fam == 4 else "2001:db8::1"
    all_nodeports = step["model"] is None or step["model"]["proxier"]["nodeport_addresses"] is None
    checked = 0
    for v in explain(rs):
        if v.cluster_ip:
            dist, verdicts = engine_odds(node, "src", v.cluster_ip, v.protocol, v.port)
            if v.endpoints:
                assert_engine_agrees(dist, v.endpoints, f"{v.name} cluster IP")
            else:
                assert dist == {} and verdicts == {v.no_endpoints}, (v.name, dist, verdicts)
            checked += 1
        if v.external_endpoints is None:
            continue
        targets = [(a, v.port) for a in v.external_ips]
        if "firewall" not in v.chains:
            targets += [(a, v.port) for a in v.load_balancer_ips + v.unclassified_ips]
        if v.node_port and all_nodeports:
            targets.append((node_ip, v.node_port))
        for dst, dport in targets:
            dist, verdicts = engine_odds(ext_node, "external", dst, v.protocol, dport,
                                         src=ext_fc.flow["source_ip"])
            if v.external_endpoints:
                assert_engine_agrees(dist, v.external_endpoints, f"{v.name} external {dst}:{dport}")
            else:
                assert dist == {} and verdicts == {v.no_endpoints}, (v.name, dst, dist, verdicts)
            checked += 1
    assert checked or not explain(rs)


# ---------------------------------------------------------------------------
# small things

def test_spn_of_comment_forms():
    assert spn_of("ns1/svc1:p80 cluster IP") == "ns1/svc1:p80"
    assert spn_of("ns1/svc1 loadbalancer IP") == "ns1/svc1"
    assert spn_of("ns1/svc1:p80 -> [fd00::1]:80") == "ns1/svc1:p80"
    assert spn_of("masquerade LOCAL traffic for ns2/svc2:p80 external destinations") == "ns2/svc2:p80"
    assert spn_of("other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL") == "ns5/svc5:p80"
    assert spn_of("ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C") == "ns5/svc5:p80"
    assert spn_of("ns2/svc2:p80 has no local endpoints") == "ns2/svc2:p80"
    assert spn_of("ns1/svc1:p80") == "ns1/svc1:p80"
    assert spn_of("kubernetes service portals") is None
    assert spn_of(None) is None


def test_port_proto_hash_vectors():
    vectors = json.loads((CONF / "hash_and_probability_vectors.json").read_text())
    text = json.dumps(vectors)
    assert port_proto_hash("ns1/svc1:p80", "tcp") == "XPGD46QRK7WJZT7O"
    assert port_proto_hash("ns2/svc2:p8080", "tcp") == "2VJB64SDSIJUP5T6"
    assert "XPGD46QRK7WJZT7O" in text


def test_service_view_defaults_serialise():
    v = ServiceView(name="x")
    assert set(v.to_dict()) == CONTRACT_KEYS | POLICY_KEYS
    assert v.to_dict()["endpoints"] == [] and v.to_dict()["no_endpoints"] is None


def test_ipv6_dump():
    step = next(s for c, s in (p.values for p in STEPS)
                if c["id"] == "TestNodePorts/ipv6, localhost-nodeports enabled")
    [v] = explain(parsed({"id": "TestNodePorts/ipv6, localhost-nodeports enabled"}, step))
    assert to_json([v])["services"][0] == {
        "name": "ns1/svc1:p80", "protocol": "tcp", "cluster_ip": "fd00:172:30::41", "port": 80, "node_port": 3001,
        "external_ips": [], "load_balancer_ips": [],
        "endpoints": [{"address": "[fd00:10:180::1]:80", "probability": 0.5},
                      {"address": "[fd00:10:180::2:1]:80", "probability": 0.5}],
        "no_endpoints": None, "external_traffic_policy": "Cluster", "internal_traffic_policy": "Cluster"}


def test_explain_cost_per_rule_is_about_constant():
    """A ratio, never an absolute time: explain on ~20k rules costs under 3x
    per rule what it costs on ~2k (an index per chain, no quadratic scan)."""
    import gc
    import time

    def best(fn, runs):
        b = float("inf")
        gc.collect()
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            b = min(b, time.perf_counter() - t0)
        return b

    sizes = []
    for rules in (2_000, 20_000):
        n = rulesets.services_for_rules(rules, 5)
        rs = kplab.parse_rules(rulesets.kube_proxy_ruleset(n, 5))
        explain(rs)                                        # warm up
        sizes.append((rs.rule_count(), best(lambda: explain(rs), 5 if rules < 10_000 else 3)))
    (n_s, t_s), (n_l, t_l) = sizes
    ratio = (t_l / n_l) / (t_s / n_s)
    assert ratio < 3.0, f"explain per rule grew {ratio:.2f}x ({t_s * 1e3:.1f} ms / {n_s} vs {t_l * 1e3:.1f} ms / {n_l})"
