"""scale_plot: what a cluster's size costs kube-proxy's iptables mode, as two charts.

Left: seconds for each step (kube-proxy's render, the node's dump, kplab's
parse, the kernel's own `iptables-restore` when measured, explain, and one
trace) against the number of Services, both axes logarithmic: a line of
slope 1 means "ten times the Services, ten times the cost". Right: the rules
the kernel evaluates for the first packet of a connection to the last Service
of nat KUBE-SERVICES, next to the same for the first Service: the first grows
with every Service, the second does not.

The measurements come from `kplab.kube.scale` (`measure_series`, or the
precomputed `load_results()`); nothing is measured here. Each series has its
own Okabe-Ito colour, marker and line style, and the legend names it, so no
line is told apart by colour alone. The text twin is the table of numbers and
one sentence per growth factor.
"""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..kube.scale import COLUMNS, Measurement, ScaleResults, fmt_time, table_text
from .drawing import Drawing, VizError, prepare, reset, set_size
from .palette import NEUTRAL, OKABE_ITO

#: The time series of the left chart: (field, legend label, colour, marker, line style).
TIME_SERIES = (
    ("render_s", "render (kube-proxy's full sync)", OKABE_ITO["blue"], "o", "-"),
    ("save_s", "save (the node's iptables-save dump)", OKABE_ITO["sky_blue"], "s", "--"),
    ("parse_s", "parse (kplab loads the dump)", OKABE_ITO["orange"], "^", "-"),
    ("kernel_nft_s", "kernel nft restore (iptables-restore)", OKABE_ITO["black"], "D", ":"),
    ("kernel_legacy_s", "kernel legacy restore (iptables-legacy-restore)", NEUTRAL["grey"], "v", "-."),
    ("explain_s", "explain (read the Services back)", OKABE_ITO["reddish_purple"], "P", "--"),
    ("trace_s", "one trace (packet to the last Service)", OKABE_ITO["bluish_green"], "X", "-."),
)
#: The series of the right chart.
RULE_SERIES = (
    ("rules_evaluated", "packet to the LAST Service", OKABE_ITO["vermillion"], "o", "-"),
    ("rules_evaluated_first", "packet to the FIRST Service", OKABE_ITO["blue"], "s", "--"),
)


def _rows(results) -> list:
    if isinstance(results, ScaleResults):
        rows = list(results.rows)
    elif isinstance(results, Measurement):
        rows = [results]
    else:
        try:
            rows = list(results)
        except TypeError:
            raise VizError(f"scale_plot wants measurements (kplab.kube.scale), not {type(results).__name__}") from None
    if not rows or not all(isinstance(r, Measurement) for r in rows):
        raise VizError("scale_plot needs at least one Measurement (kplab.kube.scale.measure or load_results)")
    return sorted(rows, key=lambda r: r.services)


def _number(x, _pos=None) -> str:
    return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def _seconds(x, _pos=None) -> str:
    return fmt_time(x).replace(".0 ", " ") if x > 0 else "0"


def _short(label: str) -> str:
    return label.split(" (")[0]


def _factor(a, b) -> str:
    return f"x{b / a:,.0f}" if b / a >= 10 else f"x{b / a:.1f}"


def growth_sentences(rows) -> list:
    """One sentence per measured quantity: how much it grew from the smallest size to the largest."""
    if len(rows) < 2:
        return []
    lo, hi = rows[0], rows[-1]
    out = [f"From {lo.services:,} to {hi.services:,} Services ({_factor(lo.services, hi.services)}):"]
    out.append(f"- the ruleset grows from {lo.rules:,} to {hi.rules:,} rules ({_factor(lo.rules, hi.rules)});")
    if lo.rules_evaluated and hi.rules_evaluated:
        step = ("one more for each Service added"
                if hi.rules_evaluated - lo.rules_evaluated == hi.services - lo.services
                else _factor(lo.rules_evaluated, hi.rules_evaluated))
        out.append(f"- a first packet to the last Service meets {lo.rules_evaluated:,} then {hi.rules_evaluated:,} "
                   f"rules ({step})"
                   + (f"; one to the first Service meets {hi.rules_evaluated_first:,} at every size"
                      if lo.rules_evaluated_first == hi.rules_evaluated_first is not None else "") + ";")
    for name, label, *_ in TIME_SERIES:
        a, b = getattr(lo, name), getattr(hi, name)
        if a and b:
            out.append(f"- {_short(label)}: {fmt_time(a)} then {fmt_time(b)} ({_factor(a, b)});")
    out[-1] = out[-1][:-1] + "."
    return out


