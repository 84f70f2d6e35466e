"""swap.replace_rows: a table with some rows replaced — masked in hard-linked parts when
the table has few parts, copied when it has many — on both backends, against the plain
copy-and-replace it stands in for."""

from __future__ import annotations

import pytest

from funnelhouse.models import swap

DDL = ("CREATE TABLE {t} (person_id String, day Date, value UInt32) ENGINE = MergeTree "
       "PARTITION BY toYYYYMM(day) ORDER BY (day, person_id)")


def _rows(wh, table):
    return sorted(tuple(r) for r in wh.query(
        f"SELECT person_id, toString(day), value FROM {table}").rows)


@pytest.fixture(params=[1, 3], ids=["3 parts", "9 parts"])
def wh(request, tmp_path, make_warehouse):
    warehouse = make_warehouse(tmp_path / "wh")
    warehouse.execute(DDL.format(t="people"))
    # three months, one insert (3 parts: masked) or three (9 parts: more than the
    # background pool masks at once, so copied), as after a few refreshes
    for start in range(request.param):
        warehouse.execute(
            "INSERT INTO people SELECT concat('p', toString(number % 40)), "
            "toDate('2024-01-01') + number * 2 + {s:UInt32}, number "
            "FROM numbers(45)", {"s": str(start)})
    yield warehouse
    warehouse.close()


def test_replaced_rows_are_those_of_the_new_select_and_the_rest_are_kept(wh):
    before = _rows(wh, "people")
    months = wh.query("SELECT uniqExact(toYYYYMM(day)) FROM people").scalar()
    wh.execute("CREATE TABLE stage ENGINE = Memory AS "
               "SELECT person_id, day, value + 1000 AS value FROM people "
               "WHERE person_id IN ('p1', 'p7') AND value % 2 = 0")
    replaced = "person_id IN ('p1', 'p7')"
    parts = wh.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                     "AND table = 'people' AND active").scalar()
    carried = swap.replace_rows(wh, "people", "people__new", replaced,
                                f"SELECT * FROM stage WHERE {replaced}")
    assert carried == ("masked" if parts <= swap.mask_slots(wh) else "copied")
    expected = sorted([r for r in before if r[0] not in ("p1", "p7")]
                      + [tuple(r) for r in wh.query(
                          "SELECT person_id, toString(day), value FROM stage").rows])
    assert _rows(wh, "people") == expected
    assert wh.query("SELECT count() FROM people").scalar() == len(expected)
    assert not swap.exists(wh, "people__new")
    # every partition is still there, so a later REPLACE/ATTACH by partition works
    assert wh.query("SELECT uniqExact(toYYYYMM(day)) FROM people").scalar() == months == 3


def test_a_second_replace_masks_on_top_of_the_first(wh):
    # each refresh masks again the parts an earlier one masked: both masks must hold
    count = wh.query("SELECT count() FROM people").scalar()
    for person, bump in (("p2", 100), ("p3", 200), ("p2", 300)):
        wh.execute("DROP TABLE IF EXISTS stage SYNC")
        wh.execute(f"CREATE TABLE stage ENGINE = Memory AS "
                   f"SELECT person_id, day, value + {bump} AS value FROM people "
                   f"WHERE person_id = '{person}'")
        swap.replace_rows(wh, "people", "people__new", f"person_id = '{person}'",
                          "SELECT * FROM stage")
    values = dict(wh.query("SELECT person_id, min(value) FROM people "
                           "WHERE person_id IN ('p2', 'p3', 'p4') GROUP BY person_id").rows)
    assert values == {"p2": 2 + 400, "p3": 3 + 200, "p4": 4}
    assert wh.query("SELECT count() FROM people").scalar() == count
