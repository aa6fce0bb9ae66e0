"""Exercises for notebook 4: linking chains with jump, goto and return.

The standard node (DESIGN section 3): the node is 192.168.0.2 on eth0, its
Pods are client 10.244.1.7, backend1 10.244.1.3 and backend2 10.244.1.4; the
peer node is 192.168.0.3 (its Pod remote1 10.244.2.5) and `external` is a
host outside the cluster, 198.51.100.10.
"""
from __future__ import annotations

from .. import trace
from ..node import Node
from ._core import Exercise
from .checks import Probe, choice, rules

from .checks import BACKEND1, BACKEND2, CLIENT, EXTERNAL  # the standard node (DESIGN section 3)
BUILTIN = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})

# -- 4.1 predict: RETURN in a chain reached by -g ---------------------------------------------

GOTO_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FROM-PODS - [0:0]
:WEB - [0:0]
-A FORWARD -s 10.244.1.0/24 -j FROM-PODS
-A FORWARD -d 10.244.1.4 -j DROP
-A FROM-PODS -p tcp --dport 80 -g WEB
-A FROM-PODS -j ACCEPT
-A WEB -d 10.244.1.4 -j RETURN
-A WEB -j ACCEPT
COMMIT
"""


def next_after_return(tr) -> str | None:
    """Where the walk of `tr` went on after its first RETURN: "CHAIN #N" (the next rule evaluated)
    or "CHAIN policy" (the end of a built-in chain); None if no rule returned."""
    steps = tr.steps
    for k, s in enumerate(steps):
        if s.kind == "rule" and s.matched and s.verdict == "RETURN":
            for after in steps[k + 1:]:
                if after.kind in ("rule", "skipped") and after.index:
                    return f"{after.chain} #{after.index}"
                if after.kind == "policy":
                    return f"{after.chain} policy"
            return None
    return None


def _after_return() -> str:
    return next_after_return(trace(GOTO_RULES, "client", BACKEND2, "tcp", 80))


goto_return = Exercise(
    id="4.1", kind="predict", title="Where RETURN lands after a goto",
    prompt=f"With the rules of ex.GOTO_RULES (FORWARD #1 jumps (-j) to FROM-PODS for packets from this "
           f"node's Pods, FORWARD #2 drops packets to backend2; FROM-PODS #1 goes (-g) to WEB for TCP port 80, "
           f"FROM-PODS #2 accepts; WEB #1 returns for packets to backend2, WEB #2 accepts), the Pod client sends a TCP packet to backend2 ({BACKEND2}) port 80. "
           "It reaches WEB, whose first rule RETURNs. Which rule does the kernel evaluate next? "
           "Answer 'FROM-PODS #2', 'FORWARD #2' or 'FORWARD policy'.",
    checker=choice(
        _after_return,
        options=("FROM-PODS #2", "FORWARD #2", "FORWARD policy"),
        aliases={"FROM-PODS 2": "FROM-PODS #2", "FROM-PODS rule 2": "FROM-PODS #2",
                 "FROM-PODS#2": "FROM-PODS #2",
                 "FORWARD 2": "FORWARD #2", "FORWARD rule 2": "FORWARD #2", "FORWARD#2": "FORWARD #2",
                 "policy": "FORWARD policy", "the FORWARD policy": "FORWARD policy",
                 "FORWARD's policy": "FORWARD policy"},
        why={"FROM-PODS #2": "That is where a RETURN would land if FROM-PODS had called WEB with -j. But "
                             "FROM-PODS used -g (goto): it left no return address, so a RETURN in WEB "
                             "returns to the chain that called FROM-PODS.",
             "FORWARD policy": "The policy applies when the walk reaches the end of the built-in chain (or a "
                               "chain reached by -g straight from it returns). FORWARD called FROM-PODS "
                               "with -j, so FORWARD still holds a return address: after its rule #1."}),
    hints=("-j pushes a return address (the next rule of the calling chain); -g does not.",
           "Who called FROM-PODS, and with -j or -g? That is where WEB's RETURN goes back to."),
    answer="FORWARD #2",
    explanation="FORWARD #1 jumped (-j) to FROM-PODS, leaving the return address 'FORWARD, after rule #1'. "
                "FROM-PODS #1 went (-g) to WEB without leaving one. So WEB's RETURN skips FROM-PODS entirely "
                "and the walk continues at FORWARD #2, which drops the packet.",
    wrong_answers=(("FROM-PODS #2", "-g"), ("FORWARD policy", "return address"),
                   ("WEB #2", "not one of the choices")),
)

# -- 4.2 write: a small firewall from user-defined chains ------------------------------------


def _accepted_in_user_chain(ruleset, text) -> str | None:
    filt = ruleset.tables.get("filter")
    forward = filt.chains.get("FORWARD") if filt is not None else None
    if forward is None or forward.policy != "DROP":
        return "Every test packet does what was asked, but FORWARD's policy is not DROP: set :FORWARD DROP [0:0]."
    for from_, dst, port in (("external", BACKEND1, 8080), ("remote1", BACKEND2, 5432)):
        tr = Node(ruleset).send_from(from_, dst, "tcp", port)
        accepted_in = [s.chain for s in tr.matched_rules if s.verdict == "ACCEPT"]
        if not accepted_in or accepted_in[-1] in BUILTIN:
            return (f"Every test packet does what was asked, but {from_} -> {dst}:{port} is accepted in a "
                    "built-in chain. The exercise asks for user-defined chains: declare one per backend "
                    "(:TO-BACKEND1 - [0:0]), jump to it from FORWARD with -j, and accept in it.")
    return None


FIREWALL_ANSWER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:TO-BACKEND1 - [0:0]
:TO-BACKEND2 - [0:0]
-A FORWARD -s 10.244.1.0/24 -j ACCEPT
-A FORWARD -d 10.244.1.3 -j TO-BACKEND1
-A FORWARD -d 10.244.1.4 -j TO-BACKEND2
-A TO-BACKEND1 -p tcp --dport 8080 -j ACCEPT
-A TO-BACKEND2 -s 10.244.0.0/16 -p tcp --dport 5432 -j ACCEPT
COMMIT
"""

