"""Proxier.update() / sync_changes(): kube-proxy's change trackers and
partial syncs, with work proportional to what changed.

Property-style: seeded random sequences of cluster changes (scale up/down,
endpoints not ready / terminating, Services added, removed, re-added,
changed, re-sent unchanged, slices for unknown Services, more than one
change per sync, forced full syncs, the large-cluster threshold crossed
both ways). After every sync, three proxiers must agree:

* A: fed the changes only (`update()` + `sync_changes()`);
* B: fed the whole state each time (`sync(services, slices, partial=...)`);
* R: `ReferenceProxier`, the Proxier as it was before change tracking
  (every sync walks and compares all Services), kept here as the oracle.

They must write byte for byte the same restore input and leave the node in
exactly the same state (so `save_text` is the same). Against a fresh full
`render()` of the same cluster: every full sync writes the same text (minus
the `-X` of chains only earlier syncs created), and the node's state is the
same (chain for chain; only the order chains were created in differs) unless
the large-cluster threshold was crossed since the last full sync (a partial
sync does not rewrite unchanged Services' chains, as in kube-proxy).

A ratio guard (no absolute times): at 5,000 Services the sync after one
Service's endpoints change costs less than a tenth of a full render.
"""
from __future__ import annotations

import base64
import dataclasses
import gc
import hashlib
import random
import re
import time

import pytest

import kplab.kube.proxier as P
from kplab.errors import KplabError
from kplab.kube.objects import (Endpoint, EndpointConditions, EndpointPort, EndpointSlice, LoadBalancerIngress,
                                ProxyConfig, Service, ServicePort)
from kplab.kube.proxier import Proxier, Rendered, canonical_order, render


# --------------------------------------------------------------------------
# The oracle

