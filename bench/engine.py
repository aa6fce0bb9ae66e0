"""Engine benchmark: how kplab scales to kube-proxy-sized rulesets.

    python3 bench/engine.py [--services N] [--endpoints M] [--seed S] [--quick] [--no-kernel]

Builds kube-proxy-shaped iptables-save texts (bench/_rulesets.py) of about
10,000 and about 100,000 rules (M endpoints per Service; `--services N` sets
the large one) and prints, for each: parse time (`kplab.parse_rules`), save
time, one trace (`kplab.standard_node(rs).send_from("client", CLUSTER_IP,
"tcp", 80)`, median of several, to the first and to the last Service of nat
KUBE-SERVICES) with the rules it evaluated, the all-paths enumeration of the
last Service, and peak memory (tracemalloc peak of one parse, and ru_maxrss
of a fresh process that parsed once). Then the `import kplab` time of a fresh
interpreter, the targets of the performance issue with PASS/MISS, scaling
ratios, and, when run as root with iptables-restore installed, the kernel's
own `iptables-restore` of the same large text into a throwaway network
namespace.

Times are wall-clock (time.perf_counter) on this machine: read them as
orders of magnitude. `--quick` does fewer repetitions and skips the slow
memory probe of the large ruleset (about 15 s in all).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from _rulesets import (kube_proxy_ruleset, kube_proxy_services, rule_count,  # noqa: E402
                       services_for_rules)

#: The targets of the performance issue.
TARGET_PARSE_100K = 2.0      # seconds, parse of ~100k rules
TARGET_TRACE = 0.010         # seconds, one trace
TARGET_IMPORT = 0.150        # seconds, `import kplab`
SMALL_RULES = 100            # the "small" ruleset of the trace scaling ratio


# --------------------------------------------------------------------------
# Timing helpers

def _timed(fn, runs: int):
    """Run `fn` `runs` times; return (list of seconds, last result)."""
    times, result = [], None
    for _ in range(runs):
        result = None
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def _ms(s: float) -> str:
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 0.001:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _mb(b: float) -> str:
    return f"{b / 1e6:.0f} MB"


def _verdict(value: float, target: float) -> str:
    return "PASS" if value < target else "MISS"


# --------------------------------------------------------------------------
# One ruleset size

def measure(services: int, endpoints: int, seed: int, *, parse_runs: int, trace_runs: int,
            paths_runs: int, gc_off_probe: bool) -> dict:
    import kplab
    text = kube_proxy_ruleset(services, endpoints, seed)
    svcs = kube_proxy_services(services, endpoints, seed)
    first, last = svcs[0], svcs[-1]
    out = {"services": services, "endpoints": endpoints, "rules": rule_count(services, endpoints),
           "bytes": len(text), "text": text}

    gc.collect()
    rs = None
    times = []
    for _ in range(parse_runs):
        rs = None                   # do not keep two rulesets alive
        gc.collect()
        t0 = time.perf_counter()
        rs = kplab.parse_rules(text)
        times.append(time.perf_counter() - t0)
    out["parse"] = statistics.median(times)
    out["parse_best"] = min(times)
    out["parse_runs"] = len(times)
    assert rs.rule_count() == out["rules"], (rs.rule_count(), out["rules"])
    if gc_off_probe:
        rs = None
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            rs = kplab.parse_rules(text)
            out["parse_nogc"] = time.perf_counter() - t0
        finally:
            gc.enable()

    # save: the first call builds each rule's text; later calls may reuse a cache
    t0 = time.perf_counter()
    saved = kplab.save_rules(rs)
    out["save_cold"] = time.perf_counter() - t0
    out["save_fixpoint"] = saved == text
    times, _ = _timed(lambda: kplab.save_rules(rs), max(1, parse_runs))
    out["save"] = statistics.median(times)

    # one trace, on a fresh standard node each time (no conntrack entry left over)
    def trace_to(svc):
        return kplab.standard_node(rs).send_from("client", svc.cluster_ip, "tcp", 80)

    t0 = time.perf_counter()
    tr = trace_to(first)
    out["trace_cold"] = time.perf_counter() - t0
    for key, svc in (("first", first), ("last", last)):
        times, tr = _timed(lambda: trace_to(svc), trace_runs)
        out[f"trace_{key}"] = statistics.median(times)
        out[f"trace_{key}_best"] = min(times)
        out[f"evaluated_{key}"] = tr.evaluated
        eps = {ep for _, ep, _ in svc.endpoints}
        out[f"trace_{key}_ok"] = tr.verdict == "ACCEPT" and tr.dnat_to in eps

    node = kplab.standard_node(rs)
    pkt = node.packet("client", last.cluster_ip, "tcp", 80)
    times, paths = _timed(lambda: node.all_paths(pkt, "client"), paths_runs)
    out["all_paths"] = statistics.median(times)
    out["paths"] = len(paths)
    out["paths_ok"] = sorted(p.dnat_to for p in paths) == sorted(ep for _, ep, _ in last.endpoints)
    return out


def memory_probe(services: int, endpoints: int, seed: int, with_tracemalloc: bool) -> dict:
    """Peak memory of parsing, measured in a fresh interpreter."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", str(services), str(endpoints),
           str(seed)] + (["--_tracemalloc"] if with_tracemalloc else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout)


def _peak_rss() -> int:
    """This process's peak resident set size, in bytes: VmHWM where Linux has
    it (ru_maxrss survives execve, so a child would report its parent's peak
    if that was higher), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1024 if sys.platform != "darwin" else 1)


def _memory_child(services: int, endpoints: int, seed: int, with_tracemalloc: bool) -> None:
    import kplab
    text = kube_proxy_ruleset(services, endpoints, seed)
    gc.collect()
    before = _peak_rss()
    rs = kplab.parse_rules(text)
    after = _peak_rss()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1024 if sys.platform != "darwin" else 1)
    out = {"rss_before": before, "rss_after": after, "ru_maxrss": maxrss, "text_bytes": len(text)}
    if with_tracemalloc:
        import tracemalloc
        rs = None
        gc.collect()
        tracemalloc.start()
        rs = kplab.parse_rules(text)
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_peak"] = peak
        out["tracemalloc_retained"] = cur
    del rs
    print(json.dumps(out))


# --------------------------------------------------------------------------
# import kplab

def import_time(runs: int) -> dict:
    """`import kplab` in fresh interpreters: -X importtime's cumulative figure
    for the package, and wall time of `import kplab` minus wall time of `pass`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def wall(code):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    wall("import kplab")            # warm the bytecode cache and the OS file cache
    base = [wall("pass") for _ in range(runs)]
    imp = [wall("import kplab") for _ in range(runs)]
    cumul = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import kplab"], env=env, cwd=ROOT,
                           capture_output=True, text=True, check=True)
        for line in r.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+)\s*\|\s*(\d+)\s*\|\s*kplab$", line)
            if m:
                cumul.append(int(m.group(2)) / 1e6)
    return {"importtime": statistics.median(cumul) if cumul else None,
            "wall_delta": statistics.median(imp) - statistics.median(base),
            "wall_import": statistics.median(imp), "wall_pass": statistics.median(base)}


# --------------------------------------------------------------------------
# The kernel's iptables-restore (root only, in a throwaway network namespace)

_NS_PREFIX = "kplab-"


def _sweep_stale_namespaces() -> None:
    """Delete namespaces an earlier, killed run of this benchmark left behind
    (named kplab-<pid>-bench-<n>, whose pid is gone)."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in r.stdout.splitlines()[:1000]:
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"kplab-(\d+)-bench-\d+", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def _normalise_save(text: str) -> str:
    """iptables-save output without its '#' lines and with zero counters."""
    lines = [re.sub(r"\[\d+:\d+\]$", "[0:0]", ln) for ln in text.splitlines() if not ln.startswith("#")]
    return "\n".join(lines) + "\n"


def kernel_restore(text: str, runs: int, compare: bool = False) -> dict | None:
    """Seconds for `iptables-restore` of `text` into a fresh network namespace
    (median and best of `runs`, each in a new namespace), or None when not
    possible here. With `compare`, also whether the kernel's `iptables-save`
    prints `text` back unchanged (the generator's claim). The namespace has
    only its own loopback: nothing connects it to the root namespace, and it
    is deleted in all cases."""
    if os.geteuid() != 0 or not shutil.which("iptables-restore") or not shutil.which("ip"):
        return None
    _sweep_stale_namespaces()
    with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
        f.write(text)
        path = f.name
    times, overhead, error, same = [], [], None, None
    try:
        for n in range(runs):
            ns = f"{_NS_PREFIX}{os.getpid()}-bench-{n}"
            created = False
            try:
                r = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True, timeout=30)
                if r.returncode != 0:
                    error = r.stderr.strip()
                    break
                created = True
                # the cost of entering the namespace, to subtract
                t0 = time.perf_counter()
                subprocess.run(["ip", "netns", "exec", ns, "true"], check=True, timeout=30)
                overhead.append(time.perf_counter() - t0)
                with open(path, "rb") as rules:
                    t0 = time.perf_counter()
                    r = subprocess.run(["ip", "netns", "exec", ns, "iptables-restore"], stdin=rules,
                                       capture_output=True, text=True, timeout=300)
                    dt = time.perf_counter() - t0
                if r.returncode != 0:
                    error = (r.stderr.strip().splitlines() or ["iptables-restore failed"])[0]
                    break
                times.append(dt)
                if compare and n == 0:
                    t0 = time.perf_counter()
                    chk = subprocess.run(["ip", "netns", "exec", ns, "iptables-save"],
                                         capture_output=True, text=True, timeout=300)
                    save_time = time.perf_counter() - t0
                    same = chk.returncode == 0 and _normalise_save(chk.stdout) == text
            finally:
                if created:
                    subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=60)
    finally:
        os.unlink(path)
    if error or not times:
        return {"error": error or "no run"}
    enter = statistics.median(overhead)
    out = {"best": min(times) - enter, "median": statistics.median(times) - enter, "runs": len(times),
           "enter": enter, "backend": subprocess.run(["iptables-restore", "--version"], capture_output=True,
                                                     text=True).stdout.strip()}
    if compare:
        out["same"], out["save_time"] = same, save_time
    return out


# --------------------------------------------------------------------------
# Report

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=None,
                    help="Services in the large ruleset (default: about 100,000 rules)")
    ap.add_argument("--endpoints", type=int, default=5, help="endpoints per Service (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (about 15 s)")
    ap.add_argument("--no-kernel", action="store_true", help="skip the kernel iptables-restore comparison")
    ap.add_argument("--_memory-child", nargs=3, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_tracemalloc", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._memory_child:
        _memory_child(*a._memory_child, a._tracemalloc)
        return 0
    if a.endpoints < 1 or (a.services is not None and a.services < 1):
        ap.error("--services and --endpoints must be at least 1")

    m = a.endpoints
    small_n = services_for_rules(SMALL_RULES, m)
    mid_n = services_for_rules(10_000, m)
    big_n = a.services if a.services is not None else services_for_rules(100_000, m)
    q = a.quick
    t_start = time.perf_counter()

    print(f"kplab engine benchmark  (python {sys.version.split()[0]}, {'quick' if q else 'full'} run, "
          f"{m} endpoints per Service, seed {a.seed})")
    print(f"ruleset sizes: small {small_n} Services = {rule_count(small_n, m):,} rules; "
          f"10k: {mid_n} Services = {rule_count(mid_n, m):,} rules; "
          f"large: {big_n} Services = {rule_count(big_n, m):,} rules")
    print(flush=True)

    # Memory first, in fresh interpreters, while this process is still small.
    mem_mid = memory_probe(mid_n, m, a.seed, with_tracemalloc=True)
    mem_big = memory_probe(big_n, m, a.seed, with_tracemalloc=not q)
    imp = import_time(3 if q else 7)
    small = measure(small_n, m, a.seed, parse_runs=3, trace_runs=15, paths_runs=3, gc_off_probe=False)
    mid = measure(mid_n, m, a.seed, parse_runs=3 if q else 5, trace_runs=9 if q else 15,
                  paths_runs=3 if q else 5, gc_off_probe=not q)
    big = measure(big_n, m, a.seed, parse_runs=1 if q else 3, trace_runs=5 if q else 11,
                  paths_runs=1 if q else 3, gc_off_probe=not q)
    kern_mid = kern_big = None
    if not a.no_kernel:
        kern_mid = kernel_restore(mid.pop("text"), 1 if q else 3, compare=True)
        if kern_mid is not None:
            kern_big = kernel_restore(big.pop("text"), 1 if q else 3)

    cols = [(f"{mid['rules']:,}", mid), (f"{big['rules']:,}", big)]
    big_label = f"{round(big['rules'] / 1000)}k"
    mems = {id(mid): mem_mid, id(big): mem_big}
    w0, w = 42, 19
    print(f"{'':{w0}}" + "".join(f"{name + ' rules':>{w}}" for name, _ in cols) + "   target")
    print("-" * (w0 + w * len(cols) + 30))

    def row(label, fmt, target=None):
        cells = "".join(f"{fmt(r):>{w}}" for _, r in cols)
        print(f"{label:{w0}}{cells}" + (f"   {target}" if target else ""))

    def mem(key, conv):
        def f(r):
            mm = mems[id(r)]
            if "error" in mm:
                return "error"
            return conv(mm) if key in mm else "(--quick)"
        return f

    row("rules", lambda r: f"{r['rules']:,}")
    row("text size", lambda r: f"{r['bytes'] / 1e6:.1f} MB")
    row("parse_rules (median of n runs)", lambda r: f"{_ms(r['parse'])} n={r['parse_runs']}",
        f"< {TARGET_PARSE_100K:.0f} s at 100k: {_verdict(big['parse'], TARGET_PARSE_100K)}"
        + ("" if 90_000 <= big["rules"] <= 110_000 else f" (measured at {big_label})"))
    row("  per rule", lambda r: f"{r['parse'] / r['rules'] * 1e6:.1f} us")
    if "parse_nogc" in big:
        row("  with gc disabled (one run)", lambda r: _ms(r["parse_nogc"]))
    row("save_rules, first call", lambda r: _ms(r["save_cold"]))
    row("save_rules, again", lambda r: _ms(r["save"]))
    row("save(parse(text)) == text", lambda r: "yes" if r["save_fixpoint"] else "NO")
    row("first trace after parse (cold)", lambda r: _ms(r["trace_cold"]))
    row("trace to FIRST Service (median)", lambda r: _ms(r["trace_first"]),
        f"< {TARGET_TRACE * 1e3:.0f} ms at {big_label}: {_verdict(big['trace_first'], TARGET_TRACE)}")
    row("  rules evaluated", lambda r: f"{r['evaluated_first']:,}")
    row("trace to LAST Service (median)", lambda r: _ms(r["trace_last"]),
        f"< {TARGET_TRACE * 1e3:.0f} ms at {big_label}: {_verdict(big['trace_last'], TARGET_TRACE)}")
    row("  rules evaluated", lambda r: f"{r['evaluated_last']:,}")
    row("  per evaluated rule", lambda r: f"{r['trace_last'] / r['evaluated_last'] * 1e6:.2f} us")
    row("all-paths, LAST Service (median)", lambda r: f"{_ms(r['all_paths'])}, {r['paths']} paths")
    row("traces end at the Service's endpoints",
        lambda r: "yes" if r["trace_first_ok"] and r["trace_last_ok"] and r["paths_ok"] else "NO")
    row("tracemalloc peak during parse", mem("tracemalloc_peak", lambda mm: _mb(mm["tracemalloc_peak"])))
    row("  still allocated after (the Ruleset)",
        mem("tracemalloc_retained", lambda mm: _mb(mm["tracemalloc_retained"])))
    row("peak RSS of a fresh process after parse", mem("ru_maxrss", lambda mm: _mb(mm["ru_maxrss"])))
    row("  growth during the parse", mem("rss_after", lambda mm: _mb(mm["rss_after"] - mm["rss_before"])))
    it = imp["importtime"]
    print(f"{'import kplab (-X importtime, cumulative)':{w0}}{(_ms(it) if it else '?'):>{w}}{'':{w}}"
          f"   < {TARGET_IMPORT * 1e3:.0f} ms: {_verdict(it, TARGET_IMPORT) if it else '?'}")
    print(f"{'import kplab (wall, minus python -c pass)':{w0}}{_ms(imp['wall_delta']):>{w}}{'':{w}}"
          f"   < {TARGET_IMPORT * 1e3:.0f} ms: {_verdict(imp['wall_delta'], TARGET_IMPORT)}"
          f" ({_ms(imp['wall_import'])} - {_ms(imp['wall_pass'])})")
    print()
    print("scaling ratios (per-rule figures: 1.0 = linear)")
    sr = rule_count(small_n, m)

    def ratio(label, value, note=""):
        print(f"  {label:<44}{value:7.2f}" + (f"   ({note})" if note else ""))

    ratio(f"parse time per rule, {big_label} / 10k",
          (big["parse"] / big["rules"]) / (mid["parse"] / mid["rules"]))
    ratio(f"trace to last Service, 10k / {sr} rules", mid["trace_last"] / small["trace_last"],
          f"rules x{mid['rules'] / small['rules']:.0f}, evaluated "
          f"x{mid['evaluated_last'] / small['evaluated_last']:.0f}; {sr} rules: {_ms(small['trace_last'])}")
    ratio(f"trace to last Service, {big_label} / 10k", big["trace_last"] / mid["trace_last"],
          f"rules x{big['rules'] / mid['rules']:.1f}, evaluated x{big['evaluated_last'] / mid['evaluated_last']:.1f}")
    ratio(f"trace to first Service, {big_label} / {sr} rules", big["trace_first"] / small["trace_first"],
          f"{big['evaluated_first']} rules evaluated in both")
    ratio(f"all-paths / one trace, last Service, {big_label}", big["all_paths"] / big["trace_last"],
          f"{big['paths']} paths")
    print()
    if kern_mid is None:
        why = "--no-kernel" if a.no_kernel else "needs root and iptables-restore"
        print(f"kernel iptables-restore: skipped ({why})")
    else:
        for r, k in ((mid, kern_mid), (big, kern_big)):
            if k is None:
                continue
            if "error" in k:
                print(f"kernel iptables-restore of {r['rules']:,} rules: failed: {k['error']}")
                continue
            print(f"kernel iptables-restore of {r['rules']:,} rules into a fresh netns ({k['backend']}): "
                  f"{_ms(k['median'])} median of {k['runs']} (best {_ms(k['best'])}; "
                  f"'ip netns exec' cost {_ms(k['enter'])} subtracted)")
            print(f"  kplab parse / kernel restore: {r['parse'] / k['median']:.2f}")
            if "same" in k:
                print(f"  kernel iptables-save prints the generated text back unchanged: "
                      f"{'yes' if k['same'] else 'NO'} (iptables-save took {_ms(k['save_time'])})")
    print()
    print(f"(benchmark wall time {time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
