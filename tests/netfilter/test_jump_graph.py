"""The load-time checks of the jump graph: nesting depth, loops, hooks.

A "diamond" graph (every chain jumps several times to the next one) has
exponentially many paths; the check must visit each chain once per hook."""
import time

import pytest

import kplab
from kplab.errors import RulesetError


def diamond(depth: int, fanout: int = 3, table="filter", base="INPUT", last_rule="-j ACCEPT") -> str:
    lines = [f"*{table}"] + [f":C{k} - [0:0]" for k in range(1, depth + 1)]
    lines.append(f"-A {base} -j C1")
    for k in range(1, depth):
        lines += [f"-A C{k} -p tcp --dport {p + 1} -j C{k + 1}" for p in range(fanout)]
    lines.append(f"-A C{depth} {last_rule}")
    return "\n".join(lines + ["COMMIT", ""])


def test_fifteen_deep_loads_sixteen_is_refused():
    # nf_tables: NFT_JUMP_STACK_SIZE is 16 (seen on this machine's kernel)
    kplab.parse_rules(diamond(15))
    with pytest.raises(RulesetError) as e:
        kplab.parse_rules(diamond(16))
    assert "nest 16 deep" in str(e.value) and e.value.line is not None


def test_target_hook_check_through_a_diamond():
    text = diamond(10, table="nat", base="POSTROUTING", last_rule="-p tcp -j DNAT --to-destination 10.0.0.1")
    with pytest.raises(RulesetError) as e:
        kplab.parse_rules(text)
    assert "DNAT is not valid in nat POSTROUTING" in str(e.value)
    kplab.parse_rules(text.replace("POSTROUTING -j C1", "PREROUTING -j C1").replace("*nat", "*nat"))


def test_check_cost_is_linear_in_chains_not_paths():
    def best(text, n=3):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            kplab.parse_rules(text)
            out.append(time.perf_counter() - t)
        return min(out)
    small, large = best(diamond(6, fanout=4)), best(diamond(12, fanout=4))
    # 2x the chains and rules; 4**6 = 4096x the paths. Linear work stays near 2x.
    assert large / small < 8
