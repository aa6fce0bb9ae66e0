"""The drawings and tables the widgets show, from `kplab.viz`.

The widgets call the functions here, which call `kplab.viz.figures` /
`kplab.viz.tables` when they have them, and otherwise a plain fallback with
the same contract (a `Drawing` with `.figure`, `.text`, `.alt`; `into=`
redraws into an earlier Drawing). The fallbacks keep the widgets working
while the viz layer grows, and on an install where it is broken.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


def _viz(module: str, name: str):
    try:
        mod = importlib.import_module(f"kplab.viz.{module}")
    except ImportError:
        return None
    return getattr(mod, name, None)


def uses_fallback(name: str) -> bool:
    """Whether `name` (e.g. "hook_map") is drawn by this module's fallback."""
    module = "tables" if name.endswith("_table") else "figures"
    return _viz(module, name) is None


# ---------------------------------------------------------------------------
# The contract, as the widgets use it

def hook_map(trace=None, *, step=None, into=None):
    fn = _viz("figures", "hook_map")
    if fn is not None:
        return fn(trace, step=step, into=_theirs(into))
    return _fallback_hook_map(trace, step=step, into=_ours(into))


def chain_tree(ruleset, root, *, table="nat", trace=None, into=None, capacity=None):
    fn = _viz("figures", "chain_tree")
    if fn is not None:
        if capacity is not None:
            try:
                return fn(ruleset, root, table=table, trace=trace, into=_theirs(into), capacity=capacity)
            except TypeError as e:          # a kplab.viz without capacity=
                if "capacity" not in str(e):
                    raise
        return fn(ruleset, root, table=table, trace=trace, into=_theirs(into))
    return _fallback_chain_tree(ruleset, root, table=table, trace=trace, into=_ours(into))


def probabilities(ruleset, service, *, observed=0, seed=0, into=None, capacity=None):
    fn = _viz("figures", "probabilities")
    if fn is not None:
        if capacity is not None:
            try:
                return fn(ruleset, service, observed=observed, seed=seed, into=_theirs(into), capacity=capacity)
            except TypeError as e:          # a kplab.viz without capacity=
                if "capacity" not in str(e):
                    raise
        return fn(ruleset, service, observed=observed, seed=seed, into=_theirs(into))
    return _fallback_probabilities(ruleset, service, into=_ours(into))


def journey(journey_or_trace, *, into=None):
    fn = _viz("figures", "journey")
    if fn is not None:
        return fn(journey_or_trace, into=_theirs(into))
    return _fallback_journey(journey_or_trace, into=_ours(into))


def trace_table(trace):
    fn = _viz("tables", "trace_table")
    if fn is not None:
        return fn(trace)
    import pandas as pd
    return pd.DataFrame(trace.to_records())


def _theirs(into):
    return None if isinstance(into, _Drawing) else into


def _ours(into):
    return into if isinstance(into, _Drawing) else None


# ---------------------------------------------------------------------------
# Fallbacks

@dataclass
class _Drawing:
    figure: object
    text: str
    alt: str
    parts: dict = field(default_factory=dict)


def _figure(into, size):
    from matplotlib.figure import Figure
    if into is not None:
        fig = into.figure
        fig.clear()
        return fig
    return Figure(figsize=size, dpi=80)


def _lines_figure(lines, into, size=(7, 3), highlight=()):
    fig = _figure(into, size)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    n = max(len(lines), 1)
    for i, line in enumerate(lines):
        ax.text(0.01, 1 - (i + 0.8) / n, line, family="monospace", fontsize=8,
                color="#cf222e" if i in highlight else "black", transform=ax.transAxes)
    return fig


def _fallback_hook_map(trace, *, step=None, into=None):
    from matplotlib.patches import FancyBboxPatch

    from ..netfilter.hooks import HOOKS
    where = None
    if trace is not None and step is not None and 1 <= step <= len(trace.steps):      # 1-based, as viz's
        where = trace.steps[step - 1].hook
    fig = _figure(into, (7, 1.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, len(HOOKS))
    ax.set_ylim(0, 1)
    for i, h in enumerate(HOOKS):
        here = h == where
        ax.add_patch(FancyBboxPatch(
            (i + 0.05, 0.3), 0.9, 0.4, boxstyle="round,pad=0.02", fc="#ffd8b5" if here else "#eef",
            ec="#cf222e" if here else "#446", lw=2.5 if here else 1))
        ax.text(i + 0.5, 0.5, ("▶ " if here else "") + h, ha="center", va="center", fontsize=8)
    text = "hooks: " + " -> ".join(f"[{h}]" if h == where else h for h in HOOKS)
    alt = f"The five netfilter hooks; the packet is at {where}." if where else "The five netfilter hooks."
    if into is not None:
        into.text, into.alt = text, alt
        return into
    return _Drawing(fig, text, alt)


def _tree_lines(ruleset, table, root, depth=0, seen=None, out=None):
    seen = set() if seen is None else seen
    out = [] if out is None else out
    chain = ruleset.chain(table, root)
    out.append("  " * depth + root + ("" if chain is not None else " (no such chain)"))
    if chain is None or root in seen or depth > 8:
        return out
    seen.add(root)
    for i, rule in enumerate(chain.rules, 1):
        if rule.jump:
            _tree_lines(ruleset, table, rule.jump, depth + 1, seen, out)
        elif rule.target is not None:
            out.append("  " * (depth + 1) + f"#{i} {rule.target.save()}")
    return out


def _fallback_chain_tree(ruleset, root, *, table="nat", trace=None, into=None):
    lines = _tree_lines(ruleset, table, root)
    fig = _lines_figure(lines[:40], into, (7, max(1.5, 0.2 * min(len(lines), 40))))
    text = "\n".join(lines)
    alt = f"The {table} chains reached from {root}: {len(lines)} lines."
    if into is not None:
        into.text, into.alt = text, alt
        return into
    return _Drawing(fig, text, alt)


def _fallback_probabilities(ruleset, service, *, into=None):
    from ..kube.explain import explain
    views = [v for v in explain(ruleset) if v.name == service or v.name.split(":")[0] == service]
    eps = views[0].endpoints if views else []
    fig = _figure(into, (6, max(1.2, 0.3 * len(eps) + 0.6)))
    ax = fig.add_subplot()
    ax.barh(range(len(eps)), [e.probability for e in eps], color="#4c72b0")
    ax.set_yticks(range(len(eps)), [e.address for e in eps], fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    fig.subplots_adjust(left=0.3)
    lines = [f"{service}: chance of each endpoint for a new connection"]
    lines += [f"  {e.address:<22} {e.probability:.4g}" for e in eps] or ["  (no endpoints)"]
    text = "\n".join(lines)
    alt = f"Bar chart: {len(eps)} endpoints of {service}."
    if into is not None:
        into.text, into.alt = text, alt
        return into
    return _Drawing(fig, text, alt)


def _fallback_journey(obj, *, into=None):
    text = obj.text() if hasattr(obj, "hops") else obj.journey(verbose=False)
    lines = text.splitlines()
    fig = _lines_figure(lines[:30], into, (8, max(1.5, 0.2 * min(len(lines), 30))))
    alt = lines[-1] if lines else ""
    if into is not None:
        into.text, into.alt = text, alt
        return into
    return _Drawing(fig, text, alt)
