"""Limits: deep and long rulesets never reach Python's recursion limit, all-paths enumeration
stays bounded, and huge files are refused before they are read.

No test here measures time (the project's rule): boundedness is shown by work that can be counted
(walks made, recursion depth allowed, memory grown).
"""
from __future__ import annotations

import inspect
import resource
import sys

import pytest

import kplab
from kplab.errors import ParseError, RulesetError, TooManyPathsError

DEEP = 10_000          # user chains, each going to the next
LONG = 100_000         # rules in one chain
CASCADE = 1_000        # branches of a statistic cascade (kube-proxy's shape for 1,000 endpoints)


@pytest.fixture
def shallow_stack():
    """Run the test body with only 150 frames of Python stack to spare: a recursive walk over
    10,000 chains or 100,000 rules would need thousands."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 150)
    yield
    sys.setrecursionlimit(old)


def goto_chain(n: int, entry: str = "") -> str:
    return ("*filter\n" + "".join(f":C{i} - [0:0]\n" for i in range(n))
            + "".join(f"-A C{i} -g C{i + 1}\n" for i in range(n - 1)) + f"-A C{n - 1} -j DROP\n" + entry + "COMMIT\n")


def test_ten_thousand_chains_linked_by_goto(shallow_stack):
    """Not reached from a built-in chain, the kernel loads it (nesting counts from the hooks):
    parse, trace, all paths and save all go through without recursing."""
    rs = kplab.parse_rules(goto_chain(DEEP))
    assert len(rs.tables["filter"].chains) == DEEP + 3
    node = kplab.Node(rs)
    assert node.send_from("client", "10.244.2.5", "tcp", 80).verdict == "ACCEPT"
    assert len(node.all_paths(node.packet("client", "10.244.2.5", "tcp", 80), "client")) == 1
    assert kplab.save_rules(rs).count("\n-A C") == DEEP


@pytest.mark.parametrize("how", ["-g", "-j"])
def test_ten_thousand_chains_reached_from_a_hook_are_refused(shallow_stack, how):
    """Reached from INPUT, the nesting is 10,000 deep where the kernel allows 15: refused, at the
    rule that crosses the limit (the one iptables-restore names), with a short message."""
    text = goto_chain(DEEP, f"-A INPUT {how} C0\n").replace(" -g ", f" {how} ")
    with pytest.raises(RulesetError) as info:
        kplab.parse_rules(text, source="deep.rules")
    message = str(info.value)
    assert message.startswith(f"deep.rules:{DEEP + 1 + 15}: jumps nest {DEEP} deep from built-in chain INPUT "
                              "(the kernel allows 15): INPUT -> C0 -> ")
    assert "-> ... ->" in message and len(message) < 400


def test_a_chain_of_a_hundred_thousand_rules(shallow_stack):
    rules = "".join(f"-A FORWARD -s 10.{i // 65536}.{i // 256 % 256}.{i % 256}/32 -p tcp -m tcp "
                    f"--dport {1 + i % 60000} -j DROP\n" for i in range(LONG))
    rs = kplab.parse_rules("*filter\n" + rules + "COMMIT\n")
    assert len(rs.chain("filter", "FORWARD").rules) == LONG
    node = kplab.Node(rs)
    t = node.send_from("client", "10.244.2.5", "udp", 53)          # misses every rule
    assert t.verdict == "ACCEPT"
    assert len(node.all_paths(node.packet("client", "10.244.2.5", "udp", 53), "client")) == 1
    assert kplab.save_rules(rs).count("\n") == LONG + 5


def cascade(n: int) -> str:
    lines = ["*nat", ":KUBE-SVC-X - [0:0]"] + [f":KUBE-SEP-{i} - [0:0]" for i in range(n)]
    lines.append("-A PREROUTING -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-X")
    for i in range(n):
        stat = f"-m statistic --mode random --probability {1 / (n - i):.11f} " if i < n - 1 else ""
        lines.append(f"-A KUBE-SVC-X {stat}-j KUBE-SEP-{i}")
    lines += [f"-A KUBE-SEP-{i} -p tcp -j DNAT --to-destination 10.244.{1 + i // 250}.{2 + i % 250}:8080"
              for i in range(n)]
    return "\n".join(lines + ["COMMIT"]) + "\n"


@pytest.fixture(scope="module")
def cascade_node():
    return kplab.Node(kplab.parse_rules(cascade(CASCADE)))


def test_a_statistic_cascade_of_a_thousand_branches_enumerates(cascade_node):
    node = cascade_node
    paths = node.all_paths(node.packet("client", "10.96.0.1", "tcp", 80), "client")
    assert len(paths) == CASCADE
    assert abs(sum(p.probability for p in paths) - 1) < 1e-9
    assert len({p.dnat_to for p in paths}) == CASCADE


def test_over_the_limit_it_says_how_many_and_how_to_sample(cascade_node):
    node = cascade_node
    pkt = node.packet("client", "10.96.0.1", "tcp", 80)
    with pytest.raises(TooManyPathsError) as info:
        node.all_paths(pkt, "client", max_paths=100)
    assert info.value.count == CASCADE
    assert str(info.value) == ("1000 possible paths (over the limit of 100): raise --max-paths, or use --sample N "
                               "to follow N seeded random paths")
    sampled = node.all_paths(pkt, "client", sample=25)
    assert len(sampled) == 25
    assert [t.dnat_to for t in sampled] == [t.dnat_to for t in node.all_paths(pkt, "client", sample=25)]


def test_draws_that_multiply_stop_after_few_walks(monkeypatch):
    """60 independent 50% draws make 2^60 paths: breadth-first, the frontier shows there are too many
    after a few walks, and counting stops once it holds ten times the limit -- far fewer walks than
    the paths allowed (depth first, it would walk 1,000 paths, then up to 100,000 more to count)."""
    from kplab.netfilter import engine
    rules = "*mangle\n" + "".join(f"-A PREROUTING -m statistic --mode random --probability 0.5 "
                                  f"-j MARK --set-xmark {i}/0xffffffff\n" for i in range(60)) + "COMMIT\n"
    node = kplab.Node(kplab.parse_rules(rules))
    pkt = node.packet("client", "10.244.2.5", "tcp", 80)
    walks = []
    real_run = engine.Walk.run
    monkeypatch.setattr(engine.Walk, "run", lambda self, *a: walks.append(1) or real_run(self, *a))
    with pytest.raises(TooManyPathsError) as info:
        node.all_paths(pkt, "client", max_paths=1000)
    assert str(info.value).startswith("more than ") and "--sample N" in str(info.value)
    assert info.value.count > 1000
    assert len(walks) < 1000, f"{len(walks)} walks to find out"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("kind", ["rules", "yaml"])
def test_a_200_megabyte_file_is_refused_before_it_is_read(tmp_path, kind):
    big = tmp_path / f"big.{kind}"
    with open(big, "wb") as f:                 # sparse: 200 MB that take no disk space
        f.truncate(200 * 2**20)
    before = peak_rss_mb()
    if kind == "rules":
        with pytest.raises(ParseError) as info:
            kplab.load_rules(str(big))
        assert "the file is 209,715,200 bytes: kplab reads rules files of at most 128 MiB" in str(info.value)
    else:
        from kplab.kube.manifests import ManifestError, load
        with pytest.raises(ManifestError) as info:
            load(str(big))
        assert "the file is 209,715,200 bytes: kplab reads YAML files of at most 64 MiB" in str(info.value)
    assert peak_rss_mb() - before < 50, "the file was read into memory"


def test_a_file_just_under_the_limit_is_read(tmp_path, monkeypatch):
    from kplab.netfilter import iptables_save
    monkeypatch.setattr(iptables_save, "MAX_FILE_BYTES", 4096)
    f = tmp_path / "ok.rules"
    f.write_text("*filter\n" + "# padding\n" * 300 + "COMMIT\n")
    assert f.stat().st_size <= 4096
    kplab.load_rules(str(f))
    f.write_text("*filter\n" + "# padding\n" * 500 + "COMMIT\n")
    with pytest.raises(ParseError):
        kplab.load_rules(str(f))
