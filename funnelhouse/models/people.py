"""The people a by-person refresh rebuilds, and the days it reads them on.

Affected people P = the persons of the events received since the previous run
(resolved with the map just merged, and the ids they carry, each possibly a person of
its own until now) ∪ the persons whose ids changed in this run's
identity merge (the old person and the new one: identity_map_changes), closed once
over shared order ids (an order is its first purchase event among every copy, and the
copies may sit with different persons: whoever holds an order's first copy in the
`orders` table joins P).

Their days: before this run, a person's events were on the days funnel_stages holds
for them (one row per person and active day, built with the same events); this run
changed events only on the days it rebuilt. So P's days are funnel_stages' days of P
(read before funnel_stages is rewritten) ∪ the rebuilt days where P has events now.
Reading behavior_events and sessions on those days only keeps the read to P's own
history (partition pruning), not the whole table.

campaign_touches is per person too (their credited campaigns per day); the per-day
campaign_performance adds what changed in it (run.py: incremental_sum).

P (without the order closure, which concerns only the person-level tables) is worked
out right after the identity merge, before any by-day model builds: a by-day model
rebuilds a late day for P only (run.py's partial days), reading the raw rows that
carry one of P's ids (`PEOPLE_IDS`: every id the map gives one of P, and P's own ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from funnelhouse.warehouse.base import Warehouse

__all__ = ["PEOPLE_BEFORE", "PEOPLE_IDS", "PersonPlan", "affected_people", "plan_people"]

PEOPLE = "models__people"
PEOPLE_IDS = "models__people_ids"
# Those of P that had rows before this run (funnel_stages holds every person with an
# event, built in the same run as the other person-level tables): the only ones whose
# old rows a sum takes away (run.py: incremental_sum). Most of P can be new people.
PEOPLE_BEFORE = "models__people_before"


@dataclass
class PersonPlan:
    people: str = PEOPLE  # table of the affected persons
    count: int = 0
    days: list[date] = field(default_factory=list)  # P's days

    def drop(self, wh: Warehouse) -> None:
        for table in (self.people, PEOPLE_IDS, PEOPLE_BEFORE):
            wh.execute(f"DROP TABLE IF EXISTS {table} SYNC")


def _dates(wh: Warehouse, sql: str, params: dict[str, str] | None = None) -> list[date]:
    return sorted(date.fromisoformat(r[0]) for r in wh.query(sql, params).rows)


def affected_people(wh: Warehouse, source: str) -> PersonPlan:
    """P before the order closure, and the ids that resolve to one of P.

    `source`: the events received since the previous run (a table expression); run
    after the identity merge that read them.
    """
    plan = PersonPlan()
    plan.drop(wh)
    wh.execute(f"CREATE TABLE {PEOPLE} (person_id String) ENGINE = Memory")
    # the persons of the new events, resolved as behavior_events resolves them (the map
    # read only for their ids: its sort key is the id, so that is a few granules)
    # (by the user id when there is one, else the anonymous id: one join)
    wh.execute(f"""
        INSERT INTO {PEOPLE}
        SELECT DISTINCT if(m.person_id != '', m.person_id, e.id_key)
        FROM (SELECT DISTINCT if(user_id != '', user_id, anonymous_id) AS id_key
              FROM {source}) AS e
        LEFT JOIN (SELECT id, person_id FROM identity_map WHERE person_id != id
                   AND id IN (SELECT if(user_id != '', user_id, anonymous_id)
                              FROM {source})) AS m
            ON m.id = e.id_key
        SETTINGS join_use_nulls = 0""")
    wh.execute(f"INSERT INTO {PEOPLE} SELECT person_id FROM identity_map_changes")
    # and the ids themselves: an id that was its own person until a new event linked it
    # (even if the run that merged the link stopped before recording its changes)
    wh.execute(f"""
        INSERT INTO {PEOPLE}
        SELECT DISTINCT arrayJoin([user_id, anonymous_id, previous_id]) AS id
        FROM {source} WHERE id != ''""")
    wh.execute(f"""
        CREATE TABLE {PEOPLE_IDS} ENGINE = Memory AS
        SELECT id FROM (
            SELECT id FROM identity_map WHERE person_id IN (SELECT person_id FROM {PEOPLE})
            UNION DISTINCT SELECT person_id FROM {PEOPLE})
        WHERE id != ''""")
    return plan


def plan_people(wh: Warehouse, plan: PersonPlan, rebuilt_days: list[date]) -> PersonPlan:
    """P closed over shared orders, and their days (see the module docstring)."""
    rebuilt = "(" + ", ".join(f"toDate('{d.isoformat()}')" for d in rebuilt_days
                              or [date(1970, 1, 1)]) + ")"
    days_of = (f"SELECT DISTINCT toString(stage_date) FROM funnel_stages "
               f"WHERE person_id IN (SELECT person_id FROM {{t}}) UNION DISTINCT "
               f"SELECT DISTINCT toString(event_date) FROM behavior_events "
               f"WHERE event_date IN {rebuilt} AND person_id IN (SELECT person_id FROM {{t}})")
    days = _dates(wh, days_of.format(t=PEOPLE))
    # the persons holding (as their first copy, in orders) an order id P purchased:
    # with them in P, each order's copies are all read and the first one still wins
    day_list = "(" + ", ".join(f"toDate('{d.isoformat()}')" for d in days
                               or [date(1970, 1, 1)]) + ")"
    wh.execute(f"""
        INSERT INTO {PEOPLE}
        SELECT DISTINCT person_id FROM orders
        WHERE order_id IN (
            SELECT order_id FROM behavior_events
            WHERE event = 'purchase' AND order_id != '' AND event_date IN {day_list}
              AND person_id IN (SELECT person_id FROM {PEOPLE}))
          AND person_id NOT IN (SELECT person_id FROM {PEOPLE})""")
    plan.count = int(wh.query(f"SELECT uniqExact(person_id) FROM {PEOPLE}").scalar() or 0)
    plan.days = _dates(wh, days_of.format(t=PEOPLE))
    wh.execute(f"""
        CREATE TABLE {PEOPLE_BEFORE} ENGINE = Memory AS
        SELECT DISTINCT person_id FROM funnel_stages
        WHERE person_id IN (SELECT person_id FROM {PEOPLE})""")
    return plan
