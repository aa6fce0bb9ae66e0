"""Notebook 6's exercise helpers: rendered cascades, exact shares, the shares check."""
import pytest

import kplab
from kplab.exercises import nb06
from kplab.kube.proxier import service_chain_name

CHAIN = service_chain_name(nb06.SERVICE_PORT, "tcp")


@pytest.mark.parametrize("n, want", [(1, [None]), (2, [0.5, None]), (3, [1 / 3, 0.5, None]),
                                     (4, [0.25, 1 / 3, 0.5, None])])
def test_cascade_reads_kube_proxys_probabilities(n, want):
    got = nb06.cascade(nb06.render_seed(n).ruleset, CHAIN)
    assert [t.startswith("KUBE-SEP-") for t, _ in got] == [True] * n
    assert [p if p is None else pytest.approx(p, abs=1e-9) for _, p in got] == want


def test_second_rule_of_four_is_a_third():
    assert nb06._second_rule_probability(4) == pytest.approx(1 / 3, abs=1e-9)


def test_endpoint_shares_of_the_starved_cascade():
    shares = nb06.endpoint_shares(kplab.parse_rules(nb06.STARVED))
    assert shares == pytest.approx({"10.244.1.3:8080": 0.5, "10.244.1.4:8080": 0.25, "10.244.2.5:8080": 0.125,
                                    None: 0.125})
    fair = nb06.endpoint_shares(kplab.parse_rules(nb06.FAIR))
    assert set(fair) == {"10.244.1.3:8080", "10.244.1.4:8080", "10.244.2.5:8080"}
    assert all(v == pytest.approx(1 / 3, abs=1e-6) for v in fair.values())


def test_share_to_node_follows_placement():
    assert nb06.share_to_node(1) == 0
    assert nb06.share_to_node(3) == pytest.approx(2 / 3, abs=1e-6)
    assert nb06.share_to_node(5) == pytest.approx(3 / 5, abs=1e-6)


def test_shares_check_tolerance_and_bare_lines():
    check = nb06.two_endpoints.checker
    assert check("-A SVC-WEB -m statistic --mode random --probability 0.5004 -j SEP-1\n-A SVC-WEB -j SEP-2")
    assert not check("-A SVC-WEB -m statistic --mode random --probability 0.51 -j SEP-1\n-A SVC-WEB -j SEP-2")
    # the debug exercise takes the SVC-WEB lines alone too (its chains are the base)
    assert nb06.starved_endpoint.check("-A SVC-WEB -m statistic --mode random --probability 0.3333333333 -j SEP-1\n"
                                       "-A SVC-WEB -m statistic --mode random --probability 0.5 -j SEP-2\n"
                                       "-A SVC-WEB -j SEP-3")


def test_shares_check_names_a_stray_destination():
    fb = nb06.two_endpoints.check("-A SVC-WEB -m statistic --mode random --probability 0.5 -j SEP-1\n"
                                  "-A SVC-WEB -m statistic --mode random --probability 0.5 -j SEP-2\n"
                                  "-A SVC-WEB -p tcp -j DNAT --to-destination 10.244.2.5:8080")
    assert fb.correct is False and "not an endpoint" in str(fb) and "10.244.2.5:8080" in str(fb)
