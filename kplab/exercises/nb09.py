"""Exercises for notebook 9: why iptables mode costs grow with the number of Services.

Every count here comes from the simulator: a synthetic cluster (`kplab.kube.synth`,
ClusterIP Services with 5 ready endpoints each), node-1's rules as kube-proxy renders
them (`kplab.kube.scale.render_rules`), and one first packet from the standard node's
`client` Pod (`kplab.kube.scale.evaluated_to`). The rules are rendered once per size
and kept (a few tens of milliseconds each for the sizes used here).
"""
from __future__ import annotations

import re
from functools import lru_cache

from ._core import Exercise, right, wrong
from .checks import _to_number, choice

ENDPOINTS = 5
#: The cluster of the debug exercise.
DEBUG_SERVICES = 50


@lru_cache(maxsize=None)
def colleague_rules(services: int = DEBUG_SERVICES):
    """node-1's rules (a kplab Ruleset) for `services` ClusterIP Services with 5 endpoints each."""
    from ..kube.scale import render_rules
    return render_rules(services, ENDPOINTS)


@lru_cache(maxsize=None)
def evaluated(services: int, which="last") -> int:
    """Rules a first packet from `client` to the `which` Service ('first', 'last' or an index)
    of KUBE-SERVICES meets, with `services` Services."""
    from ..kube.scale import evaluated_to
    return evaluated_to(colleague_rules(services), which).evaluated


def fixed_rules() -> int:
    """The rules of the walk that do not depend on the number of Services."""
    return evaluated(10) - 10


# --------------------------------------------------------------------------- 9.1 predict

def _check_double(answer):
    value = _to_number(answer)
    if value is None:
        return wrong(f"Answer with a number of rules, like 150; you gave {answer!r}.")
    base, want = evaluated(100), evaluated(200)
    if value == want:
        return right(f"{want} rules: 100 more Services put 100 more rules in KUBE-SERVICES, and the packet to the "
                     f"last Service tries every one of them; the other {want - 200} rules of its walk stay the same.")
    if value == 2 * base:
        return wrong(f"Twice {base} doubles the fixed rules too. Only KUBE-SERVICES grows, by one rule per Service; "
                     f"the other {base - 100} rules of the walk (PREROUTING, the Service's own chains, FORWARD, "
                     "POSTROUTING) do not depend on how many Services there are.")
    if value == base:
        return wrong("The same number would mean the kernel finds the Service in one step, whatever the number of "
                     "Services: that is nftables mode's verdict map (section 4). In iptables mode the kernel walks "
                     "KUBE-SERVICES rule by rule.")
    if value < want:
        return wrong(f"Too few. How many rules of KUBE-SERVICES does a packet to the last Service try with 100 "
                     f"Services, and with 200? The rest of the walk ({base - 100} rules) stays the same.")
    return wrong("Too many. Only KUBE-SERVICES grows: one rule per Service, and the packet tries each once.")


double_services = Exercise(
    id="9.1", kind="predict", title="Twice the Services",
    prompt="With 100 Services, the first packet of a connection from client to the last Service of KUBE-SERVICES "
           "meets the number of rules you measured in section 2. How many rules does it meet with 200 Services "
           "(5 endpoints each, as before)? Predict before you run the next cell.",
    checker=_check_double,
    hints=("Which chain of the walk gets longer when a Service is added?",
           "KUBE-SERVICES holds one rule per Service port; the packet to the last Service tries all of them. "
           "Every other chain of its walk is the same size in any cluster.",
           "Take the count at 100 Services and add one rule per extra Service."),
    answer="218",
    explanation="The walk is the rules of KUBE-SERVICES up to the packet's Service (one per Service) plus a fixed "
                "part (PREROUTING, the Service's KUBE-SVC and KUBE-SEP chains, FORWARD, POSTROUTING): 100 + 18 = "
                "118 rules at 100 Services, 200 + 18 = 218 at 200. The cost grows linearly with the number of "
                "Services, but it does not double when they do.",
    wrong_answers=(("236", "fixed rules"), ("118", "verdict map"), ("150", "too few"), ("400", "too many"),
                   ("lots", "number of rules")),
)


# --------------------------------------------------------------------------- 9.2 write