class ReferenceProxier:
    """The Proxier as it was before change tracking (every sync walks and
    compares every Service), unchanged apart from names: the oracle."""

    def __init__(self, config):
        self.config = config
        self._base_ctx, self._match_all, self._cidrs = P._effective(config)
        self._tables = P._fresh_tables()
        self._need_full = True
        self._svc_cache: dict = {}        # svc key -> (Service, infos, warnings)
        self._eps_cache: dict = {}        # svc key -> (slices tuple, endpoints_by_port dict)
        self._frag_cache: dict = {}       # (spn, proto) -> (info, raw eps, ctx, decision, fragment)
        self._last: dict = {}             # (spn, proto) -> (info, raw eps) of the previous sync
        self._syncs = 0

    def force_full_sync(self) -> None:
        """The next sync is full (kube-proxy's forceSyncProxyRules)."""
        self._need_full = True

    @property
    def tables(self) -> dict:
        return {t: {c: tuple(r) for c, r in ch.items()} for t, ch in self._tables.items()}

    def _collect(self, services, slices, warnings):
        cfg = self.config
        svc_cache, eps_cache = {}, {}
        ports = []
        by_service: dict = {}
        for sl in slices:
            by_service.setdefault(f"{sl.namespace}/{sl.service}", []).append(sl)
        seen_keys = set()
        for svc in services:
            key = svc.key
            if key in seen_keys:
                raise P.KplabError(f"Service {key} is given twice")
            seen_keys.add(key)
            hit = self._svc_cache.get(key)
            if hit is not None and (hit[0] is svc or hit[0] == svc):
                infos, warns = hit[1], hit[2]
            else:
                warns = []
                infos = P.service_port_infos(svc, cfg, warns)
            warnings.extend(warns)
            svc_cache[key] = (svc, infos, warns)
            if not infos:
                continue
            sls = tuple(by_service.get(key, ()))
            hit = self._eps_cache.get(key)
            if hit is not None and (hit[0] == sls):
                eps = hit[1]
            else:
                eps = P.endpoints_by_port(sls, cfg)
            eps_cache[key] = (sls, eps)
            for info in infos:
                ports.append((info, eps.get((info.port_name, info.protocol.upper()), ())))
        self._svc_cache, self._eps_cache = svc_cache, eps_cache
        ports.sort(key=lambda p: p[0].key)       # stable: ports keep their declaration order
        return ports

    def sync(self, services, slices, *, partial: bool = False) -> Rendered:
        """One syncProxyRules(): returns what was restored and the node after it."""
        cfg = self.config
        warnings: list = []
        ports = self._collect(tuple(services), tuple(slices), warnings)
        do_full = self._need_full or not partial

        # Changed services (for partial syncs): service info or endpoints differ.
        now = {(i.spn, i.protocol): (i, eps) for i, eps in ports}
        changed = set()
        for k in set(now) | set(self._last):
            a, b = now.get(k), self._last.get(k)
            if a is None or b is None or a[0] != b[0] or a[1] != b[1]:
                changed.add((a or b)[0].key)

        total = sum(len(eps) for _, eps in ports)
        large = total > P.LARGE_CLUSTER_ENDPOINTS_THRESHOLD
        ctx = self._base_ctx if not large else P._replace_ctx(self._base_ctx, large)

        filter_chains, filter_first, filter_last, nat_chains, nat_rules = P.write_fixed_rules(cfg, ctx)
        filter_rules = list(filter_first)
        active: set = set()
        decisions: dict = {}
        owned: dict = {}
        frag_cache = {}
        for info, raw in ports:
            k = (info.spn, info.protocol)
            hit = self._frag_cache.get(k)
            if hit is not None and hit[2] == ctx and hit[0] == info and hit[1] == raw:
                d, frag = hit[3], hit[4]
            else:
                d = P.decide(info, P._endpoint_infos(info, raw))
                frag = P.write_service_port(d, ctx)
            frag_cache[k] = (info, raw, ctx, d, frag)
            decisions[info.spn] = d
            owned[info.spn] = list(frag.active)
            active.update(frag.active)
            filter_rules.extend(frag.filter_rules)
            nat_rules.extend(frag.nat_top)
            if do_full or info.key in changed:
                nat_chains.extend(frag.nat_chains)
                nat_rules.extend(frag.nat_rules)
        self._frag_cache = frag_cache

        # Delete chains no longer in use.
        for chain in self._tables["nat"]:
            if chain not in active and chain.startswith(P.SERVICE_CHAIN_PREFIXES):
                nat_chains.append(f":{chain} - [0:0]")
                nat_rules.append(f"-X {chain}")
        # Finally, tail-call to the nodePorts chain.
        P.write_nodeports_jump(cfg, ctx, self._match_all, self._cidrs, nat_rules)
        filter_rules.extend(filter_last)

        parts = ["*filter", *filter_chains, *filter_rules, "COMMIT", "*nat", *nat_chains, *nat_rules, "COMMIT"]
        raw_text = "\n".join(parts) + "\n"

        tables = self._tables
        if do_full:
            # only the built-in chains (and chains created here) are modified in place
            tables = {t: {c: (list(r) if c in P.BUILTIN_CHAINS[t] else r) for c, r in ch.items()}
                      for t, ch in tables.items()}
            P._ensure_jumps(tables)
        try:
            tables = _reference_apply_restore(tables, raw_text)
        except P.KplabError:
            self._need_full = True          # as kube-proxy: after a failed sync, the next one is full
            raise
        self._tables = tables
        self._need_full = False
        self._last = now
        self._syncs += 1
        frozen = {t: {c: tuple(r) for c, r in ch.items()} for t, ch in tables.items()}
        return P.Rendered(
            restore_text_raw=raw_text, tables=frozen,
            chains=owned, decisions=decisions, config=cfg, sync="full" if do_full else "partial",
            large_cluster_mode=large, warnings=tuple(warnings))


def _reference_apply_restore(tables: dict, text: str) -> dict:
    """`_apply_restore` as it was: iptables-restore --noflush, line by line."""
    new = {t: dict(c) for t, c in tables.items()}
    owned: set = set()                  # (table, chain) whose list is new
    cur = tname = None
    for line in text.split("\n"):
        if not line or line[0] == "#":
            continue
        if line[0] == "*":
            tname = line[1:].strip()
            cur = new.setdefault(tname, {})
        elif line == "COMMIT":
            cur = None
        elif line[0] == ":":
            name = line[1:].split(" ", 1)[0]
            cur[name] = []
            owned.add((tname, name))
        elif line.startswith("-A "):
            sp = line.find(" ", 3)
            name = line[3:sp] if sp != -1 else line[3:]
            if name not in cur:
                raise P.KplabError(f"iptables-restore: chain {name} does not exist (table {tname})")
            if (tname, name) not in owned:
                cur[name] = list(cur[name])
                owned.add((tname, name))
            cur[name].append(line)
        elif line.startswith("-X "):
            cur.pop(line[3:].strip(), None)
    for t, chains in new.items():
        for rules in chains.values():
            for r in rules:
                i = r.rfind(" -j KUBE-")
                if i != -1:
                    j = r.find(" ", i + 4)
                    target = r[i + 4:j] if j != -1 else r[i + 4:]
                    if target not in chains:
                        raise P.KplabError(f"iptables-restore: {r!r} jumps to chain {target}, which does not exist")
    return new


