"""The catalogue of bad inputs: every file in iptables/ and yaml/ with the exact answer kplab gives.

A case is two files: `iptables/NAME.rules` (or `yaml/NAME.yaml`) and `NAME.expected`. The first line
of NAME.expected is one of

    NAME.rules:LINE: message   the exact error, str() of the KplabError kplab raises (file, line
                               where there is one, what is wrong and what to do);
    warning: TEXT              the input loads, and TEXT is exactly one of its warnings;
    loads                      the input is valid (it only looks wrong).

and more lines may follow:

    saves: TEXT        (rules that load) the iptables-save text kplab prints contains the line TEXT
    renders: TEXT      (YAML that loads) the rules kube-proxy programs on node-1 contain TEXT
    kernel: loads      (rules kplab refuses) iptables-restore loads them, and kplab refuses them on
                       purpose; the rest of the line says why
    # ...              a note

Rules files are read with `kplab.load_rules` from inside iptables/, so the message names the file
as it is written here; YAML files with `Cluster.load`. A new case is two new files; `python -m
tests.bad_inputs.test_catalogue NAME...` prints what kplab answers now, to start an .expected file
from (read it before you keep it: it is the message a learner will see).

Cases too large to store (a 10 MB line) are made here, in GENERATED.

Under the kernel harness (root, namespaces; see tests/_require.py) every rules case is also
loaded with a real iptables-restore (nf_tables) in a scratch namespace: kplab refuses exactly
what the kernel refuses, except the cases marked `kernel:`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import kplab
from kplab.errors import KplabError, ParseError

HERE = Path(__file__).resolve().parent
RULES = HERE / "iptables"
YAML = HERE / "yaml"
KINDS = {"iptables": (RULES, ".rules"), "yaml": (YAML, ".yaml")}


def cases(kind):
    folder, ext = KINDS[kind]
    return sorted(p.name[:-len(ext)] for p in folder.glob(f"*{ext}"))


def expected(kind, name) -> dict:
    folder, _ = KINDS[kind]
    path = folder / f"{name}.expected"
    assert path.exists(), f"{path.name} is missing: each {kind} case needs one (see the module doc)"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path.name} is empty"
    out = {"first": lines[0], "saves": [], "renders": [], "kernel": None}
    for line in lines[1:]:
        key, _, value = line.partition(": ")
        if line.startswith("#") or not line.strip():
            continue
        assert key in ("saves", "renders", "kernel"), f"{path.name}: unknown line {line!r}"
        if key == "kernel":
            out["kernel"] = value
        else:
            out[key].append(value)
    return out


def load_rules_case(name):
    """kplab's answer for iptables/NAME.rules: (ruleset or None, error or None)."""
    cwd = os.getcwd()
    os.chdir(RULES)
    try:
        return kplab.load_rules(f"{name}.rules"), None
    except KplabError as e:
        return None, e
    finally:
        os.chdir(cwd)


def load_yaml_case(name):
    """kplab's answer for yaml/NAME.yaml: ((cluster, rendered node-1 rules) or None, error or None)."""
    from kplab.kube.cluster import Cluster
    from kplab.kube.proxier import render
    cwd = os.getcwd()
    os.chdir(YAML)
    try:
        cluster = Cluster.load(f"{name}.yaml")
        return (cluster, render(cluster.services(), cluster.slices(), cluster.proxy_config("node-1"))), None
    except KplabError as e:
        return None, e
    finally:
        os.chdir(cwd)


def check_answer(want: dict, loaded, error, warnings, source: str):
    first = want["first"]
    if first == "loads" or first.startswith("warning: "):
        assert error is None, f"expected the input to load, got: {error}"
        if first.startswith("warning: "):
            assert first[len("warning: "):] in warnings, f"warning not given; the warnings are {warnings}"
        return
    assert error is not None, f"expected the error {first!r}, but the input loads"
    assert isinstance(error, KplabError)
    assert str(error) == first
    assert "\n" not in str(error) and "Traceback" not in str(error)
    assert str(error).startswith(source + ":"), "the message names the file first"
    line = getattr(error, "line", None)
    if line is not None:
        assert str(error).startswith(f"{source}:{line}: "), "the message names the line it is about"


