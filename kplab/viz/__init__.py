"""kplab.viz: the diagrams and tables of the notebooks.

Built on the core's results (Trace, Ruleset, Journey, conntrack), never
deciding anything again. Uses matplotlib (through `matplotlib.figure.Figure`
only: no pyplot, no backend switch, nothing global) and pandas; the core
never imports this package.

>>> import kplab, kplab.viz as viz                          # doctest: +SKIP
>>> node = kplab.standard_node(kplab.load_rules("data/rules/seed-node.rules"))  # doctest: +SKIP
>>> viz.hook_map(node.send_from("client", "10.96.5.81", dport=80))              # doctest: +SKIP
"""
from .drawing import DPI, Drawing, VizError
from .figures import chain_tree, fraction_text, hook_map, journey, probabilities, resolve_service
from .palette import (FILL, HATCH, LINESTYLE, MARKER, NEUTRAL, OKABE_ITO, PALETTE, ROLE, STYLE, SYMBOL, RoleStyle,
                      is_palette_colour, style, verdict_role)
from .scale import scale_plot
from .tables import (CONNTRACK_COLUMNS, DIFF_COLUMNS, RULESET_COLUMNS, TRACE_COLUMNS, conntrack_table, diff_table,
                     rule_row, ruleset_table, trace_table)

__all__ = [
    # figures
    "DPI", "Drawing", "VizError", "chain_tree", "fraction_text", "hook_map", "journey", "probabilities",
    "resolve_service", "scale_plot",
    # tables
    "CONNTRACK_COLUMNS", "DIFF_COLUMNS", "RULESET_COLUMNS", "TRACE_COLUMNS", "conntrack_table", "diff_table",
    "rule_row", "ruleset_table", "trace_table",
    # palette
    "FILL", "HATCH", "LINESTYLE", "MARKER", "NEUTRAL", "OKABE_ITO", "PALETTE", "ROLE", "RoleStyle", "STYLE",
    "SYMBOL", "is_palette_colour", "style", "verdict_role",
]
