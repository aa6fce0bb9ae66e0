"""`kplab synth` (DESIGN section 4): a YAML List that `kplab render` and `kplab explain` accept."""
import io
import json

import pytest
import yaml

from kplab.cli import main


def run(*argv):
    out = io.StringIO()
    rc = main(list(argv), out=out)
    return rc, out.getvalue()


def test_synth_render_explain_pipeline(tmp_path):
    rc, text = run("synth", "--services", "6", "--endpoints", "3")
    assert rc == 0
    doc = yaml.safe_load(text)
    assert doc["kind"] == "List"
    assert sum(1 for i in doc["items"] if i["kind"] == "Service") == 6
    cluster = tmp_path / "synth.yaml"
    cluster.write_text(text)
    rc, rules = run("render", "--cluster", str(cluster), "--node", "node-1")
    assert rc == 0 and rules.startswith("*filter")
    dump = tmp_path / "node-1.rules"
    dump.write_text(rules)
    rc, out = run("explain", "--rules", str(dump), "--json")
    services = json.loads(out)["services"]
    assert len(services) == 6
    assert all(len(s["endpoints"]) == 3 and s["no_endpoints"] is None for s in services)
    assert {s["name"] for s in services} == {f"default/svc-{i:05d}:http" for i in range(6)}


def test_options_nodes_seed_mixed(tmp_path):
    rc, a = run("synth", "--services", "20", "--endpoints", "2", "--nodes", "4", "--seed", "7", "--mixed")
    assert rc == 0
    rc, b = run("synth", "--services", "20", "--endpoints", "2", "--nodes", "4", "--seed", "7", "--mixed")
    assert a == b
    rc, c = run("synth", "--services", "20", "--endpoints", "2", "--nodes", "4", "--seed", "8", "--mixed")
    assert c != a
    items = yaml.safe_load(a)["items"]
    assert sum(1 for i in items if i["kind"] == "Node") == 4
    assert {i["spec"]["type"] for i in items if i["kind"] == "Service"} == {"ClusterIP", "NodePort", "LoadBalancer"}
    f = tmp_path / "mixed.yaml"
    f.write_text(a)
    rc, _ = run("render", "--cluster", str(f), "--node", "node-3")
    assert rc == 0


def test_zero_services_is_an_empty_list():
    rc, text = run("synth", "--services", "0", "--endpoints", "5")
    assert rc == 0
    assert [i["kind"] for i in yaml.safe_load(text)["items"]] == ["Node", "Node"]


@pytest.mark.parametrize("argv, message", [
    (["synth", "--services", "-1", "--endpoints", "5"], "--services -1: must be 0 or more"),
    (["synth", "--services", "5", "--endpoints", "-3"], "--endpoints -3: must be 0 or more"),
    (["synth", "--services", "5", "--endpoints", "2", "--nodes", "0"], "--nodes 0: must be 1 or more"),
    (["synth", "--services", "999999999", "--endpoints", "2"], "at most 100000"),
    (["synth", "--services", "ten", "--endpoints", "2"], "'ten' is not a whole number"),
    (["synth", "--services", "5"], "required: --endpoints"),
    (["synth", "--endpoints", "5"], "required: --services"),
    (["synth", "--services", "5", "--endpoints", "2", "--seed", "x"], "'x' is not a whole number"),
    (["synth", "--services", "5", "--endpoints", "2", "--colour"], "unrecognized arguments"),
])
def test_bad_arguments_are_one_line_exit_2(argv, message, capsys):
    rc, out = run(*argv)
    err = capsys.readouterr().err
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kplab: error: ")
    assert message in err and "Traceback" not in err
