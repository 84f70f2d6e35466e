"""Analyses as named SQL pieces: rendering, taking and replacing pieces by name."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from funnelhouse.analyses import funnel, paths, retention
from funnelhouse.analyses.common import Cte, Query, SqlParams

COLUMNS = {"event": "String", "page_path": "String", "properties": "String",
           "country": "String", "utm_source": "String"}
AS_OF = datetime(2024, 3, 10, tzinfo=UTC)
DAYS = (date(2024, 3, 1), date(2024, 3, 9))


def _query() -> Query:
    return Query("-- two pieces", (Cte("a", "    SELECT 1 AS x", note="-- the first\n"),
                                   Cte("b", "    SELECT x FROM a")),
                 "SELECT * FROM b", SqlParams())


def test_query_renders_header_pieces_and_final() -> None:
    assert _query().sql() == ("-- two pieces\nWITH\n-- the first\na AS (\n    SELECT 1 AS x\n),"
                              "\n\nb AS (\n    SELECT x FROM a\n)\n\nSELECT * FROM b\n")


def test_pieces_are_taken_and_replaced_by_name() -> None:
    query = _query()
    assert query.through("a").select("SELECT x FROM a").sql() == (
        "-- two pieces\nWITH\n-- the first\na AS (\n    SELECT 1 AS x\n)\n\nSELECT x FROM a\n")
    replaced = query.with_cte(Cte("a", "    SELECT 2 AS x"))
    assert replaced.names() == ["a", "b"] and "SELECT 2 AS x" in replaced.sql()
    added = query.with_cte(Cte("c", "    SELECT x + 1 FROM b"))
    assert added.names() == ["a", "b", "c"]
    assert query.names() == ["a", "b"]           # the original is untouched
    with pytest.raises(KeyError, match="no piece 'nope'"):
        query.through("nope")
    with pytest.raises(ValueError, match="no final SELECT"):
        query.through("b").sql()


@pytest.mark.parametrize("doc", [
    {"steps": ["page_view", "add_to_cart", "purchase"]},                      # the plain search
    {"steps": ["a", "b", "a"], "order": "any", "exclude": ["x@1-2"]},         # the general walk
])
def test_funnel_pieces(doc: dict[str, object]) -> None:
    spec = funnel.FunnelSpec.from_json(doc)
    query = funnel.build_query(spec, COLUMNS, AS_OF, *DAYS)
    names = query.names()
    assert names[:2] == ["step_events", "journeys"]
    assert names[-3:] == ["walked", "people", "person_steps"]
    plain = doc.get("order") != "any"
    assert ("search_1" in names) == plain
    sql, params = funnel.build_sql(spec, COLUMNS, AS_OF, *DAYS)
    assert sql == query.sql() and params.values == query.params.values


def test_paths_and_retention_pieces() -> None:
    p = paths.build_query(paths.PathsSpec(page="/cart"), COLUMNS, AS_OF, *DAYS)
    assert p.names() == ["session_events", "sessions", "page_views", "sides"]
    r = retention.build_query(retention.RetentionSpec(), COLUMNS, AS_OF, *DAYS)
    assert r.names() == ["events", "people", "memberships"]
    assert "FROM memberships" in r.final and "FROM sides" in p.final
