"""The kernel harness itself: one packet in, the kernel's verdict, counters, NAT and delivery out.

These check the harness against facts about the kernel that do not depend on kplab's
simulator (tiny rulesets whose outcome is known), so that a later kplab-vs-kernel
mismatch can be blamed on kplab and not on the harness.
"""
import os
import subprocess
import time
from collections import Counter

import pytest

from kplab import Packet, Topology
from kplab.kernelcheck import Lab, LabError, lab_namespaces
from kplab.kernelcheck.harness import build_packet, parse_packet

pytestmark = pytest.mark.kernel

CLIENT, BACKEND1, BACKEND2 = "10.244.1.7", "10.244.1.3", "10.244.1.4"
POD_GW, NODE_IP = "10.244.1.1", "192.168.0.2"
REMOTE1, EXTERNAL = "10.244.2.5", "198.51.100.10"
SERVICE = "10.96.5.81"

CLIENT6, BACKEND1_6, REMOTE1_6, POD_GW6 = "fd00:10:244:1::7", "fd00:10:244:1::3", "fd00:10:244:2::5", "fd00:10:244:1::1"

EVERY_CHAIN = """*raw
-A PREROUTING
-A OUTPUT
COMMIT
*mangle
-A PREROUTING
-A INPUT
-A FORWARD
-A OUTPUT
-A POSTROUTING
COMMIT
*nat
-A PREROUTING
-A INPUT
-A OUTPUT
-A POSTROUTING
-A OUTPUT -d 203.0.113.1/32 -j DNAT --to-destination 203.0.113.2
COMMIT
*filter
-A INPUT
-A FORWARD
-A OUTPUT
COMMIT
"""


def load(lab, text, ipv6=None):
    ok, msg = lab.load(text, ipv6)
    assert ok, msg


# --------------------------------------------------------------------------
# packets on the wire (no kernel needed, but kept with the harness they serve)

def test_built_packets_parse_back():
    for p in (Packet.tcp(CLIENT, SERVICE, 80, sport=1234), Packet.udp(CLIENT, REMOTE1, 53),
              Packet.icmp(CLIENT, NODE_IP, id=7), Packet.tcp(CLIENT6, REMOTE1_6, 443),
              Packet.icmp(CLIENT6, REMOTE1_6)):
        seen = parse_packet(build_packet(p, 0xABCDEF01))
        assert seen.packet().headers() == p.headers()
        assert seen.has_tag(0xABCDEF01) and not seen.has_tag(0xABCDEF02)


# --------------------------------------------------------------------------
# the brief's sanity cases

def test_forwarded_udp_is_delivered_with_the_same_headers(lab):
    load(lab, "*filter\n-A FORWARD -p udp -j ACCEPT\nCOMMIT\n")
    obs = lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
    assert obs.verdict == "ACCEPT", obs.summary()
    assert obs.delivered == {"to": "remote1", "src": CLIENT, "sport": 40000, "dst": REMOTE1, "dport": 53}
    assert obs.rule_hits == Counter({("filter", "FORWARD", 1): 1})
    assert not obs.policy_hits
    assert obs.dnat_to is None and obs.snat_to is None and not obs.masquerade
    assert obs.icmp_error is None and obs.rst is None
    # no loaded rule needs conntrack, so the namespace tracks nothing (netfilter.md)
    assert obs.conntrack is None


def test_conntrack_runs_once_a_rule_needs_it(lab):
    load(lab, "*filter\n-A FORWARD -m conntrack --ctstate NEW -p udp -j ACCEPT\nCOMMIT\n")
    obs = lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
    assert obs.rule_hits == Counter({("filter", "FORWARD", 1): 1})
    assert obs.ct_original == {"src": CLIENT, "dst": REMOTE1, "sport": 40000, "dport": 53}
    assert obs.ct_reply == {"src": REMOTE1, "dst": CLIENT, "sport": 53, "dport": 40000}
    assert "[UNREPLIED]" in obs.conntrack


