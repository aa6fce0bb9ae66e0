"""Exercises for notebook 8: Services from outside (NodePort, LoadBalancer, traffic policies).

The answers here are Kubernetes objects, not rules: a change to a Service
(a merge patch, as `kubectl patch --type merge` takes, or a whole Service in
YAML). `patched(path, change)` loads a cluster of data/clusters/ with its
Service changed that way, and the checks send packets through the cluster it
gives (kplab.kube: kube-proxy's rules on every node, joined by a wire):
from the outside host 198.51.100.10 to each node's NodePort, and from a Pod
to the cluster IP.

kplab takes a Pod's declared container ports as the ports it listens on: a
packet delivered to a Pod on another port gets no answer but a TCP reset
(connection refused).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import KplabError
from ._core import Feedback, Exercise, right, wrong

#: The course's cluster files.
CLUSTERS = Path(__file__).resolve().parents[2] / "data" / "clusters"
NODEPORT = CLUSTERS / "nodeport.yaml"
ETP_LOCAL = CLUSTERS / "etp-local.yaml"

CLIENT_IP = "198.51.100.10"                 # the outside host "external" (kplab.kube.flow.EXTERNALS)
FRONTEND = "frontend-5c7d8b9f4-q7xkz"       # the front-end Pod on node-1


class ChangeError(KplabError, ValueError):
    """A Service change that cannot be applied (not YAML, not a mapping, another kind of object)."""


# -- loading a cluster with a changed Service -------------------------------------------------------

def merge_patch(target, patch):
    """`patch` applied to `target` as a JSON merge patch (RFC 7386, what `kubectl patch --type merge`
    does): mappings merge key by key, `null` deletes a key, anything else replaces the value."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _parse_change(change):
    if isinstance(change, dict):
        return change
    if not isinstance(change, str):
        raise ChangeError(f"a Service change is YAML text, not {type(change).__name__}")
    import yaml
    try:
        value = yaml.safe_load(change)
    except yaml.YAMLError as e:
        raise ChangeError(f"your change is not YAML: {' '.join(str(e).split())}") from None
    if not isinstance(value, dict):
        raise ChangeError("your change must be a YAML mapping: a whole Service (kind: Service) or a patch "
                          "such as \"spec: {externalTrafficPolicy: Local}\"")
    return value


def patched(path, change, service: str | None = None, *, base=None):
    """The cluster of the YAML file `path` with its Service (or the Service named `service`) changed.

    `change` is YAML text or a dict: a whole Service (with `kind: Service`) replaces it; anything
    else is a merge patch onto it (`spec: {externalTrafficPolicy: Local}`), or onto `base` (a whole
    Service, YAML text or dict) when given. As the API server does,
    a `healthCheckNodePort` the new Service no longer needs (not a LoadBalancer with
    externalTrafficPolicy Local) is released, unless the change sets one.
    """
    import yaml

    from ..kube.cluster import Cluster
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ChangeError(f"cannot read {path}: {e.strerror}") from None
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    spots = [i for i, d in enumerate(docs) if isinstance(d, dict) and d.get("kind") == "Service"
             and (service is None or (d.get("metadata") or {}).get("name") == service)]
    if len(spots) != 1:
        raise ChangeError(f"{path.name} has {len(spots)} Services{' named ' + service if service else ''}: "
                          "say which one with service=...")
    value = _parse_change(change)
    old = _parse_change(base) if base is not None else docs[spots[0]]
    if "kind" in value:
        if value.get("kind") != "Service":
            raise ChangeError(f"your change is a {value.get('kind')!r}, not a Service")
        new = value
    else:
        new = merge_patch(old, value)
    spec = new.get("spec") if isinstance(new.get("spec"), dict) else None
    sets_hc = isinstance(value.get("spec"), dict) and "healthCheckNodePort" in value["spec"]
    if spec is not None and "healthCheckNodePort" in spec and not sets_hc and not (
            spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"):
        spec = dict(spec)
        del spec["healthCheckNodePort"]
        new = dict(new, spec=spec)
    docs[spots[0]] = new
    return Cluster.from_yaml(yaml.safe_dump_all(docs, sort_keys=False), source=f"{path.name} with your change")


# -- sending through the cluster ---------------------------------------------------------------------

def _the_service(cluster):
    services = cluster.services()
    if len(services) != 1:
        raise ChangeError(f"the cluster has {len(services)} Services; expected one")
    return services[0]


def listens(cluster, journey) -> bool:
    """Does the Pod the packet was delivered to listen on the port it arrived at? (Its declared
    container ports; a Pod that declares none is taken to listen.)"""
    if journey.final is None or journey.delivered_to is None:
        return False
    try:
        pod = cluster.pod(journey.delivered_to)
    except KplabError:
        return True                                  # a node or an outside host: not a Pod's port
    if not pod.ports:
        return True
    proto = journey.final.proto.upper()
    return any(p.port == journey.final.dport and p.protocol == proto for p in pod.ports)


def _line(label, journey) -> str:
    if journey.delivered_to and journey.final is not None:
        f = journey.final
        return f"{label}: delivered to {journey.delivered_to} at port {f.dport}, from {f.src}"
    return f"{label}: {journey.verdict}"


def _probe_outside(cluster, svc):
    """[(label, journey)] from the outside host to each node's NodePort."""
    port = svc.ports[0]
    if not port.node_port:
        return None
    out = []
    for node in cluster.nodes():
        to = f"{node.ip}:{port.node_port}"
        out.append((f"outside -> {node.name} {to}", cluster.send("external", to, port.protocol.lower())))
    return out


def _probe_inside(cluster, svc):
    port = svc.ports[0]
    to = f"{svc.cluster_ip}:{port.port}"
    return f"{FRONTEND} -> {to}", cluster.send(FRONTEND, to, port.protocol.lower())


def _load(answer, path, base=None):
    try:
        cluster = patched(path, answer, base=base)
        return cluster, _the_service(cluster), None
    except KplabError as e:
        return None, None, wrong(f"kplab (like Kubernetes) refuses this Service: {e}")


# -- 8.1: predict ----------------------------------------------------------------------------------

def sees_client_ip(policy: str) -> bool:
    """With this externalTrafficPolicy on the web Service of etp-local.yaml (one Pod, on node-2), does
    the Pod see the outside client's address when the client connects to node-2's NodePort?"""
    cluster = patched(ETP_LOCAL, {"spec": {"externalTrafficPolicy": policy}})
    j = cluster.send("external", f"{cluster.node('node-2').ip}:{_the_service(cluster).ports[0].node_port}")
    return j.final is not None and j.delivered_to is not None and j.final.src == CLIENT_IP


_YES = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}


