"""The palette: Okabe–Ito colours by role, and cues other than colour."""


def test_okabe_ito_is_the_published_set(viz):
    assert viz.OKABE_ITO == {
        "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
        "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
    }


def test_roles_have_palette_colours_and_non_colour_cues(viz):
    for role in ("matched", "not_matched", "nat", "drop", "accept", "reject", "path"):
        assert role in viz.ROLE, role
        assert viz.is_palette_colour(viz.ROLE[role]), role
    for name, s in viz.STYLE.items():
        assert viz.is_palette_colour(s.color), name
        assert s.label, name
        assert s.marker or s.linestyle != "-", f"{name} has no cue besides colour"
    # the verdicts differ in colour, marker and symbol alike
    verdicts = [viz.STYLE[r] for r in ("accept", "drop", "reject", "dnat")]
    for attr in ("color", "marker", "symbol"):
        assert len({getattr(s, attr) for s in verdicts}) == len(verdicts), attr


def test_verdict_roles(viz):
    assert viz.verdict_role("DROP") == "drop"
    assert viz.verdict_role("DNAT") == "dnat"
    assert viz.verdict_role("MASQUERADE") == "snat"
    assert viz.verdict_role("JUMP:KUBE-SERVICES") == "matched"
    assert viz.verdict_role(None) == "not_matched"
    assert not viz.is_palette_colour("#123456")
    assert viz.is_palette_colour("#0072b2")
