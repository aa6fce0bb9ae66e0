"""hook_map: the five netfilter hooks, the routing decisions and the local
process, with each hook's tables in priority order, and a trace's path."""
from __future__ import annotations

from collections import deque

from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path

from ..netfilter.hooks import HOOK_ORDER, HOOKS, NAT_MANIP, PRIORITY
from . import _trace as tr
from .drawing import Drawing, VizError, prepare, reset, set_size
from .palette import FILL, NEUTRAL, OKABE_ITO, STYLE, SYMBOL

SIZE = (10.5, 6.9)
XMAX, YMAX = 100.0, 66.5
MONO = "DejaVu Sans Mono"

#: Places: (centre x, centre y, width, height) in axes units.
PLACES = {
    "IN": (6.0, 46.0, 10.0, 7.0),
    "PREROUTING": (23.0, 46.0, 17.0, 9.5),
    "RIN": (40.5, 46.0, 11.0, 6.5),
    "FORWARD": (58.0, 46.0, 15.0, 8.0),
    "POSTROUTING": (77.0, 46.0, 17.0, 8.0),
    "OUT": (94.0, 46.0, 10.0, 7.0),
    "INPUT": (40.5, 25.0, 17.0, 10.5),
    "OUTPUT": (77.0, 25.0, 17.0, 12.0),
    "LOCAL": (58.5, 8.0, 18.0, 6.0),
    "ROUT": (77.0, 8.0, 12.0, 6.0),
    "LO": (50.0, 58.5, 8.0, 3.4),
}

#: Where each place's note goes: (x, y, ha, va).
NOTE_AT = {
    "IN": (6.0, 41.8, "center", "top"),
    "PREROUTING": (23.0, 40.6, "center", "top"),
    "RIN": (34.5, 41.8, "right", "top"),
    "FORWARD": (58.0, 41.3, "center", "top"),
    "POSTROUTING": (86.2, 41.3, "left", "top"),
    "OUT": (94.0, 50.2, "center", "bottom"),
    "INPUT": (49.8, 26.5, "left", "center"),
    "OUTPUT": (86.2, 25.0, "left", "center"),
    "LOCAL": (58.5, 4.4, "center", "top"),
    "ROUT": (77.0, 4.4, "center", "top"),
    "LO": (50.0, 60.6, "center", "bottom"),
}


#: Characters per line of each place's note (the right-hand notes have less room).
NOTE_WRAP = {"OUTPUT": 22, "POSTROUTING": 22, "OUT": 18, "IN": 18, "INPUT": 30, "RIN": 24}


def _side(name, side):
    x, y, w, h = PLACES[name]
    return {"left": (x - w / 2, y), "right": (x + w / 2, y), "top": (x, y + h / 2),
            "bottom": (x, y - h / 2)}[side]


def _edges():
    s = _side
    lx, ly = s("LOCAL", "left")
    ix, iy = s("INPUT", "bottom")
    return {
        ("IN", "PREROUTING"): [s("IN", "right"), s("PREROUTING", "left")],
        ("PREROUTING", "RIN"): [s("PREROUTING", "right"), s("RIN", "left")],
        ("RIN", "FORWARD"): [s("RIN", "right"), s("FORWARD", "left")],
        ("FORWARD", "POSTROUTING"): [s("FORWARD", "right"), s("POSTROUTING", "left")],
        ("POSTROUTING", "OUT"): [s("POSTROUTING", "right"), s("OUT", "left")],
        ("RIN", "INPUT"): [s("RIN", "bottom"), s("INPUT", "top")],
        ("INPUT", "LOCAL"): [(ix, iy), (ix, ly), (lx, ly)],
        ("LOCAL", "ROUT"): [s("LOCAL", "right"), s("ROUT", "left")],
        ("ROUT", "OUTPUT"): [s("ROUT", "top"), s("OUTPUT", "bottom")],
        ("OUTPUT", "POSTROUTING"): [s("OUTPUT", "top"), s("POSTROUTING", "bottom")],
        ("POSTROUTING", "LO"): [s("POSTROUTING", "top"), (77.0, 58.5), s("LO", "right")],
        ("LO", "PREROUTING"): [s("LO", "left"), (23.0, 58.5), s("PREROUTING", "top")],
    }


