"""Exercises for notebook 1: the packet and the five netfilter hooks.

Also the two small helpers the notebook uses to compare paths: `hooks_met`
(the hooks of a trace, in order) and `hook_table` (several traces side by
side). Both read the trace's steps; nothing is decided again.
"""
from __future__ import annotations

from ..netfilter.hooks import HOOKS
from ..node import Node
from ._core import Exercise, wrong
from .checks import Probe, rules, sequence

from .checks import CLIENT, EXTERNAL, NODE, REMOTE1  # the standard node (DESIGN section 3)

#: One LOG rule at every hook. The mangle table is the only one with a chain
#: at all five hooks, so a trace through these rules names every hook the
#: packet meets (LOG writes a line to the kernel log and lets it go on).
WATCH_RULES = """*mangle
-A PREROUTING -j LOG --log-prefix "PREROUTING "
-A INPUT -j LOG --log-prefix "INPUT "
-A FORWARD -j LOG --log-prefix "FORWARD "
-A OUTPUT -j LOG --log-prefix "OUTPUT "
-A POSTROUTING -j LOG --log-prefix "POSTROUTING "
COMMIT
"""


# -- helpers for the notebook ------------------------------------------------------------------

def hooks_met(trace) -> list:
    """The hooks `trace` passed, in order (consecutive steps at one hook count once).

    Only hooks where some table has a chain leave steps in a trace: trace
    through `WATCH_RULES` to see every hook.
    """
    seq = []
    for step in trace.steps:
        if step.hook and (not seq or seq[-1] != step.hook):
            seq.append(step.hook)
    return seq


def path_kind(trace) -> str:
    """'forwarded', 'for this host', 'created by this host', or 'created by this host, for itself'."""
    hooks = hooks_met(trace)
    if "FORWARD" in hooks:
        return "forwarded"
    created = (bool(hooks) and hooks[0] == "OUTPUT") or trace.origin == "node"
    if created:
        return "created by this host, for itself" if "INPUT" in hooks else "created by this host"
    return "for this host" if "INPUT" in hooks or trace.delivered_to == "node" else "arriving"


def hook_table(traces: dict) -> str:
    """A text table, one row per labelled trace: the step number (1, 2, ...)
    under each hook the packet met, then the kind of path.

    `traces` maps a label (e.g. "client → remote1") to a Trace.
    """
    label_w = max([len("packet")] + [len(str(k)) for k in traces])
    widths = [max(len(h), 4) for h in HOOKS]
    head = "  ".join([f"{'packet':<{label_w}}"] + [f"{h:^{w}}" for h, w in zip(HOOKS, widths)] + ["path"])
    lines = [head, "-" * len(head)]
    for label, trace in traces.items():
        order = {}
        for n, hook in enumerate(hooks_met(trace), 1):
            order.setdefault(hook, []).append(str(n))
        cells = [f"{','.join(order.get(h, ['.'])):^{w}}" for h, w in zip(HOOKS, widths)]
        lines.append("  ".join([f"{label:<{label_w}}"] + cells + [path_kind(trace)]))
    lines.append("Numbers: the order in which the packet met the hooks; '.': not met.")
    return "\n".join(lines)


def _watch_trace(from_: str, dst: str, proto: str, dport: int):
    from .. import parse_rules
    return Node(parse_rules(WATCH_RULES)).send_from(from_, dst, proto, dport)


# -- 1.1 predict: the hooks of a packet from a Pod to the node --------------------------------

def _to_node_hooks() -> list:
    return hooks_met(_watch_trace("client", NODE, "udp", 53))


_HOOK_WHY = {
    "forward": "FORWARD is for packets the node passes on to another host. 192.168.0.2 is the node's own "
               "address, so the routing decision after PREROUTING sends this packet to INPUT instead.",
    "postrouting": "POSTROUTING is the last hook before a packet leaves the node. This one does not leave: "
                   "it is delivered to a process on the node after INPUT.",
    "output": "OUTPUT is for packets the node itself creates (the answer to this one will pass it). "
              "A packet from a Pod enters at PREROUTING.",
}


