"""ScaleLab: measure, live, what a cluster's size costs kube-proxy's iptables mode.

Pick a number of Services (small: this runs in the notebook's kernel, on a
Binder machine too), press "measure": kplab builds a synthetic cluster of that
many ClusterIP Services (`kplab.kube.synth`), renders node-1's rules, dumps and
parses them, traces a first packet to the last Service of KUBE-SERVICES and
reads the Services back (`kplab.kube.scale.measure`). Each size measured joins
the table and the chart (`kplab.viz.scale.scale_plot`). Given the precomputed
results (`kplab.kube.scale.load_results()`), the lab also says how this
machine compares with the one that made them, on the same size.

    lab = ScaleLab(results=load_results())
    lab.measure(200)               # what the button does
    print(lab.text())

Nothing raises on bad input: the message appears beside the field.
"""
from __future__ import annotations

import ipywidgets as W

from ..errors import KplabError
from ._base import Field, LabWidget, Picture, as_int, pre

#: The sizes offered (Services). Measuring 1,000 takes about a second on a small machine.
SIZES = (10, 25, 50, 100, 200, 400, 800)
#: The largest size the lab measures (bigger ones belong to bench/scale.py).
MAX_SERVICES = 2000


class ScaleLab(LabWidget):
    """Measure kplab's kube-proxy pipeline at small sizes and compare.

    `ScaleLab(sizes=SIZES, endpoints=5, results=None, start=100)`; `measure(n,
    endpoints=None)` measures one size (the button calls it) and returns the
    `Measurement`, or None with a message; `rows` are the measurements so far,
    by size; `clear()` forgets them; `text()` is the text twin.
    """

    def __init__(self, sizes=SIZES, *, endpoints: int = 5, results=None, start: int | None = 100,
                 repeat: int = 3):
        self.results = results
        self.repeat = repeat
        self._rows: dict = {}
        self._drawing = None
        sizes = tuple(sorted({int(s) for s in sizes if 1 <= int(s) <= MAX_SERVICES}))
        if not sizes:
            raise KplabError(f"ScaleLab needs sizes between 1 and {MAX_SERVICES} Services")
        self.size = W.Dropdown(options=sizes, value=start if start in sizes else sizes[0],
                               layout=W.Layout(width="8em"))
        self.size_field = Field(self.size, "Services")
        self.endpoints = W.BoundedIntText(value=endpoints, min=1, max=20, layout=W.Layout(width="5em"))
        self.endpoints_field = Field(self.endpoints, "endpoints each")
        self.measure_button = W.Button(description="measure", icon="clock-o", button_style="primary",
                                       tooltip="Build the cluster, render, parse, trace and explain it")
        self.measure_button.on_click(lambda _b: self.measure(self.size.value, self.endpoints.value))
        self.clear_button = W.Button(description="clear", icon="trash", tooltip="Forget the measurements")
        self.clear_button.on_click(lambda _b: self.clear())
        self.status = W.HTML(value="")
        self.table_html = W.HTML(value="")
        self.compare_html = W.HTML(value="")
        self.picture = Picture("cost against cluster size (your measurements)")
        self.widget = W.VBox([
            W.HTML(value="<b>Scale lab</b>: measure kube-proxy's iptables mode at a small size, here and now"),
            W.HBox([self.size_field.box, self.endpoints_field.box, self.measure_button, self.clear_button],
                   layout=W.Layout(align_items="center")),
            self.status, self.table_html, self.compare_html, self.picture.box,
        ])
        self.widget.add_class("kplab-scale-lab")
        self._refresh()

    # ------------------------------------------------------------------ actions

    @property
    def rows(self) -> tuple:
        """The measurements so far, by size (then endpoints)."""
        return tuple(self._rows[k] for k in sorted(self._rows))

    @property
    def messages(self) -> dict:
        return {"size": self.size_field.error, "endpoints": self.endpoints_field.error}

    def measure(self, services=None, endpoints=None):
        """Measure `services` Services (default: the dropdown's) with `endpoints` each."""
        from ..kube.scale import measure
        n = as_int(self.size.value if services is None else services)
        m = as_int(self.endpoints.value if endpoints is None else endpoints)
        self.size_field.clear()
        self.endpoints_field.clear()
        if n is None or not 1 <= n <= MAX_SERVICES:
            self.size_field.set(f"a number of Services from 1 to {MAX_SERVICES} (bench/scale.py measures more)")
            return None
        if m is None or not 1 <= m <= 20:
            self.endpoints_field.set("endpoints per Service: a number from 1 to 20")
            return None
        self.measure_button.disabled = True
        self.status.value = f"measuring {n:,} Services x {m} endpoints ..."
        try:
            row = measure(n, m, repeat=self.repeat)
        except KplabError as e:
            self.status.value = ""
            self.size_field.set(str(e))
            return None
        finally:
            self.measure_button.disabled = False
        self._rows[(n, m)] = row
        self.status.value = (f"{n:,} Services x {m} endpoints: {row.rules:,} rules; a first packet to the last "
                             f"Service meets {row.rules_evaluated:,} of them")
        self._refresh()
        return row

    def clear(self) -> None:
        self._rows.clear()
        self.status.value = ""
        self._refresh()

    # ------------------------------------------------------------------ output

    def comparison(self) -> str:
        """How this machine compares with the precomputed table, on sizes both have."""
        if self.results is None:
            return ""
        by = {(r.services, r.endpoints): r for r in self.results.rows}
        out = []
        for row in self.rows:
            ref = by.get((row.services, row.endpoints))
            if ref is None:
                continue
            same = "the same" if ref.rules_evaluated == row.rules_evaluated else f"{ref.rules_evaluated:,}"
            out.append(f"At {row.services:,} Services the precomputed table has {ref.rules:,} rules and "
                       f"{same} rules evaluated; this machine took {_speed(row.render_s, ref.render_s)} the "
                       f"table's time to render them and {_speed(row.parse_s, ref.parse_s)} to parse the dump.")
        if not out and self.rows:
            sizes = ", ".join(f"{r.services:,}" for r in self.results.rows)
            out.append(f"The precomputed table has {sizes} Services: measure one of those sizes to compare.")
        return "\n".join(out)

    def _refresh(self) -> None:
        from ..kube.scale import table_text
        rows = self.rows
        if not rows:
            self.table_html.value = pre("nothing measured yet: pick a size and press measure")
            self.compare_html.value = ""
            self.picture.show_text("nothing measured yet")
            return
        self.table_html.value = pre(table_text(rows))
        self.compare_html.value = pre(self.comparison()) if self.comparison() else ""
        from ..viz.scale import scale_plot
        self._drawing = scale_plot(rows, title="Your measurements: cost against cluster size", into=self._drawing)
        self.picture.show(self._drawing)

    def text(self) -> str:
        from ..kube.scale import table_text
        lines = ["Scale lab: kube-proxy iptables mode measured in this kernel"]
        if not self.rows:
            lines.append("nothing measured yet: pick a size and press measure")
        else:
            lines.append(table_text(self.rows))
            if self.comparison():
                lines.append(self.comparison())
        return "\n".join(lines)


def _speed(mine: float, theirs: float) -> str:
    if not theirs:
        return "?"
    return f"{mine / theirs:.1f}x"


__all__ = ["MAX_SERVICES", "SIZES", "ScaleLab"]
