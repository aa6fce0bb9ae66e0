"""The `kplab` command line (also `python -m kplab`).

Contract (DESIGN section 4): bad input, usage errors included, exits 2 with
exactly one line on stderr, `kplab: error: FILE:LINE: what is wrong`, and no
traceback; success exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import KplabError, ParseError

EXIT_BAD_INPUT = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2."""

    def error(self, message):
        raise _UsageError(f"{self.prog.split()[-1] if ' ' in self.prog else 'kplab'}: {message}")


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"port {n} is out of range (0-65535)")
    return n


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kplab", description="Simulate how netfilter and kube-proxy move a packet.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("trace", help="walk one packet through a node's rules",
                       description="Walk the first packet of a new connection through a node's rules.")
    t.add_argument("--rules", required=True, metavar="FILE", help="iptables-save output or iptables-restore input")
    t.add_argument("--topology", metavar="FILE", help="JSON topology (parts of the standard node to replace)")
    t.add_argument("--from", dest="from_", required=True, metavar="NAME",
                   help="a Pod of the topology, node, peer, a peer Pod or an external host")
    t.add_argument("--dst", required=True, metavar="IP")
    t.add_argument("--src", metavar="IP", help="override the source address")
    t.add_argument("--proto", default="tcp", choices=("tcp", "udp", "sctp", "icmp"))
    t.add_argument("--sport", type=_port, default=None)
    t.add_argument("--dport", type=_port, default=None)
    t.add_argument("--all-paths", action="store_true", help="every outcome of the random statistic rules")
    t.add_argument("--max-paths", type=_positive, default=10000)
    t.add_argument("--sample", type=_positive, default=None, metavar="N",
                   help="with --all-paths: N seeded random paths instead of all")
    t.add_argument("--seed", type=_int, default=0)
    t.add_argument("--assume-unsupported", choices=("match", "nomatch"), default=None,
                   help="what a match kplab does not model does when the walk reaches it")
    t.add_argument("--json", action="store_true")
    t.add_argument("--brief", action="store_true", help="list only the steps that did something")

    r = sub.add_parser("render", help="the rules kube-proxy (iptables mode) programs on a node",
                       description="Print the rules kube-proxy's iptables mode programs on one node after a "
                                   "full sync, for the Services and endpoints in the YAML.")
    r.add_argument("--cluster", required=True, metavar="FILE.yaml", action="append",
                   help="Kubernetes YAML (multi-document or a List); may be given more than once")
    r.add_argument("--config", metavar="KUBE_PROXY_CONFIG.yaml", help="a KubeProxyConfiguration")
    r.add_argument("--node", required=True, metavar="NAME")
    r.add_argument("--node-ip", action="append", default=None, metavar="IP", help="the node's addresses")
    r.add_argument("--format", choices=("save", "restore"), default="save")
    r.add_argument("--no-nfacct", action="store_true", help="the node's kernel has no nfacct")
    r.add_argument("--no-random-fully", action="store_true", help="the node's kernel has no --random-fully")

    e = sub.add_parser("explain", help="the Services, endpoints and odds a kube-proxy dump holds",
                       description="Read a node's iptables-save dump back into Services: cluster IP, ports, "
                                   "NodePort, external and load-balancer IPs, and each endpoint's probability.")
    e.add_argument("--rules", required=True, metavar="FILE")
    e.add_argument("--json", action="store_true")

    y = sub.add_parser("synth", help="print a synthetic cluster (a YAML List) for scale work",
                       description="Print a made-up cluster as the YAML List `kubectl get -o yaml` prints: N "
                                   "ClusterIP Services with exactly M ready endpoints each (EndpointSlices spread "
                                   "over K nodes), or with --mixed a realistic mix. `kplab render` reads it.")
    y.add_argument("--services", required=True, type=_int, metavar="N", help="how many Services")
    y.add_argument("--endpoints", required=True, type=_int, metavar="M",
                   help="ready endpoints per Service (with --mixed: 1 to 2M, some Services none)")
    y.add_argument("--nodes", type=_int, default=2, metavar="K", help="nodes to spread the endpoints over (default 2)")
    y.add_argument("--seed", type=_int, default=0, help="the same seed gives the same cluster (default 0)")
    y.add_argument("--mixed", action="store_true",
                   help="ClusterIP, NodePort and LoadBalancer Services, named ports, some without endpoints")

    s = sub.add_parser("save", help="print rules as iptables-save prints them after loading",
                       description="Print the ruleset exactly as iptables-save would after iptables-restore.")
    s.add_argument("--rules", required=True, metavar="FILE")
    return p


def _load_rules(path: str, strict: bool):
    from .netfilter.iptables_save import load
    return load(path, unsupported="error" if strict else "opaque")


def cmd_save(args, out) -> int:
    rs = _load_rules(args.rules, strict=True)
    out.write(rs.save())
    return 0


