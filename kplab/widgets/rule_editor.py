"""RuleEditor: write a ruleset, load it, and trace packets through it.

The text is iptables-save / iptables-restore format. "load" parses it; a
mistake is shown with its line number, the line and a caret under the bad
word, and the last ruleset that loaded stays in use. A packet form
(`PacketBuilder`) sends packets through the standard node of the lessons
running the loaded rules, and each result opens in a `TraceStepper`.
"""
from __future__ import annotations

import ipywidgets as W

from ..errors import KplabError, ParseError
from ._base import GREY, LabWidget, esc, message_html, pre
from .packet_builder import PacketBuilder
from .trace_stepper import TraceStepper

EXAMPLE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p udp -j DROP
COMMIT
"""


class RuleEditor(LabWidget):
    """A ruleset editor with a packet form.

    Methods: `load(text=None)` parses the textarea (or `text`, which is put
    in it) and returns True if the rules loaded; `send(**fields)` traces a
    packet (see `PacketBuilder.send`). `error` is the last load error ("" if
    none); `ruleset` and `node` are the last ruleset that loaded and the
    node running it.
    """

    def __init__(self, text: str = "", *, topology=None, destination: str = "", port=""):
        from ..netfilter.rules import Ruleset
        from ..node import Node
        self.topology = topology
        self.ruleset = Ruleset()
        self.node = Node(self.ruleset, topology)
        self.error = ""
        self.error_line = None
        self.stepper = None
        self.textarea = W.Textarea(value=text or "", placeholder=EXAMPLE, rows=12,
                                   layout=W.Layout(width="100%"))
        self.textarea.add_class("kplab-mono")
        self.load_button = W.Button(description="load", icon="upload", button_style="primary")
        self.load_button.on_click(lambda _b: self.load())
        self.status = W.HTML(value="")
        self.error_html = W.HTML(value="")
        self.summary_html = W.HTML(value="")
        self.builder = PacketBuilder(self.node, on_trace=self._on_trace, destination=destination, port=port)
        self.stepper_box = W.VBox([])
        self._summary = "no rules loaded yet: an empty ruleset (every policy ACCEPT)"
        self.widget = W.VBox([
            W.HTML(value="<style>.kplab-mono textarea { font-family: var(--jp-code-font-family, monospace); }"
                         "</style><b>rules</b> (iptables-save format)"), self.textarea,
            W.HBox([self.load_button, self.status], layout=W.Layout(align_items="center")),
            self.error_html, self.summary_html,
            W.HTML(value="<b>send a packet through them</b>"), self.builder.widget, self.stepper_box])
        self.summary_html.value = f'<span style="color:{GREY}">{esc(self._summary)}</span>'
        if text:
            self.load()

    # ------------------------------------------------------------------ actions

    @property
    def messages(self) -> dict:
        return {"rules": self.error, **self.builder.messages}

    def load(self, text: str | None = None) -> bool:
        """Parse the rules; on success the packet form uses them, on error the old ones stay."""
        from .. import parse_rules
        from ..node import Node
        if text is not None:
            if not isinstance(text, str):
                self._fail(f"the rules must be text, not {type(text).__name__}", None, None)
                return False
            self.textarea.value = text
        source = self.textarea.value
        try:
            ruleset = parse_rules(source)
            node = Node(ruleset, self.topology)
        except ParseError as e:
            self._fail(str(e), e.line, e.pretty())
            return False
        except KplabError as e:
            self._fail(str(e), None, None)
            return False
        self.ruleset, self.node = ruleset, node
        self.error, self.error_line = "", None
        self.error_html.value = ""
        self.builder.set_target(node)
        self._summary = self._describe(ruleset)
        self.summary_html.value = pre(self._summary)
        self.status.value = message_html("loaded", "ok")
        self.builder.validate()
        return True

    def send(self, **values):
        """Trace a packet through the loaded rules (fields as for PacketBuilder.set)."""
        return self.builder.send(**values)

    # ------------------------------------------------------------------ internals

    def _fail(self, message: str, line, pretty):
        self.error, self.error_line = message, line
        kept = "the rules loaded before stay in use"
        self.status.value = message_html(f"not loaded: {kept}", "error")
        self.error_html.value = message_html(message, "error") + (pre(pretty) if pretty and pretty != message else "")

    @staticmethod
    def _describe(ruleset) -> str:
        lines = [f"loaded: {ruleset.rule_count()} rules"]
        for t in ruleset.ordered_tables():
            chains = ", ".join(f"{c.name} ({len(c.rules)})" for c in t.chains.values())
            lines.append(f"  {t.name}: {chains}")
        if not ruleset.tables:
            lines.append("  (no tables: every packet is accepted)")
        for w in ruleset.warnings:
            lines.append(f"  ! {w}")
        return "\n".join(lines)

    def _on_trace(self, trace):
        self.stepper = TraceStepper(trace)
        self.stepper_box.children = (W.HTML(value="<b>step through it</b>"), self.stepper.widget)

    # ------------------------------------------------------------------ text twin

    @property
    def outputs(self) -> dict:
        return {"rules": self._summary, "error": self.error, **self.builder.outputs,
                "stepper": self.stepper.text() if self.stepper else ""}

    def text(self) -> str:
        parts = ["RuleEditor", self._summary]
        if self.error:
            parts.append(f"✗ not loaded: {self.error}")
        parts.append(self.builder.text())
        return "\n".join(parts)
