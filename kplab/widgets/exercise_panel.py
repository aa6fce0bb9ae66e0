"""ExercisePanel: answer an exercise in a text box, with Check, Hint and Solution buttons.

The same `Exercise` object the notebook cells call (`ex.check(answer)`,
`ex.hint()`, `ex.solution()`) drives the panel; the buttons only call those
methods, so the panel and the cells can never disagree. Hints come one at a
time; the solution asks for a second click so it is not revealed by accident.
Every control is a real button or text box: Tab reaches it, Enter/Space
presses it.
"""
from __future__ import annotations

import ipywidgets as W

from ._base import LabWidget, esc, message_html


class ExercisePanel(LabWidget):
    """A panel for one `kplab.exercises.Exercise`.

    `check(text=None)` checks the text box (or `text`, which is put in it) and
    returns the Feedback; `hint()` and `solution()` reveal, as the buttons do.
    """

    def __init__(self, exercise, answer: str = "", *, rows: int | None = None):
        self.exercise = exercise
        self.feedback = None
        self.revealed: list = []
        self._confirm_solution = False
        multiline = exercise.kind in ("write", "debug")
        starter = answer or (exercise.starter if isinstance(exercise.starter, str) else "")
        if multiline:
            self.box = W.Textarea(value=starter, rows=rows or max(3, min(14, starter.count("\n") + 2)),
                                  layout=W.Layout(width="100%"))
        else:
            self.box = W.Text(value=starter, layout=W.Layout(width="24em"))
        self.box.description_allow_html = False
        self.box.placeholder = "your answer"
        self.box.add_class("kplab-exercise-answer")
        self.check_button = W.Button(description="Check", icon="check", button_style="primary",
                                     tooltip="Run your answer through the simulator")
        self.hint_button = W.Button(description="Hint", icon="lightbulb-o",
                                    tooltip=f"{len(exercise.hints)} hints, one at a time")
        self.solution_button = W.Button(description="Solution", icon="eye", tooltip="Show the answer")
        self.check_button.on_click(lambda _b: self.check())
        self.hint_button.on_click(lambda _b: self.hint())
        self.solution_button.on_click(lambda _b: self.solution())
        self.out = W.HTML(value="")
        self.out.add_class("kplab-exercise-feedback")
        self.hints_html = W.HTML(value="")
        title = W.HTML(value=f"<b>Exercise {esc(exercise.id)} ({esc(exercise.kind)}): {esc(exercise.title)}</b>"
                             f"<br>{esc(exercise.prompt)}")
        self.widget = W.VBox([title, self.box,
                              W.HBox([self.check_button, self.hint_button, self.solution_button]),
                              self.out, self.hints_html])
        self.widget.add_class("kplab-exercise")

    def check(self, text: str | None = None):
        if text is not None and not isinstance(text, str):
            self.out.value = message_html(f"the answer must be text, not {type(text).__name__}: "
                                          "write it between quotes")
            return None
        if text is not None:
            self.box.value = text
        self.feedback = self.exercise.check(self.box.value)
        self.out.value = self.feedback._repr_html_()
        return self.feedback

    def hint(self):
        reveal = self.exercise.hint()
        self.revealed.append(str(reveal))
        self._show_revealed()
        return reveal

    def solution(self):
        if not self._confirm_solution:
            self._confirm_solution = True
            self.solution_button.description = "Really show?"
            self.solution_button.button_style = "warning"
            return None
        reveal = self.exercise.solution()
        self.revealed.append(str(reveal))
        self.solution_button.disabled = True
        self.solution_button.description = "Solution shown"
        self._show_revealed()
        return reveal

    def _show_revealed(self) -> None:
        self.hints_html.value = "".join(f'<div role="status" style="margin-top:4px;white-space:pre-wrap">'
                                        f"{esc(r)}</div>" for r in self.revealed)

    def text(self) -> str:
        ex = self.exercise
        lines = [f"Exercise {ex.id} ({ex.kind}): {ex.title}", ex.prompt, f"answer: {self.box.value}"]
        if self.feedback is not None:
            lines.append(str(self.feedback))
        lines += self.revealed
        return "\n".join(lines)
