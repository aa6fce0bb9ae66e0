"""TraceStepper: walk through a trace one step (one evaluated rule) at a time.

Each step shows where the packet is on the hook map, the rule with each of
its matches marked (✓ held, ✗ the one that failed, · not checked: the kernel
stops at the first failing match), the reason, and the packet's headers
before and after the step. Colour is never the only cue: every match also
carries its mark and a word.

Steps are numbered from 1, as the journey numbers them.
"""
from __future__ import annotations

import ipywidgets as W

from ..errors import KplabError
from . import _viz
from ._base import GREEN, GREY, RED, Field, LabWidget, Picture, as_int, esc

HEADER_FIELDS = ("proto", "src", "sport", "dst", "dport", "flags", "icmp_type", "icmp_id", "mark", "in_iface",
                 "out_iface")


def _headers(pkt) -> dict:
    if pkt is None:
        return {}
    d = dict(pkt.headers())
    d["in_iface"] = pkt.in_iface
    d["out_iface"] = pkt.out_iface
    return {k: d.get(k) for k in HEADER_FIELDS if d.get(k) not in (None, "")}


def _which_stateful(rule_matches, reason: str):
    """The stateful match a reason speaks of (the engine words its reasons per module)."""
    names = [m.name for m in rule_matches]
    if ("random draw" in reason or "of every" in reason) and "statistic" in names:
        return names.index("statistic")
    if " list " in f" {reason} " and "recent" in names:
        return names.index("recent")
    if "rule wants" in reason and "conntrack" in names:
        return names.index("conntrack")
    for i, m in enumerate(rule_matches):
        if getattr(m, "stateful", False):
            return i
    return None


_PARSED: dict = {}


def parse_step_rule(step):
    """The Rule of a "rule" step, parsed again from its saved text (cached), or None."""
    if not step.rule:
        return None
    key = (step.table, step.chain, step.rule)
    if key in _PARSED:
        return _PARSED[key]
    from ..netfilter.iptables_save import parse_rule, tokenize
    try:
        words = tokenize(step.rule)
        family = step.before.family if step.before is not None else 4
        rule = parse_rule(words[2:], step.table, step.chain, family, chains=set(words), unsupported="opaque")
    except Exception:                       # a rule the engine ran always parses; be safe anyway
        rule = None
    if len(_PARSED) > 4096:
        _PARSED.clear()
    _PARSED[key] = rule
    return rule


def match_marks(step):
    """[(mark, text, note)] for each match of a rule step: "✓" held, "✗" failed,
    "·" not checked. Empty for other kinds of step."""
    rule = parse_step_rule(step) if step.kind == "rule" else None
    if rule is None:
        return []
    parts = list(rule.all_matches)
    if step.matched:
        return [("✓", m.save(), "holds") for m in parts]
    failed_at = None
    miss = getattr(step, "_miss", None)
    if miss is not None:
        failed = miss[0]
        want = failed.save()
        failed_at = next((i for i, m in enumerate(parts) if m.save() == want), None)
    if failed_at is None:
        failed_at = _which_stateful(parts, step.reason or "")
    if failed_at is None:
        failed_at = len(parts) - 1
    out = []
    for i, m in enumerate(parts):
        if i < failed_at:
            out.append(("✓", m.save(), "holds"))
        elif i == failed_at:
            out.append(("✗", m.save(), f"fails: {step.reason}" if step.reason else "fails"))
        else:
            out.append(("·", m.save(), "not checked (the kernel stops at the first failing match)"))
    return out


def target_text(step) -> str:
    rule = parse_step_rule(step) if step.kind == "rule" else None
    if rule is None or rule.target is None:
        return ""
    return rule.target.save()