EDGES = _edges()
_NEXT: dict = {}
for _a, _b in EDGES:
    _NEXT.setdefault(_a, []).append(_b)


def _route(a, b):
    """The primitive edges from place a to place b (shortest way), or []."""
    if a == b:
        return []
    prev = {a: None}
    q = deque([a])
    while q:
        n = q.popleft()
        if n == b:
            break
        for m in _NEXT.get(n, ()):
            if m not in prev:
                prev[m] = n
                q.append(m)
    if b not in prev:
        return []
    out, n = [], b
    while prev[n] is not None:
        out.append((prev[n], n))
        n = prev[n]
    return out[::-1]


def _table_label(hook, t):
    if t == "conntrack":
        return PRIORITY["conntrack"], "conntrack"
    if t == "confirm":
        return None, "ct confirm"
    if t == "nat":
        manip = NAT_MANIP[hook]
        return PRIORITY["nat-" + manip], f"nat ({manip})"
    name = "security*" if (t == "security" and hook == "INPUT") else t
    return PRIORITY[t], name


def _table_line(hook, t, mark=" "):
    prio, name = _table_label(hook, t)
    p = "last" if prio is None else str(prio)
    return f"{mark}{p:>5} {name}"


PLACE_LABEL = {
    "IN": "in\n(veth / eth0)",
    "OUT": "out\n(veth / eth0)",
    "LOCAL": "local process\n(the node itself)",
    "RIN": "routing\ndecision",
    "ROUT": "routing\n(local out)",
    "LO": "lo",
}


LINE_H = 1.3          # table line spacing, in axes units


def _line_y(name, k):
    x, y, w, h = PLACES[name]
    return y + h / 2 - 2.5 - LINE_H * k


