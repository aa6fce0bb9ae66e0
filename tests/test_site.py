"""`make site` (tools/build_site.py): the static course works offline, with its widgets' saved state.

One small build into a temporary folder, from a temporary notebooks/ holding a copy of
00-start-here.ipynb, a tiny notebook that displays a ServiceLab (the course's start page may carry
no widget), and a notebook that must not be built (it fails if executed): ``--only 00 --only 99``.
The vendored scripts come from registry.npmjs.org the first time and from .cache/npm/ after that;
with neither, the test is skipped (fails under KPLAB_REQUIRE_ALL=1) with the reason.
"""
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._require import require

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tools" / "build_site.py"
CACHE = Path(os.environ.get("KPLAB_NPM_CACHE") or ROOT / ".cache" / "npm")   # the same cache as `make site`
START = ROOT / "notebooks" / "00-start-here.ipynb"
CDN = re.compile(r"unpkg\.com|cdnjs\.cloudflare\.com|jsdelivr\.net|cdn\.", re.I)
WIDGET_PAGE = "99-widget-check"
CHROMIUM = os.environ.get("KPLAB_CHROMIUM") or "/usr/bin/chromium"

pytestmark = pytest.mark.slow


def load_build_site():
    spec = importlib.util.spec_from_file_location("kplab_build_site", BUILD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def first_heading(path: Path) -> str:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise AssertionError(f"{path.name} has no '# title'")


def notebook(title, *code):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}")] + [nbformat.v4.new_code_cell(c) for c in code]
    return nb


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for name in ("nbformat", "nbclient", "nbconvert", "ipywidgets", "matplotlib"):
        require(importlib.util.find_spec(name) is not None,
                f"building the static site needs {name} (pip install -e '.[test]')")
    build = load_build_site()
    try:
        build.fetch_all(CACHE)
    except build.FetchError as e:
        require(False, "the static site vendors @jupyter-widgets/html-manager and requirejs from "
                       f"registry.npmjs.org, which cannot be reached, and {CACHE} is empty: {e}. "
                       "Run `make site` once with network; later builds use the cache")
    import nbformat
    src = tmp_path_factory.mktemp("site-src")
    (src / "notebooks").mkdir()
    shutil.copy(START, src / "notebooks")
    shutil.copytree(ROOT / "data", src / "data")
    nbformat.write(notebook("99. Widget check", "from kplab.widgets import ServiceLab",
                            'ServiceLab("../data/clusters/seed.yaml")'),
                   str(src / "notebooks" / f"{WIDGET_PAGE}.ipynb"))
    nbformat.write(notebook("50. Not built", "raise SystemExit('--only must skip this notebook')"),
                   str(src / "notebooks" / "50-not-built.ipynb"))
    out = tmp_path_factory.mktemp("site") / "site"
    proc = subprocess.run([sys.executable, str(BUILD), "--notebooks", str(src / "notebooks"), "--out", str(out),
                           "--cache", str(CACHE), "--offline", "--only", "00", "--only", "99"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, f"build_site failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return out


def scripts_of(page: str) -> list:
    """Every script URL a page loads: <script src>, the widget renderer, ES module imports."""
    urls = re.findall(r"<script\b[^>]*\bsrc=[\"']([^\"']*)[\"']", page)
    urls += re.findall(r"widgetRendererSrc\s*=\s*'([^']*)'", page)
    urls += re.findall(r"\bimport\(\s*[\"']([^\"']+)[\"']", page)
    urls += re.findall(r"<link\b[^>]*\bhref=[\"']([^\"']*)[\"']", page)
    return urls


def test_index_lists_the_built_notebooks_in_order(site):
    index = (site / "index.html").read_text()
    start = index.find('href="00-start-here.html"')
    widgets = index.find(f'href="{WIDGET_PAGE}.html"')
    assert 0 <= start < widgets, "index.html lists 00-start-here before 99-widget-check"
    assert html.escape(first_heading(START), quote=False) in index
    assert "Widget check" in index
    assert "50-not-built" not in index and not (site / "50-not-built.html").exists(), "--only was ignored"
    assert {p.name for p in site.glob("*.html")} == {"00-start-here.html", "index.html", f"{WIDGET_PAGE}.html"}


def test_pages_load_only_vendored_scripts_by_relative_path(site):
    for name in ("00-start-here.html", f"{WIDGET_PAGE}.html", "index.html"):
        page = (site / name).read_text()
        urls = scripts_of(page)
        for url in urls:
            assert not re.match(r"^([a-z]+:)?//", url, re.I) and not url.startswith("/"), (
                f"{name} loads {url}: the static site must load its scripts by relative path")
            assert not CDN.search(url), f"{name} loads {url} from a CDN"
            assert (site / url.split("?")[0]).is_file(), f"{name} loads {url}, which the site does not have"
        if name != "index.html":
            assert "_static/require.js" in urls, f"{name} does not load the vendored require.js"
            assert "MathJax.Hub.Config" not in page, f"{name} still loads MathJax"
    assert "_static/embed-amd.js" in scripts_of((site / f"{WIDGET_PAGE}.html").read_text())
    for vendored in ("embed-amd.js", "require.js", "VENDORED.txt"):
        assert (site / "_static" / vendored).stat().st_size > 0


def test_widget_state_is_embedded(site):
    page = (site / f"{WIDGET_PAGE}.html").read_text()
    m = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
    assert m, "the page carries no widget state"
    state = json.loads(html.unescape(m.group(1)) if m.group(1).lstrip().startswith("&") else m.group(1))
    models = state["state"]
    assert len(models) > 20, f"only {len(models)} widget models saved"
    classes = {c for model in models.values() for c in model.get("state", {}).get("_dom_classes", [])}
    assert {"kplab-service-lab", "kplab-replicas", "kplab-rules-diff"} <= classes, classes
    views = re.findall(r'<script type="application/vnd.jupyter.widget-view\+json">\s*(\{.*?\})\s*</script>', page, re.S)
    assert views and all(json.loads(v)["model_id"] in models for v in views), "a widget view has no saved model"
    twin = re.search(r'<details class="kplab-twin">.*?<pre>(.*?)</pre>', page, re.S)
    assert twin and "ServiceLab: Service default/backend" in html.unescape(twin.group(1)), (
        "each kplab widget's text twin is kept under it, for readers without JavaScript")


@pytest.mark.browser
def test_pages_render_offline_in_chromium(site, tmp_path):
    """The widget page in headless Chromium with every non-file request aborted: widgets render."""
    require(importlib.util.find_spec("playwright") is not None and os.access(CHROMIUM, os.X_OK),
            f"checking the static site offline needs Playwright for Python and Chromium at {CHROMIUM} "
            "(pip install -e '.[test]'; apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import artifacts_dir
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            for name in ("index.html", "00-start-here.html", f"{WIDGET_PAGE}.html"):
                page = browser.new_page(viewport={"width": 1300, "height": 1800})
                page.set_default_timeout(60_000)
                off_site, failed, errors = [], [], []

                def route(r, off_site=off_site):
                    if r.request.url.startswith("file:"):
                        r.continue_()
                    else:
                        off_site.append(r.request.url)
                        r.abort()
                page.route("**/*", route)
                page.on("requestfailed", lambda r, failed=failed: failed.append(f"{r.url} {r.failure}"))
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.goto((site / name).as_uri())
                page.wait_for_load_state("load")
                if name == f"{WIDGET_PAGE}.html":
                    lab = page.locator(".kplab-service-lab")
                    expect(lab).to_have_count(1)
                    expect(lab).to_be_visible()
                    expect(lab.locator(".kplab-replicas .noUi-handle")).to_have_count(1)
                    expect(lab.locator(".kplab-pod-row").first).to_be_visible()
                    chart = lab.locator(".kplab-endpoint-chart img").first
                    expect(chart).to_have_attribute("src", re.compile(r".+"))
                    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=chart.element_handle())
                    expect(lab.locator(".kplab-rules-diff")).to_contain_text("no change yet")
                    page.wait_for_load_state("networkidle")   # the icon fonts
                    page.screenshot(path=str(artifacts_dir() / "site-offline-widgets.png"))
                expect(page.get_by_text("Loading widget")).to_have_count(0)
                expect(page.get_by_text("Error displaying widget")).to_have_count(0)
                page.close()
                assert not off_site, f"{name} asked the network for {off_site}"
                assert not failed, f"{name}: requests failed: {failed}"
                assert not errors, f"{name}: JavaScript errors: {errors}"
        finally:
            browser.close()
