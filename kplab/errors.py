"""Errors kplab raises on bad input.

Every error a user can cause is a `KplabError`: the CLI prints it as one line
(`kplab: error: FILE:LINE: what is wrong`) and exits 2, a notebook shows it as a
message, and nothing shows a Python traceback. Parse errors carry the file, the
line and, where known, the column, so that the message points at the fault the
way a compiler does.
"""
from __future__ import annotations


class KplabError(Exception):
    """Base class of every error caused by input (files, options, widgets)."""

    #: Messages quote the offending input; a 10 MB token is cut, not echoed.
    MAX_MESSAGE = 400

    def __init__(self, message: str, *, hint: str | None = None):
        message = printable(message)
        if len(message) > self.MAX_MESSAGE:
            message = message[:300] + f"... [{len(message) - 300} more characters]"
        hint = printable(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)}
_CONTROL.update({c: f"\\x{c:02x}" for c in range(127, 160)})           # DEL and the C1 controls
_CONTROL.update({9: "\\t", 10: "\\n", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(text: str) -> str:
    """`text` with control characters written as escapes (\\r, \\x1b): a message is one line,
    and input it quotes cannot move the cursor or colour a terminal."""
    if text.isprintable():
        return text
    return text.translate(_CONTROL)


class ParseError(KplabError, ValueError):
    """Text that iptables-restore (or iptables) would refuse.

    `file` and `line` locate the fault (line is 1-based); `text` is the
    offending line and `column` the 0-based position of the bad token in it,
    so `pretty()` can underline it.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 text: str | None = None, column: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line
        self.text = text
        self.column = column

    def location(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}: "
        if self.line:
            return f"line {self.line}: "
        if self.file:
            return f"{self.file}: "
        return ""

    def __str__(self) -> str:
        return self.location() + KplabError.__str__(self)

    def pretty(self) -> str:
        """The message with the offending line and a caret under the bad token."""
        return with_caret(str(self), self.text, self.column)


def with_caret(message: str, text: str | None, column: int | None) -> str:
    """`message`, then the offending line and a caret under the bad token."""
    out = message
    if text is not None:
        if not text.isprintable():                  # escapes for control characters; the caret follows
            column = len(printable(text[:column])) if column is not None else None
            text = printable(text)
        out += "\n    " + text
        if column is not None:
            out += "\n    " + " " * column + "^"
    return out


class RulesetError(ParseError):
    """A ruleset that parses but that the kernel refuses to load.

    Examples: a jump to a missing chain, a jump loop reachable from a built-in
    chain, DNAT in a hook where it is invalid.
    """


class TopologyError(KplabError, ValueError):
    """A topology file or a packet source/destination that does not fit the node."""


class UnsupportedError(KplabError):
    """A walk reached a match or target that kplab does not model.

    The rule was loaded as opaque; the trace cannot say whether it matches
    unless the caller says what to assume (`assume_unsupported`).
    """


class TooManyPathsError(KplabError):
    """All-paths enumeration found more outcomes than the caller allowed."""

    def __init__(self, message: str, count: int):
        super().__init__(message)
        self.count = count
