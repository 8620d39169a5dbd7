"""core.logging: structured output, request context, and masking of IDs, phones and card numbers.

The property tests build realistic secrets (resident IDs with a valid ISO 7064 check character,
mainland mobiles in several spellings, Luhn-valid card numbers in several groupings), wrap them in
random text that may glue letters, digits and separators onto them, log them through the real
pipeline into a ``StringIO`` and check what came out.

How "masked" is checked, soundly whatever the surrounding text is: masking only ever turns a digit
into ``*`` and keeps the text's length, so the secret's position in the output is known. There,
every digit of the secret except its last four characters must be ``*``, and nowhere in the output
may a run of 11 digits remain. (Checking that the secret's digits "do not appear" in the output
would not be sound: random text next to it may legitimately contain the same short digit runs.)
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import re
from collections import namedtuple
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn

from core.logging import (
    bind_request_context,
    clear_request_context,
    configure_logging,
    get_logger,
    mask_sensitive,
    mask_text,
    request_context,
)

# The spec's definition of a long number (space or dash between digits); the implementation accepts
# more separators, so anything this finds is something the implementation should have masked.
_LONG_RUN = re.compile(r"\d(?:[ -]?\d){10}")

# --------------------------------------------------------------------------------------------------
# Isolation: every test leaves structlog and the root logger as it found them.
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _isolated_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    was_configured, saved_config = structlog.is_configured(), structlog.get_config()
    saved_context = structlog.contextvars.get_contextvars()
    structlog.contextvars.clear_contextvars()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**saved_context)
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()
        if was_configured:
            structlog.configure(**saved_config)


@pytest.fixture(autouse=True, scope="module")
def _restore_logging_defaults() -> Iterator[None]:
    """Safety net for the whole module (module-scoped, so hypothesis tests may use it too)."""
    with _isolated_logging():
        yield


@contextlib.contextmanager
def capture(mode: str = "json", level: str = "DEBUG") -> Iterator[io.StringIO]:
    with _isolated_logging():
        out = io.StringIO()
        configure_logging(mode, level=level, stream=out)  # type: ignore[arg-type]
        yield out


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().split("\n") if line]


# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_char(body: str) -> str:
    """ISO 7064 MOD 11-2 check character of an 18-character resident ID."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


def digit_strings(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 7)) == 0:
        return draw(digit_strings(15))  # first-generation ID: 15 digits, no check character
    body = draw(digit_strings(17))
    if draw(st.booleans()):  # make the check character X (4a + 2b covers every residue mod 11)
        body = next(
            b
            for a, c in itertools.product("0123456789", repeat=2)
            if id_check_char(b := body[:15] + a + c) == "X"
        )
    check = id_check_char(body)
    if check == "X" and draw(st.booleans()):
        check = "x"
    return body + check


@st.composite
def mobiles(draw: st.DrawFn) -> str:
    number = "1" + draw(st.sampled_from("3456789")) + draw(digit_strings(9))
    groups = f"{number[:3]}{{0}}{number[3:7]}{{0}}{number[7:]}"
    body = draw(st.sampled_from([number, groups.format(" "), groups.format("-")]))
    prefix = draw(st.sampled_from(["", "", "+86 ", "+86", "86", "86-", "+86-"]))
    return prefix + body


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(digit_strings(length - 1))
    number = body + luhn.calc_check_digit(body)
    separator = draw(st.sampled_from(["", " ", "-"]))
    return separator.join(number[i : i + 4] for i in range(0, length, 4))


secrets = st.one_of(resident_ids(), mobiles(), card_numbers())

# Text around the secret: often digits, separators and X (to glue onto it), sometimes anything.
_GLUE = "0123456789  --xX+.,:;/()#=*abcZ号码卡"
noise = st.text(st.one_of(st.sampled_from(_GLUE), st.characters()), max_size=10)
printable_noise = st.text(st.sampled_from(_GLUE + "'\"[]{}\\é中文"), max_size=10)
line_noise = st.text(st.one_of(st.sampled_from(_GLUE), st.characters(exclude_characters="\n")), max_size=10)


def significant(secret: str) -> list[int]:
    """Positions of the secret's digits and check letter (what masking may star or keep)."""
    return [i for i, c in enumerate(secret) if c.isdecimal() or c in "Xx"]


