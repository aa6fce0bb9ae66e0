"""Fuzzing: valid dumps and YAML, mutated by dropping, duplicating, swapping and truncating tokens
and lines (tests/bad_inputs/_mutate.py), must never make kplab raise anything but a KplabError, nor
take long; and the kernel must agree with kplab about which rules texts load.

- rules: data/rules/seed-node.rules and data/clusters/*.node-1.rules; YAML: data/clusters/*.yaml.
- time: each mutant has hypothesis' deadline (generous, 2 s: a mutant takes milliseconds; the
  deadline catches a hang or a blow-up, not a slow machine).
- the kernel (tests marked `kernel`, see conftest.py): each rules mutant is loaded with a real
  iptables-restore (nf_tables) in a scratch namespace, not `--test`, which accepts DNAT in INPUT,
  reachable loops and more that a real load refuses. kplab must load exactly what the kernel
  loads, and when both load, `kplab save` must print what iptables-save prints.

300 mutants per test by default, the same ones on every run; `KPLAB_FUZZ_EXAMPLES=5000` for a
longer campaign, `pytest --seed N` for other mutants.
"""
from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

import kplab
from kplab.errors import KplabError
from tests.bad_inputs._mutate import OPERATIONS, mutate, rule_sources, yaml_sources
from tests.bad_inputs.conftest import fuzz_examples, fuzz_seed

RULES = rule_sources()
YAML = yaml_sources()


@st.composite
def mutants(draw, sources: dict):
    """(source name, mutated text): one to three operations on one of `sources`."""
    name = draw(st.sampled_from(sorted(sources)))
    ops = draw(st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=3))
    text = mutate(sources[name], ops, lambda low, high: draw(st.integers(low, max(low, high))))
    note(f"{name} after {', '.join(op.__name__ for op in ops)}:\n{text}")
    return name, text


def fuzz(request):
    """The settings every fuzz test runs with (examples, deadline, seed)."""
    n = fuzz_examples()
    chosen = fuzz_seed(request.config)
    config = settings(max_examples=n, deadline=timedelta(seconds=2), derandomize=chosen is None,
                      database=None, print_blob=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.filter_too_much])

    def apply(test):
        test = config(test)
        return seed(chosen)(test) if chosen is not None else test
    return apply


def parse_rules(name, text):
    """kplab's answer: the ruleset, or None when it refuses the text with a KplabError."""
    try:
        rs = kplab.parse_rules(text, source=name)
    except KplabError as e:
        assert "\n" not in str(e) and str(e).startswith(f"{name}:"), str(e)
        return None
    kplab.save_rules(rs)                           # what loads also saves
    return rs


def test_rules_mutants_raise_only_kplab_errors(request):
    @fuzz(request)
    @given(mutants(RULES))
    def check(case):
        parse_rules(*case)
    check()


def test_yaml_mutants_raise_only_kplab_errors(request):
    from kplab.kube.cluster import Cluster
    from kplab.kube.proxier import render

    @fuzz(request)
    @given(mutants(YAML))
    def check(case):
        name, text = case
        try:
            cluster = Cluster.from_yaml(text, name)
            for node in cluster.nodes():
                render(cluster.services(), cluster.slices(), cluster.proxy_config(node.name))
        except KplabError as e:
            assert "\n" not in str(e) and str(e).startswith(name), str(e)
    check()


def test_rules_mutants_load_as_the_kernel_loads(judge, request):
    @fuzz(request)
    @given(mutants(RULES))
    def check(case):
        name, text = case
        rs = parse_rules(name, text)
        # a clean node for what kplab loads, so that iptables-save then shows this text alone
        loaded, message = judge.accepts(text, fresh=rs is not None)
        assert loaded == (rs is not None), (
            f"the kernel {'loads' if loaded else 'refuses'} it ({message.strip()[:300]}), kplab "
            f"{'loads' if rs is not None else 'refuses'} it")
        if loaded:
            assert kplab.save_rules(rs) == judge.saved()
    check()
