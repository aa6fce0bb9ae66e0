"""service_chain_name: kube-proxy's KUBE-SVC- chain name, a pure function of the service port."""
import doctest
import json
from pathlib import Path

import pytest

from kplab.kube import proxier
from kplab.kube.cluster import Cluster
from kplab.kube.proxier import port_proto_hash, render, service_chain_name

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests/data/conformance/kube-proxy/hash_and_probability_vectors.json").read_text())
SERVICE_VECTORS = [v for v in VECTORS["chain_name_hashes"] if v["kind"] == "service"]


@pytest.mark.parametrize("v", SERVICE_VECTORS, ids=[v["hash_input"] for v in SERVICE_VECTORS])
def test_names_asserted_by_kube_proxy_tests(v):
    assert service_chain_name(v["service_port_name"], v["protocol"]) == v["chain"]


def test_the_seed_cluster_chain_is_the_rendered_one():
    cluster = Cluster.load(str(ROOT / "data/clusters/seed.yaml"))
    rendered = render(cluster.services(), cluster.slices(), cluster.proxy_config("node-1"))
    name = service_chain_name("default/backend:http", "tcp")
    assert name == "KUBE-SVC-POOGYJBNEVT3HFAO"
    assert name in rendered.service_chains("default/backend:http")
    assert name in rendered.ruleset.tables["nat"].chains


def test_shares_the_hash_and_depends_on_every_part():
    name = service_chain_name("default/backend:http", "tcp")
    assert name == "KUBE-SVC-" + port_proto_hash("default/backend:http", "tcp")
    assert name == service_chain_name("default/backend:http", "tcp")          # deterministic
    others = {service_chain_name("default/backend:http", "udp"), service_chain_name("shop/backend:http", "tcp"),
              service_chain_name("default/backend:web", "tcp"), service_chain_name("default/backend", "tcp")}
    assert name not in others and len(others) == 4
    assert len(name) <= 28                                                      # iptables' chain name limit


def test_doctest():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(proxier.service_chain_name, "service_chain_name", globs={}):
        test.globs["service_chain_name"] = service_chain_name
        runner.run(test)
    assert runner.failures == 0 and runner.tries == 1
