"""Notebook 9's exercises: the numbers their texts quote are the simulator's."""
from kplab.exercises import nb09
from kplab.kube.scale import evaluated_to, service_targets


def test_quoted_numbers_match_the_simulator():
    assert nb09.fixed_rules() == 18
    assert nb09.evaluated(100) == 118 and nb09.evaluated(200) == 218
    assert nb09.double_services.answer == str(nb09.evaluated(200))
    assert int(nb09.ten_thousand.answer) + nb09.fixed_rules() == nb09.LIMIT + 1


def test_the_colleagues_table_is_what_kplab_measures():
    for n in (10, 20, 50):
        rules = nb09.colleague_rules(n)
        first = service_targets(rules)[0]
        assert f"{n:>6}  {first.ip}:{first.port}    {evaluated_to(rules, 'first').evaluated}" in nb09.COLLEAGUE
    targets = service_targets(nb09.colleague_rules())
    assert (targets[0].ip, targets[-1].ip) == (nb09._FIRST_50, nb09._LAST_50)
    assert targets[25].ip == nb09._MIDDLE_50
    assert nb09.first_not_last.starter == nb09.COLLEAGUE


def test_destination_accepts_a_bare_ip_or_a_whole_call():
    ex = nb09.first_not_last
    assert ex.check(nb09._LAST_50).correct
    assert ex.check(f'kplab.trace(rules, "client", "{nb09._LAST_50}", "tcp", 80)').correct
    fb = ex.check(f"{nb09._MIDDLE_50}")
    assert fb.correct is False and "rule 26" in str(fb)


def test_explanations_quote_the_simulator():
    ex = nb09.first_not_last
    assert f"{nb09.evaluated(50)} rules with 50 Services" in ex.explanation
    assert f"{nb09.evaluated(50, 'first')} in all" in ex.explanation
    assert f"+ {nb09.fixed_rules()} = {nb09.evaluated(100)}" in nb09.double_services.explanation
    assert f"plus {nb09.fixed_rules()} fixed rules" in nb09.ten_thousand.explanation
