"""RuleEditor: load errors name their line; the last good rules stay in use."""
import pytest

DROP_UDP = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p udp -j DROP
COMMIT
"""


@pytest.fixture
def editor(kw):
    return kw.RuleEditor(DROP_UDP)


def test_loads_and_traces(editor):
    assert editor.error == "" and editor.ruleset.rule_count() == 1
    assert editor.outputs["rules"].startswith("loaded: 1 rules")
    t = editor.send(source="client", destination="10.244.1.3", proto="udp", port="53")
    assert t.verdict == "DROP"
    assert editor.stepper is not None and editor.stepper.n == len(t.steps)
    assert editor.builder.outputs["summary"].startswith("DROP")


def test_textarea_and_load_button(editor):
    editor.textarea.value = DROP_UDP.replace("udp", "tcp")
    editor.load_button.click()
    assert editor.error == ""
    assert editor.send(source="client", destination="10.244.1.3", proto="udp", port="53").verdict == "ACCEPT"
    assert editor.send(proto="tcp", port="80").verdict == "DROP"


@pytest.mark.parametrize("text, line, words", [
    ("*filter\n-A INPUT -p tcp --dport 70000 -j ACCEPT\nCOMMIT\n", 2, "70000"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NOWHERE\nCOMMIT\n", 3, "NOWHERE"),
    ("*filter\n-A INPUT -p tcp -j ACCEPT\n", None, ""),                       # no COMMIT
    ("*nosuchtable\nCOMMIT\n", 1, "nosuchtable"),
    ("-A INPUT -j ACCEPT\n", 1, ""),                                         # a rule outside a table
])
def test_errors_show_the_line_and_keep_the_old_rules(editor, text, line, words):
    old_ruleset, old_node = editor.ruleset, editor.node
    assert editor.load(text) is False
    assert editor.error and words in editor.error
    if line is not None:
        assert editor.error_line == line and f"line {line}" in editor.error
    assert "✗" in editor.error_html.value and "not loaded" in editor.status.value
    assert editor.ruleset is old_ruleset and editor.node is old_node
    # the packet form still runs the rules that loaded before
    assert editor.send(source="client", destination="10.244.1.3", proto="udp", port="53").verdict == "DROP"


def test_caret_under_the_bad_word(editor):
    editor.load("*filter\n-A INPUT -p tcp --dport 70000 -j ACCEPT\nCOMMIT\n")
    html = editor.error_html.value
    assert "-A INPUT -p tcp --dport 70000 -j ACCEPT" in html and "^" in html


def test_not_text(editor):
    assert editor.load(42) is False and "must be text" in editor.error


def test_empty_editor_accepts_everything(kw):
    ed = kw.RuleEditor()
    assert ed.error == "" and ed.ruleset.rule_count() == 0
    assert ed.send(source="client", destination="10.244.1.3", proto="udp", port="53").verdict == "ACCEPT"


def test_form_errors_never_raise(editor):
    assert editor.send(source="client", destination="10.0.0.300") is None
    assert "not an IP address" in editor.messages["destination"]


def test_static_fallback(editor):
    editor.load("*filter\n-A INPUT -j NOWHERE\nCOMMIT\n")
    bundle = editor._repr_mimebundle_()
    assert "✗ not loaded: line 2" in bundle["text/plain"]
    assert "loaded: 1 rules" in bundle["text/html"]
