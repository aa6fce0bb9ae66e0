"""How long the course takes to execute: each notebook top to bottom, kernel start included.

    .venv/bin/python bench/notebooks.py          # every notebook, then the total
    .venv/bin/python bench/notebooks.py 07 09    # only these

Issue 6 asks for all of them together in under 2 minutes on the 2-core machine; the last line
prints the total and that budget's share. Needs nbclient (the `test` extra).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 120.0


def main(argv) -> int:
    import nbformat
    from nbclient import NotebookClient
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if argv:
        paths = [p for p in paths if any(p.name.startswith(a) for a in argv)]
    total = 0.0
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        took = time.perf_counter() - t0
        total += took
        print(f"{path.name:42} {took:6.1f} s", flush=True)
    print(f"total {total:.1f} s for {len(paths)} notebooks ({total / BUDGET_S:.0%} of the 2-minute budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