def _hooks_check(correct, why: dict, what: str = "hooks"):
    """`sequence`, but a hook that is not on the path gets its own explanation first."""
    base = sequence(correct, what=what)

    def check(answer):
        fb = base(answer)
        if fb.correct or not isinstance(answer, (str, list, tuple)):
            return fb
        words = answer.replace(",", " ").replace("→", " ").replace(">", " ").split() \
            if isinstance(answer, str) else [str(a) for a in answer]
        for word in words:
            reason = why.get(word.strip().lower())
            if reason:
                return wrong(reason)
        return fb
    return check


hooks_to_node = Exercise(
    id="1.1", kind="predict", title="From a Pod to the node itself",
    prompt="The Pod `client` (10.244.1.7) sends a UDP packet to port 53 of the node's own address, "
           "192.168.0.2 (a DNS cache running on the node). Which hooks does the packet meet, in order? "
           "Answer with a list of hook names, e.g. [\"PREROUTING\", \"...\"].",
    checker=_hooks_check(_to_node_hooks, _HOOK_WHY),
    hints=("The packet comes from a Pod, so it arrives at the node: which hook is first for arriving packets?",
           "After PREROUTING the routing decision asks: is the destination one of this node's own addresses?",
           "192.168.0.2 is the node's address, so the packet is delivered locally: it never leaves the node."),
    answer=["PREROUTING", "INPUT"],
    explanation="Every arriving packet meets PREROUTING first. The routing decision then finds that "
                "192.168.0.2 belongs to the node, so the packet goes to INPUT and on to the local process. "
                "It is not forwarded and does not leave the node, so it never meets FORWARD or POSTROUTING.",
    wrong_answers=((["PREROUTING", "FORWARD", "POSTROUTING"], "node's own address"),
                   (["PREROUTING", "INPUT", "POSTROUTING"], "does not leave"),
                   (["INPUT"], "Missing: prerouting"),
                   (["INPUT", "PREROUTING"], "not in the right order"),
                   ("OUTPUT, POSTROUTING", "creates")),
)


# -- 1.2 write: quarantine a Pod ---------------------------------------------------------------

quarantine = Exercise(
    id="1.2", kind="write", title="Quarantine a Pod, keep the node reachable",
    prompt="The Pod `client` (10.244.1.7) misbehaves. Write one rule for the filter table that drops every "
           "packet `client` sends to other hosts (Pods on this node or elsewhere, hosts outside the cluster) "
           "while `client` can still reach the node itself (192.168.0.2), other Pods are not affected, and "
           "the node can still reach `client` (the kubelet's health checks).",
    checker=rules([
        Probe("client → remote1 (Pod on the peer node)", "client", REMOTE1, "tcp", 80, verdict="DROP",
              wrong="client still reaches remote1. Its packets are forwarded by the node, so the rule belongs "
                    "in the FORWARD chain and must match the source -s 10.244.1.7."),
        Probe("client → external host", "client", EXTERNAL, "tcp", 443, verdict="DROP",
              wrong="client still reaches the external host: match every destination, not only the cluster."),
        Probe("client → backend1 (Pod on this node)", "client", "10.244.1.3", "tcp", 8080, verdict="DROP",
              wrong="client still reaches backend1 on this same node. That packet is forwarded too (from "
                    "veth-client to veth-backend1), not only traffic that leaves through eth0: drop "
                    "the output interface match."),
        Probe("client → the node (udp 53)", "client", NODE, "udp", 53, verdict="ACCEPT",
              wrong="client can no longer reach the node itself: packets for the node pass INPUT, "
                    "which the quarantine must leave alone."),
        Probe("backend1 → remote1", "backend1", REMOTE1, "tcp", 80, verdict="ACCEPT",
              wrong="backend1 is blocked too: match only packets from client (-s 10.244.1.7)."),
        Probe("node → client (health check)", "node", CLIENT, "tcp", 8080, verdict="ACCEPT",
              wrong="The node can no longer reach client: its own packets pass OUTPUT, leave that chain alone."),
    ], table="filter"),
    hints=("A Pod's packet to any other host is not for the node: after the routing decision it is forwarded.",
           "Only one chain sees forwarded packets and nothing else.",
           "Write `-A FORWARD`, a source match for the Pod's IP, and `-j DROP`."),
    answer="-A FORWARD -s 10.244.1.7 -j DROP",
    explanation="Packets from a Pod to any other host, even a Pod on the same node, are routed through the "
                "node: PREROUTING → FORWARD → POSTROUTING. FORWARD sees only those, so a DROP there for "
                "source 10.244.1.7 quarantines client without touching its packets to the node (INPUT) or "
                "the node's packets to it (OUTPUT).",
    wrong_answers=(("-A INPUT -s 10.244.1.7 -j DROP", "FORWARD"),
                   ("-A OUTPUT -s 10.244.1.7 -j DROP", "FORWARD"),
                   ("-A FORWARD -j DROP", "-s 10.244.1.7"),
                   ("-A FORWARD -s 10.244.1.7 -o eth0 -j DROP", "same node"),
                   ("-A FORWARD -s 10.244.1.7 -d 10.244.0.0/16 -j DROP", "external")),
)


