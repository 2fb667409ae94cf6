"""One structlog configuration for every process.

JSON lines in services (and whenever stderr is not a terminal), readable console output
for people. Standard-library loggers (aiokafka, aiohttp) go through the same
processors, so every line a service writes is JSON. `event_context` binds return_id,
event_id and correlation_id for everything logged while one event is handled.

Both are on every record's path: a line below the level is dropped before any processor
runs (`filter_by_level` first), and an event's fields are one context variable holding a
dict, set and reset once per record, merged into each line by `merge_event_fields`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

import structlog

FRAMEWORK_LOGGERS = ("aiokafka", "kafka", "aiohttp.access")

_EVENT_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("boomerang_event", default=None)


class RepeatedMessageFilter(logging.Filter):
    """Lets a framework's repeated line through once per window, then says how many were held.

    While a broker is down aiokafka logs "Unable to update metadata" hundreds of times a
    second; 16,000 identical lines hide the few that matter. The first line of each kind
    passes; repeats within `window_s` are counted, and the next one after the window carries
    `repeated` (how many were held back). Boomerang's own loggers are never filtered.
    """

    def __init__(
        self,
        prefixes: tuple[str, ...],
        window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self.clock = clock
        self.last_passed: dict[tuple[str, int, str], float] = {}
        self.held: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        passed_at = self.last_passed.get(key)
        if passed_at is not None and now - passed_at < self.window_s:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        self.last_passed[key] = now
        held = self.held.pop(key, 0)
        if held:
            record.repeated = held
        if len(self.last_passed) > 1000:  # messages with ever-changing text: forget old ones
            cutoff = now - self.window_s
            self.last_passed = {k: t for k, t in self.last_passed.items() if t >= cutoff}
            self.held = {k: n for k, n in self.held.items() if k in self.last_passed}
        return True


def configure_logging(
    service: str, *, json_lines: bool | None = None, level: str | None = None
) -> None:
    level_name = (level or os.environ.get("BOOMERANG_LOG_LEVEL") or "INFO").upper()
    if json_lines is None:
        fmt = os.environ.get("BOOMERANG_LOG_FORMAT")
        json_lines = fmt == "json" if fmt else not sys.stderr.isatty()
    shared: list[Any] = [
        merge_event_fields,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=LevelCheckedLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            structlog.processors.format_exc_info if json_lines else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatedMessageFilter(FRAMEWORK_LOGGERS))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_name)
    framework_level = os.environ.get("BOOMERANG_FRAMEWORK_LOG_LEVEL", "WARNING").upper()
    for noisy in FRAMEWORK_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(framework_level), root.level))


class LevelCheckedLogger(structlog.stdlib.BoundLogger):
    """A debug or info line below its logger's level returns before structlog builds the
    event and runs the processors (filter_by_level would drop it there, after a copy of the
    context and a call per line: 2 % of the coordinator's time with its per-event debug
    lines)."""

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return super().debug(event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.INFO):
            return None
        return super().info(event, *args, **kw)


def _identity(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return event_dict


def _add_service(service: str) -> Any:
    def add(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def merge_event_fields(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The fields of the event being handled, under what the line says itself."""
    fields = _EVENT_FIELDS.get()
    if fields:
        for name, value in fields.items():
            event_dict.setdefault(name, value)
    return event_dict


class event_context:  # lower case: used as `with event_context(...)`, like a function
    """Bind the envelope's ids (and `extra`) to every log line written inside the block;
    an inner block adds to the outer one's fields and gives them back when it ends."""

    __slots__ = ("fields", "token")

    def __init__(self, envelope: dict[str, Any] | None = None, **extra: Any) -> None:
        fields = dict(_EVENT_FIELDS.get() or ())
        if envelope:
            fields["return_id"] = envelope.get("return_id")
            fields["event_id"] = envelope.get("event_id")
            fields["correlation_id"] = envelope.get("correlation_id")
            fields["event_type"] = envelope.get("event_type")
        fields.update(extra)
        self.fields = fields
        self.token: Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> None:
        self.token = _EVENT_FIELDS.set(self.fields)

    def __exit__(self, *exc_info: object) -> None:
        if self.token is not None:
            _EVENT_FIELDS.reset(self.token)
            self.token = None


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
