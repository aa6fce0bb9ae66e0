"""What every kplab widget shares: a root container, a text twin, inline messages.

Each widget is a plain class holding an ipywidgets tree in `.widget`. All the
logic is in ordinary methods (tests call them without a browser); the
controls' observers only call those methods. Input problems never raise: the
message is shown next to the field (`Field.msg`) and the outputs keep showing
the last valid result.

Displaying a widget (`display(w)` or a cell ending in `w`) publishes one
display-data bundle with three representations:

* `application/vnd.jupyter.widget-view+json`: the live widget;
* `text/html`: the text twin in a <pre> (what nbconvert HTML and GitHub show
  when no kernel is live: nbconvert drops the widget view when the notebook
  carries no widget state, and falls back to this);
* `text/plain`: the text twin again (consoles, `nbconvert --to markdown`).

The static fallback is the text twin at the time of display; call
`refresh_display()` to update it in place after interacting.
"""
from __future__ import annotations

import html
import io

import ipywidgets as W

# The viz layer's palette (Okabe-Ito), so widgets and diagrams agree. Colours
# always come with marks (✓ ✗ · + -) and words, never alone.
try:
    from ..viz.palette import ROLE as _ROLE
    GREEN, RED, AMBER = _ROLE["accept"], _ROLE["drop"], _ROLE["reject"]
except ImportError:                                    # the viz layer is optional for the widgets
    GREEN, RED, AMBER = "#009E73", "#D55E00", "#E69F00"
GREY = "#6e7781"                                       # darker than the palette's grey: it is used for text

PRE_STYLE = ("font-family: var(--jp-code-font-family, monospace); font-size: 12px; "
             "white-space: pre; margin: 0; line-height: 1.35")


def esc(text) -> str:
    return html.escape(str(text), quote=False)


def pre(text: str, style: str = "") -> str:
    return f'<pre style="{PRE_STYLE};{style}">{esc(text)}</pre>'


def message_html(text: str, kind: str = "error") -> str:
    """A message shown inline next to a field: a mark, then the text."""
    if not text:
        return ""
    mark, colour = {"error": ("✗", RED), "info": ("ℹ", GREY), "ok": ("✓", GREEN),
                    "warning": ("!", AMBER)}[kind]
    return (f'<span role="{"alert" if kind == "error" else "status"}" '
            f'style="color:{colour}">{mark} {esc(text)}</span>')


class Field:
    """A control with its inline message beside it."""

    def __init__(self, control: W.Widget, label: str | None = None):
        self.control = control
        self.msg = W.HTML(value="")
        self.message = ""
        self.kind = ""
        parts = ([W.HTML(value=f"<b>{esc(label)}</b>", layout=W.Layout(min_width="6em"))] if label else [])
        self.box = W.HBox(parts + [control, self.msg], layout=W.Layout(align_items="center"))

    def set(self, text: str = "", kind: str = "error") -> None:
        self.message, self.kind = text, (kind if text else "")
        self.msg.value = message_html(text, kind)

    def clear(self) -> None:
        self.set("")

    @property
    def error(self) -> str:
        return self.message if self.kind == "error" else ""


def png_bytes(figure, *, dpi: int | None = None) -> bytes:
    """The figure as PNG, drawn with Agg (fast settings: no tight bbox, light compression)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    try:
        from ..viz._fastagg import CachingCanvasAgg
    except ImportError:                                # the viz layer is optional for the widgets
        CachingCanvasAgg = FigureCanvasAgg
    canvas = figure.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        canvas = CachingCanvasAgg(figure)
    if dpi is not None and figure.dpi != dpi:
        figure.set_dpi(dpi)
    canvas.draw()
    width, height = canvas.get_width_height(physical=True)
    from PIL import Image
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    out = io.BytesIO()
    image.save(out, format="png", compress_level=1)
    return out.getvalue()


class Picture:
    """A drawing shown as a picture, with its text twin one tab away.

    `show(drawing)` rasterises the drawing's figure and puts its text twin and
    alt text beside it. The image widget is only sent new bytes when they
    differ.
    """

    #: Resolution of the widget's picture: it is shown in a column of the notebook, a few hundred
    #: pixels wide, so fewer pixels than a notebook figure's (kplab.viz.DPI) lose nothing on
    #: screen and are drawn and sent faster. `Drawing._repr_png_` keeps the full DPI.
    dpi = 72

    def __init__(self, title: str):
        self.title = title
        # Hidden until there is a picture: an empty image shows as a broken-image icon.
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto", display="none"))
        self.alt = W.HTML(value="")
        self.twin = W.HTML(value="")
        self.tabs = W.Tab(children=[W.VBox([self.image, self.alt]), self.twin])
        self.tabs.titles = ("picture", "as text")
        self.box = W.VBox([W.HTML(value=f"<b>{esc(title)}</b>"), self.tabs])
        self.text = ""
        self.drawing = None

    def show(self, drawing) -> None:
        self.drawing = drawing
        # kplab.viz's Drawing renders its PNG itself (a cached static background, only the
        # changed artists drawn again); anything else is drawn whole.
        render = getattr(drawing, "png", None)
        data = render(self.dpi, compress_level=0) if callable(render) else png_bytes(drawing.figure)
        if data != self.image.value:
            self.image.value = data
        self.image.layout.display = None
        alt = getattr(drawing, "alt", "") or ""
        self.alt.value = f'<span style="color:{GREY};font-size:11px">{esc(alt)}</span>' if alt else ""
        self.text = drawing.text
        self.twin.value = pre(drawing.text)

    def show_text(self, text: str) -> None:
        """No drawing (nothing to draw): keep the last picture, say why in the twin."""
        self.text = text
        self.twin.value = pre(text)
        self.alt.value = f'<span style="color:{GREY}">{esc(text)}</span>'


class LabWidget:
    """Base class: `.widget` (the root ipywidgets container) and the text twin."""

    widget: W.Widget

    def text(self) -> str:
        """The text twin of the whole widget (what a screen reader or a static page gets)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        first = self.text().splitlines()[:1]
        return f"<{type(self).__name__}: {first[0] if first else ''}>"

    # -- display ---------------------------------------------------------
    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = dict(self.widget._repr_mimebundle_() or {})
        twin = self.text()
        bundle["text/plain"] = twin
        bundle["text/html"] = (f'<div class="kplab-text-twin" data-kplab-widget="{type(self).__name__}">'
                               f"{pre(twin)}</div>")
        if include:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle

    def _ipython_display_(self):
        from IPython.display import display
        self._display_handle = display(self._repr_mimebundle_(), raw=True, display_id=True)

    def refresh_display(self) -> None:
        """Update the static text fallback of the last display with the current text twin."""
        handle = getattr(self, "_display_handle", None)
        if handle is not None:
            handle.update(self._repr_mimebundle_(), raw=True)


def as_int(value):
    """`value` as an int, or None (bools, floats with a fraction and junk are not ints)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        # ASCII digits only: "²" passes str.isdigit() but int() refuses it
        t = value.strip()
        digits = t[1:] if t[:1] in ("+", "-") else t
        if digits.isascii() and digits.isdigit():
            return int(t)
    return None
