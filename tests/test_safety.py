"""Importing every kplab module needs no network and starts no program."""
import subprocess
import sys
from pathlib import Path

from tests.test_notebooks import GUARD

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_imports_with_network_and_subprocesses_refused():
    probe = GUARD + """
import importlib, pkgutil, kplab
names = ["kplab"] + [m.name for m in pkgutil.walk_packages(kplab.__path__, "kplab.")
         if not m.name.endswith("__main__")]
skipped = []
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:          # the optional layers without their libraries
        skipped.append(f"{name}: {exc}")
print(len(names), "modules;", len(skipped), "skipped")
for s in skipped:
    print("skipped", s)
"""
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "PermissionError" not in res.stdout + res.stderr
    count = int(res.stdout.split()[0])
    assert count > 30, res.stdout
