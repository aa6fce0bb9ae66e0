"""chain_tree: the jump graph from one chain (or Service) down to its DNATs,
and the service lookup shared with `probabilities`."""
from __future__ import annotations

from fractions import Fraction

import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path
from matplotlib.transforms import TransformedPatchPath

from ..netfilter import matches as M
from ..netfilter import targets as T
from ..netfilter.values import proto_text
from .drawing import Drawing, VizError, prepare, reset, set_size
from .palette import FILL, NEUTRAL, OKABE_ITO, STYLE, SYMBOL
from .tables import _list_target

MONO = "DejaVu Sans Mono"
LH = 0.165            # row height (inches)
CW = 0.0585           # character width of 7 pt DejaVu Sans Mono (inches)
GAP = 1.05            # between columns
SIB = 0.14            # between sibling boxes
TOP = 0.62            # header
BOTTOM = 0.55         # key
LEFT = 0.2
MATCH_CHARS = 44


# --------------------------------------------------------------------------
# Services

def resolve_service(ruleset, service):
    """The `kplab.kube.explain` ServiceView `service` names.

    `service` is a ServiceView, a service port name ("default/backend:http"),
    "backend:http" (namespace default), "ns/name" when the Service has one
    port, or a cluster IP ("10.96.5.81" or "10.96.5.81:80").
    """
    from ..kube.explain import ServiceView, explain
    if isinstance(service, ServiceView):
        return service
    views = explain(ruleset)
    s = str(service).strip()
    exact = [v for v in views if v.name == s or v.name == f"default/{s}"]
    if not exact:
        exact = [v for v in views if v.cluster_ip and (s == v.cluster_ip or s == f"{v.cluster_ip}:{v.port}")]
    if not exact and ":" not in s:
        key = s if "/" in s else f"default/{s}"
        exact = [v for v in views if v.name.startswith(key + ":") or v.name == key]
    if len(exact) == 1:
        return exact[0]
    names = ", ".join(v.name for v in views) or "none"
    if len(exact) > 1:
        raise VizError(f"{s!r} names several service ports: {', '.join(v.name for v in exact)}; "
                       f"say which (ns/name:port)")
    raise VizError(f"no service port {s!r} in these rules (service ports: {names})")


# --------------------------------------------------------------------------
# Reading rules

def fraction_text(p: float) -> str:
    """1/3 for 0.33333333349 (kube-proxy's probabilities are 1/n), else 4 digits."""
    if p >= 1.0:
        return "1"
    if p <= 0.0:
        return "0"
    f = Fraction(p).limit_denominator(1000)
    if f.numerator and abs(float(f) - p) < 2e-6:
        return f"{f.numerator}/{f.denominator}"
    return f"{p:.4g}"


def rule_probability(rule) -> float | None:
    """The statistic --mode random odds of a rule (after `!`), or None without one."""
    p = None
    for m in rule.matches:
        if type(m) is M.Statistic and m.mode == "random":
            q = m.probability
            p = (1.0 - q) if m.invert else q
    return p


def _addr(m) -> str:
    a = m.addr
    text = a.address_text() if a.prefixlen == a.bits else str(a)
    return ("!" if m.invert else "") + text


def short_matches(rule, chain: str | None = None) -> str:
    """The matches of a rule in a few words (comments left out)."""
    parts = []
    for m in rule.ip:
        t = type(m)
        if t is M.Source:
            parts.append(f"src {_addr(m)}")
        elif t is M.Destination:
            parts.append(f"dst {_addr(m)}")
        elif t is M.Protocol:
            if m.proto:
                parts.append(("!" if m.invert else "") + proto_text(m.proto))
        elif t is M.InInterface:
            parts.append(f"in {'!' if m.invert else ''}{m.iface}")
        elif t is M.OutInterface:
            parts.append(f"out {'!' if m.invert else ''}{m.iface}")
        elif t is M.Fragment:
            parts.append("!frag" if m.invert else "frag")
    for m in rule.matches:
        t = type(m)
        if t is M.Comment or t is M.Nfacct:
            continue
        if t in (M.Tcp, M.Udp, M.Sctp):
            for which, short in (("sport", "spt"), ("dport", "dpt")):
                rng = getattr(m, which)
                if rng is not None:
                    neg = "!" if getattr(m, which + "_inv") else ""
                    parts.append(f"{short}:{neg}{rng[0]}" + (f":{rng[1]}" if rng[1] != rng[0] else ""))
            if getattr(m, "flags", None) is not None:
                parts.append("syn" if m.flags == (0x17, 0x02) else "flags")
        elif t is M.Statistic:
            if m.mode == "random":
                p = rule_probability(rule)
                parts.append(f"p={fraction_text(p)}")
            else:
                parts.append(f"every {m.every}th")
        elif t is M.Multiport:
            parts.append(f"{m.which} {'!' if m.invert else ''}{m._text()}")
        elif t is M.Addrtype:
            if m.src:
                parts.append(f"src-type {'!' if m.src_inv else ''}{M._types_text(m.src)}")
            if m.dst:
                parts.append(f"dst-type {'!' if m.dst_inv else ''}{M._types_text(m.dst)}")
        elif t is M.Mark:
            parts.append(f"mark {'!' if m.invert else ''}{m._text()}")
        elif t is M.Conntrack:
            parts.extend(f"{'!' if inv else ''}{n} {m._text(n, v)}" for n, v, inv in m.fields)
        elif t is M.Recent:
            same = m.list_name in (rule.jump, chain)        # kube-proxy names the list after the SEP chain
            parts.append(f"recent {'!' if m.invert else ''}{m.command}"
                         + (f" {m.seconds}s" if m.seconds else "") + ("" if same else f" {m.list_name}"))
        elif t is M.Icmp:
            parts.append("icmp any" if m.type == 255 else f"icmp type {m.type}")
        else:
            parts.append(f"-m {m.name}")
    text = " ".join(parts)
    return text if len(text) <= MATCH_CHARS else text[:MATCH_CHARS - 1] + "…"