def test_forward_drop_gives_drop_and_counts_one(lab):
    load(lab, "*filter\n-A FORWARD -p udp --dport 53 -j ACCEPT\n-A FORWARD -p udp -j DROP\nCOMMIT\n")
    obs = lab.send("client", Packet.udp(CLIENT, REMOTE1, 9))
    assert obs.verdict == "DROP", obs.summary()
    assert obs.delivered is None and obs.final is None
    assert obs.rule_hits == Counter({("filter", "FORWARD", 2): 1})
    assert obs.rule_texts[("filter", "FORWARD", 2)] == "-A FORWARD -p udp -j DROP"
    assert obs.conntrack is None                      # a dropped packet's entry is never confirmed


def test_policy_drop_counts_on_the_policy(lab):
    load(lab, "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n")
    obs = lab.send("client", Packet.tcp(CLIENT, BACKEND1, 80))
    assert obs.verdict == "DROP"
    assert not obs.rule_hits
    assert obs.policy_hits == Counter({("filter", "FORWARD"): 1})


def test_reject_sends_port_unreachable_back_to_the_client(lab):
    load(lab, "*filter\n-A FORWARD -p udp -j REJECT\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n")
    obs = lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
    assert obs.verdict == "REJECT", obs.summary()
    assert obs.icmp_error["type"] == 3 and obs.icmp_error["code"] == 3       # port unreachable
    assert obs.icmp_error["at"] == "client" and obs.icmp_error["dst"] == CLIENT
    assert obs.rule_hits[("filter", "FORWARD", 1)] == 1
    obs = lab.send("client", Packet.tcp(CLIENT, REMOTE1, 80))
    assert obs.verdict == "REJECT" and obs.icmp_error is None
    assert obs.rst == {"src": REMOTE1, "sport": 80, "dst": CLIENT, "dport": 40000, "at": "client"}


def test_reject_in_input_answers_too(lab):
    load(lab, "*filter\n-A INPUT -p udp -j REJECT\nCOMMIT\n")
    obs = lab.send("client", Packet.udp(CLIENT, NODE_IP, 53))
    assert obs.verdict == "REJECT", obs.summary()
    assert (obs.icmp_error["type"], obs.icmp_error["code"], obs.icmp_error["src"]) == (3, 3, NODE_IP)


def test_dnat_to_backend1_is_delivered_there_and_conntrack_shows_it(lab):
    load(lab, f"*nat\n-A PREROUTING -d {SERVICE}/32 -p tcp --dport 80 -j DNAT --to-destination {BACKEND1}:8080\n"
              "COMMIT\n")
    obs = lab.send("client", Packet.tcp(CLIENT, SERVICE, 80))
    assert obs.verdict == "ACCEPT", obs.summary()
    assert obs.delivered == {"to": "backend1", "src": CLIENT, "sport": 40000, "dst": BACKEND1, "dport": 8080}
    assert obs.dnat_to == f"{BACKEND1}:8080" and obs.snat_to is None
    assert obs.rule_hits == Counter({("nat", "PREROUTING", 1): 1})
    assert obs.ct_original == {"src": CLIENT, "dst": SERVICE, "sport": 40000, "dport": 80}
    assert obs.ct_reply == {"src": BACKEND1, "dst": CLIENT, "sport": 8080, "dport": 40000}
    assert obs.conntrack.startswith("tcp 6 ") and "SYN_SENT" in obs.conntrack
    # the backend's SYN/ACK comes back to the client from the Service address
    reply = lab.send_reply(obs)
    assert reply.direction == "REPLY" and reply.verdict == "ACCEPT", reply.summary()
    assert reply.delivered == {"to": "client", "src": SERVICE, "sport": 80, "dst": CLIENT, "dport": 40000}
    assert reply.final.tcp_flags == frozenset({"SYN", "ACK"})
    assert not reply.rule_hits                       # replies never walk the nat table


