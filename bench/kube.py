"""Benchmark of the Kubernetes layer: render, re-render, explain.

    python3 bench/kube.py [--services N] [--endpoints M] [--quick]

Builds N ClusterIP Services with M ready endpoints each (EndpointSlices spread
over two nodes), renders node-1's rules with kplab's kube-proxy generator,
changes one Service's endpoints and renders again three ways (a fresh full
render; `Proxier.sync()` given every Service and slice again, partial; and
kube-proxy's change-tracker path, `Proxier.update()` with the one changed
Service's slices then `sync_changes()`, a partial sync), then explains the
dump. Prints figures and the targets of the issue next to them.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import ipaddress
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from kplab.kube.objects import (Endpoint, EndpointConditions, EndpointPort, EndpointSlice, ProxyConfig,  # noqa: E402
                                Service, ServicePort)


def cluster(services: int, endpoints: int, bump: int | None = None):
    """Services and slices; `bump` adds one endpoint to that Service."""
    svcs, slices = [], []
    base_svc = int(ipaddress.ip_address("10.96.0.10"))
    base_ep = int(ipaddress.ip_address("10.244.0.10"))
    for i in range(services):
        name = f"svc-{i:05d}"
        svcs.append(Service("default", name, (ServicePort(80, "TCP", "http", 8080),),
                            cluster_ip=str(ipaddress.ip_address(base_svc + i)), selector=(("app", name),)))
        n = endpoints + (1 if i == bump else 0)
        eps = tuple(Endpoint((str(ipaddress.ip_address(base_ep + i * (endpoints + 1) + k)),),
                             EndpointConditions(True, True, False), "node-1" if k % 2 == 0 else "node-2")
                    for k in range(n))
        slices.append(EndpointSlice("default", f"{name}-abcde", name, eps, (EndpointPort(8080, "http", "TCP"),)))
    return svcs, slices


def best(fn, n=3):
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--endpoints", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1,000 Services")
    a = p.parse_args(argv)
    n = 1000 if a.quick else a.services
    from kplab.kube.explain import explain
    from kplab.kube.proxier import Proxier, render
    from kplab.netfilter import parse
    config = ProxyConfig(node_name="node-1", node_ips=("192.168.0.2",))
    svcs, slices = cluster(n, a.endpoints)
    svcs2, slices2 = cluster(n, a.endpoints, bump=n // 2)

    t_render, rendered = best(lambda: render(svcs, slices, config), 1 if n >= 5000 else 3)
    t_restore, restore = best(lambda: render(svcs, slices, config).restore_text, 1)
    rules = restore.count("\n-A ") + restore.startswith("-A ")
    t_full2, _ = best(lambda: render(svcs2, slices2, config), 1)
    proxier = Proxier(config)
    proxier.sync(svcs, slices)
    gc.collect()
    t_partial, _ = best(lambda: proxier.sync(svcs2, slices2, partial=True), 1)

    # The change-tracker path: one Service's EndpointSlice changes (one more
    # endpoint, then back, on different Services), update() + sync_changes().
    tracker = Proxier(config)
    tracker.update(services=svcs, slices_for={f"{sl.namespace}/{sl.service}": (sl,) for sl in slices})
    tracker.sync_changes()
    inc_times = []
    for j in range(6):
        i = (n // 2 + (j // 2) * 7) % n
        sl = slices[i]
        if j % 2 == 0:       # one more endpoint (the address the bump of cluster() would use)
            extra = Endpoint((str(ipaddress.ip_address(int(ipaddress.ip_address("10.244.0.10"))
                                                       + i * (a.endpoints + 1) + a.endpoints)),),
                             EndpointConditions(True, True, False), "node-1")
            sl = dataclasses.replace(sl, endpoints=sl.endpoints + (extra,))
        gc.collect()
        t = time.perf_counter()
        tracker.update(slices_for={svcs[i].key: (sl,)})
        inc = tracker.sync_changes()
        inc_times.append(time.perf_counter() - t)
        assert inc.sync == "partial" and ":KUBE-SEP-" in inc.restore_text_raw
    assert inc.tables == rendered.tables         # back where it started: the node of a fresh render
    inc_times.sort()
    t_inc = inc_times[len(inc_times) // 2]      # the median
    gc.collect()
    t_save, save_text = best(lambda: render(svcs, slices, config).save_text, 1)
    ruleset = parse(save_text)
    t_explain, views = best(lambda: explain(ruleset), 1 if n >= 5000 else 3)

    def row(what, secs, target=None, ok=None):
        verdict = "" if target is None else f"{target}: {'PASS' if ok else 'MISS'}"
        print(f"  {what:<64} {secs * 1000:10.1f} ms   {verdict}")

    print(f"kplab kube benchmark: {n} ClusterIP Services x {a.endpoints} endpoints "
          f"({rules} rules in the restore text, {ruleset.rule_count()} in the node's dump)")
    row("render (full sync: decide and write)", t_render, "< 3 s at 10,000 Services", t_render < 3 or n < 10000)
    row("render + canonical restore text", t_restore)
    row("re-render after one Service changed: fresh full render", t_full2)
    row("re-render after one Service changed: Proxier.sync(all, partial)", t_partial)
    row("re-render after one Service changed: update() + sync_changes()", t_inc, "< 50 ms", t_inc < 0.05)
    print(f"  {'':<64} {'':>10}      (median of {len(inc_times)}: fastest {inc_times[0] * 1000:.1f} ms, "
          f"slowest {inc_times[-1] * 1000:.1f} ms; {t_full2 / t_inc:.0f}x faster than the full render)")
    row("node dump (engine parse + save of the render)", t_save)
    row(f"explain the dump ({len(views)} service ports)", t_explain, "< 2 s", t_explain < 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
