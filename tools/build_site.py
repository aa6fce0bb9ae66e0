#!/usr/bin/env python3
"""Build the static course: every notebook executed and rendered to HTML that works offline.

    python tools/build_site.py                      # all of notebooks/ -> site/ (what `make site` runs)
    python tools/build_site.py --only 00 --out /tmp/s   # just the notebooks whose names start with 00

Each notebook is executed with nbclient (cwd = its folder, so ``../data`` works), keeping the widget
state, and converted with nbconvert's `lab` template. The pages load the widget renderer
(@jupyter-widgets/html-manager) and require.js from ``_static/`` next to them instead of from
unpkg/cdnjs, so widgets show their saved state with no network and no kernel. MathJax and
Mermaid are not loaded at all (the course uses neither); a notebook that looks like it uses LaTeX
math is reported.

The two npm tarballs are downloaded straight from registry.npmjs.org (no npm needed) the first
time, checked against the sha512 integrity pinned below, and cached under ``.cache/npm/``; later
builds need no network. ``site/index.html`` lists the notebooks in order with their titles;
``site/pages.json`` lists the pages, so that a rebuild removes what the last build wrote and nothing else.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = "_static"                      # the vendored scripts' folder inside the site
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Vendored:
    """An npm package version, its tarball's pinned integrity, and the files the site takes from it."""

    name: str
    version: str
    integrity: str                      # npm's dist.integrity: "sha512-" + base64(sha512(tarball))
    files: tuple                        # regular expressions over the paths inside the tarball
    license: str

    @property
    def tarball_url(self) -> str:
        base = self.name.rsplit("/", 1)[-1]
        return f"{REGISTRY}/{self.name}/-/{base}-{self.version}.tgz"

    @property
    def cache_name(self) -> str:
        return f"{self.name.replace('/', '__').lstrip('@')}-{self.version}.tgz"


# ipywidgets 8 saves widget state version 2, which html-manager 1.0.x renders.
HTML_MANAGER = Vendored(
    "@jupyter-widgets/html-manager", "1.0.15",
    "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
    # the AMD bundle, its licence notes, and the icon fonts its CSS loads (relative to the script)
    (r"package/dist/embed-amd\.js", r"package/dist/embed\.js\.LICENSE\.txt",
     r"package/dist/[0-9a-f]{20}\.(woff2?|ttf|eot|svg)"),
    "BSD-3-Clause",
)
REQUIREJS = Vendored(
    "requirejs", "2.3.8",
    "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
    (r"package/require\.js",),
    "MIT",
)
VENDORED = (HTML_MANAGER, REQUIREJS)
WIDGET_RENDERER = f"{STATIC}/embed-amd.js"
REQUIRE_JS = f"{STATIC}/require.js"


class FetchError(RuntimeError):
    """A vendored tarball is neither in the cache nor downloadable."""


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch(pkg: Vendored, cache: Path, *, timeout: float = 60, offline: bool = False) -> bytes:
    """The package's tarball: from the cache when it is there and intact, else from the registry."""
    path = cache / pkg.cache_name
    if path.exists():
        data = path.read_bytes()
        if integrity_of(data) == pkg.integrity:
            return data
        print(f"build_site: {path} does not match its pinned sha512; downloading it again", file=sys.stderr)
        path.unlink()
    if offline:
        raise FetchError(f"{pkg.name}@{pkg.version} is not in the cache {cache} and --offline forbids downloading")
    try:
        with urllib.request.urlopen(pkg.tarball_url, timeout=timeout) as r:
            data = r.read()
    except OSError as e:               # URLError, timeouts, DNS failures
        raise FetchError(f"cannot download {pkg.tarball_url} ({e}) and the cache {cache} does not have it") from e
    got = integrity_of(data)
    if got != pkg.integrity:
        raise FetchError(f"{pkg.tarball_url}: sha512 integrity {got} is not the pinned {pkg.integrity}; "
                         "refusing to use it")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)              # atomic: a concurrent build never sees half a tarball
    return data


def fetch_all(cache: Path, *, offline: bool = False) -> dict:
    """{package: tarball bytes} for every vendored package (FetchError when one cannot be had)."""
    return {pkg: fetch(pkg, cache, offline=offline) for pkg in VENDORED}


def vendor(tarballs: dict, static: Path) -> list:
    """Copy the files the site needs out of the tarballs into `static`; returns their names."""
    static.mkdir(parents=True, exist_ok=True)
    written, notes = [], []
    for pkg, data in tarballs.items():
        wanted = [re.compile(p) for p in pkg.files]
        found = set()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                for i, pattern in enumerate(wanted):
                    if pattern.fullmatch(member.name):
                        name = Path(member.name).name         # flat: no paths from the archive are trusted
                        (static / name).write_bytes(tar.extractfile(member).read())
                        written.append(name)
                        found.add(i)
        missing = [pkg.files[i] for i in range(len(wanted)) if i not in found]
        if missing:
            raise FetchError(f"{pkg.name}@{pkg.version}: the tarball has no file matching {missing}")
        notes.append(f"{pkg.name} {pkg.version} ({pkg.license}), from {pkg.tarball_url}, {pkg.integrity}")
    (static / "VENDORED.txt").write_text(
        "Vendored so that the static course works offline (tools/build_site.py):\n"
        + "".join(f"- {n}\n" for n in notes)
        + "embed.js.LICENSE.txt lists the licences of what the widget renderer bundles.\n")
    return sorted(written)


