"""The destination index of long chains changes nothing in a trace but its speed.

Each random long chain is traced twice, with the index and with it switched
off; the traces (every step, counts, verdicts, packets) must be identical.
"""
import random

import pytest

import kplab
from kplab.netfilter import engine

ADDRS = ["10.96.0.1", "10.96.0.10", "10.96.5.81", "10.244.1.3", "192.168.0.2", "198.51.100.10"]


def _rule(rng, chains):
    parts = []
    kind = rng.random()
    if kind < 0.7:
        parts.append(f"-d {rng.choice(ADDRS)}/32")
    elif kind < 0.75:
        parts.append(f"! -d {rng.choice(ADDRS)}/32")
    elif kind < 0.8:
        parts.append("-d 10.96.0.0/12")
    if rng.random() < 0.2:
        parts.append(f"-s {rng.choice(['10.244.1.7', '10.244.0.0/16', '192.168.0.3'])}")
    if rng.random() < 0.6:
        proto = rng.choice(["tcp", "udp"])
        parts.append(f"-p {proto} -m {proto} --dport {rng.choice([53, 80, 443])}")
    if rng.random() < 0.1:
        parts.append("-m statistic --mode nth --every 3 --packet 0")
    target = rng.choice(["ACCEPT", "DROP", "RETURN", "", "MARK --set-xmark 0x4000/0x4000"] + [c for c in chains])
    return " ".join(parts) + (f" -j {target}" if target else "")


def _ruleset(seed):
    rng = random.Random(seed)
    subs = ["SUB-A", "SUB-B"]
    lines = ["*filter", ":LONG - [0:0]"] + [f":{c} - [0:0]" for c in subs]
    lines.append("-A FORWARD -j LONG")
    lines.append("-A OUTPUT -j LONG")
    for _ in range(rng.randint(130, 400)):
        lines.append("-A LONG " + _rule(rng, subs))
    for c in subs:
        for _ in range(rng.randint(0, 150)):
            lines.append(f"-A {c} " + _rule(rng, []))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _traces(text, packets):
    node = kplab.standard_node(kplab.parse_rules(text))
    return [node.send_from(f, d, p, port).to_json() for f, d, p, port in packets]


@pytest.mark.parametrize("seed", range(40))
def test_the_index_changes_nothing_but_speed(seed, monkeypatch):
    text = _ruleset(seed)
    rng = random.Random(seed)
    packets = [(rng.choice(["client", "node", "external"]), rng.choice(ADDRS + ["10.96.9.9"]),
                rng.choice(["tcp", "udp"]), rng.choice([53, 80, 443])) for _ in range(12)]
    fast = _traces(text, packets)
    monkeypatch.setattr(engine, "INDEX_MIN", 10 ** 9)
    slow = _traces(text, packets)
    assert fast == slow


def test_a_long_chain_is_indexed_and_still_counts_every_rule():
    services = "\n".join(f"-A KUBE-SERVICES -d 10.96.{i // 250}.{i % 250 + 1}/32 -p tcp -m tcp --dport 80 -j ACCEPT"
                         for i in range(1000))
    text = f"*filter\n:KUBE-SERVICES - [0:0]\n-A FORWARD -j KUBE-SERVICES\n{services}\nCOMMIT\n"
    node = kplab.standard_node(text)
    trace = node.send_from("client", "10.96.3.250", "tcp", 80)
    assert trace.evaluated == 1 + 1000
    assert [s.index for s in trace.matched_rules] == [1, 1000]
    skipped = [s for s in trace.steps if s.kind == "skipped"]
    assert len(skipped) == 1 and skipped[0].count == 996 and skipped[0].index == 4


def _median_trace_time(n_services, repeats=15):
    import statistics
    import time
    services = "\n".join(f"-A KUBE-SERVICES -d 10.{96 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}/32 -p tcp "
                         f"-m tcp --dport 80 -j ACCEPT" for i in range(n_services))
    text = f"*filter\n:KUBE-SERVICES - [0:0]\n-A FORWARD -j KUBE-SERVICES\n{services}\nCOMMIT\n"
    node = kplab.standard_node(kplab.parse_rules(text))
    last = f"10.{96 + (n_services - 1) // 62500}.{(n_services - 1) // 250 % 250}.{(n_services - 1) % 250 + 1}"
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        trace = node.send_from("client", last, "tcp", 80, sport=41000 + k)
        times.append(time.perf_counter() - t0)
    assert trace.evaluated == n_services + 1
    return statistics.median(times)


def test_trace_cost_does_not_grow_with_the_services_before_it():
    """Issue 7: a trace to the last of 20,000 Services costs at most 3x one to the last of 10 (a ratio,
    never an absolute time), while it still counts every rule the kernel evaluates."""
    small = _median_trace_time(10)
    large = _median_trace_time(20_000)
    assert large / small <= 3, f"trace at 20,000 Services is {large / small:.1f}x the trace at 10"
