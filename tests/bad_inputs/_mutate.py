"""Mutations of valid inputs for the fuzz tests: drop, duplicate, swap and truncate tokens and lines.

Each operation takes the text as a list of lines and `pick(low, high)`, which returns an integer in
[low, high] (a hypothesis draw in the tests, `random.Random.randint` in an exploration script), so
the same operations serve both. Tokens are the line split on single spaces (so quoted comments fall
apart and double spaces survive: both are worth trying).
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


def rule_sources() -> dict:
    """The valid iptables dumps the mutants start from: name -> text."""
    files = [DATA / "rules" / "seed-node.rules"] + sorted((DATA / "clusters").glob("*.node-1.rules"))
    return {f.name: f.read_text() for f in files}


def yaml_sources() -> dict:
    """The valid Kubernetes YAML the mutants start from: name -> text."""
    return {f.name: f.read_text() for f in sorted((DATA / "clusters").glob("*.yaml"))}


def _line(lines, pick):
    return pick(0, len(lines) - 1)


def drop_line(lines, pick):
    i = _line(lines, pick)
    return lines[:i] + lines[i + 1:]


def dup_line(lines, pick):
    i = _line(lines, pick)
    return lines[:i + 1] + lines[i:]


def swap_lines(lines, pick):
    i, j = _line(lines, pick), _line(lines, pick)
    out = list(lines)
    out[i], out[j] = out[j], out[i]
    return out


def truncate_text(lines, pick):
    """Cut the whole text at a character (a file that ends in mid-line or mid-word)."""
    text = "\n".join(lines)
    return text[:pick(0, len(text))].split("\n")


def _token_op(fn):
    def op(lines, pick):
        i = _line(lines, pick)
        toks = lines[i].split(" ")
        new = fn(toks, pick)
        return lines[:i] + [" ".join(new)] + lines[i + 1:]
    op.__name__ = fn.__name__
    return op


@_token_op
def drop_token(toks, pick):
    k = pick(0, len(toks) - 1)
    return toks[:k] + toks[k + 1:]


@_token_op
def dup_token(toks, pick):
    k = pick(0, len(toks) - 1)
    return toks[:k + 1] + toks[k:]


@_token_op
def swap_tokens(toks, pick):
    a, b = pick(0, len(toks) - 1), pick(0, len(toks) - 1)
    toks = list(toks)
    toks[a], toks[b] = toks[b], toks[a]
    return toks


@_token_op
def truncate_line(toks, pick):
    return toks[:pick(0, len(toks))]


@_token_op
def truncate_token(toks, pick):
    """Cut one token short: `--dport` becomes `--dpo`, `10.96.5.81` becomes `10.9`."""
    k = pick(0, len(toks) - 1)
    toks = list(toks)
    toks[k] = toks[k][:pick(0, len(toks[k]))]
    return toks


def move_token(lines, pick):
    """A token from one line put into another (an option lands in the wrong rule or table)."""
    i, j = _line(lines, pick), _line(lines, pick)
    src = lines[i].split(" ")
    k = pick(0, len(src) - 1)
    tok = src[k]
    out = list(lines)
    out[i] = " ".join(src[:k] + src[k + 1:])
    dst = out[j].split(" ")
    p = pick(0, len(dst))
    out[j] = " ".join(dst[:p] + [tok] + dst[p:])
    return out


OPERATIONS = (drop_line, dup_line, swap_lines, truncate_text, drop_token, dup_token, swap_tokens,
              truncate_line, truncate_token, move_token)


def mutate(text: str, ops: list, pick) -> str:
    """`text` after each operation of `ops` in turn."""
    lines = text.split("\n")
    for op in ops:
        if not lines:
            lines = [""]
        lines = op(lines, pick)
    return "\n".join(lines)
