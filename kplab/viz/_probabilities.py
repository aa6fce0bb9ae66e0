"""probabilities: where a Service's new connections go, exactly (all paths
through the statistic cascade) and as observed in a seeded simulation."""
from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.colors import to_rgba
from matplotlib.patches import Patch, Rectangle

from ..netfilter import targets as T
from ._chains import fraction_text, resolve_service, rule_probability
from .drawing import Drawing, VizError, prepare, reset, set_size
from .palette import NEUTRAL, OKABE_ITO, STYLE

NONE_LABEL = "no endpoint"


def _rows(ruleset, view):
    """[(endpoint address, SEP chain, rule index in the service chain, rule probability)]."""
    nat = ruleset.tables.get("nat")
    chain = view.chains.get("internal")
    c = nat.chains.get(chain) if (nat is not None and chain) else None
    rules = list(enumerate(c.rules, 1)) if c is not None else []
    out = []
    for ep in view.endpoints:
        idx = prob = None
        for i, r in rules:
            if (ep.chain and r.jump == ep.chain) or (type(r.target) is T.Dnat and str(r.target.range) == ep.address):
                idx, prob = i, rule_probability(r)
                break
        out.append((ep.address, ep.chain, idx, 1.0 if (idx is not None and prob is None) else prob))
    return out


def _exact(node, pkt, from_):
    shares = Counter()
    outcome = {}
    for t in node.all_paths(pkt, from_):
        key = t.dnat_to or f"{NONE_LABEL} ({t.verdict})"
        shares[key] += t.probability
        outcome[key] = t.verdict
    return shares, outcome


def _observed(st, ruleset, view, from_, seed, observed):
    """The first `observed` outcomes of a seeded run (cached, and extended when asked for more)."""
    from ..node import Node
    key = (id(ruleset), view.name, from_, seed)
    cache = st.extra.get("sim")
    if cache is None or cache["key"] != key or cache["ruleset"] is not ruleset:
        node = Node(ruleset, seed=seed)
        cache = st.extra["sim"] = {"key": key, "node": node, "out": [], "ruleset": ruleset}
    node, out = cache["node"], cache["out"]
    while len(out) < observed:
        i = len(out)
        pkt = node.packet(from_, view.cluster_ip, view.protocol or "tcp", view.port, sport=1024 + i % 64000)
        t = node.send(pkt, from_, commit=False)
        out.append(t.dnat_to or f"{NONE_LABEL} ({t.verdict})")
    return Counter(out[:observed])