def assert_hidden(rendered: str, prefix: str, secret: str, suffix: str) -> None:
    """*rendered* is the masked form of ``prefix + secret + suffix``; see the module docstring."""
    original = prefix + secret + suffix
    assert len(rendered) == len(original), (original, rendered)
    for before, after in zip(original, rendered, strict=True):
        assert after == before or (before.isdecimal() and after == "*"), (original, rendered)
    span = rendered[len(prefix) : len(prefix) + len(secret)]
    positions = significant(secret)
    assert len(positions) >= 11
    assert all(span[i] == "*" for i in positions[:-4]), (secret, span)
    assert not _LONG_RUN.search(rendered), rendered


def expected_alone(secret: str) -> str:
    """The secret masked on its own: all but its last four significant characters starred."""
    hide = set(significant(secret)[:-4])
    return "".join("*" if i in hide else c for i, c in enumerate(secret))


PROPERTY = settings(max_examples=200, deadline=None)

# --------------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------------


@PROPERTY
@given(prefix=noise, secret=secrets, suffix=noise)
def test_mask_text_hides_all_but_the_last_four(prefix: str, secret: str, suffix: str) -> None:
    assert mask_text(secret) == expected_alone(secret)
    masked = mask_text(prefix + secret + suffix)
    assert_hidden(masked, prefix, secret, suffix)
    assert mask_text(masked) == masked


@PROPERTY
@given(prefix=noise, secret=secrets, suffix=noise)
def test_json_lines_mask_message_values_keys_nesting_and_context(
    prefix: str, secret: str, suffix: str
) -> None:
    text = prefix + secret + suffix
    with capture() as out, request_context(request_id=text, tenant_id="bank_a"):
        get_logger("prop").info(text, value=text, nested={"list": [text, (text,)], text: {"deep": [text]}})
    [rec] = records(out)
    [key] = [k for k in rec["nested"] if k != "list"]
    for rendered in (
        rec["event"],
        rec["value"],
        rec["request_id"],
        rec["nested"]["list"][0],
        rec["nested"]["list"][1][0],
        key,
        rec["nested"][key]["deep"][0],
    ):
        assert_hidden(rendered, prefix, secret, suffix)
    assert rec["tenant_id"] == "bank_a"


@PROPERTY
@given(prefix=printable_noise, secret=secrets, suffix=printable_noise)
def test_console_lines_mask_message_and_values(prefix: str, secret: str, suffix: str) -> None:
    text = prefix + secret + suffix
    with capture("console") as out:
        get_logger("prop").warning(text, value=text, nested={"list": [text]})
    output = out.getvalue()
    assert "[warning" in output
    assert not _LONG_RUN.search(output), output
    assert output.count("*") >= 3 * 7


@PROPERTY
@given(
    number=st.one_of(
        st.integers(10**10, 10**24),
        mobiles().map(lambda s: int("".join(c for c in s if c.isdecimal()))),
    )
)
def test_long_ints_are_rendered_as_masked_strings(number: int) -> None:
    with capture() as out:
        get_logger("prop").info("ints", number=number, numbers=[number, -number], year=2026)
    [rec] = records(out)
    digits = str(number)
    expected = "*" * (len(digits) - 4) + digits[-4:]
    assert rec["number"] == expected
    assert rec["numbers"] == [expected, "-" + expected]
    assert rec["year"] == 2026


@PROPERTY
@given(prefix=line_noise, secret=secrets, suffix=line_noise)
def test_exception_text_is_masked(prefix: str, secret: str, suffix: str) -> None:
    message = prefix + secret + suffix
    with capture() as out:
        try:
            raise ValueError(message)
        except ValueError:
            get_logger("prop").exception("payment failed")
    [rec] = records(out)
    assert rec["level"] == "error"
    trace = rec["exception"]
    assert trace.startswith("Traceback (most recent call last):")
    # The traceback ends with "ValueError: <message>" (the noise is too short to contain that).
    tail = trace[trace.rindex("ValueError: ") + len("ValueError: ") :]
    assert_hidden(tail, prefix, secret, suffix)
    assert not _LONG_RUN.search(trace)


@PROPERTY
@given(prefix=noise, secret=secrets, suffix=noise)
def test_stdlib_records_are_masked(prefix: str, secret: str, suffix: str) -> None:
    text = prefix + secret + suffix
    with capture() as out:
        logging.getLogger("prop.stdlib").warning("%s", text, extra={"who": text})
    [rec] = records(out)
    assert rec["logger"] == "prop.stdlib"
    assert rec["level"] == "warning"
    assert_hidden(rec["event"], prefix, secret, suffix)
    assert_hidden(rec["who"], prefix, secret, suffix)


