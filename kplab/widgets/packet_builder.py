"""PacketBuilder: a form that builds one packet, checks every field, and sends it.

Works on a single node (`kplab.Node`: the lessons' standard node, or any
node) or on a cluster (`kplab.kube.cluster.Cluster` or a `ClusterNetwork`:
the packet crosses nodes). The destination is a Service name, an IP, or
IP:port (a NodePort on a node IP, say). Every field is checked as it is
typed; a bad value gets a message beside its field and nothing is sent.

>>> b = PacketBuilder(kplab.standard_node(rules))                  # doctest: +SKIP
>>> b.send(source="client", destination="10.96.5.81", port="80")   # doctest: +SKIP
"""
from __future__ import annotations

import ipaddress

import ipywidgets as W

from ..errors import KplabError
from . import _viz
from ._base import Field, LabWidget, Picture, esc, message_html, pre

PROTOCOLS = ("tcp", "udp", "icmp")
SPORT_FIRST = 40000


def _looks_numeric(text: str) -> bool:
    return bool(text) and all(ch.isdigit() or ch == "." for ch in text)


def check_port(text, what: str = "port"):
    """(port or None, message). "" means: not given."""
    if text is None:
        return None, ""
    if isinstance(text, bool):
        return None, f"{what} must be a number from 1 to 65535"
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip()
        if not s:
            return None, ""
        if not (s.isascii() and s.isdigit()):          # "²" is a digit to str.isdigit(), not to int()
            return None, f"{what} must be a number from 1 to 65535, not {s!r}"
        value = int(s)
    if not 1 <= value <= 65535:
        return None, f"{what} {value} is out of range (1-65535)"
    return value, ""


