"""Support for the model tests (no tests here): a warehouse from rows, tables as dicts."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from funnelhouse.config import PACKAGE_ROOT, Settings
from funnelhouse.models.run import run_models
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate
from tests.support.reference import Reference, money

MONEY_COLUMNS = {"revenue", "line_revenue", "purchased_revenue"}


def warehouse_with(path: Path, rows: list[dict],
                   make: Callable[[Path], Warehouse] = ChdbWarehouse) -> Warehouse:
    """A migrated warehouse holding `rows`; `make` opens it (the backend under test)."""
    wh = make(path)
    migrate(wh, PACKAGE_ROOT / "sql" / "migrations")
    insert(wh, rows)
    return wh


def insert(wh: ChdbWarehouse, rows: list[dict]) -> None:
    for i in range(0, len(rows), 20_000):
        wh.insert_json_rows("events_raw", [orjson.dumps(r) for r in rows[i : i + 20_000]])


def settings_for(path: Path, **kw: Any) -> Settings:
    return Settings(data_dir=path, **kw)


def build(wh: ChdbWarehouse, settings: Settings, **kw: Any):
    return run_models(wh, settings, progress=lambda _msg: None, **kw)


def full_refresh_snapshot(path: Path, rows: list[dict], settings: Settings) -> dict[str, list]:
    """Every model table of a fresh warehouse at `path` holding `rows`, built whole."""
    fresh = warehouse_with(path, rows)
    try:
        build(fresh, settings, full_refresh=True)
        return snapshot(fresh)
    finally:
        fresh.close()  # one chdb folder open per process


def table(wh: ChdbWarehouse, name: str, key: tuple[str, ...], columns: list[str]) -> dict:
    """{key tuple → {column: value}} with money as Decimal."""
    result = wh.query(f"SELECT {', '.join(key + tuple(columns))} FROM {name}")
    out = {}
    for row in result.dicts():
        k = tuple(row[c] for c in key)
        assert k not in out, f"{name}: duplicate key {k}"
        out[k] = {c: (money(row[c]) if c in MONEY_COLUMNS else row[c]) for c in columns}
    return out


def reference_table(ref: Reference, name: str, columns: list[str]) -> dict:
    data = getattr(ref, name)
    out = {}
    for key, values in data.items():
        k = key if isinstance(key, tuple) else (key,)
        out[k] = {c: values[c] for c in columns}
    return out


def assert_same(name: str, got: dict, want: dict) -> None:
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"{name}: keys missing {missing} extra {extra}"
    diffs = []
    for k, values in want.items():
        for c, v in values.items():
            g = got[k][c]
            if isinstance(v, Decimal) or isinstance(g, Decimal):
                same = money(g) == money(v)
            elif isinstance(v, float) or isinstance(g, float):
                same = g is not None and v is not None and abs(float(g) - float(v)) < 1e-6
            else:
                same = g == v
            if not same:
                diffs.append((k, c, g, v))
    assert not diffs, (
        f"{name}: {len(diffs)} differences, e.g. (key, column, sql, reference) {diffs[:5]}"
    )


# Columns compared per table: (table, key columns in SQL, reference attribute, columns).
CHECKS = [
    (
        "sessions",
        ("session_id",),
        "sessions",
        [
            "session_date",
            "person_id",
            "started_at",
            "ended_at",
            "duration_seconds",
            "entry_page",
            "exit_page",
            "landing_source",
            "landing_medium",
            "landing_campaign",
            "landing_referrer_host",
            "channel",
            "source",
            "pageviews",
            "events",
            "product_views",
            "add_to_carts",
            "checkouts",
            "is_bounce",
            "reached_purchase",
            "orders",
            "revenue",
        ],
    ),
    (
        "product_engagement",
        ("activity_date", "person_id", "product_id"),
        "product_engagement",
        [
            "product_name",
            "product_category",
            "currency",
            "detail_views",
            "dwell_ms",
            "max_scroll_depth",
            "swipes",
            "clicks",
            "add_to_carts",
            "added_quantity",
            "remove_from_carts",
            "orders",
            "purchased_quantity",
            "purchased_revenue",
            "converted",
        ],
    ),
    (
        "orders",
        ("order_id",),
        "orders",
        [
            "person_id",
            "ordered_at",
            "order_date",
            "order_seq",
            "channel",
            "revenue",
            "item_lines",
            "item_quantity",
            "credited_staff_id",
            "credited_store_id",
            "first_touch_source",
            "first_touch_medium",
            "first_touch_campaign",
            "last_touch_source",
            "last_touch_medium",
            "last_touch_campaign",
            "lead_time_first_touch_seconds",
            "lead_time_session_seconds",
            "lead_time_first_product_view_seconds",
        ],
    ),
    (
        "order_items",
        ("order_id", "line_number"),
        "order_items",
        [
            "person_id",
            "product_id",
            "quantity",
            "line_revenue",
            "views_before_purchase",
            "carts_before_purchase",
            "seconds_from_first_view",
        ],
    ),
    (
        "users",
        ("person_id",),
        "users",
        [
            "first_seen_at",
            "last_seen_at",
            "sessions",
            "events",
            "active_days",
            "first_touch_source",
            "first_touch_medium",
            "first_touch_campaign",
            "last_touch_source",
            "last_touch_medium",
            "last_touch_campaign",
            "acquired_staff_id",
            "acquired_store_id",
            "orders",
            "revenue",
            "stage_rank",
        ],
    ),
    (
        "funnel_stages",
        ("person_id", "stage_date"),
        "funnel_stages",
        ["stage", "previous_stage", "moved", "orders_to_date"],
    ),
    (
        "campaign_performance",
        ("performance_date", "attribution_model", "source", "medium", "campaign"),
        "campaign_performance",
        [
            "sessions",
            "persons",
            "new_persons",
            "product_views",
            "add_to_carts",
            "orders",
            "converting_sessions",
            "revenue",
        ],
    ),
]


def assert_matches_reference(wh: ChdbWarehouse, ref: Reference) -> None:
    # identity and events first: everything else rests on them
    events = table(
        wh,
        "behavior_events",
        ("message_id",),
        ["person_id", "session_id", "event_date", "day_event_seq"],
    )
    # day_event_seq: the place in the person's day in (event time, message_id) order.
    days: dict[tuple, list[tuple[int, str]]] = {}
    for m, e in ref.events.items():
        days.setdefault((e.person, e.day), []).append((e.at, m))
    place = {m: i for day in days.values() for i, (_, m) in enumerate(sorted(day), 1)}
    want = {
        (m,): {
            "person_id": e.person,
            "session_id": e.session,
            "event_date": e.day.isoformat(),
            "day_event_seq": place[m],
        }
        for m, e in ref.events.items()
    }
    assert_same("behavior_events", events, want)
    id_map = table(wh, "identity_map", ("id",), ["person_id"])
    for id_, person in ref.identity.items():
        assert id_map[(id_,)]["person_id"] == person, f"identity_map: {id_}"
    for name, key, attr, columns in CHECKS:
        assert_same(name, table(wh, name, key, columns), reference_table(ref, attr, columns))


# The tables the models leave behind.
MODEL_TABLES = (
    "identity_map",
    "behavior_events",
    "sessions",
    "product_engagement",
    "orders",
    "order_items",
    "users",
    "funnel_stages",
    "campaign_touches",
    "campaign_performance",
)


def snapshot(wh: ChdbWarehouse) -> dict[str, list]:
    """Every model table's full content, sorted — to compare two builds exactly."""
    out = {}
    for name in MODEL_TABLES:
        cols = [
            r[0]
            for r in wh.query(
                "SELECT name FROM system.columns "
                "WHERE database = currentDatabase() AND table = {t:String} "
                "ORDER BY position",
                {"t": name},
            ).rows
        ]
        rows = wh.query(f"SELECT * FROM {name} ORDER BY {', '.join(cols)}").rows
        out[name] = rows
    return out
