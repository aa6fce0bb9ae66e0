"""Drawing: PNG, HTML with alt text and text twin, plain text, no global matplotlib state."""
import subprocess
import sys


def test_reprs(viz, path_traces):
    d = viz.hook_map(path_traces["forwarded"])
    png = d._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = d._repr_html_()
    assert 'alt="Netfilter hook diagram: tcp 10.244.1.7:40000 &gt; 10.244.2.5:80' in html
    assert "data:image/png;base64," in html and "<details>" in html
    assert "1. in: tcp 10.244.1.7:40000 &gt; 10.244.2.5:80 arrives from client" in html
    assert str(d) == d.text
    assert repr(d).startswith("<Drawing hook_map: ")
    assert d.png() is d.png()                                  # cached until redrawn
    import dataclasses

    import pytest
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.text = "x"


def test_pretty_is_the_text_twin(viz, path_traces):
    from IPython.lib.pretty import pretty
    d = viz.journey(path_traces["local-in"])
    assert pretty(d) == d.text


def test_into_accepts_only_drawings_and_figures(viz):
    import pytest
    with pytest.raises(TypeError):
        viz.hook_map(into="figure")


def test_no_pyplot_and_no_backend_change(root):
    """Drawing and rendering must not import pyplot or choose a backend."""
    probe = (
        "import sys, matplotlib\n"
        "before = matplotlib.rcParams._get_backend_or_none()\n"
        "import kplab, kplab.viz as viz\n"
        "node = kplab.standard_node(kplab.load_rules('data/rules/seed-node.rules'))\n"
        "d = viz.hook_map(node.send_from('client', '10.96.5.81', 'tcp', 80)); d.png(); d._repr_html_()\n"
        "viz.journey(node.send_from('node', '10.244.2.5', 'tcp', 80)).png()\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == before, 'the backend changed'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_core_still_imports_no_notebook_library(root):
    probe = ("import sys, kplab, kplab.netfilter, kplab.kube.proxier, kplab.kube.explain, kplab.kube.flow\n"
             "print(sorted(m for m in ('matplotlib', 'pandas', 'ipywidgets', 'IPython') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_into_a_foreign_figure_and_across_kinds(viz, path_traces):
    from matplotlib.figure import Figure
    fig = Figure()
    d = viz.journey(path_traces["forwarded"], into=fig)
    assert d.figure is fig and d.png()[:4] == b"\x89PNG"
    h = viz.hook_map(path_traces["forwarded"], into=d)        # another kind: the figure is cleared and reused
    assert h.figure is fig and h.kind == "hook_map" and "FORWARD" in h.labels()
    assert h.png()[:4] == b"\x89PNG"


def _pixels(png):
    import io

    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)


def _full(fig):
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _pixels(buf.getvalue())


def test_fast_png_matches_a_full_render(viz, path_traces, rules10, service_trace):
    """A redraw renders only the changed artists over a cached background: same pixels as savefig."""
    import numpy as np
    t1, t2 = path_traces["forwarded"], path_traces["local-in"]
    cases = [
        (lambda d=None: viz.hook_map(t1, into=d), lambda d: viz.hook_map(t2, step=4, into=d)),
        (lambda d=None: viz.chain_tree(rules10, "default/backend:http", into=d),
         lambda d: viz.chain_tree(rules10, "default/backend:http", trace=service_trace, into=d)),
        (lambda d=None: viz.journey(t1, into=d), lambda d: viz.journey(service_trace, into=d)),
        (lambda d=None: viz.probabilities(rules10, "default/backend:http", observed=30, into=d),
         lambda d: viz.probabilities(rules10, "default/backend:http", observed=40, into=d)),
    ]
    for first, second in cases:
        d = first()
        d.png()                                        # builds the cached background
        d2 = second(d)
        assert d2.figure is d.figure
        fast, full = _pixels(d2.png()), _full(d2.figure)
        assert fast.shape == full.shape, d2.kind
        assert np.abs(fast - full).max() <= 2, d2.kind
