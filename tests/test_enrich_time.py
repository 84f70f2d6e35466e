"""Event time: timestamp parsing, clock-skew correction and its guards, ClickHouse text."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnelhouse.collector.enrich.time import (
    correct_timestamp,
    format_ts,
    parse_timestamp,
    sdk_text,
)
from funnelhouse.config import Limits

LIMITS = Limits()
DAY = 86_400.0
# 2024-05-06 10:11:12.345 UTC
RECEIVED = datetime(2024, 5, 6, 10, 11, 12, 345_000, tzinfo=UTC).timestamp()


def correct(original, sent_at, received_at=RECEIVED, kind="browser"):
    return correct_timestamp(
        original,
        sent_at,
        received_at,
        key_kind=kind,
        max_future_skew_seconds=LIMITS.max_future_skew_seconds,
        max_past_days_browser=LIMITS.max_past_days_browser,
    )


# --- parse_timestamp -------------------------------------------------------------------


def test_sdk_iso_shape_parses_to_epoch_seconds():
    assert parse_timestamp("2024-05-06T10:11:12.345Z") == pytest.approx(RECEIVED, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-06T12:11:12.345+02:00",
        "2024-05-06T12:11:12.345+0200",
        "2024-05-06T05:11:12.345-05:00",
        "2024-05-06T10:11:12.345000Z",
        "2024-05-06T10:11:12.345999999Z",  # more digits than microseconds: truncated
        "2024-05-06 10:11:12.345",  # space separator, no offset: UTC
        "2024-05-06t10:11:12.345z",
        "  2024-05-06T10:11:12.345Z  ",
    ],
)
def test_iso_variants_mean_the_same_instant(text):
    assert parse_timestamp(text) == pytest.approx(RECEIVED, abs=1e-3)


def test_whole_seconds_and_minutes_parse():
    assert parse_timestamp("2024-05-06T10:11:12Z") == RECEIVED - 0.345
    assert parse_timestamp("2024-05-06T10:11Z") == RECEIVED - 12.345


def test_epoch_milliseconds_numbers_and_digit_strings_parse():
    assert parse_timestamp(1714990272345) == pytest.approx(RECEIVED)
    assert parse_timestamp(1714990272345.0) == pytest.approx(RECEIVED)
    assert parse_timestamp("1714990272345") == pytest.approx(RECEIVED)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "2024-05-06",  # date only
        "20240506",  # basic-format date only
        "2024-13-06T10:11:12.345Z",
        "2024-02-30T10:11:12.345Z",
        "2024-05-06T25:11:12.345Z",
        "2024-05-06T10:11:12.345X",
        "2024-05-06T10:11:12.345+25:00",
        "２０２４-05-06T10:11:12.345Z",  # full-width digits
        True,
        float("nan"),
        float("inf"),
        1e30,
        [2024],
    ],
)
def test_garbage_is_none(value):
    assert parse_timestamp(value) is None


# --- correct_timestamp -----------------------------------------------------------------


def test_clock_skewed_device_gets_corrected_time():
    # Device clock is 3 hours behind: the event happened 5 s before the batch was sent.
    skew = -3 * 3600
    original = RECEIVED - 65 + skew
    sent_at = RECEIVED - 60 + skew
    timestamp, kept_original, kept_sent_at, flags = correct(original, sent_at)
    assert timestamp == pytest.approx(RECEIVED - 5)
    assert (kept_original, kept_sent_at) == (original, sent_at)
    assert flags == ()


def test_device_clock_far_in_future_is_corrected_not_clamped():
    # A year ahead: corrected by the sent_at difference, so no clamping is needed.
    original = RECEIVED + 365 * DAY - 10
    sent_at = RECEIVED + 365 * DAY
    timestamp, *_, flags = correct(original, sent_at)
    assert timestamp == pytest.approx(RECEIVED - 10)
    assert flags == ()


def test_without_sent_at_original_is_used_and_sent_at_defaults_to_received():
    for kind in ("browser", "server"):
        timestamp, original, sent_at, flags = correct(RECEIVED - 120, None, kind=kind)
        assert timestamp == RECEIVED - 120
        assert original == RECEIVED - 120
        assert sent_at == RECEIVED
        assert flags == ()


def test_without_original_everything_is_received_at():
    assert correct(None, None) == (RECEIVED, RECEIVED, RECEIVED, ())
    timestamp, original, sent_at, flags = correct(None, RECEIVED - 30)
    assert (timestamp, original, sent_at, flags) == (RECEIVED, RECEIVED, RECEIVED - 30, ())


def test_future_event_is_clamped_and_flagged():
    original = RECEIVED + 2 * DAY
    timestamp, kept, _, flags = correct(original, None, kind="server")
    assert timestamp == RECEIVED
    assert kept == original
    assert flags == ("timestamp_clamped_future",)


def test_small_future_skew_is_tolerated():
    timestamp, *_, flags = correct(RECEIVED + 3600, None)
    assert timestamp == RECEIVED + 3600
    assert flags == ()


def test_browser_key_cannot_backdate_a_month():
    original = RECEIVED - 31 * DAY
    timestamp, kept, _, flags = correct(original, None, kind="browser")
    assert timestamp == RECEIVED
    assert kept == original
    assert flags == ("timestamp_clamped_past",)


def test_browser_key_may_send_a_week_old_event():
    timestamp, *_, flags = correct(RECEIVED - 7 * DAY, None, kind="browser")
    assert timestamp == RECEIVED - 7 * DAY
    assert flags == ()


def test_server_key_may_import_history():
    original = datetime(2015, 3, 1, tzinfo=UTC).timestamp()
    timestamp, *_, flags = correct(original, None, kind="server")
    assert timestamp == original
    assert flags == ()


def test_server_key_cannot_send_events_before_2000():
    original = datetime(1999, 12, 31, tzinfo=UTC).timestamp()
    timestamp, kept, _, flags = correct(original, None, kind="server")
    assert timestamp == RECEIVED
    assert kept == original
    assert flags == ("timestamp_clamped_past",)


def test_correction_result_is_also_guarded():
    # The device says the event is 40 days older than the batch: fine from a server,
    # beyond what a browser key may backdate.
    timestamp, *_, flags = correct(RECEIVED - 40 * DAY, RECEIVED, kind="browser")
    assert (timestamp, flags) == (RECEIVED, ("timestamp_clamped_past",))
    timestamp, *_, flags = correct(RECEIVED - 40 * DAY, RECEIVED, kind="server")
    assert (timestamp, flags) == (RECEIVED - 40 * DAY, ())


def test_limits_come_from_the_caller():
    timestamp, *_, flags = correct_timestamp(
        RECEIVED - 2 * DAY,
        None,
        RECEIVED,
        key_kind="browser",
        max_future_skew_seconds=60,
        max_past_days_browser=1,
    )
    assert (timestamp, flags) == (RECEIVED, ("timestamp_clamped_past",))


# --- format_ts -------------------------------------------------------------------------


def test_format_is_clickhouse_datetime64_3_text_in_utc():
    assert format_ts(RECEIVED) == "2024-05-06 10:11:12.345"
    assert format_ts(0.0) == "1970-01-01 00:00:00.000"
    assert format_ts(951_782_400.0) == "2000-02-29 00:00:00.000"


def test_format_rounds_to_milliseconds_across_a_minute():
    assert format_ts(59.9996) == "1970-01-01 00:01:00.000"
    assert format_ts(1.0004) == "1970-01-01 00:00:01.000"


def test_format_agrees_with_datetime_over_many_instants():
    for step in range(0, 3_000_000_000, 7_777_777):
        seconds = step + (step % 1000) / 1000
        expected = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
        assert format_ts(seconds) == expected


def test_format_round_trips_through_parse():
    text = "2031-12-31 23:59:59.999"
    assert format_ts(parse_timestamp(text)) == text


def test_format_saturates_to_datetime64_range_instead_of_raising():
    assert format_ts(-1e12) == "1900-01-01 00:00:00.000"
    assert format_ts(1e13) == "2299-12-31 23:59:59.999"
    assert format_ts(float("nan")) == "1900-01-01 00:00:00.000"
    assert format_ts(float("inf")) == "2299-12-31 23:59:59.999"


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_the_sdk_shape_is_stored_as_the_round_trip_would_store_it(moment: datetime) -> None:
    """sdk_text skips parse → format for `YYYY-MM-DDTHH:MM:SS.mmmZ`, with the same text."""
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    sent = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if len(sent) != 24:   # years before 1000 are not four digits here
        return
    text = sdk_text(sent)
    if 1900 <= moment.year <= 2299:
        assert text == format_ts(parse_timestamp(sent)) == sent[:10] + " " + sent[11:23]
    else:
        assert text is None   # ClickHouse's range: format_ts saturates these


@pytest.mark.parametrize("sent", ["2024-05-06T10:11:12,345Z", "2024-05-06T10:11:12.345+00",
                                  "2024-05-06 10:11:12.345Z", "2024-05-06T10:11:12.3456Z",
                                  "2024-05-06T10:11:12Z", 1714990272345, None])
def test_other_shapes_take_the_round_trip(sent: object) -> None:
    assert sdk_text(sent) is None


def test_an_event_time_is_stored_alike_with_and_without_the_shortcut() -> None:
    """A batch's times as SDKs send them, each stored as parse + format would store it."""
    base = datetime(2024, 5, 6, 10, 11, 12, 345_000, tzinfo=UTC)
    for step in range(0, 5000, 7):
        moment = base + timedelta(milliseconds=step * 997)
        sent = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        assert sdk_text(sent) == format_ts(parse_timestamp(sent))
