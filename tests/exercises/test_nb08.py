"""Notebook 8's exercises: Service changes (merge patches or whole Services) loaded into the course's
clusters, and checks that send packets through them."""
from pathlib import Path

import pytest
import yaml

from kplab.errors import KplabError
from kplab.exercises import nb08
from kplab.kube.manifests import ManifestError

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedded_service_is_the_data_files():
    docs = list(yaml.safe_load_all((ROOT / "data" / "clusters" / "nodeport.yaml").read_text()))
    service = next(d for d in docs if d and d.get("kind") == "Service")
    assert yaml.safe_load(nb08.NODEPORT_SERVICE) == service


@pytest.mark.parametrize("target, patch, result", [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 5}}, {"a": 1, "b": {"c": 5, "d": 3}}),
    ({"a": 1, "b": 2}, {"b": None}, {"a": 1}),
    ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
    ({"a": 1}, {"b": {"c": None, "d": 4}}, {"a": 1, "b": {"d": 4}}),
    ({"a": 1}, 7, 7),
])
def test_merge_patch_is_rfc_7386(target, patch, result):
    assert nb08.merge_patch(target, patch) == result


def test_patched_applies_a_patch_or_replaces_the_service():
    c = nb08.patched(nb08.NODEPORT, "spec: {externalTrafficPolicy: Local}")
    assert c.service("web").external_traffic_policy == "Local"
    assert c.service("web").ports[0].node_port == 30080
    whole = nb08.NODEPORT_SERVICE.replace("nodePort: 30080", "nodePort: 30099")
    assert nb08.patched(nb08.NODEPORT, whole).service("web").ports[0].node_port == 30099
    on_top = nb08.patched(nb08.NODEPORT, {"spec": {"selector": {"tier": None}}}, base=nb08.WRONG_SELECTOR)
    assert on_top.service("web").selector == (("app", "web"),)


def test_patched_releases_the_health_check_port_as_the_api_server_does():
    c = nb08.patched(nb08.ETP_LOCAL, "spec: {externalTrafficPolicy: Cluster}")
    assert c.service("web").health_check_node_port is None
    assert nb08.patched(nb08.ETP_LOCAL, "metadata: {labels: {a: b}}").service("web").health_check_node_port == 32001
    with pytest.raises(ManifestError, match="healthCheckNodePort"):
        nb08.patched(nb08.ETP_LOCAL, "spec: {externalTrafficPolicy: Cluster, healthCheckNodePort: 32001}")


@pytest.mark.parametrize("change, words", [
    ("just words", "mapping"),
    ("[1, 2]", "mapping"),
    ("spec: [unclosed", "not YAML"),
    ("kind: Pod\nmetadata: {name: x}", "not a Service"),
    (42, "YAML text"),
])
def test_patched_refuses_what_is_not_a_service_change(change, words):
    with pytest.raises(nb08.ChangeError, match=words):
        nb08.patched(nb08.NODEPORT, change)


def test_patched_needs_one_service():
    with pytest.raises(KplabError, match="cannot read"):
        nb08.patched(ROOT / "data" / "clusters" / "nothing.yaml", "spec: {}")
    with pytest.raises(nb08.ChangeError, match="0 Services named other"):
        nb08.patched(nb08.NODEPORT, "spec: {}", service="other")


def test_listens_reads_the_pods_container_ports():
    good = nb08.patched(nb08.NODEPORT, "spec: {}")
    j = good.send("external", "192.168.0.2:30080")
    assert j.final.dport == 8080 and nb08.listens(good, j)
    bad = nb08.patched(nb08.NODEPORT, nb08.WRONG_TARGET_PORT)
    j = bad.send("external", "192.168.0.2:30080")
    assert j.final.dport == 80 and not nb08.listens(bad, j)
    assert not nb08.listens(bad, nb08.patched(nb08.NODEPORT, nb08.WRONG_SELECTOR).send("external",
                                                                                       "192.168.0.2:30080"))


def test_the_prediction_is_what_the_notebook_says():
    assert nb08.sees_client_ip("Cluster") is False
    assert nb08.sees_client_ip("Local") is True


@pytest.mark.parametrize("answer, parsed", [
    ("no, yes", (False, True)), ("No Yes", (False, True)), (["yes", "no"], (True, False)),
    ("true/false", (True, False)), ("yes", None), ("maybe, yes", None), (3, None), ("yes, no, yes", None),
])
def test_two_answers(answer, parsed):
    assert nb08._two_answers(answer) == parsed


@pytest.mark.parametrize("exercise, answer", [
    (nb08.keep_source_ip, nb08.NODEPORT_SERVICE.replace("  type: NodePort\n",
                                                        "  type: NodePort\n  externalTrafficPolicy: Local\n")),
    (nb08.keep_source_ip, {"spec": {"externalTrafficPolicy": "Local"}}),
    (nb08.fix_target_port, nb08.WRONG_TARGET_PORT.replace("targetPort: 80", "targetPort: 8080")),
    (nb08.fix_target_port, "spec:\n  ports:\n    - {name: http, port: 80, targetPort: http, nodePort: 30080}\n"),
    (nb08.fix_selector, "spec: {selector: {tier: null}}"),
])
def test_other_right_answers(exercise, answer):
    assert exercise.check(answer).correct is True
