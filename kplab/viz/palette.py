"""Colours, line styles and markers by role, so every diagram says the same
thing the same way.

Colours are the Okabe–Ito palette (distinguishable with the common colour
vision deficiencies), plus two neutral greys for what is inactive. Colour is
never the only cue: every role also has a line style, a marker, a hatch and
a text symbol, and the diagrams label what they colour.

>>> ROLE["drop"]
'#D55E00'
>>> STYLE["drop"].marker, STYLE["drop"].symbol
('X', '✗')
"""
from __future__ import annotations

from typing import NamedTuple

#: The eight colours of Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Greys and white for what is inactive (boxes not on the path, backgrounds).
NEUTRAL = {
    "grey": "#999999",
    "light_grey": "#DDDDDD",
    "pale": "#F4F4F4",
    "white": "#FFFFFF",
}

#: Every colour a kplab diagram may use.
PALETTE = {**OKABE_ITO, **NEUTRAL}


class RoleStyle(NamedTuple):
    """How one role is drawn: colour plus the cues that do not need colour."""

    color: str
    linestyle: object       # a matplotlib line style ("-", "--", ":", "-." or a dash tuple)
    marker: str             # a matplotlib marker
    hatch: str | None       # a matplotlib hatch for filled areas, or None
    symbol: str             # a text symbol for labels and the text twin
    label: str              # the word used in legends


#: Every role, with all its cues.
STYLE = {
    # the packet's way through the node
    "path": RoleStyle(OKABE_ITO["blue"], "-", ">", None, "→", "packet path"),
    "not_taken": RoleStyle(NEUTRAL["grey"], ":", "", None, "·", "not on the path"),
    "todo": RoleStyle(OKABE_ITO["sky_blue"], "--", ">", None, "⇢", "path still to come"),
    "current": RoleStyle(OKABE_ITO["yellow"], "-", "*", None, "★", "current step"),
    # rules
    "matched": RoleStyle(OKABE_ITO["blue"], "-", "o", None, "▶", "rule matched"),
    "not_matched": RoleStyle(NEUTRAL["grey"], ":", "x", None, "✗", "rule did not match"),
    "not_evaluated": RoleStyle(NEUTRAL["grey"], ":", "", None, " ", "not evaluated"),
    # verdicts
    "accept": RoleStyle(OKABE_ITO["bluish_green"], "-", "^", None, "✓", "ACCEPT"),
    "drop": RoleStyle(OKABE_ITO["vermillion"], "-.", "X", "xx", "✗", "DROP"),
    "reject": RoleStyle(OKABE_ITO["orange"], (0, (4, 1, 1, 1)), "s", "//", "⊘", "REJECT"),
    "return": RoleStyle(NEUTRAL["grey"], ":", "<", None, "↩", "falls through / returns"),
    # address translation
    "nat": RoleStyle(OKABE_ITO["reddish_purple"], "--", "D", "..", "⇄", "address translation"),
    "dnat": RoleStyle(OKABE_ITO["reddish_purple"], "--", "D", "..", "⇄", "DNAT (destination changed)"),
    "snat": RoleStyle(OKABE_ITO["reddish_purple"], (0, (1, 1)), "P", "\\\\", "⇆",
                      "SNAT / MASQUERADE (source changed)"),
    "masquerade": RoleStyle(OKABE_ITO["reddish_purple"], (0, (1, 1)), "P", "\\\\", "⇆", "MASQUERADE"),
    "conntrack": RoleStyle(OKABE_ITO["black"], (0, (3, 2)), "d", None, "↺", "conntrack reverses the translation"),
    "mark": RoleStyle(OKABE_ITO["sky_blue"], "-", "v", None, "◆", "mark set"),
    # places and probabilities
    "wire": RoleStyle(OKABE_ITO["black"], "--", "|", None, "═", "wire between nodes"),
    "route": RoleStyle(OKABE_ITO["black"], "-", "D", None, "◇", "routing decision"),
    "exact": RoleStyle(OKABE_ITO["blue"], "-", "s", None, "■", "exact share"),
    "observed": RoleStyle(OKABE_ITO["orange"], "--", "o", "//", "▨", "observed share"),
    # neutral drawing
    "box": RoleStyle(OKABE_ITO["black"], "-", "s", None, "□", "box"),
    "idle": RoleStyle(NEUTRAL["grey"], ":", "", None, " ", "inactive"),
}

#: Role -> colour (hex), for the common case.
ROLE = {name: s.color for name, s in STYLE.items()}
#: Role -> line style / marker / hatch / text symbol.
LINESTYLE = {name: s.linestyle for name, s in STYLE.items()}
MARKER = {name: s.marker for name, s in STYLE.items()}
HATCH = {name: s.hatch for name, s in STYLE.items()}
SYMBOL = {name: s.symbol for name, s in STYLE.items()}

#: Background fills (light tints are drawn with alpha over white, from the palette colours).
FILL = {
    "box": NEUTRAL["white"],
    "idle": NEUTRAL["pale"],
    "path": OKABE_ITO["sky_blue"],
    "current": OKABE_ITO["yellow"],
}


def style(role: str) -> RoleStyle:
    """The full style of `role` (KeyError names the known roles)."""
    try:
        return STYLE[role]
    except KeyError:
        raise KeyError(f"unknown role {role!r}; roles: {', '.join(sorted(STYLE))}") from None


def verdict_role(verdict: str | None) -> str:
    """The role of a trace verdict word (ACCEPT, DROP, DNAT, JUMP:X, ...)."""
    if not verdict:
        return "not_matched"
    v = verdict.upper()
    if v in ("ACCEPT", "DROP", "REJECT"):
        return v.lower()
    if v == "DNAT":
        return "dnat"
    if v in ("SNAT", "MASQUERADE"):
        return "snat"
    if v == "RETURN":
        return "return"
    return "matched"


def is_palette_colour(colour) -> bool:
    """Whether `colour` (hex, name or RGB(A) tuple) is one of PALETTE's colours."""
    from matplotlib.colors import to_hex
    try:
        h = to_hex(colour, keep_alpha=False).upper()
    except (ValueError, TypeError):
        return False
    return h in {c.upper() for c in PALETTE.values()}


__all__ = ["FILL", "HATCH", "LINESTYLE", "MARKER", "NEUTRAL", "OKABE_ITO", "PALETTE", "ROLE", "RoleStyle",
           "STYLE", "SYMBOL", "is_palette_colour", "style", "verdict_role"]