def target_kind(rule) -> str:
    t = rule.target
    tt = type(t)
    if t is None:
        return "none"
    if tt is T.Standard:
        return {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return"}.get(t.verdict, "other")
    if tt is T.Reject:
        return "reject"
    if tt is T.Dnat:
        return "dnat"
    if tt is T.Snat:
        return "snat"
    if tt is T.Masquerade:
        return "masquerade"
    if tt is T.Jump:
        return "jump"
    if tt is T.Goto:
        return "goto"
    if tt is T.MarkTarget:
        return "mark"
    return "other"


def short_target(rule) -> str:
    k = target_kind(rule)
    t = rule.target
    if k in ("jump", "goto"):
        return ("→ " if k == "jump" else "⇥ goto ") + t.chain
    if k == "dnat":
        return f"{SYMBOL['dnat']} DNAT to {t.range}"
    if k == "snat":
        return f"{SYMBOL['snat']} SNAT to {t.range}"
    if k == "masquerade":
        return f"{SYMBOL['snat']} MASQUERADE"
    if k == "accept":
        return f"{SYMBOL['accept']} ACCEPT"
    if k == "drop":
        return f"{SYMBOL['drop']} DROP"
    if k == "reject":
        return f"{SYMBOL['reject']} REJECT"
    if k == "return":
        return f"{SYMBOL['return']} RETURN"
    if k == "mark":
        return _list_target(t)
    if k == "none":
        return "(no target: counts only)"
    return getattr(t, "target", None) or t.name


def short_rule(rule, chain: str | None = None) -> str:
    m = short_matches(rule, chain)
    return f"{m} {short_target(rule)}" if m else short_target(rule)


_TRIVIAL = (M.Comment, M.Nfacct)


def unconditional(rule) -> bool:
    """True when the rule holds for every packet that reaches it (comments,
    a protocol the caller already tested, port-less tcp/udp)."""
    for m in rule.ip:
        if type(m) is not M.Protocol or m.invert:
            return False
    for m in rule.matches:
        t = type(m)
        if t in _TRIVIAL:
            continue
        if t in (M.Tcp, M.Udp, M.Sctp) and m.sport is None and m.dport is None and getattr(m, "flags", None) is None:
            continue
        if t is M.Recent and m.command == "set" and not m.invert:
            continue                      # --set records the address and always matches
        return False
    return True


def _returning_only(rule) -> bool:
    """The rule needs the client in a `recent` list: never true for a first connection."""
    return any(type(m) is M.Recent and m.command in ("rcheck", "update") and not m.invert for m in rule.matches)


class _Graph:
    """Facts about the chains of one table, memoised."""

    def __init__(self, table):
        self.chains = table.chains if table is not None else {}
        self._decides: dict = {}

    def inline(self, name) -> bool:
        """A chain that only marks or logs (KUBE-MARK-MASQ): shown on the calling row."""
        c = self.chains.get(name)
        if c is None or not c.rules:
            return False
        for r in c.rules:
            k = target_kind(r)
            if k not in ("mark", "other", "none") or r.jump:
                return False
            if k == "other" and type(r.target) is not T.Log:
                return False
        return True

    def inline_words(self, name) -> str:
        c = self.chains[name]
        return "; ".join(_list_target(r.target) or short_target(r) for r in c.rules)

    def _analyse(self, name, stack=()):
        """(decides, ends): the chain never returns to its caller (it always
        accepts, drops or translates); the walk never falls off its end."""
        got = self._decides.get(name)
        if got is not None:
            return got
        c = self.chains.get(name)
        if c is None or name in stack:
            return False, False
        res = (False, False)
        for r in c.rules:
            if not unconditional(r):
                continue
            k = target_kind(r)
            if k in ("accept", "drop", "reject", "dnat", "snat", "masquerade"):
                res = (True, True)
                break
            if k == "return":
                res = (False, True)
                break
            if k == "jump":
                if self._analyse(r.jump, stack + (name,))[0]:
                    res = (True, True)
                    break
            elif k == "goto":
                res = (self._analyse(r.jump, stack + (name,))[0], True)
                break
        self._decides[name] = res
        return res

    def decides(self, name) -> bool:
        return self._analyse(name)[0]

    def ends(self, name) -> bool:
        return self._analyse(name)[1]


# --------------------------------------------------------------------------
# The tree

class _Row:
    __slots__ = ("index", "text", "kind", "child", "link", "prob", "share", "rule", "y", "state", "consumes")

    def __init__(self, index, text, kind, rule=None):
        self.index, self.text, self.kind, self.rule = index, text, kind, rule
        self.child = None
        self.link = None          # another row of this chain jumps to the same box: an arrow to it too
        self.prob = None
        self.share = None
        self.y = 0.0
        self.state = None
        self.consumes = False


class _Box:
    def __init__(self, chain, depth, kind="chain"):
        self.chain, self.depth, self.kind = chain, depth, kind
        self.rows: list = []
        self.x = self.y = self.w = self.h = 0.0
        self.has_stat = False

    @property
    def children(self):
        return [r.child for r in self.rows if r.child is not None]


def _build(graph, name, depth, seen, budget, max_rows, traced):
    box = _Box(name, depth)
    seen.add(name)
    c = graph.chains.get(name)
    if c is None:
        box.kind = "missing"
        box.rows.append(_Row(None, f"{SYMBOL['drop']} no such chain: the jump is a dead end", "drop"))
        return box
    rows = []
    mine = set()
    for i, rule in enumerate(c.rules, 1):
        kind = target_kind(rule)
        row = _Row(i, short_rule(rule, name), kind, rule)
        row.prob = rule_probability(rule)
        if row.prob is not None:
            box.has_stat = True
        tgt = rule.jump
        if tgt is not None:
            if graph.inline(tgt):
                row.text += f" ({graph.inline_words(tgt)})"
                row.kind = "mark"
            elif tgt in mine:
                row.link = tgt
                row.consumes = graph.decides(tgt) or kind == "goto"
            elif tgt in seen:
                row.text += " (see its box)"
                row.kind = "ref"
                row.consumes = graph.decides(tgt)
            elif budget[0] <= 0 or depth >= 12:
                row.text += " (not drawn)"
                row.consumes = graph.decides(tgt)
            else:
                row.child = tgt            # built below, after truncation
                seen.add(tgt)              # one box per chain, however many rows jump to it
                mine.add(tgt)
                budget[0] -= 1
                row.consumes = graph.decides(tgt) or kind == "goto"
        elif kind in ("accept", "drop", "reject", "dnat", "snat", "masquerade", "return"):
            row.consumes = True
        rows.append(row)
    if len(rows) > max_rows:
        keep = set(range(max_rows - 1)) | {k for k, r in enumerate(rows) if (name, r.index) in traced}
        kept = [r for k, r in enumerate(rows) if k in keep]
        hidden = len(rows) - len(kept)
        kept.append(_Row(None, f"… {hidden} more rule{'s' if hidden != 1 else ''} not shown", "more"))
        rows = kept
    if not c.rules:
        rows.append(_Row(None, f"(empty) {SYMBOL['return']} returns at once", "end"))
    elif not graph.ends(name):
        if c.policy is not None:
            rows.append(_Row(None, f"end of chain: policy {c.policy}", "end"))
        else:
            rows.append(_Row(None, f"{SYMBOL['return']} end of chain: back to the caller", "end"))
    box.rows = rows
    # shares: what part of the traffic reaching this chain each consuming row takes
    left = 1.0
    for r in rows:
        if r.rule is None or not r.consumes:
            continue
        if _returning_only(r.rule):
            r.share = 0.0              # session affinity: only clients seen before match
            continue
        p = r.prob if r.prob is not None else (1.0 if unconditional(r.rule) else None)
        if left is None or p is None:
            left = None
            continue
        r.share = left * p
        left = left * (1.0 - p)
    for r in rows:
        if isinstance(r.child, str):
            r.child = _build(graph, r.child, depth + 1, seen, budget, max_rows, traced)
    return box


def _service_box(ruleset, view):
    """A Service with no dispatch chain (no endpoints): its filter rules."""
    from ..kube.explain import spn_of
    box = _Box(view.name, 0, kind="service")
    filt = ruleset.tables.get("filter")
    for cname in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):
        c = filt.chains.get(cname) if filt is not None else None
        for i, rule in enumerate(c.rules if c is not None else (), 1):
            comment = next((m.text for m in rule.matches if type(m) is M.Comment), None)
            if spn_of(comment) == view.name:
                r = _Row(i, f"filter {cname} #{i}: {short_rule(rule)}", target_kind(rule), rule)
                box.rows.append(r)
    if not box.rows:
        box.rows.append(_Row(None, "no rule sends this service anywhere", "end"))
    return box


