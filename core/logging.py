"""Structured logging for SceneOS, with personal data masked before anything is written.

A bank's logs are copied to log shippers, search clusters, vendors' support tickets and laptops; they
are kept for years and read by far more people than the core ledger. Regulation (PIPL, the PBoC's
rules on financial customer data) therefore forbids raw resident ID numbers, mobile numbers and bank
card numbers in them. Rather than trusting every call site to remember that, the one logging pipeline
masks them itself, as the last step before a line is rendered: every event, every value, every
exception traceback, and every record from the standard library (uvicorn, SQLAlchemy, Alembic) too.

structlog is the only logging library. ``configure_logging`` points structlog at the standard
library's ``logging`` and installs a single ``ProcessorFormatter`` handler on the root logger, so
both kinds of records go through the same processors and the same masking.

The masking is greedy on purpose: any run of 11 or more digits (single spaces or dashes allowed
between digits, an ``X`` allowed at the end) is masked down to its last four characters. That
catches IDs, phones with or without ``+86``, and cards however they are grouped, and also some
harmless long numbers; a leaked card number is an incident, an over-masked reference number is not.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextvars import Token
from typing import IO, Any, Literal, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "bind_request_context",
    "clear_request_context",
    "configure_logging",
    "get_logger",
    "mask_sensitive",
    "mask_text",
    "request_context",
]

LogMode = Literal["console", "json"]

# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------

#: Characters that may sit (one at a time) between the digits of one number: "138 0013 8000",
#: "6222-0212-...", also the no-break, ideographic and full-width variants people paste from Chinese
#: documents and spreadsheets, so such a copy does not slip through.
_SEPARATORS = " \u00a0\u3000-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"
#: Check character of a resident ID (ISO 7064 MOD 11-2 gives 10 -> "X"), half and full width.
_CHECK_LETTERS = "Xx\uff38\uff58"
_KEEP_LAST = 4
_MIN_DIGITS = 11

_SEP_CLASS = "[" + "".join(re.escape(c) for c in _SEPARATORS) + "]"
# ``\d`` is deliberately the Unicode one: full-width digits (U+FF10..U+FF19) are digits to a reader too.
# The separator class and ``\d`` are disjoint, so the pattern cannot backtrack catastrophically.
_LONG_NUMBER = re.compile(rf"\d(?:{_SEP_CLASS}?\d){{{_MIN_DIGITS - 1},}}[{re.escape(_CHECK_LETTERS)}]?")
_SEPARATOR_SET = frozenset(_SEPARATORS)
_MAX_DEPTH = 32


def _mask_match(match: re.Match[str]) -> str:
    """Star every digit of one long number except its last four characters; keep separators."""
    text = match.group()
    significant = sum(1 for c in text if c not in _SEPARATOR_SET)
    hide = significant - _KEEP_LAST
    out: list[str] = []
    for c in text:
        if c in _SEPARATOR_SET:
            out.append(c)
        elif hide > 0:
            # Only digits come before the last four significant characters (an X can only end it).
            out.append("*")
            hide -= 1
        else:
            out.append(c)
    return "".join(out)


def mask_text(s: str) -> str:
    """Mask ID, phone and card numbers (any run of 11+ digits) in *s*, keeping each one's last 4.

    ``"13800138000"`` becomes ``"*******8000"`` and ``"11010519491231002X"`` becomes
    ``"**************002X"``. Only digits are replaced, one ``*`` each; everything else, the
    separators included, is left alone, so the text keeps its length and shape. Amounts
    (``"126.50"``), years and short references (``"A12345"``) are untouched.

    Use it for any text that may leave the process outside the logging pipeline too (error
    messages in API responses, exception strings shown to operators), for the same regulatory
    reason the logs are masked.
    """
    return _LONG_NUMBER.sub(_mask_match, s)


def _mask_int(value: int) -> Any:
    try:
        text = str(int(value))
    except ValueError:  # longer than sys.get_int_max_str_digits(): certainly a long number
        return f"<int of {value.bit_length()} bits, masked>"
    masked = mask_text(text)
    return value if masked == text else masked


def _mask_object(value: object, active: set[int], depth: int) -> Any:
    """Mask an arbitrary object the way renderers would show it (``__structlog__`` or ``repr``)."""
    hook = getattr(value, "__structlog__", None)
    if callable(hook):
        try:
            return _mask_value(hook(), active, depth + 1)
        except Exception:
            pass  # a broken hook must not stop the log line: fall back to repr like the renderers
    try:
        shown = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"
    try:
        as_str = str(value)
    except Exception:
        as_str = shown
    masked = mask_text(shown)
    if masked != shown or mask_text(as_str) != as_str:
        # Replace the object by its masked text: the renderer would otherwise print it raw.
        return masked
    return value


def _mask_value(value: Any, active: set[int], depth: int) -> Any:
    """Return *value* with every long number masked; never changes *value* itself."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        masked = mask_text(value)
        return value if masked == value else masked
    if isinstance(value, int):
        return _mask_int(value)
    if isinstance(value, float):
        text = repr(float(value))
        masked = mask_text(text)
        return value if masked == text else masked
    if not isinstance(value, dict | list | tuple | set | frozenset):
        return _mask_object(value, active, depth)
    if depth >= _MAX_DEPTH:
        return _mask_object(value, active, depth)
    if id(value) in active:  # a container that holds itself: render like repr() does
        return "[...]" if isinstance(value, list) else "{...}" if isinstance(value, dict) else "(...)"
    active.add(id(value))
    try:
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                new_key = _mask_value(key, active, depth + 1)
                try:
                    hash(new_key)
                except TypeError:  # e.g. a key whose __structlog__ gave a dict
                    new_key = mask_text(repr(key))
                if new_key in out:  # two keys masked to the same text: keep both values
                    n = 2
                    while f"{new_key}#{n}" in out:
                        n += 1
                    new_key = f"{new_key}#{n}"
                out[new_key] = _mask_value(item, active, depth + 1)
            return out
        items = [_mask_value(item, active, depth + 1) for item in value]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple):
            make = getattr(value, "_make", None)  # keep named tuples named
            if make is not None:
                with contextlib.suppress(Exception):
                    return make(items)
            return tuple(items)
        try:
            return frozenset(items) if isinstance(value, frozenset) else set(items)
        except TypeError:  # an element became unhashable (its __structlog__ gave a dict)
            return items
    finally:
        active.discard(id(value))


