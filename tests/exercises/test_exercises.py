"""Every exercise accepts its own solution, rejects typical mistakes with specific words,
never raises for a learner's input, and is used by its notebook."""
import json
import re
from pathlib import Path

import pytest

from kplab import exercises
from kplab.exercises import Feedback, get
from kplab.exercises._core import _PROGRESS

ALL = exercises.all_exercises()
IDS = [ex.id for ex in ALL]
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(autouse=True)
def fresh_progress():
    _PROGRESS.clear()
    yield
    _PROGRESS.clear()


@pytest.mark.parametrize("n", exercises.NOTEBOOKS)
def test_every_notebook_has_three_kinds(n):
    exs = exercises.for_notebook(n)
    assert len(exs) >= 3, f"notebook {n} needs at least three exercises"
    assert {"predict", "write", "debug"} <= {ex.kind for ex in exs}, f"notebook {n}: predict, write and debug"
    assert [ex.id for ex in exs] == [f"{n}.{i}" for i in range(1, len(exs) + 1)]


@pytest.mark.parametrize("ex", ALL, ids=IDS)
def test_accepts_its_solution(ex):
    fb = ex.check(ex.answer)
    assert fb.correct is True, f"{ex.id}: its own answer is rejected: {fb}"


@pytest.mark.parametrize("ex", ALL, ids=IDS)
def test_rejects_typical_mistakes_specifically(ex):
    assert ex.wrong_answers, f"{ex.id}: list at least one typical wrong answer"
    for answer, words in ex.wrong_answers:
        fb = ex.check(answer)
        assert fb.correct is False, f"{ex.id}: accepts the wrong answer {answer!r}"
        assert words.lower() in str(fb).lower(), f"{ex.id}: feedback for {answer!r} lacks {words!r}: {fb}"


@pytest.mark.parametrize("ex", ALL, ids=IDS)
def test_unanswered_and_garbage_never_raise(ex, monkeypatch):
    monkeypatch.delenv("KPLAB_INSTRUCTOR", raising=False)
    assert ex.check(...).correct is None
    assert ex.check("   ").correct is None
    for junk in ("-A FORWARD -j NOWHERE", "*filter\n-A INPUT -p tcp --dport 99999 -j DROP\n", 42, ["x"], {"a": 1},
                 "\x00\xff", 3.5):
        fb = ex.check(junk)
        assert isinstance(fb, Feedback) and fb.correct is not True, (ex.id, junk, fb)
        assert "Traceback" not in str(fb)


@pytest.mark.parametrize("ex", ALL, ids=IDS)
def test_hints_are_graded_then_point_to_the_solution(ex):
    assert len(ex.hints) >= 2, f"{ex.id}: give graded hints (at least two)"
    assert ex.explanation, f"{ex.id}: the solution explains why"
    shown = [str(ex.hint()) for _ in ex.hints]
    assert [s.split(":")[0] for s in shown] == [f"Hint {i} of {len(ex.hints)}" for i in range(1, len(ex.hints) + 1)]
    assert "solution" in str(ex.hint())
    assert ex.explanation in str(ex.solution())
    assert exercises.progress()[ex.id]["solution"] is True
    ex.reset()
    assert ex.id not in exercises.progress() and str(ex.hint()).startswith("Hint 1 of")


def test_instructor_mode_shows_solutions(monkeypatch):
    monkeypatch.setenv("KPLAB_INSTRUCTOR", "1")
    ex = ALL[0]
    fb = ex.check(...)
    assert fb.correct is None and "instructor mode" in str(fb) and ex.explanation in str(fb)


@pytest.mark.parametrize("ex", ALL, ids=IDS)
def test_the_notebook_uses_it(ex):
    path = next(NOTEBOOK_DIR.glob(f"{ex.notebook:02d}-*.ipynb"), None)
    assert path is not None, f"notebooks/{ex.notebook:02d}-*.ipynb is missing"
    source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    assert re.search(rf"Exercise {re.escape(ex.id)}\b", source), f"{path.name} never presents exercise {ex.id}"


def test_get_and_unknown():
    assert get(ALL[0].id) is ALL[0]
    with pytest.raises(KeyError):
        get("1.99")
    with pytest.raises(ValueError):
        exercises.module(11)


def test_cli_prints_all_solutions(capsys):
    from kplab.exercises.__main__ import main
    assert main(["--solutions"]) == 0
    out = capsys.readouterr().out
    for ex in ALL:
        assert f"### {ex.id} " in out
    assert out.count("**Solution.**") == len(ALL)
    assert main(["--self-check"]) == 0