def _walk(box):
    yield box
    for r in box.rows:
        if r.child is not None:
            yield from _walk(r.child)


def _place(box, top):
    """Place the subtree of `box` with its top at `top`; return its height."""
    box.h = (1 + len(box.rows)) * LH + 0.08
    box.y = top
    kids = box.children
    if not kids:
        return box.h
    y = top
    for k in kids:
        y += _place(k, y) + SIB
    return max(box.h, y - SIB - top)


def _row_colour(kind):
    role = {"dnat": "dnat", "snat": "snat", "masquerade": "snat", "drop": "drop", "reject": "reject",
            "accept": "accept", "return": "return", "end": "return", "more": "not_matched"}.get(kind)
    return STYLE[role].color if role else OKABE_ITO["black"]


def _resolve_root(ruleset, root, table):
    from ..kube.explain import ServiceView
    t = ruleset.tables.get(table)
    if isinstance(root, ServiceView):
        return root.chains.get("internal") or root.chains.get("external"), root
    if t is not None and root in t.chains:
        return root, None
    try:
        view = resolve_service(ruleset, root)
    except VizError as e:
        have = ", ".join(list(t.chains)[:12]) + (" …" if t is not None and len(t.chains) > 12 else "") \
            if t is not None else "(no such table)"
        raise VizError(f"{root!r} is neither a chain of the {table} table ({have}) nor a service: {e}") from None
    chain = view.chains.get("internal") or view.chains.get("external")
    return chain, view