def scale_plot(results, *, title: str | None = None, into=None) -> Drawing:
    """Costs against cluster size for `results` (a ScaleResults, or Measurements).

    Series no row has (the kernel's times when not measured) are left out;
    rows without any time (`kplab.kube.scale.count_walks`) give the rules
    chart alone. Returns a Drawing whose `.table` is a DataFrame with one
    row per size."""
    rows = _rows(results)
    timed = [ts for ts in TIME_SERIES if any(getattr(r, ts[0]) for r in rows)]
    width, height = (10, 4.8) if timed else (6.4, 4.4)
    fig, st = prepare(into, "scale", (width, height))
    set_size(fig, width, height)
    key = tuple((r.services, r.endpoints) for r in rows)
    reset(fig, st, key)
    sizes = [r.services for r in rows]
    drawn = []
    if timed:
        ax_t, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": (3, 2)})
        fig.subplots_adjust(left=0.095, right=0.965, top=0.86, bottom=0.30, wspace=0.28)
        for name, label, colour, marker, ls in timed:
            pts = [(r.services, getattr(r, name)) for r in rows if getattr(r, name)]
            xs, ys = zip(*pts)
            ax_t.plot(xs, ys, color=colour, marker=marker, linestyle=ls, linewidth=1.6, markersize=6, label=label)
            drawn.append(name)
        ax_t.set_xscale("log")
        ax_t.set_yscale("log")
        ax_t.yaxis.set_major_formatter(FuncFormatter(_seconds))
        ax_t.yaxis.set_minor_formatter(NullFormatter())
        ax_t.set_xlabel("Services in the cluster (log scale)")
        ax_t.set_ylabel("seconds (log scale)")
        ax_t.set_title("Time for each step", fontsize=11)
        ax_t.grid(True, which="major", color=NEUTRAL["light_grey"], linewidth=0.6)
        ax_t.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, frameon=False)
        axes = (ax_t, ax_r)
    else:
        ax_r = fig.subplots(1, 1)
        fig.subplots_adjust(left=0.14, right=0.94, top=0.84, bottom=0.25)
        axes = (ax_r,)
    for name, label, colour, marker, ls in RULE_SERIES:
        pts = [(r.services, getattr(r, name)) for r in rows if getattr(r, name)]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax_r.plot(xs, ys, color=colour, marker=marker, linestyle=ls, linewidth=1.8, markersize=6, label=label)
        ax_r.annotate(f"{ys[-1]:,}", (xs[-1], ys[-1]), textcoords="offset points",
                      xytext=(-9, 0 if name == "rules_evaluated" else 6), ha="right",
                      va="center" if name == "rules_evaluated" else "bottom", fontsize=8, color=OKABE_ITO["black"])
    ax_r.set_xscale("log")
    ax_r.set_yscale("log")
    ax_r.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax_r.yaxis.set_major_formatter(FuncFormatter(_number))
    ax_r.yaxis.set_minor_formatter(NullFormatter())
    ax_r.set_xlabel("Services in the cluster (log scale)")
    ax_r.set_ylabel("rules evaluated (log scale)")
    ax_r.set_title("Rules one new connection meets", fontsize=11)
    ax_r.grid(True, which="major", color=NEUTRAL["light_grey"], linewidth=0.6)
    ax_r.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=1, frameon=False)
    for ax in axes:
        ax.xaxis.set_major_formatter(FuncFormatter(_number))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if len(sizes) == 1:
            ax.set_xlim(sizes[0] / 3, sizes[0] * 3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    e = rows[0].endpoints
    what = "cost against cluster size" if timed else "rules a new connection meets"
    fig.suptitle(title or (f"kube-proxy iptables mode: {what} ({e} endpoints per Service)" if timed
                           else f"kube-proxy iptables mode, {e} endpoints per Service"), fontsize=12)

    lines = [title or f"kube-proxy iptables mode, {what} ({e} endpoints per Service):", table_text(rows)]
    growth = growth_sentences(rows)
    if growth:
        lines += [""] + growth
    records = [{name: getattr(r, name) for name, _, _ in COLUMNS} for r in rows]
    df = pd.DataFrame(records)
    span = f"{sizes[0]:,} to {sizes[-1]:,} Services" if len(sizes) > 1 else f"{sizes[0]:,} Services"
    rules_words = ("the rules a new connection to the last Service meets, growing with the number of Services, "
                   "and to the first Service, which stays flat.")
    if timed:
        alt = (f"Two line charts on log-log axes for {span}: on the left, seconds for "
               + ", ".join(_short(label) for name, label, *_ in TIME_SERIES if name in drawn)
               + "; on the right, " + rules_words)
    else:
        alt = f"A line chart on log-log axes for {span}: " + rules_words
    data = {"sizes": sizes, "series": {name: [getattr(r, name) for r in rows] for name in drawn},
            "rules_evaluated": [r.rules_evaluated for r in rows],
            "rules_evaluated_first": [r.rules_evaluated_first for r in rows]}
    return Drawing(fig, "\n".join(lines), alt, df, "scale_plot", data)


def slope(xs, ys) -> float:
    """The least-squares slope of log(y) against log(x): 1.0 is linear growth."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y]
    if len(pts) < 2:
        raise VizError("a slope needs two points")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    num = sum((x - mx) * (y - my) for x, y in pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return num / den


__all__ = ["RULE_SERIES", "TIME_SERIES", "growth_sentences", "scale_plot", "slope"]
