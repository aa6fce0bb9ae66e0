"""The walk: hooks, paths, table order, routing after DNAT, NAT once per
connection, replies, all-paths, deep jumps, the JSON contract and the CLI
(DESIGN sections 3 and 4, reference/netfilter.md)."""
from __future__ import annotations

import io
import json

import pytest

import kplab
from kplab.cli import main
from tests.netfilter.conftest import (BACKEND1, BACKEND2, CLIENT, EXTERNAL, NODE_IP, PEER_NODE, POD_GW,
                                      REMOTE1, SERVICE_IP, filter_rules, kube_rules, make_node, rule_steps,
                                      table)


def send(node, from_="client", dst=REMOTE1, proto="tcp", dport=80, sport=None, src=None, **over):
    pkt = node.packet(from_, dst, proto, dport, sport, src)
    if over:
        pkt = pkt.replace(**over)
    return node.send(pkt, from_)


def hooks_walked(trace):
    """The hooks whose tables were walked, in order, without repeats in a row."""
    out = []
    for s in trace.steps:
        if s.kind in ("rule", "policy", "skipped") and (not out or out[-1] != s.hook):
            out.append(s.hook)
    return out


# A LOG in every built-in chain of every table, so the walk shows each
# (table, hook) it passes; the DNAT that never matches turns conntrack on.
ALL_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}


def everywhere_rules():
    text = ""
    for tbl, chains in ALL_CHAINS.items():
        lines = [f'-A {c} -j LOG --log-prefix "{tbl}:{c} "' for c in chains]
        if tbl == "nat":
            lines.append("-A PREROUTING -d 203.0.113.1/32 -p tcp -j DNAT --to-destination 10.244.1.3")
        text += table(tbl, *lines)
    return text


def order(trace):
    return [(s.table, s.hook) for s in trace.matched_rules if s.verdict == "CONTINUE"]


# --------------------------------------------------------------------------
# The three paths and the five hooks

def test_forwarded_path():
    node = make_node(everywhere_rules())
    t = send(node)
    assert hooks_walked(t) == ["PREROUTING", "FORWARD", "POSTROUTING"]
    assert t.verdict == "ACCEPT" and t.delivered_to == "remote1"
    assert t.final.src == CLIENT and t.final.dst == REMOTE1
    assert t.final.in_iface == "veth-client" and t.final.out_iface == "eth0"


def test_forwarded_to_peer_node_and_unknown_hosts():
    node = make_node(filter_rules("FORWARD", "-j LOG"))
    assert send(node, dst=EXTERNAL).delivered_to == "external"
    assert send(node, dst=PEER_NODE).delivered_to == "peer"
    assert send(node, dst="8.8.8.8").delivered_to == "peer"


def test_local_in_path():
    node = make_node(everywhere_rules())
    t = send(node, dst=NODE_IP)
    assert hooks_walked(t) == ["PREROUTING", "INPUT"]
    assert t.verdict == "ACCEPT" and t.delivered_to == "node"
    assert t.to_json()["delivered"]["to"] == "node"


@pytest.mark.parametrize("dst,src", [(BACKEND1, POD_GW), (REMOTE1, NODE_IP), (EXTERNAL, NODE_IP),
                                     (PEER_NODE, NODE_IP)])
def test_local_out_path_and_source_choice(dst, src):
    node = make_node(everywhere_rules())
    t = send(node, from_="node", dst=dst)
    assert hooks_walked(t) == ["OUTPUT", "POSTROUTING"]
    assert t.packet.src == src and t.final.src == src
    assert t.final.in_iface is None
    assert t.verdict == "ACCEPT"


def test_local_out_source_is_chosen_before_dnat():
    """The kernel picks the source for the pre-NAT destination (10.96.x is
    routed via eth0), even when OUTPUT DNATs it to a local Pod."""
    node = make_node(kube_rules())
    t = send(node, from_="node", dst=SERVICE_IP)
    assert t.packet.src == NODE_IP
    assert t.final.dst == BACKEND1 and t.delivered_to == "backend1"