# --------------------------------------------------------------------------------------------------
# Examples: masking
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "126.50",
        "2026",
        "A12345",
        "2026-01-01",
        "order 1234567890",
        "10.00 CNY",
        "call 95588",
        "1,234,567,890.00",
    ],
)
def test_short_numbers_amounts_and_references_are_untouched(text: str) -> None:
    assert mask_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("11010519491231002X", "**************002X"),
        ("id:11010519491231002x;", "id:**************002x;"),
        ("110105194912310", "***********2310"),
        ("13800138000", "*******8000"),
        ("tel13800138000ok", "tel*******8000ok"),
        ("+86 138-0013-8000", "+** ***-****-8000"),
        ("6222021234567890123", "***************0123"),
        ("6222 0212 3456 7890 123", "**** **** **** ***0 123"),
        ("12345678901", "*******8901"),
        ("a 13800138000 and 6222021234567890123", "a *******8000 and ***************0123"),
    ],
)
def test_long_numbers_keep_only_their_last_four(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_stdlib_logger_output_is_masked() -> None:
    with capture() as out:
        logging.getLogger("x").warning("card 6222021234567890123")
        try:
            raise RuntimeError("customer 11010519491231002X")
        except RuntimeError:
            logging.getLogger("x").exception("lookup failed for %s", "13800138000")
    first, second = records(out)
    assert first["event"] == "card ***************0123"
    assert first["logger"] == "x"
    assert second["event"] == "lookup failed for *******8000"
    assert second["exception"].endswith("RuntimeError: customer **************002X")
    assert "6222021234567890123" not in out.getvalue()
    assert "11010519491231002X" not in out.getvalue()


def test_caller_objects_are_never_changed() -> None:
    payload = {
        "phone": "13800138000",
        "list": ["13800138000", {"card": 6222021234567890123}],
        "13800138000": ("13800138000",),
        "set": {"13800138000"},
    }
    snapshot = copy.deepcopy(payload)
    event_dict = {"event": "13800138000", "payload": payload}
    result = mask_sensitive(None, "info", event_dict)
    assert payload == snapshot
    assert event_dict == {"event": "13800138000", "payload": payload}
    assert result == {
        "event": "*******8000",
        "payload": {
            "phone": "*******8000",
            "list": ["*******8000", {"card": "***************0123"}],
            "*******8000": ("*******8000",),
            "set": {"*******8000"},
        },
    }


def test_odd_values_are_masked_or_left_alone_without_crashing() -> None:
    class Customer:
        def __repr__(self) -> str:
            return "Customer(phone=13800138000)"

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    Point = namedtuple("Point", "label count")
    cycle: list[Any] = []
    cycle.append(cycle)
    with capture() as out:
        get_logger("odd").info(
            "odd values",
            money=Decimal("12345678901.50"),
            small_money=Decimal("126.50"),
            as_float=13800138000.0,
            small_float=1.5,
            customer=Customer(),
            unprintable=Unprintable(),
            cycle=cycle,
            huge=10**5000,
            flag=True,
            nothing=None,
            point=Point("13800138000", 2),
            colliding={"13800138000": 1, "13900138000": 2},
        )
    [rec] = records(out)
    assert rec["money"] == "Decimal('*******8901.50')"
    assert rec["small_money"] == "Decimal('126.50')"
    assert rec["as_float"] == "*******8000.0"
    assert rec["small_float"] == 1.5
    assert rec["customer"] == "Customer(phone=*******8000)"
    assert (
        rec["unprintable"]
        == "<unrepresentable test_odd_values_are_masked_or_left_alone_without_crashing.<locals>.Unprintable>"
    )
    assert rec["cycle"] == ["[...]"]
    assert rec["huge"].startswith("<int of") and rec["huge"].endswith("masked>")
    assert rec["flag"] is True
    assert rec["nothing"] is None
    assert rec["point"] == ["*******8000", 2]
    assert rec["colliding"] == {"*******8000": 1, "*******8000#2": 2}


# --------------------------------------------------------------------------------------------------
# Examples: output, context, configuration
# --------------------------------------------------------------------------------------------------


def test_json_lines_carry_level_event_timestamp_and_request_ids() -> None:
    with capture() as out:
        log = get_logger("svc")
        with request_context(request_id="req-1", tenant_id="bank_a", partner_id="partner_x"):
            log.info("opened account", product="savings")
            with request_context(request_id="req-2"):
                log.info("inner")
            log.warning("outer again")
        log.info("after")
        bind_request_context(request_id="req-3", tenant_id=None, channel="app")
        log.info("bound")
        clear_request_context()
        log.info("cleared")
    opened, inner, outer, after, bound, cleared = records(out)
    assert opened["event"] == "opened account"
    assert opened["level"] == "info"
    assert opened["logger"] == "svc"
    assert opened["product"] == "savings"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", opened["timestamp"])
    assert (opened["request_id"], opened["tenant_id"], opened["partner_id"]) == (
        "req-1",
        "bank_a",
        "partner_x",
    )
    assert (inner["request_id"], inner["tenant_id"]) == ("req-2", "bank_a")
    assert (outer["request_id"], outer["level"]) == ("req-1", "warning")
    assert not {"request_id", "tenant_id", "partner_id"} & after.keys()
    assert (bound["request_id"], bound["channel"]) == ("req-3", "app")
    assert "tenant_id" not in bound
    assert "request_id" not in cleared


def test_console_mode_is_readable_masked_and_colourless_on_a_non_tty() -> None:
    with capture("console") as out:
        log = get_logger("con")
        log.info("card 6222021234567890123 paid", amount="126.50", phone="+86 138-0013-8000")
        try:
            raise ValueError("bad 13800138000")
        except ValueError:
            log.exception("boom")
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "[info" in text and "[error" in text and "[con]" in text
    assert "card ***************0123 paid" in text
    assert "amount=126.50" in text
    assert "+** ***-****-8000" in text
    assert "ValueError: bad *******8000" in text
    assert not _LONG_RUN.search(text)


def test_level_filters_both_structlog_and_stdlib_records() -> None:
    with capture(level="warning") as out:
        get_logger("lvl").info("hidden")
        logging.getLogger("lvl").info("hidden too")
        get_logger("lvl").warning("shown")
        logging.getLogger("lvl").error("shown too")
    assert [r["event"] for r in records(out)] == ["shown", "shown too"]


def test_bad_mode_or_level_is_refused() -> None:
    with _isolated_logging():
        with pytest.raises(ValueError, match="level"):
            configure_logging(level="LOUD")
        with pytest.raises(ValueError, match="mode"):
            configure_logging("xml")  # type: ignore[arg-type]


def test_configuring_again_replaces_the_output_and_earlier_root_handlers() -> None:
    with _isolated_logging():
        plain, first, second = io.StringIO(), io.StringIO(), io.StringIO()
        logging.basicConfig(stream=plain, force=True)  # e.g. an Alembic env.py's fileConfig
        configure_logging("json", stream=first)
        configure_logging("console", stream=second)
        get_logger("re").info("hello")
        logging.getLogger("re").warning("card 6222021234567890123")
        assert len(logging.getLogger().handlers) == 1
    assert plain.getvalue() == ""
    assert first.getvalue() == ""
    assert "hello" in second.getvalue()
    assert "card ***************0123" in second.getvalue()


def test_get_logger_names_the_calling_module() -> None:
    with capture() as out:
        get_logger().info("who am i")
    [rec] = records(out)
    assert rec["logger"] == __name__


def test_get_logger_sets_up_masking_when_nobody_configured_logging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _isolated_logging():
        structlog.reset_defaults()
        log = get_logger("early")
        assert structlog.is_configured()
        log.warning("phone 13800138000")
    err = capsys.readouterr().err
    assert "phone *******8000" in err
    assert "13800138000" not in err


class _BrokenStream(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError("disk full")


def test_a_failing_handler_does_not_print_the_raw_record(capsys: pytest.CaptureFixture[str]) -> None:
    with _isolated_logging():
        configure_logging("json", stream=_BrokenStream())
        get_logger("broken").info("card 6222021234567890123", phone="13800138000")
        logging.getLogger("broken").warning("id %s", "11010519491231002X")
    err = capsys.readouterr().err
    assert err.count("Logging error") == 2
    assert "OSError: disk full" in err
    assert not _LONG_RUN.search(err), err
