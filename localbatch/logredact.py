"""No SAS signature or account key in any log line, whoever logs it and at whatever level.

Libraries below localbatch log URLs with their query strings (urllib3's
``Retrying (...) after connection broken by ...: /c/b?...&sig=...`` warnings,
azure-core's retry messages, exception reprs in tracebacks). :func:`install`
wraps the process's log record factory, so every record, from every logger,
is redacted when it is created: its message (arguments merged in), its
exception text and its stack text. ``sig=...`` (also URL-encoded,
``sig%3D...``) and ``AccountKey=...`` values become ``REDACTED``.
:func:`install` is idempotent and cheap; :mod:`localbatch.storage` calls it
before it opens any connection, so it is in place before a URL with a SAS can
be logged.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_SECRET = re.compile(
    r"(?<![A-Za-z0-9_])(?P<key>(?:sig|AccountKey|SharedAccessSignature)(?:=|%3D))"
    r"(?P<value>[^&;\s'\"<>)\]}]+)",
    re.IGNORECASE,
)
REDACTED = "REDACTED"
_lock = threading.Lock()
_installed = False
_formatter = logging.Formatter()


def redact(text: str) -> str:
    """``text`` with every SAS signature and account key value replaced by ``REDACTED``."""
    return _SECRET.sub(lambda m: m.group("key") + REDACTED, text)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep what can be shown, redacted
        message = f"{record.msg!s} {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_formatter.formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install() -> None:
    """Redact every log record created from now on in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
