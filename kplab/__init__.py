"""kplab: how netfilter and kube-proxy move a packet from a Pod to a Service.

The public API is small: load rules, build a node, send packets, read the
trace. Everything here is standard-library Python; the diagrams
(`kplab.viz`) and widgets (`kplab.widgets`) sit on top.

>>> import kplab
>>> node = kplab.standard_node(kplab.parse_rules("*filter\\n-A FORWARD -p udp -j DROP\\nCOMMIT\\n"))
>>> node.send_from("client", "10.244.1.3", "udp", 53).verdict
'DROP'
"""
from .errors import (KplabError, ParseError, RulesetError, TooManyPathsError, TopologyError,
                     UnsupportedError)
from .netfilter import Chain, Rule, Ruleset, Table
from .netfilter import load as load_rules
from .netfilter import parse as parse_rules
from .netfilter import save as save_rules
from .netfilter.trace import Step, Trace
from .node import ManualClock, Node
from .packet import Packet, PacketError
from .topology import Topology

__version__ = "0.1.0"


def standard_node(rules=None, topology=None, **kw) -> Node:
    """The standard node of the lessons (DESIGN section 3) with `rules`: a
    Ruleset, iptables-save text, or a path to a rules file."""
    if isinstance(rules, str):
        rules = parse_rules(rules) if "\n" in rules else load_rules(rules)
    return Node(rules, topology, **kw)


def trace(rules, from_: str, dst: str, proto: str = "tcp", dport: int | None = 80, **kw) -> Trace:
    """One packet through the standard node: `kplab trace` as a function."""
    node = standard_node(rules)
    return node.send_from(from_, dst, proto, dport, **kw)


__all__ = ["Chain", "KplabError", "ManualClock", "Node", "Packet", "PacketError", "ParseError", "Rule",
           "Ruleset", "RulesetError", "Step", "Table", "TooManyPathsError", "Topology", "TopologyError",
           "Trace", "UnsupportedError", "load_rules", "parse_rules", "save_rules", "standard_node", "trace"]
