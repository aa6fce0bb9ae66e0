"""pyproject.toml and environment.yml describe the same environment.

pip users install from pyproject.toml (`make lab`); Binder and conda users from environment.yml.
The two must name the same packages (the runtime dependencies plus the `lab` extra) with the same
major versions, so that the notebooks behave alike for both.
"""

import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "kplab"
# Conda entries that are not dependencies of kplab itself.
CONDA_ONLY = {"python", "pip"}
# Major versions the course is written for (JupyterLab 4 UI, ipywidgets 8 protocol).
MAJOR_PINS = {"jupyterlab": {4}, "ipywidgets": {8}}
# Versions probed when comparing two version ranges by the major versions they admit.
PROBE_MAJORS = range(0, 41)
PROBE_MINORS = range(0, 41)


def normalise(name):
    return name.strip().lower().replace("_", "-")


@pytest.fixture(scope="module")
def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


@pytest.fixture(scope="module")
def conda_env():
    with open(ROOT / "environment.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def extra(project, name, seen=()):
    """The requirements of extra `name`, with self-references (``kplab[lab]``) expanded."""
    reqs = {}
    for line in project.get("optional-dependencies", {}).get(name, []):
        req = Requirement(line)
        if normalise(req.name) == PROJECT:
            for sub in sorted(req.extras - set(seen)):
                reqs.update(extra(project, sub, seen + (name,)))
        else:
            reqs[normalise(req.name)] = req
    return reqs


def pip_specs(project):
    """Runtime dependencies plus the `lab` extra: name -> SpecifierSet."""
    reqs = {normalise(Requirement(line).name): Requirement(line) for line in project["dependencies"]}
    reqs.update(extra(project, "lab"))
    for name, req in reqs.items():
        assert req.marker is None, f"pyproject: {name} has a marker ({req.marker}); environment.yml cannot mirror it"
    return {name: req.specifier for name, req in reqs.items()}


CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def conda_specifier(entry):
    """Translate a conda match spec (``name``, ``name=4``, ``name>=3.7,<4``, ``name 4.*``)."""
    name, version = CONDA_SPEC.match(entry).groups()
    version = version.replace(" ", "")
    assert "|" not in version, f"environment.yml: {entry!r}: '|' (or) is not supported by this check"
    parts = []
    for part in filter(None, version.split(",")):
        if re.match(r"^=[^=]", part):  # conda `=4.1` means 4.1.*; a second `=` starts a build string
            part = "==" + part[1:].split("=")[0].rstrip(".*") + ".*"
        elif re.match(r"^[0-9]", part):  # a bare version: `4.*` or `4.1.2`
            part = "==" + part
        parts.append(part)
    return normalise(name), SpecifierSet(",".join(parts))


def conda_specs(env):
    specs, pip_section = {}, None
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            assert set(entry) == {"pip"}, f"environment.yml: unexpected mapping {entry!r}"
            pip_section = entry["pip"]
            continue
        name, spec = conda_specifier(entry)
        assert name not in specs, f"environment.yml lists {name} twice"
        specs[name] = spec
    return specs, pip_section


def majors(spec):
    """The major versions for which `spec` admits at least one release."""
    return {m for m in PROBE_MAJORS if any(spec.contains(f"{m}.{n}") for n in PROBE_MINORS)}


def describe(spec):
    found = majors(spec)
    return f"{'any' if found == set(PROBE_MAJORS) else sorted(found)} ({spec or 'unpinned'})"


def test_environment_yml_shape(conda_env):
    assert conda_env.get("name") == PROJECT
    assert conda_env.get("channels") == ["conda-forge"], "Binder builds should use conda-forge only"
    specs, pip_section = conda_specs(conda_env)
    assert CONDA_ONLY <= set(specs), f"environment.yml must list {sorted(CONDA_ONLY)}"
    assert pip_section in (["-e ."], ["."]), (
        "environment.yml's pip section must install exactly the project itself (`-e .` or `.`); "
        f"it has {pip_section!r}. Add other packages as conda packages and to pyproject.toml."
    )


def test_conda_packages_are_runtime_plus_lab(pyproject, conda_env):
    pip_names = set(pip_specs(pyproject))
    conda_names = set(conda_specs(conda_env)[0]) - CONDA_ONLY
    assert pip_names == conda_names, (
        "pyproject.toml (dependencies + lab extra) and environment.yml disagree: "
        f"only in pyproject: {sorted(pip_names - conda_names)}; "
        f"only in environment.yml: {sorted(conda_names - pip_names)}"
    )


def test_major_versions_agree(pyproject, conda_env):
    pip = pip_specs(pyproject)
    conda = conda_specs(conda_env)[0]
    for name in sorted(set(pip) & set(conda)):
        assert majors(pip[name]) == majors(conda[name]), (
            f"{name}: pyproject allows major versions {describe(pip[name])}, "
            f"environment.yml allows {describe(conda[name])}"
        )
    for name, wanted in MAJOR_PINS.items():
        assert majors(pip[name]) == wanted, f"pyproject: {name} must be pinned to major {wanted}, is {pip[name]}"
        assert majors(conda[name]) == wanted, f"environment.yml: {name} must be pinned to major {wanted}"


def test_python_versions_agree(pyproject, conda_env):
    requires = SpecifierSet(pyproject["requires-python"])
    conda = conda_specs(conda_env)[0]["python"]
    pip_minors = {n for n in PROBE_MINORS if requires.contains(f"3.{n}")}
    conda_minors = {n for n in PROBE_MINORS if conda.contains(f"3.{n}")}
    assert pip_minors == conda_minors, (
        f"requires-python {requires} and environment.yml python {conda or 'unpinned'} admit different "
        f"Pythons: only pyproject admits {[f'3.{n}' for n in sorted(pip_minors - conda_minors)]}, "
        f"only environment.yml admits {[f'3.{n}' for n in sorted(conda_minors - pip_minors)]}"
    )


def test_test_extra_includes_lab(pyproject):
    lab, test = extra(pyproject, "lab"), extra(pyproject, "test")
    missing = sorted(set(lab) - set(test))
    assert not missing, f"the test extra runs the notebooks, so it needs all of `lab`; missing {missing}"


def test_console_script_is_kplab_cli_run(pyproject):
    assert pyproject.get("scripts", {}).get("kplab") == "kplab.cli:run"


def test_installed_console_script_matches(pyproject):
    """The installed metadata says the same (stale if pyproject changed without a reinstall)."""
    try:
        dist = importlib.metadata.distribution(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("kplab is not installed (run `make test`, which installs it)")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == pyproject["scripts"], "reinstall kplab: installed console scripts differ from pyproject.toml"
    module, _, attr = pyproject["scripts"]["kplab"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr, None)), f"{module}.{attr} is not a function"