def _layout(fig, st):
    """Build the map. Static: box bases, names, table lines, key, footnote.
    Dynamic (redrawn per trace): arrows, box outlines and tints, table
    marks, numbers, notes, the subtitle."""
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, XMAX)
    ax.set_ylim(0, YMAX)
    ax.set_axis_off()
    art = st.art
    dyn = st.dyn
    art["ax"] = ax
    ax.text(1.0, 65.0, "Netfilter hooks on the node", fontsize=10.5, fontweight="bold", va="top", ha="left",
            zorder=2)
    art["subtitle"] = dyn(ax.text(1.0, 62.3, "", fontsize=8, va="top", ha="left", zorder=5))
    art["edges"] = {}
    for key, pts in EDGES.items():
        codes = [Path.MOVETO] + [Path.LINETO] * (len(pts) - 1)
        a = FancyArrowPatch(path=Path(pts, codes), arrowstyle="-|>", mutation_scale=9, lw=1.1,
                            color=OKABE_ITO["black"], zorder=3, shrinkA=0, shrinkB=0)
        ax.add_patch(a)
        art["edges"][key] = dyn(a)
    art["boxes"], art["badges"], art["notes"], art["marks"], art["bands"] = {}, {}, {}, {}, {}
    art["labels"] = {}
    for name, (x, y, w, h) in PLACES.items():
        rounding = 2.5 if name in tr.ROUTING else 1.0
        shape = dict(boxstyle=f"round,pad=0,rounding_size={rounding}")
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, fc=FILL["box"], ec=NEUTRAL["light_grey"],
                                    lw=0.8, zorder=1, **shape))
        box = FancyBboxPatch((x - w / 2, y - h / 2), w, h, fc=(1, 1, 1, 0), ec=OKABE_ITO["black"], lw=1.2,
                             zorder=3.5, **shape)
        ax.add_patch(box)
        art["boxes"][name] = dyn(box)
        if name in HOOKS:
            ax.text(x, y + h / 2 - 0.7, name, ha="center", va="top", fontsize=8.5, fontweight="bold", zorder=2)
            marks, bands = {}, {}
            for k, t in enumerate(HOOK_ORDER[name]):
                ly = _line_y(name, k)
                ax.text(x - w / 2 + 1.6, ly, _table_line(name, t, ""), ha="left", va="top", fontsize=7,
                        family=MONO, zorder=2)
                band = Rectangle((x - w / 2 + 0.4, ly - LINE_H + 0.05), w - 0.8, LINE_H - 0.1, lw=0,
                                 fc=to_rgba(FILL["path"], 0.35), zorder=3.6, visible=False)
                ax.add_patch(band)
                bands[t] = dyn(band)
                marks[t] = dyn(ax.text(x - w / 2 + 0.5, ly, "▸", ha="left", va="top", fontsize=7, family=MONO,
                                       fontweight="bold", color=STYLE["path"].color, zorder=4, visible=False))
            art["marks"][name], art["bands"][name] = marks, bands
        elif name in ("IN", "OUT"):
            ax.text(x, y + 1.2, name.lower(), ha="center", va="center", fontsize=7.5, fontweight="bold",
                    zorder=2)
            art["labels"][name] = dyn(ax.text(x, y - 1.0, "(veth / eth0)", ha="center", va="center",
                                              fontsize=7, zorder=5))
        else:
            style = "italic" if name in tr.ROUTING else "normal"
            ax.text(x, y, PLACE_LABEL[name], ha="center", va="center", fontsize=7.5, style=style, zorder=2,
                    linespacing=1.1)
        art["badges"][name] = dyn(ax.text(x - w / 2, y + h / 2, "", ha="center", va="center", fontsize=7,
                                          fontweight="bold", color=NEUTRAL["white"], zorder=6, visible=False,
                                          bbox=dict(boxstyle="round,pad=0.25", fc=STYLE["path"].color,
                                                    ec=OKABE_ITO["black"], lw=0.8)))
        nx, ny, ha, va = NOTE_AT[name]
        art["notes"][name] = dyn(ax.text(nx, ny, "", ha=ha, va=va, fontsize=7, zorder=6, visible=False,
                                         linespacing=1.1, fontweight="bold"))
    art["now"] = dyn(ax.text(0, 0, "", fontsize=7.5, fontweight="bold", zorder=7, visible=False, ha="left",
                             va="bottom", bbox=dict(boxstyle="round,pad=0.2", fc=FILL["current"],
                                                    ec=OKABE_ITO["black"], lw=0.8)))
    ax.text(1.0, 0.6, "Tables run top to bottom at each hook (priority numbers from the kernel). "
            "* iptables-nft puts security at 150, after nat (100) at INPUT; iptables-legacy used 50.",
            fontsize=6, ha="left", va="bottom", color=OKABE_ITO["black"], zorder=2)
    handles = [
        Line2D([], [], color=STYLE["path"].color, lw=2.4, ls="-", marker=">", label="packet path (numbered)"),
        Line2D([], [], color=STYLE["todo"].color, lw=1.6, ls="--", marker=">", label="path still to come"),
        Line2D([], [], color=STYLE["not_taken"].color, lw=1.0, ls=":", label="not on the path (greyed)"),
        Line2D([], [], color=OKABE_ITO["black"], lw=0, marker="*", ms=9, mfc=STYLE["current"].color,
               label="★ current step"),
        Line2D([], [], color=STYLE["dnat"].color, lw=1.4, ls="--", marker="D", ms=4,
               label="⇄ address changed (NAT)"),
        Line2D([], [], color=STYLE["drop"].color, lw=1.4, ls="-.", marker="X", ms=5, label="✗ dropped"),
        Line2D([], [], color=STYLE["reject"].color, lw=1.4, ls=STYLE["reject"].linestyle, marker="s", ms=4,
               label="⊘ rejected"),
        Line2D([], [], color=STYLE["path"].color, lw=0, marker=r"$\blacktriangleright$", ms=6,
               label="▸ table that acted"),
    ]
    leg = ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.006, 0.04), fontsize=6.5,
                    frameon=True, title="Key", title_fontsize=7, handlelength=2.6, borderpad=0.5)
    leg.set_zorder(2)
    leg.get_frame().set_edgecolor(NEUTRAL["light_grey"])