def test_src_override():
    node = make_node(filter_rules("FORWARD", "-s 10.9.9.9 -j DROP"))
    assert send(node, src="10.9.9.9").verdict == "DROP"


def test_local_out_to_own_address_loops_through_lo():
    node = make_node(everywhere_rules())
    t = send(node, from_="node", dst=NODE_IP)
    assert hooks_walked(t) == ["OUTPUT", "POSTROUTING", "PREROUTING", "INPUT"]
    assert t.delivered_to == "node"
    assert order(t) == [("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
                        ("security", "OUTPUT"), ("mangle", "POSTROUTING"), ("nat", "POSTROUTING"),
                        # looped back: NAT was decided on the way out, so no nat walk again
                        ("raw", "PREROUTING"), ("mangle", "PREROUTING"),
                        ("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT")]


# --------------------------------------------------------------------------
# Table order at each hook

@pytest.mark.parametrize("from_,dst,want", [
    ("client", REMOTE1, [("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING"),
                         ("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD"),
                         ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")]),
    ("client", NODE_IP, [("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING"),
                         ("mangle", "INPUT"), ("filter", "INPUT"), ("nat", "INPUT"), ("security", "INPUT")]),
    ("node", REMOTE1, [("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
                       ("security", "OUTPUT"), ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")]),
], ids=["forwarded", "local-in", "local-out"])
def test_table_order_at_each_hook(from_, dst, want):
    node = make_node(everywhere_rules())
    t = send(node, from_=from_, dst=dst)
    assert order(t) == want
    # the LOG lines come out in the same order
    assert [line.split(" ")[0] for line in node.state.log] == [f"{tb}:{h}" for tb, h in want]


def test_table_order_with_marks():
    """A MARK in each table, OR-ing one bit each: every later table sees the
    bits of the earlier ones."""
    bits = {"raw": 0x1, "mangle": 0x2, "nat": 0x4, "filter": 0x8, "security": 0x10}
    text = ""
    for tbl, bit in bits.items():
        chain = "PREROUTING" if tbl in ("raw", "mangle", "nat") else "FORWARD"
        lines = [f"-A {chain} -j MARK --or-mark {bit:#x}"]
        if tbl == "nat":
            lines.append("-A PREROUTING -d 203.0.113.1/32 -p tcp -j DNAT --to-destination 10.244.1.3")
        text += table(tbl, *lines)
    t = send(make_node(text))
    seen = [(s.table, s.before.mark, s.after.mark) for s in t.matched_rules]
    assert seen == [("raw", 0x0, 0x1), ("mangle", 0x1, 0x3), ("nat", 0x3, 0x7), ("filter", 0x7, 0xF),
                    ("security", 0xF, 0x1F)]
    assert t.final.mark == 0x1F


def test_drop_policy():
    node = make_node("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
    t = send(node)
    assert t.verdict == "DROP" and t.final is None and t.delivered_to is None
    policy = [s for s in t.steps if s.kind == "policy"]
    assert len(policy) == 1 and policy[0].verdict == "DROP" and policy[0].chain == "FORWARD"
    assert t.matched_rules == []
    assert send(node, dst=NODE_IP).verdict == "ACCEPT"


def test_drop_in_prerouting_stops_before_routing():
    node = make_node(table("raw", "-A PREROUTING -j DROP") + filter_rules("FORWARD", "-j LOG"))
    t = send(node)
    assert t.verdict == "DROP"
    assert hooks_walked(t) == ["PREROUTING"]
    assert node.state.log == []


# --------------------------------------------------------------------------
# Routing after DNAT

def test_dnat_in_prerouting_to_a_pod_goes_forward_not_input():
    node = make_node(table("nat", f"-A PREROUTING -d {NODE_IP}/32 -p tcp -m tcp --dport 30080 "
                                  f"-j DNAT --to-destination {BACKEND1}:8080")
                     + filter_rules("INPUT", "-j LOG --log-prefix input"))
    t = send(node, from_="external", dst=NODE_IP, dport=30080)
    hooks = hooks_walked(t)
    assert "FORWARD" in [s.hook for s in t.steps if s.hook] or hooks[-1] == "POSTROUTING"
    assert "INPUT" not in [s.hook for s in t.steps]
    assert node.state.log == []
    assert t.delivered_to == "backend1" and t.final.dst == BACKEND1 and t.final.dport == 8080
    assert t.final.out_iface == "veth-backend1"


def test_dnat_in_prerouting_to_the_node_goes_input():
    node = make_node(table("nat", f"-A PREROUTING -d {SERVICE_IP}/32 -p tcp -j DNAT --to-destination {NODE_IP}:8080"))
    t = send(node, dst=SERVICE_IP)
    assert t.delivered_to == "node"
    assert "INPUT" in [s.hook for s in t.steps]
    assert "FORWARD" not in [s.hook for s in t.steps]


def test_dnat_in_output_reroutes():
    node = make_node(table("nat", f"-A OUTPUT -d {SERVICE_IP}/32 -p tcp -j DNAT --to-destination {BACKEND2}:8080"))
    t = send(node, from_="node", dst=SERVICE_IP)
    assert t.final.out_iface == "veth-backend2" and t.delivered_to == "backend2"


# --------------------------------------------------------------------------
# kube-proxy shaped flows: ClusterIP, hairpin, NodePort

def test_cluster_ip_from_a_pod():
    node = make_node(kube_rules())
    t = send(node, dst=SERVICE_IP)
    assert t.dnat_to == f"{BACKEND1}:8080" and t.delivered_to == "backend1"
    assert t.masquerade is False and t.snat_to is None
    assert t.final.src == CLIENT


def test_hairpin_is_masqueraded_to_the_pod_gateway():
    node = make_node(kube_rules(endpoints=((CLIENT, 8080),)))
    t = send(node, dst=SERVICE_IP)
    assert t.dnat_to == f"{CLIENT}:8080"
    assert t.delivered_to == "client"
    assert t.final.src == POD_GW and t.final.dst == CLIENT
    assert t.masquerade is True and t.snat_to == f"{POD_GW}:40000"
    chains = [s.chain for s in t.matched_rules]
    assert "KUBE-MARK-MASQ" in chains and "KUBE-POSTROUTING" in chains
    r = node.reply(t)
    assert r.final.src == SERVICE_IP and r.final.sport == 80
    assert r.final.dst == CLIENT and r.final.dport == 40000
    assert r.delivered_to == "client"


def test_nodeport_from_outside():
    node = make_node(kube_rules(node_port=30080))
    t = send(node, from_="external", dst=NODE_IP, dport=30080)
    assert t.verdict == "ACCEPT"
    assert t.dnat_to == f"{BACKEND1}:8080" and t.delivered_to == "backend1"
    assert t.final.src == POD_GW             # KUBE-EXT marked it; it leaves by the Pod's veth
    assert t.masquerade is True
    assert "INPUT" not in [s.hook for s in t.steps]
    r = node.reply(t)
    assert r.delivered_to == "external"
    assert (r.final.src, r.final.sport, r.final.dst, r.final.dport) == (NODE_IP, 30080, EXTERNAL, 40000)


def test_cluster_ip_from_outside_is_masqueraded():
    node = make_node(kube_rules())
    t = send(node, from_="external", dst=SERVICE_IP)
    assert t.delivered_to == "backend1" and t.masquerade is True and t.final.src == POD_GW


# --------------------------------------------------------------------------
# NAT once per connection; replies

def test_nat_walked_only_for_the_first_packet():
    node = make_node(kube_rules())
    first = send(node, dst=SERVICE_IP)
    assert rule_steps(first, "nat")
    second = send(node, dst=SERVICE_IP, tcp_flags=frozenset({"ACK"}))
    assert rule_steps(second, "nat") == []
    assert second.dnat_to == first.dnat_to == f"{BACKEND1}:8080"
    assert second.final.dst == BACKEND1 and second.final.dport == 8080
    assert any(s.kind == "nat" for s in second.steps)
    third = send(node, dst=SERVICE_IP, sport=40001)          # another connection: walks nat
    assert rule_steps(third, "nat")


def test_reply_is_un_dnatted():
    node = make_node(kube_rules())
    t = send(node, dst=SERVICE_IP)
    r = node.reply(t)
    assert r.origin == "backend1"
    assert r.packet.src == BACKEND1 and r.packet.sport == 8080
    assert r.final.src == SERVICE_IP and r.final.sport == 80
    assert r.final.dst == CLIENT and r.final.dport == 40000
    assert r.delivered_to == "client" and r.verdict == "ACCEPT"
    assert rule_steps(r, "nat") == []
    assert r.packet.tcp_flags == frozenset({"SYN", "ACK"})


def test_reply_to_masqueraded_traffic_is_un_snatted():
    node = make_node(table("nat", "-A POSTROUTING -o eth0 -j MASQUERADE"))
    t = send(node, from_="backend2")
    r = node.reply(t)
    assert r.origin == "remote1"
    assert r.packet.dst == NODE_IP
    assert r.final.dst == BACKEND2 and r.final.dport == 40000
    assert r.delivered_to == "backend2"


def test_reply_to_a_dropped_packet_is_refused():
    node = make_node(filter_rules("FORWARD", "-j DROP"))
    with pytest.raises(kplab.KplabError):
        node.reply(send(node))


# --------------------------------------------------------------------------
# The JSON contract (DESIGN section 4)

TOP_KEYS = {"input", "verdict", "matched_rules", "dnat_to", "masquerade", "snat_to", "delivered", "steps"}
RULE_KEYS = {"hook", "table", "chain", "rule_index", "rule_text", "verdict"}


def test_to_json_contract():
    node = make_node(kube_rules())
    j = send(node, dst=SERVICE_IP).to_json()
    assert set(j) == TOP_KEYS
    json.dumps(j)                                           # plain data
    assert j["input"] == {"from": "client", "proto": "tcp", "src": CLIENT, "sport": 40000,
                          "dst": SERVICE_IP, "dport": 80}
    assert j["verdict"] == "ACCEPT"
    assert j["dnat_to"] == f"{BACKEND1}:8080" and j["masquerade"] is False and j["snat_to"] is None
    assert j["delivered"] == {"to": "backend1", "src": CLIENT, "sport": 40000, "dst": BACKEND1, "dport": 8080}
    for r in j["matched_rules"]:
        assert set(r) == RULE_KEYS
        assert isinstance(r["rule_index"], int) and r["rule_index"] >= 1
    first = j["matched_rules"][0]
    assert first == {"hook": "PREROUTING", "table": "nat", "chain": "PREROUTING", "rule_index": 1,
                     "rule_text": '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                     "verdict": "JUMP:KUBE-SERVICES"}
    assert [(r["chain"], r["verdict"]) for r in j["matched_rules"]][-3:] == [
        ("KUBE-SEP-E0", "DNAT"), ("POSTROUTING", "JUMP:KUBE-POSTROUTING"), ("KUBE-POSTROUTING", "RETURN")]
    assert isinstance(j["steps"], list) and j["steps"]


def test_rule_index_is_one_based_position_in_the_chain():
    node = make_node(filter_rules("FORWARD", "-p udp -j DROP", "-s 10.244.1.3 -j DROP", "-s 10.244.1.7 -j ACCEPT"))
    j = send(node).to_json()
    assert [(r["chain"], r["rule_index"], r["verdict"]) for r in j["matched_rules"]] == [("FORWARD", 3, "ACCEPT")]
    assert j["matched_rules"][0]["rule_text"] == "-A FORWARD -s 10.244.1.7/32 -j ACCEPT"


def test_json_of_a_dropped_packet():
    node = make_node(filter_rules("FORWARD", "-j DROP"))
    j = send(node).to_json()
    assert j["verdict"] == "DROP" and j["delivered"] is None and j["dnat_to"] is None
    assert set(j) == TOP_KEYS


def test_policies_are_not_matched_rules():
    node = make_node("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n")
    j = send(node).to_json()
    assert j["matched_rules"] == []
    assert any(s["kind"] == "policy" for s in j["steps"])


# --------------------------------------------------------------------------
# The CLI

@pytest.fixture
def rules_file(tmp_path):
    p = tmp_path / "rules.txt"
    p.write_text(kube_rules(endpoints=((BACKEND1, 8080), (BACKEND2, 8080))))
    return p


def test_cli_trace_json(rules_file, capsys):
    out = io.StringIO()
    rc = main(["trace", "--rules", str(rules_file), "--from", "client", "--dst", SERVICE_IP, "--dport", "80",
               "--json"], out=out)
    assert rc == 0
    j = json.loads(out.getvalue())
    assert TOP_KEYS <= set(j)
    assert j["dnat_to"] in (f"{BACKEND1}:8080", f"{BACKEND2}:8080")
    assert capsys.readouterr().err == ""


def test_cli_trace_is_reproducible_with_a_seed(rules_file):
    def run(seed):
        out = io.StringIO()
        assert main(["trace", "--rules", str(rules_file), "--from", "client", "--dst", SERVICE_IP,
                     "--seed", str(seed), "--json"], out=out) == 0
        return json.loads(out.getvalue())["dnat_to"]
    assert run(3) == run(3)
    assert len({run(s) for s in range(12)}) == 2


def test_cli_trace_text_and_all_paths(rules_file):
    out = io.StringIO()
    assert main(["trace", "--rules", str(rules_file), "--from", "client", "--dst", SERVICE_IP], out=out) == 0
    assert "ACCEPT" in out.getvalue()
    out = io.StringIO()
    assert main(["trace", "--rules", str(rules_file), "--from", "client", "--dst", SERVICE_IP, "--all-paths",
                 "--json"], out=out) == 0
    j = json.loads(out.getvalue())
    assert [o["dnat_to"] for o in j["outcomes"]] == [f"{BACKEND1}:8080", f"{BACKEND2}:8080"]
    assert abs(sum(o["probability"] for o in j["outcomes"]) - 1) < 1e-9


def test_cli_save(rules_file):
    out = io.StringIO()
    assert main(["save", "--rules", str(rules_file)], out=out) == 0
    text = out.getvalue()
    assert "--probability 0.50000000000" in text and "--set-xmark 0x4000/0x4000" in text
    assert kplab.save_rules(kplab.parse_rules(text)) == text


def _bad_rules(tmp_path):
    p = tmp_path / "bad.rules"
    p.write_text("*filter\n-A FORWARD -s 10.0.0.300 -j DROP\nCOMMIT\n")
    return p


@pytest.mark.parametrize("argv,where", [
    (lambda d: ["trace", "--rules", str(_bad_rules(d)), "--from", "client", "--dst", SERVICE_IP], "bad.rules:2:"),
    (lambda d: ["save", "--rules", str(_bad_rules(d))], "bad.rules:2:"),
    (lambda d: ["trace", "--rules", str(d / "missing.rules"), "--from", "client", "--dst", SERVICE_IP], "missing"),
    (lambda d: ["trace", "--rules", str(_bad_rules(d)).replace("bad", "x"), "--from", "client"], ""),
    (lambda d: [], ""),
    (lambda d: ["frobnicate"], ""),
    (lambda d: ["trace", "--rules", str(d / "ok.rules"), "--from", "nobody", "--dst", SERVICE_IP], "nobody"),
    (lambda d: ["trace", "--rules", str(d / "ok.rules"), "--from", "client", "--dst", "10.96.5.300"], ""),
    (lambda d: ["trace", "--rules", str(d / "ok.rules"), "--from", "client", "--dst", SERVICE_IP,
                "--dport", "70000"], ""),
    (lambda d: ["trace", "--rules", str(d / "ok.rules"), "--from", "client", "--dst", SERVICE_IP,
                "--proto", "gre"], ""),
    (lambda d: ["save", "--rules", str(d / "opaque.rules")], "set"),
], ids=["bad-rule-trace", "bad-rule-save", "missing-file", "missing-dst", "no-command", "unknown-command",
        "unknown-from", "bad-dst", "bad-dport", "bad-proto", "save-refuses-unsupported"])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, where):
    (tmp_path / "ok.rules").write_text(kube_rules())
    (tmp_path / "opaque.rules").write_text("*filter\n-A INPUT -m set --match-set x src -j DROP\nCOMMIT\n")
    out = io.StringIO()
    rc = main(argv(tmp_path), out=out)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kplab: error:")
    assert "Traceback" not in err
    assert where in lines[0]


def test_cli_trace_reaching_opaque_rule(tmp_path, capsys):
    p = tmp_path / "opaque.rules"
    p.write_text("*filter\n-A FORWARD -m set --match-set blocked src -j DROP\nCOMMIT\n")
    base = ["trace", "--rules", str(p), "--from", "client", "--dst", REMOTE1, "--json"]
    assert main(base, out=io.StringIO()) == 2
    err = capsys.readouterr().err.splitlines()
    assert [e for e in err if e.startswith("kplab: error:")] and "set" in err[-1]
    out = io.StringIO()
    assert main(base + ["--assume-unsupported", "match"], out=out) == 0
    j = json.loads(out.getvalue())
    assert j["verdict"] == "DROP" and j["warnings"]
    out = io.StringIO()
    assert main(base + ["--assume-unsupported", "nomatch"], out=out) == 0
    assert json.loads(out.getvalue())["verdict"] == "ACCEPT"


# --------------------------------------------------------------------------
# All paths

def test_all_paths_three_endpoint_cascade():
    eps = ((BACKEND1, 8080), (BACKEND2, 8080), (CLIENT, 8080))
    text = kube_rules(endpoints=eps)
    assert "--probability 0.3333333333 " in text and "--probability 0.5000000000 " in text
    node = make_node(text)
    paths = node.all_paths(node.packet("client", SERVICE_IP, "tcp", 80), "client")
    assert len(paths) == 3
    for p in paths:
        assert abs(p.probability - 1 / 3) < 1e-9
    assert abs(sum(p.probability for p in paths) - 1) < 1e-9
    # the kernel's stored odds: first endpoint round(0.3333333333 * 2^31) / 2^31
    p1 = round(0.3333333333 * 2**31) / 2**31
    assert paths[0].probability == pytest.approx(p1, abs=1e-15)
    assert paths[0].dnat_to == f"{BACKEND1}:8080"
    # ties (the other two) ordered by dnat_to
    assert [p.dnat_to for p in paths[1:]] == sorted(p.dnat_to for p in paths[1:])
    assert {p.dnat_to for p in paths} == {f"{a}:{b}" for a, b in eps}
    hair = next(p for p in paths if p.dnat_to == f"{CLIENT}:8080")
    assert hair.masquerade is True and hair.final.src == POD_GW
    # enumeration leaves the node alone
    assert node.conntrack_text() == ""


def test_all_paths_ordering_by_probability():
    eps = ((BACKEND1, 8080), (BACKEND2, 8080))
    node = make_node(kube_rules(endpoints=eps, probabilities=[0.2]))
    paths = node.all_paths(node.packet("client", SERVICE_IP, "tcp", 80), "client")
    assert [p.dnat_to for p in paths] == [f"{BACKEND2}:8080", f"{BACKEND1}:8080"]
    assert paths[0].probability > paths[1].probability


def _cascade(n):
    lines = []
    for i in range(n):
        to = f"10.{100 + i // 250}.{i % 250}.1:8080"
        stat = f"-m statistic --mode random --probability {1 / (n - i):.10f} " if i < n - 1 else ""
        lines.append(f"-A KUBE-SVC-BIG {stat}-j DNAT --to-destination {to}".replace(
            "-j DNAT", "-p tcp -j DNAT"))
    return table("nat", f"-A PREROUTING -d {SERVICE_IP}/32 -p tcp -j KUBE-SVC-BIG", *lines, chains=["KUBE-SVC-BIG"])


def test_all_paths_thousand_branch_cascade():
    node = make_node(_cascade(1000))
    pkt = node.packet("client", SERVICE_IP, "tcp", 80)
    paths = node.all_paths(pkt, "client")
    assert len(paths) == 1000
    assert abs(sum(p.probability for p in paths) - 1) < 1e-9
    assert all(abs(p.probability - 1 / 1000) < 1e-9 for p in paths)
    assert len({p.dnat_to for p in paths}) == 1000
    with pytest.raises(kplab.TooManyPathsError) as e:
        node.all_paths(pkt, "client", max_paths=100)
    assert e.value.count == 1000
    assert "1000" in str(e.value)


def test_all_paths_sample_is_seeded():
    node = make_node(kube_rules(endpoints=((BACKEND1, 8080), (BACKEND2, 8080))), seed=5)
    pkt = node.packet("client", SERVICE_IP, "tcp", 80)
    a = [t.dnat_to for t in node.all_paths(pkt, "client", sample=20)]
    b = [t.dnat_to for t in node.all_paths(pkt, "client", sample=20)]
    assert a == b and len(a) == 20
    assert set(a) <= {f"{BACKEND1}:8080", f"{BACKEND2}:8080"}


def test_all_paths_branch_in_every_table():
    """statistic in filter branches too; nat and filter draws multiply."""
    text = kube_rules(endpoints=((BACKEND1, 8080), (BACKEND2, 8080)),
                      filter_lines=["-A FORWARD -m statistic --mode random --probability 0.25 -j DROP"])
    node = make_node(text)
    paths = node.all_paths(node.packet("client", SERVICE_IP, "tcp", 80), "client")
    assert len(paths) == 4
    assert abs(sum(p.probability for p in paths) - 1) < 1e-9
    drops = [p for p in paths if p.verdict == "DROP"]
    assert len(drops) == 2 and abs(sum(p.probability for p in drops) - 0.25) < 1e-9


def test_single_trace_with_a_cascade_is_deep_enough():
    node = make_node(_cascade(1000), seed=1)
    t = send(node, dst=SERVICE_IP)
    assert t.verdict == "ACCEPT" and t.dnat_to is not None


# --------------------------------------------------------------------------
# Deep jumps (nf_tables: NFT_JUMP_STACK_SIZE 16; seen on the kernel: 15 nested
# user chains load, 16 are refused with "Too many links")

def _nest(levels, how="-j"):
    names = [f"L{i}" for i in range(1, levels + 1)]
    lines = [f"-A FORWARD {how} L1"]
    lines += [f"-A {a} {how} {b}" for a, b in zip(names, names[1:])]
    lines.append(f"-A {names[-1]} -j DROP")
    return table("filter", *lines, chains=names)


@pytest.mark.parametrize("how", ["-j", "-g"])
def test_fifteen_nested_chains_work(how):
    node = make_node(_nest(15, how))
    t = send(node)
    assert t.verdict == "DROP"
    assert len(t.matched_rules) == 16
    assert t.matched_rules[-1].chain == "L15"


@pytest.mark.parametrize("how", ["-j", "-g"])
def test_sixteen_nested_chains_are_refused(how):
    with pytest.raises(kplab.RulesetError):
        kplab.parse_rules(_nest(16, how))


def test_deep_nesting_in_unreachable_chains_is_accepted():
    text = _nest(20).replace("-A FORWARD -j L1\n", "")
    kplab.parse_rules(text)
