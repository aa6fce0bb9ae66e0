"""The course: every notebook has the agreed shape, is stored without outputs, and runs top to
bottom with no error and nothing printed to stderr (no warnings)."""
import json
import os
import re
from pathlib import Path

import pytest

from tests._require import require

NOTEBOOK_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
COURSE = range(0, 11)


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _source(cell) -> str:
    return "".join(cell["source"])


def test_the_course_is_numbered_in_reading_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(COURSE), f"notebooks/ should hold 00-...10-... once each, has {IDS}"
    assert all(re.fullmatch(r"\d\d-[a-z0-9-]+\.ipynb", p.name) for p in NOTEBOOKS), IDS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
                f"{path.name}: strip outputs before committing (nbstripout)")
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: strip the saved widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_opens_with_goals_prerequisites_time_and_ends_with_a_summary(path):
    cells = _cells(path)
    top = _source(cells[0])
    n = int(path.name[:2])
    assert cells[0]["cell_type"] == "markdown" and top.startswith(f"# {n}. "), f"{path.name}: '# {n}. Title' first"
    for word in ("Goals", "Prerequisites", "Time"):
        assert f"**{word}" in top, f"{path.name}: the first cell states **{word}**"
    markdown = [_source(c) for c in cells if c["cell_type"] == "markdown"]
    assert any(m.lstrip().startswith("## Summary") for m in markdown), f"{path.name}: end with '## Summary'"
    if n >= 1:
        assert any(m.lstrip().startswith("## Exercises") for m in markdown), f"{path.name}: '## Exercises'"
    if n < max(COURSE):
        assert "**Next:**" in "\n".join(markdown[-2:]), f"{path.name}: point at the next notebook at the end"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_headings_in_order_and_cells_short(path):
    level = 0
    for cell in _cells(path):
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            in_code = False
            for line in src.splitlines():
                if line.startswith("```"):
                    in_code = not in_code
                m = re.match(r"(#+) ", line)
                if m and not in_code:
                    new = len(m.group(1))
                    assert new <= level + 1, f"{path.name}: heading {line!r} skips a level (after h{level})"
                    level = new
        else:
            assert len(src.splitlines()) <= 15, f"{path.name}: a code cell of {len(src.splitlines())} lines: " \
                                                "move the logic into the library"


# Prepended to a second run: user code may not open a connection or start a process (the kernel's
# own ZMQ sockets are made by libzmq, not the socket module, and exist before this cell runs).
GUARD = """import os as _os, socket as _socket, subprocess as _subprocess
def _kplab_refuse(*args, **kwargs):
    raise PermissionError("a kplab notebook tried to use the network or run a program")
_socket.socket.connect = _socket.socket.connect_ex = _kplab_refuse
_socket.create_connection = _socket.getaddrinfo = _kplab_refuse
_subprocess.Popen.__init__ = _kplab_refuse
_os.system = _os.posix_spawn = _os.posix_spawnp = _kplab_refuse"""

_RUNS: dict = {}


def _execute(path, guarded: bool):
    """Run a notebook (cached per session); with `guarded`, after GUARD."""
    key = (path, guarded)
    if key not in _RUNS:
        try:
            import nbformat
            from nbclient import NotebookClient
        except ImportError:
            require(False, "nbclient and nbformat are needed to execute notebooks (pip install -e '.[test]')")
        nb = nbformat.read(str(path), as_version=4)
        if guarded:
            nb.cells.insert(0, nbformat.v4.new_code_cell(GUARD))
        env_before = os.environ.pop("KPLAB_INSTRUCTOR", None)
        try:
            NotebookClient(nb, timeout=120, kernel_name="python3", coalesce_streams=True,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            if env_before is not None:
                os.environ["KPLAB_INSTRUCTOR"] = env_before
        _RUNS[key] = nb.cells[1:] if guarded else nb.cells
    return _RUNS[key]


def _problems(cells) -> list:
    problems = []
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                problems.append(f"cell {i} printed to stderr: {out.get('text', '')[:300]}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_top_to_bottom_without_errors_or_warnings(path):
    problems = _problems(_execute(path, guarded=False))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


_TIMING = re.compile(r"\d[\d,]*(\.\d+)?\s*(ms|µs|us|s|seconds?|minutes?)\b")
_WIDGET_ID = re.compile(r'"?model_id"?\s*[:=]\s*"?[0-9a-f]{16,}"?')


def _comparable(cells) -> list:
    """Every output of every cell, minus what must differ between runs: widget ids, measured times."""
    out = []
    for cell in cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = dict(o.get("data", {}))
            data.pop("application/vnd.jupyter.widget-view+json", None)
            text = json.dumps([o.get("output_type"), o.get("name"), o.get("text"), data], sort_keys=True)
            out.append(_WIDGET_ID.sub("model_id", _TIMING.sub("<time>", text)))
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_without_network_or_subprocesses_and_reproduces_its_outputs(path):
    """A second run, with sockets and subprocesses refused, gives the same outputs (same seeds)."""
    first = _execute(path, guarded=False)
    second = _execute(path, guarded=True)
    problems = _problems(second)
    assert not problems, f"{path.name} with the network and subprocesses refused:\n" + "\n".join(problems)
    a, b = _comparable(first), _comparable(second)
    assert len(a) == len(b), f"{path.name}: the two runs made a different number of outputs"
    diffs = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    assert not diffs, f"{path.name}: output {diffs[0]} differs between two runs:\n{a[diffs[0]][:400]}\n" \
                      f"{b[diffs[0]][:400]}"


def test_the_guard_really_refuses(tmp_path):
    import subprocess
    import sys
    probe = GUARD + """
import socket, subprocess, urllib.request
for attempt in (lambda: socket.create_connection(("127.0.0.1", 9)), lambda: subprocess.run(["true"]),
                lambda: urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)):
    try:
        attempt()
    except PermissionError:
        print("refused")
    except Exception as exc:
        print("refused" if isinstance(exc.__context__ or exc.__cause__ or exc, PermissionError)
              or "PermissionError" in repr(exc) else f"allowed: {exc!r}")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["refused"] * 3, out