def _traced(trace, table):
    """(chain, index) -> matched?, and chains whose end was reached."""
    rows, ends = {}, set()
    if trace is None:
        return rows, ends
    for s in trace.steps:
        if s.table != table:
            continue
        if s.kind == "rule":
            if rows.get((s.chain, s.index)) is not True:
                rows[(s.chain, s.index)] = bool(s.matched)
        elif s.kind == "skipped":
            for i in range(s.index, s.index + s.count):
                rows.setdefault((s.chain, i), False)
        elif s.kind == "policy" or (s.kind == "return" and s.reason.startswith("end of")):
            ends.add(s.chain)
    return rows, ends


def chain_tree(ruleset, root, *, table: str = "nat", trace=None, into=None, max_rows: int = 40,
               max_chains: int = 60, capacity: int | None = None) -> Drawing:
    """The jump graph from `root` down to the DNATs (kube-proxy's
    KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-…).

    `root` is a chain of `table` ("KUBE-SERVICES", "KUBE-SVC-…") or a
    service port ("default/backend:http", resolved through
    `kplab.kube.explain`; a Service without endpoints shows its filter
    REJECT rules). Each chain is a box listing its rules in short form;
    jumps are arrows labelled with the rule's statistic probability (p) and
    the share of new connections that branch gets; DNAT targets, DROP,
    REJECT and chains that can fall through (↩) are marked in words and
    symbols as well as colour. A chain that only sets a mark
    (KUBE-MARK-MASQ) is written on the calling row instead of drawn. With
    a `trace`, the rules it evaluated are marked (▶ matched, ✗ no match) and
    the branch it took is drawn bold. Chains longer than `max_rows` rules
    are cut (rows the trace used are kept); at most `max_chains` boxes.
    `root` may also be an explain ServiceView (one lookup shared with
    `probabilities`).

    `capacity` (a widget's slider maximum) reserves room for that many
    endpoint branches: when the tree is one dispatch chain and its endpoint
    chains (a Service's KUBE-SVC → KUBE-SEP-…), the figure keeps one size
    and one layout (it only grows) while the endpoints change, and a redraw
    only updates, adds or hides the per-endpoint boxes, branch lines and
    labels. The text twin, alt text and data are the same as without it;
    other trees are drawn as without it.
    """
    fig, st = prepare(into, "chain_tree", (8, 4))
    chain, view = _resolve_root(ruleset, root, table)
    traced_rows, traced_ends = _traced(trace, table)
    if capacity is not None and chain is not None:
        graph = _Graph(ruleset.tables.get(table))
        top = _build(graph, chain, 0, set(), [max_chains - 1], max_rows, traced_rows)
        if _two_levels(top):
            _capacity_layout(fig, st, top, chain, view, table, int(capacity))
            return _restyle(fig, st, top, chain, view, table, trace, traced_rows, traced_ends)
    if view is not None and not isinstance(root, str):
        root = view.name
    key = (id(ruleset), root, table, max_rows, max_chains)
    if st.key != key or st.extra.get("ruleset") is not ruleset:
        reset(fig, st, key)
        st.extra["ruleset"] = ruleset            # keep it alive: the key holds its id
        graph = _Graph(ruleset.tables.get(table))
        if chain is None:
            top = _service_box(ruleset, view)
        else:
            # a layout that fits any trace: rows of long chains a trace may use are not known yet,
            # so the cut keeps only the first rows; a trace through a cut row rebuilds the layout
            top = _build(graph, chain, 0, set(), [max_chains - 1], max_rows, traced_rows)
        st.extra["root"] = top
        _draw_layout(fig, st, top, chain, view, table)
    top = st.extra["root"]
    if any(k not in st.extra["rowmap"] for k, v in traced_rows.items() if v and k[0] in st.extra["chains"]):
        # the trace went through a row the cut left out: lay out again, keeping it
        reset(fig, st, key)
        st.extra["ruleset"] = ruleset
        graph = _Graph(ruleset.tables.get(table))
        top = _build(graph, chain, 0, set(), [max_chains - 1], max_rows, traced_rows)
        st.extra["root"] = top
        _draw_layout(fig, st, top, chain, view, table)
    return _restyle(fig, st, top, chain, view, table, trace, traced_rows, traced_ends)


