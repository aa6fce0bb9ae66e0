"""ServiceLab: scale a Deployment, flip its Pods' readiness, and watch kube-proxy's rules follow.

On every change the node's rules are regenerated (kube-proxy's incremental
Proxier, one per node), and the widget shows what changed in them (a diff),
the Service's chain tree, the chance of each endpoint for a new connection,
and what became of the connections opened earlier: conntrack keeps each one
on the endpoint it first chose, even when the rules no longer mention it,
and when that endpoint's Pod is gone the connection is broken.

>>> lab = ServiceLab(Cluster.load("data/clusters/seed.yaml").scale("backend", 3))   # doctest: +SKIP
>>> lab.send(20); lab.set_replicas(4); print(lab.outputs["diff"])                     # doctest: +SKIP
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import ipywidgets as W

from ..errors import KplabError
from . import _viz
from ._base import AMBER, GREEN, GREY, PRE_STYLE as _PRE, RED, Field, LabWidget, Picture, as_int as _as_int, esc, pre

STATES = ("ready", "not ready", "terminating")
_STATE_ALIASES = {"ready": "ready", "not ready": "not ready", "not-ready": "not ready", "notready": "not ready",
                  "unready": "not ready", "terminating": "terminating", "deleted": "deleted", "delete": "deleted",
                  "gone": "deleted"}
MAX_SEND = 1000
SPORT_FIRST, SPORT_LAST = 32768, 60999           # Linux's default ephemeral port range


@dataclass
class Connection:
    """A connection the lab opened and keeps open (conntrack remembers it)."""

    sport: int
    endpoint: str            # "ip:port" conntrack chose for it
    pod: str | None          # the Pod behind that address when it was opened
    node: str | None
    status: str = "open"     # "open", "draining" (Pod terminating / not ready), "broken"
    note: str = "opened"


class _Renderer:
    """render() for ClusterNetwork, with one incremental Proxier per node and
    the last result kept (an unchanged cluster is not rendered again).

    Each result's `ruleset` is assembled from the node's tables with the
    rules of lines seen before reused (a sync changes a few lines of a few
    chains), instead of parsing the whole dump again: the same Ruleset that
    `Rendered.ruleset` would parse (tests/widgets check they are equal)."""

    def __init__(self):
        self.proxiers: dict = {}
        self.last: dict = {}
        self.rules: dict = {}             # node -> {(table, restore line): Rule}

    def __call__(self, services, slices, config):
        from ..kube.proxier import Proxier
        services, slices = tuple(services), tuple(slices)
        key = config.node_name
        last = self.last.get(key)
        if last is not None and last[0] == config and last[1] == services and last[2] == slices:
            return last[3]
        proxier = self.proxiers.get(key)
        if proxier is None or proxier.config != config:
            proxier = self.proxiers[key] = Proxier(config)
            self.rules[key] = {}
        rendered = proxier.sync(services, slices)
        cache = self.rules.setdefault(key, {})
        if len(cache) > 200_000:
            cache.clear()
        try:
            rendered.__dict__["ruleset"] = ruleset_of(rendered, cache)   # Rendered.ruleset is a cached_property
        except (KplabError, AttributeError, TypeError, ValueError):
            rendered.__dict__.pop("ruleset", None)                          # parsed on first use instead
        self.last[key] = (config, services, slices, rendered)
        return rendered


def ruleset_of(rendered, cache: dict):
    """The Ruleset of a kube-proxy sync's node state (`rendered.tables`), reusing
    the Rule parsed for each line seen before (`cache`: {(table, line): Rule})."""
    from ..netfilter.hooks import TABLE_CHAINS
    from ..netfilter.iptables_save import parse_rule, tokenize
    from ..netfilter.rules import Chain, Ruleset, Table
    family = rendered.config.ip_family
    tables = {}
    for tname, chains in rendered.tables.items():
        builtin = [c for c in TABLE_CHAINS[tname] if c in chains]
        users = sorted(c for c in chains if c not in TABLE_CHAINS[tname])
        names = set(chains)
        out = {}
        for c in builtin + users:
            rules = []
            for line in chains[c]:
                rule = cache.get((tname, line))
                if rule is None:
                    words = tokenize(line)
                    rule = parse_rule(words[2:], tname, c, family, chains=names)
                    cache[(tname, line)] = rule
                rules.append(rule)
            out[c] = Chain(c, tuple(rules), "ACCEPT" if c in TABLE_CHAINS[tname] else None)
        tables[tname] = Table(tname, out)
    return Ruleset(tables, family, (), "kube-proxy")


def _pod_state(pod) -> str:
    if pod.terminating:
        return "terminating"
    return "ready" if pod.ready else "not ready"


def _deployment_for(cluster, svc):
    if not svc.selector:
        return None
    for d in cluster.deployments():
        if d.namespace == svc.namespace and all(kv in d.labels for kv in svc.selector):
            return d
    return None


def endpoint_odds(ruleset, chain: str) -> dict:
    """{KUBE-SEP chain: chance} for a new connection entering `chain` (the
    kernel's stored odds of each `statistic --mode random` rule)."""
    out: dict = {}
    c = ruleset.chain("nat", chain) if ruleset is not None else None
    if c is None:
        return out
    left = 1.0
    for rule in c.rules:
        target = rule.jump
        if not target or not target.startswith("KUBE-SEP-"):
            continue
        odds = 1.0
        for m in rule.matches:
            if m.name == "statistic" and getattr(m, "mode", "") == "random":
                odds = m.stored / 0x80000000
        p = left * odds
        out[target] = out.get(target, 0.0) + p
        left -= p
        if left <= 1e-12:
            break
    return out


class ServiceLab(LabWidget):
    """A Service, the Deployment behind it, and kube-proxy's rules on one node.

    `cluster` is a `kplab.kube.cluster.Cluster` (or a path to its YAML);
    `service` names the Service ("ns/name" or "name"); `node` is the node
    whose rules are shown; `client` the Pod (or node) that opens connections
    (default: a Pod the Service does not select, on `node` if one is).

    Methods (what the controls call; tests call them directly):
    `set_replicas(n)`, `set_pod_state(pod, state)` with state "ready",
    "not ready", "terminating" or "deleted", `delete_pod(pod)`, `send(n)`.
    Each returns True when it did something and False (with a message shown
    next to the field, in `messages`) when the input was not valid; none
    raises. `outputs` holds the current text twins.
    """

    def __init__(self, cluster, service: str = "default/backend", *, node: str = "node-1", client: str | None = None,
                 seed: int = 0, keep: int = 5, max_replicas: int | None = None):
        from ..kube.cluster import Cluster
        from ..kube.flow import ClusterNetwork
        if isinstance(cluster, str):
            cluster = Cluster.load(cluster)
        self.cluster = cluster
        self.service = cluster.service(service)            # raises ClusterError for an unknown Service
        self.node = cluster.node(node).name
        if not self.service.ports:
            raise KplabError(f"Service {self.service.key} has no ports")
        self.port = self.service.ports[0]
        self.spn = self.service.port_name(self.port)
        self.deployment = _deployment_for(cluster, self.service)
        self.client = client if client is not None else self._default_client()
        self.seed = seed
        self.connections: deque = deque(maxlen=max(1, int(keep)))
        self.last_change = "start"
        self.last_diff = None
        self.last_send: dict | None = None
        self.timings: dict = {}                # seconds spent in each part of the last change
        self._draw_times: dict = {}
        self._sport = SPORT_FIRST
        self._syncing = False
        self._renderer = _Renderer()
        self.net = ClusterNetwork(cluster, seed=seed, renderer=self._renderer)
        self.rendered = self.net.rendered[self.node]
        self._texts = {"diff": "no change yet: move the replicas slider or change a Pod's state",
                       "landing": "no connections sent yet", "connections": "no open connections"}
        self._build(max_replicas)
        self._refresh()

    # ------------------------------------------------------------------ setup

    def _default_client(self) -> str:
        selected = {p.name for p in self._selected_pods()}
        others = [p for p in self.cluster.pods() if p.name not in selected and p.ip]
        local = [p for p in others if p.node == self.node]
        pick = (local or others)
        return pick[0].name if pick else self.node

    def _selected_pods(self):
        svc = self.service
        if not svc.selector:
            return ()
        return tuple(p for p in self.cluster.pods()
                     if p.namespace == svc.namespace and all(kv in p.labels for kv in svc.selector))

    def _build(self, max_replicas):
        svc, port = self.service, self.port
        replicas = self.deployment.replicas if self.deployment else 0
        top = max_replicas if max_replicas is not None else max(10, 2 * replicas)
        self.title = W.HTML(value=(
            f"<b>Service {esc(svc.key)}</b> ({esc(svc.cluster_ip)}:{port.port}/{esc(port.protocol)}) — "
            f"rules of <b>{esc(self.node)}</b>; connections from <b>{esc(self.client)}</b>"))
        self.replicas = W.IntSlider(value=replicas, min=0, max=top, step=1, continuous_update=False,
                                    description="", layout=W.Layout(width="22em"))
        self.replicas.add_class("kplab-replicas")          # CSS hooks for tests/browser (stable selectors)
        self.replicas_field = Field(self.replicas, "replicas")
        if self.deployment is None:
            self.replicas.disabled = True
            self.replicas_field.set(f"no Deployment selects the Pods of {svc.key}: nothing to scale", "info")
        else:
            self.replicas_field.set(f"Deployment {self.deployment.namespace}/{self.deployment.name}", "info")
        self.replicas.observe(self._on_replicas, names="value")
        self.pod_rows = W.VBox([])
        self.pods_msg = Field(W.HTML(value=""), None)
        self._pod_controls: dict = {}
        self._pod_names: tuple = ()
        self.count = W.IntText(value=20, layout=W.Layout(width="7em"))
        self.count_field = Field(self.count, "N")
        self.send_button = W.Button(description="send N new connections", icon="paper-plane",
                                    layout=W.Layout(width="auto"))
        self.send_button.on_click(lambda _b: self.send(self.count.value))
        self.endpoints_html = W.HTML()
        self.diff_html = W.HTML().add_class("kplab-rules-diff")
        self.landing_html = W.HTML()
        self.connections_html = W.HTML()
        self.tree = Picture("chain tree")
        self.odds = Picture("chance of each endpoint for a new connection")
        self.tree.box.add_class("kplab-chain-tree")
        self.odds.box.add_class("kplab-endpoint-chart")
        self._tree_drawing = None
        self._odds_drawing = None
        section = lambda title: W.HTML(value=f"<b>{esc(title)}</b>")  # noqa: E731
        left = W.VBox([section("endpoints"), self.endpoints_html, section("what changed in the rules"),
                       self.diff_html], layout=W.Layout(width="55%"))
        right = W.VBox([self.tree.box, self.odds.box], layout=W.Layout(width="45%"))
        self.widget = W.VBox([
            self.title, self.replicas_field.box, W.HTML(value="<b>Pods</b>"), self.pod_rows, self.pods_msg.box,
            W.HBox([self.send_button, self.count_field.box], layout=W.Layout(align_items="center")),
            self.landing_html, W.HTML(value="<b>open connections (conntrack)</b>"), self.connections_html,
            W.HBox([left, right]),
        ])
        self.widget.add_class("kplab-service-lab")

    # ------------------------------------------------------------------ observers

    def _on_replicas(self, change):
        if not self._syncing:
            self.set_replicas(change["new"])

    def _on_pod_state(self, pod, change):
        if not self._syncing:
            self.set_pod_state(pod, change["new"])

    # ------------------------------------------------------------------ actions

    @property
    def messages(self) -> dict:
        """The inline message of each field ("" when it is fine)."""
        return {"replicas": self.replicas_field.error, "pods": self.pods_msg.error, "count": self.count_field.error}

    def set_replicas(self, n) -> bool:
        """Scale the Deployment behind the Service to `n` Pods."""
        f = self.replicas_field
        if self.deployment is None:
            f.set(f"no Deployment selects the Pods of {self.service.key}: nothing to scale")
            return False
        n = _as_int(n)
        if n is None or n < 0:
            f.set("replicas must be a whole number, 0 or more")
            return False
        if n > self.replicas.max:
            f.set(f"at most {self.replicas.max} replicas in this lab")
            return False
        old = self.deployment.replicas
        try:
            new = self.cluster.scale(self.deployment.name, n)
        except KplabError as e:
            f.set(str(e))
            return False
        f.set(f"Deployment {self.deployment.namespace}/{self.deployment.name}: {old} -> {n} replicas", "info")
        self._apply(new, f"replicas {old} -> {n}")
        return True

    def set_pod_state(self, pod, state) -> bool:
        """Make a Pod "ready", "not ready" or "terminating" (or "deleted")."""
        p = self._find_pod(pod)
        if p is None:
            return False
        key = _STATE_ALIASES.get(str(state).strip().lower()) if isinstance(state, str) else None
        if key is None:
            self.pods_msg.set(f"{state!r} is not a Pod state: choose one of {', '.join(STATES)} (or deleted)")
            return False
        if key == "deleted":
            return self.delete_pod(p.name)
        before = _pod_state(p)
        c = self.cluster
        try:
            if key == "terminating":
                c = c.set_terminating(p.name, True)
            else:
                if p.terminating:
                    c = c.set_terminating(p.name, False)
                if p.ready != (key == "ready"):
                    c = c.set_ready(p.name, key == "ready")
        except KplabError as e:
            self.pods_msg.set(str(e))
            return False
        self.pods_msg.clear()
        if c is self.cluster:
            return True
        self._apply(c, f"Pod {p.name}: {before} -> {key}")
        return True

    def delete_pod(self, pod, *, replace: bool = False) -> bool:
        """The Pod is gone (with `replace=True` its Deployment starts a new one)."""
        p = self._find_pod(pod)
        if p is None:
            return False
        try:
            c = self.cluster.delete_pod(p.name, replace=replace)
        except KplabError as e:
            self.pods_msg.set(str(e))
            return False
        self.pods_msg.clear()
        if self.deployment is not None:
            self.deployment = c.deployment(f"{self.deployment.namespace}/{self.deployment.name}")
        self._apply(c, f"Pod {p.name} deleted" + (" (the Deployment replaces it)" if replace else ""))
        return True

    def send(self, n=None) -> bool:
        """Open `n` new connections from the client to the Service; show where they land."""
        f = self.count_field
        n = _as_int(self.count.value if n is None else n)
        if n is None or not 1 <= n <= MAX_SEND:
            f.set(f"N must be a whole number from 1 to {MAX_SEND}")
            return False
        if self.service.cluster_ip in (None, "", "None"):
            f.set(f"Service {self.service.key} has no cluster IP to send to")
            return False
        f.clear()
        if self.count.value != n:
            self._syncing = True
            try:
                self.count.value = n
            finally:
                self._syncing = False
        to = f"{self.service.cluster_ip}:{self.port.port}"
        proto = self.port.protocol.lower()
        counts: dict = {}
        sent = []
        for _ in range(n):
            sport = self._next_sport()
            try:
                j = self.net.send(self.client, to, proto, self.port.port, sport=sport)
            except KplabError as e:
                f.set(f"cannot send from {self.client}: {e}")
                return False
            if j.delivered_to is not None and j.final is not None:
                where = f"{j.final.dst}:{j.final.dport}" if j.final.dport is not None else j.final.dst
                counts[where] = counts.get(where, 0) + 1
                sent.append(Connection(sport, where, j.delivered_to, self._node_of(j.delivered_to)))
            else:
                why = j.verdict + (" (the Service has no endpoints)" if j.verdict == "REJECT" else "")
                counts[why] = counts.get(why, 0) + 1
        for conn in sent[-self.connections.maxlen:]:
            self.connections.append(conn)
        self.last_send = {"n": n, "counts": counts, "to": to, "change": self.last_change}
        self._texts["landing"] = self._landing_text()
        self._texts["connections"] = self._connections_text()
        self._show_landing()
        self._show_connections()
        return True

    # ------------------------------------------------------------------ internals

    def _next_sport(self) -> int:
        sport = self._sport
        self._sport = SPORT_FIRST if sport >= SPORT_LAST else sport + 1
        return sport

    def _node_of(self, pod_name):
        for p in self.cluster.pods():
            if p.name == pod_name:
                return p.node
        return None

    def _find_pod(self, pod):
        if not isinstance(pod, str) or not pod.strip():
            self.pods_msg.set(f"{pod!r} is not a Pod name")
            return None
        name = pod.strip().split("/", 1)[-1]
        for p in self.cluster.pods():
            if p.name == name:
                return p
        names = ", ".join(p.name for p in self._selected_pods()) or "none"
        self.pods_msg.set(f"no Pod {pod!r} in the cluster (the Service's Pods: {names})")
        return None

    def _apply(self, cluster, what: str) -> None:
        """Take the changed cluster: new rules, the diff, re-sent open connections, redraws."""
        t0 = time.perf_counter()
        from ..kube.proxier import diff
        old = self.rendered
        self.cluster = cluster
        if self.deployment is not None:
            self.deployment = cluster.deployment(f"{self.deployment.namespace}/{self.deployment.name}")
        self.net.update(cluster)
        self.rendered = self.net.rendered[self.node]
        t1 = time.perf_counter()
        self.last_diff = diff(old, self.rendered)
        self.last_change = what
        self._texts["diff"] = self._diff_text(what, self.last_diff)
        t2 = time.perf_counter()
        self._recheck()
        t3 = time.perf_counter()
        self._refresh()
        t4 = time.perf_counter()
        self.timings = {"rules": t1 - t0, "diff": t2 - t1, "connections": t3 - t2, "outputs": t4 - t3,
                        **self._draw_times, "total": t4 - t0}

    def _recheck(self) -> None:
        """Send one more packet on each open connection (same 5-tuple)."""
        if not self.connections:
            return
        to = f"{self.service.cluster_ip}:{self.port.port}"
        proto = self.port.protocol.lower()
        pods = {p.name: p for p in self.cluster.pods()}
        by_ip = {p.ip: p for p in pods.values() if p.ip}
        for conn in self.connections:
            ip = conn.endpoint.rsplit(":", 1)[0]
            pod = pods.get(conn.pod)
            try:
                j = self.net.send(self.client, to, proto, self.port.port, sport=conn.sport)
            except KplabError as e:
                conn.status, conn.note = "broken", f"cannot send from {self.client}: {e}"
                continue
            went = (f"{j.final.dst}:{j.final.dport}" if j.final is not None and j.final.dport is not None
                    else (j.final.dst if j.final is not None else None))
            if pod is None or pod.ip != ip:
                other = by_ip.get(ip)
                where = (f"; the packet still goes to {went}" if went else f"; the packet ends in {j.verdict}")
                if other is not None and other.name != conn.pod:
                    conn.status = "broken"
                    conn.note = (f"the conntrack entry still points at {conn.endpoint}, the address of Pod "
                                 f"{conn.pod}, which no longer exists: that address now belongs to Pod "
                                 f"{other.name}{where}")
                else:
                    conn.status = "broken"
                    conn.note = (f"the conntrack entry still points at {conn.endpoint}, Pod {conn.pod}, "
                                 f"which no longer exists: nothing answers there{where}")
                continue
            if went != conn.endpoint:
                conn.status = "moved"
                conn.note = f"now reaches {went or j.verdict} (its conntrack entry was gone)"
            elif pod.terminating:
                conn.status = "draining"
                conn.note = (f"still reaches {conn.endpoint}: Pod {pod.name} is terminating but still runs; "
                             "conntrack keeps the connection on it, new connections go elsewhere")
            elif not pod.ready:
                conn.status = "draining"
                conn.note = (f"still reaches {conn.endpoint}: Pod {pod.name} is not ready, so new connections "
                             "avoid it, but conntrack keeps this one on it")
            else:
                conn.status = "open"
                conn.note = f"still reaches {conn.endpoint} (conntrack)"
        self._texts["connections"] = self._connections_text()

    # ------------------------------------------------------------------ output

    def _svc_chain(self):
        d = self.rendered.decisions.get(self.spn)
        nat = self.rendered.ruleset.table("nat")
        candidates = []
        if d is not None:
            candidates = [d.internal_policy_chain, d.info.cluster_policy_chain, d.info.local_policy_chain]
        for c in candidates:
            if nat is not None and c in nat.chains:
                return c
        return None

    def _endpoint_rows(self):
        d = self.rendered.decisions.get(self.spn)
        infos = {e.string: e for e in (d.endpoints if d is not None else ())}
        chain = self._svc_chain()
        odds = endpoint_odds(self.rendered.ruleset, chain) if chain else {}
        port_of = {e.string.rsplit(":", 1)[0]: e for e in infos.values()}
        rows = []
        for p in self._selected_pods():
            info = port_of.get(p.ip)
            rows.append({
                "pod": p.name, "node": p.node, "address": info.string if info else (p.ip or "-"),
                "state": _pod_state(p),
                "endpoint": ("not in the EndpointSlice" if info is None else
                             ", ".join(k for k, v in (("ready", info.ready), ("serving", info.serving),
                                                      ("terminating", info.terminating)) if v) or "not ready"),
                "chain": info.chain if info else "",
                "chance": odds.get(info.chain, 0.0) if info else 0.0,
            })
        return rows

    def _endpoints_text(self, rows) -> str:
        d = self.deployment
        head = (f"{self.spn}: {sum(1 for r in rows if r['chance'] > 0)} of {len(rows)} Pods get new connections"
                + (f" (Deployment {d.name}, replicas {d.replicas})" if d else ""))
        lines = [head]
        for r in rows:
            lines.append(f"  {r['pod']:<32} {r['node'] or '-':<8} {r['address']:<20} {r['state']:<12} "
                         f"chance {r['chance']:.4g}  {r['chain'] or '(no KUBE-SEP chain)'}")
        if not rows:
            lines.append("  (no Pods)")
        return "\n".join(lines)

    @staticmethod
    def _diff_text(what: str, d) -> str:
        added = sum(len(v) for v in d.rules_added.values())
        removed = sum(len(v) for v in d.rules_removed.values())
        sep_added = [c for t, c in d.chains_added if c.startswith("KUBE-SEP-")]
        sep_removed = [c for t, c in d.chains_removed if c.startswith("KUBE-SEP-")]
        head = (f"{what}: {len(d.chains_added)} chain(s) added ({len(sep_added)} KUBE-SEP), "
                f"{len(d.chains_removed)} removed ({len(sep_removed)} KUBE-SEP); "
                f"{added} rule(s) added, {removed} removed")
        if d.empty:
            return f"{what}: the rules did not change"
        return head + "\n" + d.text().rstrip("\n")

    def _landing_text(self) -> str:
        s = self.last_send
        if not s:
            return "no connections sent yet"
        total = sum(s["counts"].values())
        by_ip = {p.ip: p for p in self.cluster.pods() if p.ip}
        lines = [f"{s['n']} new connections from {self.client} to {self.spn} ({s['to']}), after: {s['change']}"]
        for where, k in sorted(s["counts"].items(), key=lambda kv: (-kv[1], kv[0])):
            pod = by_ip.get(where.rsplit(":", 1)[0])
            name = pod.name if pod else ""
            lines.append(f"  {where:<22} {name:<32} {k:4d}  {k / total:6.1%}  {'#' * round(20 * k / total)}")
        return "\n".join(lines)

    def _connections_text(self) -> str:
        if not self.connections:
            return "no open connections: send some first"
        lines = [f"the last {len(self.connections)} connections, re-sent after: {self.last_change}"]
        mark = {"open": "✓", "draining": "✓", "moved": "!", "broken": "✗"}
        for c in self.connections:
            lines.append(f"  {mark.get(c.status, '?')} sport {c.sport} -> {c.endpoint} ({c.pod}): "
                         f"{c.status.upper()}: {c.note}")
        return "\n".join(lines)

    def _show_landing(self):
        self.landing_html.value = pre(self._texts["landing"])

    def _show_connections(self):
        if not self.connections:
            self.connections_html.value = pre(self._texts["connections"], f"color:{GREY}")
            return
        colour = {"open": GREEN, "draining": AMBER, "moved": AMBER, "broken": RED}
        lines = self._texts["connections"].splitlines()
        out = [esc(lines[0])]
        for c, line in zip(self.connections, lines[1:]):
            weight = "font-weight:bold;" if c.status == "broken" else ""
            out.append(f'<span style="color:{colour.get(c.status, GREY)};{weight}">{esc(line)}</span>')
        self.connections_html.value = f'<pre style="{_PRE}">' + "\n".join(out) + "</pre>"

    def _show_diff(self):
        text = self._texts["diff"]
        out = []
        for line in text.splitlines():
            if line.startswith("+"):
                out.append(f'<span style="color:{GREEN}">{esc(line)}</span>')
            elif line.startswith("-"):
                out.append(f'<span style="color:{RED}">{esc(line)}</span>')
            elif line.startswith("@@"):
                out.append(f'<span style="color:{GREY}">{esc(line)}</span>')
            else:
                out.append(f"<b>{esc(line)}</b>" if not out else esc(line))
        self.diff_html.value = (f'<div style="max-height:24em;overflow:auto"><pre style="{_PRE}">'
                                + "\n".join(out) + "</pre></div>")

    def _sync_controls(self):
        self._syncing = True
        try:
            if self.deployment is not None and self.replicas.value != self.deployment.replicas:
                if self.deployment.replicas > self.replicas.max:
                    self.replicas.max = self.deployment.replicas
                self.replicas.value = self.deployment.replicas
            pods = self._selected_pods()
            names = tuple(p.name for p in pods)
            if names != self._pod_names:
                rows, controls = [], {}
                for p in pods:
                    old = self._pod_controls.get(p.name)
                    if old is not None:
                        toggle, row = old
                    else:
                        toggle = W.ToggleButtons(options=STATES, value=_pod_state(p), style={"button_width": "8.5em"})
                        toggle.add_class("kplab-pod-state")
                        toggle.observe(lambda ch, name=p.name: self._on_pod_state(name, ch), names="value")
                        delete = W.Button(description="delete", icon="trash", layout=W.Layout(width="6em"),
                                          tooltip=f"delete Pod {p.name}")
                        delete.on_click(lambda _b, name=p.name: self.delete_pod(name))
                        label = W.HTML(value=f"<code>{esc(p.name)}</code> {esc(p.ip)} on {esc(p.node)}",
                                       layout=W.Layout(width="26em"))
                        row = W.HBox([label, toggle, delete], layout=W.Layout(align_items="center"))
                        row.add_class("kplab-pod-row")
                    controls[p.name] = (toggle, row)
                    rows.append(row)
                self._pod_controls = controls
                self._pod_names = names
                self.pod_rows.children = tuple(rows)
            for p in pods:
                toggle = self._pod_controls[p.name][0]
                if toggle.value != _pod_state(p):
                    toggle.value = _pod_state(p)
        finally:
            self._syncing = False

    def _refresh(self) -> None:
        self._draw_times = {}
        self._sync_controls()
        rows = self._endpoint_rows()
        self._texts["endpoints"] = self._endpoints_text(rows)
        self.endpoints_html.value = pre(self._texts["endpoints"])
        self._show_diff()
        ruleset = self.rendered.ruleset
        chain = self._svc_chain()
        d = self.rendered.decisions.get(self.spn)
        no_endpoints = (f"{self.spn} has no endpoints: kube-proxy writes no KUBE-SVC chain for it; its cluster IP "
                        f"is rejected in the filter table's KUBE-SERVICES "
                        f"({d.internal_filter_target if d and d.internal_filter_target else 'REJECT'})")
        # kplab.viz's chain_tree takes the service port itself (and then shows the filter REJECT
        # of a Service without endpoints); the fallback draws from the KUBE-SVC chain.
        root = chain if _viz.uses_fallback("chain_tree") else self.spn
        # the service lookup (kplab.kube.explain) once for both drawings
        service = self._service_view(ruleset)
        if root is None:
            self.tree.show_text(no_endpoints)
        else:
            try:
                t = time.perf_counter()
                if root == self.spn and service is not None:
                    root = service
                self._tree_drawing = _viz.chain_tree(ruleset, root, table="nat", into=self._tree_drawing,
                                                     capacity=1)
                self._draw_times["chain_tree"] = time.perf_counter() - t
                self.tree.show(self._tree_drawing)
                self._draw_times["chain_tree_png"] = time.perf_counter() - t - self._draw_times["chain_tree"]
            except KplabError as e:
                self.tree.show_text(f"{no_endpoints if chain is None else ''} ({e})".strip())
        try:
            t = time.perf_counter()
            self._odds_drawing = _viz.probabilities(ruleset, service if service is not None else self.spn,
                                                    into=self._odds_drawing, capacity=1)
            self._draw_times["probabilities"] = time.perf_counter() - t
            self.odds.show(self._odds_drawing)
            self._draw_times["probabilities_png"] = time.perf_counter() - t - self._draw_times["probabilities"]
        except KplabError as e:
            self.odds.show_text(f"no chart: {e}")
        self._texts["chain_tree"] = self.tree.text
        self._texts["probabilities"] = self.odds.text
        self._texts["landing"] = self._landing_text()
        self._show_landing()
        self._show_connections()

    def _service_view(self, ruleset):
        """The explain ServiceView of the service port under study (None: kplab.viz cannot say)."""
        if _viz.uses_fallback("probabilities"):
            return None
        try:
            from ..viz import resolve_service
            return resolve_service(ruleset, self.spn)
        except (ImportError, KplabError):
            return None

    # ------------------------------------------------------------------ text twin

    @property
    def outputs(self) -> dict:
        """The current text twins: endpoints, diff, chain_tree, probabilities, landing, connections."""
        keys = ("endpoints", "diff", "chain_tree", "probabilities", "landing", "connections")
        return {k: self._texts.get(k, "") for k in keys}

    def text(self) -> str:
        svc = self.service
        parts = [f"ServiceLab: Service {svc.key} ({svc.cluster_ip}:{self.port.port}/{self.port.protocol}) on "
                 f"{self.node}; connections from {self.client}"]
        for name, value in self.outputs.items():
            parts.append(f"--- {name.replace('_', ' ')}\n{value}")
        msgs = [f"{k}: {v}" for k, v in self.messages.items() if v]
        if msgs:
            parts.append("--- messages\n" + "\n".join(msgs))
        return "\n".join(parts)
