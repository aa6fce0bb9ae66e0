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
        if len(message) > self.MAX_MESSAGE:
            message = message[:300] + f"... [{len(message) - 300} more characters]"
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


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
