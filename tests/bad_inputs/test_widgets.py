"""Every field of every widget, given bad values: an inline message, nothing raised, the last good
result kept. tests/widgets covers the usual mistakes field by field; this adds what they leave out:
values of the wrong type, digits int() refuses ("²"), other scripts' digits, huge and binary text,
and the catalogue's worst files pasted into the rule editor.

Values a control cannot hold from the browser (a string in an IntSlider) are not typed by anyone:
ipywidgets refuses them itself, so they are not tried here.
"""
from __future__ import annotations

import math

import pytest

from tests._require import require
from tests.widgets.conftest import DATA, MISSING, REASON

#: Bad values for a text field or a number argument (each widget's methods take any of them).
JUNK = ["", " ", "²", "١٢", "8e1", "0x50", "+-1", "\x00", "\u202e80", "x" * 100_000, 80.5, math.nan, math.inf,
        -math.inf, True, [], {}, b"80", 10 ** 100, -(10 ** 100), object()]


@pytest.fixture(autouse=True)
def _libraries():
    require(not MISSING, REASON)


@pytest.fixture
def kw():
    import kplab.widgets
    return kplab.widgets


@pytest.fixture
def seed_rules():
    return (DATA / "rules" / "seed-node.rules").read_text()


@pytest.fixture
def node(seed_rules):
    import kplab
    return kplab.standard_node(kplab.parse_rules(seed_rules))


def alert(html: str) -> bool:
    """An inline error: the ✗ mark, announced to screen readers."""
    return "✗" in html and 'role="alert"' in html


# ------------------------------------------------------------------ PacketBuilder

@pytest.mark.parametrize("field", ["destination", "port", "proto", "source"])
def test_packet_builder_fields_take_any_junk(kw, node, field):
    b = kw.PacketBuilder(node)
    good = b.send(source="client", destination="10.96.5.81", port="80", proto="tcp")
    shown = dict(b.outputs)
    extra = ["10.96.5.81:²", "10.96.5.81:١٢", "٣.٣.٣.٣", "10.96.5.81:80:80", "[::1]:80", "\ufeff10.96.5.81"]
    for value in [v for v in JUNK if not (field == "port" and v in ("", " "))] + (   # no port: the default
            extra if field == "destination" else []):
        assert b.send(**{field: value}) is None, (field, value)
        assert b.messages[field], (field, value)
        assert alert(b.fields[field].msg.value)
        assert b.outputs == shown and b.result is good
        b.set(source="client", destination="10.96.5.81", port="80", proto="tcp")
    assert b.send() is not None and not any(b.messages.values())


def test_packet_builder_typed_controls_take_junk(kw, node):
    """What a learner can type in the browser: any text in the two text boxes."""
    b = kw.PacketBuilder(node)
    for value in ["²", "١٢", "\x00", "x" * 100_000, "10.96.5.81:²"]:
        b.port.value = value if ":" not in value else ""
        b.destination.value = value
        b.send_button.click()
        assert b.result is None
        assert any(b.messages.values())


# ------------------------------------------------------------------ TraceStepper

def test_trace_stepper_steps_take_any_junk(kw, node):
    st = kw.TraceStepper(node.send_from("client", "10.96.5.81", "tcp", 80))
    st.go(3)
    shown = dict(st.outputs)
    for value in JUNK:
        assert st.go(value) is False, value
        assert st.messages["step"] and alert(st.step_field.msg.value)
        assert st.outputs == shown and st.position == 2
    assert st.go("4") and st.messages["step"] == ""          # a number typed as text is fine


# ------------------------------------------------------------------ ServiceLab

@pytest.fixture
def lab(kw):
    from kplab.kube.cluster import Cluster
    return kw.ServiceLab(Cluster.load(str(DATA / "clusters" / "seed.yaml")).scale("backend", 3))