def _draw_layout(fig, st, top, chain, view, table):
    boxes = list(_walk(top))
    # column widths from the longest text per depth
    depth_w = {}
    for b in boxes:
        chars = max([len(b.chain) + 2] + [len(r.text) + 8 for r in b.rows])
        depth_w[b.depth] = max(depth_w.get(b.depth, 0), chars * CW + 0.2)
    xs, x = {}, LEFT
    for d in sorted(depth_w):
        xs[d] = x
        x += depth_w[d] + GAP
    width = max(x - GAP + LEFT, 6.5)
    height_tree = _place(top, TOP)
    height = max(TOP + height_tree + BOTTOM + 0.1, 2.6)
    for b in boxes:
        b.x, b.w = xs[b.depth], depth_w[b.depth]
    set_size(fig, width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    art, dyn = st.art, st.dyn
    art["ax"] = ax
    # one clip path shared by every artist (the default makes one per artist: slow for hundreds)
    clip = TransformedPatchPath(ax.patch)
    _text = ax.text

    def text(*a, **kw):
        kw.setdefault("clip_path", clip)
        return _text(*a, **kw)

    def add(artist):
        artist.set_clip_path(clip)
        return ax.add_artist(artist)
    # header
    if view is not None:
        where = f"{view.cluster_ip}:{view.port}/{view.protocol}" if view.cluster_ip else "no cluster IP"
        n_ep = len(view.endpoints)
        head = f"Service {view.name} → {where}: {n_ep} endpoint{'s' if n_ep != 1 else ''}"
        if chain is None:
            head += f" (no endpoints: {view.no_endpoints or 'no rule'})"
    else:
        head = f"Chain {chain} in the {table} table"
    title = (f"Jump graph from {chain} ({table} table)" if chain is not None
             else f"Service {view.name}: filter rules")
    text(LEFT, 0.12, title, fontsize=10, fontweight="bold", va="top", ha="left")
    text(LEFT, 0.36, head, fontsize=7.5, va="top", ha="left")
    art["traceline"] = dyn(text(width - LEFT, 0.36, "", fontsize=7.5, va="top", ha="right",
                                   color=STYLE["path"].color, fontweight="bold", zorder=6))
    rowmap, boxart, edges = {}, {}, []
    by_name = {b.chain: b for b in boxes}
    for b in boxes:
        fc = FILL["idle"] if b.kind == "missing" else FILL["box"]
        add(FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0,rounding_size=0.05", fc=fc,
                                    ec=NEUTRAL["grey"], lw=0.8, zorder=1,
                                    hatch=STYLE["drop"].hatch if b.kind == "missing" else None))
        outline = FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0,rounding_size=0.05",
                                 fc=(1, 1, 1, 0), ec=OKABE_ITO["black"], lw=1.0, zorder=3.5)
        add(outline)
        boxart[b.chain] = dyn(outline)
        text(b.x + 0.08, b.y + 0.04 + LH / 2, b.chain, fontsize=7.5, fontweight="bold", family=MONO,
                va="center", ha="left", zorder=2)
        for k, r in enumerate(b.rows):
            r.y = b.y + 0.04 + LH * (k + 1) + LH / 2
            label = (f"#{r.index:<2} " if r.index is not None else "    ") + r.text
            text(b.x + 0.2, r.y, label, fontsize=7, family=MONO, va="center", ha="left",
                    color=_row_colour(r.kind), zorder=2,
                    fontweight="bold" if r.kind in ("dnat", "drop", "reject") else "normal")
            band = Rectangle((b.x + 0.03, r.y - LH / 2 + 0.01), b.w - 0.06, LH - 0.02, lw=0, zorder=3.6,
                             fc=to_rgba(FILL["path"], 0.3), visible=False)
            add(band)
            mark = text(b.x + 0.04, r.y, "", fontsize=7, va="center", ha="left", zorder=4, visible=False,
                           fontweight="bold")
            rowmap[(b.chain, r.index if r.index is not None else "end" if r.kind == "end" else f"x{k}")] = (
                r, dyn(band), dyn(mark))
            target = r.child if r.child is not None else (by_name.get(r.link) if r.link else None)
            if target is not None:
                c = target
                x1, y1 = b.x + b.w, r.y
                x2, y2 = c.x, c.y + 0.04 + LH / 2
                verts = [(x1, y1), (x1 + GAP * 0.45, y1), (x2 - GAP * 0.45, y2), (x2, y2)]
                codes = [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4]
                a = FancyArrowPatch(path=Path(verts, codes), arrowstyle="-|>", mutation_scale=8, lw=0.9,
                                    color=OKABE_ITO["black"], zorder=3, shrinkA=0, shrinkB=0)
                add(a)
                edges.append((b.chain, r.index, dyn(a)))
                if r.prob is not None:
                    text(x1 + 0.04, y1 - 0.015, f"p={fraction_text(r.prob)}", fontsize=6.2, va="bottom",
                            ha="left", color=OKABE_ITO["black"], zorder=2)
                if b.has_stat and r.share is not None:
                    text(x2 - 0.05, y2 - 0.02, f"{r.share * 100:.3g}%", fontsize=6.2, va="bottom",
                            ha="right", color=STYLE["exact"].color, zorder=2, fontweight="bold")
    art["rows"], art["boxes"], art["edges"] = rowmap, boxart, edges
    st.extra["rowmap"] = {k for k in rowmap if isinstance(k[1], int)}
    st.extra["chains"] = {b.chain for b in boxes}
    _legend(ax)



# --------------------------------------------------------------------------
# A fixed-capacity layout: one dispatch chain and its leaf branches

def _two_levels(top) -> bool:
    """The tree is `top` and leaf boxes it jumps to (no deeper chains, no second arrows)."""
    for r in top.rows:
        if r.link is not None:
            return False
        c = r.child
        if c is not None and any(q.child is not None or q.link is not None for q in c.rows):
            return False
    return True


def _box_width(b):
    return max([len(b.chain) + 2] + [len(r.text) + 8 for r in b.rows]) * CW + 0.2


