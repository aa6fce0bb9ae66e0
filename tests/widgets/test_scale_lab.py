"""ScaleLab: the measure button, the table, the chart and the comparison with the precomputed results."""
import pytest


@pytest.fixture
def lab():
    from kplab.kube.scale import load_results
    from kplab.widgets.scale_lab import ScaleLab
    return ScaleLab(sizes=(10, 20, 100), results=load_results(), start=10, repeat=1)


def test_starts_empty_and_says_so(lab):
    assert lab.rows == ()
    assert "nothing measured yet" in lab.text()
    assert lab.messages == {"size": "", "endpoints": ""}
    assert lab.size.value == 10


def test_button_measures_the_selected_size(lab):
    lab.measure_button.click()
    assert [r.services for r in lab.rows] == [10]
    row = lab.rows[0]
    assert row.rules_evaluated > row.rules_evaluated_first
    text = lab.text()
    assert "evaluated" in text and "193" in text
    assert "measure one of those sizes to compare" in text
    assert lab.picture.text.startswith("Your measurements")
    assert not lab.measure_button.disabled


def test_two_sizes_show_the_linear_walk(lab):
    a = lab.measure(10)
    b = lab.measure(20)
    assert b.rules_evaluated - a.rules_evaluated == 10
    assert [r.services for r in lab.rows] == [10, 20]
    assert "From 10 to 20 Services" in lab.picture.text
    lab.measure(10)                                   # measuring again replaces, never duplicates
    assert [r.services for r in lab.rows] == [10, 20]


def test_compares_with_the_precomputed_table(lab):
    lab.measure(100)
    words = lab.comparison()
    assert "At 100 Services the precomputed table has 1,723 rules" in words
    assert "the same rules evaluated" in words and "the table's time to render them" in words
    assert words in lab.text()


@pytest.mark.parametrize("size, endpoints, field, words", [
    (0, 5, "size", "from 1 to 2000"),
    (5000, 5, "size", "bench/scale.py"),
    ("many", 5, "size", "from 1 to 2000"),
    (10, 0, "endpoints", "from 1 to 20"),
    (10, "x", "endpoints", "from 1 to 20"),
])
def test_bad_input_is_a_message_not_an_error(lab, size, endpoints, field, words):
    assert lab.measure(size, endpoints) is None
    assert words in lab.messages[field]
    assert lab.rows == ()


def test_clear_and_text_twin_in_the_display_bundle(lab):
    lab.measure(10)
    bundle = lab._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "193" in bundle["text/plain"]
    lab.clear()
    assert lab.rows == () and "nothing measured yet" in lab.text()


def test_without_results_no_comparison():
    from kplab.widgets.scale_lab import ScaleLab
    lab = ScaleLab(sizes=(10,), repeat=1)
    lab.measure()
    assert lab.comparison() == "" and len(lab.rows) == 1