def probabilities(ruleset, service, *, observed: int = 0, seed: int = 0, from_: str = "client",
                  into=None, capacity: int | None = None) -> Drawing:
    """Per endpoint of `service`: the exact share of new connections next to
    the share observed in `observed` simulated connections.

    `service` is a service port name ("default/backend:http"), a cluster IP
    or an explain ServiceView. Exact shares come from
    `kplab.Node.all_paths` (every branch of the statistic cascade, with the
    kernel's stored odds); observed ones from a kplab Node seeded with
    `seed` sending `observed` first packets from `from_` (a name of the
    standard topology) with different source ports. The text twin explains
    how the per-rule probabilities (1/3, 1/2, 1) make equal shares.
    Redrawing `into=` the same Figure with another `observed` only extends
    the cached simulation and moves the bars.

    `capacity` (a widget's slider maximum) reserves room for that many
    endpoint rows: the figure keeps one size and one layout while the
    number of endpoints changes (up to `capacity`), so a redraw only touches
    the per-endpoint artists. The text twin, alt text and data are the same
    as without it.
    """
    from ..node import Node
    if observed < 0:
        raise VizError("observed must be 0 or more")
    view = resolve_service(ruleset, service)
    if not view.cluster_ip:
        raise VizError(f"service {view.name} has no cluster IP to send to")
    proto = view.protocol or "tcp"
    fig, st = prepare(into, "probabilities", (8, 4))
    exact_key = (id(ruleset), view.name, from_)
    if st.extra.get("exact_key") != exact_key or st.extra.get("ruleset") is not ruleset:
        node = Node(ruleset, seed=seed)
        pkt = node.packet(from_, view.cluster_ip, proto, view.port)
        exact, _ = _exact(node, pkt, from_)
        st.extra["exact_key"], st.extra["exact"] = exact_key, exact
        st.extra["ruleset"] = ruleset             # keep it alive: the keys hold its id
        st.extra.pop("sim", None)
        if not (isinstance(st.key, tuple) and st.key[:1] == ("capacity",)):
            st.key = None                         # a fixed-capacity layout does not depend on the rules
    exact = st.extra["exact"]
    seen = _observed(st, ruleset, view, from_, seed, observed) if observed else Counter()

    rows = _rows(ruleset, view)
    labels = [a for a, _, _, _ in rows]
    extra = sorted(k for k in set(exact) | set(seen) if k not in labels)
    labels += extra
    info = {a: (c, i, p) for a, c, i, p in rows}
    ex = [exact.get(a, 0.0) for a in labels]
    ob = [seen.get(a, 0) / observed if observed else 0.0 for a in labels]
    top = max(ex + ob + [0.0])
    xmax = min(1.0, max(0.25, top * 1.45)) if top > 0 else 1.0
    xmax = min(1.0, round(xmax * 20 + 0.4999) / 20)
    n = len(labels)
    if capacity is not None:
        nrows = max(int(capacity), n, 1)
        cur = st.key
        if isinstance(cur, tuple) and cur[:4] == ("capacity", view.name, from_, xmax) and cur[4] >= n:
            nrows = cur[4]                        # the layout has room already
        key = ("capacity", view.name, from_, xmax, nrows)
    else:
        key = (id(ruleset), view.name, from_, tuple(labels), xmax)
    if st.key != key:
        keep = {k: st.extra[k] for k in ("sim", "exact_key", "exact", "ruleset") if k in st.extra}
        reset(fig, st, key)
        st.extra.update(keep)
        if capacity is not None:
            _layout_capacity(fig, st, view, key[4], xmax)
        else:
            _layout(fig, st, view, labels, info, xmax, from_)
    art = st.art
    if capacity is not None:
        _fill_capacity(st, labels, info, key[4])
    for k, a in enumerate(labels):
        art["exact"][k].set_visible(True)
        art["exact"][k].set_width(ex[k])
        art["exact_txt"][k].set_position((ex[k] + xmax * 0.01, k - 0.2))
        art["exact_txt"][k].set_text(f"{ex[k] * 100:.1f}%")
        art["obs"][k].set_width(ob[k])
        art["obs"][k].set_visible(bool(observed))
        art["exact_txt"][k].set_visible(True)
        t = art["obs_txt"][k]
        t.set_visible(bool(observed))
        t.set_position((ob[k] + xmax * 0.01, k + 0.2))
        t.set_text(f"{ob[k] * 100:.1f}% ({seen.get(a, 0)})")
    art["sub"].set_text(f"{view.cluster_ip}:{view.port}/{proto} from {from_}: exact shares from all paths"
                        + (f"; observed: {observed} new connection{'s' if observed != 1 else ''} (seed {seed})"
                           if observed else "; no simulated connections yet (observed=0)"))

    # text twin and table
    head = f"{'endpoint':<22} {'rule':>4}  {'rule p':>7}  {'exact':>6}" + ("  observed" if observed else "")
    lines = [f"New connections to {view.name} ({view.cluster_ip}:{view.port}/{proto}) from {from_}:", head]
    records = []
    for k, a in enumerate(labels):
        chain, idx, p = info.get(a, (None, None, None))
        ptxt = fraction_text(p) if p is not None else "-"
        rule = f"#{idx}" if idx is not None else "-"
        line = f"{a:<22} {rule:>4}  {ptxt:>7}  {ex[k] * 100:5.1f}%"
        if observed:
            line += f"  {ob[k] * 100:5.1f}% ({seen.get(a, 0)} of {observed})"
        lines.append(line)
        records.append({"endpoint": a, "chain": chain, "rule": idx, "rule_probability": p, "exact": ex[k],
                        "observed_count": seen.get(a, 0), "observed_share": ob[k]})
    lines.append(_cascade_words(rows, view))
    df = pd.DataFrame(records, columns=["endpoint", "chain", "rule", "rule_probability", "exact", "observed_count",
                                        "observed_share"])
    df["rule"] = df["rule"].astype("Int64")
    n_ep = len(rows)
    alt = (f"Bar chart of where new connections to {view.name} go: {n_ep} endpoint{'s' if n_ep != 1 else ''}"
           + (f", each with an exact share of {fraction_text(ex[0])}" if n_ep and _even(ex[:n_ep]) else "")
           + (f", next to the shares observed in {observed} simulated connections" if observed else "") + ".")
    data = {"service": view.name, "endpoints": labels, "exact": dict(zip(labels, ex)),
            "observed": {a: seen.get(a, 0) for a in labels}, "n": observed}
    return Drawing(fig, "\n".join(lines), alt, df, "probabilities", data)


def _even(xs):
    return bool(xs) and max(xs) - min(xs) < 1e-6


def _frac(p):
    if p is None:
        return None
    f = Fraction(p).limit_denominator(1000)
    return f if abs(float(f) - p) < 2e-6 else p


def _ftext(x):
    if isinstance(x, Fraction):
        return "1" if x == 1 else f"{x.numerator}/{x.denominator}"
    return f"{x:.4g}"


