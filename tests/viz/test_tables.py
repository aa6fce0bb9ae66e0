"""The DataFrames: columns and row counts against the ruleset, trace, conntrack table and diff."""
import pytest

BRIEF_RULESET = ["table", "chain", "num", "target", "prot", "opt", "source", "destination", "extra"]
BRIEF_TRACE = ["step", "kind", "hook", "table", "chain", "rule", "text", "matched", "verdict", "reason", "count"]
BRIEF_CT = ["proto", "state", "timeout", "orig_src", "orig_dst", "orig_sport", "orig_dport", "reply_src",
            "reply_dst", "reply_sport", "reply_dport", "flags"]


def test_ruleset_table_one_row_per_rule(viz, seed_rules):
    df = viz.ruleset_table(seed_rules)
    assert list(df.columns[:9]) == BRIEF_RULESET
    assert len(df) == seed_rules.rule_count()
    for (t, c), group in df.groupby(["table", "chain"], sort=False):
        assert list(group["num"]) == list(range(1, len(seed_rules.chain(t, c).rules) + 1))
    assert len(viz.ruleset_table(seed_rules, table="nat")) == seed_rules.tables["nat"].rule_count()
    svc = viz.ruleset_table(seed_rules, table="nat", chain="KUBE-SVC-POOGYJBNEVT3HFAO")
    assert len(svc) == 2
    assert df.attrs["policies"][("filter", "FORWARD")] == "ACCEPT"
    assert ("nat", "KUBE-NODEPORTS") in df.attrs["chains"]          # empty chains are listed, without rows


def test_ruleset_table_reads_like_iptables_list(viz, seed_rules, rules10):
    df = viz.ruleset_table(seed_rules).set_index(["table", "chain", "num"])
    row = df.loc[("nat", "KUBE-SERVICES", 1)]
    assert (row.target, row.prot, row.opt, row.source, row.destination) == (
        "KUBE-SVC-POOGYJBNEVT3HFAO", "tcp", "--", "0.0.0.0/0", "10.96.5.81")
    assert row.extra == "/* default/backend:http cluster IP */ tcp dpt:80"
    masq = df.loc[("nat", "KUBE-SVC-POOGYJBNEVT3HFAO", 1)]
    assert masq.source == "!10.244.0.0/16" and masq.target == "KUBE-MARK-MASQ"
    dnat = df.loc[("nat", "KUBE-SEP-YOPU36KEXISEYTYN", 2)]
    assert dnat.target == "DNAT" and dnat.extra.endswith("tcp to:10.244.1.3:8080")
    assert df.loc[("nat", "KUBE-MARK-MASQ", 1)].extra == "MARK or 0x4000"
    assert df.loc[("nat", "KUBE-POSTROUTING", 1)].extra == "mark match ! 0x4000/0x4000"
    assert df.loc[("filter", "FORWARD", 1)].extra.startswith("ctstate NEW /* kubernetes load balancer")
    assert df.loc[("nat", "KUBE-SERVICES", 2)].extra.endswith("ADDRTYPE match dst-type LOCAL")
    stat = viz.ruleset_table(rules10, chain="KUBE-SVC-POOGYJBNEVT3HFAO")
    assert stat["extra"].str.contains("statistic mode random probability 0.10000000009").sum() == 1
    assert stat["saved"].iloc[1].startswith("-A KUBE-SVC-POOGYJBNEVT3HFAO ")


def test_trace_table_one_row_per_step(viz, path_traces, service_trace):
    for trace in [*path_traces.values(), service_trace]:
        df = viz.trace_table(trace)
        assert list(df.columns[:11]) == BRIEF_TRACE
        assert len(df) == len(trace.steps)
        assert list(df["step"]) == list(range(1, len(trace.steps) + 1))
        assert (df["matched"] == True).sum() == len(trace.matched_rules)  # noqa: E712
        assert list(df["hook"].dropna()) == [s.hook for s in trace.steps if s.hook]
        short = viz.trace_table(trace, matched_only=True)
        assert not ((short["kind"] == "rule") & (short["matched"] != True)).any()  # noqa: E712
    dnat = viz.trace_table(service_trace)
    assert dnat[dnat["verdict"] == "DNAT"]["chain"].str.startswith("KUBE-SEP-").all()


def test_conntrack_table(viz, seed_rules, cluster):
    import kplab
    node = kplab.standard_node(seed_rules)
    node.send_from("client", "10.96.5.81", "tcp", 80)
    node.send_from("client", "10.244.2.5", "udp", 53)
    node.send_from("node", "10.244.2.5", "tcp", 80)
    df = viz.conntrack_table(node)
    assert list(df.columns[:12]) == BRIEF_CT
    assert len(df) == 3 == len(node.conntrack_text().splitlines())
    first = df.iloc[0]
    assert (first.orig_dst, first.orig_dport, first.reply_src, first.reply_sport) == ("10.96.5.81", 80,
                                                                                      "10.244.1.3", 8080)
    assert first["nat"] == "DNAT" and first["flags"] == "UNREPLIED" and first["state"] == "SYN_SENT"
    assert df.iloc[1].proto == "udp" and df.iloc[1].state == ""
    assert len(viz.conntrack_table(node.conntrack, now=0.0)) == 3
    net = cluster.network(seed=1)
    net.send("frontend-5c7d8b9f4-q7xkz", "default/backend:http")
    both = viz.conntrack_table(net)
    assert both.columns[0] == "node" and set(both["node"]) <= {"node-1", "node-2"} and len(both) >= 1
    with pytest.raises(TypeError):
        viz.conntrack_table("not a node")


def test_diff_table(viz, cluster, rendered10):
    from kplab.kube import proxier
    from tests.viz.conftest import render
    old = render(cluster, 1)
    d = proxier.diff(old, rendered10)
    df = viz.diff_table(d)
    assert list(df.columns[:4]) == ["table", "chain", "change", "rule"]
    n_rules = sum(map(len, d.rules_added.values())) + sum(map(len, d.rules_removed.values()))
    assert len(df) == n_rules + len(d.chains_added) + len(d.chains_removed)
    assert set(df["change"]) == {"added", "removed"}
    svc = df[df["chain"] == "KUBE-SVC-POOGYJBNEVT3HFAO"]
    assert (svc["change"] == "removed").sum() == 1 and (svc["change"] == "added").sum() == 10
    assert (df["what"] == "chain").sum() == 9
    back = viz.diff_table(proxier.diff(rendered10, old))
    assert set(back[back["what"] == "chain"]["change"]) == {"removed"}
    assert len(viz.diff_table(proxier.diff(old, old))) == 0
