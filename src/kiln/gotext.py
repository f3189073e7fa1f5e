"""Values in Go's spellings, as kaniko (a Go program) reads them from its flags, environment and context URLs."""

from __future__ import annotations

from kiln.errors import UsageError


def go_bool(text: str, what: str) -> bool:
    """A boolean as Go's strconv.ParseBool reads it; a UsageError naming `what` (a flag, a variable) otherwise."""
    truth = text.strip()
    if truth in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if truth in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise UsageError(f"expected true or false, got {text!r}", what)
