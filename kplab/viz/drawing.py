"""`Drawing`: a matplotlib Figure with its text twin and alt text.

Every diagram of kplab.viz returns a Drawing. Notebooks show its picture
(`_repr_png_`), an HTML figure with alt text and the text twin
(`_repr_html_`, for JupyterLab, nbconvert and GitHub), or the text twin
alone (`str(drawing)`, plain-text front ends). The same words are in the
picture and in the text, so nothing is only in the colours or only in the
image.

Figures are made with `matplotlib.figure.Figure` directly (never pyplot), so
drawing changes no global state and needs no GUI backend. Redrawing
`into=` an earlier Drawing (or a Figure) reuses its Figure and, where the
layout is unchanged, its artists: that is what keeps a widget's update fast.
"""
from __future__ import annotations

import base64
import html
import io
import weakref
from dataclasses import dataclass, field

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import KplabError
from ._fastagg import CachingCanvasAgg

#: Dots per inch of the figures (and of their PNGs).
DPI = 100


class VizError(KplabError, ValueError):
    """A diagram was asked for something that is not there (a chain, a service)."""


@dataclass(frozen=True, eq=False)
class Drawing:
    """A figure, the same content as text, and one sentence of alt text.

    * `figure`: the matplotlib Figure (not registered with pyplot).
    * `text`: the text twin -- sentences or a small text table that say what
      the picture says (numbered steps, probabilities, ...).
    * `alt`: one sentence describing the picture, for screen readers.
    * `table`: a pandas DataFrame of the data behind the picture, or None.
    * `kind`: which function drew it ("hook_map", "chain_tree", ...).
    * `data`: what was drawn, as plain Python values (the numbered path,
      the shares, ...), for widgets and tests.

    Render it with `png()` (fast: a redraw only renders what changed),
    `save()` or `figure.savefig()`. The artists a redraw changes are marked
    animated, so a bare `figure.canvas.draw()` (an interactive canvas)
    leaves them out; every save and `png()` includes them.
    """

    figure: Figure
    text: str
    alt: str
    table: object = None
    kind: str = ""
    data: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------
    def png(self, dpi: int | None = None, *, compress_level: int = 3) -> bytes:
        """The figure as PNG bytes (cached until the figure is redrawn).

        `compress_level` is zlib's (widgets ask for 1: bigger bytes, encoded faster)."""
        version = _version(self.figure)
        key = ("png", dpi, version, compress_level)
        got = self._cache.get(key)
        if got is None:
            got = render_png(self.figure, dpi, compress_level=compress_level)
            self._cache.clear()
            self._cache[key] = got
        return got

    def save(self, path, **kw) -> None:
        """Write the figure to a file (format from the suffix: .png, .svg, .pdf)."""
        self.figure.savefig(path, **kw)

    def labels(self) -> list:
        """Every visible text in the figure (titles, labels, legend), in drawing order."""
        out = []
        for t in self.figure.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_visible")):
            if t.get_visible() and t.get_text():
                out.append(t.get_text())
        return out

    # ------------------------------------------------------------------ notebook display
    def _repr_png_(self) -> bytes:
        return self.png()

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.png()).decode("ascii")
        alt = html.escape(self.alt, quote=True)
        return (
            f'<figure class="kplab-drawing" style="margin:0">'
            f'<img src="data:image/png;base64,{data}" alt="{alt}" style="max-width:100%;height:auto"/>'
            f'<figcaption><details><summary>{html.escape(self.alt)} (text version)</summary>'
            f'<pre style="white-space:pre-wrap">{html.escape(self.text)}</pre></details></figcaption>'
            f'</figure>'
        )

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<Drawing {self.kind}: {self.alt}>"


# --------------------------------------------------------------------------
# Figures and their reusable state