# -- 1.3 debug: a rule in INPUT meant for forwarded traffic ------------------------------------

INPUT_BLOCK = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 10.244.1.7 -d 198.51.100.10 -j DROP
COMMIT
"""

_NEVER_MATCHES = ("client still reaches 198.51.100.10. A Pod's packet to another host is forwarded: it never "
                  "passes INPUT (packets for the node itself) or OUTPUT (packets the node creates), so a rule "
                  "there with -d 198.51.100.10 can never match.")

wrong_hook = Exercise(
    id="1.3", kind="debug", title="The block that never fires",
    prompt="`client` (10.244.1.7) must not reach the host 198.51.100.10 outside the cluster any more. "
           "Someone loaded the rules below, yet `client` still gets through. Fix them (give the whole "
           "fixed ruleset): `client` is blocked on every port, other Pods and the node itself can still "
           "reach that host, and `client` can still reach other Pods.",
    checker=rules([
        Probe("client → external:5432", "client", EXTERNAL, "tcp", 5432, verdict="DROP", wrong=_NEVER_MATCHES),
        Probe("client → external:443", "client", EXTERNAL, "tcp", 443, verdict="DROP",
              wrong="client still reaches external on port 443: block every port, as the original rule meant."),
        Probe("backend1 → external:5432", "backend1", EXTERNAL, "tcp", 5432, verdict="ACCEPT",
              wrong="backend1 is blocked too: keep -s 10.244.1.7."),
        Probe("client → remote1", "client", REMOTE1, "tcp", 80, verdict="ACCEPT",
              wrong="client can no longer reach remote1: keep -d 198.51.100.10."),
        Probe("node → external:5432", "node", EXTERNAL, "tcp", 5432, verdict="ACCEPT",
              wrong="The node itself can no longer reach external: only client is to be blocked."),
    ], table="filter"),
    hints=("Trace a packet from client to 198.51.100.10: which hooks does it meet?",
           "INPUT only sees packets addressed to one of the node's own addresses. Is 198.51.100.10 one?",
           "Keep the matches, change the chain: -A FORWARD -s 10.244.1.7 -d 198.51.100.10 -j DROP."),
    answer=INPUT_BLOCK.replace("-A INPUT -s", "-A FORWARD -s"),
    explanation="The packet from client to 198.51.100.10 takes PREROUTING → FORWARD → POSTROUTING. INPUT "
                "sees only packets for the node itself, whose destination is a node address, so a rule "
                "there with -d 198.51.100.10 can never match. The same rule in FORWARD does the job.",
    starter=INPUT_BLOCK,
    wrong_answers=((INPUT_BLOCK, "never match"),
                   (INPUT_BLOCK.replace("-A INPUT -s", "-A OUTPUT -s"), "forwarded"),
                   ("-A FORWARD -s 10.244.1.7 -j DROP", "remote1"),
                   ("-A FORWARD -d 198.51.100.10 -j DROP", "backend1"),
                   ("-A FORWARD -s 10.244.1.7 -d 198.51.100.10 -p tcp --dport 5432 -j DROP", "every port")),
)


EXERCISES = (hooks_to_node, quarantine, wrong_hook)