@pytest.mark.parametrize("method, field", [("set_replicas", "replicas"), ("send", "count")])
def test_service_lab_numbers_take_any_junk(lab, method, field):
    lab.send(3)
    shown = dict(lab.outputs)
    box = {"replicas": lab.replicas_field, "count": lab.count_field}[field]
    for value in JUNK:
        assert getattr(lab, method)(value) is False, value
        assert lab.messages[field] and alert(box.msg.value)
        assert lab.outputs == shown


def test_service_lab_pods_take_any_junk(lab):
    lab.send(3)
    shown = dict(lab.outputs)
    pod = lab.cluster.pods("backend")[0].name
    for value in JUNK:
        assert lab.set_pod_state(value, "ready") is False, value
        assert lab.set_pod_state(pod, value) is False, value
        assert lab.delete_pod(value) is False, value
        assert lab.messages["pods"] and alert(lab.pods_msg.msg.value)
        assert lab.outputs == shown


# ------------------------------------------------------------------ RuleEditor

WORST = {
    "bom": "\ufeff*filter\nCOMMIT\n",
    "crlf": "*filter\r\n-A INPUT -j ACCEPT\r\nCOMMIT\r\n",
    "binary": bytes(range(256)).decode("latin-1"),
    "ten-megabyte-line": "*filter\n-A INPUT -m comment --comment " + "x" * 10 * 2**20 + " -j ACCEPT\nCOMMIT\n",
    "blank-line": "*filter\n  \nCOMMIT\n",
    "jump-loop": "*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\nCOMMIT\n",
    "control-characters": "*filter\n-A INPUT -j \x1b[31mACCEPT\nCOMMIT\n",
}


@pytest.mark.parametrize("name", sorted(WORST))
def test_rule_editor_shows_the_worst_files_inline(kw, name):
    ed = kw.RuleEditor("*filter\n-A FORWARD -p udp -j DROP\nCOMMIT\n")
    before = ed.ruleset
    assert ed.load(WORST[name]) is False
    assert ed.error and "\n" not in ed.error and len(ed.error) < 600
    assert "\x1b" not in ed.error_html.value                 # quoted input cannot colour the page
    assert alert(ed.error_html.value) and ed.ruleset is before


@pytest.mark.parametrize("value", [42, 4.2, b"*filter\nCOMMIT\n", [], object()], ids=type)
def test_rule_editor_takes_only_text(kw, value):
    ed = kw.RuleEditor()
    assert ed.load(value) is False and "must be text" in ed.error


# ------------------------------------------------------------------ ExercisePanel

@pytest.fixture(params=["predict", "write"])
def panel(request, kw):
    from kplab.exercises import Exercise, Probe, choice, rules
    if request.param == "predict":
        ex = Exercise(id="99.1", kind="predict", title="t", prompt="DROP or ACCEPT?", checker=choice("DROP"),
                      hints=("h1",), answer="DROP", explanation="because")
    else:
        ex = Exercise(id="99.2", kind="write", title="w", prompt="drop udp",
                      checker=rules([Probe("udp", "client", "10.244.1.3", "udp", 53, verdict="DROP",
                                           wrong="UDP still passes.")]),
                      hints=("a",), answer="-A FORWARD -p udp -j DROP", explanation="FORWARD sees it",
                      starter="-A FORWARD -p tcp -j DROP")
    return kw.ExercisePanel(ex)


def test_exercise_panel_answer_takes_any_junk(panel):
    for value in JUNK + [bytes(range(256)).decode("latin-1"), "x" * 10 * 2**20, "\ufeffDROP"]:
        fb = panel.check(value)
        assert fb is None or fb.correct is not True, value
        assert panel.out.value                                   # something is said, inline
        if not isinstance(value, str):
            assert alert(panel.out.value)


def test_exercise_panel_buttons_pressed_too_often(panel):
    for _ in range(5):
        panel.hint_button.click()
    for _ in range(4):
        panel.solution_button.click()
    assert panel.solution_button.disabled and panel.revealed
