"""PacketBuilder: every field is checked inline; good packets are sent and shown."""
import pytest


@pytest.fixture
def node(seed_rules):
    import kplab
    return kplab.standard_node(kplab.parse_rules(seed_rules))


@pytest.fixture
def builder(kw, node):
    return kw.PacketBuilder(node)


def test_starts_quietly_with_the_client(builder):
    assert builder.source.value == "client"
    assert builder.messages == {"source": "", "destination": "", "proto": "", "port": ""}
    assert builder.outputs["summary"] == "nothing sent yet"


def test_send_through_the_controls(builder):
    seen = []
    builder.on_trace = seen.append
    builder.source.value = "client"
    builder.destination.value = "10.96.5.81"
    builder.proto.value = "tcp"
    builder.port.value = "80"
    builder.send_button.click()
    assert builder.result is not None and seen == [builder.result]
    assert builder.outputs["summary"].startswith("ACCEPT: delivered to backend1")
    assert "DNAT to 10.244.1.3:8080" in builder.outputs["summary"]
    assert "KUBE-SEP-" in builder.outputs["journey"]


@pytest.mark.parametrize("dest", ["backend", "default/backend", "default/backend:http", "backend:http",
                                  "10.96.5.81:80"])
def test_service_names_resolve_from_the_rules(builder, dest):
    trace = builder.send(source="client", destination=dest)
    assert trace is not None and trace.dnat_to == "10.244.1.3:8080"
    assert builder.messages["destination"] == ""


def test_each_send_is_a_new_connection(builder):
    a = builder.send(source="client", destination="backend")
    b = builder.send()
    assert a.packet.sport != b.packet.sport and b.dnat_to == "10.244.1.3:8080"


@pytest.mark.parametrize("values, field, words", [
    ({"destination": "10.0.0.300"}, "destination", "not an IP address"),
    ({"destination": "300.1.1.1:80"}, "destination", "not an IP address"),
    ({"destination": ""}, "destination", "enter a destination"),
    ({"destination": "nosuchservice"}, "destination", "no Service 'nosuchservice'"),
    ({"destination": "10.96.5.81:70000"}, "destination", "out of range"),
    ({"destination": "10.96.5.81:"}, "destination", "nothing after"),
    ({"destination": "bad name!"}, "destination", "neither an IP address nor a Service name"),
    ({"destination": "fe80::1"}, "destination", "IPv6"),
    ({"port": "70000"}, "port", "70000 is out of range (1-65535)"),
    ({"port": "0"}, "port", "out of range"),
    ({"port": "http"}, "port", "must be a number"),
    ({"port": "-1"}, "port", "must be a number"),
    ({"destination": "10.96.5.81:80", "port": "443"}, "port", "already says port 80"),
    ({"proto": "sctp"}, "proto", "not a protocol here"),
    ({"proto": 7}, "proto", "not a protocol here"),
    ({"source": "mars"}, "source", "unknown sender 'mars'"),
])
def test_invalid_fields_never_raise(builder, values, field, words):
    good = builder.send(source="client", destination="10.96.5.81", port="80", proto="tcp")
    shown = dict(builder.outputs)
    assert builder.send(**values) is None
    assert words in builder.messages[field]
    assert "✗" in builder.fields[field].msg.value
    assert builder.outputs == shown and builder.result is good        # the last good result stays
    assert "fix the fields" in builder.status.value


def test_control_edits_are_checked_as_typed(builder):
    builder.destination.value = "10.0.0.300"
    assert "not an IP address" in builder.messages["destination"]
    builder.port.value = "70000"
    assert "out of range" in builder.messages["port"]
    builder.send_button.click()
    assert builder.result is None
    builder.destination.value = "10.96.5.81"
    builder.port.value = "80"
    assert builder.messages == {"source": "", "destination": "", "proto": "", "port": ""}
    builder.send_button.click()
    assert builder.result is not None


def test_a_rejected_dropdown_value_stays_rejected_until_fixed(builder):
    assert builder.set(proto="sctp", destination="10.96.5.81") is False
    assert builder.send() is None and builder.messages["proto"]
    builder.proto.value = "udp"                          # the user picks a protocol
    assert builder.messages["proto"] == ""
    assert builder.send() is not None


def test_icmp_ignores_the_port(builder):
    t = builder.send(source="client", destination="10.244.1.3", proto="icmp", port="80")
    assert t is not None and t.packet.proto == "icmp"
    assert "icmp has no ports" in builder.fields["port"].message and builder.messages["port"] == ""


def test_callback_errors_are_shown_not_raised(kw, node):
    def boom(_):
        raise RuntimeError("callback bug")
    b = kw.PacketBuilder(node, on_trace=boom)
    assert b.send(source="client", destination="backend") is not None
    assert "callback bug" in b.status.value


def test_on_a_cluster_the_packet_crosses_nodes(kw, seed_cluster):
    c = seed_cluster.scale("backend", 3)
    b = kw.PacketBuilder(c)
    frontend = next(p.name for p in c.pods() if p.name.startswith("frontend"))
    assert frontend in b.source.options and "node-2" in b.source.options and "external" in b.source.options
    j = b.send(source=frontend, destination="backend")
    assert j is not None and j.delivered_to.startswith("backend-")
    assert "Service backend = 10.96.5.81:80" in b.fields["destination"].message
    assert b.outputs["summary"].startswith("ACCEPT")
    assert b.send(destination="nosuch") is None
    assert "default/backend" in b.messages["destination"]              # names the Services there are


def test_nodeport_from_outside(kw):
    from kplab.kube.cluster import Cluster
    from tests.widgets.conftest import DATA
    b = kw.PacketBuilder(Cluster.load(str(DATA / "clusters" / "nodeport.yaml")))
    j = b.send(source="external", destination="192.168.0.2:30080")
    assert j is not None and j.verdict == "ACCEPT"
    assert b.send(source="external", destination="10.96.0.1:443") is None   # a ClusterIP is not on the wire
    assert b.messages["destination"]


def test_static_fallback(builder):
    builder.send(source="client", destination="backend")
    bundle = builder._repr_mimebundle_()
    assert bundle["text/plain"].startswith("PacketBuilder (node): from client to backend")
    assert "ACCEPT: delivered to backend1" in bundle["text/html"]
