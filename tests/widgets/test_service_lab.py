"""ServiceLab, driven through its controls and its methods, read through its text twins."""
import re

import pytest


@pytest.fixture
def lab(kw, seed_cluster):
    return kw.ServiceLab(seed_cluster.scale("backend", 3))


def sep_chains(text):
    return set(re.findall(r"KUBE-SEP-[A-Z0-9]{16}", text))


def backend_pods(lab):
    return [p for p in lab.cluster.pods("backend")]


def test_starts_with_three_endpoints(lab):
    out = lab.outputs
    assert out["endpoints"].count("chance 0.3333") == 3
    assert len(sep_chains(out["chain_tree"])) == 3
    assert "no change yet" in out["diff"]
    assert lab.replicas.value == 3 and len(lab.pod_rows.children) == 3


def test_slider_3_to_4_adds_one_sep_chain_and_quarter_odds(lab):
    lab.replicas.value = 4                       # the control, as a user would: the observer does the rest
    d = lab.last_diff
    added = [c for t, c in d.chains_added if c.startswith("KUBE-SEP-")]
    assert len(added) == 1 and not d.chains_removed
    diff = lab.outputs["diff"]
    assert diff.startswith("replicas 3 -> 4: 1 chain(s) added (1 KUBE-SEP)")
    assert diff.count("\n+ chain nat KUBE-SEP-") == 1
    assert "--probability 0.25000000000" in diff          # the KUBE-SVC chain's first rule now says 1/4
    assert lab.outputs["endpoints"].count("chance 0.25") == 4
    assert re.search(r"0\.25|1/4|25(\.0)?%", lab.outputs["probabilities"])
    assert len(sep_chains(lab.outputs["chain_tree"])) == 4
    assert len(lab.pod_rows.children) == 4


def test_set_replicas_method_matches_the_slider(lab):
    assert lab.set_replicas(4)
    assert lab.replicas.value == 4
    assert lab.outputs["endpoints"].count("chance 0.25") == 4
    assert lab.set_replicas(2)
    assert lab.outputs["diff"].startswith("replicas 4 -> 2: 0 chain(s) added (0 KUBE-SEP), 2 removed (2 KUBE-SEP)")
    assert lab.outputs["endpoints"].count("chance 0.5") == 2


def test_not_ready_pod_leaves_the_chain_tree(lab):
    pod = backend_pods(lab)[1]
    before = lab.outputs["chain_tree"]
    row = next(line for line in lab.outputs["endpoints"].splitlines() if pod.name in line)
    (chain,) = sep_chains(row)
    assert chain in before and pod.ip in before
    toggle = lab._pod_controls[pod.name][0]
    toggle.value = "not ready"                   # the Pod's toggle buttons
    after = lab.outputs["chain_tree"]
    assert chain not in after and pod.ip not in after
    assert len(sep_chains(after)) == 2
    assert re.search(rf"{pod.name}\s.*not ready\s+chance 0 ", lab.outputs["endpoints"])
    assert lab.outputs["diff"].startswith(f"Pod {pod.name}: ready -> not ready")
    assert lab.outputs["endpoints"].count("chance 0.5 ") == 2
    # and back
    assert lab.set_pod_state(pod.name, "ready")
    assert chain in lab.outputs["chain_tree"] and toggle.value == "ready"


def test_terminating_pod_gets_no_new_connections(lab):
    pod = backend_pods(lab)[0]
    assert lab.set_pod_state(pod.name, "terminating")
    assert lab._pod_controls[pod.name][0].value == "terminating"
    assert pod.ip not in lab.outputs["chain_tree"]
    lab.send(30)
    assert pod.ip not in lab.outputs["landing"]


def test_send_counts_per_endpoint_and_is_seeded(kw, seed_cluster, lab):
    assert lab.send(40)
    landing = lab.outputs["landing"]
    counts = [int(m) for m in re.findall(r"^\s+\S+:8080\s+\S+\s+(\d+)", landing, re.M)]
    assert sum(counts) == 40 and len(counts) == 3
    other = kw.ServiceLab(seed_cluster.scale("backend", 3))
    other.send(40)
    assert other.outputs["landing"] == landing
    assert len(lab.connections) == 5 and "still" not in lab.outputs["connections"]


def test_send_button_uses_the_n_box(lab):
    lab.count.value = 7
    lab.send_button.click()
    assert lab.outputs["landing"].startswith("7 new connections")


