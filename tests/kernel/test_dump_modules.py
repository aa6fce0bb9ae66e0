"""Lessons on the modules real dumps carry that a fixed packet list cannot show
(the differential lessons in kplab/kernelcheck/lessons.py cover the rest):
`-m limit` refilling with time, and the hooks `-m owner` / `-m physdev` are
checked in when a user chain holds them."""
import time

import pytest

from kplab.errors import KplabError
from kplab.netfilter.iptables_save import parse
from kplab.node import Node

LIMIT_RULES = """*filter
:FORWARD DROP [0:0]
-A FORWARD -p udp -m limit --limit 5/sec --limit-burst 2 -j ACCEPT
COMMIT
"""

#: Seconds to wait before each packet: the bucket (200 ms a packet, 2 packets deep) is
#: full, spent, partly refilled, ... with 30 ms or more between each send and a boundary.
SCHEDULE = (0, 0, 0, 0.3, 0, 0.16, 0.06, 0.24)


def test_lesson_limit_refills_at_the_rate(lab):
    """The kernel's nft limit and kplab's bucket, fed the same send times, agree packet by
    packet: burst first, then one packet per 200 ms, a refused packet taking nothing.
    Sent without reading counters or conntrack, so that every send takes the same time
    from the timestamp to the packet."""
    ok, msg = lab.load(LIMIT_RULES)
    assert ok, msg
    node = Node(parse(LIMIT_RULES), lab.topology)
    kernel, ours, times = [], [], []
    for k, wait in enumerate(SCHEDULE):
        time.sleep(wait)
        pkt = node.packet("client", "10.244.1.3", "udp", 53, sport=42000 + k)
        now = time.monotonic()
        if times:
            node.advance(now - times[-1])
        times.append(now)
        kernel.append(lab.send("client", pkt, counters=False, conntrack=False).verdict)
        ours.append(node.send(pkt, "client").verdict)
    assert ours == kernel, f"sent at {[round(t - times[0], 3) for t in times]} s"
    assert kernel[:3] == ["ACCEPT", "ACCEPT", "DROP"] and "ACCEPT" in kernel[3:]


HOOK_CASES = [
    # owner: its hooks count through jumps (OUTPUT and POSTROUTING only)
    ("*filter\n:X - [0:0]\n-A INPUT -j X\n-A X -m owner --uid-owner 0\nCOMMIT\n", False),
    ("*filter\n:X - [0:0]\n-A INPUT -g X\n-A X -m owner --socket-exists\nCOMMIT\n", False),
    ("*filter\n:X - [0:0]\n-A OUTPUT -j X\n-A FORWARD -j X\n-A X -m owner --uid-owner 0\nCOMMIT\n", False),
    ("*filter\n:X - [0:0]\n-A OUTPUT -j X\n-A X -m owner --uid-owner 0\nCOMMIT\n", True),
    ("*filter\n:X - [0:0]\n-A X -m owner --uid-owner 0\nCOMMIT\n", True),
    ("*nat\n:X - [0:0]\n-A POSTROUTING -j X\n-A X -m owner ! --socket-exists -j MASQUERADE\nCOMMIT\n", True),
    # physdev: the OUTPUT check sees only the built-in chain itself
    ("*filter\n-A OUTPUT -m physdev --physdev-out eth0\nCOMMIT\n", False),
    ("*filter\n:X - [0:0]\n-A OUTPUT -j X\n-A X -m physdev --physdev-out eth0\nCOMMIT\n", True),
    ("*filter\n-A OUTPUT -m physdev --physdev-is-out --physdev-is-bridged\nCOMMIT\n", True),
]


@pytest.mark.parametrize("rules,loads", HOOK_CASES, ids=[f"case{k}" for k in range(len(HOOK_CASES))])
def test_lesson_owner_and_physdev_hooks_through_user_chains(lab, rules, loads):
    ok, msg = lab.load(rules)
    assert ok == loads, msg
    try:
        parse(rules)
        kplab_ok = True
    except KplabError:
        kplab_ok = False
    assert kplab_ok == ok
