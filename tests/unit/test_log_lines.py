"""The JSON log line ``configure_logging`` sets up: its fields, and the lookups it skips."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from gateway.observe.logs import configure_logging


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    flags = logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    try:
        yield
    finally:
        root.handlers[:], root.level = handlers, level
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags


def test_a_line_holds_its_fields_and_no_thread_or_process_is_looked_up(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO")
    log = logging.getLogger("gateway.test")
    record = log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None)
    record.fields = {"status": 200, "model": "m"}
    log.handle(record)
    line = orjson.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert list(line) == ["ts", "level", "logger", "msg", "status", "model"]
    assert (line["level"], line["logger"], line["msg"]) == ("info", "gateway.test", "request")
    assert (line["status"], line["model"]) == (200, "m")
    assert record.thread is None and record.process is None and record.processName is None