FLAT_FIREWALL = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -s 10.244.1.0/24 -j ACCEPT
-A FORWARD -d 10.244.1.3 -p tcp --dport 8080 -j ACCEPT
-A FORWARD -s 10.244.0.0/16 -d 10.244.1.4 -p tcp --dport 5432 -j ACCEPT
COMMIT
"""

chain_firewall = Exercise(
    id="4.2", kind="write", title="One chain per backend",
    prompt="Write the whole filter table for this node. FORWARD's policy is DROP. This node's Pods "
           "(10.244.1.0/24) may send to anywhere. Each backend gets a user-defined chain of its own, which "
           "FORWARD jumps to for packets to that backend: backend1's chain accepts TCP port 8080 from anywhere; "
           "backend2's chain accepts TCP port 5432 from Pods only (10.244.0.0/16). Nothing else reaches them.",
    checker=rules([
        Probe("external to backend1:8080", "external", BACKEND1, "tcp", 8080, verdict="ACCEPT",
              wrong="TCP 8080 from outside does not reach backend1: backend1's chain should accept "
                    "-p tcp --dport 8080 from anywhere."),
        Probe("remote1 to backend2:5432", "remote1", BACKEND2, "tcp", 5432, verdict="ACCEPT",
              wrong="remote1 (10.244.2.5, a Pod on the peer node) does not reach backend2's port 5432: "
                    "backend2's chain should accept -s 10.244.0.0/16 -p tcp --dport 5432."),
        Probe("external to backend1:5432", "external", BACKEND1, "tcp", 5432, verdict="DROP",
              wrong="Port 5432 reaches backend1, but only 8080 should: let FORWARD's policy (DROP) take care "
                    "of what no chain accepts."),
        Probe("external to backend2:5432", "external", BACKEND2, "tcp", 5432, verdict="DROP",
              wrong="external (198.51.100.10) reaches backend2's port 5432, but only Pods may: add "
                    "-s 10.244.0.0/16 to backend2's rule."),
        Probe("remote1 to backend2:8080", "remote1", BACKEND2, "tcp", 8080, verdict="DROP",
              wrong="Port 8080 reaches backend2, but only 5432 should."),
        Probe("external to client:8080", "external", CLIENT, "tcp", 8080, verdict="DROP",
              wrong="Packets reach client, which runs no server: only the two backends accept anything."),
        Probe("client to the outside", "client", EXTERNAL, "tcp", 443, verdict="ACCEPT",
              wrong="This node's Pods cannot reach the outside: accept everything from -s 10.244.1.0/24."),
    ], table="filter", structure=_accepted_in_user_chain),
    hints=("Declare each chain with '-' for its policy (user chains have none): :TO-BACKEND1 - [0:0].",
           "FORWARD needs three rules: accept -s 10.244.1.0/24, then -d 10.244.1.3 -j TO-BACKEND1 and "
           "-d 10.244.1.4 -j TO-BACKEND2. What falls off the end of a backend's chain goes back to FORWARD "
           "and meets its policy.",
           "Each backend chain holds one ACCEPT rule: -p tcp --dport 8080 for backend1, "
           "-s 10.244.0.0/16 -p tcp --dport 5432 for backend2."),
    answer=FIREWALL_ANSWER,
    explanation="FORWARD accepts what this node's Pods send and hands each backend's packets to its own "
                "chain, like calling a function. A packet that the chain does not accept falls off its end, "
                "goes back to FORWARD after the jump, finds no rule left that matches and meets the policy, "
                "DROP. Adding a port for backend2 later means one line in TO-BACKEND2, and nothing else moves.",
    wrong_answers=((FLAT_FIREWALL, "user-defined chains"),
                   (FIREWALL_ANSWER.replace(":FORWARD DROP", ":FORWARD ACCEPT"), "policy"),
                   (FIREWALL_ANSWER.replace(":TO-BACKEND2 - [0:0]\n", ""), "do not load"),
                   (FIREWALL_ANSWER.replace("-s 10.244.0.0/16 -p tcp --dport 5432", "-p tcp --dport 5432"),
                    "only pods")),
)

# -- 4.3 debug: a RETURN that comes too early -------------------------------------------------

EARLY_RETURN_BROKEN = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:BACKEND1-IN - [0:0]
-A FORWARD -d 10.244.1.3 -j BACKEND1-IN
-A BACKEND1-IN -s 10.244.0.0/16 -j RETURN
-A BACKEND1-IN -p tcp --dport 8080 -j RETURN
-A BACKEND1-IN -j DROP
COMMIT
"""

