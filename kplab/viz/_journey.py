"""journey: a packet's way as swim lanes (sender, node(s), wire, receiver)
with numbered steps and the places where an address changes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ..netfilter.hooks import HOOKS
from . import _trace as tr
from .drawing import Drawing, VizError, prepare, reset, set_size
from .palette import FILL, NEUTRAL, OKABE_ITO, STYLE, SYMBOL

LANE = 1.0            # lane height (inches)
DX = 0.86             # between events
LEFT = 1.55           # lane labels
TOP = 0.62
BOTTOM = 0.42
MAX_WIDTH = 17.0

ROLE_MARKER = {"path": "o", "route": "D", "dnat": "D", "snat": "P", "conntrack": "d", "drop": "X", "reject": "s",
               "accept": "^", "wire": "|", "send": "o"}


@dataclass
class _Event:
    lane: int
    label: str                   # under the marker
    role: str
    line: str                    # the text twin's line (without the number)
    note: str = ""               # above the marker: what changed
    hook: str | None = None
    extra: dict = field(default_factory=dict)


def _node_events(trace, lane, where, events):
    """Events for one node's walk: its hooks and routing decisions."""
    for stop in tr.stops(trace):
        p = stop.place
        if p in ("IN", "OUT") or (p == "LOCAL" and (not stop.steps or _only_deliver(trace, stop))):
            continue
        outcome = tr.stop_outcome(trace, stop)
        if p in HOOKS:
            role = outcome[0] if outcome else "path"
            events.append(_Event(lane, p, role, tr.stop_line(trace, stop, where), _note(outcome), hook=p))
        else:
            label = {"RIN": "routing", "ROUT": "routing\n(local out)", "LO": "lo\n(loopback)"}.get(p, p.lower())
            role = outcome[0] if outcome else "route"
            events.append(_Event(lane, label, role, tr.stop_line(trace, stop, where), _note(outcome)))


def _only_deliver(trace, stop):
    return all(trace.steps[i - 1].kind == "deliver" for i in stop.steps)


def _note(outcome):
    if not outcome:
        return ""
    role, label = outcome
    sym = SYMBOL.get(role, SYMBOL["nat"])
    if role == "dnat" and "→" in label:
        return f"{sym} DNAT\n→ {label.rsplit('→', 1)[1].strip()}"
    if role == "snat" and "→" in label:
        head = label.split(":", 1)[0]
        return f"{sym} {head}\nsrc → {label.rsplit('→', 1)[1].strip()}"
    if role == "snat":
        return f"{sym} {label.split(':', 1)[0]}\n(src unchanged)"
    if role == "conntrack" and "→" in label:
        what = "dst" if "destination" in label else "src"
        return f"{sym} conntrack\n{what} → {label.rsplit('→', 1)[1].strip()}"
    if role in ("drop", "reject"):
        return f"{sym} {label.split(':', 1)[0].split(' by ')[0]}"
    return f"{sym} {label}"


def _who(name, local_words="local process"):
    return f"node ({local_words})" if name == "node" else name