def _capacity_layout(fig, st, top, chain, view, table, capacity):
    """Place the tree of `top` on a canvas with room for `capacity` branches (kept while it fits)
    and point art rows/boxes/edges at pooled artists, as `_draw_layout` would make them."""
    kids = top.children
    n = len(kids)
    w0 = _box_width(top)
    w1 = max([_box_width(k) for k in kids], default=0.0)
    need_h = _place(top, TOP)
    # room for `capacity` branches as tall as the tallest one now, and the dispatch chain's rows for them
    kid_h = max([k.h for k in kids], default=(2 * LH + 0.08))
    slots = max(capacity, n, 1)
    room = max((1 + len(top.rows) - n + slots) * LH + 0.08, slots * (kid_h + SIB) - SIB, need_h)
    ident = ("capacity", chain, view.name if view is not None else None, table)
    cur = st.key
    if (isinstance(cur, tuple) and cur[:4] == ident and cur[4] >= w0 - 1e-9 and cur[5] >= w1 - 1e-9
            and cur[6] >= need_h - 1e-9):
        w0, w1, room = cur[4], cur[5], cur[6]            # the canvas has room already
    else:
        if isinstance(cur, tuple) and cur[:4] == ident:
            w0, w1, room = max(w0, cur[4]), max(w1, cur[5]), max(room, cur[6])
        reset(fig, st, ident + (w0, w1, room))
        _capacity_canvas(fig, st, chain, view, table, w0, w1, room)
    art, pool = st.art, st.extra["pool"]
    x0 = LEFT
    x1 = LEFT + w0 + GAP
    top.x, top.w = x0, w0
    for k in kids:
        k.x, k.w = x1, w1
    if view is not None:
        where = f"{view.cluster_ip}:{view.port}/{view.protocol}" if view.cluster_ip else "no cluster IP"
        n_ep = len(view.endpoints)
        art["head"].set_text(f"Service {view.name} → {where}: {n_ep} endpoint{'s' if n_ep != 1 else ''}")
    else:
        art["head"].set_text(f"Chain {chain} in the {table} table")
    boxes = [top] + kids
    while len(pool["boxes"]) < len(boxes):
        pool["boxes"].append(_pool_box(st))
    while len(pool["edges"]) < n:
        pool["edges"].append(_pool_edge(st))
    rowmap, boxart, edges = {}, {}, []
    for b, slot in zip(boxes, pool["boxes"]):
        missing = b.kind == "missing"
        slot["fill"].set_bounds(b.x, b.y, b.w, b.h)
        slot["fill"].set_facecolor(FILL["idle"] if missing else FILL["box"])
        slot["fill"].set_hatch(STYLE["drop"].hatch if missing else None)
        slot["outline"].set_bounds(b.x, b.y, b.w, b.h)
        slot["title"].set_position((b.x + 0.08, b.y + 0.04 + LH / 2))
        slot["title"].set_text(b.chain)
        for a in (slot["fill"], slot["outline"], slot["title"]):
            a.set_visible(True)
        boxart[b.chain] = slot["outline"]
        rows = slot["rows"]
        while len(rows) < len(b.rows):
            rows.append(_pool_row(st))
        for k, r in enumerate(b.rows):
            label, band, mark = rows[k]
            r.y = b.y + 0.04 + LH * (k + 1) + LH / 2
            label.set_position((b.x + 0.2, r.y))
            label.set_text((f"#{r.index:<2} " if r.index is not None else "    ") + r.text)
            label.set_color(_row_colour(r.kind))
            label.set_fontweight("bold" if r.kind in ("dnat", "drop", "reject") else "normal")
            label.set_visible(True)
            band.set_bounds(b.x + 0.03, r.y - LH / 2 + 0.01, b.w - 0.06, LH - 0.02)
            mark.set_position((b.x + 0.04, r.y))
            rowmap[(b.chain, r.index if r.index is not None else "end" if r.kind == "end" else f"x{k}")] = (
                r, band, mark)
        for label, band, mark in rows[len(b.rows):]:
            for a in (label, band, mark):
                a.set_visible(False)
    for slot in pool["boxes"][len(boxes):]:
        for a in (slot["fill"], slot["outline"], slot["title"]):
            a.set_visible(False)
        for trio in slot["rows"]:
            for a in trio:
                a.set_visible(False)
    e = 0
    for r in top.rows:
        c = r.child
        if c is None:
            continue
        arrow, plabel, slabel = pool["edges"][e]
        e += 1
        xa, ya = top.x + top.w, r.y
        xb, yb = c.x, c.y + 0.04 + LH / 2
        arrow._path_original = Path([(xa, ya), (xa + GAP * 0.45, ya), (xb - GAP * 0.45, yb), (xb, yb)],
                                    [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4])
        arrow.set_zorder(3)
        arrow.set_visible(True)
        arrow.stale = True
        edges.append((top.chain, r.index, arrow))
        plabel.set_visible(r.prob is not None)
        if r.prob is not None:
            plabel.set_position((xa + 0.04, ya - 0.015))
            plabel.set_text(f"p={fraction_text(r.prob)}")
        slabel.set_visible(bool(top.has_stat and r.share is not None))
        if top.has_stat and r.share is not None:
            slabel.set_position((xb - 0.05, yb - 0.02))
            slabel.set_text(f"{r.share * 100:.3g}%")
    for trio in pool["edges"][e:]:
        for a in trio:
            a.set_visible(False)
    art["rows"], art["boxes"], art["edges"] = rowmap, boxart, edges
    st.extra["rowmap"] = {k for k in rowmap if isinstance(k[1], int)}
    st.extra["chains"] = {b.chain for b in boxes}


