"""`python -m kplab.kernelcheck`: compare kplab with the kernel and report.

    python -m kplab.kernelcheck --seeds 1-200 --lessons --kube --invalid 1-60

prints how many rulesets and packets were compared and every mismatch with
both sides' paths. Needs root (it builds network namespaces of its own and
deletes them afterwards).
"""
from __future__ import annotations

import argparse
import sys
import time


def _range(text: str) -> list:
    out = []
    for part in text.split(","):
        a, dash, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if dash else int(a)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: use N, N-M or a comma-separated list") from None
        out.extend(range(lo, hi + 1))
    return out


def cases(seeds=(), lessons=False, kube=False, invalid=()):
    from .generate import invalid_case, kube_proxy_case, random_case
    if lessons:
        from .lessons import KEEP_CONNTRACK, LESSONS
        for c in LESSONS:
            yield c, c.name in KEEP_CONNTRACK
    if kube:
        for kind, counts in (("clusterip", (1, 2, 3)), ("nodeport", (1, 2, 3)), ("noendpoints", (0,)),
                             ("hairpin", (1, 2, 4))):
            for n in counts:
                yield kube_proxy_case(n, kind), False
    for s in seeds:
        yield random_case(s), False
    for s in invalid:
        yield invalid_case(s), False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kplab.kernelcheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=_range, default=[], help="random rulesets, e.g. 1-200")
    p.add_argument("--lessons", action="store_true", help="the hand-written lesson cases")
    p.add_argument("--kube", action="store_true", help="kube-proxy-shaped cases")
    p.add_argument("--invalid", type=_range, default=[], help="rulesets the kernel refuses (or nearly)")
    p.add_argument("--verbose", action="store_true", help="print every comparison, not only mismatches")
    args = p.parse_args(argv)
    from .netns import Lab, available
    ok, why = available()
    if not ok:
        print(f"kplab.kernelcheck: cannot run here: {why}", file=sys.stderr)
        return 2
    from .differential import run_case
    t0 = time.perf_counter()
    n_cases = n_packets = n_replies = 0
    bad = []
    with Lab() as lab:
        for case, keep in cases(args.seeds, args.lessons, args.kube, args.invalid):
            res = run_case(lab, case, keep_conntrack=keep)
            n_cases += 1
            n_packets += len(res.comparisons)
            n_replies += len(res.replies)
            text = res.report(verbose=args.verbose)
            if text:
                print(text)
            if not res.ok:
                bad.append(res)
    mism = sum(len(r.mismatches) for r in bad)
    print(f"compared {n_cases} rulesets, {n_packets} packets and {n_replies} replies with the kernel "
          f"in {time.perf_counter() - t0:.1f} s: {mism} mismatch{'es' if mism != 1 else ''}"
          + (f" in {len(bad)} rulesets" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
