"""scale_plot: cost against cluster size, with its text twin, in the palette, every series told apart without colour."""
import pytest

from tests.viz.conftest import off_palette


@pytest.fixture(scope="module")
def results():
    from kplab.kube.scale import load_results
    return load_results()


@pytest.fixture(scope="module")
def live():
    from kplab.kube.scale import measure_series
    return measure_series([10, 30], repeat=1)


def test_precomputed_results(viz, results):
    from kplab.viz.scale import TIME_SERIES, scale_plot
    d = scale_plot(results)
    assert isinstance(d, viz.Drawing) and d.kind == "scale_plot"
    assert d.data["sizes"] == [r.services for r in results.rows]
    # the text twin carries the numbers and the growth sentences
    assert "10,000" in d.text and "evaluated" in d.text
    assert "From 100 to 10,000 Services (x100):" in d.text
    assert f"meets {results.rows[0].rules_evaluated_first} at every size" in d.text
    # every time series the results have is drawn and named in the legend and alt text
    labels = d.labels()
    for name, label, *_ in TIME_SERIES:
        if getattr(results.rows[0], name) is not None:
            assert label in labels and name in d.data["series"]
    assert "packet to the LAST Service" in labels and "packet to the FIRST Service" in labels
    assert d.alt.startswith("Two line charts") and len(d.table) == len(results.rows)
    assert d.png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_colours_markers_and_styles_are_all_distinct(viz, results):
    from kplab.viz.scale import RULE_SERIES, TIME_SERIES, scale_plot
    d = scale_plot(results)
    assert off_palette(d.figure, viz) == []
    for series in (TIME_SERIES, RULE_SERIES):
        assert len({s[2] for s in series}) == len(series)          # colour
        assert len({s[3] for s in series}) == len(series)          # marker
        cues = {(s[3], s[4]) for s in series}                      # marker and line style together
        assert len(cues) == len(series)
    lines = [ln for ax in d.figure.axes for ln in ax.get_lines()]
    assert all(ln.get_marker() not in (None, "", "None") for ln in lines)


def test_counts_alone_draw_the_rules_chart(viz):
    from kplab.kube.scale import count_walks
    from kplab.viz.scale import scale_plot
    d = scale_plot(count_walks([10, 20, 40]))
    assert len(d.figure.axes) == 1 and d.data["series"] == {}
    assert "one more for each Service added" in d.text
    assert d.alt.startswith("A line chart") and "seconds" not in d.alt
    assert off_palette(d.figure, viz) == []


def test_live_measurements_and_redraw_into(viz, live):
    from kplab.viz.scale import scale_plot, slope
    d = scale_plot(live)
    assert "kernel" not in d.text and "kernel" not in " ".join(d.labels())
    again = scale_plot(live[:1], into=d)
    assert again.figure is d.figure and again.data["sizes"] == [10]
    xs, ys = d.data["sizes"], d.data["rules_evaluated"]
    assert 0.3 < slope(xs, ys) <= 1.0


def test_bad_input(viz):
    from kplab.viz.scale import scale_plot
    with pytest.raises(viz.VizError):
        scale_plot([])
    with pytest.raises(viz.VizError):
        scale_plot(42)
    with pytest.raises(viz.VizError):
        scale_plot(["not a measurement"])