def mask_sensitive(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask IDs, phones and card numbers everywhere in the event.

    The event text, every value (strings, ints of 11+ digits, floats, nested dicts, lists,
    tuples and sets, dict keys, and other objects through their ``repr``), the bound context and
    the formatted exception are masked with :func:`mask_text`. It returns a new dict and copies
    containers instead of changing them: the caller's objects are still in use after logging.

    It must run after ``format_exc_info`` (tracebacks are text by then) and right before the
    renderer, so no later processor can add anything unmasked.
    """
    return cast(EventDict, _mask_value(dict(event_dict), set(), 0))


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------

_configure_lock = threading.Lock()


class _MaskingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose error report never shows the record.

    ``logging.Handler.handleError`` prints the failed record's raw ``msg`` and ``args`` to stderr,
    i.e. the unmasked event: exactly what masking is for. This one reports only where it failed.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        if not logging.raiseExceptions or sys.stderr is None:
            return
        exc_type, exc, _ = sys.exc_info()
        detail = mask_text("".join(traceback.format_exception_only(exc_type, exc)).strip()) if exc else ""
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"--- Logging error (record from logger {record.name!r} at "
                f"{record.pathname}:{record.lineno} dropped; its content is not shown) ---\n{detail}\n"
            )


class _StderrHandler(_MaskingStreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (like ``logging.lastResort``).

    Test runners and CLIs swap ``sys.stderr``; holding on to the object seen at configuration time
    would write into a closed or stale stream later.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:  # set by StreamHandler.setStream only; ignore
        pass


def _drop_uvicorn_color_message(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """uvicorn passes a second, ANSI-coloured copy of its message as ``extra``; one copy is enough."""
    event_dict.pop("color_message", None)
    return event_dict


def _foreign_stack_info(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's ``stack_info`` is already text: show it under ``stack`` like structlog's own."""
    stack = event_dict.pop("stack_info", None)
    if isinstance(stack, str):
        event_dict["stack"] = stack
    return event_dict


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(str(level).upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return number


def configure_logging(
    mode: LogMode = "console",
    level: str = "INFO",
    stream: IO[str] | None = None,
) -> None:
    """Set up structlog and the stdlib root logger; call again to reconfigure.

    *mode* ``"json"`` writes one JSON object per line (for log shippers); ``"console"`` writes
    structlog's human-readable lines, coloured only when *stream* is a terminal. *stream* defaults to
    the current ``sys.stderr`` so logs never mix with a CLI's output on stdout.

    The root logger ends up with exactly one handler, this one: handlers installed earlier (by
    ``logging.basicConfig``, ``fileConfig`` in an Alembic ``env.py``, a previous call) would write
    records unmasked, so they are removed. Loggers with their own handlers and ``propagate=False``
    (uvicorn's default config, SQLAlchemy's ``echo=True``) bypass the root and are not masked: run
    uvicorn with ``log_config=None`` and turn SQL logging on through the ``sqlalchemy.engine`` level.
    """
    if mode not in ("console", "json"):
        raise ValueError(f"unknown log mode {mode!r}: use 'console' or 'json'")
    level_no = _level_number(level)

    renderer: Processor
    if mode == "json":
        # ensure_ascii (the default) keeps every line writable to any stream encoding.
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = _is_tty(stream if stream is not None else sys.stderr)
        renderer = structlog.dev.ConsoleRenderer(colors=colors)

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        timestamper,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from plain ``logging`` (uvicorn, SQLAlchemy, Alembic) get the same fields first.
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.ExtraAdder(),
            _drop_uvicorn_color_message,
            _foreign_stack_info,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # exceptions of stdlib records
            mask_sensitive,  # last before rendering: nothing unmasked can be added after it
            renderer,
        ],
    )
    handler: logging.Handler = _StderrHandler() if stream is None else _MaskingStreamHandler(stream)
    handler.setFormatter(formatter)

    with _configure_lock:
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
            if isinstance(old, _MaskingStreamHandler):
                old.close()  # ours; never close handlers someone else owns
        root.addHandler(handler)
        root.setLevel(level_no)
        # Alembic narrates every migration step at INFO; a bank's operator needs only its problems.
        logging.getLogger("alembic").setLevel(max(level_no, logging.WARNING))

        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                *shared,
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.processors.StackInfoRenderer(),
                # Format the traceback here, while the exception is still current, then hand the
                # event to the root handler, whose formatter masks and renders it.
                structlog.processors.format_exc_info,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            context_class=dict,
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger named *name* (default: the calling module's ``__name__``).

    If logging was never configured, it is configured with the defaults first: structlog's own
    defaults print unmasked, and no code path may log before masking is in place.
    """
    if name is None:
        name = sys._getframe(1).f_globals.get("__name__", "sceneos")
    if not structlog.is_configured():
        configure_logging()
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


# --------------------------------------------------------------------------------------------------
# Request context
# --------------------------------------------------------------------------------------------------


def bind_request_context(
    *,
    request_id: str | None = None,
    tenant_id: str | None = None,
    partner_id: str | None = None,
    **more: Any,
) -> Mapping[str, Token[Any]]:
    """Add ids to every log line of the current request (thread or asyncio task).

    ``None`` values are skipped. Returns the context-variable tokens; pass them to
    ``structlog.contextvars.reset_contextvars(**tokens)`` to undo just this binding, or use
    :func:`request_context`, which does that for you.
    """
    values = {"request_id": request_id, "tenant_id": tenant_id, "partner_id": partner_id, **more}
    return structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear_request_context() -> None:
    """Forget everything bound with :func:`bind_request_context` in the current context."""
    structlog.contextvars.clear_contextvars()


@contextlib.contextmanager
def request_context(**ids: Any) -> Iterator[None]:
    """Bind *ids* (``request_id=``, ``tenant_id=``, ``partner_id=``, ...) for the ``with`` block.

    On exit the previous values come back, so nested blocks and concurrent tasks do not leak ids
    into each other's lines.
    """
    tokens = bind_request_context(**ids)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
