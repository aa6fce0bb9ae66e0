# kplab: two commands for people, one for tidying up.
#
#   make lab     install kplab and its notebook extras into .venv, then open the course
#   make test    install kplab and its test extras into .venv, then run the test suite
#                (pass pytest options with PYTEST_ARGS, e.g. make test PYTEST_ARGS='-k trace -x')
#   make site    install kplab and its notebook extras into .venv, execute every notebook and write
#                the static course to site/ (open site/index.html; works offline, no kernel); the
#                widget scripts are downloaded from registry.npmjs.org once and cached in .cache/npm/
#   make clean   remove .venv, site/ and the build and test leftovers (keeps the .cache/ downloads)
#
# Uses only portable make syntax (no GNU functions), so GNU make (Linux, macOS Xcode) and BSD make
# both work. A stamp file inside .venv makes pip run again only when pyproject.toml changes.

PYTHON ?= python3
PYTEST_ARGS ?=
VENV = .venv
NOTEBOOK = notebooks/00-start-here.ipynb

.PHONY: lab test site clean

lab: $(VENV)/.make-stamp-lab
	@if [ "$$(id -u)" = 0 ]; then allow_root=--allow-root; else allow_root=; fi; \
	echo "$(VENV)/bin/jupyter lab $$allow_root $(NOTEBOOK)"; \
	exec $(VENV)/bin/jupyter lab $$allow_root $(NOTEBOOK)

# pytest exits 5 when it collected no tests: that is a failure too, and says so.
test: $(VENV)/.make-stamp-test
	@echo "$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)"; \
	status=0; $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then \
	  echo "make test: FAILED: pytest collected no tests (exit 5); check testpaths and PYTEST_ARGS" >&2; \
	fi; \
	exit $$status

# tools/build_site.py needs nbclient and nbconvert, which JupyterLab (the lab extra) brings.
site: $(VENV)/.make-stamp-lab
	$(VENV)/bin/python tools/build_site.py --out site

$(VENV)/pyvenv.cfg:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
	  echo "kplab needs Python 3.10 or newer, and '$(PYTHON)' is not; try: make PYTHON=python3.12 ..." >&2; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.make-stamp-lab: $(VENV)/pyvenv.cfg pyproject.toml
	$(VENV)/bin/python -m pip install -e '.[lab]'
	touch $@

$(VENV)/.make-stamp-test: $(VENV)/pyvenv.cfg pyproject.toml
	$(VENV)/bin/python -m pip install -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis site artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
