"""The core is standard library only; plotting and widgets stay in their own layers.

`kplab`, `kplab.netfilter`, `kplab.kube` and `kplab.cli` must import without matplotlib, pandas,
ipywidgets, IPython or numpy, so that the CLI starts fast and runs anywhere. PyYAML is a runtime
dependency, but only the Kubernetes loader needs it and imports it when called. Only
`kplab/viz/`, `kplab/widgets/` and `kplab/exercises/` may import the notebook libraries.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kplab"
UPPER_LAYERS = {"viz", "widgets", "exercises"}
NOTEBOOK_LIBS = {"matplotlib", "pandas", "ipywidgets", "IPython"}
NOT_AT_IMPORT = NOTEBOOK_LIBS | {"numpy", "yaml"}

# Runs in a fresh interpreter: imports the given modules and reports which forbidden top-level
# modules they loaded, each with the chain of kplab source lines that led to its import.
PROBE = r"""
import importlib, json, os, sys, traceback
forbidden, modules = set(json.loads(sys.argv[1])), json.loads(sys.argv[2])
marker = os.sep + "kplab" + os.sep
blame = {}

class Spy:
    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in forbidden and top not in blame:
            blame[top] = " -> ".join(
                f"{f.filename}:{f.lineno}" for f in traceback.extract_stack() if marker in f.filename
            )
        return None

before = set(sys.modules)
sys.meta_path.insert(0, Spy)
for module in modules:
    importlib.import_module(module)
loaded = {n.partition(".")[0] for n in set(sys.modules) - before} & forbidden
print(json.dumps({top: blame.get(top, "?") for top in sorted(loaded)}))
"""


def core_files():
    files = sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in UPPER_LAYERS and "__pycache__" not in path.parts
    )
    assert PACKAGE / "__init__.py" in files, f"no package at {PACKAGE}"
    return files


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def heavy_imports(modules):
    """Forbidden modules that importing `modules` loads, in a fresh interpreter, with blame."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(sorted(NOT_AT_IMPORT)), json.dumps(modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # only a guard against a hang, not a speed requirement
    )
    assert result.returncode == 0, f"importing {modules} failed:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param(["kplab", "kplab.netfilter", "kplab.cli"], id="entry-points"),
        pytest.param(
            [module_name(p) for p in core_files() if p.name != "__main__.py"], id="every-core-module"
        ),
    ],
)
def test_core_imports_no_heavy_modules(modules):
    loaded = heavy_imports(modules)
    assert not loaded, "the core must not import these at import time (import them inside the function " \
        "that needs them, or move the code to kplab.viz/widgets):\n" + "\n".join(
            f"  {top}: imported via {chain.replace(str(ROOT) + os.sep, '')}" for top, chain in loaded.items()
        )


def imported_names(tree):
    """(top-level module, line) for every import in `tree`, however deeply nested."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0], node.lineno
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value.partition(".")[0], node.lineno


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_source_never_imports_notebook_libraries(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = [f"{path.relative_to(ROOT)}:{line}: {name}" for name, line in imported_names(tree) if name in NOTEBOOK_LIBS]
    assert not found, "only kplab/viz, kplab/widgets and kplab/exercises may import these:\n" + "\n".join(found)


# --------------------------------------------------------------------------
# Safety: only the kernel harness may run programs or open sockets.

SAFE_EXEMPT = ("kernelcheck",)
SAFETY_BANNED = {"subprocess", "socket", "ctypes", "urllib", "http", "ftplib", "smtplib", "telnetlib"}


def _library_files():
    root = Path(__file__).resolve().parent.parent / "kplab"
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SAFE_EXEMPT:
            continue
        yield path


@pytest.mark.parametrize("path", list(_library_files()), ids=lambda p: p.name)
def test_library_runs_no_programs_and_opens_no_sockets(path):
    """The library and the notebooks never run a subprocess or open a network
    connection; only kplab.kernelcheck (the kernel harness) does, inside
    namespaces of its own. YAML is read with safe_load only, and nothing
    evaluates user text."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            names = []
        bad = SAFETY_BANNED.intersection(names)
        assert not bad, f"{path}:{node.lineno} imports {sorted(bad)}"
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            assert name not in ("eval", "exec", "system", "popen"), f"{path}:{node.lineno} calls {name}()"
            if name in ("load", "load_all") and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "yaml":
                pytest.fail(f"{path}:{node.lineno}: use yaml.safe_load, not yaml.{name}")
