"""The kernel is the judge: every case through the real kernel and through
kplab, compared field by field (verdict, per-rule hits, DNAT, masquerade,
delivered headers, replies), plus acceptance and `kplab save` text.

Random rulesets: seeds 1-200 (10 packets each) by default; `pytest --seed N`
or `--seed N-M` explores others. `python -m kplab.kernelcheck` prints the same
comparison as a report.
"""
import pytest

from kplab.kernelcheck.differential import distribution, run_case
from kplab.kernelcheck.generate import INVALID_KINDS, Case, PacketSpec, invalid_case, kube_proxy_case, random_case
from kplab.kernelcheck.lessons import KEEP_CONNTRACK, LESSONS

CI_SEEDS = list(range(1, 201))
PACKETS_PER_SEED = 10
KUBE = [(kind, n) for kind, counts in (("clusterip", (1, 2, 3)), ("nodeport", (1, 2, 3)), ("noendpoints", (0,)),
                                       ("hairpin", (1, 2, 4))) for n in counts]


def _seeds(text):
    out = []
    for part in text.split(","):
        a, dash, b = part.partition("-")
        out.extend(range(int(a), int(b if dash else a) + 1))
    return out


def pytest_generate_tests(metafunc):
    if "seed" in metafunc.fixturenames:
        opt = metafunc.config.getoption("--seed")
        metafunc.parametrize("seed", _seeds(opt) if opt else CI_SEEDS)


def _check(lab, case, keep=False):
    res = run_case(lab, case, keep_conntrack=keep)
    assert res.ok, "\n" + res.report()
    return res


@pytest.mark.parametrize("case", LESSONS, ids=[c.name.split(":")[0] for c in LESSONS])
def test_lesson(lab, case):
    res = _check(lab, case, case.name in KEEP_CONNTRACK)
    assert res.kernel_loaded and len(res.comparisons) == len(case.packets)


@pytest.mark.parametrize("kind,endpoints", KUBE, ids=[f"{k}-{n}" for k, n in KUBE])
def test_kube_proxy_shaped(lab, kind, endpoints):
    _check(lab, kube_proxy_case(endpoints, kind))


def test_random_ruleset(lab, seed):
    res = _check(lab, random_case(seed, packets=PACKETS_PER_SEED))
    assert res.kernel_loaded and len(res.comparisons) == PACKETS_PER_SEED


@pytest.mark.parametrize("n", range(1, 2 * len(INVALID_KINDS) + 1))
def test_acceptance_of_invalid_and_near_miss_rulesets(lab, n):
    """kplab refuses exactly what the kernel refuses (and loads the near misses)."""
    case = invalid_case(n)
    res = _check(lab, case)
    assert res.kernel_loaded == case.expect_load, res.kernel_message


V6_RULES = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d fd00:10:96::10/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:10:244:1::3]:8080
-A POSTROUTING -s fd00:10:244:1::7/128 -o eth0 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p udp -m udp --dport 53 -j REJECT --reject-with icmp6-adm-prohibited
-A FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT
-A FORWARD -p tcp -m conntrack --ctstate NEW -m tcp --dport 22 -j DROP
COMMIT
"""


def test_ipv6_lesson(lab6):
    case = Case("ipv6: DNAT to a Pod, masquerade out of eth0, REJECT, DROP", V6_RULES, (
        PacketSpec("client", "tcp", "fd00:10:96::10", 80),
        PacketSpec("client", "tcp", "fd00:10:244:2::5", 443),
        PacketSpec("client", "udp", "fd00:10:244:1::4", 53),
        PacketSpec("external", "tcp", "fd00:10:244:1::4", 22),
        PacketSpec("client", "icmp", "fd00:10:244:1::3", None),
    ))
    _check(lab6, case)


def test_statistic_distribution_fits(lab):
    """Over a few hundred connections the kernel's endpoint counts fit kplab's
    probabilities (chi-square at significance 0.001). The kernel's draws cannot
    be seeded: on a failure one fresh sample is drawn, and only two failures fail."""
    case = kube_proxy_case(3, "clusterip")
    for attempt in range(2):
        seen, expected, chi2, critical = distribution(lab, case.rules, "client", "10.96.5.81", 80, count=300)
        assert set(seen) <= set(expected), (seen, expected)
        if chi2 < critical:
            break
    else:
        pytest.fail(f"kernel counts {seen} do not fit kplab's probabilities {expected} "
                    f"(chi-square {chi2:.2f} >= {critical} twice)")
    assert sorted(round(p, 9) for p in expected.values()) == [round(1 / 3, 9)] * 3


def test_a_broken_engine_is_caught(lab, monkeypatch):
    """The suite can fail: run the lessons on an engine whose PREROUTING runs
    nat before mangle, and the kernel disagrees."""
    from kplab.netfilter import hooks
    monkeypatch.setitem(hooks.HOOK_ORDER, "PREROUTING", ("raw", "conntrack", "nat", "mangle"))
    bad = [c for c in LESSONS if not run_case(lab, c, keep_conntrack=c.name in KEEP_CONNTRACK).ok]
    assert bad, "swapping mangle and nat in PREROUTING went unnoticed"