class FigState:
    """What one diagram function keeps on a Figure between redraws.

    `dynamic` lists the artists a redraw changes (marked animated); the
    rest of the figure is static, and `render_png` keeps it as a cached
    background, so a redraw only renders the dynamic artists again.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.version = 0
        self.layout = 0          # bumped at every reset
        self.key = None          # what the current layout was built for
        self.art: dict = {}      # named artists
        self.extra: dict = {}
        self.dynamic: list = []
        self.bg = None           # (key, saved region) of the static background

    def dyn(self, artist):
        """Register `artist` as dynamic (redrawn over the cached background)."""
        artist.set_animated(True)
        self.dynamic.append(artist)
        return artist


_STATES: "weakref.WeakKeyDictionary[Figure, FigState]" = weakref.WeakKeyDictionary()


def _version(fig) -> int:
    st = _STATES.get(fig)
    return st.version if st is not None else 0


def new_figure(size) -> Figure:
    fig = Figure(figsize=size, dpi=DPI)
    CachingCanvasAgg(fig)
    return fig


def prepare(into, kind: str, size) -> tuple:
    """(figure, state) to draw a `kind` diagram in.

    `into` is None (a new Figure), a Drawing or a Figure. A Figure that last
    held another kind of diagram (or none of kplab's) is cleared first.
    """
    if into is None:
        fig = new_figure(size)
    elif isinstance(into, Drawing):
        fig = into.figure
    elif isinstance(into, Figure):
        fig = into
    else:
        raise TypeError(f"into= wants a Drawing or a matplotlib Figure, not {type(into).__name__}")
    st = _STATES.get(fig)
    if st is None or st.kind != kind:
        fig.clear()
        st = FigState(kind)
        _STATES[fig] = st
    st.version += 1
    return fig, st


def reset(fig, st, key) -> None:
    """Forget the layout: clear the figure for a new one built for `key`."""
    fig.clear()
    st.art.clear()
    st.extra.clear()
    st.dynamic = []
    st.bg = None
    st.layout += 1
    st.key = key


def render_png(fig, dpi: int | None = None, *, compress_level: int = 3) -> bytes:
    """The figure as PNG bytes.

    For a kplab figure with dynamic artists, the static part is rendered
    once and kept; later renders restore it and draw only the dynamic
    artists (the same pixels as a full `savefig`, in a fraction of the
    time). Anything else goes through `savefig`.
    """
    st = _STATES.get(fig)
    canvas = fig.canvas
    if st is not None and dpi is not None and dpi != fig.dpi and isinstance(canvas, FigureCanvasAgg):
        # another resolution (a widget's smaller picture): the same fast path at that dpi
        # (its own cached background), then the figure's own dpi back
        own = fig.dpi
        fig._set_dpi(dpi, forward=False)
        try:
            return render_png(fig, None, compress_level=compress_level)
        finally:
            fig._set_dpi(own, forward=False)
    if st is None or (dpi is not None and dpi != fig.dpi) or not isinstance(canvas, FigureCanvasAgg):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi or fig.dpi, facecolor=fig.get_facecolor(),
                    metadata={"Software": "kplab"}, pil_kwargs={"compress_level": compress_level})
        return buf.getvalue()
    dynamic = [a for a in st.dynamic if a.axes is not None]
    if not dynamic:
        canvas.draw()
    else:
        w, h = fig.get_size_inches()
        key = (round(w, 4), round(h, 4), fig.dpi, st.layout)
        bgs = st.bg if isinstance(st.bg, dict) else {}
        if key not in bgs:
            canvas.draw()                 # static artists only: animated ones are skipped
            bgs = {k: v for k, v in bgs.items() if k[3] == st.layout}    # one per dpi, this layout
            bgs[key] = canvas.copy_from_bbox(fig.bbox)
            st.bg = bgs
        else:
            canvas.restore_region(bgs[key])
        renderer = canvas.get_renderer()
        for a in sorted(dynamic, key=lambda a: a.get_zorder()):
            if a.get_visible():
                a.draw(renderer)
    from PIL import Image                 # matplotlib's own PNG writer uses Pillow too
    buf = canvas.buffer_rgba()
    img = Image.frombuffer("RGBA", (buf.shape[1], buf.shape[0]), buf, "raw", "RGBA", 0, 1)
    if compress_level <= 1 and fig.patch.get_alpha() in (None, 1) and fig.patch.get_facecolor()[3] == 1:
        img = img.convert("RGB")          # an opaque figure: a quarter fewer bytes to compress
    out = io.BytesIO()
    img.save(out, format="png", compress_level=compress_level, dpi=(fig.dpi, fig.dpi))
    return out.getvalue()


def set_size(fig, w: float, h: float) -> None:
    cw, ch = fig.get_size_inches()
    if abs(cw - w) > 1e-3 or abs(ch - h) > 1e-3:
        fig.set_size_inches(w, h, forward=False)


__all__ = ["DPI", "Drawing", "FigState", "VizError", "new_figure", "prepare", "render_png", "reset", "set_size"]