EARLY_RETURN_FIXED = EARLY_RETURN_BROKEN.replace("-A BACKEND1-IN -p tcp --dport 8080 -j RETURN",
                                                 "-A BACKEND1-IN -s 192.168.0.3 -p tcp --dport 8080 -j RETURN")

early_return = Exercise(
    id="4.3", kind="debug", title="Let out too early",
    prompt="The chain BACKEND1-IN guards backend1 (10.244.1.3): Pods (10.244.0.0/16) may reach it on any "
           "port, the health checker on the peer node (192.168.0.3) may reach its port 8080, everyone else is "
           "dropped. A RETURN means 'this packet may pass: back to FORWARD' (policy ACCEPT). Yet the host "
           "external reaches backend1's port 8080. Fix ex.early_return.starter and answer with the whole "
           "fixed ruleset.",
    checker=rules([
        Probe("external to backend1:8080", "external", BACKEND1, "tcp", 8080, verdict="DROP",
              wrong="external (198.51.100.10) still reaches backend1 on port 8080: which RETURN lets it out of "
                    "BACKEND1-IN before the DROP?"),
        Probe("health check from the peer node", "peer", BACKEND1, "tcp", 8080, verdict="ACCEPT",
              wrong="The health checker on the peer node (192.168.0.3) no longer reaches backend1:8080."),
        Probe("peer node to backend1:22", "peer", BACKEND1, "tcp", 22, verdict="DROP",
              wrong="The peer node reaches backend1's port 22, but it may only reach port 8080."),
        Probe("client to backend1:5432", "client", BACKEND1, "tcp", 5432, verdict="ACCEPT",
              wrong="Pods can no longer reach backend1: keep the first RETURN, for -s 10.244.0.0/16."),
        Probe("remote1 to backend1:5432", "remote1", BACKEND1, "tcp", 5432, verdict="ACCEPT",
              wrong="remote1, a Pod on the peer node, can no longer reach backend1."),
        Probe("external to backend2:8080", "external", BACKEND2, "tcp", 8080, verdict="ACCEPT",
              wrong="backend2 is not guarded by BACKEND1-IN, but your rules drop traffic to it."),
    ], table="filter"),
    hints=("Walk the packet from external to backend1:8080 through BACKEND1-IN, one rule at a time.",
           "Rule 2 of BACKEND1-IN matches port 8080 from anyone, so it RETURNs before the DROP is reached.",
           "Make the second RETURN match only the health checker: add -s 192.168.0.3."),
    answer=EARLY_RETURN_FIXED,
    explanation="BACKEND1-IN's second rule was meant for the health checker but matched port 8080 from any "
                "source: its RETURN sent the packet back to FORWARD (policy ACCEPT) before the DROP was "
                "reached. With -s 192.168.0.3 it lets out only the health checker; everyone else who is not "
                "a Pod falls through to the DROP.",
    wrong_answers=((EARLY_RETURN_BROKEN, "which return"),
                   (EARLY_RETURN_BROKEN.replace("-A BACKEND1-IN -p tcp --dport 8080 -j RETURN\n", ""),
                    "health checker"),
                   (EARLY_RETURN_FIXED.replace(" -p tcp --dport 8080", ""), "port 22")),
    starter=EARLY_RETURN_BROKEN,
)

