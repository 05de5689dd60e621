"""Strings from files and libraries, made fit to show: one line, no control characters.

A model's JSON, an image's metadata or a file name can carry terminal escape sequences
or other control characters; shown raw they would rewrite the terminal or break a
one-line message. Everything shown to a user passes through `printable`.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL, except the ones a message may keep (tab and newline are
# made spaces by `printable`)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def printable_lines(text: str, limit: int = 100_000) -> str:
    """Like `printable`, for text shown over several lines (a prompt, a file's parameters):
    line breaks and tabs stay, every other control character becomes '?'."""
    text = str(text).replace("\r\n", "\n")
    text = "".join("?" if ch not in "\n\t" and _CONTROL.match(ch) else ch for ch in text)
    text = _BIDI.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str, limit: int = 2000) -> str:
    """`text` with every control character (escape sequences included) replaced by a
    visible '?', whitespace runs folded into one space, and at most `limit` characters."""
    text = " ".join(str(text).split())
    text = _CONTROL.sub("?", text)
    # bidirectional overrides can make a message read differently from what it says
    text = _BIDI.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def os_reason(error: OSError) -> str:
    """Why the system refused, as words for the end of a sentence: "read-only file system",
    "file name too long" (the error's class name when it has no text)."""
    return (error.strerror or error.__class__.__name__).lower()


# In JSON every C0 control is escaped already; DEL, the C1 controls (some terminals take
# 0x9b as an escape) and bidirectional overrides are not.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_json(text: str) -> str:
    """JSON text with every character a terminal could act on written as a \\u escape:
    still the same JSON, safe to print."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
