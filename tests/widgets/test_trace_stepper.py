"""TraceStepper: one step at a time, matches marked ✓ ✗ · with colour and words."""
import pytest

PORT22 = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j DROP
-A INPUT -p udp -j DROP
COMMIT
"""


@pytest.fixture
def seed_trace(seed_rules):
    import kplab
    node = kplab.standard_node(kplab.parse_rules(seed_rules))
    return node.send_from("client", "10.96.5.81", "tcp", 80)


@pytest.fixture
def port22_trace():
    import kplab
    node = kplab.standard_node(kplab.parse_rules(PORT22))
    return node.send_from("external", "192.168.0.2", "tcp", 80)


def goto_rule(st, pred):
    for k in range(1, st.n + 1):
        st.go(k)
        if st.step.kind == "rule" and pred(st.step):
            return k
    raise AssertionError("no such step")


def test_buttons_and_slider_move_one_step(kw, seed_trace):
    st = kw.TraceStepper(seed_trace)
    assert st.n == len(seed_trace.steps) and st.position == 0
    assert st.back_button.disabled and not st.next_button.disabled
    st.next_button.click()
    assert st.position == 1 and st.slider.value == 2
    assert st.outputs["step"].startswith(f"step 2 of {st.n}")
    st.slider.value = 5
    assert st.position == 4 and st.outputs["step"].startswith(f"step 5 of {st.n}")
    st.back_button.click()
    assert st.position == 3 and st.slider.value == 4
    assert st.last() and st.next_button.disabled and st.next() is False
    assert st.first() and st.back() is False


def test_failing_match_is_marked_and_the_rest_not_checked(kw, port22_trace):
    st = kw.TraceStepper(port22_trace)
    goto_rule(st, lambda s: not s.matched and "--dport 22" in s.rule)
    rule = st.outputs["rule"]
    assert "✓ -p tcp  -- holds" in rule
    assert "✗ -m tcp --dport 22  -- fails:" in rule
    assert "target -j DROP: not taken" in rule and "result: no match:" in rule
    html = st.rule_html.value
    from kplab.widgets._base import GREEN, RED
    assert f"color:{RED};font-weight:bold" in html and "✗ -m tcp --dport 22" in html
    assert f"color:{GREEN}" in html and "✓ -p tcp" in html


def test_rule_after_the_failing_match_is_not_checked(kw, seed_trace):
    st = kw.TraceStepper(seed_trace)
    goto_rule(st, lambda s: not s.matched and s.rule.startswith("-A KUBE-SVC-") and "! -s" in s.rule)
    lines = st.outputs["rule"].splitlines()
    assert lines[1].startswith("  ✗ ! -s 10.244.0.0/16")
    assert all(line.startswith("  · ") for line in lines[2:6])
    assert "not checked" in lines[2]


def test_stateful_miss_is_attributed_to_its_match(kw, seed_trace):
    st = kw.TraceStepper(seed_trace)
    goto_rule(st, lambda s: not s.matched and "--ctstate INVALID" in s.rule)
    rule = st.outputs["rule"]
    assert "✗ -m conntrack --ctstate INVALID" in rule
    assert "· -m nfacct" in rule


def test_matched_rule_is_all_ticks(kw, seed_trace):
    st = kw.TraceStepper(seed_trace)
    goto_rule(st, lambda s: s.matched and s.verdict == "DNAT")
    rule = st.outputs["rule"]
    assert "✗" not in rule and "·" not in rule and "result: matched: DNAT" in rule
    assert "changed: dst 10.96.5.81 -> 10.244.1.3, dport 80 -> 8080" in st.outputs["packet"]
    assert "← changed" in st.packet_html.value


def test_hook_map_follows_the_step_and_is_reused(kw, seed_trace):
    st = kw.TraceStepper(seed_trace)
    first = st.map.drawing
    st.go(3)
    assert st.map.drawing.figure is first.figure                  # redrawn into the same figure
    assert st.outputs["hook_map"] and bytes(st.map.image.value).startswith(b"\x89PNG")


@pytest.mark.parametrize("bad", [0, -1, 10_000, "x", 2.5, None, True])
def test_bad_step_numbers_are_shown_and_change_nothing(kw, seed_trace, bad):
    st = kw.TraceStepper(seed_trace)
    st.go(4)
    shown = dict(st.outputs)
    assert st.go(bad) is False
    assert st.messages["step"] and "✗" in st.step_field.msg.value
    assert st.outputs == shown and st.position == 3
    assert st.go(5) and st.messages["step"] == ""


def test_a_journey_is_stepped_node_after_node(kw, seed_cluster):
    from kplab.kube.flow import ClusterNetwork
    c = seed_cluster.scale("backend", 3)
    net = ClusterNetwork(c, seed=1)
    frontend = next(p.name for p in c.pods() if p.name.startswith("frontend"))
    remote = {p.ip for p in c.pods() if p.node == "node-2"}
    j = next(j for j in (net.send(frontend, "backend", sport=s) for s in range(41000, 41040))
             if j.final.dst in remote)
    st = kw.TraceStepper(j)
    assert st.n == sum(len(t.steps) for t in j.traces)
    assert "on node-1" in st.outputs["step"]
    st.last()
    assert "on node-2" in st.outputs["step"]


def test_not_a_trace(kw):
    from kplab.errors import KplabError
    with pytest.raises(KplabError):
        kw.TraceStepper("nope")


def test_static_fallback(kw, seed_trace):
    st = kw.TraceStepper(seed_trace)
    bundle = st._repr_mimebundle_()
    assert bundle["text/plain"].startswith(f"TraceStepper: {st.n} steps\nstep 1 of {st.n}")
