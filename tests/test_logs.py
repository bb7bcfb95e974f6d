"""`mgmt serve` logging: levels per logger, JSON lines with the bound work fields."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from control_plane.core.logfields import bound
from control_plane.logs import configure, parse_levels


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield None
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name in ("grpc", "asyncio", "aiohttp", "psycopg", "urllib3", "opentelemetry", "control_plane.x"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_log_levels_parse_per_logger() -> None:
    assert parse_levels("info") == (logging.INFO, {})
    assert parse_levels("debug,grpc=info,aiohttp.access=warning") == (
        logging.DEBUG,
        {"grpc": logging.INFO, "aiohttp.access": logging.WARNING},
    )
    with pytest.raises(ValueError, match="--log-level expects LEVEL or LOGGER=LEVEL"):
        parse_levels("verbose")


def test_libraries_stay_at_warning_unless_named(restore_logging: object) -> None:
    configure("debug")
    assert logging.getLogger("control_plane.core").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("grpc._cython").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("asyncio").getEffectiveLevel() == logging.WARNING

    configure("info,asyncio=debug")
    assert logging.getLogger("asyncio").getEffectiveLevel() == logging.DEBUG


def test_json_lines_carry_the_bound_fields(
    restore_logging: object, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("info", "json")
    with bound(process_id="p-1", step_id="charge", attempt=2, service="PaymentService"):
        logging.getLogger("control_plane.x").warning("charge failed: %s", "card declined")
    logging.getLogger("control_plane.x").info("outside")

    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())

    assert first["level"] == "warning" and first["logger"] == "control_plane.x"
    assert first["message"] == "charge failed: card declined"
    assert (first["process_id"], first["step_id"], first["attempt"], first["service"]) == (
        "p-1",
        "charge",
        2,
        "PaymentService",
    )
    assert "T" in first["time"]
    assert "process_id" not in second


def test_json_lines_carry_the_current_spans_trace_and_span_ids(
    restore_logging: object, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("info", "json")
    span = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=False)
    with trace.use_span(NonRecordingSpan(span)):
        logging.getLogger("control_plane.x").warning("in a span")
    logging.getLogger("control_plane.x").warning("outside")

    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())

    assert (first["trace_id"], first["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert "trace_id" not in second and "span_id" not in second


def test_serve_writes_json_lines_and_refuses_a_bad_level(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "control_plane", "serve", "--log-level", "loud", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "--log-level expects LEVEL" in bad.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        refused = subprocess.run(
            [
                sys.executable, "-m", "control_plane", "serve", "--log-format", "json", "--data-dir", str(tmp_path),
                "--listen", "127.0.0.1:0", "--http-listen", f"127.0.0.1:{taken.getsockname()[1]}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip
    # It opened its store (logging each migration as a JSON line), then found its HTTP port taken.
    lines = [json.loads(line) for line in refused.stderr.splitlines() if line.startswith("{")]
    assert refused.returncode == 1
    assert any("applied migration" in line["message"] for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
