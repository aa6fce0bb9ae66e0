"""The widgets in a real kernel: a tiny generated notebook creates and displays each one.

Also checks the static fallback: with no widget state saved (GitHub, nbconvert
of a notebook saved without it), the HTML export shows each widget's text twin.
"""

import pytest

from tests._require import require
from tests.widgets.conftest import DATA, ROOT

CELLS = [
    f"""import sys
sys.path.insert(0, {str(ROOT)!r})
import kplab
from kplab.kube.cluster import Cluster
from kplab.widgets import PacketBuilder, RuleEditor, ServiceLab, TraceStepper
from IPython.display import display
cluster = Cluster.load({str(DATA / 'clusters' / 'seed.yaml')!r}).scale("backend", 3)
rules = open({str(DATA / 'rules' / 'seed-node.rules')!r}).read()""",
    """lab = ServiceLab(cluster)
lab.send(10)
lab.set_replicas(4)
lab""",
    """builder = PacketBuilder(kplab.standard_node(kplab.parse_rules(rules)))
builder.send(source="client", destination="backend")
display(builder)""",
    """trace = kplab.standard_node(kplab.parse_rules(rules)).send_from("client", "10.96.5.81", "tcp", 80)
stepper = TraceStepper(trace)
stepper.go(4)
stepper""",
    """editor = RuleEditor(rules)
editor.load("*filter\\n-A INPUT -j NOWHERE\\nCOMMIT\\n")
editor""",
    """PacketBuilder(cluster)""",
]

TWINS = ["ServiceLab: Service default/backend", "PacketBuilder (node): from client to backend",
         "TraceStepper:", "RuleEditor", "PacketBuilder (cluster)"]


@pytest.mark.slow
def test_widgets_display_in_a_kernel_and_degrade_to_text(tmp_path):
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbconvert import HTMLExporter
    except ImportError:
        require(False, "nbclient, nbformat and nbconvert are needed to run a notebook (pip install -e '.[test]')")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, "\n".join("\n".join(o.get("traceback", [])) for o in errors)
    streams = [o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not any("Traceback" in s for s in streams), streams
    shown = [o for o in outputs if o.get("output_type") in ("display_data", "execute_result")]
    assert len(shown) == len(TWINS)
    for out, twin in zip(shown, TWINS):
        data = out["data"]
        assert "application/vnd.jupyter.widget-view+json" in data
        assert data["text/plain"].startswith(twin)
        assert "kplab-text-twin" in data["text/html"]
    # Without saved widget state (GitHub, nbconvert of a notebook saved without it),
    # the HTML shows the text twins instead of empty widget placeholders.
    nb.metadata.pop("widgets", None)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count('class="kplab-text-twin"') == len(TWINS)
    assert "ServiceLab: Service default/backend" in html and "replicas 3 -&gt; 4" in html
    assert "✗ not loaded: line 2" in html