def test_later_packets_of_a_connection_keep_its_translation(lab):
    load(lab, f"""*nat
-A PREROUTING -d {SERVICE}/32 -p tcp --dport 80 -j DNAT --to-destination {BACKEND1}:8080
COMMIT
*filter
-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -j DROP
COMMIT
""")
    syn = lab.send("client", Packet.tcp(CLIENT, SERVICE, 80))
    assert syn.rule_hits == Counter({("nat", "PREROUTING", 1): 1, ("filter", "FORWARD", 2): 1})
    synack = lab.send_reply(syn)
    assert synack.rule_hits == Counter({("filter", "FORWARD", 1): 1})
    ack = lab.send("client", Packet.tcp(CLIENT, SERVICE, 80, flags=("ACK",)), flush=False)
    assert ack.delivered["dst"] == BACKEND1 and ack.delivered["dport"] == 8080
    assert ack.rule_hits == Counter({("filter", "FORWARD", 1): 1})      # no nat walk, ESTABLISHED
    assert "ESTABLISHED" in ack.conntrack


def test_node_originated_packet_goes_through_output(lab):
    load(lab, "*filter\n-A INPUT\n-A FORWARD\n-A OUTPUT -p udp -j ACCEPT\nCOMMIT\n")
    obs = lab.send("node", Packet.udp(NODE_IP, REMOTE1, 53))
    assert obs.verdict == "ACCEPT", obs.summary()
    assert obs.delivered == {"to": "remote1", "src": NODE_IP, "sport": 40000, "dst": REMOTE1, "dport": 53}
    assert obs.rule_hits == Counter({("filter", "OUTPUT", 1): 1})


def test_node_output_drop_is_a_drop(lab):
    load(lab, "*filter\n-A OUTPUT -p udp -j DROP\nCOMMIT\n")
    obs = lab.send("node", Packet.udp(NODE_IP, REMOTE1, 53))
    assert obs.verdict == "DROP"
    assert obs.rule_hits == Counter({("filter", "OUTPUT", 1): 1})
    assert any("EPERM" in n for n in obs.notes)


def test_local_in_reaches_the_node_and_the_node_stays_quiet(lab):
    load(lab, "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -p udp -j ACCEPT\n-A INPUT -p icmp -j ACCEPT\n"
              "-A OUTPUT\nCOMMIT\n")
    for pkt, index in ((Packet.tcp(CLIENT, NODE_IP, 22), 1), (Packet.udp(CLIENT, NODE_IP, 53), 2),
                       (Packet.icmp(CLIENT, POD_GW), 3)):
        obs = lab.send("client", pkt)
        assert obs.verdict == "ACCEPT", obs.summary()
        assert obs.delivered["to"] == "node" and obs.delivered["dst"] == pkt.dst
        # the node's own stack sent no RST, port unreachable or echo reply (no OUTPUT hit)
        assert obs.rule_hits == Counter({("filter", "INPUT", index): 1}), obs.summary()


def test_hairpin_is_masqueraded_to_the_pod_gateway(lab):
    load(lab, f"""*nat
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -d {SERVICE}/32 -p tcp --dport 80 -j KUBE-MARK-MASQ
-A PREROUTING -d {SERVICE}/32 -p tcp --dport 80 -j DNAT --to-destination {CLIENT}:8080
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
COMMIT
""")
    obs = lab.send("client", Packet.tcp(CLIENT, SERVICE, 80))
    assert obs.verdict == "ACCEPT", obs.summary()
    assert obs.delivered == {"to": "client", "src": POD_GW, "sport": 40000, "dst": CLIENT, "dport": 8080}
    assert obs.dnat_to == f"{CLIENT}:8080" and obs.snat_to == f"{POD_GW}:40000" and obs.masquerade
    assert obs.rule_hits == Counter({("nat", "PREROUTING", 1): 1, ("nat", "PREROUTING", 2): 1,
                                     ("nat", "KUBE-MARK-MASQ", 1): 1, ("nat", "POSTROUTING", 1): 1,
                                     ("nat", "KUBE-POSTROUTING", 1): 1})


def test_ipv6_forwarded_packet(lab6):
    load(lab6, "*filter\n-A FORWARD -p tcp --dport 443 -j ACCEPT\n-A FORWARD -j REJECT\nCOMMIT\n")
    obs = lab6.send("client", Packet.tcp(CLIENT6, REMOTE1_6, 443))
    assert obs.verdict == "ACCEPT", obs.summary()
    assert obs.delivered == {"to": "remote1", "src": CLIENT6, "sport": 40000, "dst": REMOTE1_6, "dport": 443}
    assert obs.rule_hits == Counter({("filter", "FORWARD", 1): 1})
    obs = lab6.send("client", Packet.udp(CLIENT6, REMOTE1_6, 53))
    assert obs.verdict == "REJECT"
    assert (obs.icmp_error["type"], obs.icmp_error["code"]) == (1, 4)       # ICMPv6 port unreachable


