"""`kplab.kube.scale`: the measurements of notebook 9 (counts exactly, times only as ratios)."""
from __future__ import annotations

import json

import pytest

from kplab.kube.scale import (RESULTS_PATH, Measurement, ScaleError, ScaleResults, count_walks, evaluated_by_chain,
                              evaluated_text, evaluated_to, load_results, measure, measure_series, render_rules,
                              service_targets, table_text)


@pytest.fixture(scope="module")
def series():
    return measure_series([10, 40, 160], repeat=2)


def test_fields_and_counts(series):
    small = series[0]
    assert isinstance(small, Measurement)
    assert (small.services, small.endpoints) == (10, 5)
    assert small.rules > 10 * (2 + 3 * 5)
    for name in ("render_s", "save_s", "parse_s", "trace_s", "explain_s", "trace_cold_s"):
        assert getattr(small, name) > 0, name
    assert small.target and small.target.endswith(":80/tcp")
    assert small.extra["service_ports"] == 10


def test_the_walk_through_kube_services_is_linear(series):
    """One more Service, one more rule for a packet to the last Service; none for the first."""
    for a, b in zip(series, series[1:]):
        assert b.rules_evaluated - a.rules_evaluated == b.services - a.services
        assert b.rules_evaluated_first == a.rules_evaluated_first
    assert series[0].rules_evaluated_first < series[0].rules_evaluated


def test_rules_grow_per_service(series):
    per = {(b.rules - a.rules) / (b.services - a.services) for a, b in zip(series, series[1:])}
    assert per == {2 + 3 * 5}


def test_times_grow_no_faster_than_the_rules(series):
    """Ratios only: 16x the Services must not cost 50x (a complexity change would)."""
    a, b = series[0], series[-1]
    x = b.services / a.services
    for name in ("render_s", "parse_s", "explain_s"):
        assert getattr(b, name) / getattr(a, name) < 3 * x, name


def test_service_targets_follow_kube_services():
    rs = render_rules(6, 2)
    targets = service_targets(rs)
    assert len(targets) == 6
    chain = rs.chain("nat", "KUBE-SERVICES").rules
    assert [t.index for t in targets] == [i for i, r in enumerate(chain, 1) if (r.jump or "").startswith("KUBE-SVC-")]
    assert all(t.proto == "tcp" and t.port == 80 for t in targets)
    last = evaluated_to(rs, "last")
    first = evaluated_to(rs, "first")
    # 5 more KUBE-SERVICES rules, give or take the statistic rule the random choice stops at
    assert 4 <= last.evaluated - first.evaluated <= 6
    assert last.dnat_to and first.dnat_to
    assert 1 <= evaluated_to(rs, 2).evaluated - first.evaluated <= 3
    with pytest.raises(ScaleError):
        evaluated_to(rs, 17)
    with pytest.raises(ScaleError):
        evaluated_to(rs, "middle")


@pytest.mark.parametrize("bad", [0, -3, "10", 2.5, True])
def test_bad_sizes(bad):
    with pytest.raises(ScaleError):
        measure(bad)


def test_shipped_results_load_and_read_well():
    r = load_results()
    assert isinstance(r, ScaleResults)
    assert r.sizes == tuple(sorted(r.sizes)) and len(r.sizes) >= 3
    assert r.sizes[:3] == (100, 1000, 10000)
    for row in r.rows:
        assert row.endpoints == 5 and row.rules == 23 + row.services * 17
        assert row.rules_evaluated == row.services + (r.rows[0].rules_evaluated - r.rows[0].services)
    text = r.text()
    assert "10,000" in text and "evaluated" in text
    assert r.ratio("rules_evaluated") > 50
    assert r.row(1000).services == 1000
    with pytest.raises(ScaleError):
        r.row(7)


def test_results_round_trip(tmp_path, series):
    res = ScaleResults(rows=series, meta={"machine": "test"})
    p = tmp_path / "r.json"
    p.write_text(json.dumps(res.to_json()))
    back = load_results(str(p))
    assert back.rows == res.rows and back.meta == {"machine": "test"}
    assert "measured on test" in back.text()


@pytest.mark.parametrize("content, words", [
    ("not json", "not JSON"), ("[]", "rows"), ('{"rows": [{"services": 1}]}', "incomplete")])
def test_bad_results_file(tmp_path, content, words):
    p = tmp_path / "r.json"
    p.write_text(content)
    with pytest.raises(ScaleError, match=words):
        load_results(str(p))
    with pytest.raises(ScaleError, match="cannot read"):
        load_results(str(tmp_path / "missing.json"))


def test_table_leaves_out_columns_nobody_has(series):
    text = table_text(series)
    assert "kernel" not in text and "peak memory" not in text
    assert text.splitlines()[0].split()[:3] == ["Services", "rules", "evaluated"]


def test_results_path_is_package_data():
    assert RESULTS_PATH.endswith("kplab/kube/scale_results.json")


def test_count_walks_agree_with_measure(series):
    counts = count_walks([10, 40, 160])
    for c, m in zip(counts, series):
        assert (c.services, c.rules, c.rules_evaluated, c.rules_evaluated_first, c.target) == \
            (m.services, m.rules, m.rules_evaluated, m.rules_evaluated_first, m.target)
        assert c.render_s is None and c.trace_s is None
    text = table_text(counts)
    assert "render" not in text and "(first)" in text
    with pytest.raises(ScaleError):
        count_walks([0])


def test_evaluated_by_chain_adds_up():
    rules = render_rules(30)
    trace = evaluated_to(rules, "last")
    rows = evaluated_by_chain(trace)
    assert sum(n for _, _, n in rows) == trace.evaluated
    assert ("nat", "KUBE-SERVICES", 30) in rows
    assert evaluated_text(trace).splitlines()[-1].split()[-1] == f"{trace.evaluated:,}"