def _events_for(obj):
    """(lanes, events, header, summary lines, alt words) for a Journey or a Trace."""
    lanes, events = [], []

    def lane(label, kind):
        for k, (lab, _) in enumerate(lanes):
            if lab == label:
                return k
        lanes.append((label, kind))
        return len(lanes) - 1

    if hasattr(obj, "hops"):                     # a kplab.kube.flow.Journey
        j = obj
        node_names = {h.node for h in j.hops if h.node}
        src_kind = "node" if j.origin in node_names else "external host" if not j.hops or j.hops[0].on_wire \
            else "source Pod"
        src = lane(j.origin, src_kind)
        events.append(_Event(src, "sends", "send", f"{j.origin} ({src_kind}) sends {j.packet}",
                             note=f"{j.packet.endpoint('src')}\n→ {j.packet.endpoint('dst')}"))
        for h in j.hops:
            if h.on_wire:
                w = lane("wire", "wire")
                events.append(_Event(w, "wire", "wire", f"wire: {h.note}"))
            else:
                n = lane(h.node, "node")
                _node_events(h.trace, n, h.node, events)
        if j.delivered_to:
            dst_kind = "node" if j.delivered_to in node_names or j.delivered_to == "node" else \
                "destination Pod" if j.final is not None and j.delivered_to not in ("external", "peer") else "receiver"
            d = lane(j.delivered_to if j.delivered_to != "node" else "node (local process)", dst_kind)
            events.append(_Event(d, "receives", "accept", f"{j.delivered_to} ({dst_kind}) receives {j.final}",
                                 note=f"{j.final.endpoint('src')}\n→ {j.final.endpoint('dst')}"))
        header = f"{j.packet} from {j.origin}"
        changes = j.changes()
        outcome = (f"delivered to {j.delivered_to} as {j.final}" if j.delivered_to
                   else f"{j.verdict}: the packet did not arrive")
        nodes = [h.node for h in j.hops if h.node]
        alt_words = (f"across {', '.join(dict.fromkeys(nodes))}" if nodes else "")
        traces = [h.trace for h in j.hops if h.trace is not None]
        return lanes, events, header, changes, outcome, alt_words, traces
    t = obj
    if not hasattr(t, "steps"):
        raise VizError(f"journey() wants a kplab Trace or a kplab.kube.flow.Journey, not {type(obj).__name__}")
    local = tr.is_local_origin(t)
    src_label = "node (local process)" if local else t.origin
    src = lane(src_label, "node" if local else "sender")
    events.append(_Event(src, "sends", "send", f"{src_label} sends {t.packet}",
                         note=f"{t.packet.endpoint('src')}\n→ {t.packet.endpoint('dst')}"))
    n = lane("node" if not local else "node (netfilter)", "node")
    _node_events(t, n, "node", events)
    if t.delivered_to:
        dl = "node (local process)" if t.delivered_to == "node" else t.delivered_to
        d = lane(dl if dl != src_label else dl + " ", "receiver")
        events.append(_Event(d, "receives", "accept", f"{dl} receives {t.final}",
                             note=f"{t.final.endpoint('src')}\n→ {t.final.endpoint('dst')}"))
    changes = []
    for s in t.steps:
        ch = tr.change_of(s)
        if ch:
            changes.append(f"{s.hook}: {ch[1]}")
    return lanes, events, f"{t.packet} from {t.origin}", changes, t.summary(), "", [t]


def _static(ax, lanes, width):
    """What stays while the lane layout stays: stripes, title, key."""
    for k, (label, kind) in enumerate(lanes):
        y0 = TOP + k * LANE
        ax.add_patch(Rectangle((0.08, y0 + 0.03), width - 0.16, LANE - 0.06, lw=0.6, zorder=0,
                               fc=FILL["idle"] if k % 2 == 0 else FILL["box"], ec=NEUTRAL["light_grey"],
                               ls="--" if kind == "wire" else "-"))
    ax.text(0.18, 0.12, "Packet journey", fontsize=10, fontweight="bold", va="top", ha="left", zorder=1)
    handles = [
        Line2D([], [], color=STYLE["path"].color, lw=2, marker="o", ms=5, label="numbered stop on the path"),
        Line2D([], [], color=OKABE_ITO["black"], lw=0, marker="D", ms=5, mfc=NEUTRAL["white"], label="◇ routing"),
        Line2D([], [], color=OKABE_ITO["black"], lw=0, marker="D", ms=6, mfc=STYLE["dnat"].color,
               label="⇄ DNAT: destination changed"),
        Line2D([], [], color=OKABE_ITO["black"], lw=0, marker="P", ms=7, mfc=STYLE["snat"].color,
               label="⇆ SNAT/MASQUERADE: source changed"),
        Line2D([], [], color=OKABE_ITO["black"], lw=0, marker="d", ms=7, mfc=STYLE["conntrack"].color,
               label="↺ conntrack reverses a translation"),
        Line2D([], [], color=OKABE_ITO["black"], lw=0, marker="X", ms=7, mfc=STYLE["drop"].color, label="✗ dropped"),
    ]
    leg = ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 0.0), ncol=3, fontsize=6.2, frameon=False,
                    handlelength=1.8, columnspacing=1.0, borderaxespad=0.2)
    leg.set_zorder(1)


