"""Interactive apps for the notebooks (ipywidgets 8), on top of kplab.viz.

* `ServiceLab(cluster, service)`: scale a Deployment, flip Pod readiness, watch
  kube-proxy's rules, the endpoint odds and open connections follow.
* `PacketBuilder(node_or_cluster)`: a form that builds a packet and sends it.
* `TraceStepper(trace)`: step through a trace rule by rule.
* `RuleEditor(text)`: edit a ruleset, load it, trace packets through it.
* `ExercisePanel(exercise)`: answer an exercise, check it, ask for hints.
* `ScaleLab()`: measure render, parse and trace costs at a cluster size of your choice.

Each is a plain class: `.widget` is the ipywidgets tree, `.text()` the text
twin (what static pages show when no kernel is live), and the methods the
controls call can be called directly.
"""
from .exercise_panel import ExercisePanel
from .packet_builder import PacketBuilder
from .rule_editor import RuleEditor
from .scale_lab import ScaleLab
from .service_lab import ServiceLab
from .trace_stepper import TraceStepper

__all__ = ["ExercisePanel", "PacketBuilder", "RuleEditor", "ScaleLab", "ServiceLab", "TraceStepper"]
