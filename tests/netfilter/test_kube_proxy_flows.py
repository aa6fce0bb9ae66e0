"""kube-proxy's own packet-flow expectations, checked against kplab's kernel engine.

The data (tests/data/conformance/kube-proxy/packet_flows.json, see its
README) holds every `runPacketFlowTests` flow of kube-proxy's
proxier_test.go: 30 cases, 43 steps, 246 flows, each with the rule set the
test traced and what upstream's test tracer answered ("output", "masq").

kplab is not asked to imitate that tracer. Each flow is sent through kplab's
real-kernel walk (`Node.all_paths`, every outcome of the random `statistic`
draws), and the outcomes are translated into the tracer's words by the
explicit mapping of `_kube_flows.mismatches`. Two translations happen on the
way in, both in `_kube_flows`:

1. the rule set: the comments of the `EnsureRule` jump rules are quoted
   again (`requote_fake_comments`), because upstream's fake iptables stored
   them unquoted, which the real iptables-restore refuses (pinned below);
2. the node: `topology_for` / `origin_for` make every node IP local and
   send each flow from where its source lives: the node itself (its own IPs
   and loopback: the OUTPUT path), a local Pod (Pod addresses), or an
   outside host on eth0 (anything else).

Where the tracer's approximation and the kernel really differ for a flow,
the flow goes in KNOWN_DIFFERENCES with the kernel's answer and the reason;
it is then asserted against that answer, never skipped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from kplab.errors import KplabError, ParseError
from kplab.netfilter import parse
from tests._require import require
from tests.netfilter import _kube_flows as K

FLOWS = K.all_flows()


@dataclass(frozen=True)
class KernelDifference:
    """A flow whose upstream expectation is an artefact of the test tracer:
    what the kernel does instead (in the tracer's words), and why."""

    reason: str
    kernel_output: str
    kernel_masq: bool


#: flow id ("case/step/flow name") -> the kernel's answer where upstream's
#: tracer approximation gives a different one.
#:
#: It is empty: on this data every approximation the README lists is either
#: absorbed by the mapping or never reached by a flow. Each was checked:
#:
#: * all statistic branches followed, all endpoints listed: the mapping
#:   compares the set of DNAT destinations over all kernel outcomes.
#: * masq set when *any* explored branch jumped to KUBE-MARK-MASQ (hairpin):
#:   the mapping reads masq as "some kernel outcome was masqueraded". The
#:   one hairpin flow ("TestClusterIPGeneral/1/hairpin to cluster IP") has a
#:   single endpoint, so any-branch and per-branch agree;
#:   test_hairpin_masquerade_is_per_branch pins the kernel's per-branch
#:   behaviour on a two-endpoint Service.
#: * node-originated traffic walked through nat PREROUTING, never OUTPUT:
#:   kube-proxy hooks the same nat KUBE-SERVICES chain into both, so the DNAT
#:   is the same; the per-flow check asserts it happens at OUTPUT in kplab.
#:   Upstream also walks filter KUBE-EXTERNAL-SERVICES / KUBE-NODEPORTS for
#:   node traffic, which the kernel reaches only through INPUT; the only
#:   node-originated flow with a filter verdict, "TestTracePacket/1/ACCEPT
#:   (NodePortHealthCheck)", goes to the node's own IP, so the kernel does
#:   reach KUBE-NODEPORTS (OUTPUT, lo, PREROUTING, INPUT) and agrees.
#: * rules with --rcheck / --mark / --ctstate never match: for the first
#:   packet of a connection the kernel agrees for affinity checks (no
#:   recent entry yet) and mark tests (no mark yet). The `--ctstate NEW`
#:   jumps into the filter chains do match in the kernel; upstream makes up
#:   for that by walking those chains directly, and the mapping checks the
#:   verdict came from one of exactly those chains.
#: * the destination replaced by the text before the first ":" ("[fd00" for
#:   IPv6) before the filter walk: harmless, the IPv6 cases' filter chains
#:   have no rule a flow reaches (kplab uses the real DNATed address).
#: * nat POSTROUTING not walked: masq is defined by KUBE-MARK-MASQ upstream,
#:   by the MASQUERADE in KUBE-POSTROUTING in the kernel; they agree.
#: * "TestInternalExternalMasquerade/*/node to NodePort with eTP:Local" really
#:   targets port 3001, svc1's NodePort (an upstream test quirk, recorded
#:   faithfully): the kernel sends it to svc1's endpoints too, which is what
#:   upstream expects. Not a tracer approximation; pinned by
#:   test_etp_local_quirk_flow_targets_svc1.
KNOWN_DIFFERENCES: dict[str, KernelDifference] = {}


def _ruleset_line(fc: K.FlowCase, lineno: int) -> str:
    lines = K.requote_fake_comments(fc.step_data["ruleset"]).splitlines()
    return lines[lineno - 1] if 0 < lineno <= len(lines) else "?"


@pytest.mark.parametrize("fc", FLOWS, ids=[fc.id for fc in FLOWS])
def test_flow(fc):
    exp = K.expected_of(fc)
    diff = KNOWN_DIFFERENCES.get(fc.id)
    if diff is not None:
        exp = K.parse_expected(diff.kernel_output, diff.kernel_masq)
    try:
        obs = K.run_flow(fc)
    except ParseError as e:
        pytest.fail(f"kplab refused the step's rule set (which the kernel loads): {e}\n"
                    f"  line {e.line}: {_ruleset_line(fc, e.line or 0)}", pytrace=False)
    except KplabError as e:
        pytest.fail(f"kplab raised {type(e).__name__} walking {fc.flow['source_ip']} -> "
                    f"{fc.flow['dest_ip']}:{fc.flow['dest_port']}/{fc.flow['effective_protocol']}: {e}",
                    pytrace=False)
    problems = K.mismatches(exp, obs)
    if problems:
        f = fc.flow
        head = (f"{f['source_ip']} -> {f['dest_ip']}:{f['dest_port']}/{f['effective_protocol']}: "
                f"upstream output {f['expected_output']!r} masq={f['expected_masq']}"
                + (f"; kernel expectation (KNOWN_DIFFERENCES) {diff.kernel_output!r} masq={diff.kernel_masq}"
                   if diff else ""))
        pytest.fail("\n".join([head] + ["  " + p for p in problems] + [obs.summary()]), pytrace=False)


def test_every_flow_is_parametrized():
    assert len(FLOWS) == 246
    assert len({fc.id for fc in FLOWS}) == 246
    assert len({(fc.case_id, fc.step) for fc in FLOWS}) == 43


def test_known_differences_are_live():
    """Every entry names a real flow and really differs from upstream (a
    stale entry would hide a change)."""
    ids = {fc.id: fc for fc in FLOWS}
    for flow_id, diff in KNOWN_DIFFERENCES.items():
        assert flow_id in ids, f"KNOWN_DIFFERENCES names no flow: {flow_id!r}"
        f = ids[flow_id].flow
        assert diff.reason.strip(), flow_id
        assert (K.parse_expected(diff.kernel_output, diff.kernel_masq)
                != K.parse_expected(f["expected_output"], f["expected_masq"])), \
            f"{flow_id}: the kernel expectation equals upstream's; drop the entry"


def test_fake_storage_comments_refused_like_the_kernel():
    """Upstream's fake iptables stores EnsureRule jumps unquoted
    (`--comment kubernetes forwarding rules`). The kernel's iptables-restore
    (1.8.9, nft and legacy) refuses that: "Bad argument `forwarding'",
    "Error occurred at line: 21" for TestTracePacket. kplab must too; the
    re-quoting translation only adds the quotes back."""
    step = next(fc.step_data for fc in FLOWS if fc.case_id == "TestTracePacket")
    raw = step["ruleset"]
    with pytest.raises(ParseError) as e:
        parse(raw, family=4)
    assert e.value.line == 21
    assert "forwarding" in str(e.value)
    fixed = K.requote_fake_comments(raw)
    parse(fixed, family=4)
    changed = [(a, b) for a, b in zip(raw.splitlines(), fixed.splitlines()) if a != b]
    assert len(raw.splitlines()) == len(fixed.splitlines())
    # filter FORWARD x3, INPUT x2, OUTPUT; nat OUTPUT, POSTROUTING, PREROUTING
    assert len(changed) == 9
    for before, after in changed:
        assert after.replace('"', "") == before
        assert before.split()[1] in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"), before


def test_hairpin_masquerade_is_per_branch():
    """Upstream's tracer sets masq when any branch jumps to KUBE-MARK-MASQ;
    in the kernel only the branch that picks the sender itself is
    masqueraded. TestTracePacket's svc4 (10.180.0.4, 10.180.0.5), from the
    endpoint Pod 10.180.0.4."""
    fc = next(fc for fc in FLOWS if fc.case_id == "TestTracePacket")
    flow = dict(fc.flow, name="hairpin to a two-endpoint Service", source_ip="10.180.0.4",
                dest_ip="172.30.0.44", dest_port=80, effective_protocol="tcp")
    obs = K.run_flow(K.FlowCase(fc.case_id, fc.step, flow, fc.step_data))
    by_ep = {t.dnat_to: t for t in obs.outcomes}
    assert set(by_ep) == {"10.180.0.4:80", "10.180.0.5:80"}
    assert by_ep["10.180.0.4:80"].masquerade is True
    assert by_ep["10.180.0.5:80"].masquerade is False
    assert abs(by_ep["10.180.0.4:80"].probability - 0.5) < 1e-6
    assert obs.masq is True       # what upstream's any-branch rule says


def test_etp_local_quirk_flow_targets_svc1():
    """The flow named "node to NodePort with eTP:Local" uses port 3001, which is
    svc1's NodePort: both upstream and the kernel answer with svc1's endpoints."""
    quirk = [fc for fc in FLOWS if fc.flow["name"] == "node to NodePort with eTP:Local"]
    plain = {fc.case_id: fc for fc in FLOWS if fc.flow["name"] == "node to NodePort"}
    assert len(quirk) == 4
    for fc in quirk:
        assert fc.flow["dest_port"] == 3001
        assert fc.flow["expected_output"] == plain[fc.case_id].flow["expected_output"]
        assert K.run_flow(fc).endpoints == K.run_flow(plain[fc.case_id]).endpoints


@pytest.mark.kernel
def test_kernel_loads_translated_rulesets():
    """The real iptables-restore accepts every step's rule set after the
    re-quoting translation, and refuses the fake's raw storage at line 21."""
    require(os.geteuid() == 0, "needs root for a network namespace")
    require(all(shutil.which(c) for c in ("ip", "iptables-restore", "ip6tables-restore")),
            "needs iproute2 and iptables")
    ns = f"kplab-{os.getpid()}-kpflows"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
    try:
        steps = {}
        for fc in FLOWS:
            steps.setdefault((fc.case_id, fc.step), fc)
        for (case_id, step), fc in steps.items():
            cmd = "iptables-restore" if fc.family == 4 else "ip6tables-restore"
            r = subprocess.run(["ip", "netns", "exec", ns, cmd, "--test"], capture_output=True, text=True,
                               input=K.requote_fake_comments(fc.step_data["ruleset"]), timeout=60)
            assert r.returncode == 0, f"{case_id} step {step}: kernel refused: {r.stderr.strip()}"
        raw = next(fc.step_data["ruleset"] for fc in FLOWS if fc.case_id == "TestTracePacket")
        r = subprocess.run(["ip", "netns", "exec", ns, "iptables-restore", "--test"], capture_output=True,
                           text=True, input=raw, timeout=60)
        assert r.returncode != 0
        assert "line: 21" in r.stderr and "forwarding" in r.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