@pytest.mark.parametrize("name", cases("iptables"))
def test_iptables_case(name):
    want = expected("iptables", name)
    rs, error = load_rules_case(name)
    check_answer(want, rs, error, list(rs.warnings) if rs is not None else [], f"{name}.rules")
    if error is not None:
        assert isinstance(error, ParseError) and error.file == f"{name}.rules"
    for line in want["saves"]:
        assert line in kplab.save_rules(rs).splitlines()


@pytest.mark.parametrize("name", cases("yaml"))
def test_yaml_case(name):
    want = expected("yaml", name)
    loaded, error = load_yaml_case(name)
    check_answer(want, loaded, error, list(loaded[0].warnings) if loaded else [], f"{name}.yaml")
    if error is not None:
        assert error.file == f"{name}.yaml"
    for text in want["renders"]:
        assert text in loaded[1].save_text


def test_every_case_has_both_files():
    for kind, (folder, ext) in KINDS.items():
        inputs = {p.name[:-len(ext)] for p in folder.glob(f"*{ext}")}
        answers = {p.stem for p in folder.glob("*.expected")}
        assert answers == inputs, f"{kind}: input without .expected: {sorted(inputs - answers)}; " \
                                  f".expected without input: {sorted(answers - inputs)}"


# --------------------------------------------------------------------------------------------
# Cases made here: too large to keep in the repository.

TEN_MB = 10 * 2**20
GENERATED = {
    # one word of 10 MB in a rule: iptables-restore reads the line in pieces of 10239 bytes and
    # refuses the first, whose word is longer than 1023 characters ("Parameter too long!")
    "ten-megabyte-line": (
        lambda: "*filter\n-A INPUT -m comment --comment " + "x" * TEN_MB + " -j ACCEPT\nCOMMIT\n",
        "ten-megabyte-line.rules:2: a line of 10,485,800 characters, which iptables-restore reads in pieces "
        "of 10239 bytes, each parsed as a line of its own; piece 1 of 1025: a word of 10,209 characters: "
        "iptables-restore refuses words longer than 1023 characters (\"Parameter too long!\")"),
    # 10 MB of short words on one line: more than 251 words
    "ten-megabyte-line-of-words": (
        lambda: "*filter\n-A INPUT" + " -s 10.0.0.1" * (TEN_MB // 12) + " -j ACCEPT\nCOMMIT\n",
        "ten-megabyte-line-of-words.rules:2: a line of 10,485,774 characters, which iptables-restore reads "
        "in pieces of 10239 bytes, each parsed as a line of its own; piece 1 of 1025: 1,708 words on one line: "
        "iptables-restore handles at most 251 (\"Parser cannot handle more arguments\"); split the rule"),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_case(name, tmp_path, monkeypatch):
    make, message = GENERATED[name]
    (tmp_path / f"{name}.rules").write_text(make(), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParseError) as info:
        kplab.load_rules(f"{name}.rules")
    assert str(info.value) == message
    assert len(str(info.value)) < 600, "a huge input is never echoed whole"


# --------------------------------------------------------------------------------------------
# The kernel is the judge: rules kplab refuses are exactly those iptables-restore refuses.

def test_kernel_agrees_with_the_catalogue(judge):
    wrong = []
    for name in cases("iptables"):
        want = expected("iptables", name)
        kernel_loads, message = judge.accepts_file(str(RULES / f"{name}.rules"))
        kplab_loads = load_rules_case(name)[1] is None
        if want["kernel"] is not None:
            # a deliberate difference: kplab refuses what the kernel takes
            assert want["kernel"].startswith("loads") and kernel_loads and not kplab_loads, name
            continue
        if kernel_loads != kplab_loads:
            wrong.append(f"{name}: kernel {'loads' if kernel_loads else 'refuses: ' + message[:120]}, "
                         f"kplab {'loads' if kplab_loads else 'refuses'}")
    assert not wrong, "\n".join(wrong)


if __name__ == "__main__":                      # print kplab's answers, to start .expected files from
    for arg in sys.argv[1:] or cases("iptables") + cases("yaml"):
        kind = "yaml" if (YAML / f"{arg}.yaml").exists() else "iptables"
        loaded, error = (load_yaml_case if kind == "yaml" else load_rules_case)(arg)
        if error is not None:
            print(f"{kind}/{arg}: {error}")
        else:
            warnings = (loaded[0] if kind == "yaml" else loaded).warnings
            print(f"{kind}/{arg}: " + (f"warning: {warnings[0]}" if warnings else "loads"))
