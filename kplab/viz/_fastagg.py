"""An Agg canvas that caches text layout and glyph bitmaps between draws.

matplotlib 3.11's Agg renderer lays out and rasterises every glyph of every
text on every draw (a Python loop over FreeType calls). kplab's widgets
redraw the same labels again and again (a chain tree after a replicas
change, the hook map at every step), so this renderer keeps the layout of
each string and the bitmap of each glyph at each 1/64-pixel offset: the
pixels are exactly those of the stock renderer (same FreeType bitmaps, at
the same positions), only computed once. On a matplotlib without the
private API used here it falls back to the stock drawing.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag

try:
    from matplotlib.ft2font import RenderMode
except ImportError:                                    # pragma: no cover - older matplotlib
    RenderMode = None

_LAYOUTS: dict = {}
_METRICS: dict = {}
_GLYPHS: dict = {}
_LIMIT = 200_000


class CachingRendererAgg(RendererAgg):
    def get_text_width_height_descent(self, s, prop, ismath):
        # matplotlib's own metrics cache is per renderer, and a figure that changes size gets a
        # new renderer: keep the (pure) metrics across renderers too.
        if ismath == "TeX":
            return super().get_text_width_height_descent(s, prop, ismath)
        key = (s, hash(prop), prop.get_size_in_points(), bool(ismath), self.dpi)
        got = _METRICS.get(key)
        if got is None:
            got = super().get_text_width_height_descent(s, prop, ismath)
            if len(_METRICS) > _LIMIT:
                _METRICS.clear()
            _METRICS[key] = got
        return got

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath or RenderMode is None:
            return super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
        try:
            return self._draw_cached(gc, x, y, s, prop, angle, mtext)
        except AttributeError:                         # pragma: no cover - private API moved
            return super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    def _draw_cached(self, gc, x, y, s, prop, angle, mtext):
        size = prop.get_size_in_points()
        flags = get_hinting_flag()
        features = mtext.get_fontfeatures() if mtext is not None else None
        language = mtext.get_language() if mtext is not None else None
        lkey = (hash(prop), size, self.dpi, s, flags,
                tuple(features) if features is not None else None, language)
        items = _LAYOUTS.get(lkey)
        if items is None:
            font = self._prepare_font(prop)
            items = [(it.ft_object, it.glyph_index, it.x, it.y)
                     for it in font._layout(s, flags=flags, features=features, language=language)]
            if len(_LAYOUTS) > _LIMIT:
                _LAYOUTS.clear()
            _LAYOUTS[lkey] = items
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        aa = gc.get_antialiased()
        height = int(self.height)
        mode = RenderMode.NORMAL if aa else RenderMode.MONO
        matrix = None
        draw = self._renderer.draw_text_image
        for font, glyph_index, dx, dy in items:
            px = round(0x40 * (x + dx * cos - dy * sin))
            py = round(0x40 * (self.height - y + dx * sin + dy * cos))
            gkey = (font.fname, size, self.dpi, glyph_index, angle, px & 63, py & 63, aa, flags)
            got = _GLYPHS.get(gkey)
            if got is None:
                if matrix is None:
                    matrix = (0x10000 * np.array([[cos, -sin], [sin, cos]])).round().astype(int)
                font.set_size(size, self.dpi)
                font._set_transform(matrix, [px & 63, py & 63])
                bitmap = font._render_glyph(glyph_index, flags, mode)
                buffer = np.array(bitmap.buffer, copy=True)
                if not aa:
                    buffer *= 0xff
                got = (buffer, bitmap.left, bitmap.top)
                if len(_GLYPHS) > _LIMIT:
                    _GLYPHS.clear()
                _GLYPHS[gkey] = got
            buffer, left, top = got
            draw(buffer, left + (px >> 6), height - (top + (py >> 6)) + buffer.shape[0], 0, gc)


class CachingCanvasAgg(FigureCanvasAgg):
    def get_renderer(self):
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if getattr(self, "_lastKey", None) != key:
            self.renderer = CachingRendererAgg(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer
