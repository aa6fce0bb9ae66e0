"""Scale benchmark: what 100, 1,000 and 10,000 Services cost, kplab and the kernel side by side.

    python3 bench/scale.py [--huge] [--sizes N,N,...] [--endpoints M] [--seed S]
                           [--json PATH | --write-results] [--plot PATH] [--no-kernel]

For each size, a fresh Python process builds a synthetic cluster
(`kplab.kube.synth`: N ClusterIP Services x M ready endpoints over two nodes)
and measures with `kplab.kube.scale.measure`: kube-proxy's full sync of node-1
(render), the node's iptables-save dump (save), kplab's parse of that dump,
one trace to the last Service of nat KUBE-SERVICES (and how many rules the
kernel evaluates for it), explain, and the process's peak memory. Then, when
run as root, the kernel loads the same dump with `iptables-restore` (nf_tables
backend) and `iptables-legacy-restore` (if installed), each run in a fresh
network namespace of its own (`kplab-<pid>-scale-<n>`: nothing but its own
loopback, never connected to anything, deleted in all cases), so kplab's
parse can be compared with the kernel's load of the very same text.

Each time is the best of `--runs` measurements (fresh processes; kernel
loads: the best of `--kernel-runs`), since a busy machine only ever adds
time. Prints a progress line per size, the table, and the ratios: kplab parse /
kernel restore per size, and each cost at the largest size over the smallest.
`--json PATH` writes the results (`--write-results`: to
kplab/kube/scale_results.json, what notebook 9 shows); `--plot PATH` draws
them (`kplab.viz.scale.scale_plot`, needs matplotlib). `--huge` adds 30,000
Services. Times are wall-clock on this machine: read them as orders of
magnitude and as ratios.
"""
from __future__ import annotations

import argparse
import compileall
import datetime
import json
import os
import platform
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
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_SIZES = (100, 1000, 10000)
HUGE = 30000
RESULTS = os.path.join(ROOT, "kplab", "kube", "scale_results.json")
NS_PATTERN = re.compile(r"kplab-(\d+)-scale-\d+")
BACKENDS = (("nft", "iptables-restore"), ("legacy", "iptables-legacy-restore"))


# --------------------------------------------------------------------------
# One size, in a child process (so that peak memory is this size's own)

def _peak_rss_bytes() -> int:
    """Peak resident memory of this process: VmHWM where Linux has it, else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1024 if sys.platform != "darwin" else 1)


def child(services: int, endpoints: int, seed: int, nodes: int, repeat: int, dump_path: str) -> None:
    from kplab.kube.scale import measure
    m = measure(services, endpoints, seed=seed, nodes=nodes, repeat=repeat, keep=True)
    with open(dump_path, "w") as f:
        f.write(m.extra["dump"])
    row = m.to_dict()
    row.pop("dump", None)
    row.pop("ruleset", None)
    row["peak_rss_mb"] = _peak_rss_bytes() / 1e6
    row["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    row["dump_bytes"] = os.path.getsize(dump_path)
    print(json.dumps(row))


def run_size(services: int, a, dump_path: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", str(services), str(a.endpoints), str(a.seed),
           str(a.nodes), str(a.repeat), dump_path]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"bench/scale.py: measuring {services} Services failed:\n{r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def cli_trace(dump_path: str, target: str) -> float:
    """Wall time of `python -m kplab trace --rules DUMP` to `target` ("ip:port/proto"), process start
    included: what a user waits for (the best of two runs). kplab's modules are compiled to .pyc
    first, as pip does when it installs kplab: in a checkout just edited, or with
    PYTHONDONTWRITEBYTECODE set, every run would compile them again (~40 ms)."""
    compileall.compile_dir(os.path.join(ROOT, "kplab"), quiet=1)
    addr, proto = target.rsplit("/", 1)
    ip, port = addr.rsplit(":", 1)
    cmd = [sys.executable, "-m", "kplab", "trace", "--rules", dump_path, "--from", "client", "--dst", ip,
           "--proto", proto, "--dport", port, "--brief"]
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"bench/scale.py: kplab trace failed: {r.stderr.strip()}")
    return best


# --------------------------------------------------------------------------
# The kernel's iptables-restore, in throwaway network namespaces

def _ip(*args, timeout=60):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)


def sweep_stale() -> None:
    """Delete namespaces an earlier, killed run of this benchmark left (kplab-<pid>-scale-<n>, pid gone)."""
    r = _ip("netns", "list", timeout=30)
    for line in r.stdout.splitlines()[:1000]:
        name = line.split()[0] if line.split() else ""
        m = NS_PATTERN.fullmatch(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _ip("netns", "delete", name)


def kernel_available() -> str | None:
    """None if the kernel comparison can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ip"):
        return "needs iproute2 (ip)"
    if not shutil.which("iptables-restore"):
        return "needs iptables-restore"
    return None


def backend_version(command: str) -> str | None:
    if not shutil.which(command):
        return None
    r = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30)
    return (r.stdout or r.stderr).strip() or command


_counter = [0]


def kernel_restore(dump_path: str, command: str, runs: int) -> dict:
    """Seconds `command` takes to load the dump into a fresh namespace (the best of `runs`,
    each in a new namespace; the cost of `ip netns exec` itself is subtracted)."""
    with open(dump_path) as f:
        counters = sorted(set(re.findall(r"--nfacct-name\s+(\S+)", f.read())))
    times, enter, error = [], [], None
    for _ in range(runs):
        _counter[0] += 1
        ns = f"kplab-{os.getpid()}-scale-{_counter[0]}"
        created = False
        try:
            r = _ip("netns", "add", ns)
            if r.returncode != 0:
                error = r.stderr.strip() or "ip netns add failed"
                break
            created = True
            for name in counters:          # kube-proxy creates its nfacct counters before it restores
                subprocess.run(["ip", "netns", "exec", ns, "nfacct", "add", name], capture_output=True,
                               timeout=60)
            t0 = time.perf_counter()
            subprocess.run(["ip", "netns", "exec", ns, "true"], check=True, timeout=60)
            enter.append(time.perf_counter() - t0)
            with open(dump_path, "rb") as rules:
                t0 = time.perf_counter()
                r = subprocess.run(["ip", "netns", "exec", ns, command], stdin=rules, capture_output=True,
                                   text=True, timeout=1800)
                dt = time.perf_counter() - t0
            if r.returncode != 0:
                error = (r.stderr.strip().splitlines() or [f"{command} failed"])[0]
                break
            times.append(dt)
        finally:
            if created:
                _ip("netns", "delete", ns)
    if error or not times:
        return {"error": error or "no run"}
    e = min(enter)
    return {"seconds": max(0.0, min(times) - e), "median": max(0.0, statistics.median(times) - e),
            "runs": len(times), "enter": e}


# --------------------------------------------------------------------------
# Report

def _ms(s) -> str:
    from kplab.kube.scale import fmt_time
    return fmt_time(s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None, help="comma-separated Service counts (default 100,1000,10000)")
    ap.add_argument("--huge", action="store_true", help=f"add {HUGE:,} Services")
    ap.add_argument("--endpoints", type=int, default=5, help="endpoints per Service (default 5)")
    ap.add_argument("--nodes", type=int, default=2, help="nodes to spread endpoints over (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=1,
                    help="measure each size this many times (fresh processes) and keep the best times (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="warm traces timed per size (median; default 5)")
    ap.add_argument("--kernel-runs", type=int, default=3, help="kernel restores per size and backend (default 3)")
    ap.add_argument("--no-kernel", action="store_true", help="skip the kernel iptables-restore comparison")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--write-results", action="store_true", help=f"write the JSON to {os.path.relpath(RESULTS, ROOT)}")
    ap.add_argument("--plot", metavar="PATH", help="draw cost against size as a PNG (needs matplotlib)")
    ap.add_argument("--_child", nargs=6, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child:
        s, e, seed, nodes, repeat, path = a._child
        child(int(s), int(e), int(seed), int(nodes), int(repeat), path)
        return 0
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else list(DEFAULT_SIZES)
    if a.huge:
        sizes.append(HUGE)
    sizes = sorted(set(sizes))
    if not sizes or sizes[0] < 1 or a.endpoints < 1 or a.repeat < 1 or a.kernel_runs < 1 or a.runs < 1:
        ap.error("sizes, --endpoints, --runs, --repeat and --kernel-runs must be at least 1")
    json_path = a.json or (RESULTS if a.write_results else None)

    import kplab
    from kplab.kube.scale import Measurement, ScaleResults, table_text
    why_not = "--no-kernel" if a.no_kernel else kernel_available()
    versions = {} if why_not else {k: backend_version(cmd) for k, cmd in BACKENDS}
    print(f"kplab scale benchmark: {', '.join(f'{n:,}' for n in sizes)} Services x {a.endpoints} endpoints "
          f"over {a.nodes} nodes (seed {a.seed}), python {platform.python_version()}, {os.cpu_count()} CPUs")
    print("kernel: " + ("; ".join(f"{k}: {v}" for k, v in versions.items() if v) if not why_not
                        else f"skipped ({why_not})"), flush=True)
    t_start = time.perf_counter()
    rows = []
    tmp = tempfile.mkdtemp(prefix="kplab-scale-")
    try:
        if not why_not:
            sweep_stale()
        for i, n in enumerate(sizes, 1):
            t0 = time.perf_counter()
            print(f"[{i}/{len(sizes)}] {n:>6,} Services: kplab ...", end="", flush=True)
            dump = os.path.join(tmp, f"node-1-{n}.rules")
            row = run_size(n, a, dump)
            for _ in range(a.runs - 1):            # the best of several runs: noise only ever adds time
                again = run_size(n, a, dump)
                for key, value in again.items():
                    if key.endswith("_s") and isinstance(value, float) and value < row.get(key, float("inf")):
                        row[key] = value
            row["runs"] = a.runs
            print(f" {row['rules']:,} rules in {time.perf_counter() - t0:.1f} s", end="", flush=True)
            row["cli_trace_s"] = cli_trace(dump, row["target"])
            print(f"; kplab trace (CLI) {_ms(row['cli_trace_s'])}", end="", flush=True)
            if not why_not:
                runs = a.kernel_runs if row["rules"] < 100_000 else max(1, min(a.kernel_runs, 2))
                for key, cmd in BACKENDS:
                    if not versions.get(key):
                        continue
                    print(f"; kernel {key} ...", end="", flush=True)
                    k = kernel_restore(dump, cmd, runs)
                    if "error" in k:
                        row[f"kernel_{key}_error"] = k["error"]
                        print(f" failed ({k['error']})", end="", flush=True)
                    else:
                        row[f"kernel_{key}_s"] = k["seconds"]
                        row[f"kernel_{key}_runs"] = k["runs"]
                        print(f" {_ms(k['seconds'])}", end="", flush=True)
            os.unlink(dump)
            print(f"  [{time.perf_counter() - t0:.1f} s]", flush=True)
            rows.append(Measurement.from_dict(row))
    finally:
        if not why_not:
            sweep_stale()
        shutil.rmtree(tmp, ignore_errors=True)

    meta = {"date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
                       f"Python {platform.python_version()}",
            "kplab": kplab.__version__, "endpoints": a.endpoints, "nodes": a.nodes, "seed": a.seed,
            "sizes": sizes, "kernel": versions if not why_not else None,
            "command": "python3 bench/scale.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    results = ScaleResults(rows=tuple(rows), meta=meta)
    print()
    print(table_text(rows, meta))
    print()
    print("ratios")
    for r in rows:
        for key in ("nft", "legacy"):
            k = getattr(r, f"kernel_{key}_s")
            if k:
                print(f"  kplab parse / kernel restore ({key}) at {r.services:>6,} Services: {r.parse_s / k:6.2f}"
                      f"   ({_ms(r.parse_s)} vs {_ms(k)})")
    lo, hi = rows[0], rows[-1]
    if len(rows) > 1:
        x = hi.services / lo.services
        print(f"  {hi.services:,} / {lo.services:,} Services (x{x:,.0f}):")
        for name, label in (("rules", "rules"), ("rules_evaluated", "rules evaluated (last Service)"),
                            ("render_s", "render"), ("save_s", "save"), ("parse_s", "parse"),
                            ("kernel_nft_s", "kernel restore (nft)"), ("kernel_legacy_s", "kernel restore (legacy)"),
                            ("trace_s", "trace time (last Service)"), ("cli_trace_s", "kplab trace (CLI)"),
                            ("explain_s", "explain"),
                            ("peak_rss_mb", "peak memory")):
            va, vb = getattr(lo, name), getattr(hi, name)
            if va and vb:
                print(f"    {label:<34} x{vb / va:10.1f}")
        print(f"  trace to the first Service: {lo.rules_evaluated_first} rules evaluated at {lo.services:,} "
              f"Services, {hi.rules_evaluated_first} at {hi.services:,}")
        print(f"  first trace after parse (cold): {_ms(lo.trace_cold_s)} at {lo.services:,}, "
              f"{_ms(hi.trace_cold_s)} at {hi.services:,}")
    if json_path:
        def short(v):           # 4 significant digits: the timings are not more precise than that
            return float(f"{v:.4g}") if isinstance(v, float) else v
        obj = results.to_json()
        obj["rows"] = [{k: short(v) for k, v in row.items()} for row in obj["rows"]]
        with open(json_path, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
        print(f"\nwrote {os.path.relpath(json_path)}")
    if a.plot:
        try:
            from kplab.viz.scale import scale_plot
        except ImportError as e:
            print(f"no plot: {e} (install matplotlib and pandas)", file=sys.stderr)
        else:
            scale_plot(results).save(a.plot, dpi=110)
            print(f"wrote {a.plot}")
    print(f"(benchmark wall time {time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
