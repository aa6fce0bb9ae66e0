"""Notebook 10's checkers beyond the generic tests: the answer forms they accept, and the
right answers they compute from the sample dump."""
import pytest

from kplab.exercises import nb10


def test_the_local_share_comes_from_the_dump():
    assert nb10.local_connections() == pytest.approx(600, abs=1e-6)


@pytest.mark.parametrize("answer", [
    {"from": "laptop", "dst": "10.10.0.12", "dport": 30080},                  # proto defaults to tcp
    {"from_": "laptop", "dst": "10.10.0.12", "proto": "TCP", "dport": "30080"},
])
def test_nodeport_packet_forms(answer):
    assert nb10.reach_the_nodeport.check(answer).correct is True


def test_nodeport_wrong_protocol_and_bad_port():
    fb = nb10.reach_the_nodeport.check({"from": "laptop", "dst": "10.10.0.12", "proto": "udp", "dport": 30080})
    assert fb.correct is False and "tcp" in str(fb)
    fb = nb10.reach_the_nodeport.check({"from": "laptop", "dst": "10.10.0.12", "dport": 70000})
    assert fb.correct is False and "port number" in str(fb)
    fb = nb10.reach_the_nodeport.check({"from": "laptop", "dst": "nowhere", "dport": 30080})
    assert fb.correct is False and "IP address" in str(fb)


@pytest.mark.parametrize("answer", ["ADMIN-BLOCKLIST 2", "filter ADMIN-BLOCKLIST #2", "admin-blocklist rule 2",
                                    ("ADMIN-BLOCKLIST", 2), ["filter", "ADMIN-BLOCKLIST", 2]])
def test_drop_answer_forms(answer):
    assert nb10.find_the_drop.check(answer).correct is True


def test_drop_answer_in_the_wrong_table_or_without_a_number():
    assert "not nat" in str(nb10.find_the_drop.check("nat ADMIN-BLOCKLIST 2"))
    assert "rule number" in str(nb10.find_the_drop.check("ADMIN-BLOCKLIST"))
    assert "never matched" in str(nb10.find_the_drop.check("KUBE-FORWARD 2"))