def cmd_trace(args, out) -> int:
    from .node import Node
    from .topology import Topology
    rs = _load_rules(args.rules, strict=False)
    topo = Topology.load(args.topology, family=rs.family) if args.topology else None
    node = Node(rs, topo, seed=args.seed, assume_unsupported=args.assume_unsupported)
    pkt = node.packet(args.from_, args.dst, args.proto,
                      args.dport if args.dport is not None or args.proto == "icmp" else 80,
                      args.sport, args.src)
    for w in rs.warnings:
        print(f"kplab: warning: {w}", file=sys.stderr)
    if args.all_paths:
        from .errors import TooManyPathsError
        try:
            outcomes = node.all_paths(pkt, args.from_, max_paths=args.max_paths, sample=args.sample)
        except TooManyPathsError as e:
            raise KplabError(str(e)) from None
        if args.json:
            first = outcomes[0] if outcomes else None
            obj = {"input": first.input_json() if first else None,
                   "outcomes": [dict(probability=o.probability, **o.outcome_json()) for o in outcomes]}
            if args.sample:
                obj["sampled"] = True
            warns = list(rs.warnings) + sorted({w for o in outcomes for w in o.warnings})
            if warns:
                obj["warnings"] = warns
            json.dump(obj, out, indent=2)
            out.write("\n")
        else:
            out.write(f"{pkt} from {args.from_}: {len(outcomes)} {'sampled ' if args.sample else ''}"
                      f"path{'s' if len(outcomes) != 1 else ''}\n")
            for n, o in enumerate(outcomes, 1):
                out.write(f"{n:3d}. p={o.probability:.6f}  {o.summary()}\n")
        return 0
    trace = node.send(pkt, args.from_)
    if args.json:
        obj = trace.to_json()
        warns = list(rs.warnings) + list(trace.warnings)
        if warns:
            obj["warnings"] = warns
        json.dump(obj, out, indent=2)
        out.write("\n")
    else:
        out.write(trace.journey(verbose=not args.brief) + "\n")
        for w in trace.warnings:
            print(f"kplab: warning: {w}", file=sys.stderr)
    return 0


def cmd_render(args, out) -> int:
    import dataclasses

    from .kube.cluster import Cluster
    from .kube.manifests import load, load_proxy_config, merge
    from .kube.proxier import render
    from .packet import ip
    found = merge(*(load(p) for p in args.cluster))
    if args.config:
        found = dataclasses.replace(found, proxy_config=load_proxy_config(args.config))
    cluster = Cluster(found)
    for w in cluster.warnings:
        print(f"kplab: warning: {w}", file=sys.stderr)
    overrides = {}
    if args.node_ip:
        for a in args.node_ip:
            try:
                ip(a)
            except ValueError:
                raise KplabError(f"--node-ip {a!r} is not an IP address") from None
        overrides["node_ips"] = tuple(args.node_ip)
    if args.no_nfacct:
        overrides["nfacct"] = False
    if args.no_random_fully:
        overrides["random_fully"] = False
    try:
        cluster.node(args.node)
    except KplabError:
        names = ", ".join(n.name for n in cluster.nodes())
        raise KplabError(f"no node {args.node!r} in the cluster (nodes: {names})") from None
    rendered = render(cluster.services(), cluster.slices(), cluster.proxy_config(args.node, **overrides))
    out.write(rendered.save_text if args.format == "save" else rendered.restore_text)
    return 0


def cmd_explain(args, out) -> int:
    from .kube.explain import explain, to_json
    rs = _load_rules(args.rules, strict=False)
    for w in rs.warnings:
        print(f"kplab: warning: {w}", file=sys.stderr)
    views = explain(rs)
    if args.json:
        obj = to_json(views)
        if rs.warnings:
            obj["warnings"] = list(rs.warnings)
        json.dump(obj, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"{len(views)} service port{'s' if len(views) != 1 else ''} in {args.rules}\n")
    for v in views:
        where = f"{v.cluster_ip}:{v.port}/{v.protocol}" if v.cluster_ip else f"port {v.port}/{v.protocol}"
        extra = []
        if v.node_port:
            extra.append(f"NodePort {v.node_port}")
        if v.external_ips:
            extra.append("external " + ", ".join(v.external_ips))
        if v.load_balancer_ips:
            extra.append("load balancer " + ", ".join(v.load_balancer_ips))
        if v.external_traffic_policy == "Local":
            extra.append("externalTrafficPolicy Local")
        if v.internal_traffic_policy == "Local":
            extra.append("internalTrafficPolicy Local")
        out.write(f"\n{v.name}  {where}" + (f"  ({'; '.join(extra)})" if extra else "") + "\n")
        if v.no_endpoints and v.endpoints:
            out.write(f"    external traffic: no endpoint on this node ({v.no_endpoints})\n")
        elif v.no_endpoints:
            out.write(f"    no endpoints: {v.no_endpoints}\n")
        for ep in v.endpoints:
            out.write(f"    -> {ep.address:<24} {ep.probability:8.2%}\n")
    return 0


def cmd_synth(args, out) -> int:
    from .kube.synth import synth_yaml
    out.write(synth_yaml(args.services, args.endpoints, nodes=args.nodes, seed=args.seed, mixed=args.mixed))
    return 0


COMMANDS = {"trace": cmd_trace, "save": cmd_save, "explain": cmd_explain, "render": cmd_render,
            "synth": cmd_synth}


def main(argv=None, out=None) -> int:
    out = out if out is not None else sys.stdout
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, out)
    except _UsageError as e:
        _error(str(e))
    except ParseError as e:
        _error(str(e))
    except KplabError as e:
        _error(str(e))
    except RecursionError:
        _error("the input nests too deeply to be processed")
    except MemoryError:
        _error("the input is too large to be processed in memory")
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return EXIT_BAD_INPUT


def _error(message: str) -> None:
    line = " ".join(message.split("\n")[0].split())
    print(f"kplab: error: {line}", file=sys.stderr)


def run() -> None:
    """The `kplab` command (console script and `python -m kplab`): `main()`, then leave at once.

    After `kplab trace --rules DUMP` of a large dump (170,000 rules) millions of objects are
    alive; freeing them one by one as the interpreter exits takes a tenth of a second and
    serves nothing. Flush what was written and exit without that."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:                  # the reader went away (`| head`): not an error
        pass
    os._exit(0 if code is None else code)


if __name__ == "__main__":
    run()
