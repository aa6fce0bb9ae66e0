"""What a cluster's size costs kube-proxy's iptables mode, measured with kplab.

kube-proxy (iptables mode) writes one rule per Service port into nat
`KUBE-SERVICES`, and the kernel walks that chain from the top for the first
packet of every connection, so a packet to the *last* Service of the chain
meets one rule per Service before it finds its own. Writing, loading and
reading the rules grows with the cluster too. `measure(n)` puts numbers on
both for a synthetic cluster (`kplab.kube.synth`: n ClusterIP Services with
`endpoints` ready endpoints each, spread over `nodes` nodes), on node-1:

* `render_s`: kube-proxy's full sync, `proxier.render` (decide and write the
  `iptables-restore` input);
* `save_s`: the node's `iptables-save` dump after that sync (kplab loads the
  restore text into its model of the node's tables and prints them);
* `parse_s`: `kplab.parse_rules` of that dump, the first step of `kplab trace
  --rules DUMP` (the kernel's counterpart is `iptables-restore` of the same
  text: bench/scale.py measures both side by side);
* `trace_s`: one first packet from the standard node's `client` Pod to the
  ClusterIP and port of the last Service in nat `KUBE-SERVICES` (the median
  of `repeat` traces on fresh nodes, after one that fills kplab's per-ruleset
  caches: `trace_cold_s`), and `rules_evaluated`, the rules the kernel
  evaluates for that packet (`Trace.evaluated`); `rules_evaluated_first` is
  the same for the first Service of the chain;
* `explain_s`: `kplab.kube.explain.explain` of the parsed dump.

Times are wall-clock seconds (`time.perf_counter`) on the machine that runs
the code: compare them with each other (ratios), not across machines. The
cyclic garbage collector is paused while the steps run (after one collection
before them): its pauses depend on everything else the process holds (a
notebook with pandas and matplotlib loaded pays far more than a bare script),
not on the work measured.
`measure_series(sizes)` measures several sizes; `load_results()` reads the
table bench/scale.py precomputed (`scale_results.json` next to this module),
which also has the kernel's own `iptables-restore` times and peak memory.

Standard library only.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import re
import statistics
import time
from dataclasses import dataclass, field

from ..errors import KplabError

__all__ = ["Measurement", "RESULTS_PATH", "ScaleResults", "ServiceTarget", "count_walks", "evaluated_by_chain",
           "evaluated_text", "evaluated_to", "load_results",
           "measure", "measure_series", "render_rules", "service_targets", "table_text"]

#: The precomputed results bench/scale.py writes (package data).
RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale_results.json")

#: The columns of `table_text`, in order: (field, heading, kind).
COLUMNS = (
    ("services", "Services", "int"),
    ("rules", "rules", "int"),
    ("rules_evaluated", "evaluated", "int"),
    ("rules_evaluated_first", "(first)", "int"),
    ("render_s", "render", "time"),
    ("save_s", "save", "time"),
    ("parse_s", "parse", "time"),
    ("kernel_nft_s", "nft load", "time"),
    ("kernel_legacy_s", "legacy load", "time"),
    ("trace_s", "trace", "time"),
    ("cli_trace_s", "CLI trace", "time"),
    ("explain_s", "explain", "time"),
    ("peak_rss_mb", "memory", "mb"),
)


class ScaleError(KplabError, ValueError):
    """A measurement that cannot be made (a size out of range, no results file)."""


@dataclass(frozen=True)
class Measurement:
    """The costs of one cluster size (see the module docstring). Times in seconds."""

    services: int
    endpoints: int
    rules: int
    render_s: float | None             # None: counted, not timed (count_walks)
    save_s: float | None
    parse_s: float | None
    trace_s: float | None
    rules_evaluated: int
    explain_s: float | None
    trace_cold_s: float | None = None
    rules_evaluated_first: int | None = None
    target: str | None = None               # the traced Service: "10.96.x.y:80/tcp"
    # Filled in by bench/scale.py (None when measured here):
    kernel_nft_s: float | None = None       # iptables-restore (nf_tables backend) of the dump
    kernel_legacy_s: float | None = None    # iptables-legacy-restore of the dump
    peak_rss_mb: float | None = None        # peak resident memory of the process that measured this size
    cli_trace_s: float | None = None        # `kplab trace --rules DUMP ...` end to end (process start included)
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})


# --------------------------------------------------------------------------- which Service to trace

@dataclass(frozen=True)
class ServiceTarget:
    """One cluster-IP rule of nat KUBE-SERVICES: where a packet must go to match it."""

    index: int          # 1-based position in KUBE-SERVICES
    ip: str
    port: int
    proto: str
    chain: str          # the KUBE-SVC-/KUBE-SVL- chain it jumps to
    comment: str | None

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}/{self.proto}"


_DST = re.compile(r"(?:^| )-d (\S+?)(?:/32)?(?: |$)")
_DPORT = re.compile(r"--dport (\d+)")
_PROTO = re.compile(r"(?:^| )-p (\S+)")
_COMMENT = re.compile(r'--comment (?:"([^"]*)"|(\S+))')


def service_targets(ruleset) -> list:
    """The cluster-IP rules of nat KUBE-SERVICES, in the order the kernel walks them."""
    chain = ruleset.chain("nat", "KUBE-SERVICES")
    if chain is None:
        return []
    out = []
    for i, rule in enumerate(chain.rules, 1):
        jump = rule.jump or ""
        if not jump.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            continue
        spec = rule.spec()
        d, port, proto = _DST.search(spec), _DPORT.search(spec), _PROTO.search(spec)
        if not (d and port and proto):
            continue
        c = _COMMENT.search(spec)
        out.append(ServiceTarget(i, d.group(1), int(port.group(1)), proto.group(1), jump,
                                 (c.group(1) or c.group(2)) if c else None))
    return out


def _target(ruleset, which) -> ServiceTarget:
    targets = service_targets(ruleset)
    if not targets:
        raise ScaleError("nat KUBE-SERVICES has no cluster-IP rule to send a packet to")
    if which == "last":
        return targets[-1]
    if which == "first":
        return targets[0]
    if isinstance(which, int) and not isinstance(which, bool):
        try:
            return targets[which]
        except IndexError:
            raise ScaleError(f"there are {len(targets)} Services in KUBE-SERVICES, no index {which}") from None
    raise ScaleError(f"which Service: 'first', 'last' or an index, not {which!r}")


def evaluated_to(ruleset, which="last", *, seed: int = 0):
    """The Trace of a first packet from `client` to a Service of KUBE-SERVICES
    ('first', 'last' or a 0-based index); `trace.evaluated` counts the rules."""
    from ..node import Node
    t = _target(ruleset, which)
    return Node(ruleset, seed=seed).send_from("client", t.ip, t.proto, t.port)


def evaluated_by_chain(trace) -> tuple:
    """Where a trace's evaluated rules are: ((table, chain, rules evaluated), ...) in walk order.
    The counts add up to `trace.evaluated`."""
    counts: dict = {}
    for step in trace.steps:
        if step.kind in ("rule", "skipped"):
            key = (step.table, step.chain)
            counts[key] = counts.get(key, 0) + (step.count or 1)
    return tuple((t, c, n) for (t, c), n in counts.items())


def evaluated_text(trace) -> str:
    """`evaluated_by_chain` as a small text table, with the total."""
    rows = evaluated_by_chain(trace)
    width = max([len(c) for _, c, _ in rows] + [5])
    lines = [f"{'table':<7} {'chain':<{width}} {'rules evaluated':>15}"]
    lines += [f"{t:<7} {c:<{width}} {n:>15,}" for t, c, n in rows]
    lines.append(f"{'':<7} {'total':<{width}} {trace.evaluated:>15,}")
    return "\n".join(lines)


def render_rules(services: int, endpoints: int = 5, *, seed: int = 0, nodes: int = 2):
    """node-1's rules (a kplab Ruleset) for a synthetic cluster of `services`
    ClusterIP Services with `endpoints` endpoints each: quick, for small sizes."""
    from .proxier import render
    from .synth import synth_cluster
    cluster = synth_cluster(services, endpoints, nodes=nodes, seed=seed)
    return render(cluster.services(), cluster.slices(), cluster.proxy_config("node-1")).ruleset


# --------------------------------------------------------------------------- measuring

def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(services: int, endpoints: int = 5, *, seed: int = 0, nodes: int = 2, repeat: int = 3,
            keep: bool = False) -> Measurement:
    """Build a synthetic cluster of `services` Services and measure every step (module docstring).

    `repeat` warm traces are timed (their median is `trace_s`). With `keep=True`
    the measurement's `extra` holds the dump text and the parsed ruleset
    (`extra["dump"]`, `extra["ruleset"]`), for a caller that wants to reuse them."""
    from .. import parse_rules
    from ..node import Node
    from .explain import explain
    from .proxier import render
    from .synth import synth_cluster
    if isinstance(services, bool) or not isinstance(services, int) or services < 1:
        raise ScaleError(f"measure needs at least one Service, not {services!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ScaleError(f"repeat must be a whole number, 1 or more, not {repeat!r}")
    gc.collect()                       # once: leftovers of earlier work are not this measurement's cost
    was_enabled = gc.isenabled()
    gc.disable()                       # collector pauses depend on the whole process, not on this work
    try:
        build_s, cluster = _timed(lambda: synth_cluster(services, endpoints, nodes=nodes, seed=seed))
        config = cluster.proxy_config("node-1")
        render_s, rendered = _timed(lambda: render(cluster.services(), cluster.slices(), config))
        save_s, dump = _timed(lambda: rendered.save_text)
        rendered = None                # its caches hold a second copy of the rules
        parse_s, ruleset = _timed(lambda: parse_rules(dump, source="node-1 dump"))
        last, first = _target(ruleset, "last"), _target(ruleset, "first")

        def trace(t):
            return Node(ruleset, seed=seed).send_from("client", t.ip, t.proto, t.port)

        cold_s, tr = _timed(lambda: trace(last))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            tr = trace(last)
            times.append(time.perf_counter() - t0)
        if tr.dnat_to is None:
            raise ScaleError(f"the packet to the last Service ({last}) was not sent to an endpoint: {tr.summary()}")
        evaluated_first = trace(first).evaluated
        explain_s, views = _timed(lambda: explain(ruleset))
        extra = {"build_s": build_s, "service_ports": len(views), "nodes": nodes, "seed": seed}
        if keep:
            extra.update(dump=dump, ruleset=ruleset)
    finally:
        if was_enabled:
            gc.enable()
    return Measurement(services=services, endpoints=endpoints, rules=ruleset.rule_count(), render_s=render_s,
                       save_s=save_s, parse_s=parse_s, trace_s=statistics.median(times),
                       rules_evaluated=tr.evaluated, explain_s=explain_s, trace_cold_s=cold_s,
                       rules_evaluated_first=evaluated_first, target=str(last), extra=extra)


def count_walks(sizes, endpoints: int = 5, *, seed: int = 0, nodes: int = 2) -> tuple:
    """The counts of `measure` without the timing, for each size: rules on node-1,
    rules evaluated by a first packet to the last and to the first Service of
    KUBE-SERVICES. Quick (no dump, no explain) and the same on every machine.
    The time fields of these Measurements are None."""
    out = []
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ScaleError(f"count_walks needs sizes of at least one Service, not {n!r}")
        ruleset = render_rules(n, endpoints, seed=seed, nodes=nodes)
        last = evaluated_to(ruleset, "last", seed=seed)
        first = evaluated_to(ruleset, "first", seed=seed)
        out.append(Measurement(services=n, endpoints=endpoints, rules=ruleset.rule_count(), render_s=None,
                               save_s=None, parse_s=None, trace_s=None, rules_evaluated=last.evaluated,
                               explain_s=None, rules_evaluated_first=first.evaluated,
                               target=str(_target(ruleset, "last"))))
    return tuple(out)


def measure_series(sizes, endpoints: int = 5, *, seed: int = 0, nodes: int = 2, repeat: int = 3,
                   progress=None) -> tuple:
    """`measure` for each size in `sizes`, in order. `progress(i, n, size)`, if
    given, is called before each size (i from 1)."""
    sizes = list(sizes)
    out = []
    for i, n in enumerate(sizes, 1):
        if progress is not None:
            progress(i, len(sizes), n)
        out.append(measure(n, endpoints, seed=seed, nodes=nodes, repeat=repeat))
    return tuple(out)


# --------------------------------------------------------------------------- precomputed results

@dataclass(frozen=True)
class ScaleResults:
    """A results table: `rows` (Measurements, by size) and `meta` (machine, versions, date)."""

    rows: tuple
    meta: dict = field(default_factory=dict, compare=False)

    def row(self, services: int) -> Measurement:
        for r in self.rows:
            if r.services == services:
                return r
        raise ScaleError(f"no row for {services} Services (sizes: {', '.join(str(r.services) for r in self.rows)})")

    @property
    def sizes(self) -> tuple:
        return tuple(r.services for r in self.rows)

    def ratio(self, name: str) -> float | None:
        """`name` at the largest size divided by `name` at the smallest (None if missing)."""
        if len(self.rows) < 2:
            return None
        a, b = getattr(self.rows[0], name), getattr(self.rows[-1], name)
        return None if a in (None, 0) or b is None else b / a

    def text(self) -> str:
        return table_text(self.rows, self.meta)

    def __str__(self) -> str:
        return self.text()

    def to_json(self) -> dict:
        return {"meta": dict(self.meta), "rows": [r.to_dict() for r in self.rows]}


def load_results(path: str | None = None) -> ScaleResults:
    """The table bench/scale.py precomputed (default: the one shipped with kplab)."""
    path = path or RESULTS_PATH
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ScaleError(f"{path}: cannot read the scale results: {e.strerror}") from None
    except ValueError as e:
        raise ScaleError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ScaleError(f"{path}: expected an object with a \"rows\" list")
    try:
        rows = tuple(sorted((Measurement.from_dict(r) for r in data["rows"]), key=lambda r: r.services))
    except TypeError as e:
        raise ScaleError(f"{path}: a row is incomplete: {e}") from None
    return ScaleResults(rows=rows, meta=dict(data.get("meta") or {}))


# --------------------------------------------------------------------------- text

def fmt_time(s: float | None) -> str:
    """Seconds as a short human figure: 850 us, 12.3 ms, 1.42 s."""
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 0.001:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _cell(value, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        return f"{value:,}"
    if kind == "time":
        return fmt_time(value)
    return f"{value:,.0f} MB"


def table_text(rows, meta: dict | None = None) -> str:
    """A text table of measurements; columns no row has are left out."""
    rows = list(rows)
    cols = [c for c in COLUMNS if any(getattr(r, c[0]) is not None for r in rows)]
    cells = [[_cell(getattr(r, name), kind) for name, _, kind in cols] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, (_, h, _) in enumerate(cols)]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    if rows:
        e = rows[0].endpoints
        lines.append(f"({e} endpoint{'s' if e != 1 else ''} per Service; evaluated, (first): the rules a first "
                     "packet to the last, the first Service of KUBE-SERVICES meets)")
    names = {c[0] for c in cols}
    notes = [text for key, text in (
        ("kernel_nft_s", "nft / legacy load: the kernel's iptables-restore / iptables-legacy-restore of the same dump"),
        ("cli_trace_s", "CLI trace: `kplab trace --rules DUMP` from process start"),
        ("peak_rss_mb", "memory: peak resident size of the measuring process")) if key in names]
    lines += [f"({n})" for n in notes]
    if meta and meta.get("machine"):
        lines.append(f"measured on {meta['machine']}" + (f", {meta['date']}" if meta.get("date") else ""))
    return "\n".join(lines)
