"""The netfilter simulator: rules, hooks, conntrack, iptables-save I/O.

Standard library only, so it imports fast and runs anywhere.
"""
from .rules import Chain, Match, Rule, Ruleset, Table, Target
from .iptables_save import load, parse, save

__all__ = ["Chain", "Match", "Rule", "Ruleset", "Table", "Target", "load", "parse", "save"]