def _capacity_canvas(fig, st, chain, view, table, w0, w1, room):
    """The static part of a fixed-capacity tree (size, axes, title, key) and empty artist pools."""
    width = max(LEFT + w0 + GAP + w1 + LEFT, 6.5)
    height = max(TOP + room + BOTTOM + 0.1, 2.6)
    set_size(fig, width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    art, dyn = st.art, st.dyn
    art["ax"] = ax
    clip = TransformedPatchPath(ax.patch)
    st.extra["clip"] = clip
    title = (f"Jump graph from {chain} ({table} table)" if chain is not None
             else f"Service {view.name}: filter rules")
    ax.text(LEFT, 0.12, title, fontsize=10, fontweight="bold", va="top", ha="left", clip_path=clip)
    art["head"] = dyn(ax.text(LEFT, 0.36, "", fontsize=7.5, va="top", ha="left", clip_path=clip))
    art["traceline"] = dyn(ax.text(width - LEFT, 0.36, "", fontsize=7.5, va="top", ha="right",
                                   color=STYLE["path"].color, fontweight="bold", zorder=6, clip_path=clip))
    st.extra["pool"] = {"boxes": [], "edges": []}
    _legend(ax)


def _pool_add(st, artist):
    artist.set_clip_path(st.extra["clip"])
    return st.dyn(st.art["ax"].add_artist(artist))


def _pool_text(st, **kw):
    return st.dyn(st.art["ax"].text(0, 0, "", clip_path=st.extra["clip"], **kw))


def _pool_box(st):
    return {"fill": _pool_add(st, FancyBboxPatch((0, 0), 1, 1, boxstyle="round,pad=0,rounding_size=0.05",
                                                  fc=FILL["box"], ec=NEUTRAL["grey"], lw=0.8, zorder=1)),
            "outline": _pool_add(st, FancyBboxPatch((0, 0), 1, 1, boxstyle="round,pad=0,rounding_size=0.05",
                                                     fc=(1, 1, 1, 0), ec=OKABE_ITO["black"], lw=1.0,
                                                     zorder=3.5)),
            "title": _pool_text(st, fontsize=7.5, fontweight="bold", family=MONO, va="center", ha="left",
                                zorder=2),
            "rows": []}


def _pool_row(st):
    label = _pool_text(st, fontsize=7, family=MONO, va="center", ha="left", zorder=2)
    band = _pool_add(st, Rectangle((0, 0), 1, 1, lw=0, zorder=3.6, fc=to_rgba(FILL["path"], 0.3),
                                   visible=False))
    mark = _pool_text(st, fontsize=7, va="center", ha="left", zorder=4, visible=False, fontweight="bold")
    return label, band, mark


def _pool_edge(st):
    arrow = _pool_add(st, FancyArrowPatch(path=Path([(0, 0), (0, 0), (0, 0), (0, 0)],
                                                    [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4]),
                                          arrowstyle="-|>", mutation_scale=8, lw=0.9, color=OKABE_ITO["black"],
                                          zorder=3, shrinkA=0, shrinkB=0))
    plabel = _pool_text(st, fontsize=6.2, va="bottom", ha="left", color=OKABE_ITO["black"], zorder=2)
    slabel = _pool_text(st, fontsize=6.2, va="bottom", ha="right", color=STYLE["exact"].color, zorder=2,
                        fontweight="bold")
    return arrow, plabel, slabel


def _legend(ax):
    handles = [
        Line2D([], [], color=STYLE["path"].color, lw=2.2, marker=">", label="▶ taken by the traced packet"),
        Line2D([], [], color=STYLE["not_matched"].color, lw=0, marker="x", label="✗ evaluated, no match"),
        Line2D([], [], color=STYLE["dnat"].color, lw=0, marker="D", ms=4, label="⇄ DNAT target"),
        Line2D([], [], color=STYLE["drop"].color, lw=0, marker="X", label="✗ DROP"),
        Line2D([], [], color=STYLE["reject"].color, lw=0, marker="s", ms=4, label="⊘ REJECT"),
        Line2D([], [], color=STYLE["return"].color, lw=0, marker="<", label="↩ can fall through"),
        Line2D([], [], color=STYLE["exact"].color, lw=0, marker="$\\%$", label="p = rule's odds, % = share"),
    ]
    leg = ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 0.0), ncol=4, fontsize=6.3,
                    frameon=False, handlelength=1.6, columnspacing=1.2, borderaxespad=0.25)
    leg.set_zorder(2)