def test_ipv6_dnat_and_reply(lab6):
    load(lab6, f"*nat\n-A PREROUTING -d fd00:10:96::10/128 -p udp --dport 53 -j DNAT "
               f"--to-destination [{BACKEND1_6}]:5353\nCOMMIT\n")
    obs = lab6.send("client", Packet.udp(CLIENT6, "fd00:10:96::10", 53))
    assert obs.delivered == {"to": "backend1", "src": CLIENT6, "sport": 40000, "dst": BACKEND1_6, "dport": 5353}
    assert obs.dnat_to == f"[{BACKEND1_6}]:5353"
    reply = lab6.send_reply(obs)
    assert reply.delivered == {"to": "client", "src": "fd00:10:96::10", "sport": 53, "dst": CLIENT6,
                               "dport": 40000}


# --------------------------------------------------------------------------
# the harness's own guarantees

def test_no_background_packet_reaches_a_counter(lab, lab6):
    """Only the injected packet moves counters: no ARP/ND/MLD/RS noise through the chains."""
    load(lab, EVERY_CHAIN)
    load(lab6, EVERY_CHAIN.replace("203.0.113.1/32", "2001:db8:1::1/128").replace("203.0.113.2", "2001:db8:1::2"))
    lab.send("client", Packet.udp(CLIENT, BACKEND1, 53))
    lab6.send("client", Packet.udp(CLIENT6, BACKEND1_6, 53))
    before4, before6 = lab.counters(), lab6.counters()
    time.sleep(0.3)
    assert lab.counters().diff(before4) == (Counter(), Counter())
    assert lab6.counters().diff(before6) == (Counter(), Counter())


def test_each_send_is_a_new_connection(lab):
    load(lab, f"*nat\n-A PREROUTING -d {SERVICE}/32 -j DNAT --to-destination {BACKEND2}\nCOMMIT\n")
    for _ in range(3):
        obs = lab.send("client", Packet.udp(CLIENT, SERVICE, 53))
        assert obs.rule_hits == Counter({("nat", "PREROUTING", 1): 1})
        assert obs.delivered["to"] == "backend2"
    assert len(lab.conntrack_lines()) == 1


def test_send_many_spreads_over_statistic_rules(lab):
    load(lab, f"""*nat
-A PREROUTING -d {SERVICE}/32 -m statistic --mode random --probability 0.5 -j DNAT --to-destination {BACKEND1}
-A PREROUTING -d {SERVICE}/32 -j DNAT --to-destination {BACKEND2}
COMMIT
""")
    results = lab.send_many("client", Packet.udp(CLIENT, SERVICE, 53), 400)
    assert None not in results
    assert len({r["sport"] for r in results}) == 400            # 400 connections
    counts = Counter(r["to"] for r in results)
    assert set(counts) == {"backend1", "backend2"}
    assert 120 < counts["backend1"] < 280                         # p(outside) < 1e-20
    assert all(r["dst"] == {"backend1": BACKEND1, "backend2": BACKEND2}[r["to"]] for r in results)
    hits = lab.counters().rules
    assert hits[("nat", "PREROUTING", 1)][0] == counts["backend1"]


def test_send_many_reports_drops_as_none(lab):
    load(lab, "*filter\n-A FORWARD -p udp --sport 40001 -j DROP\nCOMMIT\n")
    results = lab.send_many("client", Packet.udp(CLIENT, REMOTE1, 53), 3)
    assert results[0]["to"] == "remote1" and results[1] is None and results[2]["sport"] == 40002


def test_load_refusal_is_reported(lab):
    ok, msg = lab.load("*nat\n-A INPUT -j DNAT --to-destination 10.0.0.1\nCOMMIT\n")
    assert not ok and msg


def test_load_replaces_every_table(lab):
    load(lab, "*nat\n-A PREROUTING -j ACCEPT\nCOMMIT\n*filter\n:FORWARD DROP [0:0]\nCOMMIT\n")
    load(lab, "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n")
    assert lab.save() == ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                          "-A INPUT -j ACCEPT\nCOMMIT\n")