def journey(journey_or_trace, *, into=None) -> Drawing:
    """A packet's journey as swim lanes: the sender, each node's hooks, the
    wire between nodes and the receiver, left to right in time.

    Takes a `kplab.kube.flow.Journey` (from `Cluster.send` /
    `ClusterNetwork.send`, several nodes) or one `Trace` (one node). Every
    stop is numbered as in the text twin; where the destination or the
    source changes (DNAT, SNAT/MASQUERADE, conntrack reversing a
    translation on a reply) the new address is written above the stop,
    with its own marker. `into=` a Drawing or Figure reuses the Figure.
    """
    lanes, events, header, changes, outcome, alt_words, traces = _events_for(journey_or_trace)
    n = len(events)
    # sizes in steps, so that journeys of a similar shape share a layout (and its cached pixels)
    left = max(LEFT, math.ceil((0.3 + 0.07 * max(len(lab) for lab, _ in lanes)) * 4) / 4)
    slots = max(8, -(-n // 4) * 4)
    dx = DX if left + slots * DX + 0.9 <= MAX_WIDTH else max(0.55, (MAX_WIDTH - left - 0.9) / slots)
    width = left + slots * dx + 0.9
    height = TOP + len(lanes) * LANE + BOTTOM
    fig, st = prepare(into, "journey", (width, height))
    key = (round(width, 3), round(height, 3), tuple(kind == "wire" for _, kind in lanes))
    if st.key == key:
        # the same lanes and size: keep the static part (and its cached pixels), redraw the rest
        for a in st.dynamic:
            a.remove()
        st.dynamic = []
        ax = st.art["ax"]
    else:
        reset(fig, st, key)
        set_size(fig, width, height)
        ax = st.art["ax"] = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_axis_off()
        _static(ax, lanes, width)
    dyn = st.dyn
    for k, (label, kind) in enumerate(lanes):
        y0 = TOP + k * LANE
        dyn(ax.text(0.18, y0 + LANE / 2 - 0.08, label, fontsize=8, fontweight="bold", va="center", ha="left",
                    zorder=1))
        dyn(ax.text(0.18, y0 + LANE / 2 + 0.12, kind, fontsize=6.5, va="center", ha="left",
                    color=OKABE_ITO["black"], style="italic", zorder=1))

    def lane_y(k):
        return TOP + (k + 0.5) * LANE

    dyn(ax.text(0.18, 0.36, f"{header}: {outcome}"[:190], fontsize=7.5, va="top", ha="left"))
    xs = [left + (i + 0.5) * dx for i in range(n)]
    ys = [lane_y(e.lane) for e in events]
    dropped = events and events[-1].role in ("drop", "reject")
    dyn(ax.add_line(Line2D(xs, ys, color=STYLE["path"].color, lw=2.0, ls="-", zorder=2, solid_capstyle="round")))
    for i, e in enumerate(events):
        x, y = xs[i], ys[i]
        role = e.role
        st_ = STYLE.get(role, STYLE["path"])
        marker = ROLE_MARKER.get(role, "o")
        size = 9 if role in ("dnat", "snat", "conntrack", "drop", "reject") else 7
        face = st_.color if role not in ("path", "send", "route", "wire") else (
            NEUTRAL["white"] if role in ("route", "wire") else STYLE["path"].color)
        dyn(ax.add_line(Line2D([x], [y], marker=marker, ms=size, mfc=face, mec=OKABE_ITO["black"], mew=0.8, lw=0,
                               color=OKABE_ITO["black"], zorder=4)))
        dyn(ax.text(x, y - 0.12, str(i + 1), fontsize=6.5, fontweight="bold", ha="center", va="bottom", zorder=5,
                    color=OKABE_ITO["black"],
                    bbox=dict(boxstyle="round,pad=0.12", fc=NEUTRAL["white"], ec=STYLE["path"].color, lw=0.6)))
        dyn(ax.text(x, y + 0.12, e.label, fontsize=6.5, ha="center", va="top", zorder=5, linespacing=1.0,
                    fontweight="bold" if e.hook else "normal"))
        if e.note:
            colour = st_.color if role not in ("send", "accept", "path") else OKABE_ITO["black"]
            dyn(ax.text(x, y - 0.3, e.note, fontsize=6.3, ha="center", va="bottom", zorder=5, color=colour,
                        fontweight="bold" if role in ("dnat", "snat", "conntrack", "drop", "reject") else "normal",
                        linespacing=1.05))

    lines = [f"{header}:"]
    for i, e in enumerate(events, 1):
        lines.append(f"{i}. {e.line}")
    if changes:
        lines.append("Where the addresses change:")
        lines.extend(f"- {c}" for c in changes)
    else:
        lines.append("No address changes on the way.")
    lines.append(outcome[:1].upper() + outcome[1:] if outcome else "")
    hooks = [f"{e.hook}" for e in events if e.hook]
    n_changes = len(changes)
    alt = (f"Swim-lane diagram of {header} {alt_words}".rstrip() + f": {n} numbered stops through "
           f"{len([e for e in events if e.hook])} hooks, {n_changes} address change{'s' if n_changes != 1 else ''}, "
           + ("dropped." if dropped else (outcome.split(' as ')[0] + ".")))
    data = {"lanes": [lab for lab, _ in lanes], "events": [(lanes[e.lane][0], e.label, e.role) for e in events],
            "hooks": hooks, "changes": changes}
    return Drawing(fig, "\n".join(lines), alt, None, "journey", data)
