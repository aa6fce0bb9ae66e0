"""bench/scale.py runs end to end at small sizes and writes results kplab.kube.scale can load (no kernel)."""
import subprocess
import sys
from pathlib import Path

from kplab.kube.scale import load_results

ROOT = Path(__file__).resolve().parent.parent


def test_small_run_writes_loadable_results(tmp_path):
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "--sizes", "5,20", "--no-kernel",
                        "--repeat", "1", "--runs", "2", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "[1/2]" in r.stdout and "[2/2]" in r.stdout and "kernel: skipped (--no-kernel)" in r.stdout
    res = load_results(str(out))
    assert res.sizes == (5, 20)
    a, b = res.rows
    assert b.rules_evaluated - a.rules_evaluated == 15
    assert a.cli_trace_s > 0 and a.peak_rss_mb > 0 and a.kernel_nft_s is None
    assert res.meta["kernel"] is None and res.meta["sizes"] == [5, 20]
    assert "x" in r.stdout.split("ratios", 1)[1]


def test_bad_arguments_exit_2():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "--sizes", "0"], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "at least 1" in r.stderr