# -- 4.4 debug: a goto where a jump was meant -------------------------------------------------

GOTO_BROKEN = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:POD-EGRESS - [0:0]
-A FORWARD -s 10.244.1.0/24 -g POD-EGRESS
-A FORWARD -d 10.244.1.0/24 -p tcp --dport 8080 -j ACCEPT
-A POD-EGRESS -p tcp --dport 25 -j DROP
-A POD-EGRESS -d 10.244.1.0/24 -j RETURN
-A POD-EGRESS -j ACCEPT
COMMIT
"""

GOTO_FIXED = GOTO_BROKEN.replace("-g POD-EGRESS", "-j POD-EGRESS")

goto_bug = Exercise(
    id="4.4", kind="debug", title="A goto where a jump was meant",
    prompt="This node's Pods must not send mail (TCP port 25). Their packets to other Pods of this node "
           "RETURN from POD-EGRESS to meet FORWARD's second rule, like everyone's: only TCP 8080 may reach a "
           "Pod. The rest of their traffic may go out. Yet client cannot reach backend1 on port 8080. Fix "
           "ex.goto_bug.starter and answer with the whole fixed ruleset.",
    checker=rules([
        Probe("client to backend1:8080", "client", BACKEND1, "tcp", 8080, verdict="ACCEPT",
              wrong="client cannot reach backend1 on port 8080. Follow the packet after POD-EGRESS's RETURN: "
                    "where does a RETURN go when the chain was entered with -g?"),
        Probe("client to backend1:22", "client", BACKEND1, "tcp", 22, verdict="DROP",
              wrong="client reaches backend1 on port 22: traffic between Pods must pass FORWARD's second rule "
                    "(only TCP 8080)."),
        Probe("mail from client", "client", EXTERNAL, "tcp", 25, verdict="DROP",
              wrong="client can send mail (TCP port 25): keep POD-EGRESS's first rule."),
        Probe("client to the outside", "client", EXTERNAL, "tcp", 443, verdict="ACCEPT",
              wrong="client can no longer reach the outside on port 443."),
        Probe("external to backend2:8080", "external", BACKEND2, "tcp", 8080, verdict="ACCEPT",
              wrong="external can no longer reach backend2 on port 8080."),
        Probe("external to backend2:22", "external", BACKEND2, "tcp", 22, verdict="DROP",
              wrong="external reaches backend2 on port 22: only TCP 8080 may reach a Pod."),
    ], table="filter"),
    hints=("Trace client -> backend1:8080 in your head: FORWARD #1, then POD-EGRESS. Which rule of POD-EGRESS "
           "matches, and where does the walk go next?",
           "-g leaves no return address: a RETURN (or the end) of a chain reached by -g straight from a "
           "built-in chain ends at that chain's policy.",
           "Change -g POD-EGRESS to -j POD-EGRESS."),
    answer=GOTO_FIXED,
    explanation="FORWARD reached POD-EGRESS with -g, so POD-EGRESS had no return address: its RETURN ended the "
                "walk of FORWARD at the policy, DROP, and FORWARD's second rule was never evaluated. With -j the "
                "RETURN goes back to FORWARD after rule #1, and rule #2 accepts TCP 8080.",
    wrong_answers=((GOTO_BROKEN, "-g"),
                   (GOTO_BROKEN.replace("-d 10.244.1.0/24 -j RETURN", "-d 10.244.1.0/24 -j ACCEPT"), "port 22"),
                   (GOTO_FIXED.replace("-A POD-EGRESS -p tcp --dport 25 -j DROP\n", ""), "mail")),
    starter=GOTO_BROKEN,
)

EXERCISES = (goto_return, chain_firewall, early_return, goto_bug)
