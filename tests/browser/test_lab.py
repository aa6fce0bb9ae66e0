"""The course in a real browser: JupyterLab driven by Playwright through Debian's Chromium.

* Notebook 7's ServiceLab reacts to a learner: the replicas slider moved with the keyboard and a
  Pod's readiness toggled with the mouse both change the rules diff and the charts.
* Every notebook runs in JupyterLab (Run > Run All Cells) with no traceback, no widget that failed
  to display ("Error displaying widget") and none left half-loaded ("Loading widget...").

The test starts its own JupyterLab on a free loopback port, with a token and its own Jupyter
config, data, runtime and settings directories, on a copy of notebooks/ and data/ (so the
notebooks' ``../data`` paths work and the repository's notebooks are never saved with outputs).
It uses /usr/bin/chromium (``KPLAB_CHROMIUM`` overrides it); never ``playwright install``.
Screenshots and the server's log go to artifacts/browser/ (``KPLAB_ARTIFACTS`` overrides it).
Run: ``.venv/bin/python -m pytest -q tests/browser``.
"""
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests._require import require
from tests.browser.conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SERVICE_LAB_NOTEBOOK = "07-pod-to-service.ipynb"
CHROMIUM = os.environ.get("KPLAB_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TOKEN = "kplab-browser-test"
STEP = 60_000                 # ms: the longest any single step (load, a widget update) may take
RUN_ALL = 240                 # s: the longest one notebook's Run All Cells may take on a busy 2-core machine
VIEWPORT = {"width": 1400, "height": 1000}
MAX_WIDGET_SHOTS = 4          # element screenshots of the first widgets of each notebook

# JupyterLab settings for the test server: no "Jupyter news?" toast over the screenshots, and every
# cell kept in the page (the default windowing leaves cells far off screen out of the DOM).
OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}

STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
CELL_STATE_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const prompts = [];
  for (const cell of panel.querySelectorAll('.jp-Notebook .jp-CodeCell')) {
    const source = cell.querySelector('.jp-InputArea-editor');
    if (source && source.textContent.trim() === '') continue;      // an empty cell never runs
    const prompt = cell.querySelector('.jp-InputArea-prompt');
    prompts.push(prompt ? prompt.textContent.trim() : '');
  }
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  const errors = [...panel.querySelectorAll(
      ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
    .map(e => e.textContent).filter(t => t.includes('Traceback'));
  const dialogs = [...document.querySelectorAll('.jp-Dialog')].map(d => d.textContent.trim());
  return {prompts, status: indicator ? indicator.getAttribute('data-status') : null,
          kernel: kernel ? kernel.status : null, errors, dialogs};
}"""


# ---------------------------------------------------------------------------- fixtures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prerequisites():
    require(importlib.util.find_spec("playwright") is not None,
            "the browser test needs Playwright for Python (pip install -e '.[test]'; "
            "never `playwright install`: it drives Debian's chromium)")
    require(os.access(CHROMIUM, os.X_OK),
            f"the browser test needs Chromium at {CHROMIUM} (apt-get install chromium; "
            "or point KPLAB_CHROMIUM at another Chromium)")
    require(importlib.util.find_spec("jupyterlab") is not None and importlib.util.find_spec("ipywidgets") is not None,
            "the browser test needs JupyterLab and ipywidgets (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    """A JupyterLab server on a copy of the course: yields its base URL; killed by PID at the end."""
    _prerequisites()
    artifacts = request.getfixturevalue("artifacts")
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "data", root / "data")
    home = tmp_path_factory.mktemp("jupyter-home")
    settings = home / "app-settings"
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES))
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_PLATFORM_DIRS="1",
               # the kernel imports this checkout's kplab, installed or not
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
           f"--LabApp.app_settings_dir={settings}",
           "--LabApp.expose_app_in_browser=True"]      # window.jupyterapp: to see the notebook's kernel
    if os.geteuid() == 0:
        cmd.append("--allow-root")        # as root, jupyter lab refuses to start without it
    log_path = artifacts / "lab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STEP / 1000
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start in {STEP // 1000} s (exit {proc.poll()}); "
                                       f"its log ({log_path}) ends:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.25)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)      # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _api(url: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{url}{path}?token={TOKEN}", method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture
def page(request, lab, browser, artifacts):
    """A fresh page (screenshot kept if the test fails); afterwards every kernel is shut down (11 idle
    kernels would crowd 2 cores)."""
    from playwright.sync_api import expect
    pg = browser.new_page(viewport=VIEWPORT)
    pg.set_default_timeout(STEP)
    expect.set_options(timeout=STEP)
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            pg.screenshot(path=str(artifacts / f"FAILED-{name}.png"))
        except Exception as e:          # a crashed page must not hide the test's own failure
            print(f"no screenshot of the failure: {e}")
    pg.close()
    for session in _api(lab, "/api/sessions"):
        try:
            _api(lab, f"/api/sessions/{session['id']}", "DELETE")
        except OSError:
            pass


# ---------------------------------------------------------------------------- helpers


def _shot(page, artifacts: Path, name: str, locator=None) -> Path:
    """A screenshot of the page, or of one element: JupyterLab scrolls inside its main area, so the
    viewport is made tall enough for the element first (and put back afterwards)."""
    path = artifacts / f"{name}.png"
    if locator is None:
        page.screenshot(path=str(path))
        return path
    box = locator.bounding_box() or {"height": 0}
    tall = min(6000, max(VIEWPORT["height"], int(box["height"]) + 400))
    page.set_viewport_size({"width": VIEWPORT["width"], "height": tall})
    try:
        locator.scroll_into_view_if_needed()
        page.wait_for_timeout(300)            # let Lumino lay the panels out again
        locator.screenshot(path=str(path))
    finally:
        page.set_viewport_size(VIEWPORT)
    return path


STARTED_JS = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
    .some(p => p.textContent.trim() !== '[ ]:' && p.textContent.trim() !== '')"""


# The notebook's own kernel, connected and idle. The toolbar's execution indicator alone is not
# enough: it can read "idle" before the session has a kernel, and Run All then asks for one.
KERNEL_READY_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def dismiss_dialogs(page, name: str) -> list:
    """Close any JupyterLab dialog (e.g. "Select Kernel"), accepting its default; returns their texts."""
    texts = []
    for _ in range(3):
        dialog = page.locator(".jp-Dialog")
        if dialog.count() == 0:
            break
        texts.append(" ".join(dialog.first.inner_text().split()))
        accept = dialog.first.locator(".jp-Dialog-button.jp-mod-accept")
        (accept.first.click() if accept.count() else page.keyboard.press("Escape"))
        page.wait_for_timeout(500)
    for text in texts:
        print(f"{name}: dismissed a dialog: {text}")
    return texts


def run_all_cells(page, name: str, attempts: int = 3) -> None:
    """Run > Run All Cells through the menu bar, as a learner would; checked by the first prompt that
    changes, and tried again (at most `attempts` times) if the click did not take."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect
    for attempt in range(1, attempts + 1):
        dismiss_dialogs(page, name)
        page.wait_for_function(KERNEL_READY_JS)
        page.keyboard.press("Escape")                                 # no menu left open
        page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})   # focus it
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        item = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
        expect(item).to_be_visible()
        item.click()
        try:
            page.wait_for_function(STARTED_JS, timeout=20_000)
            return
        except PlaywrightTimeout:
            print(f"{name}: Run All Cells did not start (attempt {attempt} of {attempts})")
            dismiss_dialogs(page, name)
    raise AssertionError(f"{name}: Run > Run All Cells started nothing in {attempts} attempts")


def open_and_run(page, lab: str, name: str) -> dict:
    """Open notebooks/`name` in JupyterLab, Run All Cells, wait until every cell ran (or one failed).

    Returns the final state: {"prompts": [...], "status": ..., "kernel": ..., "errors": [traceback texts],
    "dialogs": [texts of open dialogs]}."""
    page.goto(f"{lab}/lab/tree/notebooks/{name}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']")
    run_all_cells(page, name)
    deadline = time.monotonic() + RUN_ALL
    stable, last = 0, None
    while True:
        state = page.evaluate(CELL_STATE_JS)
        if state is not None and state["status"] == "idle" and state["kernel"] == "idle":
            ran = all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"])
            stopped = state["errors"] and not any("*" in p for p in state["prompts"])
            # idle twice in a row: the kernel also goes idle for a moment between two queued cells
            stable = stable + 1 if (ran or stopped) and state == last else 0
            if stable >= 2:
                return state
        last = state
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: Run All Cells did not finish in {RUN_ALL} s; last state {state}")
        page.wait_for_timeout(500)


def assert_widgets_rendered(page, name: str) -> None:
    from playwright.sync_api import expect
    expect(page.get_by_text("Loading widget")).to_have_count(0, timeout=STEP)
    broken = page.get_by_text("Error displaying widget")
    assert broken.count() == 0, f"{name}: {broken.count()} widget(s) failed to display: {broken.all_text_contents()}"


# ---------------------------------------------------------------------------- tests


def test_service_lab_reacts_to_slider_and_readiness(page, lab, artifacts):
    """Notebook 7: keyboard on the replicas slider and a click on a Pod's readiness redraw the lab."""
    from playwright.sync_api import expect
    assert (ROOT / "notebooks" / SERVICE_LAB_NOTEBOOK).exists(), f"notebooks/{SERVICE_LAB_NOTEBOOK} is missing"
    state = open_and_run(page, lab, SERVICE_LAB_NOTEBOOK)
    # a failing cell is test_notebook_runs_in_the_browser's to report; this test only needs the lab
    if state["errors"] and page.locator(".kplab-service-lab").count() == 0:
        raise AssertionError(f"{SERVICE_LAB_NOTEBOOK} failed before it showed a ServiceLab:\n"
                             + "\n".join(state["errors"]))
    assert_widgets_rendered(page, SERVICE_LAB_NOTEBOOK)

    # the first ServiceLab whose Deployment can be scaled (CSS classes set in kplab/widgets/service_lab.py)
    lab_widget = page.locator(".kplab-service-lab:has(.kplab-replicas .noUi-target:not([disabled]))").first
    expect(lab_widget).to_be_visible()
    lab_widget.scroll_into_view_if_needed()
    diff = lab_widget.locator(".kplab-rules-diff")
    chart = lab_widget.locator(".kplab-endpoint-chart img").first
    tree = lab_widget.locator(".kplab-chain-tree img").first
    handle = lab_widget.locator(".kplab-replicas .noUi-handle").first
    readout = lab_widget.locator(".kplab-replicas .widget-readout").first
    expect(chart).to_have_attribute("src", re.compile(r".+"))
    expect(tree).to_have_attribute("src", re.compile(r".+"))
    whole = page.locator(".jp-OutputArea-output:has(.kplab-service-lab)").first
    _shot(page, artifacts, "07-service-lab-0-before", whole)

    def snapshot():
        return diff.inner_text(), chart.get_attribute("src"), tree.get_attribute("src")

    # 1. the replicas slider, with the keyboard: one step up (down if it is at its maximum)
    text0, chart0, tree0 = snapshot()
    n = int(readout.inner_text().strip())
    top = float(handle.get_attribute("aria-valuemax") or "inf")
    key, m = ("ArrowRight", n + 1) if n < top else ("ArrowLeft", n - 1)
    handle.focus()
    page.keyboard.press(key)
    expect(readout).to_have_text(str(m))
    expect(diff).to_contain_text(f"replicas {n} -> {m}")
    expect(chart).not_to_have_attribute("src", chart0)
    expect(tree).not_to_have_attribute("src", tree0)
    text1, chart1, tree1 = snapshot()
    assert text1 != text0
    _shot(page, artifacts, "07-service-lab-1-replicas", whole)

    # 2. a ready Pod made "not ready" with a click on its toggle
    ready = lab_widget.locator(".kplab-pod-row:has(.kplab-pod-state button.mod-active:text-is('ready'))").first
    expect(ready).to_be_visible()
    pod = ready.locator("code").first.inner_text().strip()
    # a locator is looked up again at each use: pin the row by its Pod's name, not by "ready"
    row = lab_widget.locator(".kplab-pod-row", has=page.locator("code", has_text=re.compile(f"^{re.escape(pod)}$")))
    expect(row).to_have_count(1)
    button = row.locator(".kplab-pod-state button", has_text=re.compile(r"^\s*not ready\s*$"))
    button.click()
    expect(button).to_have_class(re.compile(r"\bmod-active\b"))
    expect(diff).to_contain_text(f"Pod {pod}: ready -> not ready")
    expect(chart).not_to_have_attribute("src", chart1)
    expect(tree).not_to_have_attribute("src", tree1)
    assert diff.inner_text() != text1
    _shot(page, artifacts, "07-service-lab-2-not-ready", whole)
    assert_widgets_rendered(page, SERVICE_LAB_NOTEBOOK)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_the_browser(page, lab, artifacts, path):
    """Run All Cells: no traceback, no widget that failed or is still loading."""
    state = open_and_run(page, lab, path.name)
    _shot(page, artifacts, path.stem)
    assert not state["errors"], f"{path.name} failed in the browser:\n" + "\n".join(state["errors"])
    assert not state["dialogs"], f"{path.name}: JupyterLab shows a dialog: {state['dialogs']}"
    tracebacks = page.locator(STDERR, has_text="Traceback")
    assert tracebacks.count() == 0, tracebacks.all_text_contents()
    assert_widgets_rendered(page, path.name)
    widgets = page.locator(".jp-OutputArea-output:has(.jupyter-widgets)")
    for k in range(min(widgets.count(), MAX_WIDGET_SHOTS)):
        _shot(page, artifacts, f"{path.stem}-widget-{k + 1}", widgets.nth(k))
    # the course promises no warning either (issue 6): anything on stderr fails, with its text
    stderr = page.locator(STDERR)
    assert stderr.count() == 0, f"{path.name} printed to stderr:\n" + "\n".join(stderr.all_text_contents())