# ------------------------------------------------------------------------------------- notebooks

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{#- kplab's static course: nbconvert's lab template, with a navigation bar, each kplab widget's text
    twin under it (folded), and no MathJax or Mermaid (both would load from cdnjs; the course uses
    neither). -#}
{%- block html_head_js_requirejs -%}
{{ super() }}
<script>
  // The widget renderer finds its icon fonts next to its AMD modules' URLs: map those into _static/.
  if (window.requirejs) {
    requirejs.config({paths: {"@jupyter-widgets/html-manager/dist": "{{ resources.kplab_static }}",
                              "@jupyter-widgets": "{{ resources.kplab_static }}"}});
  }
</script>
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
  nav.kplab-nav { font-family: var(--jp-ui-font-family); font-size: 14px; padding: 8px 0; margin: 0 auto;
                  display: flex; gap: 1.5em; flex-wrap: wrap; border-bottom: 1px solid #ccc; }
  nav.kplab-nav.bottom { border-bottom: 0; border-top: 1px solid #ccc; }
  nav.kplab-nav .note { color: #57606a; }
  div.kplab-widget { display: flex; flex-direction: column; flex-grow: 1; min-width: 0; }
  details.kplab-twin { margin: 4px 0 8px; font-size: 13px; }
  details.kplab-twin pre { font-size: 12px; overflow-x: auto; }
</style>
{%- endblock extra_css -%}
{%- block data_widget_view scoped -%}
{%- if 'kplab-text-twin' in output.data.get('text/html', '') and output.data.get('text/plain') %}
<div class="kplab-widget">
{{ super() }}
<details class="kplab-twin"><summary>This widget as text</summary>
<pre>{{ output.data['text/plain'] | e }}</pre>
</details>
</div>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock data_widget_view -%}
{%- macro nav(where) -%}
<nav class="kplab-nav {{ where }}" aria-label="course navigation ({{ where }})">
  <a href="index.html">Contents</a>
  {%- if resources.kplab_nav.prev %} <a href="{{ resources.kplab_nav.prev.href }}" rel="prev">&larr; {{ resources.kplab_nav.prev.title | e }}</a>{% endif %}
  {%- if resources.kplab_nav.next %} <a href="{{ resources.kplab_nav.next.href }}" rel="next">{{ resources.kplab_nav.next.title | e }} &rarr;</a>{% endif %}
  {%- if where == 'top' %} <span class="note">Static copy: widgets show the state they had when the notebook ran; open the notebook in JupyterLab to use them.</span>{% endif %}
</nav>
{%- endmacro -%}
{%- block body_header -%}
{{ super() }}
{{ nav('top') }}
{%- endblock body_header -%}
{%- block body_footer -%}
{{ nav('bottom') }}
{{ super() }}
{%- endblock body_footer -%}
"""

HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
MATH = re.compile(r"\$\$|\\\(|\\\[|(?<![\w$])\$[^\s$][^$\n]*[^\s$]\$(?![\w$])")


def title_of(nb, fallback: str) -> str:
    """The notebook's first level-1 heading (`# 7. Pod to Service`), else `fallback`."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = HEADING.search(cell.source)
            if m:
                return re.sub(r"[*_`]", "", m.group(1)).strip()
    return fallback


def looks_like_math(nb) -> bool:
    return any(cell.cell_type == "markdown" and MATH.search(CODE.sub("", cell.source)) for cell in nb.cells)


def select(notebooks: Path, only) -> list:
    paths = sorted(p for p in notebooks.glob("*.ipynb") if not p.name.startswith("."))
    if only:
        prefixes = [s.strip() for item in only for s in item.split(",") if s.strip()]
        paths = [p for p in paths if any(p.name.startswith(pre) for pre in prefixes)]
    return paths


def execute(path: Path, timeout: int):
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    return HTMLExporter(template_name="lab", template_file="kplab_site.html.j2",
                        extra_loaders=[DictLoader({"kplab_site.html.j2": TEMPLATE})],
                        widget_renderer_url=WIDGET_RENDERER, require_js_url=REQUIRE_JS)


def index_html(pages: list, heading: str) -> str:
    items = "\n".join(f'    <li><a href="{html.escape(p["href"])}">{html.escape(p["title"], quote=False)}</a>'
                      f'{" <span class=note>(" + html.escape(p["time"], quote=False) + ")</span>" if p["time"] else ""}'
                      "</li>" for p in pages)
    minutes = [int(m.group(1)) for p in pages for m in [re.fullmatch(r"(\d+) min(ute)?s?", p["time"])] if m]
    h, m = divmod(sum(minutes), 60)
    total = (f"<p>Time: about {f'{h} h {m:02d} min' if h else f'{m} minutes'} in all.</p>"
             if pages and len(minutes) == len(pages) else "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(heading)}</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 48em; margin: 2em auto; padding: 0 1em; line-height: 1.5;
         color: #1f2328; }}
  li {{ margin: 0.3em 0; }} .note {{ color: #57606a; }}
</style>
</head>
<body>
<main>
<h1>{html.escape(heading)}</h1>
<p>The course's notebooks, executed and rendered as static pages, in reading order. The widgets show the
state they had when the notebook ran; to change them, open the notebooks in JupyterLab
(<code>make lab</code>) or on Binder.</p>
<ol class="kplab-notebooks">
{items}
</ol>
{total}
<p class="note">Built {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} by tools/build_site.py.</p>
</main>
</body>
</html>
"""


TIME = re.compile(r"\*\*Time\.?\*\*\.?\s*(?:About\s+)?([^\n.]+)", re.I)


def time_of(nb) -> str:
    for cell in nb.cells[:3]:
        if cell.cell_type == "markdown":
            m = TIME.search(cell.source)
            if m:
                return m.group(1).strip()
    return ""


def remove_previous_build(out: Path) -> None:
    """Delete what an earlier build wrote into `out` (listed in its pages.json), and nothing else."""
    try:
        previous = json.loads((out / "pages.json").read_text())
    except (OSError, ValueError):
        previous = []
    for page in previous:
        href = page.get("href", "") if isinstance(page, dict) else ""
        if re.fullmatch(r"[\w.-]+\.html", href):
            (out / href).unlink(missing_ok=True)
    for name in ("index.html", "pages.json"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / STATIC, ignore_errors=True)


def build(out: Path, notebooks: Path, *, only=None, cache: Path, offline: bool = False, timeout: int = 300,
          log=print) -> list:
    """Execute and render the notebooks into `out`; returns [{"href", "title", "source", "seconds"}]."""
    started = time.perf_counter()
    paths = select(notebooks, only)
    if not paths:
        raise SystemExit(f"build_site: no notebooks in {notebooks}" + (f" match {only}" if only else ""))
    tarballs = fetch_all(cache, offline=offline)
    out.mkdir(parents=True, exist_ok=True)
    remove_previous_build(out)
    files = vendor(tarballs, out / STATIC)
    log(f"build_site: vendored {len(files)} files into {out / STATIC} "
        f"({HTML_MANAGER.name} {HTML_MANAGER.version}, {REQUIREJS.name} {REQUIREJS.version})")

    # the kernels import this checkout's kplab, installed or not
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    from nbclient.exceptions import CellExecutionError

    executed = []
    for path in paths:
        t = time.perf_counter()
        try:
            nb = execute(path, timeout)
        except CellExecutionError as e:
            raise SystemExit(f"build_site: {path.name} failed:\n{e}") from None
        seconds = time.perf_counter() - t
        title = title_of(nb, path.stem)
        nb.metadata["title"] = title
        executed.append({"nb": nb, "href": path.stem + ".html", "title": title, "source": path.name,
                         "time": time_of(nb), "seconds": seconds})
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
        stderr = [o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        log(f"build_site: executed {path.name} in {seconds:.1f} s ({len(state.get('state', {}))} widget models)")
        for text in stderr:
            log(f"build_site: warning: {path.name} printed to stderr: {text.strip()[:300]}")
        if looks_like_math(nb):
            log(f"build_site: warning: {path.name} seems to use LaTeX math, but the static pages load no MathJax")

    exp = exporter()
    for i, page in enumerate(executed):
        nav = {"prev": executed[i - 1] if i > 0 else None, "next": executed[i + 1] if i + 1 < len(executed) else None}
        resources = {"metadata": {"name": page["title"]}, "kplab_static": STATIC,
                     "kplab_nav": {k: ({"href": v["href"], "title": v["title"]} if v else None)
                                   for k, v in nav.items()}}
        body, _ = exp.from_notebook_node(page["nb"], resources=resources)
        (out / page["href"]).write_text(body, encoding="utf-8")
    (out / "index.html").write_text(index_html(executed, "kplab: how traffic reaches a Pod"), encoding="utf-8")
    (out / "pages.json").write_text(json.dumps(
        [{k: p[k] for k in ("href", "title", "source", "time")} for p in executed], indent=1) + "\n")
    log(f"build_site: wrote {len(executed)} pages and index.html to {out} in {time.perf_counter() - started:.1f} s")
    return [{k: v for k, v in p.items() if k != "nb"} for p in executed]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "site", help="output folder (default: site/)")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of .ipynb (default: notebooks/)")
    ap.add_argument("--only", action="append", metavar="PREFIX",
                    help="only the notebooks whose file names start with PREFIX (repeat, or comma-separate)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "npm",
                    help="where the npm tarballs are kept (default: .cache/npm/)")
    ap.add_argument("--offline", action="store_true", help="never download: use the cache only")
    ap.add_argument("--timeout", type=int, default=300, help="seconds one cell may run (default: 300)")
    args = ap.parse_args(argv)
    try:
        build(args.out.resolve(), args.notebooks.resolve(), only=args.only, cache=args.cache.resolve(),
              offline=args.offline, timeout=args.timeout)
    except FetchError as e:
        print(f"build_site: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