def test_save_shows_the_kernel_form(lab):
    load(lab, "*filter\n-A FORWARD -d 10.244.1.3 -p tcp --dport 80 -j ACCEPT\nCOMMIT\n")
    assert "-A FORWARD -d 10.244.1.3/32 -p tcp -m tcp --dport 80 -j ACCEPT\n" in lab.save()


def test_zero_counters(lab):
    load(lab, "*filter\n-A FORWARD\nCOMMIT\n")
    lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
    assert lab.counters().rules[("filter", "FORWARD", 1)][0] == 1
    lab.zero_counters()
    assert lab.counters().rules[("filter", "FORWARD", 1)][0] == 0
    lab.flush_conntrack()
    assert lab.conntrack_lines() == []


def test_counters_survive_commands_run_in_the_node(lab):
    load(lab, "*filter\n-A FORWARD\nCOMMIT\n")
    for _ in range(3):
        lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
    assert lab.run("node", ["iptables", "-Z"]).returncode == 0
    obs = lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
    assert obs.rule_hits == Counter({("filter", "FORWARD", 1): 1})


def test_lab_packet_picks_the_kernel_source(lab):
    assert lab.packet("client", SERVICE, "tcp", 80) == Packet.tcp(CLIENT, SERVICE, 80)
    assert lab.packet("node", BACKEND1, "udp", 53).src == POD_GW
    assert lab.packet("node", EXTERNAL, "udp", 53).src == NODE_IP
    assert lab.packet("remote1", CLIENT, "icmp").proto == "icmp"


def test_nfacct_counters_are_created(lab):
    import shutil
    if shutil.which("nfacct", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        pytest.skip("nfacct is not installed")
    load(lab, "*filter\n-A FORWARD -m nfacct --nfacct-name kplab_fwd\nCOMMIT\n")
    obs = lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
    assert obs.rule_hits == Counter({("filter", "FORWARD", 1): 1})


def test_refuses_unknown_namespaces_and_names(lab):
    with pytest.raises(LabError):
        lab.run("nowhere", ["true"])
    from kplab.errors import TopologyError
    with pytest.raises(TopologyError):
        lab.send("nobody", Packet.udp(CLIENT, REMOTE1, 53))


def test_no_namespace_is_left_behind(kernel):
    lab = Lab()
    with pytest.raises(RuntimeError, match="boom"):
        with lab:
            names = list(lab.names.values())
            assert set(names) <= set(lab_namespaces(os.getpid()))
            lab.send("client", Packet.udp(CLIENT, REMOTE1, 53))
            raise RuntimeError("boom")
    assert not set(names) & set(lab_namespaces())
    with pytest.raises(LabError):
        lab.run("node", ["true"])


def test_stale_namespaces_of_dead_processes_are_swept(kernel):
    p = subprocess.Popen(["true"])
    p.wait()
    stale = f"kplab-{p.pid}-0-node"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with Lab():
            assert stale not in lab_namespaces()
    finally:
        if stale in lab_namespaces():
            subprocess.run(["ip", "netns", "del", stale])


def test_custom_topology(kernel):
    topo = Topology({"node": {"local_ips": ["10.0.0.50"]},
                     "pods": [{"name": "web", "ip": "10.244.1.20", "host_iface": "cali0web"},
                              {"name": "db", "ip": "10.244.1.30"}]})
    with Lab(topo) as lab:
        links = lab.run("node", ["ip", "-o", "link"]).stdout
        assert "cali0web" in links and "veth-db" in links
        obs = lab.send("web", Packet.tcp("10.244.1.20", "10.244.1.30", 5432))
        assert obs.delivered["to"] == "db"
        assert lab.send("web", Packet.udp("10.244.1.20", "10.0.0.50", 53)).delivered["to"] == "node"
        assert lab.send("external", Packet.tcp(EXTERNAL, "10.244.1.20", 80)).delivered["to"] == "web"
        assert lab.send("node", Packet.tcp(NODE_IP, EXTERNAL, 80)).delivered["to"] == "external"