def test_open_connections_stay_on_their_endpoint_after_scale_up(lab):
    lab.send(10)
    opened = [(c.sport, c.endpoint) for c in lab.connections]
    lab.set_replicas(5)
    text = lab.outputs["connections"]
    for sport, endpoint in opened:
        assert re.search(rf"sport {sport} -> {re.escape(endpoint)} .*OPEN: still reaches {re.escape(endpoint)}", text)
    assert "BROKEN" not in text


def test_connection_to_a_deleted_pod_is_broken(lab):
    lab.send(20)
    victim = lab.connections[-1]
    assert lab.delete_pod(victim.pod)
    text = lab.outputs["connections"]
    line = next(line for line in text.splitlines() if f"sport {victim.sport} " in line)
    assert "✗" in line and "BROKEN" in line
    assert f"still points at {victim.endpoint}" in line and victim.pod in line and "no longer exists" in line
    for c in lab.connections:
        if c.pod != victim.pod:
            assert c.status == "open", c


def test_scale_down_breaks_connections_of_removed_pods(lab):
    lab.send(30)
    lab.set_replicas(1)
    alive = {p.name for p in lab.cluster.pods("backend")}
    for c in lab.connections:
        assert (c.status == "broken") == (c.pod not in alive), c
    assert "no longer exists" in lab.outputs["connections"] or all(c.pod in alive for c in lab.connections)


def test_not_ready_pod_keeps_its_open_connection(lab):
    lab.send(20)
    conn = lab.connections[-1]
    lab.set_pod_state(conn.pod, "not ready")
    assert conn.status == "draining" and "is not ready" in conn.note and "conntrack keeps" in conn.note


def test_zero_replicas_rejects_new_connections(lab):
    assert lab.set_replicas(0)
    assert "REJECT" in lab.outputs["chain_tree"] and not sep_chains(lab.outputs["chain_tree"])
    lab.send(3)
    assert "REJECT" in lab.outputs["landing"]


@pytest.mark.parametrize("call, field", [
    (lambda lab: lab.set_replicas("many"), "replicas"),
    (lambda lab: lab.set_replicas(-1), "replicas"),
    (lambda lab: lab.set_replicas(2.5), "replicas"),
    (lambda lab: lab.set_replicas(None), "replicas"),
    (lambda lab: lab.set_replicas(10_000), "replicas"),
    (lambda lab: lab.set_pod_state("no-such-pod", "ready"), "pods"),
    (lambda lab: lab.set_pod_state(None, "ready"), "pods"),
    (lambda lab: lab.set_pod_state(lab.cluster.pods("backend")[0].name, "sleepy"), "pods"),
    (lambda lab: lab.set_pod_state(lab.cluster.pods("backend")[0].name, 3), "pods"),
    (lambda lab: lab.delete_pod("ghost"), "pods"),
    (lambda lab: lab.send(0), "count"),
    (lambda lab: lab.send(-3), "count"),
    (lambda lab: lab.send("abc"), "count"),
    (lambda lab: lab.send(10 ** 6), "count"),
])
def test_invalid_input_is_shown_and_changes_nothing(lab, call, field):
    lab.send(5)
    before = dict(lab.outputs)
    assert call(lab) is False
    assert lab.messages[field]
    assert lab.outputs == before
    assert "✗" in {"replicas": lab.replicas_field, "pods": lab.pods_msg, "count": lab.count_field}[field].msg.value


def test_invalid_n_box_then_button(lab):
    lab.count.value = -5
    lab.send_button.click()
    assert "from 1 to" in lab.messages["count"]
    assert lab.outputs["landing"] == "no connections sent yet"
    lab.count.value = 3
    lab.send_button.click()
    assert lab.messages["count"] == "" and lab.outputs["landing"].startswith("3 new connections")


def test_service_without_deployment_cannot_scale(kw, seed_cluster):
    from kplab.kube.objects import Service, ServicePort
    c = seed_cluster.add_service(Service("default", "orphan", (ServicePort(80, "TCP", "http", 8080),),
                                         selector=(("app", "nothing"),)))
    lab = kw.ServiceLab(c, "orphan")
    assert lab.replicas.disabled
    assert lab.set_replicas(2) is False and "no Deployment" in lab.messages["replicas"]


def test_text_twin_and_static_fallback(lab):
    lab.send(5)
    bundle = lab._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == lab.text()
    assert "ServiceLab: Service default/backend" in bundle["text/plain"]
    assert "kplab-text-twin" in bundle["text/html"] and "--- chain tree" in bundle["text/html"]
    for name in ("endpoints", "diff", "chain tree", "probabilities", "landing", "connections"):
        assert f"--- {name}" in lab.text()
