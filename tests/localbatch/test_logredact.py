"""Log redaction: every record from every logger loses SAS signatures and account keys."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from localbatch import logredact

SAS = "http://127.0.0.1:1/acct/c/b.txt?se=2030-01-01&sp=r&sv=2023-11-03&sr=b&sig=AbC%2B/xyz%3D"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    logredact.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_messages_arguments_and_tracebacks_are_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("urllib3.connectionpool")  # a child logger, as the leaking ones are
    log.warning("Retrying (%r) after connection broken by %r: %s", "Retry(total=1)", "refused", SAS)
    logging.getLogger("x").debug("conn DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0;B=1")
    logging.getLogger("y").info("encoded sig%3DAbCdEf%2B in a URL, msig=kept, signature=kept")
    try:
        raise ValueError(f"boom at {SAS}")
    except ValueError:
        logging.getLogger("z").exception("failed: %s", "detail")
    text = captured.getvalue()
    assert "AbC" not in text and "c2VjcmV0" not in text and "AbCdEf" not in text
    assert text.count("REDACTED") == 4
    assert "msig=kept, signature=kept" in text
    assert "Traceback" in text and "ValueError: boom at" in text and "sig=REDACTED" in text
    assert "/acct/c/b.txt?se=2030-01-01&sp=r" in text  # what is not secret stays, for diagnosis


def test_install_is_idempotent(captured: io.StringIO) -> None:
    logredact.install()
    logredact.install()
    logging.getLogger("a").warning("x sig=secret1")
    assert captured.getvalue().strip() == "a WARNING x sig=REDACTED"
