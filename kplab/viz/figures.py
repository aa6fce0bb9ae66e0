"""The diagrams: each returns a `Drawing` (figure + text twin + alt text).

* `hook_map(trace=None, *, step=None, into=None)`: the netfilter hooks and
  their tables; a trace's path numbered step by step.
* `chain_tree(ruleset, root, *, table="nat", trace=None, into=None)`: the
  jump graph from a chain or Service down to its DNATs, with probabilities.
* `journey(journey_or_trace, *, into=None)`: swim lanes of a packet's way
  across Pods, nodes and the wire, with address changes.
* `probabilities(ruleset, service, *, observed=0, seed=0, into=None)`: exact
  and observed shares of a Service's endpoints.

Every function takes `into=` an earlier Drawing (or a Figure) to redraw in
place: the Figure object is reused, and when the layout is the same only the
changing artists are touched (and re-rendered: see `Drawing.png`).
"""
from ._chains import chain_tree, fraction_text, resolve_service
from ._hookmap import hook_map
from ._journey import journey
from ._probabilities import probabilities
from .drawing import Drawing, VizError

__all__ = ["Drawing", "VizError", "chain_tree", "fraction_text", "hook_map", "journey", "probabilities",
           "resolve_service"]