def _box_style(box, role):
    if role == "visited":
        box.set_facecolor(to_rgba(FILL["path"], 0.16))
        box.set_edgecolor(STYLE["path"].color)
        box.set_linewidth(2.2)
        box.set_linestyle("-")
    elif role == "current":
        box.set_facecolor(to_rgba(FILL["current"], 0.3))
        box.set_edgecolor(OKABE_ITO["black"])
        box.set_linewidth(2.8)
        box.set_linestyle("-")
    elif role == "todo":
        box.set_facecolor(to_rgba(FILL["box"], 0.0))
        box.set_edgecolor(STYLE["todo"].color)
        box.set_linewidth(1.6)
        box.set_linestyle("--")
    elif role == "off":
        box.set_facecolor(to_rgba(FILL["idle"], 0.72))
        box.set_edgecolor(STYLE["not_taken"].color)
        box.set_linewidth(0.9)
        box.set_linestyle(":")
    elif role in ("drop", "reject"):
        box.set_facecolor(to_rgba(FILL["path"], 0.16))
        box.set_edgecolor(STYLE[role].color)
        box.set_linewidth(2.8)
        box.set_linestyle(STYLE[role].linestyle)
    else:                                           # plain map, no trace
        box.set_facecolor(to_rgba(FILL["box"], 0.0))
        box.set_edgecolor(OKABE_ITO["black"])
        box.set_linewidth(1.2)
        box.set_linestyle("-")


def _edge_style(a, role):
    if role == "done":
        a.set_color(STYLE["path"].color)
        a.set_linewidth(2.6)
        a.set_linestyle("-")
    elif role == "todo":
        a.set_color(STYLE["todo"].color)
        a.set_linewidth(1.7)
        a.set_linestyle("--")
    elif role == "off":
        a.set_color(STYLE["not_taken"].color)
        a.set_linewidth(0.9)
        a.set_linestyle(":")
    else:
        a.set_color(OKABE_ITO["black"])
        a.set_linewidth(1.1)
        a.set_linestyle("-")


def _path_kind(trace, stops_):
    places = [s.place for s in stops_]
    if "FORWARD" in places:
        return "forwarded"
    if places[0] == "LOCAL" and "INPUT" in places:
        return "sent by the node to itself"
    if places[0] == "LOCAL":
        return "local out"
    if "INPUT" in places or places[-1] == "LOCAL":
        return "local in"
    return "arriving"


