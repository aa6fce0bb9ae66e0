"""The single-rule cases of iptables' own extension tests, with what the
kernel (iptables 1.8.9, nf_tables) really did: kplab must accept exactly what
it accepted and print exactly what iptables-save printed.

cases.json holds the 768 cases of the modules kube-proxy uses;
cases-dump-modules.json those of the modules real node dumps carry besides
(state, limit, connmark, CONNMARK, NFLOG, physdev, owner), upstream lines and
the project's own edge cases, recorded the same way (see its README)."""
import json
import shlex
from pathlib import Path

import pytest

from kplab.netfilter import parse
from kplab.errors import ParseError

DATA = Path(__file__).parent.parent / "data" / "conformance" / "iptables-extensions"
CASES = [c for name in ("cases.json", "cases-dump-modules.json")
         for c in json.loads((DATA / name).read_text())["cases"]]


def _restore_text(table, chain, words):
    quoted = " ".join(w if w and all(c.isalnum() or c in "-_.:/,+!=" for c in w) else
                      '"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in words)
    return f"*{table}\n-A {chain} {quoted}\nCOMMIT\n"


def _case_id(c):
    name = c["id"]
    if not c["agrees_with_file"]:
        name += " [kernel differs from upstream file: " + c["disagreement"].split(".")[0][:60] + "]"
    return name


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_case(case):
    words = shlex.split(case["rule"])
    text = _restore_text(case["table"], case["chain"], words)
    try:
        rs = parse(text)
    except ParseError as e:
        assert not case["kernel_ok"], f"kplab refused what the kernel accepted: {e}"
        assert e.line == 2, "the error must name the rule's line"
        return
    assert case["kernel_ok"], f"kplab accepted what the kernel refused ({case['kernel_message']!r})"
    rule = rs.chain(case["table"], case["chain"]).rules[0]
    want = case["kernel_saved"][len("-A " + case["chain"] + " "):] if case["kernel_saved"] != "-A " + case["chain"] else ""
    assert rule.spec() == want
    if case.get("saved_form_is_fixpoint") is False:
        return          # the kernel's own saved form does not load again (an empty interface name)
    # the saved form is a fixpoint: parsing it again prints the same text
    again = parse(f"*{case['table']}\n{rule.text(case['chain'])}\nCOMMIT\n")
    assert again.chain(case["table"], case["chain"]).rules[0] == rule
