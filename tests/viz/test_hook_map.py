"""hook_map on the three hook paths: path, numbering, text twin, colours, stepping, redraw."""
import re

import pytest

from tests.viz.conftest import PATHS, hook_lines, hooks_of, off_palette

HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
IDS = [p[0] for p in PATHS]


@pytest.fixture(scope="module")
def maps(viz, path_traces):
    return {name: viz.hook_map(t) for name, t in path_traces.items()}


def test_plain_map_labels_hooks_and_tables_in_priority_order(viz):
    from kplab.netfilter.hooks import HOOK_ORDER
    d = viz.hook_map()
    labels = d.labels()
    for h in HOOKS:
        assert h in labels
    assert "routing\ndecision" in labels and "local process\n(the node itself)" in labels
    # inside each hook box, the tables are listed top to bottom in HOOK_ORDER
    ax = d.figure.axes[0]
    for h in HOOKS:
        x, y = next(t.get_position() for t in ax.texts if t.get_text() == h)
        names = []
        for t in sorted((t for t in ax.texts if t.get_visible() and t.get_fontfamily() == ["DejaVu Sans Mono"]
                         and abs(t.get_position()[0] - x) < 9 and y - 14 < t.get_position()[1] < y),
                        key=lambda t: -t.get_position()[1]):
            names.append(t.get_text().split()[-1])
        expect = [{"conntrack": "conntrack", "confirm": "confirm"}.get(t, t) for t in HOOK_ORDER[h]]
        got = [{"(dst)": "nat", "(src)": "nat", "security*": "security"}.get(n, n) for n in names]
        assert got == expect, h
    # the text twin says the same, and explains security at INPUT (nf_tables)
    line = next(l for l in d.text.splitlines() if l.startswith("- INPUT"))
    assert line.index("filter") < line.index("nat") < line.index("security")
    assert "security table runs at 150, after nat" in d.text
    assert not off_palette(d.figure, viz)
    assert d.data["path"] == []


@pytest.mark.parametrize("name", IDS)
def test_paths_are_numbered_like_the_trace(viz, maps, path_traces, name):
    trace, d = path_traces[name], maps[name]
    assert hook_lines(d.text) == hooks_of(trace)
    assert d.data["hooks"] == hooks_of(trace)
    path = d.data["path"]
    # the numbered lines of the text are the stops of the picture, one for one
    numbered = [l for l in d.text.splitlines() if re.match(r"^\d+\. ", l)]
    assert len(numbered) == len(path)
    badges = {t.get_text() for t in d.figure.axes[0].texts
              if t.get_visible() and t.get_bbox_patch() is not None and re.fullmatch(r"[\d,]+", t.get_text())}
    numbers = sorted(int(n) for b in badges for n in b.split(","))
    assert numbers == list(range(1, len(path) + 1))
    expected = {
        "forwarded": ["IN", "PREROUTING", "RIN", "FORWARD", "POSTROUTING", "OUT"],
        "local-in": ["IN", "PREROUTING", "RIN", "INPUT", "LOCAL"],
        "local-out": ["LOCAL", "ROUT", "OUTPUT", "POSTROUTING", "OUT"],
    }[name]
    assert path == expected
    assert d.data["kind"] == {"forwarded": "forwarded", "local-in": "local in", "local-out": "local out"}[name]
    assert trace.summary() in d.text
    assert d.alt.count(".") >= 1 and "\n" not in d.alt


@pytest.mark.parametrize("name", IDS)
def test_path_colours_come_from_the_palette(viz, maps, name):
    from matplotlib.colors import to_hex
    d = maps[name]
    assert not off_palette(d.figure, viz)
    art = _art(d)
    on = set(d.data["path"])
    for place, box in art["boxes"].items():
        edge = to_hex(box.get_edgecolor()).upper()
        if place in on:
            assert edge == viz.ROLE["path"].upper(), place
            assert box.get_linestyle() == "-"
        elif place not in ("PREROUTING", "RIN"):            # (passed through only on loopback paths)
            assert edge == viz.ROLE["not_matched"].upper(), place
            assert box.get_linestyle() == ":", place          # a dotted outline, not only a grey one


def test_dnat_and_drop_are_written_not_only_coloured(viz, service_trace):
    import kplab
    d = viz.hook_map(service_trace)
    note = _art(d)["notes"]["PREROUTING"]
    assert note.get_visible() and "DNAT" in note.get_text() and service_trace.dnat_to.split(":")[0] in \
        note.get_text().replace("\n", "")
    rules = kplab.parse_rules("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
    dropped = kplab.standard_node(rules).send_from("client", "10.244.2.5", "tcp", 80)
    d = viz.hook_map(dropped, into=d)
    note = _art(d)["notes"]["FORWARD"]
    assert note.get_visible() and "DROP" in note.get_text() and "✗" in note.get_text()
    assert "dropped" in d.alt


def test_step_marks_the_current_place(viz, service_trace):
    d = None
    places = dict((i, place) for place, steps in viz.hook_map(service_trace).data["stops"] for i in steps)
    for k in (0, 1, 5, len(service_trace.steps)):
        d = viz.hook_map(service_trace, step=k, into=d)
        now = _art(d)["now"]
        assert now.get_visible()
        assert now.get_text() == (f"★ step {k}" if k else "★ start")
        assert d.data["current"] == (places[k] if k else "IN")
        if k:
            assert f"Current step {k} of {len(service_trace.steps)}" in d.text
            box = _art(d)["boxes"][places[k]]
            assert box.get_linewidth() > 2.5                      # thick outline besides the yellow fill
    with pytest.raises(viz.VizError):
        viz.hook_map(service_trace, step=len(service_trace.steps) + 1)
    with pytest.raises(viz.VizError):
        viz.hook_map(None, step=1)


def test_redraw_reuses_figure_and_artists(viz, path_traces):
    d1 = viz.hook_map(path_traces["forwarded"])
    fig, ax = d1.figure, d1.figure.axes[0]
    before = list(ax.get_children())
    d2 = viz.hook_map(path_traces["local-out"], into=d1)
    d3 = viz.hook_map(None, into=d2.figure)             # a Figure works as well as a Drawing
    assert d2.figure is fig and d3.figure is fig
    assert fig.axes == [ax] and list(ax.get_children()) == before
    assert d2.data["path"][0] == "LOCAL" and d3.data["path"] == []


def test_redraw_is_faster_than_a_new_figure(viz, path_traces):
    import time
    traces = list(path_traces.values())

    def best(f, n=3):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            out.append(time.perf_counter() - t0)
        return min(out)

    new = best(lambda: viz.hook_map(traces[0]).png())
    d = viz.hook_map(traces[0])
    d.png()
    state = {"d": d, "i": 0}

    def redraw():
        state["i"] += 1
        state["d"] = viz.hook_map(traces[state["i"] % 3], into=state["d"])
        state["d"].png()
    assert best(redraw) < 0.7 * new


def _art(d):
    from kplab.viz.drawing import _STATES
    return _STATES[d.figure].art
