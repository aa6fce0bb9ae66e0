"""Scaling guards for the engine: ratios between ruleset sizes, never absolute times.

The rulesets are the benchmark's kube-proxy-shaped ones (bench/_rulesets.py):
`services` ClusterIP Services with 5 endpoints each, 2 + 3*5 rules per Service.
Each figure is the best of several runs (time.perf_counter), which keeps
scheduler noise out of the ratios; the bounds leave room for a slow or busy
machine while still catching a change of complexity (quadratic parsing, a
per-trace pass over the whole ruleset, a walk that costs more per rule as
chains grow). The absolute figures live in `python3 bench/engine.py`.
"""
from __future__ import annotations

import gc
import importlib.util
import os
import sys
import time

import pytest

import kplab

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "kplab_bench_rulesets", os.path.join(os.path.dirname(_HERE), "bench", "_rulesets.py"))
rulesets = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = rulesets         # dataclasses look their module up there
_spec.loader.exec_module(rulesets)

ENDPOINTS = 5
SMALL, PARSE_SMALL, LARGE = 100, 2_000, 20_000          # rules, approximately


def best_of(fn, runs: int) -> float:
    """The fastest of `runs` calls of `fn`, in seconds."""
    best = float("inf")
    gc.collect()
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _size(rules: int):
    services = rulesets.services_for_rules(rules, ENDPOINTS)
    text = rulesets.kube_proxy_ruleset(services, ENDPOINTS)
    svcs = rulesets.kube_proxy_services(services, ENDPOINTS)
    return text, svcs, rulesets.rule_count(services, ENDPOINTS)


@pytest.fixture(scope="module")
def large():
    text, svcs, n = _size(LARGE)
    return text, svcs, n, kplab.parse_rules(text)


@pytest.fixture(scope="module")
def small():
    text, svcs, n = _size(SMALL)
    return text, svcs, n, kplab.parse_rules(text)


def test_generator_output_is_what_kplab_saves(small):
    """The benchmark's text is in saved form: parse then save gives it back."""
    text, svcs, n, rs = small
    assert rs.rule_count() == n
    assert kplab.save_rules(rs) == text
    # one KUBE-SERVICES rule per Service, then the nodeports rule
    assert len(rs.chain("nat", "KUBE-SERVICES").rules) == len(svcs) + 1


def test_parse_cost_per_rule_is_about_constant(large):
    """Parsing ~20k rules costs under 3x per rule what ~2k rules cost."""
    text_small, _, n_small = _size(PARSE_SMALL)[:3]
    text_large, _, n_large, _ = large
    kplab.parse_rules(text_small)                      # warm up (imports, caches)
    t_small = best_of(lambda: kplab.parse_rules(text_small), 7)
    t_large = best_of(lambda: kplab.parse_rules(text_large), 3)
    ratio = (t_large / n_large) / (t_small / n_small)
    assert ratio < 3.0, (f"parse time per rule grew {ratio:.2f}x from {n_small} to {n_large} rules "
                         f"({t_small * 1e3:.1f} ms vs {t_large * 1e3:.1f} ms)")


def _trace_time(rs, cluster_ip, runs):
    def one():
        trace = kplab.standard_node(rs).send_from("client", cluster_ip, "tcp", 80)
        assert trace.verdict == "ACCEPT" and trace.dnat_to is not None
    one()                                              # the first trace fills per-ruleset caches
    return best_of(one, runs)


def test_trace_to_last_service_scales_at_most_linearly(small, large):
    """A trace to the last Service of KUBE-SERVICES (the longest walk) on
    ~20k rules costs at most 2x the rule-count ratio over a ~100-rule ruleset."""
    _, svcs_s, n_s, rs_s = small
    _, svcs_l, n_l, rs_l = large
    t_small = _trace_time(rs_s, svcs_s[-1].cluster_ip, 15)
    t_large = _trace_time(rs_l, svcs_l[-1].cluster_ip, 9)
    bound = 2 * n_l / n_s
    assert t_large / t_small < bound, (f"trace to the last Service: {t_large * 1e3:.2f} ms on {n_l} rules vs "
                                       f"{t_small * 1e3:.2f} ms on {n_s} rules, ratio {t_large / t_small:.0f} "
                                       f"(bound {bound:.0f})")


def test_trace_to_first_service_does_not_depend_on_ruleset_size(small, large):
    """A trace that matches the first Service evaluates the same 19 rules on
    any ruleset size, so it must not cost much more on ~20k rules: no
    per-trace (or per-node) pass over the whole ruleset."""
    _, svcs_s, n_s, rs_s = small
    _, svcs_l, n_l, rs_l = large
    t_small = _trace_time(rs_s, svcs_s[0].cluster_ip, 15)
    t_large = _trace_time(rs_l, svcs_l[0].cluster_ip, 15)
    assert t_large / t_small < 5.0, (f"trace to the first Service: {t_large * 1e3:.2f} ms on {n_l} rules vs "
                                     f"{t_small * 1e3:.2f} ms on {n_s} rules")


def test_fast_path_parses_kube_proxy_dumps_faster(large, monkeypatch):
    """The parser's fast path (iptables_save._fast_rule, which looks recurring pieces of a rule
    up by their words) reads ~20k kube-proxy rules at least 1.25x as fast as the general path
    (about 1.6x on this generator's dumps, 2x on a rendered 10,000-Service dump); it must never
    become the slower one."""
    from kplab.netfilter import iptables_save
    text = large[0]
    kplab.parse_rules(text)
    t_fast = best_of(lambda: kplab.parse_rules(text), 3)
    monkeypatch.setattr(iptables_save, "FAST_PATH", False)
    t_general = best_of(lambda: kplab.parse_rules(text), 3)
    assert t_general / t_fast > 1.25, (f"fast path {t_fast * 1e3:.0f} ms, general path {t_general * 1e3:.0f} ms "
                                       f"on {large[2]} rules")