def hook_map(trace=None, *, step: int | None = None, into=None) -> Drawing:
    """The netfilter hooks as boxes, with each hook's tables in priority order.

    With a `trace` (a kplab Trace), the packet's path is drawn: the places
    it passed are numbered in order (the same numbers as the text twin),
    NAT changes and drops are written next to the hook where they happened,
    and inside each hook the tables that acted are marked ▸. `step=k`
    (1-based, the `step` column of `trace_table`) marks where step k
    happened with ★ and draws the rest of the path as still to come
    (`step=0`: the packet has not entered yet). `into=` a Drawing or Figure
    redraws in place, reusing its artists.
    """
    if step is not None and trace is None:
        raise VizError("step= needs a trace")
    fig, st = prepare(into, "hook_map", SIZE)
    if st.key != "layout":
        reset(fig, st, "layout")
        set_size(fig, *SIZE)
        _layout(fig, st)
    art = st.art
    boxes, edges = art["boxes"], art["edges"]

    if trace is None:
        for name, box in boxes.items():
            _box_style(box, "plain")
            art["badges"][name].set_visible(False)
            art["notes"][name].set_visible(False)
        for name in art["marks"]:
            for t in art["marks"][name]:
                art["marks"][name][t].set_visible(False)
                art["bands"][name][t].set_visible(False)
        for a in edges.values():
            _edge_style(a, "plain")
        art["labels"]["IN"].set_text("(veth / eth0)")
        art["labels"]["OUT"].set_text("(veth / eth0)")
        art["subtitle"].set_text("Arriving: PREROUTING → routing → INPUT (for the node) or FORWARD → "
                                 "POSTROUTING. Sent by the node: routing → OUTPUT → POSTROUTING.")
        art["now"].set_visible(False)
        text = _plain_text()
        alt = ("Diagram of the five netfilter hooks (PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING), "
               "the routing decisions and the local process, with each hook's tables in priority order.")
        return Drawing(fig, text, alt, None, "hook_map", {"path": [], "stops": [], "hooks": [], "current": None})

    stops_ = tr.stops(trace)
    n_steps = len(trace.steps)
    if step is not None and not 0 <= step <= n_steps:
        raise VizError(f"step={step} is outside the trace (0 to {n_steps})")
    cur_stop = None
    if step is not None:
        if step == 0:
            cur_stop = 0
        else:
            cur_stop = next(k for k, s in enumerate(stops_) if step in s.steps)

    # which places and edges the walk used, and when
    place_first = {}            # place -> index of first stop there
    numbers = {}
    for k, s in enumerate(stops_):
        place_first.setdefault(s.place, k)
        numbers.setdefault(s.place, []).append(k + 1)
    edge_when = {}              # primitive edge -> index of the stop it leads to
    passed = {}                 # place passed through without a stop -> stop index after it
    for k in range(1, len(stops_)):
        seg = _route(stops_[k - 1].place, stops_[k].place)
        for e in seg:
            edge_when.setdefault(e, k)
        for e in seg[:-1]:
            passed.setdefault(e[1], k)

    end = stops_[-1]
    ended_here = trace.verdict != "ACCEPT" and (cur_stop is None or cur_stop == len(stops_) - 1)
    for name, box in boxes.items():
        when = place_first.get(name, passed.get(name))
        if when is None:
            role = "off"
        elif cur_stop is not None and when > cur_stop:
            role = "todo"
        else:
            role = "visited"
        if cur_stop is not None and stops_[cur_stop].place == name:
            role = "current"
        if ended_here and name == end.place:
            role = "reject" if trace.verdict == "REJECT" else "drop"
        _box_style(box, role)
        badge = art["badges"][name]
        if name in numbers:
            badge.set_text(",".join(map(str, numbers[name])))
            badge.set_visible(True)
            done = cur_stop is None or min(numbers[name]) - 1 <= cur_stop
            badge.get_bbox_patch().set_facecolor(STYLE["path"].color if done else STYLE["todo"].color)
        else:
            badge.set_visible(False)
    for key, a in edges.items():
        k = edge_when.get(key)
        if k is None:
            _edge_style(a, "off")
        elif cur_stop is not None and k > cur_stop:
            _edge_style(a, "todo")
        else:
            _edge_style(a, "done")

    # tables that acted, per hook (over every stop at that hook)
    acted = {}
    for s in stops_:
        if s.is_hook:
            acted.setdefault(s.place, set()).update(tr.walked_tables(trace, s))
    cur_tables = set()
    if cur_stop is not None and step:
        sp = trace.steps[step - 1]
        cur_tables = {tr.ct_table(sp) if sp.kind == "conntrack" else "nat" if sp.kind == "nat" else sp.table}
    for name, marks in art["marks"].items():
        for t, mark in marks.items():
            band = art["bands"][name][t]
            here = t in acted.get(name, ())
            is_cur = cur_stop is not None and stops_[cur_stop].place == name and t in cur_tables
            if is_cur:
                mark.set_text("★")
                mark.set_color(OKABE_ITO["black"])
                band.set_facecolor(to_rgba(FILL["current"], 0.55))
            elif here:
                mark.set_text("▸")
                mark.set_color(STYLE["path"].color)
                band.set_facecolor(to_rgba(FILL["path"], 0.3))
            mark.set_visible(here or is_cur)
            band.set_visible(here or is_cur)

    # notes: NAT changes, drops
    notes = {}
    for k, s in enumerate(stops_):
        o = tr.stop_outcome(trace, s)
        if o is not None:
            notes.setdefault(s.place, []).append((k, o))
    for name, txt in art["notes"].items():
        items = notes.get(name)
        if not items:
            txt.set_visible(False)
            continue
        role = items[-1][1][0]
        width = NOTE_WRAP.get(name, 34)
        words = [f"{SYMBOL[r] if r in SYMBOL else SYMBOL['nat']} {_wrap(label, width)}" for _, (r, label) in items]
        txt.set_text("\n".join(words))
        txt.set_color(STYLE[role].color if role in STYLE else OKABE_ITO["black"])
        later = cur_stop is not None and min(k for k, _ in items) > cur_stop
        txt.set_alpha(0.45 if later else 1.0)
        txt.set_visible(True)

    origin_words = "the node itself" if tr.is_local_origin(trace) else trace.origin
    art["labels"]["IN"].set_text(f"from {trace.origin}" if stops_[0].place == "IN" else "(veth / eth0)")
    if trace.delivered_to and trace.delivered_to != "node":
        art["labels"]["OUT"].set_text(f"to {trace.delivered_to}")
    else:
        art["labels"]["OUT"].set_text("(veth / eth0)")
    kind = _path_kind(trace, stops_)
    hooks = tr.hook_sequence(trace)
    sub = f"{trace.packet} from {origin_words} ({kind}): {trace.summary()}"
    art["subtitle"].set_text(sub if len(sub) <= 175 else sub[:174] + "…")

    now = art["now"]
    if cur_stop is not None:
        place = stops_[cur_stop].place
        x, y, w, h = PLACES[place]
        now.set_position((x + w / 2 - 0.5, y + h / 2 + 0.3))
        now.set_text(f"★ step {step}" if step else "★ start")
        now.set_visible(True)
    else:
        now.set_visible(False)

    lines = [f"{trace.packet} from {origin_words}: {kind}, through "
             f"{' → '.join(hooks) if hooks else 'no hook'}."]
    for k, s in enumerate(stops_, 1):
        lines.append(f"{k}. {tr.stop_line(trace, s)}")
    lines.append(trace.summary())
    if step is not None:
        if step == 0:
            lines.append("Current step 0: the packet has not entered the node yet.")
        else:
            sp = trace.steps[step - 1]
            lines.append(f"Current step {step} of {n_steps}, at stop {cur_stop + 1} "
                         f"({tr.PLACE_NAMES.get(stops_[cur_stop].place, stops_[cur_stop].place)}): "
                         f"{_step_words(sp)}")
    text = "\n".join(lines)
    alt = (f"Netfilter hook diagram: {trace.packet} from {origin_words} passes "
           f"{', '.join(hooks) if hooks else 'no hook'} and is {tr.outcome_words(trace)}"
           + (f"; step {step} is highlighted" if step else "") + ".")
    data = {"path": [s.place for s in stops_], "stops": [(s.place, list(s.steps)) for s in stops_],
            "hooks": hooks, "current": None if cur_stop is None else stops_[cur_stop].place,
            "kind": kind}
    return Drawing(fig, text, alt, None, "hook_map", data)