def _cascade_words(rows, view):
    if not rows:
        return (f"{view.name} has no endpoints, so no rule sends its connections anywhere: "
                + (f"they meet {view.no_endpoints}." if view.no_endpoints else "they go nowhere."))
    parts = []
    left = Fraction(1)
    for k, (addr, _, idx, p) in enumerate(rows):
        q = _frac(p)
        if q is None:
            parts.append(f"rule #{idx} for {addr} has no statistic match")
            continue
        share = left * q
        rule = f"rule #{idx}" if idx is not None else "its rule"
        if k == 0:
            parts.append(f"{rule} matches {_ftext(q)} of all new connections ({_ftext(share)} → {addr})")
        elif q == 1 or (not isinstance(q, Fraction) and q >= 1.0):
            parts.append(f"the last rule, {rule}, has no statistic match (probability 1) and takes all "
                         f"{_ftext(left)} left → {addr}")
        else:
            parts.append(f"{rule} matches {_ftext(q)} of the {_ftext(left)} left = {_ftext(share)} → {addr}")
        left = left - share
    n = len(rows)
    tail = (f" So each of the {n} endpoints gets 1/{n}: the probability of rule i is 1/(n-i+1) of what is left."
            if n > 1 else " With one endpoint there is nothing to choose: every connection goes there.")
    return "How the rules share the connections: kube-proxy tries one rule per endpoint in order; " \
        + "; ".join(parts) + "." + tail


def _share_texts(ax, art, k, dyn, ex_style):
    """The exact and observed percentage labels of endpoint row `k`."""
    art["exact_txt"].append(dyn(ax.text(0, k - 0.2, "", fontsize=6.5, va="center", ha="left", zorder=4,
                                        color=ex_style.color, fontweight="bold", clip_on=False)))
    art["obs_txt"].append(dyn(ax.text(0, k + 0.2, "", fontsize=6.5, va="center", ha="left", zorder=4,
                                      color=OKABE_ITO["black"], clip_on=False)))


def _titles(ax, fig, art, view, dyn):
    h = fig.get_size_inches()[1]
    ax.text(0.02, 1 - 0.12 / h, f"Where new connections to {view.name} go", transform=fig.transFigure,
            fontsize=10, fontweight="bold", va="top", ha="left")
    art["sub"] = dyn(ax.text(0.02, 1 - 0.38 / h, "", transform=fig.transFigure, fontsize=7.5, va="top", ha="left"))


def _legend_handles(ex_style, ob_style, even_label):
    return [Patch(facecolor=ex_style.color, edgecolor=OKABE_ITO["black"], label="■ exact share (all paths)"),
            Patch(facecolor=NEUTRAL["white"], edgecolor=ob_style.color, hatch=ob_style.hatch,
                  label="▨ observed share (simulation)"),
            Line2D([], [], color=OKABE_ITO["black"], ls=":", lw=0.9, label=even_label)]


def _layout(fig, st, view, labels, info, xmax, from_):
    n = len(labels)
    height = 1.45 + 0.5 * max(n, 1)
    set_size(fig, 8.0, height)
    ax = fig.add_axes((0.2, 0.5 / height, 0.75, 1 - 0.5 / height - 0.9 / height))
    art, dyn = st.art, st.dyn
    ax.set_xlim(0, xmax)
    ax.set_ylim(n - 0.5, -0.5)
    ticks = []
    for a in labels:
        chain, idx, p = info.get(a, (None, None, None))
        if idx is not None:
            ticks.append(f"{a}\nrule #{idx}, p={fraction_text(p) if p is not None else '?'}")
        else:
            ticks.append(a)
    ax.set_yticks(range(n))
    ax.set_yticklabels(ticks, fontsize=7, family="DejaVu Sans Mono")
    ax.xaxis.set_major_formatter(lambda v, pos: f"{v * 100:.0f}%")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("share of new connections", fontsize=7.5)
    ax.grid(axis="x", color=NEUTRAL["light_grey"], lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    n_ep = sum(1 for a in labels if a in info)
    if n_ep:
        even = 1.0 / n_ep
        ax.axvline(even, color=OKABE_ITO["black"], lw=0.9, ls=":", zorder=1)
    art["exact"], art["obs"], art["exact_txt"], art["obs_txt"] = [], [], [], []
    ex_style, ob_style = STYLE["exact"], STYLE["observed"]
    # the bars are made as barh would make them (same Rectangles, same properties), but added
    # without barh's per-bar data-limit and autoscale bookkeeping: the limits are set above
    ks = range(n)
    ex_fc, ex_ec = to_rgba(ex_style.color), to_rgba(OKABE_ITO["black"])
    ob_fc, ob_ec = to_rgba(NEUTRAL["white"]), to_rgba(ob_style.color)

    def bar(y, fc, ec, lw, hatch):
        r = Rectangle((0.0, y - 0.18), 0.0, 0.36, facecolor=fc, edgecolor=ec, linewidth=lw,
                      label="_nolegend_", hatch=hatch, zorder=3)
        r.get_path()._interpolation_steps = 100
        r.sticky_edges.x.append(0.0)
        ax._set_artist_props(r)
        r.set_clip_path(ax.patch)
        ax._children.append(r)
        r._remove_method = ax._children.remove
        return r
    bars = [bar(k - 0.2, ex_fc, ex_ec, 0.6, None) for k in ks]
    obars = [bar(k + 0.2, ob_fc, ob_ec, 1.0, ob_style.hatch) for k in ks]
    for k in range(n):
        b, o = bars[k], obars[k]
        art["exact"].append(dyn(b))
        art["obs"].append(dyn(o))
        _share_texts(ax, art, k, dyn, ex_style)
    _titles(ax, fig, art, view, dyn)
    handles = _legend_handles(ex_style, ob_style,
                              f"even split 1/{n_ep}" if n_ep else "even split")
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=6.5, frameon=False,
              borderaxespad=0.1)