def _two_answers(answer):
    if isinstance(answer, str):
        words = [w for w in re.split(r"[\s,;/]+", answer.strip().lower()) if w]
    elif isinstance(answer, (list, tuple)):
        words = [str(w).strip().lower() for w in answer]
    else:
        return None
    if len(words) != 2 or any(w not in _YES for w in words):
        return None
    return tuple(_YES[w] for w in words)


def _check_source_ip(answer) -> Feedback:
    got = _two_answers(answer)
    if got is None:
        return wrong("Answer with two words, yes or no, for Cluster then Local: e.g. \"yes, yes\".")
    want = (sees_client_ip("Cluster"), sees_client_ip("Local"))
    if got == want:
        return right("With Cluster the Pod sees a node's address even though it runs on the node the client "
                     "called; with Local it sees the client.")
    msgs = []
    if got[0] != want[0]:
        msgs.append("Cluster: " + (
            "KUBE-EXT-… jumps to KUBE-MARK-MASQ for every packet from outside before it picks an endpoint, so "
            "it is masqueraded even when the chosen Pod runs on the node the packet arrived at."
            if not want[0] else "under Cluster the client's address is kept here: look at the journey again."))
    if got[1] != want[1]:
        msgs.append("Local: " + (
            "KUBE-EXT-… sends outside traffic straight to KUBE-SVL-… (this node's endpoints only) without "
            "marking it: nothing masquerades it, so the Pod sees the client's address."
            if want[1] else "under Local the packet is masqueraded here: look at the journey again."))
    return wrong(" ".join(msgs))


client_ip = Exercise(
    id="8.1", kind="predict", title="Does the Pod see its client?",
    prompt="In etp-local.yaml the web Service has one Pod, on node-2. The outside client 198.51.100.10 connects "
           "to node-2's NodePort, 192.168.0.3:30081, so the packet arrives at the node that runs the Pod. Does the "
           "Pod see the source address 198.51.100.10 (a) with externalTrafficPolicy: Cluster, (b) with "
           "externalTrafficPolicy: Local? Answer with two words, yes or no, in that order: e.g. \"yes, yes\".",
    checker=_check_source_ip,
    hints=("Section 2: which chain decides to masquerade traffic from outside, and does it look at where the "
           "chosen Pod runs?",
           "Under Cluster the first rule of KUBE-EXT-… has no condition at all. Under Local, where does "
           "KUBE-EXT-… send a packet from outside?"),
    answer="no, yes",
    explanation="Under Cluster, KUBE-EXT-…'s first rule marks every outside packet for masquerade before an "
                "endpoint is chosen (it could be on another node), so even a local Pod sees a node address. Under "
                "Local, outside packets go to KUBE-SVL-… (local endpoints only) unmarked: the reply leaves "
                "through the same node anyway, so no masquerade is needed and the Pod sees 198.51.100.10.",
    wrong_answers=(("yes, yes", "every packet from outside"), ("no, no", "KUBE-SVL"), ("yes", "two words"),
                   ("yes, no", "Cluster:")),
)


