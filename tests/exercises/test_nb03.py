"""Notebook 3's exercises: the checks written beyond the generic builders."""
from kplab.exercises import nb03


def test_first_match_answer_comes_from_the_simulator():
    assert nb03._first_match_verdict() == nb03.first_match.answer == "ACCEPT"
    assert nb03.first_match.check("accept").correct is True


def test_refuse_ssh_accepts_the_tcp_rst_alias_and_iptables_commands():
    assert nb03.refuse_ssh.check("-A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-rst").correct is True
    assert nb03.refuse_ssh.check("iptables -A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset").correct


def test_refuse_ssh_wants_a_tcp_reset_not_an_icmp_error():
    fb = nb03.refuse_ssh.check("-A INPUT -p tcp --dport 22 -j REJECT --reject-with icmp-host-prohibited")
    assert fb.correct is False and "tcp-reset" in str(fb)


def test_allow_list_takes_the_policy_command_too():
    answer = ("-P INPUT DROP\n-A INPUT -s 192.168.0.0/24 -p tcp --dport 22 -j ACCEPT\n"
              "-A INPUT -p tcp --dport 443 -j ACCEPT")
    assert nb03.allow_list.check(answer).correct is True


def test_allow_list_structure_needs_a_filter_input_chain_with_policy_drop():
    from kplab import parse_rules
    assert "policy" in nb03._policy_drop(parse_rules("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"), "")
    assert nb03._policy_drop(parse_rules(nb03.ALLOW_LIST_ANSWER), "") is None


def test_rule_order_accepts_moving_the_broad_accept_down():
    moved = nb03.ORDER_BROKEN.replace("-A FORWARD -d 10.244.1.0/24 -j ACCEPT\n", "").replace(
        "-A FORWARD -s 10.244.1.0/24 -j ACCEPT\n",
        "-A FORWARD -s 10.244.1.0/24 -j ACCEPT\n-A FORWARD -d 10.244.1.0/24 -j ACCEPT\n")
    assert nb03.rule_order.check(moved).correct is True