class PacketBuilder(LabWidget):
    """A packet form: from (Pod / node / external host), destination, protocol, port.

    `node_or_cluster`: a `kplab.Node`, a `Cluster` or a `ClusterNetwork`.
    `on_trace(result)` is called with each result: a `Trace` on a node, a
    `Journey` on a cluster.

    Methods: `set(source=, destination=, proto=, port=)` puts values in the
    form (and checks them), `validate()` checks the form, `build()` returns
    the packet (or None), `send()` sends it and returns the Trace / Journey
    (or None). None of them raises on bad input: the message is in
    `messages` and next to the field.
    """

    def __init__(self, node_or_cluster, on_trace=None, *, source: str | None = None, destination: str = "",
                 proto: str = "tcp", port="", seed: int = 0):
        self.on_trace = on_trace
        self.result = None
        self.packet = None
        self._sport = SPORT_FIRST
        self._services = None
        self._syncing = False
        self.seed = seed
        self.source = W.Dropdown(options=[], layout=W.Layout(width="16em"))
        self._rejected: dict = {}          # field -> message for a value a dropdown could not take
        self.destination = W.Text(value="", placeholder="Service name, IP, or IP:port",
                                  continuous_update=False, layout=W.Layout(width="16em"))
        self.proto = W.Dropdown(options=PROTOCOLS, value="tcp", layout=W.Layout(width="7em"))
        self.port = W.Text(value="", placeholder="default: the Service's, or 80", continuous_update=False,
                           layout=W.Layout(width="14em"))
        self.fields = {"source": Field(self.source, "from"), "destination": Field(self.destination, "to"),
                       "proto": Field(self.proto, "protocol"), "port": Field(self.port, "port")}
        self.send_button = W.Button(description="send", icon="paper-plane", button_style="primary")
        self.send_button.on_click(lambda _b: self.send())
        self.status = W.HTML(value="")
        self.summary_html = W.HTML(value="")
        self.journey_html = W.HTML(value="")
        self.picture = Picture("journey")
        self._drawing = None
        self._texts = {"summary": "nothing sent yet", "journey": ""}
        for name in ("source", "destination", "proto", "port"):
            getattr(self, name).observe(lambda ch, name=name: self._on_field(name), names="value")
        self.widget = W.VBox([f.box for f in self.fields.values()]
                             + [W.HBox([self.send_button, self.status]), self.summary_html, self.journey_html,
                                self.picture.box])
        self.set_target(node_or_cluster)
        self.set(source=source, destination=destination, proto=proto, port=port, check=bool(destination))

    # ------------------------------------------------------------------ target

    def set_target(self, node_or_cluster) -> None:
        """Send through another node or cluster (the form keeps its values where they still fit)."""
        from ..node import Node
        self._services = None
        if isinstance(node_or_cluster, Node):
            self.mode, self.node, self.net = "node", node_or_cluster, None
            names = list(node_or_cluster.topology.names())
            preferred = "client" if "client" in names else names[0]
        else:
            from ..kube.flow import ClusterNetwork
            net = node_or_cluster
            if not isinstance(net, ClusterNetwork):
                if not hasattr(net, "pods") or not hasattr(net, "services"):
                    raise KplabError("PacketBuilder takes a kplab Node, a Cluster or a ClusterNetwork, not "
                                     f"{type(node_or_cluster).__name__}")
                net = ClusterNetwork(net, seed=self.seed)
            self.mode, self.node, self.net = "cluster", None, net
            pods = [p.name for p in net.cluster.pods() if p.ip and p.node]
            names = pods + [n.name for n in net.cluster.nodes()] + [n for n, _ in net.externals]
            preferred = names[0] if names else None
        self._syncing = True
        try:
            current = self.source.value
            self.source.options = names
            self.source.value = current if current in names else preferred
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ form

    def _on_field(self, name):
        if not self._syncing:
            self._rejected.pop(name, None)         # the control now holds a value it accepted
            self.validate(only=name)

    @property
    def messages(self) -> dict:
        return {k: f.error for k, f in self.fields.items()}

    def set(self, *, source=None, destination=None, proto=None, port=None, check: bool = True) -> bool:
        """Fill in fields (None leaves one as it is) and check the form. A value a
        dropdown cannot hold (an unknown sender, protocol) is refused with a message."""
        rejected = {}
        self._syncing = True
        try:
            if source is not None:
                if source in self.source.options:
                    self.source.value = source
                    self._rejected.pop("source", None)
                else:
                    rejected["source"] = self._unknown_source(source)
            if proto is not None:
                p = str(proto).strip().lower()
                if p in PROTOCOLS:
                    self.proto.value = p
                    self._rejected.pop("proto", None)
                else:
                    rejected["proto"] = f"{proto!r} is not a protocol here: choose tcp, udp or icmp"
            if destination is not None:
                self.destination.value = str(destination)
            if port is not None:
                self.port.value = "" if port == "" else str(port)
        finally:
            self._syncing = False
        self._rejected.update(rejected)
        return self.validate() if check else not self._rejected

    def _unknown_source(self, name) -> str:
        opts = list(self.source.options)
        shown = ", ".join(opts[:8]) + (", ..." if len(opts) > 8 else "")
        return f"unknown sender {name!r}: choose one of {shown}"

    def validate(self, only: str | None = None) -> bool:
        """Check the form; put each field's message beside it. True when all are fine.
        `only` limits the messages updated to one field (and the port, which depends on the rest)."""
        spec, errors, notes = self._parse()
        for name, f in self.fields.items():
            if only is not None and name not in (only, "port"):
                continue
            if name in errors:
                f.set(errors[name])
            elif name in notes:
                f.set(notes[name], "info")
            else:
                f.clear()
        return not errors

    def _parse(self):
        """(spec dict, errors by field, notes by field) from the controls' values."""
        errors, notes = {}, {}
        errors.update(self._rejected)
        source = self.source.value
        if source not in self.source.options and "source" not in errors:
            errors["source"] = self._unknown_source(source)
        proto = self.proto.value
        port, msg = check_port(self.port.value)
        if msg:
            errors["port"] = msg
        dest = (self.destination.value or "").strip()
        spec = {"source": source, "proto": proto, "port": port, "destination": dest}
        if not dest:
            errors["destination"] = "enter a destination: a Service name, an IP address, or IP:port"
            return spec, errors, notes
        host, dport, service = self._resolve(dest, port, proto, errors, notes)
        if "destination" in errors:
            return spec, errors, notes
        if dport is not None and port is not None and port != dport and proto != "icmp":
            errors["port"] = f"the destination already says port {dport}: clear this field or make them equal"
        if proto == "icmp" and (port is not None or dport is not None) and "port" not in errors:
            notes["port"] = "icmp has no ports: the port is not used"
        spec.update(host=host, dport=dport if dport is not None else port, service=service)
        return spec, errors, notes

    def _resolve(self, dest, port, proto, errors, notes):
        """(ip, port or None, service name or None) for the destination text."""
        host, dport = dest, None
        if dest.count(":") == 1:
            host, _, ptext = dest.partition(":")
            if _looks_numeric(host) or ptext.isdigit() or not ptext:
                p, msg = check_port(ptext if ptext else "x", "the destination's port")
                if msg:
                    errors["destination"] = msg if ptext else f"{dest!r}: nothing after the ':' (write IP:port)"
                    return None, None, None
                dport = p
        elif dest.count(":") > 1:
            try:
                ipaddress.ip_address(dest)
            except ValueError:
                errors["destination"] = f"{dest!r} is not an IP address"
                return None, None, None
            errors["destination"] = "IPv6 destinations are not in these lessons' topologies (use IPv4)"
            return None, None, None
        try:
            ipaddress.ip_address(host)
            return host, dport, None
        except ValueError:
            pass
        if _looks_numeric(host) or host.replace(".", "").isdigit():
            errors["destination"] = f"{host!r} is not an IP address"
            return None, None, None
        if not all(ch.isalnum() or ch in "-./:_" for ch in dest):
            errors["destination"] = f"{dest!r} is neither an IP address nor a Service name"
            return None, None, None
        return self._service(dest, port, proto, errors, notes)

    def _service(self, text, port, proto, errors, notes):
        """Resolve a Service name: on a cluster through its objects, on a node through its rules."""
        if self.mode == "cluster":
            try:
                ipaddr, sport = self.net.resolve(text, port)
            except KplabError as e:
                names = ", ".join(s.key for s in self.net.cluster.services()) or "none"
                errors["destination"] = f"{e} (Services: {names})"
                return None, None, None
            notes["destination"] = f"Service {text} = {ipaddr}:{sport}"
            return ipaddr, sport, text
        views = self._node_services()
        want = text
        matches = []
        for v in views:
            name = v.name                      # ns/svc:port or ns/svc
            base, _, pname = name.partition(":")
            short = base.split("/", 1)[-1]
            aliases = {name, base, short}
            if pname:
                aliases |= {f"{short}:{pname}", f"{base}:{pname}"}
            if want in aliases and v.cluster_ip:
                matches.append(v)
        if port is not None:
            matches = [v for v in matches if v.port == port] or matches
        if not matches:
            known = sorted({v.name for v in views if v.cluster_ip})
            errors["destination"] = (f"no Service {text!r} in this node's rules"
                                     + (f" (Services: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''})"
                                        if known else " (its rules program no Services)"))
            return None, None, None
        v = matches[0]
        notes["destination"] = f"Service {v.name} = {v.cluster_ip}:{v.port}/{v.protocol}"
        if v.protocol and v.protocol != proto:
            notes["destination"] += f" (the Service is {v.protocol}, you send {proto})"
        return v.cluster_ip, v.port, v.name

    def _node_services(self):
        if self._services is None:
            from ..kube.explain import explain
            try:
                self._services = explain(self.node.ruleset)
            except KplabError:
                self._services = []
        return self._services

    # ------------------------------------------------------------------ build and send

    def build(self):
        """The packet the form describes (first packet of a new connection), or None."""
        if not self.validate():
            return None
        spec, _, _ = self._parse()
        if self.mode != "node":
            return None            # on a cluster the network builds it at the sender's node
        try:
            return self.node.packet(spec["source"], spec["host"], spec["proto"],
                                    spec["dport"] if spec["dport"] is not None else
                                    (None if spec["proto"] == "icmp" else 80), self._sport)
        except KplabError as e:
            self.fields["destination"].set(str(e))
            return None

    def send(self, **values):
        """Send the form's packet (after `set(**values)`); show and return the result, or None."""
        if values and not self.set(**values):
            self._say("fix the fields marked ✗ first")
            return None
        if not self.validate():
            self._say("fix the fields marked ✗ first")
            return None
        spec, _, _ = self._parse()
        try:
            if self.mode == "node":
                packet = self.build()
                if packet is None:
                    self._say("fix the fields marked ✗ first")
                    return None
                result = self.node.send(packet, spec["source"])
            else:
                dport = spec["dport"]
                result = self.net.send(spec["source"], spec["host"], spec["proto"],
                                       dport if dport is not None else (None if spec["proto"] == "icmp" else 80),
                                       sport=self._sport)
                packet = result.packet
        except KplabError as e:
            self.fields["destination"].set(str(e))
            self._say("not sent")
            return None
        self._sport = SPORT_FIRST if self._sport >= 60999 else self._sport + 1
        self.packet, self.result = packet, result
        self._show(result)
        self._say("")
        if self.on_trace is not None:
            try:
                self.on_trace(result)
            except Exception as e:                     # a notebook callback's bug: shown, not raised
                self._say(f"on_trace raised {type(e).__name__}: {e}")
        return result

    def _say(self, text):
        self.status.value = message_html(text, "error") if text else ""
        self._texts["status"] = text

    def _show(self, result):
        if hasattr(result, "hops"):
            last = result.text().splitlines()[-1]
            summary = f"{result.verdict}: {last}"
            journey = result.text()
        else:
            summary = result.summary()
            journey = result.journey(verbose=False)
        self._texts["summary"] = summary
        self._texts["journey"] = journey
        self.summary_html.value = f"<b>{esc(summary)}</b>"
        self.journey_html.value = pre(journey)
        try:
            self._drawing = _viz.journey(result, into=self._drawing)
            self.picture.show(self._drawing)
        except Exception as e:                         # a drawing problem must not lose the result
            self.picture.show_text(f"(no picture: {type(e).__name__}: {e})")

    # ------------------------------------------------------------------ text twin

    @property
    def outputs(self) -> dict:
        return {"summary": self._texts["summary"], "journey": self._texts["journey"]}

    def text(self) -> str:
        where = "node" if self.mode == "node" else "cluster"
        lines = [f"PacketBuilder ({where}): from {self.source.value} to {self.destination.value or '?'} "
                 f"{self.proto.value} port {self.port.value or '(default)'}"]
        lines += [f"  {k}: ✗ {v}" for k, v in self.messages.items() if v]
        lines.append(self._texts["summary"])
        if self._texts["journey"]:
            lines.append(self._texts["journey"])
        return "\n".join(lines)


__all__ = ["PacketBuilder", "PROTOCOLS", "check_port"]
