"""Bad command lines: each one exits 2 with exactly one stderr line, `kplab: error: ...`, and no traceback.

The table runs `kplab.cli.main` in this process (fast); two rows also run `python -m kplab` in a
child process, to see what a shell sees.
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from kplab.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEED = str(ROOT / "data" / "rules" / "seed-node.rules")
CLUSTER = str(ROOT / "data" / "clusters" / "seed.yaml")
CATALOGUE = Path(__file__).resolve().parent
TRACE = ["trace", "--rules", SEED, "--from", "client", "--dst", "10.96.5.81"]


def files(tmp):
    """Bad files the table points at (made in tmp_path)."""
    (tmp / "bad.rules").write_text("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    (tmp / "binary.rules").write_bytes(bytes(range(256)))
    (tmp / "topo.json").write_text('{"pods": [')
    (tmp / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: eighty}]}\n")
    (tmp / "empty.yaml").write_text("")
    n = 40                                         # 2^40 outcomes
    (tmp / "draws.rules").write_text(
        "*mangle\n" + "".join(f"-A PREROUTING -m statistic --mode random --probability 0.5 "
                              f"-j MARK --set-xmark {i}/0xffffffff\n" for i in range(n)) + "COMMIT\n")
    (tmp / "dir.rules").mkdir()


# (id, argv with {tmp} for the test's directory, words the one line must contain)
CASES = [
    # the three
    ("unknown-pod", ["trace", "--rules", SEED, "--from", "frontend-xyz", "--dst", "10.96.5.81"],
     ["unknown source 'frontend-xyz'"]),
    ("port-70000", TRACE + ["--dport", "70000"], ["argument --dport: port 70000 is out of range (0-65535)"]),
    ("missing-dst", ["trace", "--rules", SEED, "--from", "client"], ["the following arguments are required: --dst"]),
    # more options
    ("missing-rules", ["trace", "--from", "client", "--dst", "10.96.5.81"], ["required: --rules"]),
    ("missing-from", ["trace", "--rules", SEED, "--dst", "10.96.5.81"], ["required: --from"]),
    ("port-not-a-number", TRACE + ["--dport", "http"], ["'http' is not a port number"]),
    ("negative-sport", TRACE + ["--sport", "-1"], ["port -1 is out of range"]),
    ("bad-proto", TRACE + ["--proto", "gre"], ["invalid choice: 'gre'"]),
    ("dst-not-an-ip", ["trace", "--rules", SEED, "--from", "client", "--dst", "10.96.5"], ["10.96.5"]),
    ("src-not-an-ip", TRACE + ["--src", "somewhere"], ["somewhere"]),
    ("sample-zero", TRACE + ["--all-paths", "--sample", "0"], ["argument --sample: 0 must be at least 1"]),
    ("max-paths-negative", TRACE + ["--all-paths", "--max-paths", "-5"], ["-5 must be at least 1"]),
    ("seed-not-a-number", TRACE + ["--seed", "x"], ["'x' is not a whole number"]),
    ("bad-assume", TRACE + ["--assume-unsupported", "maybe"], ["invalid choice: 'maybe'"]),
    ("unknown-option", TRACE + ["--colour"], ["unrecognized arguments: --colour"]),
    ("no-command", [], ["required: COMMAND"]),
    ("unknown-command", ["frobnicate"], ["invalid choice: 'frobnicate'"]),
    # files
    ("missing-file", ["trace", "--rules", "{tmp}/nope.rules", "--from", "client", "--dst", "10.0.0.1"],
     ["nope.rules: cannot read it: No such file or directory"]),
    ("directory-as-rules", ["save", "--rules", "{tmp}/dir.rules"], ["dir.rules: is a directory, not a rules file"]),
    ("parse-error", ["save", "--rules", "{tmp}/bad.rules"], ["bad.rules:2: port 99999 is out of range (0-65535)"]),
    ("binary-file", ["explain", "--rules", "{tmp}/binary.rules"], ["binary.rules:2: not UTF-8 text"]),
    ("catalogue-case", ["save", "--rules", str(CATALOGUE / "iptables" / "jump-loop.rules")],
     ["jump-loop.rules:9: jump loop reachable from built-in chain INPUT"]),
    ("bad-topology", TRACE + ["--topology", "{tmp}/topo.json"], ["not valid JSON"]),
    ("missing-topology", TRACE + ["--topology", "{tmp}/nope.json"], ["nope.json"]),
    ("too-many-paths", ["trace", "--rules", "{tmp}/draws.rules", "--from", "client", "--dst", "10.244.2.5",
                        "--all-paths", "--max-paths", "100"],
     ["possible paths (over the limit of 100): raise --max-paths, or use --sample N"]),
    # render
    ("render-missing-cluster", ["render", "--cluster", "{tmp}/nope.yaml", "--node", "node-1"],
     ["nope.yaml: cannot read: No such file or directory"]),
    ("render-bad-yaml", ["render", "--cluster", "{tmp}/bad.yaml", "--node", "node-1"],
     ["bad.yaml:4: document 1 (Service default/x): spec.ports[0].port: expected a number, got \"eighty\""]),
    ("render-unknown-node", ["render", "--cluster", CLUSTER, "--node", "node-9"], ["no node 'node-9'"]),
    ("render-bad-node-ip", ["render", "--cluster", CLUSTER, "--node", "node-1", "--node-ip", "10.0.0"],
     ["--node-ip '10.0.0' is not an IP address"]),
    ("render-config-without-proxy-config", ["render", "--cluster", CLUSTER, "--node", "node-1",
                                            "--config", "{tmp}/empty.yaml"], ["no KubeProxyConfiguration"]),
    ("render-missing-node", ["render", "--cluster", CLUSTER], ["required: --node"]),
]


def run(argv):
    out = io.StringIO()
    rc = main(list(argv), out=out)
    return rc, out.getvalue()


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line_is_one_line_exit_2(argv, words, tmp_path, capsys):
    files(tmp_path)
    rc, out = run([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and out == ""
    errors = [ln for ln in lines if not ln.startswith("kplab: warning: ")]
    assert len(errors) == 1 and errors[0].startswith("kplab: error: "), err
    for w in words:
        assert w in errors[0], f"{w!r} not in {errors[0]!r}"


@pytest.mark.parametrize("argv", [
    ["trace", "--rules", SEED, "--from", "nobody", "--dst", "10.96.5.81"],
    ["save", "--rules", str(CATALOGUE / "iptables" / "binary-garbage.rules")],
], ids=["unknown-pod", "binary-garbage"])
def test_a_real_process_shows_no_traceback(argv):
    p = subprocess.run([sys.executable, "-m", "kplab", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("kplab: error: ") and "Traceback" not in p.stderr
