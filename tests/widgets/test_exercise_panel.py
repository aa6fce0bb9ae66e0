"""ExercisePanel drives the same Exercise the notebook cells call."""
from kplab.exercises import Exercise, Probe, choice, rules
from kplab.exercises._core import _PROGRESS

PREDICT = Exercise(id="99.1", kind="predict", title="t", prompt="DROP or ACCEPT?", checker=choice("DROP"),
                   hints=("h1", "h2"), answer="DROP", explanation="because")
WRITE = Exercise(id="99.2", kind="write", title="w", prompt="drop udp",
                 checker=rules([Probe("udp", "client", "10.244.1.3", "udp", 53, verdict="DROP",
                                      wrong="UDP still passes.")]),
                 hints=("a", "b"), answer="-A FORWARD -p udp -j DROP", explanation="FORWARD sees it",
                 starter="-A FORWARD -p tcp -j DROP")


def setup_function(_f):
    _PROGRESS.clear()


def test_check_shows_feedback_inline(kw):
    panel = kw.ExercisePanel(PREDICT)
    fb = panel.check("accept")
    assert fb.correct is False and "Not yet" in panel.out.value
    assert panel.check("DROP").correct and "Correct" in panel.out.value
    assert "Correct" in panel.text()


def test_write_panel_starts_from_the_broken_rules_and_reports_bad_rules_inline(kw):
    panel = kw.ExercisePanel(WRITE)
    assert panel.box.value == WRITE.starter
    panel.check_button.click()
    assert "UDP still passes" in panel.out.value
    fb = panel.check("-A FORWARD -p udp -j NOWHERE")
    assert fb.correct is False and "do not load" in fb.message and 'role="alert"' in panel.out.value
    assert panel.check(WRITE.answer).correct


def test_hints_one_at_a_time_and_solution_needs_two_clicks(kw):
    panel = kw.ExercisePanel(PREDICT)
    panel.hint_button.click()
    assert "Hint 1 of 2: h1" in panel.hints_html.value and "h2" not in panel.hints_html.value
    panel.hint_button.click()
    assert "Hint 2 of 2: h2" in panel.hints_html.value
    panel.solution_button.click()
    assert "because" not in panel.hints_html.value and panel.solution_button.description == "Really show?"
    panel.solution_button.click()
    assert "because" in panel.hints_html.value and panel.solution_button.disabled


def test_unanswered_is_not_an_error(kw):
    panel = kw.ExercisePanel(PREDICT)
    assert panel.check("").correct is None and "Not answered" in panel.out.value