LIMIT = 10_000


def _check_threshold(answer):
    value = _to_number(answer)
    if value is None or value != int(value):
        return wrong(f"Answer with a whole number of Services, like 5000; you gave {answer!r}.")
    n = int(value)
    if n < 1:
        return wrong("A cluster has at least one Service here.")
    c = fixed_rules()
    if evaluated(20) - 20 != c:                      # the walk is linear: one rule per Service, plus a constant
        return wrong("kplab's walk is no longer one rule per Service: report this (exercise 9.2 assumes it).")
    want = LIMIT - c + 1
    if n == want:
        return right(f"At {n:,} Services the packet meets {n + c:,} rules; at {n - 1:,} it meets {n - 1 + c:,}, "
                     f"not more than {LIMIT:,}.")
    if n < want:
        return wrong(f"At {n:,} Services the packet meets {n:,} + {c} = {n + c:,} rules: not more than {LIMIT:,} yet.")
    extra = (f" The other {c} rules of the walk count too." if n in (LIMIT, LIMIT + 1) else "")
    return wrong(f"At {n - 1:,} Services the packet already meets {n - 1 + c:,} rules, more than {LIMIT:,}: "
                 f"find the smallest size.{extra}")


ten_thousand = Exercise(
    id="9.2", kind="write", title="Where 10,000 rules begin",
    prompt=f"Write the smallest number of Services (5 endpoints each) at which the first packet of a connection "
           f"to the last Service meets more than {LIMIT:,} rules. Work it out from the measurements of small "
           f"clusters: you do not need to build a big one.",
    checker=_check_threshold,
    hints=("Section 2 shows the count grows by exactly one rule per Service.",
           "The count is (number of Services) + (a fixed part). Find the fixed part from one small measurement: "
           "count minus Services.",
           "Solve Services + 18 > 10,000 for the smallest whole number of Services."),
    answer="9983",
    explanation="A packet to the last Service meets one KUBE-SERVICES rule per Service plus 18 fixed rules. "
                "9,982 Services give 10,000 rules (not more); 9,983 give 10,001. A real cluster of that size makes "
                "every new connection to its last Service try about ten thousand rules.",
    wrong_answers=(("10000", "already"), ("10001", "already"), ("9982", "not more than 10,000"),
                   ("5000", "not more than 10,000"), ("2.5", "whole number")),
)


# --------------------------------------------------------------------------- 9.3 debug

_FIRST_50 = "10.104.104.236"
_LAST_50 = "10.108.106.222"
_MIDDLE_50 = "10.109.34.154"      # rule 26 of 50

COLLEAGUE = f"""\
# A colleague's measurement: node-1's rules, 5 endpoints per Service,
# one first packet from client to the destination below.
#
# Services  destination          rules evaluated
#       10  {_FIRST_50}:80    19
#       20  {_FIRST_50}:80    19
#       50  {_FIRST_50}:80    19
#
# Claim: "a packet meets 19 rules whatever the number of Services,
#         so iptables mode does not slow down as the cluster grows."
"""

_IP_PORT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?::(\d+))?")


def _check_destination(answer):
    from ..kube.scale import evaluated_to, service_targets
    found = _IP_PORT.search(str(answer)) if isinstance(answer, str) else None
    if not found:
        return wrong("Answer with the destination as ClusterIP:port, like \"10.96.0.10:80\".")
    ip, port = found.group(1), found.group(2)
    rules = colleague_rules()
    targets = service_targets(rules)
    pos = next((i for i, t in enumerate(targets) if t.ip == ip), None)
    if pos is None:
        return wrong(f"No Service of this {DEBUG_SERVICES}-Service cluster has the ClusterIP {ip}: read the "
                     "destinations from its KUBE-SERVICES chain (scale.service_targets(rules)).")
    target = targets[pos]
    if port is not None and int(port) != target.port:
        return wrong(f"{ip} is a Service, but on port {target.port}, not {port}: a packet to port {port} "
                     "matches no rule of KUBE-SERVICES.")
    count = evaluated_to(rules, pos).evaluated
    if pos == 0:
        return wrong(f"That is the colleague's destination: the Service of the first rule of KUBE-SERVICES. Its "
                     f"packet stops at rule 1 ({count} rules in all) and never meets the other "
                     f"{len(targets) - 1} Services' rules, so it measures the best case at every size.")
    if pos < len(targets) - 1:
        return wrong(f"A packet to {ip} meets {count} rules: it stops at rule {target.index} of KUBE-SERVICES. "
                     "The worst case is the Service whose rule comes last.")
    return right(f"A packet to {target} meets {count} rules, {count - evaluated(DEBUG_SERVICES, 'first')} more "
                 f"than the colleague's: the kernel tried all {len(targets)} rules of KUBE-SERVICES. Measured this "
                 "way, the count grows by one rule per Service.")