def test_chain_name_hash_is_base32_of_sha256():
    rng = random.Random(3)
    for _ in range(20000):
        text = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 60)))
        want = base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()
        assert P._b32_16(text) == want, text


# --------------------------------------------------------------------------
# A random cluster

CONFIGS = {
    "v4": ProxyConfig(node_name="node-1", node_ips=("192.168.0.2",)),
    "v4-npa-masq-all": ProxyConfig(node_name="node-1", node_ips=("192.168.0.2", "10.1.0.2"),
                                   nodeport_addresses=("192.168.0.0/24",), masquerade_all=True,
                                   localhost_nodeports=False, random_fully=False),
    "v6": ProxyConfig(node_name="node-1", node_ips=("fd00:10::2",), cluster_cidr="fd00:244::/56", ip_family=6),
}


class World:
    """A cluster that changes at random; every change also goes to the
    change-tracking proxier as the smallest `update()` that describes it."""

    def __init__(self, rng: random.Random, family: int, n_services: int, max_endpoints: int = 6):
        self.rng, self.family, self.max_endpoints = rng, family, max_endpoints
        self.services: dict = {}       # key -> Service
        self.slices: dict = {}         # key -> tuple of EndpointSlice
        self.counter = 0
        self.removed: list = []        # keys of removed Services whose slices were kept
        for _ in range(n_services):
            self.add_service(None)

    # -- addresses
    def ip(self, kind: str, n: int, family: int | None = None) -> str:
        fam = family or self.family
        if fam == 4:
            base = {"svc": "10.96", "ep": "10.244", "ext": "192.168.99", "lb": "5.6"}[kind]
            hi, lo = divmod(n, 250)
            return f"{base}.{hi}.{lo + 1}" if kind != "ext" else f"{base}.{n % 250 + 1}"
        base = {"svc": "fd00:96::", "ep": "fd00:244::", "ext": "fd00:99::", "lb": "fd00:56::"}[kind]
        return f"{base}{n + 1:x}"

    # -- objects
    def make_service(self, name: str, idx: int) -> Service:
        r = self.rng
        kind = r.choices(["ClusterIP", "NodePort", "LoadBalancer", "headless", "other-family", "bad-ip"],
                         [10, 3, 3, 1, 1, 1])[0]
        fam = self.family
        if kind == "other-family":
            fam, kind = (6 if fam == 4 else 4), "ClusterIP"
        nports = r.choice([1, 1, 1, 2])
        ports = []
        for j in range(nports):
            ports.append(ServicePort(
                port=80 + j, protocol=r.choice(["TCP", "TCP", "UDP"]),
                name="" if nports == 1 and r.random() < 0.5 else f"p{80 + j}",
                target_port=8080 + j,
                node_port=(30000 + (idx * 2 + j) % 2000) if kind in ("NodePort", "LoadBalancer") else None))
        ext = ()
        if r.random() < 0.15:
            ext = (self.ip("ext", idx, fam),) + (("not-an-ip",) if r.random() < 0.3 else ())
        lb, ranges = (), ()
        if kind == "LoadBalancer":
            lb = (LoadBalancerIngress(self.ip("lb", idx, fam)),)
            if r.random() < 0.4:
                ranges = (("203.0.113.0/25", "192.168.0.0/24", "garbage") if fam == 4
                          else ("fd00:10::/64", "2001:db8::/32"))
        etp = "Local" if kind in ("NodePort", "LoadBalancer") and r.random() < 0.4 else None
        return Service(
            "ns" + str(idx % 3), name, tuple(ports), type=None if kind in ("ClusterIP", "headless") else kind,
            cluster_ip={"headless": "None", "bad-ip": f"10.96.bad.{idx}"}.get(kind) or self.ip("svc", idx, fam),
            selector=(("app", name),), external_ips=ext, lb_ingress=lb, lb_source_ranges=ranges,
            external_traffic_policy=etp,
            internal_traffic_policy="Local" if r.random() < 0.15 else None,
            health_check_node_port=(32000 + idx % 700) if kind == "LoadBalancer" and etp else None,
            session_affinity="ClientIP" if r.random() < 0.2 else None,
            session_affinity_timeout=r.choice([None, 60]))

    def make_endpoint(self) -> Endpoint:
        r = self.rng
        self.counter += 1
        cond = r.choices([EndpointConditions(True, True, False), EndpointConditions(),
                          EndpointConditions(False, True, True), EndpointConditions(False, False, True),
                          EndpointConditions(False, False, False)], [8, 2, 2, 1, 1])[0]
        return Endpoint((self.ip("ep", self.counter),), cond, r.choice(["node-1", "node-2", "node-3", None]))

    def make_slices(self, svc: Service, endpoints: tuple | None = None) -> tuple:
        r = self.rng
        eps = endpoints if endpoints is not None else tuple(
            self.make_endpoint() for _ in range(r.randint(0, self.max_endpoints)))
        ports = tuple(EndpointPort(8080 + j, p.name, p.protocol) for j, p in enumerate(svc.ports))
        at = "IPv4" if self.family == 4 else "IPv6"
        if len(eps) > 2 and r.random() < 0.3:              # two slices
            k = len(eps) // 2
            return (EndpointSlice(svc.namespace, f"{svc.name}-a", svc.name, eps[:k], ports, at),
                    EndpointSlice(svc.namespace, f"{svc.name}-b", svc.name, eps[k:], ports, at))
        return (EndpointSlice(svc.namespace, f"{svc.name}-a", svc.name, eps, ports, at),)

    # -- changes: each returns the update() arguments describing it
    def add_service(self, _):
        idx = self.counter = self.counter + 1
        svc = self.make_service(f"svc-{idx}", idx)
        self.services[svc.key] = svc
        self.slices[svc.key] = self.make_slices(svc)
        return dict(services=(svc,), slices_for={svc.key: self.slices[svc.key]})

    def remove_service(self, key):
        del self.services[key]
        if self.rng.random() < 0.5:
            del self.slices[key]
            return dict(removed_services=(key,), slices_for={key: ()})
        self.removed.append(key)                          # slices stay, as in kube-proxy
        return dict(removed_services=(key,))

    def readd_service(self, _):
        keys = [k for k in self.removed if k not in self.services]
        if not keys:
            return self.add_service(None)
        key = self.rng.choice(keys)
        self.removed.remove(key)
        ns, name = key.split("/")
        svc = dataclasses.replace(self.make_service(name, int(name.split("-")[1])), namespace=ns)
        self.services[key] = svc
        return dict(services=(svc,))

    def change_service(self, key):
        old = self.services[key]
        idx = int(old.name.split("-")[1])
        svc = dataclasses.replace(self.make_service(old.name, idx), namespace=old.namespace)
        self.services[key] = svc
        if self.rng.random() < 0.5:                     # the ports changed: new slices too
            self.slices[key] = self.make_slices(svc)
            return dict(services=(svc,), slices_for={key: self.slices[key]})
        return dict(services=(svc,))

    def resend_service(self, key):
        # an equal copy: nothing changes for the node
        svc = dataclasses.replace(self.services[key])
        self.services[key] = svc
        return dict(services=(svc,), slices_for={key: tuple(dataclasses.replace(s) for s in self.slices.get(key, ()))})

    def _endpoints(self, key):
        sls = self.slices.get(key, ())
        return [e for s in sls for e in s.endpoints]

    def _set_endpoints(self, key, eps):
        svc = self.services[key]
        self.slices[key] = self.make_slices(svc, tuple(eps))
        return dict(slices_for={key: self.slices[key]})

    def scale_up(self, key):
        eps = self._endpoints(key)
        eps += [self.make_endpoint() for _ in range(self.rng.randint(1, max(1, self.max_endpoints // 4)))]
        return self._set_endpoints(key, eps)

    def scale_down(self, key):
        eps = self._endpoints(key)
        for _ in range(self.rng.randint(1, max(1, self.max_endpoints // 4))):
            if eps:
                eps.pop(self.rng.randrange(len(eps)))
        return self._set_endpoints(key, eps)

    def not_ready(self, key):
        eps = self._endpoints(key)
        if eps:
            i = self.rng.randrange(len(eps))
            cond = self.rng.choice([EndpointConditions(False, True, True), EndpointConditions(False, False, False),
                                    EndpointConditions(True, True, False)])
            eps[i] = dataclasses.replace(eps[i], conditions=cond)
        return self._set_endpoints(key, eps)

    def orphan_slices(self, _):
        # slices whose Service does not exist (yet): ignored
        self.counter += 1
        key = f"ns0/ghost-{self.counter}"
        sl = EndpointSlice("ns0", f"ghost-{self.counter}-a", f"ghost-{self.counter}", (self.make_endpoint(),),
                           (EndpointPort(8080, "", "TCP"),), "IPv4" if self.family == 4 else "IPv6")
        self.slices[key] = (sl,)
        return dict(slices_for={key: (sl,)})

    CHANGES = (("scale_up", 6), ("scale_down", 6), ("not_ready", 5), ("add_service", 2), ("remove_service", 2),
               ("readd_service", 1), ("change_service", 2), ("resend_service", 2), ("orphan_slices", 1))

    def random_change(self):
        names = [n for n, _ in self.CHANGES]
        name = self.rng.choices(names, [w for _, w in self.CHANGES])[0]
        if name in ("add_service", "readd_service", "orphan_slices") or not self.services:
            return getattr(self, name if name in ("readd_service", "orphan_slices") else "add_service")(None)
        key = self.rng.choice(sorted(self.services))
        return getattr(self, name)(key)

    def all_services(self):
        return [self.services[k] for k in sorted(self.services)]

    def all_slices(self):
        return [s for k in sorted(self.slices) for s in self.slices[k]]


# --------------------------------------------------------------------------
# Comparisons

def strip_stale(text: str) -> str:
    """Without the `:C` / `-X C` pairs of chains only earlier syncs created."""
    stale = set(re.findall(r"^-X (\S+)$", text, flags=re.M))
    return "".join(line + "\n" for line in text.split("\n")[:-1]
                   if not (line.startswith("-X ") or (line.startswith(":") and line[1:].split(" ")[0] in stale)))


def same_sync(a, b, what: str) -> None:
    assert a.sync == b.sync, what
    assert a.restore_text_raw == b.restore_text_raw, what
    assert a.large_cluster_mode == b.large_cluster_mode, what
    assert a.tables == b.tables, what
    for t in a.tables:                                # the same chain order: the same save_text
        assert list(a.tables[t]) == list(b.tables[t]), what
    assert a.chains == b.chains, what
    assert a.decisions == b.decisions, what
    assert a.warnings == b.warnings, what


def run_sequence(seed: int, config: ProxyConfig, n_services: int, steps: int, max_endpoints: int = 6,
                 save_every: int = 10) -> dict:
    rng = random.Random(seed)
    world = World(rng, config.ip_family, n_services, max_endpoints)
    a, b, r = Proxier(config), Proxier(config), ReferenceProxier(config)
    a.update(services=world.all_services(), slices_for=dict(world.slices))
    seen = {"partial": 0, "full": 0, "large": set(), "flips": 0, "changed_writes": 0}
    flipped_since_full = False
    last_large = None
    for step in range(steps):
        what = f"seed {seed} step {step}"
        if step:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                a.update(**world.random_change())
        partial = rng.random() < 0.85
        if rng.random() < 0.05:
            for px in (a, b, r):
                px.force_full_sync()
        services, slices = world.all_services(), world.all_slices()
        ra = a.sync_changes(partial=partial)
        rb = b.sync(services, slices, partial=partial)
        rr = r.sync(services, slices, partial=partial)
        same_sync(ra, rr, what + " (update/sync_changes vs reference)")
        same_sync(rb, rr, what + " (sync vs reference)")
        assert not a.has_pending_changes
        seen[ra.sync] += 1
        seen["large"].add(ra.large_cluster_mode)
        if last_large is not None and last_large != ra.large_cluster_mode:
            seen["flips"] += 1
            flipped_since_full = flipped_since_full or ra.sync == "partial"
        last_large = ra.large_cluster_mode
        if ra.sync == "full":
            flipped_since_full = False

        fresh = render(services, slices, config)
        if ra.sync == "full":
            assert strip_stale(ra.restore_text_raw) == fresh.restore_text_raw, what
        else:
            seen["changed_writes"] += ra.restore_text_raw.count(":KUBE-SVC-") > 0
        check_save = step % save_every == 0 or step == steps - 1
        if check_save:                                         # the node's whole state, even after a partial sync
            assert ra.save_text == rr.save_text, what
        if not flipped_since_full:
            assert ra.tables == fresh.tables, what             # chain for chain
            if check_save:
                assert canonical_order(ra.save_text) == canonical_order(fresh.save_text), what
    return seen


# --------------------------------------------------------------------------
# Property tests

@pytest.mark.parametrize("seed,config", [(1, "v4"), (2, "v4"), (3, "v4-npa-masq-all"), (4, "v6")])
def test_random_changes_match_full_render_and_reference(seed, config):
    seen = run_sequence(seed, CONFIGS[config], n_services=25, steps=60)
    assert seen["partial"] > 30 and seen["full"] >= 2          # both kinds really ran
    assert seen["changed_writes"] > 10                          # partial syncs that rewrote Services


def test_random_changes_across_the_large_cluster_threshold():
    # 14 Services of up to 160 endpoints: around the 1,000-endpoint threshold,
    # crossed both ways (this seed crosses it 6 times, mostly in partial syncs)
    seen = run_sequence(5, CONFIGS["v4"], n_services=14, steps=40, max_endpoints=160, save_every=13)
    assert seen["large"] == {True, False} and seen["flips"] >= 2


def test_many_changes_in_one_partial_sync():
    # more than _BULK_ROWS Services at once: the order and columns are rebuilt
    # wholesale inside a partial sync; inputs in no particular order
    rng = random.Random(21)
    world = World(rng, 4, 150)
    a, b, r = Proxier(CFG), Proxier(CFG), ReferenceProxier(CFG)
    a.update(services=world.all_services(), slices_for=dict(world.slices))
    for step in range(4):
        if step:
            keys = sorted(world.services)
            for key in rng.sample(keys, 100):
                a.update(**getattr(world, rng.choice(["scale_up", "scale_down", "not_ready"]))(key))
            for _ in range(30):
                a.update(**world.add_service(None))
            for key in rng.sample(sorted(world.services), 20):
                a.update(**world.remove_service(key))
        services, slices = world.all_services(), world.all_slices()
        rng.shuffle(services)
        rng.shuffle(slices)
        ra, rb, rr = a.sync_changes(), b.sync(services, slices, partial=True), r.sync(services, slices, partial=True)
        same_sync(rb, rr, f"step {step}")
        assert ra.warnings == tuple(sorted(ra.warnings, key=lambda w: w.split(":")[0]))   # by Service
        same_sync(dataclasses.replace(ra, warnings=rr.warnings), rr, f"step {step}")
        assert sorted(ra.warnings) == sorted(rr.warnings)
    assert ra.sync == "partial" and ra.warnings


# --------------------------------------------------------------------------
# The API

def _svc(name, ip, ns="default", **kw):
    return Service(ns, name, (ServicePort(80, "TCP", "http", 8080),), cluster_ip=ip, selector=(("app", name),), **kw)


def _slice(svc, *ips, ready=True, name=None):
    eps = tuple(Endpoint((ip,), EndpointConditions(ready, True, not ready), "node-1") for ip in ips)
    return EndpointSlice(svc.namespace, name or f"{svc.name}-x", svc.name, eps, (EndpointPort(8080, "http", "TCP"),))


CFG = CONFIGS["v4"]


def test_update_then_sync_changes_writes_only_changed_services():
    a, b = _svc("a", "10.96.0.1"), _svc("b", "10.96.0.2")
    px = Proxier(CFG)
    px.update(services=(a, b), slices_for={a.key: (_slice(a, "10.244.0.1"),), b.key: (_slice(b, "10.244.0.2"),)})
    r1 = px.sync_changes()
    assert r1.sync == "full"                                  # the first sync is full
    assert not px.has_pending_changes
    px.update(slices_for={b.key: (_slice(b, "10.244.0.2", "10.244.0.3"),)})
    assert px.has_pending_changes
    r2 = px.sync_changes()
    assert r2.sync == "partial"
    svc_a, svc_b = r1.chains["default/a:http"][0], r1.chains["default/b:http"][0]
    assert f":{svc_b} " in r2.restore_text_raw and f":{svc_a} " not in r2.restore_text_raw
    assert f"-j {svc_a}" in r2.restore_text_raw              # every top-level rule is written
    # the node still has a's chains, and the whole state is a fresh render's
    fresh = render((a, b), (_slice(a, "10.244.0.1"), _slice(b, "10.244.0.2", "10.244.0.3")), CFG)
    assert r2.tables == fresh.tables
    assert canonical_order(r2.save_text) == canonical_order(fresh.save_text)
    # nothing changed: nothing but the top-level chains
    r3 = px.sync_changes()
    assert ":KUBE-SVC-" not in r3.restore_text_raw and ":KUBE-SEP-" not in r3.restore_text_raw
    assert r3.tables == r2.tables


def test_removed_service_keeps_its_slices_until_told():
    a = _svc("a", "10.96.0.1")
    sl = _slice(a, "10.244.0.1")
    px = Proxier(CFG)
    px.update(services=(a,), slices_for={a.key: (sl,)})
    r1 = px.sync_changes()
    px.update(removed_services=(a.key,))
    r2 = px.sync_changes()
    assert r2.chains == {} and f"-X {r1.chains['default/a:http'][0]}" in r2.restore_text_raw
    assert not any(c.startswith("KUBE-S") for c in r2.tables["nat"] if c not in ("KUBE-SERVICES",))
    px.update(services=(a,))                                  # back, with the slices it had
    r3 = px.sync_changes()
    assert r3.tables == r1.tables
    px.update(removed_services=(a,), slices_for={a.key: ()})  # a Service object is accepted too
    px.update(services=(a,))
    assert "REJECT" in px.sync_changes().restore_text_raw     # no endpoints any more


def test_update_and_sync_can_be_mixed():
    a, b = _svc("a", "10.96.0.1"), _svc("b", "10.96.0.2")
    sa, sb = _slice(a, "10.244.0.1"), _slice(b, "10.244.0.2")
    px, ref = Proxier(CFG), ReferenceProxier(CFG)
    same_sync(px.sync([a, b], [sa, sb]), ref.sync([a, b], [sa, sb]), "sync")
    sb2 = _slice(b, "10.244.0.2", ready=False)
    px.update(slices_for={b.key: (sb2,)})
    same_sync(px.sync_changes(), ref.sync([a, b], [sa, sb2], partial=True), "update")
    same_sync(px.sync([a], [sa, sb2], partial=True), ref.sync([a], [sa, sb2], partial=True), "sync again")


def test_warnings_follow_changes_of_ignored_services():
    bad = _svc("a", "10.96.0.bad")                           # ignored, with a warning
    px = Proxier(CFG)
    px.update(services=(bad,))
    assert px.sync_changes().warnings == ("default/a: clusterIP '10.96.0.bad' is not an IP address; Service ignored",)
    px.update(services=(_svc("a", "None"),))                 # still ignored (headless), no warning now
    assert px.sync_changes().warnings == ()
    px.update(services=(bad,), slices_for={bad.key: (_slice(bad, "10.244.0.1"),)})
    r = px.sync_changes()
    assert len(r.warnings) == 1 and r.chains == {}
    px.update(removed_services=(bad.key,))
    assert px.sync_changes().warnings == ()


def test_update_refuses_bad_input_and_changes_nothing():
    a = _svc("a", "10.96.0.1")
    px = Proxier(CFG)
    px.update(services=(a,), slices_for={a.key: (_slice(a, "10.244.0.1"),)})
    before = px.sync_changes()
    with pytest.raises(KplabError, match="given twice"):
        px.update(services=(a, _svc("a", "10.96.0.9")))
    with pytest.raises(KplabError, match="both updated and removed"):
        px.update(services=(a,), removed_services=(a.key,))
    other = _svc("other", "10.96.0.5")
    with pytest.raises(KplabError, match="belongs to Service default/other, not default/a"):
        px.update(services=(_svc("a", "10.96.0.7"),), slices_for={a.key: (_slice(other, "10.244.0.9"),)})
    assert not px.has_pending_changes
    after = px.sync_changes()
    assert after.tables == before.tables and ":KUBE-SVC-" not in after.restore_text_raw


def test_failed_partial_restore_is_followed_by_a_full_sync(monkeypatch):
    a, b = _svc("a", "10.96.0.1"), _svc("b", "10.96.0.2")
    sa, sb = _slice(a, "10.244.0.1"), _slice(b, "10.244.0.2")
    px = Proxier(CFG)
    px.update(services=(a, b), slices_for={a.key: (sa,), b.key: (sb,)})
    before = px.sync_changes()
    sb2 = _slice(b, "10.244.0.2", "10.244.0.3")
    px.update(slices_for={b.key: (sb2,)})

    def refuse(rules, chains):
        raise KplabError("iptables-restore: refused")
    with monkeypatch.context() as m:
        m.setattr(P, "_check_jumps", refuse)
        with pytest.raises(KplabError, match="refused"):
            px.sync_changes()
    assert px.tables == before.tables                          # nothing was applied
    assert px.has_pending_changes
    r = px.sync_changes()                                      # asked partial, done full
    assert r.sync == "full"
    fresh = render((a, b), (sa, sb2), CFG)
    assert r.restore_text_raw == fresh.restore_text_raw and r.tables == fresh.tables


def test_lines_for_undeclared_chains_fall_back_to_replaying_the_text(monkeypatch):
    # A Service fragment with a rule for a chain it does not declare (the
    # generator never writes one): the partial sync replays the restore text.
    real = P.write_service_port

    def odd(d, ctx):
        f = real(d, ctx)
        return dataclasses.replace(f, nat_rules=f.nat_rules + (f"-A {P.KUBE_MARK_MASQ} -m comment "
                                                               f'--comment "{d.info.spn}" -j RETURN',))
    monkeypatch.setattr(P, "write_service_port", odd)
    rng = random.Random(11)
    world = World(rng, 4, 10)
    a, r = Proxier(CFG), ReferenceProxier(CFG)
    a.update(services=world.all_services(), slices_for=dict(world.slices))
    for step in range(15):
        if step:
            a.update(**world.random_change())
        same_sync(a.sync_changes(), r.sync(world.all_services(), world.all_slices(), partial=True), f"step {step}")


# --------------------------------------------------------------------------
# Cost: a ratio, never an absolute time

def _bench_cluster(n: int, bump: int | None = None):
    svcs, slices = [], []
    for i in range(n):
        name = f"svc-{i:05d}"
        svc = Service("default", name, (ServicePort(80, "TCP", "http", 8080),),
                      cluster_ip=f"10.{96 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}", selector=(("app", name),))
        k = 5 + (1 if i == bump else 0)
        eps = tuple(Endpoint((f"10.{200 + i // 10000}.{i // 40 % 250}.{(i % 40) * 6 + j + 1}",),
                             EndpointConditions(True, True, False), "node-1" if j % 2 == 0 else "node-2")
                    for j in range(k))
        svcs.append(svc)
        slices.append(EndpointSlice("default", f"{name}-abcde", name, eps, (EndpointPort(8080, "http", "TCP"),)))
    return svcs, slices


def test_incremental_sync_costs_a_tenth_of_a_full_render_at_5000_services():
    n = 5000
    svcs, slices = _bench_cluster(n)
    _, bumped = _bench_cluster(n, bump=n // 2)
    gc.collect()
    t = time.perf_counter()
    full = render(svcs, slices, CFG)
    t_full = time.perf_counter() - t
    px = Proxier(CFG)
    px.sync(svcs, slices)
    key = svcs[n // 2].key
    times = []
    for i in range(4):
        px.update(slices_for={key: ((bumped if i % 2 == 0 else slices)[n // 2],)})
        t = time.perf_counter()
        r = px.sync_changes()
        times.append(time.perf_counter() - t)
        assert r.sync == "partial"
    assert r.tables == full.tables                             # back where it started
    assert min(times) * 10 < t_full, (times, t_full)
