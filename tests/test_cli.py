"""The command-line contract of DESIGN section 4, on the seed example."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kplab.cli import main

ROOT = Path(__file__).parent.parent
SEED = str(ROOT / "data" / "rules" / "seed-node.rules")
GOLDEN = ROOT / "tests" / "data" / "golden"


def run(*argv):
    out = io.StringIO()
    rc = main(list(argv), out=out)
    return rc, out.getvalue()


def test_trace_json_contract():
    rc, text = run("trace", "--rules", SEED, "--from", "client", "--dst", "10.96.5.81", "--dport", "80", "--json")
    assert rc == 0
    obj = json.loads(text)
    assert set(obj) >= {"input", "verdict", "matched_rules", "dnat_to", "masquerade", "snat_to", "delivered", "steps"}
    assert obj["input"] == {"from": "client", "proto": "tcp", "src": "10.244.1.7", "sport": 40000,
                            "dst": "10.96.5.81", "dport": 80}
    assert obj["verdict"] == "ACCEPT"
    assert obj["dnat_to"] == "10.244.1.3:8080"
    assert obj["masquerade"] is False and obj["snat_to"] is None
    assert obj["delivered"] == {"to": "backend1", "src": "10.244.1.7", "sport": 40000,
                                "dst": "10.244.1.3", "dport": 8080}
    first = obj["matched_rules"][0]
    assert first == {"hook": "PREROUTING", "table": "nat", "chain": "PREROUTING", "rule_index": 1,
                     "rule_text": '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                     "verdict": "JUMP:KUBE-SERVICES"}
    words = {m["verdict"].split(":")[0] for m in obj["matched_rules"]}
    assert words <= {"JUMP", "GOTO", "CONTINUE", "RETURN", "ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE"}
    assert [m["verdict"] for m in obj["matched_rules"] if m["verdict"] == "DNAT"] == ["DNAT"]


def test_trace_json_golden():
    """The whole JSON, steps included, is stable (update the golden file on purpose only)."""
    rc, text = run("trace", "--rules", SEED, "--from", "client", "--dst", "10.96.5.81", "--dport", "80", "--json")
    assert json.loads(text) == json.loads((GOLDEN / "seed-trace.json").read_text())


def test_trace_text_golden():
    rc, text = run("trace", "--rules", SEED, "--from", "client", "--dst", "10.96.5.81", "--dport", "80")
    assert rc == 0
    assert text == (GOLDEN / "seed-trace.txt").read_text()


def test_all_paths_json():
    rc, text = run("trace", "--rules", SEED, "--from", "client", "--dst", "10.96.5.81", "--dport", "80",
                   "--all-paths", "--json")
    obj = json.loads(text)
    assert rc == 0 and len(obj["outcomes"]) == 1
    assert obj["outcomes"][0]["probability"] == 1.0
    assert obj["outcomes"][0]["dnat_to"] == "10.244.1.3:8080"


def test_save_is_the_file_itself():
    rc, text = run("save", "--rules", SEED)
    assert rc == 0
    want = "".join(l for l in Path(SEED).read_text().splitlines(True) if not l.startswith("#"))
    assert text == want


@pytest.mark.parametrize("argv, message", [
    (["trace", "--rules", SEED, "--from", "nobody", "--dst", "10.96.5.81"], "unknown source 'nobody'"),
    (["trace", "--rules", SEED, "--from", "client", "--dst", "10.96.5.81", "--dport", "70000"], "out of range"),
    (["trace", "--rules", SEED, "--from", "client"], "required: --dst"),
    (["trace", "--rules", SEED, "--from", "client", "--dst", "not-an-ip"], "not an IP address"),
    (["trace", "--rules", "/nonexistent/rules", "--from", "client", "--dst", "10.0.0.1"], "No such file"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    rc, _ = run(*argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("kplab: error: ")
    assert message in err
    assert "Traceback" not in err


def test_parse_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.rules"
    bad.write_text("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    rc, _ = run("save", "--rules", str(bad))
    err = capsys.readouterr().err
    assert rc == 2 and err == f"kplab: error: {bad}:2: port 99999 is out of range (0-65535)\n"


def test_unsupported_module_save_refuses_trace_warns(tmp_path, capsys):
    f = tmp_path / "set.rules"
    f.write_text("*filter\n-A FORWARD -m set --match-set blocked src -j DROP\nCOMMIT\n")
    rc, _ = run("save", "--rules", str(f))
    err = capsys.readouterr().err
    assert rc == 2 and ":2:" in err and "\"set\"" in err
    rc, text = run("trace", "--rules", str(f), "--from", "client", "--dst", "10.244.2.5", "--json")
    err = capsys.readouterr().err
    assert rc == 2 and "-m set" in err and "--assume-unsupported" in err
    rc, text = run("trace", "--rules", str(f), "--from", "client", "--dst", "10.244.2.5", "--json",
                   "--assume-unsupported", "nomatch")
    obj = json.loads(text)
    assert rc == 0 and obj["verdict"] == "ACCEPT" and any("set" in w for w in obj["warnings"])


def test_python_dash_m_is_the_same_program():
    p = subprocess.run([sys.executable, "-m", "kplab", "save", "--rules", SEED], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 0 and p.stdout.startswith("*filter\n")


@pytest.mark.parametrize("topo, message", [
    ('{"pods": 5}', "topology.pods: expected a list"),
    ('{"pods": [{"name": "a"}]}', "topology.pods[0]: expected"),
    ('{"node": {"ip": 5}}', "topology.node.ip: expected text"),
    ('{"nodes": {}}', "topology.nodes: unknown key"),
    ('{"peer": {"externals": [{"name": "x", "ip": "not-ip"}]}}', "'not-ip'"),
    ('{"pods": [', "not valid JSON"),
])
def test_bad_topology_file(tmp_path, capsys, topo, message):
    f = tmp_path / "topo.json"
    f.write_text(topo)
    rc, _ = run("trace", "--rules", SEED, "--topology", str(f), "--from", "node", "--dst", "10.0.0.1")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err


def test_topology_file_replaces_the_pods(tmp_path):
    f = tmp_path / "topo.json"
    f.write_text('{"pods": [{"name": "web", "ip": "10.244.1.20"}]}')
    rc, text = run("trace", "--rules", SEED, "--topology", str(f), "--from", "web", "--dst", "10.96.5.81", "--json")
    obj = json.loads(text)
    assert rc == 0 and obj["input"]["src"] == "10.244.1.20"
    # backend1 is no longer a Pod of this node: 10.244.1.3 routes out of eth0
    assert obj["delivered"]["to"] == "peer" and obj["dnat_to"] == "10.244.1.3:8080"


def test_crlf_file_is_refused_as_iptables_restore_refuses_it(tmp_path, capsys):
    f = tmp_path / "crlf.rules"
    f.write_bytes(b"*filter\r\n-A INPUT -j ACCEPT\r\nCOMMIT\r\n")
    rc, _ = run("save", "--rules", str(f))
    err = capsys.readouterr().err
    assert rc == 2 and f"{f}:1:" in err and "carriage return" in err


def test_a_huge_token_is_not_echoed_whole(tmp_path, capsys):
    f = tmp_path / "huge.rules"
    f.write_text("*filter\n-A INPUT " + "x" * 1_000_000 + "\nCOMMIT\n")
    rc, _ = run("save", "--rules", str(f))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and len(err) < 600 and ":2:" in err
