"""Exercises that check themselves: the answer goes through the simulator.

An `Exercise` is plain data (a prompt, a check, graded hints, a solution)
plus a little progress kept outside it (how many hints were shown). A check
never raises for a learner's mistake: a rule that does not parse, an answer of
the wrong type or an answer not given yet all come back as `Feedback` that
says what to do. Feedback is specific because each check is built from
*probes* (packets sent through the standard node with the learner's rules)
and each probe carries the sentence to show when the simulator disagrees
with what was asked ("your rule also drops UDP to port 22: add -p tcp").

Standard library only: the notebooks show `Feedback` through its
`_repr_html_`, which needs no widget library; `kplab.widgets.ExercisePanel`
adds buttons on top for those who want them.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import KplabError

NOT_ANSWERED = (None, ..., "")

KINDS = ("predict", "write", "debug")


@dataclass(frozen=True)
class Feedback:
    """The outcome of a check. `correct` is None when there was nothing to check yet."""

    correct: bool | None
    message: str
    details: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.correct)

    @property
    def mark(self) -> str:
        return {True: "✓ Correct.", False: "✗ Not yet.", None: "… Not answered yet."}[self.correct]

    def __str__(self) -> str:
        lines = [f"{self.mark} {self.message}".rstrip()]
        lines += [f"    {d}" for d in self.details]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        # Okabe-Ito bluish green / vermillion; the mark and the words carry the meaning too.
        colour = {True: "#009E73", False: "#D55E00", None: "#6e7781"}[self.correct]
        role = "status" if self.correct is not False else "alert"
        body = f'<b style="color:{colour}">{html.escape(self.mark)}</b> {html.escape(self.message)}'
        if self.details:
            rows = "\n".join(html.escape(d) for d in self.details)
            body += (f'<pre style="margin:4px 0 0 0;font-size:12px;'
                     f'font-family:var(--jp-code-font-family,monospace)">{rows}</pre>')
        return f'<div role="{role}" class="kplab-feedback">{body}</div>'


def right(message: str = "", details=()) -> Feedback:
    return Feedback(True, message, tuple(details))


def wrong(message: str, details=()) -> Feedback:
    return Feedback(False, message, tuple(details))


def unanswered(what: str = "your answer") -> Feedback:
    return Feedback(None, f"Replace the ... with {what}, then run the cell again.")


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook.

    `check(answer)` returns Feedback; `answer` is the canonical correct
    answer (what the tests feed the check, and what `solution()` shows);
    `wrong_answers` are typical mistakes as (answer, words the feedback must
    contain), so the tests prove the check rejects them with specific words.
    """

    id: str                     # "3.2": notebook 3, exercise 2
    kind: str                   # predict | write | debug
    title: str
    prompt: str
    checker: Callable[[Any], Feedback] = field(repr=False)
    hints: tuple = ()
    answer: Any = None
    explanation: str = ""
    wrong_answers: tuple = ()
    starter: Any = None         # what the notebook cell starts from (the broken rules of a debug exercise)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"exercise {self.id}: kind must be one of {KINDS}, not {self.kind!r}")

    @property
    def notebook(self) -> int:
        return int(self.id.split(".")[0])

    def check(self, answer=...) -> Feedback:
        """Run the learner's answer through the check; never raises for a wrong answer."""
        if _is_unanswered(answer):
            if instructor_mode():
                return Feedback(None, f"(instructor mode) {self.solution_text()}",
                                tuple(_as_code(self.answer).splitlines()))
            return unanswered()
        try:
            fb = self.checker(answer)
        except KplabError as exc:
            fb = wrong(f"kplab could not use your answer: {exc}")
        except (TypeError, ValueError) as exc:
            fb = wrong(f"That answer has the wrong shape ({exc}). {self.prompt_hint()}")
        _progress(self.id)["attempts"] += 1
        if fb.correct:
            _progress(self.id)["solved"] = True
        return fb

    def prompt_hint(self) -> str:
        return f"The exercise asks: {self.prompt}"

    def hint(self) -> "Reveal":
        """The next hint, one at a time; after the last, say that the solution is next."""
        p = _progress(self.id)
        if not self.hints:
            return Reveal(f"Exercise {self.id} has no hints: try `solution()`.")
        if p["hints"] >= len(self.hints):
            return Reveal(f"That was the last hint ({len(self.hints)} of {len(self.hints)}). "
                          f"Call `.solution()` to see the answer.")
        p["hints"] += 1
        n = p["hints"]
        return Reveal(f"Hint {n} of {len(self.hints)}: {self.hints[n - 1]}")

    def solution(self) -> "Reveal":
        """The answer with its explanation, on request."""
        _progress(self.id)["solution"] = True
        return Reveal(self.solution_text(), code=_as_code(self.answer))

    def solution_text(self) -> str:
        return f"Solution to {self.id} ({self.title}): {self.explanation}".rstrip()

    def reset(self) -> None:
        """Start this exercise over: hints from the first again."""
        _PROGRESS.pop(self.id, None)

    def show(self) -> "Reveal":
        """The prompt, for the top of an exercise cell."""
        title = self.title if self.title.endswith((".", "?", "!")) else self.title + "."
        return Reveal(f"Exercise {self.id} ({self.kind}): {title} {self.prompt}")

    def _repr_html_(self) -> str:
        return self.show()._repr_html_()

    def __str__(self) -> str:
        return str(self.show())


@dataclass(frozen=True)
class Reveal:
    """A hint, prompt or solution: text, and maybe code to copy."""

    text: str
    code: str = ""

    def __str__(self) -> str:
        return self.text + (f"\n\n{self.code}" if self.code else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        out = f'<div class="kplab-reveal">{html.escape(self.text)}'
        if self.code:
            out += (f'<pre style="margin:4px 0 0 0;font-size:12px;'
                    f'font-family:var(--jp-code-font-family,monospace)">{html.escape(self.code)}</pre>')
        return out + "</div>"


def _as_code(answer) -> str:
    if answer is None:
        return ""
    if isinstance(answer, str):
        return answer
    return repr(answer)


def _is_unanswered(answer) -> bool:
    if answer is ... or answer is None:
        return True
    if isinstance(answer, str) and (not answer.strip() or answer.strip() == "..."):
        return True
    return False


_PROGRESS: dict = {}


def _progress(ex_id: str) -> dict:
    return _PROGRESS.setdefault(ex_id, {"attempts": 0, "hints": 0, "solution": False, "solved": False})


def progress() -> dict:
    """What this kernel has done so far: {id: {attempts, hints, solution, solved}}."""
    return {k: dict(v) for k, v in sorted(_PROGRESS.items())}


def instructor_mode() -> bool:
    """KPLAB_INSTRUCTOR=1 shows every solution below its exercise (for projecting in class)."""
    return os.environ.get("KPLAB_INSTRUCTOR", "") not in ("", "0", "false", "no")
