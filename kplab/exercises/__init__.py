"""Exercises for the course notebooks: checks with specific feedback, graded hints, solutions.

Each notebook N has a module `kplab.exercises.nbNN` whose module-level
`Exercise` objects the notebook uses:

>>> from kplab.exercises import get
>>> ex = get("1.1")
>>> ex.check(...).correct is None        # not answered yet: no error, just a reminder
True

`python -m kplab.exercises --solutions` prints every exercise with its hints
and solution (for instructors); `KPLAB_INSTRUCTOR=1` makes the notebooks show
each solution under its exercise.
"""
from __future__ import annotations

import importlib

from ._core import Exercise, Feedback, Reveal, instructor_mode, progress
from .checks import Probe, choice, number, rules, sequence

NOTEBOOKS = tuple(range(1, 11))


def module(n: int):
    """The exercises module of notebook `n` (1-10)."""
    if n not in NOTEBOOKS:
        raise ValueError(f"there is no notebook {n}: the course has notebooks {NOTEBOOKS[0]}-{NOTEBOOKS[-1]}")
    return importlib.import_module(f".nb{n:02d}", __name__)


def for_notebook(n: int) -> tuple:
    """The exercises of notebook `n`, in order."""
    return tuple(module(n).EXERCISES)


def all_exercises() -> tuple:
    out = []
    for n in NOTEBOOKS:
        try:
            out.extend(for_notebook(n))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.nb{n:02d}":
                raise
    return tuple(out)


def get(ex_id: str) -> Exercise:
    """An exercise by its id, e.g. "3.2"."""
    n = int(str(ex_id).split(".")[0])
    for ex in for_notebook(n):
        if ex.id == str(ex_id):
            return ex
    raise KeyError(f"notebook {n} has no exercise {ex_id}")


__all__ = ["Exercise", "Feedback", "NOTEBOOKS", "Probe", "Reveal", "all_exercises", "choice", "for_notebook",
           "get", "instructor_mode", "module", "number", "progress", "rules", "sequence"]
