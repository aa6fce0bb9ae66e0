"""Notebook 5's exercise helpers: the simulator computes the predictions' answers."""
import kplab
from kplab.exercises import nb05


def test_only_the_first_packet_walks_nat():
    node = kplab.standard_node(nb05.PORT_FORWARD)
    first = node.send_from("external", nb05.NODE, "tcp", 80)
    node.reply(first)
    second = node.send(kplab.Packet.tcp("198.51.100.10", nb05.NODE, 80, flags=("ACK",)), "external")
    assert nb05.nat_rules_walked(first) >= 1 and first.dnat_to == "10.244.1.4:8080"
    assert nb05.nat_rules_walked(second) == 0 and second.dnat_to == "10.244.1.4:8080"


def test_predictions_come_from_the_simulator():
    assert nb05._second_packet_walks_nat() == "no"
    assert nb05._idle_connection_after_reload() == "backend1"


def test_the_idle_answer_depends_on_the_timeout(monkeypatch):
    # less than five days of silence: the entry is still there and keeps the old DNAT
    monkeypatch.setattr(nb05, "IDLE_DAYS", 4)
    assert nb05._idle_connection_after_reload() == "backend2"


def test_the_rules_of_the_notebook_load_and_forward():
    for text, pod in ((nb05.PORT_FORWARD, "backend2"), (nb05.PORT_FORWARD_MOVED, "backend1")):
        assert kplab.trace(text, "external", nb05.NODE, "tcp", 80).delivered_to == pod
    fixed = kplab.standard_node(nb05.MASQ_FIXED).send_from("client", "198.51.100.10", "tcp", 443)
    broken = kplab.standard_node(nb05.MASQ_BROKEN).send_from("client", "198.51.100.10", "tcp", 443)
    assert fixed.masquerade and not broken.masquerade