def _tick_text(a, idx, p):
    if idx is not None:
        return f"{a}\nrule #{idx}, p={fraction_text(p) if p is not None else '?'}"
    return a


def _fill_capacity(st, labels, info, rows):
    """The per-endpoint artists of a fixed-capacity layout: the first len(labels) rows shown."""
    art = st.art
    n = len(labels)
    for k in range(rows):
        on = k < n
        if on:
            chain, idx, p = info.get(labels[k], (None, None, None))
            art["ticks"][k].set_text(_tick_text(labels[k], idx, p))
        for name in ("ticks", "exact", "obs", "exact_txt", "obs_txt"):
            art[name][k].set_visible(on)
    n_ep = sum(1 for a in labels if a in info)
    line = art["even"]
    if n_ep:
        line.set_xdata([1.0 / n_ep, 1.0 / n_ep])
    line.set_visible(bool(n_ep))
    art["even_label"].set_text(f"even split 1/{n_ep}" if n_ep else "even split")


def _layout_capacity(fig, st, view, rows, xmax):
    """Like `_layout`, sized for `rows` endpoint rows, with every per-endpoint artist dynamic."""
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory
    height = 1.45 + 0.5 * rows
    set_size(fig, 8.0, height)
    ax = fig.add_axes((0.2, 0.5 / height, 0.75, 1 - 0.5 / height - 0.9 / height))
    art, dyn = st.art, st.dyn
    ax.set_xlim(0, xmax)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_yticks([])
    ax.xaxis.set_major_formatter(lambda v, pos: f"{v * 100:.0f}%")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("share of new connections", fontsize=7.5)
    ax.grid(axis="x", color=NEUTRAL["light_grey"], lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    tick_tr = blended_transform_factory(ax.transAxes, ax.transData) + ScaledTranslation(
        -7 / 72, 0, fig.dpi_scale_trans)
    art["ticks"] = [dyn(ax.text(0, k, "", fontsize=7, family="DejaVu Sans Mono", va="center", ha="right",
                                transform=tick_tr, clip_on=False)) for k in range(rows)]
    art["even"] = dyn(ax.axvline(0.5, color=OKABE_ITO["black"], lw=0.9, ls=":", zorder=1))
    art["exact"], art["obs"], art["exact_txt"], art["obs_txt"] = [], [], [], []
    ex_style, ob_style = STYLE["exact"], STYLE["observed"]
    ex_fc, ex_ec = to_rgba(ex_style.color), to_rgba(OKABE_ITO["black"])
    ob_fc, ob_ec = to_rgba(NEUTRAL["white"]), to_rgba(ob_style.color)
    for k in range(rows):
        b = Rectangle((0.0, k - 0.2 - 0.18), 0.0, 0.36, facecolor=ex_fc, edgecolor=ex_ec, linewidth=0.6,
                      hatch=None, zorder=3)
        o = Rectangle((0.0, k + 0.2 - 0.18), 0.0, 0.36, facecolor=ob_fc, edgecolor=ob_ec, linewidth=1.0,
                      hatch=ob_style.hatch, zorder=3)
        art["exact"].append(dyn(ax.add_artist(b)))
        art["obs"].append(dyn(ax.add_artist(o)))
        b.set_clip_path(ax.patch)
        o.set_clip_path(ax.patch)
        _share_texts(ax, art, k, dyn, ex_style)
    _titles(ax, fig, art, view, dyn)
    handles = _legend_handles(ex_style, ob_style,
                              "even split")
    leg = ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=6.5,
                    frameon=False, borderaxespad=0.1)
    dyn(leg)                                  # its "even split 1/n" entry changes with n
    art["even_label"] = leg.get_texts()[2]