# -- 8.2: write ------------------------------------------------------------------------------------

#: The web Service of data/clusters/nodeport.yaml (a test keeps them equal).
NODEPORT_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  type: NodePort
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: http
      nodePort: 30080
"""


def _check_keeps_source(answer) -> Feedback:
    if not isinstance(answer, (str, dict)):
        return wrong(f"Answer with YAML text (a patch or the whole Service), not {type(answer).__name__}.")
    cluster, svc, problem = _load(answer, NODEPORT)
    if problem is not None:
        return problem
    outside = _probe_outside(cluster, svc)
    if outside is None:
        return wrong("Your Service has no NodePort any more, so nobody outside can reach it: keep type NodePort.")
    inside = _probe_inside(cluster, svc)
    details = [_line(label, j) for label, j in outside + [inside]]
    for label, j in outside:
        if j.delivered_to is None:
            return wrong(f"{label}: {j.verdict}. Keep both nodes serving: each runs one web Pod.", details)
        if j.final.src != CLIENT_IP:
            if svc.external_traffic_policy != "Local" and svc.internal_traffic_policy == "Local":
                why = ("internalTrafficPolicy only governs traffic to the cluster IP from inside the cluster; "
                       "traffic from outside to a NodePort follows externalTrafficPolicy.")
            elif svc.external_traffic_policy != "Local" and svc.session_affinity == "ClientIP":
                why = ("Session affinity keeps a client on one Pod; it does not keep the client's address, which "
                       "is still masqueraded.")
            else:
                why = (f"The Pod sees {j.final.src}, not {CLIENT_IP}: with externalTrafficPolicy Cluster (the "
                       "default) KUBE-EXT-… marks every packet from outside for masquerade.")
            return wrong(f"{label}: {why}", details)
    if inside[1].delivered_to is None:
        return wrong(f"{inside[0]}: {inside[1].verdict}. Pods inside the cluster must still reach the Service.",
                     details)
    return right("Both nodes deliver to their own web Pod, and the Pod sees the client's address.", details)


keep_source_ip = Exercise(
    id="8.2", kind="write", title="Let the Pods see their clients",
    prompt="The web Service of nodeport.yaml (`print(ex.keep_source_ip.starter)`) has one Pod on each node. Its "
           "Pods log the address of every client, and the logs show only node addresses. Write a change to the "
           "Service, in YAML (a patch such as `spec: {...}`, or the whole Service), so that the Pods see the "
           "outside client's own address on whichever node's NodePort the client calls.",
    checker=_check_keeps_source,
    hints=("Section 3: which setting of a Service decides whether traffic from outside is masqueraded?",
           "It is a field of `spec`, with two possible values, Cluster (the default) and Local.",
           "Two lines of YAML: `spec:` and, indented, the field set to Local."),
    answer="spec:\n  externalTrafficPolicy: Local\n",
    starter=NODEPORT_SERVICE,
    explanation="With externalTrafficPolicy: Local, kube-proxy sends outside traffic only to Pods on the node it "
                "arrived at and does not masquerade it, so the Pod sees 198.51.100.10. Here every node runs a web "
                "Pod, so both NodePorts still serve; a node without a local Pod would drop the traffic.",
    wrong_answers=(("spec:\n  externalTrafficPolicy: Cluster\n", "masquerade"),
                   ("spec:\n  internalTrafficPolicy: Local\n", "internalTrafficPolicy"),
                   ("spec:\n  sessionAffinity: ClientIP\n", "affinity"),
                   ("spec:\n  externalTrafficPolicy: local\n", "not one of Cluster, Local"),
                   ("spec:\n  type: ClusterIP\n", "nodePort")),
)


# -- 8.3 and 8.4: debug ----------------------------------------------------------------------------

def serves(broken: str):
    """A check: the answer (a whole Service, or a patch onto the `broken` one) makes the web Service
    reach, from outside (both NodePorts) and inside (the cluster IP), a web Pod that listens on the
    port the packet arrives at."""
    return lambda answer: _check_serves(answer, broken)


def _check_serves(answer, broken) -> Feedback:
    if not isinstance(answer, (str, dict)):
        return wrong(f"Answer with the fixed Service in YAML, not {type(answer).__name__}.")
    cluster, svc, problem = _load(answer, NODEPORT, base=broken)
    if problem is not None:
        return problem
    outside = _probe_outside(cluster, svc)
    if outside is None:
        return wrong("The Service has no NodePort any more: the users outside call port 30080 of the nodes, so "
                     "keep type NodePort.")
    probes = outside + [_probe_inside(cluster, svc)]
    details = [_line(label, j) for label, j in probes]
    for label, j in probes:
        if j.verdict == "REJECT":
            return wrong(f"{label}: REJECT (icmp-port-unreachable: \"connection refused\" from the node itself). "
                         "kube-proxy rejects connections to a Service that has no endpoints: which Pods does the "
                         "selector select?", details)
        if j.delivered_to is None:
            return wrong(f"{label}: {j.verdict}.", details)
        pod = cluster.pod(j.delivered_to)
        if pod.owner != "web":
            return wrong(f"{label}: the packet reaches Pod {pod.name}, which is not a web Pod: select the web "
                         f"Pods' labels.", details)
        if not listens(cluster, j):
            have = ", ".join(f"{p.port} ({p.name})" if p.name else str(p.port) for p in pod.ports)
            return wrong(f"{label}: the packet reaches Pod {pod.name} at port {j.final.dport}, but its container "
                         f"listens on {have}: nothing listens there, so the Pod answers with a TCP reset "
                         "(connection refused). Which field of the Service sets the port on the Pod?", details)
    return right("Every test connection reaches a web Pod on the port its container listens on.", details)


WRONG_TARGET_PORT = NODEPORT_SERVICE.replace("targetPort: http", "targetPort: 80")
WRONG_SELECTOR = NODEPORT_SERVICE.replace("    app: web\n", "    app: web\n    tier: frontend\n")

fix_target_port = Exercise(
    id="8.3", kind="debug", title="Connection refused on the NodePort",
    prompt="Someone rewrote the web Service (`print(ex.fix_target_port.starter)`). Now users outside get "
           "\"connection refused\" from 192.168.0.2:30080, and Pods calling the Service fail the same way. The "
           "rules look fine: the NodePort is DNATed to the Pods. Find the mistake and answer with the whole "
           "fixed Service in YAML.",
    checker=serves(WRONG_TARGET_PORT),
    hints=("Send a packet to the NodePort and read where it is delivered: which address and port?",
           "Compare that port with the container ports the web Pods declare (cluster.pod(name).ports).",
           "`port` is the Service's own port; `targetPort` is the port on the Pod, by number or by the "
           "container port's name."),
    answer=NODEPORT_SERVICE,
    starter=WRONG_TARGET_PORT,
    explanation="targetPort: 80 makes the EndpointSlices, and so kube-proxy's DNAT, send to port 80 of the Pods, "
                "but their container listens on 8080 (named http). targetPort: http (or 8080) fixes it; using the "
                "name keeps working if the image changes its port.",
    wrong_answers=((WRONG_TARGET_PORT, "nothing listens"),
                   (WRONG_TARGET_PORT.replace("port: 80\n", "port: 8080\n"), "nothing listens"),
                   (WRONG_TARGET_PORT.replace("type: NodePort", "type: ClusterIP").replace(
                       "      nodePort: 30080\n", ""), "NodePort")),
)

fix_selector = Exercise(
    id="8.4", kind="debug", title="A Service with no endpoints",
    prompt="Another version of the web Service (`print(ex.fix_selector.starter)`): now every connection, from "
           "outside or from a Pod, is refused at once, and the cluster IP has no KUBE-SVC chain at all. Find the "
           "mistake and answer with the whole fixed Service in YAML.",
    checker=serves(WRONG_SELECTOR),
    hints=("Send a packet and read which chain and rule stop it (section 5).",
           "A Service gets endpoints from the Pods its selector selects. Compare the selector with the web "
           "Pods' labels (cluster.pod(name).labels).",
           "A selector selects a Pod only if the Pod carries every one of its labels."),
    answer=NODEPORT_SERVICE,
    starter=WRONG_SELECTOR,
    explanation="The selector asks for app=web and tier=frontend, and the web Pods carry no tier label, so the "
                "selector selects no Pod, the EndpointSlice is empty, and kube-proxy writes a REJECT (\"has no "
                "endpoints\") in the filter table instead of a KUBE-SVC chain. Remove the extra label.",
    wrong_answers=((WRONG_SELECTOR, "no endpoints"),
                   (WRONG_SELECTOR.replace("    app: web\n    tier: frontend\n", "    app: frontend\n"),
                    "not a web Pod"),
                   (WRONG_SELECTOR.replace("  selector:\n    app: web\n    tier: frontend\n", ""), "selector")),
)

EXERCISES = (client_ip, keep_source_ip, fix_target_port, fix_selector)
