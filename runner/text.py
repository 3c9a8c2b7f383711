"""Text from data made safe to print: the one escaping helper for the terminal.

Everything the runner prints that came from data (words, file names, task
ids, stderr tails, service messages) goes through :func:`safe` first, so a
file cannot clear the screen, retitle the terminal, ring the bell, hide text
behind a carriage return or reorder a line with bidirectional overrides.

Contract of :func:`safe`:

* C0 controls (U+0000-U+001F), DEL (U+007F) and C1 controls (U+0080-U+009F)
  become visible escapes: ``\\t``, ``\\n``, ``\\r`` for those three, ``\\xHH``
  for the others (ESC is ``\\x1b``, NUL ``\\x00``);
* bidirectional embeddings, overrides and isolates (U+202A-U+202E,
  U+2066-U+2069) and the line/paragraph separators U+2028/U+2029 become
  ``\\uHHHH``;
* everything else, all printable Unicode included, is unchanged, so ordinary
  names and words read as they are. A backslash is not doubled: the output is
  for people, never parsed back.

:func:`safe_lines` keeps the line structure of a multi-line text (stderr
tails) and escapes within each line. :func:`shorten_middle` fits a long path
in a column by cutting its middle, not its end (where the file name is).
"""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
ELLIPSIS = "…"


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object) -> str:
    """``str(value)`` with every control character made visible (see the module contract)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)


def safe_lines(text: str) -> list[str]:
    """The lines of ``text`` (split on ``\\n``, ``\\r\\n``), each escaped with :func:`safe`."""
    return [safe(line) for line in text.replace("\r\n", "\n").split("\n")] if text else []


def is_safe(text: str) -> bool:
    """True when ``text`` holds nothing :func:`safe` would escape."""
    return _UNSAFE.search(text) is None


def shorten_middle(text: str, width: int) -> str:
    """``text`` cut in the middle to at most ``width`` characters (``a/b/…/name.txt``).

    The end keeps a little more than the start: the file name matters most.
    """
    if width < 1:
        return ""
    if len(text) <= width:
        return text
    if width <= 2:
        return text[-width:]
    keep = width - len(ELLIPSIS)
    head = keep // 2 - (1 if keep >= 8 else 0)
    tail = keep - head
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


class EscapeFilter(logging.Filter):
    """A handler filter that escapes each record's formatted message (log lines name files)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not is_safe(message):
            record.msg, record.args = safe(message), None
        return True
