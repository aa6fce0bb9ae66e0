"""`conntrack -L` text: what kplab prints is what conntrack-tools prints, and
kplab reads it back (so a practitioner can start from a real node's flows)."""
import kplab
from kplab.netfilter.conntrack import parse_conntrack

REAL = """\
udp      17 29 src=127.0.0.1 dst=127.0.0.1 sport=40000 dport=9999 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=9999 dport=40000 mark=0 use=1
tcp      6 431999 ESTABLISHED src=10.244.1.7 dst=10.96.5.81 sport=40000 dport=80 src=10.244.1.3 dst=10.244.1.7 sport=8080 dport=40000 [ASSURED] mark=0 use=1
icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=7 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=7 mark=0 use=1"""


def test_round_trip_of_conntrack_tools_output():
    # Lines as conntrack v1.4.7 printed them in a namespace of this machine.
    assert parse_conntrack(REAL).text(0) == REAL


def test_proc_format_is_read_too():
    proc = "ipv4     2 " + REAL.splitlines()[1].replace("mark=0 use=1", "mark=0 zone=0 use=2")
    t = parse_conntrack(proc)
    (e,) = t.entries.values()
    assert e.dnat and not e.snat and e.tcp_state == "ESTABLISHED"


def test_loaded_connection_keeps_its_backend():
    """A packet of a flow that conntrack already knows is translated by the
    entry, not by the rules (here there are no rules at all)."""
    node = kplab.standard_node(kplab.parse_rules("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.9 -j DNAT --to-destination 10.244.1.4\nCOMMIT\n"))
    node.load_conntrack(REAL.splitlines()[1])
    t = node.send(kplab.Packet.tcp("10.244.1.7", "10.96.5.81", 80, flags=("ACK",)), "client")
    assert t.final.dst == "10.244.1.3" and t.final.dport == 8080
    assert not [s for s in t.steps if s.kind == "rule" and s.table == "nat"]


def test_bad_line_is_located():
    import pytest
    with pytest.raises(kplab.ParseError) as e:
        parse_conntrack("tcp 6 x", source="ct.txt")
    assert e.value.line == 1 and str(e.value).startswith("ct.txt:1:")