def _restyle(fig, st, top, chain, view, table, trace, traced_rows, traced_ends):
    art = st.art
    on_path = set()
    for (cname, idx), (r, band, mark) in art["rows"].items():
        state = None
        if isinstance(idx, int):
            state = traced_rows.get((cname, idx))
        elif idx == "end" and cname in traced_ends:
            state = True
        r.state = state
        if state is True:
            band.set_visible(True)
            mark.set_text("↩" if idx == "end" else "▶")
            mark.set_color(STYLE["path"].color)
            mark.set_visible(True)
            on_path.add(cname)
        elif state is False:
            band.set_visible(False)
            mark.set_text("✗")
            mark.set_color(STYLE["not_matched"].color)
            mark.set_visible(True)
        else:
            band.set_visible(False)
            mark.set_visible(False)
    for cname, outline in art["boxes"].items():
        if trace is None:
            outline.set_edgecolor(OKABE_ITO["black"])
            outline.set_linewidth(1.0)
            outline.set_linestyle("-")
        elif cname in on_path:
            outline.set_edgecolor(STYLE["path"].color)
            outline.set_linewidth(2.2)
            outline.set_linestyle("-")
        else:
            outline.set_edgecolor(STYLE["not_taken"].color)
            outline.set_linewidth(0.9)
            outline.set_linestyle(":")
    for cname, idx, a in art["edges"]:
        if trace is None:
            a.set_color(OKABE_ITO["black"])
            a.set_linewidth(0.9)
            a.set_linestyle("-")
        elif traced_rows.get((cname, idx)) is True:
            a.set_color(STYLE["path"].color)
            a.set_linewidth(2.4)
            a.set_linestyle("-")
            a.set_zorder(3.2)
        else:
            a.set_color(STYLE["not_taken"].color)
            a.set_linewidth(0.8)
            a.set_linestyle(":")
            a.set_zorder(3)

    taken = _taken_path(top)
    dnat = next((s for s in (trace.steps if trace is not None else ())
                 if s.kind == "rule" and s.matched and s.verdict == "DNAT" and s.table == table
                 and s.chain in st.extra["chains"]), None)
    if trace is None:
        art["traceline"].set_text("")
        trace_words = None
    elif taken:
        trace_words = " → ".join(f"{c} #{i}" for c, i in taken)
        if dnat is not None and dnat.after is not None:
            trace_words += f" (DNAT to {dnat.after.endpoint('dst')})"
        art["traceline"].set_text(f"traced packet: {_short_path(taken)}"
                                  + (f" ⇄ {dnat.after.endpoint('dst')}" if dnat is not None and dnat.after else ""))
    else:
        trace_words = "the traced packet did not pass through these chains"
        art["traceline"].set_text("traced packet: not through these chains")

    # text twin, table, alt
    lines = []
    if view is not None:
        where = f"{view.cluster_ip}:{view.port}/{view.protocol}" if view.cluster_ip else "no cluster IP"
        lines.append(f"Service {view.name} ({where}), {len(view.endpoints)} endpoint(s).")
    lines.append(f"Jump graph from {chain} in the {table} table:" if chain is not None
                 else f"Service {view.name} has no dispatch chain; its filter rules:")
    records = []
    for b in _walk(top):
        ind = "  " * b.depth
        lines.append(f"{ind}{b.chain}{' (missing)' if b.kind == 'missing' else ''}")
        for r in b.rows:
            extra = []
            if r.prob is not None:
                extra.append(f"matches {fraction_text(r.prob)} of what reaches it")
            if r.rule is not None and _returning_only(r.rule):
                extra.append("only a client seen before (session affinity)")
            if b.has_stat and r.share is not None:
                extra.append(f"{r.share * 100:.3g}% of new connections")
            if r.state is True:
                extra.append("taken")
            elif r.state is False:
                extra.append("no match")
            num = f"#{r.index} " if r.index is not None else ""
            lines.append(f"{ind}  {num}{r.text}" + (f"  [{'; '.join(extra)}]" if extra else ""))
            records.append({"chain": b.chain, "depth": b.depth, "num": r.index, "rule": r.text, "kind": r.kind,
                            "jumps_to": r.child.chain if r.child is not None else None,
                            "probability": r.prob, "share": r.share if b.has_stat else None,
                            "traced": {True: "matched", False: "no match"}.get(r.state)})
    if trace_words:
        lines.append(f"Traced packet: {trace_words}.")
    table_df = pd.DataFrame(records, columns=["chain", "depth", "num", "rule", "kind", "jumps_to", "probability",
                                              "share", "traced"])
    table_df["num"] = table_df["num"].astype("Int64")
    boxes = list(_walk(top))
    n_sep = sum(1 for b in boxes if b.chain.startswith("KUBE-SEP-"))
    dnats = sum(1 for b in boxes for r in b.rows if r.kind == "dnat")
    alt = (f"Jump graph from {chain} in the {table} table: {len(boxes)} chain{'s' if len(boxes) != 1 else ''}"
           + (f", {n_sep} endpoint chain{'s' if n_sep != 1 else ''}" if n_sep else "")
           + f", {dnats} DNAT target{'s' if dnats != 1 else ''}"
           + (f"; the traced packet took {_short_path(taken)}" if taken else "") + ".") if chain is not None else (
        f"Service {view.name} has no endpoints: its traffic meets the filter rules shown.")
    data = {"root": chain, "table": table, "chains": [b.chain for b in boxes], "taken": taken,
            "service": view.name if view is not None else None}
    return Drawing(fig, "\n".join(lines), alt, table_df, "chain_tree", data)


def _taken_path(top):
    """[(chain, index)] of the matched rows in the order the packet met them:
    into a jumped-to chain, and back to the row after the jump when that chain
    ends or returns (a goto does not come back); a deciding row ends it."""
    boxes = {b.chain: b for b in _walk(top)}
    out, seen, stack = [], set(), [(top, 0)]
    while stack:
        box, k = stack.pop()
        while k < len(box.rows):
            r = box.rows[k]
            k += 1
            if r.state is not True or r.index is None or r.kind == "mark":
                continue
            if (box.chain, r.index) in seen:          # a loop in the drawing: stop, never spin
                return out
            seen.add((box.chain, r.index))
            out.append((box.chain, r.index))
            target = r.child or r.link or (r.rule.jump if r.kind == "ref" and r.rule is not None else None)
            child = target if isinstance(target, _Box) else boxes.get(target) if target else None
            if child is not None:
                if r.kind != "goto":
                    stack.append((box, k))
                stack.append((child, 0))
                break
            if r.kind == "return":
                break
            if r.consumes:
                return out
    return out


def _short_path(taken):
    return " → ".join(f"{c} #{i}" for c, i in taken)