def _wrap(label, width=34):
    if len(label) <= width:
        return label
    words, lines, cur = label.split(" "), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    return "\n".join(lines[:3]) + ("…" if len(lines) > 3 else "")


def _step_words(s) -> str:
    if s.kind == "rule":
        if s.matched:
            return f"{s.hook} {s.table} {s.chain} #{s.index} matched: {s.rule} => {s.verdict}"
        return f"{s.hook} {s.table} {s.chain} #{s.index} did not match ({s.reason})"
    if s.kind == "skipped":
        return f"{s.hook} {s.table} {s.chain} #{s.index}-#{s.index + s.count - 1}: {s.count} rules, none matched"
    if s.kind == "policy":
        return f"{s.hook} {s.table} {s.chain}: end of built-in chain, policy {s.verdict}"
    head = f"{s.hook} " if s.hook else ""
    return f"{head}{s.kind}: {s.reason}"


def _plain_text() -> str:
    lines = ["The five netfilter hooks, each with its tables in the order they run (kernel priority):"]
    for h in HOOKS:
        parts = []
        for t in HOOK_ORDER[h]:
            prio, name = _table_label(h, t)
            parts.append(f"{name} ({'last' if prio is None else prio})")
        lines.append(f"- {h}: " + ", ".join(parts))
    lines.append("* With iptables-nft the security table runs at 150, after nat (100) at INPUT; "
                 "iptables-legacy used 50.")
    lines.append("Paths: a packet for this node takes PREROUTING → routing decision → INPUT → local process; "
                 "a forwarded packet PREROUTING → routing decision → FORWARD → POSTROUTING → out; "
                 "a packet the node sends: local process → routing decision → OUTPUT → POSTROUTING → out "
                 "(or back in through lo when it is for the node itself).")
    return "\n".join(lines)