class TraceStepper(LabWidget):
    """Step through a `Trace` (or a cluster `Journey`, node after node).

    Methods: `go(k)` (1-based), `next()`, `back()`, `first()`, `last()`;
    each returns True if it moved. A bad step number is shown as a message
    and changes nothing. `outputs` holds the current step's text twins.
    """

    def __init__(self, trace, *, start: int = 1):
        self.source = trace
        if hasattr(trace, "hops"):                 # a Journey: the traces of its nodes, in order
            self.items = [(h.node, h.trace, i) for h in trace.hops if h.trace is not None
                          for i in range(len(h.trace.steps))]
            self.traces = [h.trace for h in trace.hops if h.trace is not None]
        elif hasattr(trace, "steps"):
            self.items = [(None, trace, i) for i in range(len(trace.steps))]
            self.traces = [trace]
        else:
            raise KplabError(f"TraceStepper takes a Trace or a Journey, not {type(trace).__name__}")
        self.n = len(self.items)
        self.position = 0
        self._syncing = False
        self._drawings: dict = {}                  # id(trace) -> its hook-map Drawing (redrawn into)
        self._texts: dict = {}
        self.back_button = W.Button(description="back", icon="step-backward", layout=W.Layout(width="7em"))
        self.next_button = W.Button(description="next", icon="step-forward", layout=W.Layout(width="7em"))
        self.slider = W.IntSlider(value=1, min=1, max=max(1, self.n), continuous_update=False, description="step",
                                  disabled=self.n <= 1, layout=W.Layout(width="24em"))
        self.step_field = Field(self.slider)
        self.back_button.on_click(lambda _b: self.back())
        self.next_button.on_click(lambda _b: self.next())
        self.slider.observe(self._on_slider, names="value")
        self.header = W.HTML()
        self.rule_html = W.HTML()
        self.packet_html = W.HTML()
        self.map = Picture("where the packet is")
        self.widget = W.VBox([
            W.HBox([self.back_button, self.next_button, self.step_field.box], layout=W.Layout(align_items="center")),
            self.header, self.rule_html, self.packet_html, self.map.box])
        if self.n == 0:
            self._texts = {"step": "this trace has no steps", "rule": "", "packet": "", "hook_map": ""}
            self.header.value = f"<i>{esc(self._texts['step'])}</i>"
            self.next_button.disabled = self.back_button.disabled = True
        else:
            if not self.go(start):
                self.go(1)

    # ------------------------------------------------------------------ moving

    def _on_slider(self, change):
        if not self._syncing:
            self.go(change["new"])

    @property
    def messages(self) -> dict:
        return {"step": self.step_field.error}

    def go(self, k) -> bool:
        """Show step `k` (1 .. n)."""
        k = as_int(k)
        if k is None:
            self.step_field.set("the step must be a whole number")
            return False
        if not 1 <= k <= self.n:
            self.step_field.set(f"there is no step {k}: this trace has steps 1 to {self.n}" if self.n
                                else "this trace has no steps")
            return False
        self.step_field.clear()
        self.position = k - 1
        self._render()
        return True

    def next(self) -> bool:
        return self.go(self.position + 2) if self.position + 1 < self.n else False

    def back(self) -> bool:
        return self.go(self.position) if self.position > 0 else False

    def first(self) -> bool:
        return self.go(1)

    def last(self) -> bool:
        return self.go(self.n)

    @property
    def step(self):
        """The current Step."""
        node, trace, i = self.items[self.position]
        return trace.steps[i]

    # ------------------------------------------------------------------ drawing

    def _render(self):
        node, trace, i = self.items[self.position]
        s = trace.steps[i]
        k = self.position + 1
        self._syncing = True
        try:
            self.slider.value = k
        finally:
            self._syncing = False
        self.back_button.disabled = k <= 1
        self.next_button.disabled = k >= self.n
        where = " · ".join(str(x) for x in (s.hook, s.table, f"{s.chain} #{s.index}" if s.index else s.chain) if x)
        on = f"on {node}: " if node else ""
        head = f"step {k} of {self.n}: {on}{s.kind}" + (f" · {where}" if where else "")
        self._texts["step"] = head
        self.header.value = f"<b>{esc(head)}</b>"
        self._texts["rule"], self.rule_html.value = self._rule_view(s)
        self._texts["packet"], self.packet_html.value = self._packet_view(s)
        key = id(trace)
        try:
            drawing = _viz.hook_map(trace, step=i + 1, into=self._drawings.get(key))
            self._drawings[key] = drawing
            self.map.show(drawing)
            self._texts["hook_map"] = drawing.text
        except Exception as e:                         # a drawing problem must not stop the stepping
            self.map.show_text(f"(no hook map: {type(e).__name__}: {e})")
            self._texts["hook_map"] = self.map.text

    def _rule_view(self, s):
        lines, html = [], []
        if s.kind == "rule":
            lines.append(f"rule: {s.rule}")
            html.append(f"<code>{esc(s.rule)}</code>")
            colour = {"✓": GREEN, "✗": RED, "·": GREY}
            for mark, text, note in match_marks(s):
                lines.append(f"  {mark} {text}  -- {note}")
                weight = "bold" if mark == "✗" else "normal"
                html.append(f'<div style="color:{colour[mark]};font-weight:{weight};font-family:monospace">'
                            f'{mark} {esc(text)} <span style="font-weight:normal">— {esc(note)}</span></div>')
            target = target_text(s)
            if target:
                taken = "taken" if s.matched else "not taken"
                lines.append(f"  target {target}: {taken}")
                html.append(f'<div style="font-family:monospace">→ {esc(target)}: {taken}</div>')
            result = (f"matched: {s.verdict}" if s.matched else f"no match: {s.reason}")
            lines.append(f"result: {result}")
            mark = "✓" if s.matched else "✗"
            html.append(f'<div style="color:{GREEN if s.matched else RED}"><b>{mark} {esc(result)}</b></div>')
        elif s.kind == "skipped":
            text = f"{s.count} rules (#{s.index} to #{s.index + s.count - 1}) evaluated, none matched: {s.reason}"
            lines.append(text)
            html.append(f'<div style="color:{GREY}">· {esc(text)}</div>')
        elif s.kind == "policy":
            text = f"end of built-in chain {s.chain}: policy {s.verdict}" + (f" ({s.reason})" if s.reason else "")
            lines.append(text)
            html.append(f"<div><b>{esc(text)}</b></div>")
        else:
            text = f"{s.kind}: {s.reason}" if s.reason else s.kind
            lines.append(text)
            html.append(f"<div>{esc(text)}</div>")
        return "\n".join(lines), "".join(html)

    def _packet_view(self, s):
        before = _headers(s.before)
        after = _headers(s.after) if s.changed else None
        lines = [f"packet before: {s.before}" if s.before is not None else "packet before: (none)"]
        lines.append(f"packet after:  {s.after}" if after is not None else "packet after:  unchanged")
        changed = [k for k in HEADER_FIELDS if after is not None and before.get(k) != after.get(k)]
        if changed:
            lines.append("  changed: " + ", ".join(f"{k} {before.get(k, '-')} -> {after.get(k, '-')}"
                                                   for k in changed))
        rows = []
        for k in HEADER_FIELDS:
            if k not in before and (after is None or k not in after):
                continue
            b = before.get(k, "")
            a = after.get(k, "") if after is not None else b
            diff = after is not None and k in changed
            style = f' style="color:{RED};font-weight:bold"' if diff else ""
            rows.append(f"<tr><td>{esc(k)}</td><td>{esc(b)}</td><td{style}>{esc(a)}{' ← changed' if diff else ''}"
                        "</td></tr>")
        table = ('<table style="font-family:monospace;font-size:12px"><tr><th>header</th><th>before</th>'
                 "<th>after</th></tr>" + "".join(rows) + "</table>")
        return "\n".join(lines), table

    # ------------------------------------------------------------------ text twin

    @property
    def outputs(self) -> dict:
        return {k: self._texts.get(k, "") for k in ("step", "rule", "packet", "hook_map")}

    def text(self) -> str:
        parts = [f"TraceStepper: {self.n} steps"]
        parts += [v for v in self.outputs.values() if v]
        msgs = [f"✗ {v}" for v in self.messages.values() if v]
        return "\n".join(parts + msgs)
