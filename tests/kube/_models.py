"""Convert the conformance data's "model" (tests/data/conformance/kube-proxy,
see its README, "Model format") into kplab.kube.objects and a ProxyConfig.

The model mirrors what kube-proxy's NewFakeProxier and the unit tests set:

* `proxier.pod_cidr` is the local-traffic detector's CIDR (`null`: the no-op
  detector) -> `ProxyConfig.cluster_cidr` with detect_local_mode ClusterCIDR;
* `proxier.node_ip` and the addresses of the fake `eth0` interface ->
  `ProxyConfig.node_ips` (primary first; loopback is implicit in kplab);
* `masquerade_mark` "0x4000" -> `masquerade_bit` 14. (The fake hard-codes the
  text "0x4000"; real kube-proxy writes `ProxyConfig.masquerade_mark`,
  "0x00004000": the tests substitute, see test_proxier_conformance.py);
* `nfacct_counters` (two flags) -> `ProxyConfig.nfacct` (one flag: both
  counters exist or neither; the data never has them differ).
"""
from __future__ import annotations

from kplab.errors import KplabError
from kplab.kube.objects import (Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
                                LoadBalancerIngress, ProxyConfig, Service, ServicePort)

FAKE_MARK = "0x4000"


def proxy_config(p: dict) -> ProxyConfig:
    fam = {"IPv4": 4, "IPv6": 6, 4: 4, 6: 6}[p.get("ip_family", "IPv4")]
    mark = int(p.get("masquerade_mark", FAKE_MARK), 16)
    if mark & (mark - 1):
        raise KplabError(f"masquerade_mark {p.get('masquerade_mark')!r} is not a single bit")
    counters = p.get("nfacct_counters", {}) or {}
    flags = set(bool(v) for v in counters.values()) or {True}
    if len(flags) != 1:
        raise KplabError(f"nfacct_counters {counters!r}: ProxyConfig has one flag for both counters")
    node_ips = []
    if p.get("node_ip"):
        node_ips.append(p["node_ip"])
    for itf in p.get("interfaces", ()) or ():
        if itf.get("name") == "lo":
            continue
        for a in itf.get("addrs", ()):
            ip = a.split("/")[0]
            if ip not in node_ips:
                node_ips.append(ip)
    npa = p.get("nodeport_addresses")
    return ProxyConfig(
        node_name=p.get("node_name", "test-node"),
        node_ips=tuple(node_ips),
        cluster_cidr=p.get("pod_cidr"),
        masquerade_all=bool(p.get("masquerade_all", False)),
        masquerade_bit=mark.bit_length() - 1,
        localhost_nodeports=bool(p.get("localhost_nodeports", True)),
        nodeport_addresses=None if npa is None else tuple(npa),
        detect_local_mode="ClusterCIDR",
        tcp_be_liberal=bool(p.get("conntrack_tcp_liberal", False)),
        random_fully=bool(p.get("has_random_fully", False)),
        nfacct=flags.pop(),
        ip_family=fam,
    )


def service(s: dict) -> Service:
    return Service(
        namespace=s["namespace"],
        name=s["name"],
        ports=tuple(ServicePort(port=int(pt["port"]), protocol=pt.get("protocol") or "TCP",
                                name=pt.get("name") or "", target_port=pt.get("target_port"),
                                node_port=pt.get("node_port") or None)
                    for pt in s.get("ports", ())),
        type=s.get("type"),
        cluster_ip=s.get("cluster_ip"),
        external_ips=tuple(s.get("external_ips") or ()),
        lb_ingress=tuple(LoadBalancerIngress(ip=i["ip"], ip_mode=i.get("ip_mode"))
                         for i in s.get("lb_ingress") or ()),
        lb_source_ranges=tuple(s.get("lb_source_ranges") or ()),
        external_traffic_policy=s.get("external_traffic_policy"),
        internal_traffic_policy=s.get("internal_traffic_policy"),
        health_check_node_port=s.get("health_check_node_port") or None,
        session_affinity=s.get("session_affinity"),
        session_affinity_timeout=s.get("session_affinity_timeout"),
    )


def endpoint_slice(e: dict) -> EndpointSlice:
    return EndpointSlice(
        namespace=e["namespace"],
        name=e["name"],
        service=e["service"],
        endpoints=tuple(Endpoint(addresses=tuple(ep.get("addresses") or ()),
                                 conditions=EndpointConditions(**{k: (ep.get("conditions") or {}).get(k)
                                                                  for k in ("ready", "serving", "terminating")}),
                                 node_name=ep.get("node_name"))
                        for ep in e.get("endpoints", ())),
        ports=tuple(EndpointPort(port=int(pt["port"]), name=pt.get("name") or "",
                                 protocol=pt.get("protocol") or "TCP")
                    for pt in e.get("ports", ())),
        address_type=e.get("address_type", "IPv4"),
    )


def from_model(model: dict) -> tuple:
    """(services, endpoint slices, ProxyConfig) of a conformance model."""
    return (tuple(service(s) for s in model.get("services", ())),
            tuple(endpoint_slice(e) for e in model.get("endpoint_slices", ())),
            proxy_config(model["proxier"]))