first_not_last = Exercise(
    id="9.3", kind="debug", title="The benchmark that measured the first Service",
    prompt=f"A colleague's measurement (print it with print(ex.first_not_last.starter)) concludes that iptables "
           f"mode does not slow down as Services are added. Find the mistake, then fix the measurement: give "
           f"the destination (ClusterIP:port) of the {DEBUG_SERVICES}-Service cluster that makes a packet meet the "
           f"most rules. ex.colleague_rules() gives that cluster's rules.",
    checker=_check_destination,
    starter=COLLEAGUE,
    hints=("The destination is the same at every size. Where is that Service in KUBE-SERVICES?",
           "The kernel stops walking KUBE-SERVICES at the first rule that matches; the worst case is a packet whose "
           "rule is the last one of the chain.",
           "scale.service_targets(ex.colleague_rules()) lists the Services in the order the kernel tries them: "
           "take the last one."),
    answer=f"{_LAST_50}:80",
    explanation=f"The colleague always sent to {_FIRST_50}, the Service of rule 1 of KUBE-SERVICES: one rule of "
                "that chain, 19 in all, at any size. The packet to the Service of the last rule tries every rule "
                f"of the chain: 68 rules with {DEBUG_SERVICES} Services, one more for each Service added. "
                "Averaged over all Services, a new connection tries about half of them.",
    wrong_answers=((f"{_FIRST_50}:80", "colleague"), (f"{_MIDDLE_50}:80", "comes last"),
                   ("10.96.0.1:80", "No Service"), (f"{_LAST_50}:443", "on port 80"),
                   ("the last one", "ClusterIP:port")),
)


# --------------------------------------------------------------------------- 9.4 predict

nft_lookup = Exercise(
    id="9.4", kind="predict", title="One lookup",
    prompt="In kube-proxy's nftables mode, the services chain finds a packet's Service with one verdict-map "
           "lookup on (destination address, protocol, port). How does the work of that step grow with the number "
           "of Services: \"linear\", \"constant\" or \"quadratic\"?",
    checker=choice("constant", options=("linear", "constant", "quadratic"),
                   aliases={"o(1)": "constant", "flat": "constant", "same": "constant", "one lookup": "constant",
                            "o(n)": "linear", "grows": "linear", "o(n^2)": "quadratic"},
                   why={"linear": "That is iptables mode: one rule per Service, tried in order. A verdict map is a "
                                  "hash table keyed by address, protocol and port: one lookup finds the entry.",
                        "quadratic": "Not even iptables mode is quadratic per packet: there the walk is linear. A "
                                     "verdict map is a hash lookup: about the same work for 10 or 10,000 Services."},
                   praise="A map lookup takes about the same time for 10 or 10,000 Services (and the endpoint "
                          "choice is one numgen rule, not a cascade)."),
    hints=("Think of a Python dict: does looking up a key take longer when the dict holds more keys?",
           "A verdict map (vmap) is a set of key : verdict pairs the kernel looks up in one step, by hashing the "
           "key."),
    answer="constant",
    explanation="`ip daddr . meta l4proto . th dport vmap @service-ips` looks the packet's (address, protocol, "
                "port) up in one map: the cost does not grow with the number of Services. The rules kube-proxy "
                "writes still grow with the cluster, but one new Service is one map element added, not a chain "
                "rewritten.",
    wrong_answers=(("linear", "iptables mode"), ("quadratic", "hash"), ("banana", "not one of the choices")),
)

EXERCISES = (double_services, ten_thousand, first_not_last, nft_lookup)
