"""Read Kubernetes YAML as people have it: files they wrote, `kubectl get -o yaml` output.

`load(path, ...)` and `loads(text)` accept multi-document files, a `List` (or a
`PodList`, `ServiceList`, ...) with `items` as kubectl prints them, and these kinds:

=======================  ==========================================================
Deployment (apps/v1)     replicas, selector.matchLabels, template labels, container ports
Pod (v1)                 labels, spec.nodeName, status.podIP, the Ready condition,
                         metadata.deletionTimestamp (terminating), container ports, owner
Service (v1)             type, clusterIP (kept as given, "None" included), ports, selector,
                         externalIPs, load-balancer ingress, traffic policies, affinity
EndpointSlice            addressType, endpoints (addresses, conditions, nodeName,
(discovery.k8s.io/v1)    targetRef), ports; the kubernetes.io/service-name label
Node (v1)                the InternalIP (else ExternalIP) address, spec.podCIDR
KubeProxyConfiguration   clusterCIDR, iptables.masqueradeAll / masqueradeBit /
                         localhostNodePorts, nodePortAddresses, detectLocalMode,
                         conntrack.tcpBeLiberal; also inside the kube-proxy ConfigMap
Namespace                accepted and ignored
=======================  ==========================================================

Any other kind is skipped with a warning. Values are checked the way the API
server would check them, and a bad one raises `ManifestError` naming the file,
the line, the document (1-based), the object and the field::

    backend.yaml:15: document 2 (Service default/backend): spec.ports[0].port: expected a number, got "eighty"

Cluster-wide checks (a ClusterIP outside the Service CIDR, the same ClusterIP
twice, a named targetPort no selected Pod declares) need the whole cluster and
are made by `kplab.kube.cluster.Cluster`, with the same kind of message.

PyYAML is imported only when YAML is read, and only its safe loader is used
(`yaml.SafeLoader`, as `yaml.safe_load_all` uses it, keeping each document's nodes for
line numbers): plain data, never Python objects. Errors name the line of the field
they are about: `FILE:LINE: document N (Kind ns/name): field: what is wrong`.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field

from ..errors import KplabError, printable, with_caret
from .objects import (PROTOCOLS, ContainerPort, Deployment, Endpoint, EndpointConditions, EndpointPort,
                      EndpointSlice, LoadBalancerIngress, Node, Pod, ProxyConfig, Service, ServicePort)

__all__ = ["ManifestError", "Manifests", "load", "loads", "load_proxy_config", "merge"]

PROXY_API = "kubeproxy.config.k8s.io/v1alpha1"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_POLICIES = ("Cluster", "Local")
DETECT_LOCAL_MODES = ("ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix")
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
DEFAULT_AFFINITY_TIMEOUT = 10800          # what the API server fills in for ClientIP
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: The largest YAML file `load` reads (whole, in memory; PyYAML needs many times the file's size).
MAX_FILE_BYTES = 64 * 2**20

#: The apiVersion each kind is served under today; another one gets a warning.
API_VERSIONS = {"Deployment": "apps/v1", "Pod": "v1", "Service": "v1", "Node": "v1", "Namespace": "v1",
                "EndpointSlice": "discovery.k8s.io/v1", "KubeProxyConfiguration": PROXY_API}
#: Kinds that are cluster-scoped (no namespace in their key).
CLUSTER_SCOPED = ("Node", "Namespace")
#: Why some common kinds are not read (the warning says so).
NOT_MODELLED = {
    "Endpoints": "kube-proxy reads EndpointSlices, not the legacy Endpoints",
    "ReplicaSet": "give the Deployment (and its Pods, if their addresses matter)",
}

_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*(?<!-)$")   # a container port name


class ManifestError(KplabError, ValueError):
    """A Kubernetes object that kplab cannot read, or a cluster that does not add up.

    `str()` is one line: `FILE:LINE: document N (Kind ns/name): field.path: what is wrong`
    (LINE is the field's, or the nearest line of the object that is there; objects made
    in code have neither file nor line), or `FILE:LINE: not YAML: ...` for a YAML syntax
    error. The parts are also attributes: `file`, `line`, `document` (1-based), `object`
    ("Service default/backend"), `field` ("spec.ports[0].port"), and for YAML syntax
    errors `text` (the offending line) and `column` (0-based), which `pretty()` underlines.
    """

    def __init__(self, message: str, *, file: str | None = None, document: int | None = None,
                 object: str | None = None, field: str | None = None, line: int | None = None,
                 text: str | None = None, column: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.file = file
        self.document = document
        self.object = object
        self.field = field
        self.line = line
        self.text = text
        self.column = column

    def pretty(self) -> str:
        return with_caret(str(self), self.text, self.column)


@dataclass(frozen=True)
class Origin:
    """Where an object came from, for messages: `str()` is `FILE: document N (Kind ns/name)`.

    `node` is the object's YAML node (when it was read from YAML): errors then name the line
    of the field they are about, `FILE:LINE: document N (Kind ns/name): field: problem`."""

    file: str | None
    document: int | None
    object: str
    item: str | None = None             # "items[3]" inside a List
    node: object = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        if self.file is None and self.document is None:
            return self.object
        where = f"{self.file}: document {self.document}"
        if self.item:
            where += f", {self.item}"
        return f"{where} ({self.object})"

    @property
    def place(self) -> str | None:
        """`FILE: document N` (None for an object made in code)."""
        if self.file is None and self.document is None:
            return None
        return f"{self.file}: document {self.document}" + (f", {self.item}" if self.item else "")

    def line(self, path: str | None = None) -> int | None:
        """The line of field `path` ("spec.ports[0].port") in the YAML, or of the nearest part
        of it that is there (the object's first line at worst); None for objects made in code."""
        return line_of(self.node, path)

    def located(self, path: str | None = None) -> str:
        """`FILE:LINE: document N (Kind ns/name)` (without the line when there is none)."""
        line = self.line(path)
        if line is None or self.file is None:
            return str(self)
        return f"{self.file}:{line}:{str(self)[len(self.file) + 1:]}"

    def error(self, path: str | None, problem: str, hint: str | None = None) -> ManifestError:
        where = self.located(path)
        message = f"{where}: {path}: {problem}" if path else f"{where}: {problem}"
        return ManifestError(message, file=self.file, document=self.document, object=self.object,
                             field=path, hint=hint, line=self.line(path))


_PATH_PART = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def line_of(node, path: str | None = None) -> int | None:
    """The 1-based line of `path` below YAML `node`: each key's own line, each list item's line;
    where the path leaves the YAML (a field that is missing), the last line found."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    pos = 0
    while path and pos < len(path):
        m = _PATH_PART.match(path, pos)
        if m is None:
            break
        pos = m.end()
        key, index, quoted = m.groups()
        if quoted is not None:
            key = json.loads(quoted)
        nxt = None
        if key is not None and getattr(node, "id", None) == "mapping":
            for k, v in node.value:
                if getattr(k, "value", None) == key:
                    line, nxt = k.start_mark.line + 1, v
                    break
        elif index is not None and getattr(node, "id", None) == "sequence":
            i = int(index)
            if i < len(node.value):
                nxt = node.value[i]
                line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def origin_of(kind: str, key: str, origins: dict | None) -> Origin:
    """The recorded origin of an object, or one that names just the object."""
    found = (origins or {}).get((kind, key))
    return found if found is not None else Origin(None, None, f"{kind} {key}")


@dataclass(frozen=True)
class Manifests:
    """What a set of YAML documents held, in the order they came.

    `origins` maps (kind, key) to the `Origin` of each object (key "ns/name", or
    "name" for a Node); `options` maps (kind, key) to a dict of the facts a
    cluster needs that the objects do not carry:

    * Service: `allocate_node_ports` (False for `allocateLoadBalancerNodePorts: false`),
      `publish_not_ready` (`publishNotReadyAddresses`);
    * Pod: `host_network`, `owner_refs` (it has ownerReferences, so it is not
      matched to a Deployment by its labels), `foreign_owner` (owned by something
      other than a Deployment's ReplicaSet, e.g. a StatefulSet), `template_hash`
      (its `pod-template-hash` label).
    """

    services: tuple = ()
    deployments: tuple = ()
    pods: tuple = ()
    slices: tuple = ()
    nodes: tuple = ()
    proxy_config: ProxyConfig | None = None
    warnings: tuple = ()
    origins: dict = field(default_factory=dict, compare=False, repr=False)
    options: dict = field(default_factory=dict, compare=False, repr=False)

    def merge(self, *others: "Manifests") -> "Manifests":
        return merge(self, *others)

    def __len__(self) -> int:
        return (len(self.services) + len(self.deployments) + len(self.pods) + len(self.slices)
                + len(self.nodes) + (self.proxy_config is not None))


# --------------------------------------------------------------------------- entry points

def load(*paths: str) -> Manifests:
    """Read one or more YAML files (in order) into one `Manifests`."""
    if not paths:
        raise ManifestError("no manifest file given")
    parts = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = f.read(MAX_FILE_BYTES + 1) if size <= MAX_FILE_BYTES else b""
                if size > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:
                    what = f"{size:,} bytes" if size > MAX_FILE_BYTES else "more than that"
                    raise ManifestError(f"{path}: the file is {what}: kplab reads YAML files of at most "
                                        f"{MAX_FILE_BYTES // 2**20} MiB (whole, in memory); split it, or keep "
                                        "the objects kube-proxy reads", file=str(path))
        except OSError as e:
            raise ManifestError(f"{path}: cannot read: {e.strerror}", file=str(path)) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            column = e.start - data.rfind(b"\n", 0, e.start)
            raise ManifestError(f"{path}:{line}: not YAML: the file is not UTF-8 text (byte 0x{data[e.start]:02x}, "
                                f"column {column}): save it as UTF-8", file=str(path), line=line) from None
        parts.append(loads(text, source=str(path)))
    return merge(*parts)


def loads(text: str, source: str = "<string>") -> Manifests:
    """Read YAML text; `source` names it in messages."""
    try:
        import yaml
    except ImportError:                                  # pragma: no cover - PyYAML is a dependency
        raise ManifestError("reading Kubernetes YAML needs PyYAML (pip install pyyaml)") from None
    try:
        documents = _read_yaml(yaml, text, source)
    except RecursionError:
        raise ManifestError(f"{source}: not YAML kplab can read: it nests lists and mappings too deeply "
                            "(a Kubernetes object needs a few levels, not hundreds)", file=source) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "cannot parse"
        lines = text.splitlines()
        if mark is None:
            raise ManifestError(f"{source}: not YAML: {problem}", file=source) from None
        line = mark.line + 1
        bad = lines[mark.line] if mark.line < len(lines) else None
        cm = e.context_mark
        if e.problem and e.context and cm is not None and cm.line != mark.line:
            problem += f" ({e.context} at line {cm.line + 1})"
        if "'\\t'" in problem:
            problem += ": YAML indents with spaces, not tabs"
        elif "could not determine a constructor" in problem:
            problem += ": kplab reads plain YAML data (mappings, lists, text, numbers) only"
        raise ManifestError(f"{source}:{line}: not YAML: {problem}", file=source, line=line,
                            text=bad, column=mark.column) from None
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: not YAML: {' '.join(str(e).split())}", file=source) from None
    reader = _Reader(source)
    for number, (node, document) in enumerate(documents, 1):
        if document is None:                             # an empty document (a trailing ---)
            continue
        reader.document(document, number, node=node)
    return reader.result()


def _read_yaml(yaml, text: str, source: str) -> list:
    """[(node, value)] for each document, read as yaml.safe_load_all reads them (with
    yaml.SafeLoader: plain data only, no Python objects) but keeping each document's node,
    for line numbers. A key given twice in one mapping is refused: kubectl refuses duplicate
    fields, and YAML would silently keep the last one."""
    loader = yaml.SafeLoader(text)
    out = []
    try:
        while loader.check_node():
            node = loader.get_node()
            _check_duplicates(node, source, len(out) + 1)
            out.append((node, loader.construct_document(node)))
    finally:
        loader.dispose()
    return out


def _check_duplicates(root, source: str, number: int) -> None:
    todo = [root] if root is not None else []
    seen_nodes = set()
    while todo:
        node = todo.pop()
        if id(node) in seen_nodes:                       # an alias: checked once
            continue
        seen_nodes.add(id(node))
        if node.id == "mapping":
            keys = {}
            for k, v in node.value:
                if k.id == "scalar" and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in keys:
                        line = k.start_mark.line + 1
                        raise ManifestError(
                            f"{source}:{line}: document {number}: key {_show(k.value)} appears twice in the same "
                            f"mapping (also on line {keys[k.value]}); kubectl refuses duplicate fields: keep one",
                            file=source, document=number, line=line, field=k.value)
                    keys[k.value] = k.start_mark.line + 1
                todo.append(k)
                todo.append(v)
        elif node.id == "sequence":
            todo.extend(node.value)


def load_proxy_config(path: str) -> ProxyConfig:
    """The KubeProxyConfiguration in `path` (on its own, or in the kube-proxy ConfigMap)."""
    found = load(path)
    if found.proxy_config is None:
        raise ManifestError(f"{path}: no KubeProxyConfiguration in this file "
                            f"(apiVersion: {PROXY_API}, kind: KubeProxyConfiguration)", file=str(path))
    return found.proxy_config


def merge(*parts: Manifests) -> Manifests:
    """Several `Manifests` as one; the same object twice is an error naming both places."""
    if len(parts) == 1:
        return parts[0]
    lists = {"services": [], "deployments": [], "pods": [], "slices": [], "nodes": []}
    kinds = {"services": "Service", "deployments": "Deployment", "pods": "Pod", "slices": "EndpointSlice",
             "nodes": "Node"}
    origins, options, warnings = {}, {}, []
    proxy, proxy_origin = None, None
    for part in parts:
        for attr, kind in kinds.items():
            for obj in getattr(part, attr):
                key = obj.name if kind == "Node" else f"{obj.namespace}/{obj.name}"
                where = origin_of(kind, key, part.origins)
                if (kind, key) in origins:
                    raise where.error(None, f"{kind} {key} is defined twice (also in {origins[(kind, key)]})")
                origins[(kind, key)] = where
                if (kind, key) in part.options:
                    options[(kind, key)] = part.options[(kind, key)]
                lists[attr].append(obj)
        if part.proxy_config is not None:
            where = part.origins.get(("KubeProxyConfiguration", ""), Origin(None, None, "KubeProxyConfiguration"))
            if proxy is not None:
                raise where.error(None, f"a second KubeProxyConfiguration (the first is in {proxy_origin})")
            proxy, proxy_origin = part.proxy_config, where
            origins[("KubeProxyConfiguration", "")] = where
        warnings.extend(part.warnings)
    return Manifests(**{k: tuple(v) for k, v in lists.items()}, proxy_config=proxy, warnings=tuple(warnings),
                     origins=origins, options=options)


# --------------------------------------------------------------------------- value helpers

def _show(value) -> str:
    """A value as the message quotes it: strings in double quotes, YAML words for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _key_path(base: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{base}.{key}" if base else key
    return f"{base}[{json.dumps(key)}]"


class _Object:
    """Typed access to one object's fields; every failure names the field path."""

    def __init__(self, origin: Origin):
        self.origin = origin

    def fail(self, path: str, problem: str, hint: str | None = None):
        raise self.origin.error(path, problem, hint)

    # Each reader takes the parent mapping, the key and the parent's path.
    def get(self, parent: dict, key: str, base: str, kinds: tuple, what: str, default=None):
        value = parent.get(key) if isinstance(parent, dict) else None
        if value is None:
            return default
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.fail(_key_path(base, key), f"expected {what}, got {_show(value)}")
        return value

    def mapping(self, parent, key, base, default=None):
        value = self.get(parent, key, base, (dict,), "a mapping")
        return value if value is not None else ({} if default is None else default)

    def items(self, parent, key, base):
        value = self.get(parent, key, base, (list,), "a list")
        return list(enumerate(value or []))

    def string(self, parent, key, base, default=None, required=False):
        value = self.get(parent, key, base, (str,), "a string", default)
        if required and not value:
            self.fail(_key_path(base, key), "required")
        return value

    def number(self, parent, key, base, default=None, low=None, high=None, what=None):
        value = self.get(parent, key, base, (int,), "a number", default)
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            self.fail(_key_path(base, key), f"{value} is not {what or f'between {low} and {high}'}")
        return value

    def port(self, parent, key, base, required=False):
        value = self.number(parent, key, base, low=1, high=65535, what="a port number (1-65535)")
        if value is None and required:
            self.fail(_key_path(base, key), "required")
        return value

    def boolean(self, parent, key, base, default=None):
        return self.get(parent, key, base, (bool,), "true or false", default)

    def choice(self, parent, key, base, choices, default=None):
        value = self.string(parent, key, base, default)
        if value is not None and value not in choices:
            self.fail(_key_path(base, key), f"{_show(value)} is not one of {', '.join(choices)}")
        return value

    def protocol(self, parent, key, base):
        return self.choice(parent, key, base, PROTOCOLS, "TCP")

    def address(self, parent, key, base, family: int | None = None):
        value = self.string(parent, key, base)
        if value is None:
            return None
        return self.check_ip(value, _key_path(base, key), family)

    def check_ip(self, value, path, family=None):
        try:
            parsed = ipaddress.ip_address(value)
        except ValueError:
            self.fail(path, f"{_show(value)} is not an IP address")
        if family is not None and parsed.version != family:
            self.fail(path, f"{value} is not an IPv{family} address")
        return str(parsed)

    def cidr(self, value, path):
        try:
            return str(ipaddress.ip_network(value.strip(), strict=True))
        except (ValueError, AttributeError):
            self.fail(path, f"{_show(value)} is not a CIDR (such as 10.244.1.0/24)")

    def labels(self, parent, key, base):
        value = self.mapping(parent, key, base)
        out = []
        for k, v in value.items():
            if not isinstance(k, str):
                self.fail(_key_path(base, key), f"label key {_show(k)} is not a string")
            if not isinstance(v, str):
                self.fail(_key_path(_key_path(base, key), k),
                          f"expected a string, got {_show(v)}", hint="quote it: a label value is text")
            out.append((k, v))
        return tuple(out)

    def container_ports(self, spec, base):
        ports = []
        for ci, container in self.items(spec, "containers", base):
            cpath = f"{base}.containers[{ci}]"
            if not isinstance(container, dict):
                self.fail(cpath, f"expected a mapping, got {_show(container)}")
            for pi, port in self.items(container, "ports", cpath):
                ppath = f"{cpath}.ports[{pi}]"
                if not isinstance(port, dict):
                    self.fail(ppath, f"expected a mapping, got {_show(port)}")
                number = self.port(port, "containerPort", ppath, required=True)
                name = self.string(port, "name", ppath, "")
                if name and not _IANA_SVC_NAME.match(name):
                    self.fail(f"{ppath}.name", f"{_show(name)} is not a valid port name "
                              "(lower-case letters, digits and single dashes, with at least one letter)")
                if name and len(name) > 15:
                    self.fail(f"{ppath}.name", f"{_show(name)} is longer than 15 characters")
                ports.append(ContainerPort(port=number, name=name, protocol=self.protocol(port, "protocol", ppath)))
        return tuple(ports)


# --------------------------------------------------------------------------- the reader

def _child(node, key):
    """The value node of `key` in a mapping node, or None."""
    if node is None or node.id != "mapping":
        return None
    for k, v in node.value:
        if getattr(k, "value", None) == key:
            return v
    return None


class _Reader:
    def __init__(self, source: str):
        self.source = source
        self.found = {"Service": [], "Deployment": [], "Pod": [], "EndpointSlice": [], "Node": []}
        self.proxy = None
        self.warnings = []
        self.origins = {}
        self.options = {}

    def result(self) -> Manifests:
        return Manifests(services=tuple(self.found["Service"]), deployments=tuple(self.found["Deployment"]),
                         pods=tuple(self.found["Pod"]), slices=tuple(self.found["EndpointSlice"]),
                         nodes=tuple(self.found["Node"]), proxy_config=self.proxy,
                         warnings=tuple(printable(w) for w in self.warnings), origins=self.origins,
                         options=self.options)

    def document(self, doc, number: int, item: str | None = None, node=None):
        bare = Origin(self.source, number, "", item, node)

        def where(path=None):
            line = line_of(node, path)
            return (f"{self.source}:{line}: document {number}" if line else
                    f"{self.source}: document {number}") + (f", {item}" if item else "")

        if not isinstance(doc, dict):
            raise ManifestError(f"{where()}: expected a Kubernetes object (a mapping with apiVersion, kind and "
                                f"metadata), got {_show(doc) if not isinstance(doc, str) else 'text'}",
                                file=self.source, document=number)
        kind = doc.get("kind")
        if kind is None or kind == "":
            raise ManifestError(f"{where()}: kind: required (every Kubernetes object has apiVersion, kind "
                                "and metadata.name)", file=self.source, document=number, field="kind")
        if not isinstance(kind, str):
            raise ManifestError(f"{where('kind')}: kind: expected a string, got {_show(kind)}", file=self.source,
                                document=number, field="kind")
        if kind == "List" or (kind.endswith("List") and "items" in doc):
            items = doc.get("items")
            if items is not None and not isinstance(items, list):
                raise ManifestError(f"{where('items')} ({kind}): items: expected a list, got {_show(items)}",
                                    file=self.source, document=number, field="items")
            inodes = _child(node, "items")
            for i, entry in enumerate(items or []):
                self.document(entry, number, f"{item}.items[{i}]" if item else f"items[{i}]",
                              node=inodes.value[i] if inodes is not None and inodes.id == "sequence"
                              and i < len(inodes.value) else None)
            return
        if kind == "KubeProxyConfiguration":
            self.proxy_config(doc, dataclasses.replace(bare, object=kind), number)
            return
        meta = doc.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise ManifestError(f"{where('metadata')} ({kind}): metadata: expected a mapping, got {_show(meta)}",
                                file=self.source, document=number, field="metadata")
        meta = meta or {}
        name = meta.get("name")
        if not name:
            raise ManifestError(f"{where('metadata.name')} ({kind}): metadata.name: required", file=self.source,
                                document=number, field="metadata.name")
        if not isinstance(name, str):
            raise ManifestError(f"{where('metadata.name')} ({kind}): metadata.name: expected a string, got {_show(name)}",
                                file=self.source, document=number, field="metadata.name")
        namespace = meta.get("namespace") or "default"
        if not isinstance(namespace, str):
            raise ManifestError(f"{where('metadata.namespace')} ({kind} {name}): metadata.namespace: expected a string, got "
                                f"{_show(namespace)}", file=self.source, document=number,
                                field="metadata.namespace")
        key = name if kind in CLUSTER_SCOPED else f"{namespace}/{name}"
        origin = dataclasses.replace(bare, object=f"{kind} {key}")
        if kind == "Namespace":
            return
        reader = {"Service": self.service, "Deployment": self.deployment, "Pod": self.pod,
                  "EndpointSlice": self.slice, "Node": self.node}.get(kind)
        if reader is None:
            if kind == "ConfigMap" and self.config_map(doc, origin, number, item):
                return
            why = NOT_MODELLED.get(kind, "kplab models what kube-proxy reads")
            self.warnings.append(f"{origin}: kind {kind} is not modelled ({why}); skipped")
            return
        api = doc.get("apiVersion")
        if api != API_VERSIONS[kind]:
            self.warnings.append(f"{origin}: apiVersion {_show(api)} is not how {kind} is served "
                                 f"(expected {API_VERSIONS[kind]}); read as {API_VERSIONS[kind]}")
        if (kind, key) in self.origins:
            raise origin.error(None, f"{kind} {key} is defined twice (also in {self.origins[(kind, key)]})")
        obj = reader(doc, _Object(origin), namespace, name, key)
        if obj is None:
            return
        self.origins[(kind, key)] = origin
        self.found[kind].append(obj)

    # ----------------------------------------------------------------------- Service

    def service(self, doc, o: _Object, namespace, name, key):
        spec = o.mapping(doc, "spec", "")
        type_ = o.choice(spec, "type", "spec", SERVICE_TYPES)
        cluster_ip = o.string(spec, "clusterIP", "spec")
        if cluster_ip is None:
            ips = o.items(spec, "clusterIPs", "spec")
            if ips:
                cluster_ip = ips[0][1]
                if not isinstance(cluster_ip, str):
                    o.fail("spec.clusterIPs[0]", f"expected a string, got {_show(cluster_ip)}")
                if cluster_ip and cluster_ip != "None":
                    cluster_ip = o.check_ip(cluster_ip, "spec.clusterIPs[0]")
        elif cluster_ip == "":
            cluster_ip = None
        elif cluster_ip != "None":
            cluster_ip = o.check_ip(cluster_ip, "spec.clusterIP")
        if type_ in ("NodePort", "LoadBalancer") and cluster_ip == "None":
            o.fail("spec.clusterIP", f"a headless Service (clusterIP: None) cannot be of type {type_}")
        ports, names = [], {}
        for i, port in o.items(spec, "ports", "spec"):
            path = f"spec.ports[{i}]"
            if not isinstance(port, dict):
                o.fail(path, f"expected a mapping, got {_show(port)}")
            number = o.port(port, "port", path, required=True)
            pname = o.string(port, "name", path, "")
            protocol = o.protocol(port, "protocol", path)
            target = port.get("targetPort")
            if target is not None:
                if isinstance(target, bool) or not isinstance(target, (int, str)):
                    o.fail(f"{path}.targetPort", f"expected a number or a port name, got {_show(target)}")
                if isinstance(target, int):
                    target = o.port(port, "targetPort", path)
                elif not _IANA_SVC_NAME.match(target) or len(target) > 15:
                    o.fail(f"{path}.targetPort", f"{_show(target)} is neither a number nor a valid port name "
                           "(a name has lower-case letters, digits and dashes, at least one letter, "
                           "at most 15 characters)")
            node_port = o.number(port, "nodePort", path, low=0, high=65535, what="a port number (1-65535)")
            if node_port == 0:
                node_port = None
            if node_port is not None and type_ not in ("NodePort", "LoadBalancer"):
                o.fail(f"{path}.nodePort", f"a nodePort needs type NodePort or LoadBalancer "
                       f"(this Service is type {type_ or 'ClusterIP'})")
            if pname in names:
                o.fail(f"{path}.name", f"{_show(pname)} is already the name of spec.ports[{names[pname]}]")
            names[pname] = i
            ports.append(ServicePort(port=number, protocol=protocol, name=pname, target_port=target,
                                     node_port=node_port))
        if len(ports) > 1:
            for i, p in enumerate(ports):
                if not p.name:
                    o.fail(f"spec.ports[{i}].name", "required when a Service has more than one port")
        if not ports and type_ != "ExternalName" and cluster_ip != "None":
            o.fail("spec.ports", "required: a Service needs at least one port")
        raw_selector = o.mapping(spec, "selector", "spec")
        selector = o.labels(spec, "selector", "spec") if raw_selector else None
        external_ips = tuple(o.check_ip(v, f"spec.externalIPs[{i}]") if isinstance(v, str)
                             else o.fail(f"spec.externalIPs[{i}]", f"expected a string, got {_show(v)}")
                             for i, v in o.items(spec, "externalIPs", "spec"))
        ranges = []
        for i, v in o.items(spec, "loadBalancerSourceRanges", "spec"):
            if not isinstance(v, str):
                o.fail(f"spec.loadBalancerSourceRanges[{i}]", f"expected a string, got {_show(v)}")
            o.cidr(v, f"spec.loadBalancerSourceRanges[{i}]")
            ranges.append(v)                                 # kept verbatim, as kube-proxy gets it
        ingress = []
        status = o.mapping(doc, "status", "")
        lb = o.mapping(status, "loadBalancer", "status")
        for i, entry in o.items(lb, "ingress", "status.loadBalancer"):
            path = f"status.loadBalancer.ingress[{i}]"
            if not isinstance(entry, dict):
                o.fail(path, f"expected a mapping, got {_show(entry)}")
            ip = o.address(entry, "ip", path)
            mode = o.choice(entry, "ipMode", path, ("VIP", "Proxy"))
            if ip is not None:                           # hostname-only entries give kube-proxy nothing
                ingress.append(LoadBalancerIngress(ip=ip, ip_mode=mode))
        etp = o.choice(spec, "externalTrafficPolicy", "spec", TRAFFIC_POLICIES)
        itp = o.choice(spec, "internalTrafficPolicy", "spec", TRAFFIC_POLICIES)
        hc = o.number(spec, "healthCheckNodePort", "spec", low=1, high=65535, what="a port number (1-65535)")
        if hc is not None and not (type_ == "LoadBalancer" and etp == "Local"):
            o.fail("spec.healthCheckNodePort", "only a LoadBalancer Service with externalTrafficPolicy: Local "
                   "has a health-check node port")
        affinity = o.choice(spec, "sessionAffinity", "spec", ("None", "ClientIP"))
        timeout = None
        config = o.mapping(spec, "sessionAffinityConfig", "spec")
        client = o.mapping(config, "clientIP", "spec.sessionAffinityConfig")
        given_timeout = o.number(client, "timeoutSeconds", "spec.sessionAffinityConfig.clientIP", low=1,
                                 high=86400, what="between 1 and 86400 seconds")
        if affinity == "ClientIP":
            timeout = given_timeout if given_timeout is not None else DEFAULT_AFFINITY_TIMEOUT
        elif given_timeout is not None:
            o.fail("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "needs sessionAffinity: ClientIP")
        options = {"allocate_node_ports": o.boolean(spec, "allocateLoadBalancerNodePorts", "spec", True),
                   "publish_not_ready": o.boolean(spec, "publishNotReadyAddresses", "spec", False)}
        self.options[("Service", key)] = options
        return Service(namespace=namespace, name=name, ports=tuple(ports), type=type_, cluster_ip=cluster_ip,
                       selector=selector, external_ips=external_ips, lb_ingress=tuple(ingress),
                       lb_source_ranges=tuple(ranges), external_traffic_policy=etp, internal_traffic_policy=itp,
                       health_check_node_port=hc, session_affinity=affinity, session_affinity_timeout=timeout)

    # ----------------------------------------------------------------------- Deployment

    def deployment(self, doc, o: _Object, namespace, name, key):
        spec = o.mapping(doc, "spec", "")
        replicas = o.number(spec, "replicas", "spec", 1)
        if replicas < 0:
            o.fail("spec.replicas", f"{replicas} is negative: replicas must be 0 or more")
        sel = o.mapping(spec, "selector", "spec")
        selector = o.labels(sel, "matchLabels", "spec.selector")
        if sel.get("matchExpressions"):
            self.warnings.append(f"{o.origin}: spec.selector.matchExpressions is not modelled; "
                                 "only matchLabels select this Deployment's Pods")
        template = o.mapping(spec, "template", "spec")
        tmeta = o.mapping(template, "metadata", "spec.template")
        labels = o.labels(tmeta, "labels", "spec.template.metadata")
        if not selector and not sel.get("matchExpressions"):
            o.fail("spec.selector", "required: a Deployment selects its Pods with selector.matchLabels")
        missing = [f"{k}={v}" for k, v in selector if (k, v) not in labels]
        if missing:
            o.fail("spec.template.metadata.labels", f"does not match the selector (missing {', '.join(missing)})")
        tspec = o.mapping(template, "spec", "spec.template")
        ports = o.container_ports(tspec, "spec.template.spec")
        return Deployment(namespace=namespace, name=name, replicas=replicas, selector=selector, labels=labels,
                          ports=ports, ready=True)

    # ----------------------------------------------------------------------- Pod

    def pod(self, doc, o: _Object, namespace, name, key):
        meta = o.mapping(doc, "metadata", "")
        labels = o.labels(meta, "labels", "metadata")
        spec = o.mapping(doc, "spec", "")
        status = o.mapping(doc, "status", "")
        node = o.string(spec, "nodeName", "spec") or None
        host_network = bool(o.boolean(spec, "hostNetwork", "spec", False))
        ip = o.address(status, "podIP", "status") if status.get("podIP") else None
        phase = o.string(status, "phase", "status")
        if phase in ("Succeeded", "Failed"):
            self.warnings.append(f"{o.origin}: the Pod has finished (phase {phase}) and gets no endpoint; skipped")
            return None
        ready = True
        for i, cond in o.items(status, "conditions", "status"):
            path = f"status.conditions[{i}]"
            if not isinstance(cond, dict):
                o.fail(path, f"expected a mapping, got {_show(cond)}")
            if o.string(cond, "type", path) == "Ready":
                ready = o.choice(cond, "status", path, ("True", "False", "Unknown"), "Unknown") == "True"
        terminating = meta.get("deletionTimestamp") is not None
        ports = o.container_ports(spec, "spec")
        owner, foreign = None, False
        template_hash = dict(labels).get("pod-template-hash")
        for i, ref in o.items(meta, "ownerReferences", "metadata"):
            path = f"metadata.ownerReferences[{i}]"
            if not isinstance(ref, dict):
                o.fail(path, f"expected a mapping, got {_show(ref)}")
            rkind, rname = o.string(ref, "kind", path, required=True), o.string(ref, "name", path, required=True)
            if rkind == "Deployment":
                owner = rname
            elif rkind == "ReplicaSet" and template_hash and rname.endswith("-" + template_hash):
                owner = rname[: -len(template_hash) - 1]
            elif rkind == "ReplicaSet" and "-" in rname:
                owner = rname.rsplit("-", 1)[0]
            else:
                foreign = True
        self.options[("Pod", key)] = {"host_network": host_network, "foreign_owner": foreign and owner is None,
                                      "owner_refs": bool(meta.get("ownerReferences")),
                                      "template_hash": template_hash}
        return Pod(namespace=namespace, name=name, labels=labels, ip=ip, node=node, ports=ports, ready=ready,
                   terminating=terminating, owner=owner)

    # ----------------------------------------------------------------------- EndpointSlice

    def slice(self, doc, o: _Object, namespace, name, key):
        meta = o.mapping(doc, "metadata", "")
        labels = dict(o.labels(meta, "labels", "metadata"))
        service = labels.get(SERVICE_NAME_LABEL)
        if not service:
            self.warnings.append(f"{o.origin}: no {SERVICE_NAME_LABEL} label, so it belongs to no Service "
                                 "and kube-proxy ignores it; skipped")
            return None
        address_type = o.choice(doc, "addressType", "", ADDRESS_TYPES)
        if address_type is None:
            o.fail("addressType", "required (IPv4, IPv6 or FQDN)")
        family = {"IPv4": 4, "IPv6": 6}.get(address_type)
        endpoints = []
        for i, ep in o.items(doc, "endpoints", ""):
            path = f"endpoints[{i}]"
            if not isinstance(ep, dict):
                o.fail(path, f"expected a mapping, got {_show(ep)}")
            addresses = []
            for j, a in o.items(ep, "addresses", path):
                if not isinstance(a, str):
                    o.fail(f"{path}.addresses[{j}]", f"expected a string, got {_show(a)}")
                addresses.append(o.check_ip(a, f"{path}.addresses[{j}]", family) if family else a)
            if not addresses:
                o.fail(f"{path}.addresses", "required: an endpoint has at least one address")
            cond = o.mapping(ep, "conditions", path)
            conditions = EndpointConditions(
                ready=o.boolean(cond, "ready", f"{path}.conditions"),
                serving=o.boolean(cond, "serving", f"{path}.conditions"),
                terminating=o.boolean(cond, "terminating", f"{path}.conditions"))
            ref = o.mapping(ep, "targetRef", path)
            target = o.string(ref, "name", f"{path}.targetRef") if ref.get("kind", "Pod") == "Pod" else None
            endpoints.append(Endpoint(addresses=tuple(addresses), conditions=conditions,
                                      node_name=o.string(ep, "nodeName", path) or None, target_pod=target))
        ports = []
        for i, p in o.items(doc, "ports", ""):
            path = f"ports[{i}]"
            if not isinstance(p, dict):
                o.fail(path, f"expected a mapping, got {_show(p)}")
            number = o.port(p, "port", path)
            if number is None:
                self.warnings.append(f"{o.origin}: {path} has no port number; kube-proxy skips it")
                continue
            ports.append(EndpointPort(port=number, name=o.string(p, "name", path, ""),
                                      protocol=o.protocol(p, "protocol", path)))
        return EndpointSlice(namespace=namespace, name=name, service=service, endpoints=tuple(endpoints),
                             ports=tuple(ports), address_type=address_type)

    # ----------------------------------------------------------------------- Node

    def node(self, doc, o: _Object, namespace, name, key):
        spec = o.mapping(doc, "spec", "")
        status = o.mapping(doc, "status", "")
        found = {}
        for i, entry in o.items(status, "addresses", "status"):
            path = f"status.addresses[{i}]"
            if not isinstance(entry, dict):
                o.fail(path, f"expected a mapping, got {_show(entry)}")
            kind = o.string(entry, "type", path)
            if kind in ("InternalIP", "ExternalIP") and kind not in found:
                found[kind] = o.address(entry, "address", path)
        ip = found.get("InternalIP") or found.get("ExternalIP")
        if not ip:
            o.fail("status.addresses", "no InternalIP address: kube-proxy needs the node's IP",
                   hint="add status.addresses: [{type: InternalIP, address: 192.168.0.2}]")
        pod_cidr = o.string(spec, "podCIDR", "spec")
        if pod_cidr is None:
            cidrs = o.items(spec, "podCIDRs", "spec")
            if cidrs:
                pod_cidr = cidrs[0][1]
                if not isinstance(pod_cidr, str):
                    o.fail("spec.podCIDRs[0]", f"expected a string, got {_show(pod_cidr)}")
                pod_cidr = o.cidr(pod_cidr, "spec.podCIDRs[0]")
        elif pod_cidr:
            pod_cidr = o.cidr(pod_cidr, "spec.podCIDR")
        return Node(name=name, ip=ip, pod_cidr=pod_cidr or None)

    # ----------------------------------------------------------------------- kube-proxy configuration

    def config_map(self, doc, origin: Origin, number, item) -> bool:
        """The kube-proxy ConfigMap (kubeadm's kube-system/kube-proxy): read the configuration in it."""
        data = doc.get("data")
        if not isinstance(data, dict):
            return False
        import yaml
        for k, text in data.items():
            if not isinstance(text, str) or "KubeProxyConfiguration" not in text:
                continue
            try:
                inner = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise origin.error(_key_path("data", str(k)), f"not YAML: {' '.join(str(e).split())}") from None
            if isinstance(inner, dict) and inner.get("kind") == "KubeProxyConfiguration":
                self.proxy_config(inner, dataclasses.replace(origin, object=f"{origin.object} "
                                                                         f"{_key_path('data', str(k))}"), number)
                return True
        return False

    def proxy_config(self, doc, origin: Origin, number):
        o = _Object(origin)
        if self.proxy is not None:
            raise origin.error(None, "a second KubeProxyConfiguration (the first is in "
                                     f"{self.origins[('KubeProxyConfiguration', '')]})")
        api = doc.get("apiVersion")
        if api != PROXY_API:
            self.warnings.append(f"{origin}: apiVersion {_show(api)}: kplab reads the fields of {PROXY_API}")
        mode = o.string(doc, "mode", "")
        if mode not in (None, "", "iptables"):
            self.warnings.append(f"{origin}: mode {mode}: kplab models kube-proxy's iptables mode only")
        cidr_text = o.string(doc, "clusterCIDR", "")
        cluster_cidr = None
        if cidr_text:
            for part in cidr_text.split(","):
                net = o.cidr(part, "clusterCIDR")
                if ipaddress.ip_network(net).version == 4:
                    cluster_cidr = net
                    break
        mode_local = o.choice(doc, "detectLocalMode", "", DETECT_LOCAL_MODES, "ClusterCIDR") or "ClusterCIDR"
        if mode_local == "ClusterCIDR" and cluster_cidr is None:
            self.warnings.append(f"{origin}: no IPv4 clusterCIDR: kube-proxy then runs without a local-traffic "
                                 "detector (traffic to cluster IPs from outside the Pod network is not masqueraded)")
        if mode_local in ("BridgeInterface", "InterfaceNamePrefix"):
            self.warnings.append(f"{origin}: detectLocalMode {mode_local} is not modelled; "
                                 "the local-traffic detector uses clusterCIDR instead")
        ipt = o.mapping(doc, "iptables", "")
        conntrack = o.mapping(doc, "conntrack", "")
        addresses = []
        for i, a in o.items(doc, "nodePortAddresses", ""):
            if a == "primary":
                addresses.append(a)
            elif isinstance(a, str):
                addresses.append(o.cidr(a, f"nodePortAddresses[{i}]"))
            else:
                o.fail(f"nodePortAddresses[{i}]", f"expected a CIDR or \"primary\", got {_show(a)}")
        defaults = ProxyConfig()
        self.proxy = ProxyConfig(
            cluster_cidr=cluster_cidr,
            masquerade_all=o.boolean(ipt, "masqueradeAll", "iptables", defaults.masquerade_all),
            masquerade_bit=o.number(ipt, "masqueradeBit", "iptables", defaults.masquerade_bit, 0, 31),
            localhost_nodeports=o.boolean(ipt, "localhostNodePorts", "iptables", defaults.localhost_nodeports),
            nodeport_addresses=tuple(addresses) or None,
            detect_local_mode=mode_local,
            tcp_be_liberal=o.boolean(conntrack, "tcpBeLiberal", "conntrack", defaults.tcp_be_liberal))
        self.origins[("KubeProxyConfiguration", "")] = origin
