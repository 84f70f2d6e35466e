"""The model runner: builds the eight tables (and the identity map) from events_raw.

Models are the files in `sql/models/`, one per table. Each file holds a header that
names its dependencies (`-- depends_on: a, b`) and how it refreshes
(`-- materialized: table | incremental_by_day | incremental_by_person |
incremental_sum`), then the table's DDL (`{{ this }}`
stands for the table being written), optional scratch steps, and the model's SELECT.
A scratch step (`CREATE TABLE {{ scratch }} ENGINE = Memory AS …`, or `{{ scratch:name }}`
when a model has several) holds an intermediate result that later statements read more
than once, so it is computed once (a CTE would be re-run at every reference); the runner
creates the steps in order before each insert and drops them after. The runner
orders models by dependencies and, for each:

* `table` — builds the whole table into `<name>__new` and swaps it in with
  EXCHANGE TABLES: readers see the old table until the new one is complete.
* `incremental_by_day` — rebuilds only the affected days of the reporting time zone
  into `<name>__stage` and swaps each day in with REPLACE PARTITION (or drops a day
  that became empty). A full refresh (or a missing table) builds every day into
  `<name>__new`, then swaps the table. Either way the days are built in chunks of at
  most a week of consecutive days holding at most `chunk_rows` events (a bigger day is
  a chunk of its own): that bounds the memory of one statement whatever a day's
  traffic, and the parts one insert writes at once (one per day). A late day — one
  that differs from what the model built only by the new events, which are a small
  share of it — is rebuilt for the affected people only (people.py) and swapped in
  with the rest of its rows kept (_partial_days says when that is exact).

* `incremental_by_person` — rebuilds the affected people's rows (people with new
  events or whose identity changed; see people.py) into `<name>__stage`, makes
  `<name>__new` = the table with them replaced and swaps it in. The kept rows are
  hard-linked parts with the replaced rows masked (the cost grows with the parts, not
  the rows), or copied when the table has more parts than one mask takes at once
  (swap.replace_rows).
  identity_map merges the new events' links into its kept state (identity.py).

* `incremental_sum` — a table whose every column is a sum over one person-level
  model: built whole (it is small) from its own rows plus that model's affected
  people's rows as they are now, less the same people's rows as they were (kept by
  the runner while it replaced them); every row of the source summed when that is
  not known (the source built whole, a forget since).

Affected days = the days of the look-back window (`lookback_days` before the latest
day) whose raw rows changed since the model built them (digests.py), or every day from
`--since`, plus the days of events received since the model's previous run (however
late), plus the days holding events whose person the identity map now resolves
differently, plus the days rebuilt upstream in the same run.
Because every day (or a late day's affected people) is rebuilt from events_raw,
running twice changes nothing, and a re-run after late events corrects exactly the
days they touch.

Models are built side by side (schedule.py, `model_threads`), each once the models it
depends on are built; the person-level ones also wait for the models the person plan
reads (PLAN_UPSTREAM), so the plan is worked out once, before any of them rewrites a
table. What a model's build decides from (days rebuilt upstream, the plan) is the same
whichever order they finish in.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from funnelhouse.config import Settings
from funnelhouse.models import identity, swap
from funnelhouse.models.digests import DayDigests
from funnelhouse.models.people import (
    PEOPLE_BEFORE,
    PEOPLE_IDS,
    PersonPlan,
    affected_people,
    plan_people,
)
from funnelhouse.models.schedule import build_side_by_side
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.migrate import split_statements

__all__ = ["Model", "ModelRun", "load_models", "run_models"]

STATE_TABLE = "model_runs"
# Settings every model statement runs with: named tuples let the models carry whole
# events through arrays by column name; '' (not NULL) for a missing join side; joins
# keep the side the SQL puts on the right as the hash table (the models put the small
# side there, and the planner's automatic swap, fed by sizes cached from earlier
# statements, was seen to build it from the chunk's wide events instead: 3x slower).
_QUERY_SETTINGS = (
    "SETTINGS enable_named_columns_in_function_tuple = 1, join_use_nulls = 0, "
    "query_plan_join_swap_table = 'false'"
)
_PARAM = re.compile(r"\{(\w+):")
_SCRATCH = re.compile(r"\{\{ scratch(?::(\w+))? \}\}")
_SCRATCH_STEP = re.compile(r"\s*CREATE TABLE \{\{ scratch(?::\w+)? \}\} ")
_SCRATCH_TABLE = re.compile(r"CREATE TABLE (\w+)")
# Person-level models read only the affected people on their days in an incremental
# run: {{ people:COL }} and {{ days:COL }} are filters there, `1` in a full build.
_PEOPLE = re.compile(r"\{\{ people:(\w+(?:\.\w+)?) \}\}")
_DAYS = re.compile(r"\{\{ days:(\w+(?:\.\w+)?) \}\}")
# An incremental_sum model adds up its source: {{ kept }} is its own rows and
# {{ delta:SOURCE }} the rows of the people SOURCE refreshed, as they are now (sign 1)
# and as they were (sign -1); in a full build, no rows and every row of SOURCE.
_DELTA = re.compile(r"\{\{ delta:(\w+) \}\}")
_KEPT = "{{ kept }}"
# A by-day model's partial days read only the raw rows carrying one of the affected
# people's ids: {{ people_ids:A,B }} is `A IN ids OR B IN ids` there, `1` otherwise.
_PEOPLE_IDS = re.compile(r"\{\{ people_ids:(\w+),\s*(\w+) \}\}")
# {{ people_only }} is 1 there, 0 otherwise (a model's steps for that case only).
_PEOPLE_ONLY = "{{ people_only }}"
MATERIALIZATIONS = ("table", "incremental_by_day", "incremental_by_person", "incremental_sum")
# A chunk writes one part per day at once; a week keeps the write buffers small.
CHUNK_MAX_DAYS = 7
# The events received since the previous run, read once per run (identity merge, plan).
NEW_EVENTS = "models__new_events"
# A late day is rebuilt for the affected people only while what arrived for it is at
# most this share of its rows (past that, rebuilding the day whole reads about as much).
PARTIAL_SHARE = 0.25
_PART_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# One run at a time per process: staging tables have fixed names.
_RUN_LOCK = threading.Lock()
# The models the person plan reads the state of (their modes, the days they rebuilt):
# the person-level models start after them.
PLAN_UPSTREAM = ("identity_map", "behavior_events", "sessions")


@dataclass(frozen=True)
class Model:
    name: str
    depends_on: tuple[str, ...]
    materialized: str  # one of MATERIALIZATIONS
    ddl: str  # CREATE TABLE IF NOT EXISTS {{ this }} …
    select: str  # {{ scratch }} names resolved by _insert (_scratch_names)
    path: Path
    scratch: tuple[str, ...] = ()  # CREATE TABLE {{ scratch }} ENGINE = Memory AS …
    replace_by: str = "person_id"  # incremental_by_person: the column rows are replaced by

    def statements(self, tag: str = "") -> tuple[list[str], str]:
        """The scratch steps and the SELECT with their tables named <model>__<tag>…:
        two builds of one model at once (a lane's tag each) use tables of their own."""
        prefix = f"{self.name}__{tag}"
        return ([_scratch_names(prefix, step) for step in self.scratch],
                _scratch_names(prefix, self.select))


@dataclass(frozen=True)
class ModelRun:
    model: str
    rows: int  # rows written by this run (all rows for a table build)
    seconds: float
    mode: str  # "full" | "incremental" | "skipped"
    days: int = 0  # days rebuilt (incremental models)


@dataclass
class _Lane:
    """What one model's build works with: its connection, and what _insert fills in."""

    wh: Warehouse
    # names this lane's stage and scratch tables apart from another lane's building
    # the same model ('' → <model>__stage, <model>__scratch)
    tag: str = ""
    filters: tuple[str, str] | None = None  # people table, days list for _insert
    sums: tuple[str, str] | None = None  # {{ kept }}, {{ delta }} for _insert
    new_rows: dict[date, int] = field(default_factory=dict)  # received since, per day


def load_models(models_dir: Path) -> list[Model]:
    """Every model in `models_dir`, in dependency order (ties by name)."""
    models = {}
    for path in sorted(models_dir.glob("*.sql")):
        text = path.read_text()
        header = dict(re.findall(r"^--\s*(depends_on|materialized|replace_by):[ \t]*(.*)$",
                                 text, re.M))
        statements = split_statements(text)
        if len(statements) < 2:
            raise ValueError(
                f"{path.name}: expected a CREATE TABLE, optional scratch steps and a SELECT, "
                f"got {len(statements)} statement(s)"
            )
        scratch = tuple(_strip_comments(st) for st in statements[1:-1])
        for step in scratch:
            if not _SCRATCH_STEP.match(step):
                raise ValueError(
                    f"{path.name}: a middle statement must be CREATE TABLE {{{{ scratch }}}} …"
                )
        deps = tuple(d.strip() for d in header.get("depends_on", "").split(",") if d.strip())
        materialized = header.get("materialized", "table").split()[0]
        if materialized not in MATERIALIZATIONS:
            raise ValueError(f"{path.name}: unknown materialization {materialized!r}")
        name = path.stem
        models[name] = Model(
            name,
            deps,
            materialized,
            statements[0],
            _strip_comments(statements[-1]),
            path,
            scratch,
            header.get("replace_by", "person_id").split()[0],
        )
    ordered: list[Model] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if name not in models:
            raise ValueError(f"{chain[-1]} depends on unknown model {name!r}")
        if state.get(name) == "visiting":
            raise ValueError(f"dependency cycle: {' -> '.join(chain + (name,))}")
        state[name] = "visiting"
        for dep in models[name].depends_on:
            visit(dep, chain + (name,))
        state[name] = "done"
        ordered.append(models[name])

    for name in sorted(models):
        visit(name, ())
    return ordered


def run_models(
    warehouse: Warehouse,
    settings: Settings,
    *,
    full_refresh: bool = False,
    since: date | None = None,
    select: list[str] | None = None,
    progress: Callable[[str], None] = print,
    today: date | None = None,
    chunk_rows: int = 1_000_000,
    received_margin: timedelta = timedelta(minutes=10),
) -> list[ModelRun]:
    """Run the models in dependency order; see the module docstring for what is rebuilt.

    `select` runs only the named models (still in dependency order); `since` rebuilds
    incremental models from that day on (instead of the look-back window); `today`
    (default: now in the reporting time zone) anchors the look-back window.
    """
    with _RUN_LOCK:
        return _Runner(warehouse, settings, progress, chunk_rows, received_margin).run(
            full_refresh=full_refresh, since=since, select=select, today=today
        )


class _Runner:
    def __init__(
        self,
        warehouse: Warehouse,
        settings: Settings,
        progress: Callable[[str], None],
        chunk_rows: int,
        received_margin: timedelta,
    ) -> None:
        self.main = warehouse
        self.local = threading.local()  # .lane: the model build this thread runs
        # guards what builds running side by side share: the digests, the person plan
        self.shared = threading.RLock()
        self.settings = settings
        self.tz = settings.reporting_tz
        self.progress = progress
        self.chunk_rows = max(1, chunk_rows)
        self.received_margin = received_margin
        self.rebuilt_days: dict[str, set[date]] = {}  # model → days it rebuilt in this run
        self.day_rows: dict[date, int] | None = None  # events per reporting day, read once
        self.rules = f"tz={settings.reporting_tz};gap={settings.session_gap_minutes}"
        self.previous: dict[str, str] = {}  # model → watermark of its previous run
        self.modes: dict[str, str] = {}  # model → mode in this run
        self.plan: PersonPlan | None = None  # the affected people, once per run
        self.planned = False
        self.started = ""  # this run's start, the warehouse's clock
        self.previous_start: dict[str, str] = {}  # model → start of its previous run
        self.last_rules: dict[str, str] = {}  # model → rules of its previous run
        self.last_map_version: dict[str, str] = {}  # model → map it was last built with
        self.last_ddl_hash: dict[str, str] = {}  # model → DDL its table was left with
        self.new_events_key: tuple[str, str | None] | None = None  # what NEW_EVENTS holds
        self.digests: DayDigests  # raw digests of the days to check, read by run()
        self.recheck_window = False  # rebuild only window days whose digest changed
        self.people: PersonPlan | None = None  # the affected people, after the merge
        self.models: list[Model] = []  # the models of this run
        self.deltas: dict[str, str] = {}  # person-level model → its delta table ('' none)
        self.whole_days: dict[str, set[date]] = {}  # model → days it rebuilt whole
        self.spares: list[Warehouse] = []  # connections _beside opened, closed by run()
        self.finished_lines: dict[int, str] = {}  # model index → closing line not yet said
        self.said = 0  # the last model index whose closing line was said

    @property
    def lane(self) -> _Lane:
        lane: _Lane | None = getattr(self.local, "lane", None)
        return lane if lane is not None else self.main_lane

    @functools.cached_property
    def main_lane(self) -> _Lane:
        return _Lane(self.main)

    @property
    def wh(self) -> Warehouse:
        return self.lane.wh

    # -- orchestration ---------------------------------------------------------------
    def run(
        self,
        *,
        full_refresh: bool,
        since: date | None,
        select: list[str] | None,
        today: date | None,
    ) -> list[ModelRun]:
        models = load_models(self.settings.sql_dir / "models")
        if select:
            unknown = set(select) - {m.name for m in models}
            if unknown:
                raise ValueError(f"unknown model(s): {', '.join(sorted(unknown))}")
            models = [m for m in models if m.name in select]
        self.wh.execute(f"""
            CREATE TABLE IF NOT EXISTS {STATE_TABLE}
            (model String, ran_at DateTime64(3, 'UTC'), mode LowCardinality(String),
             rows UInt64, seconds Float64, days UInt32,
             watermark DateTime64(3, 'UTC'),  -- max received_at of events_raw at run start
             rules String)                    -- reporting tz and session gap it was built with
            ENGINE = MergeTree ORDER BY (model, ran_at)""")
        # when the run started (the warehouse's clock): events_raw parts written since
        # are the only ones the next run reads for what is new
        self.wh.execute(f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS "
                        "started_at Nullable(DateTime64(3, 'UTC'))")
        # the identity map each model was built with (identity.map_version)
        self.wh.execute(f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS "
                        "map_version String")
        # a hash of the DDL the model's table was left with ('' for older runs)
        self.wh.execute(f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS "
                        "ddl_hash String")
        self.map_before = identity.map_version(self.wh)
        self.started = str(self.wh.query("SELECT toString(now64(3))").scalar())
        watermark = self.wh.query("SELECT max(received_at) FROM events_raw").scalar()
        # Every model's previous runs in one read (a query each cost 3-5 ms, several
        # per model); model_runs only grows by this run's rows, after each model.
        self.previous, self.previous_start = {}, {}
        for model_name, last, start, rules, map_version, ddl_hash in self.wh.query(
                f"SELECT model, toString(max(watermark)), toString(max(started_at)), "
                f"argMax(rules, ran_at), argMax(map_version, ran_at), "
                f"argMax(ddl_hash, ran_at) FROM {STATE_TABLE} GROUP BY model").rows:
            self.previous[model_name] = last
            if start:  # NULL for runs of an older version
                self.previous_start[model_name] = start
            self.last_rules[model_name] = rules
            self.last_map_version[model_name] = map_version
            self.last_ddl_hash[model_name] = ddl_hash
        # person-level models refresh by person only in a run of every model: the
        # affected people come from this run's identity merge and rebuilt days
        self.whole_run = select is None or {m.name for m in load_models(
            self.settings.sql_dir / "models")} <= set(select)
        window = self._window_days(since, today) if not full_refresh else set()
        # The raw digests are read before any model builds (digests.py says why): of
        # the look-back window, or of every day for a full build, here; of the other
        # days a model rebuilds, before it builds them. A --since run rebuilds its days
        # whatever their digest.
        if full_refresh:
            to_digest = set(self._day_rows()) | self._window_days(None, today)
        else:
            to_digest = self._window_days(None, today) if since else window
        self.digests = DayDigests(self.wh, self.tz, watermark, self.previous.values(),
                                  functools.partial(_span, self.tz))
        self.digests.read(to_digest)
        self.recheck_window = since is None and not full_refresh
        runs: list[ModelRun] = []
        self.models = models
        try:
            self._run_all(models, runs, full_refresh, window, watermark)
        finally:
            for plan in (self.plan, self.people):
                if plan is not None:
                    plan.drop(self.wh)
            for table in (NEW_EVENTS, identity.MOVED, *filter(None, self.deltas.values())):
                self.wh.execute(f"DROP TABLE IF EXISTS {table} SYNC")
            for connection in self.spares:
                connection.close()
        return runs

    def _run_all(
        self,
        models: list[Model],
        runs: list[ModelRun],
        full_refresh: bool,
        window: set[date],
        watermark: str | None,
    ) -> None:
        index = {model.name: n for n, model in enumerate(models, 1)}
        by_name = {model.name: model for model in models}
        waits_for = {model.name: self._waits_for(model) for model in models}

        def build(name: str, connection: Warehouse) -> ModelRun:
            self.local.lane = _Lane(connection)
            try:
                return self._run_one(by_name[name], index[name], len(models),
                                     full_refresh, window, watermark)
            finally:
                self.local.lane = None

        try:
            runs.extend(build_side_by_side(list(by_name), waits_for, self.main,
                                           max(1, self.settings.model_threads), build))
        finally:
            self._say_finished(flush=True)

    def _say_finished(self, index: int = 0, line: str = "", *, flush: bool = False) -> None:
        """Each model's closing line, in model order whatever order they finish in
        (a line waits for the models before it), so a run's log reads the same every
        time; flush=True says what is left (after a failure)."""
        with self.shared:
            if line:
                self.finished_lines[index] = line
            while self.finished_lines and (flush or min(self.finished_lines) == self.said + 1):
                self.said = min(self.finished_lines)
                self.progress(self.finished_lines.pop(self.said))

    def _beside(self, here: Callable[[], int], there: Callable[[], int]) -> int:
        """here() + there(): at once when the run builds side by side, there() on a
        connection of its own with tables named apart (the 'late_' lane). A model's
        new days and its late days are such a pair: other days, other tables until
        each day is swapped in."""
        if self.settings.model_threads <= 1:
            return here() + there()
        with self.shared:
            connection = self.spares.pop() if self.spares else self.main.sibling()

        def run_there() -> int:
            self.local.lane = _Lane(connection, tag="late_")
            try:
                return there()
            finally:
                self.local.lane = None

        try:
            with ThreadPoolExecutor(1, thread_name_prefix="model-late") as pool:
                later = pool.submit(run_there)
                try:
                    rows = here()
                finally:
                    wait([later])  # never leave it running; its error is raised below
                return rows + later.result()
        finally:
            with self.shared:
                self.spares.append(connection)

    def _waits_for(self, model: Model) -> set[str]:
        """The models of this run built before `model`: those it reads, and for a
        person-level model those the person plan reads."""
        names = {m.name for m in self.models}
        waits = set(model.depends_on)
        if model.materialized in ("incremental_by_person", "incremental_sum"):
            waits |= set(PLAN_UPSTREAM) - {model.name}
        return waits & names

    def _upstream(self, model: Model) -> set[str]:
        """The models `model` reads, directly or through others, in this run."""
        by_name = {m.name: m for m in self.models}
        seen: set[str] = set()
        todo = list(model.depends_on)
        while todo:
            name = todo.pop()
            if name in by_name and name not in seen:
                seen.add(name)
                todo.extend(by_name[name].depends_on)
        return seen

    def _days_of(self, rebuilt: dict[str, set[date]], models: set[str]) -> set[date]:
        with self.shared:
            return set().union(*(rebuilt.get(name, set()) for name in models))

    def _run_one(
        self,
        model: Model,
        index: int,
        total: int,
        full_refresh: bool,
        window: set[date],
        watermark: str | None,
    ) -> ModelRun:
        started = time.monotonic()
        self.progress(f"[{index}/{total}] {model.name} ({model.materialized}) …")
        if model.name == "identity_map":
            rows, mode = self._build_identity_map(model, full_refresh)
            days = 0
        elif model.materialized == "incremental_by_person":
            rows, mode = self._build_by_person(model, full_refresh)
            days = 0
        elif model.materialized == "incremental_sum":
            rows, mode = self._build_sum(model, full_refresh)
            days = 0
        elif model.materialized == "table":
            rows = self._build_table(model)
            mode, days = "full", 0
        else:
            exists = swap.exists(self.wh, model.name)
            # Days and sessions depend on the time zone and the gap: a change of either
            # means every day is wrong, so the model is rebuilt whole. So does a new
            # release's DDL (a column added): days could not be swapped into the old
            # table's shape.
            if full_refresh or not exists or self._last_rules(model.name) != self.rules \
                    or self._schema_changed(model):
                days_list = sorted(self._day_rows())
                with self.shared:
                    self.digests.read(days_list)
                rows = self._build_incremental_full(model, days_list)
                mode, days = "full", len(days_list)
                partial: set[date] = set()
            else:
                lookback = window
                if self.recheck_window:
                    with self.shared:
                        lookback = self.digests.changed(model.name, window)
                affected = (lookback | self._received_days(model.name)
                            | self._days_of(self.rebuilt_days, self._upstream(model)))
                if "identity_map" in model.depends_on:
                    affected |= self._days_with_stale_persons(model.name)
                days_list = sorted(affected)
                with self.shared:
                    self.digests.read(days_list)
                partial = self._partial_days(model, affected)
                whole, late = sorted(affected - partial), sorted(partial)
                def build_whole() -> int:
                    return self._build_incremental_days(model, whole)

                def build_late() -> int:
                    return self._build_partial_days(model, late)

                # a thread and a second connection only when both sides have days
                rows = (self._beside(build_whole, build_late) if whole and late
                        else build_whole() + build_late())
                mode, days = "incremental", len(days_list)
            if "identity_map" in model.depends_on:
                self._save_applied_links(model.name)
            with self.shared:
                self.digests.record(model.name, days_list)  # they now match their digests
                self.rebuilt_days[model.name] = set(days_list)
                self.whole_days[model.name] = set(days_list) - partial
        seconds = time.monotonic() - started
        with self.shared:
            self.modes[model.name] = mode
        run = ModelRun(model.name, rows, round(seconds, 3), mode, days)
        self.wh.execute(
            f"INSERT INTO {STATE_TABLE} "
            "(model, ran_at, mode, rows, seconds, days, watermark, rules, started_at, "
            "map_version, ddl_hash) "
            "VALUES ({m:String}, now64(3), {mode:String}, {rows:UInt64}, {s:Float64}, "
            "{d:UInt32}, {w:DateTime64(3, 'UTC')}, {r:String}, {st:DateTime64(3, 'UTC')}, "
            "{v:String}, {h:String})",
            {
                "m": model.name,
                "mode": mode,
                "rows": rows,
                "s": seconds,
                "d": days,
                "w": watermark or "1970-01-01 00:00:00.000",
                "r": self.rules,
                "st": self.started,
                "v": identity.map_version(self.wh),
                "h": _ddl_hash(model),
            },
        )
        detail = f", {days} day(s)" if model.materialized == "incremental_by_day" else ""
        self._say_finished(index, f"[{index}/{total}] {model.name}: {rows:,} rows in "
                                  f"{seconds:.2f}s ({mode}{detail})")
        return run

    def _window_days(self, since: date | None, today: date | None) -> set[date]:
        """The look-back window: `lookback_days` before the latest day (or from `since`)."""
        # Unfiltered, max() is read from the parts' minmax index (no column scan).
        latest = self.wh.query(
            "SELECT toString(toDate(max(timestamp), {tz:String})), "
            "max(timestamp) > toDateTime64('1971-01-01', 3, 'UTC') FROM events_raw",
            {"tz": self.tz},
        ).rows
        if not latest or not int(latest[0][1]):  # no events (or only epoch-zero times)
            return set()
        max_day = date.fromisoformat(latest[0][0])
        if since is None:
            anchor = min(today or datetime.now(ZoneInfo(self.tz)).date(), max_day)
            since = anchor - timedelta(days=self.settings.lookback_days)
        return set(_day_range(since, max_day))

    def _received_days(self, model: str) -> set[date]:
        """Event days of everything received since this model's previous run, however late.

        The margin covers events the loader commits a little after later-received ones.
        """
        if self._last_watermark(model) is None:
            return set()
        source = self._new_events(model)
        rows = self.wh.query(
            f"SELECT toString(toDate(timestamp, {{tz:String}})) AS d, count() FROM {source} "
            f"GROUP BY d",
            {"tz": self.tz},
        ).rows
        self.lane.new_rows = {date.fromisoformat(d): int(n) for d, n in rows}
        return set(self.lane.new_rows)

    def _partial_days(self, model: Model, affected: set[date]) -> set[date]:
        """The affected days `model` can rebuild for the affected people only.

        Those whose raw rows received up to the model's previous watermark are still
        what it built them from (digests.py: `explained`), so that the day differs only
        by the new events, whose people are all in P, and by ids that moved in this
        run's merge, whose old and new persons are in P too; not a day an upstream
        model rebuilt whole; and only while the new events are a small share of the day.
        """
        people = self._affected_people(model)
        if people is None or not self.recheck_window:
            return set()
        upstream_whole = self._days_of(self.whole_days, self._upstream(model))
        with self.shared:
            explained = self.digests.explained(model.name, affected - upstream_whole,
                                               self.previous.get(model.name))
            current = dict(self.digests.current)
        return {day for day in explained
                if self.lane.new_rows.get(day, 0)
                <= PARTIAL_SHARE * current.get(day, (0, 0))[0]}

    def _affected_people(self, model: Model) -> PersonPlan | None:
        """P (people.py), once the map merged this run's new events: None when they are
        not what changed since `model` was built (another watermark, a map rebuilt)."""
        if (self.modes.get("identity_map") != "incremental" or not self.whole_run
                or self.previous.get(model.name) != self.previous.get("identity_map")
                or ("identity_map" in model.depends_on
                    and not self._moved_since_built(model.name))):
            return None
        with self.shared:
            if self.people is None:
                self.people = affected_people(self.wh, self._new_events("identity_map"))
            return self.people

    def _moved_since_built(self, table: str) -> bool:
        """Are this run's moved ids (identity.MOVED) all that moved since `table` was built?

        Yes when the map merged incrementally in this run and `table` was last built with
        the map this merge started from (the version token both record); funnel_stages,
        built in `table`'s last run too, then holds each stored person's days (one row
        per person and active day).
        """
        start = self.previous_start.get(table)
        built_with = self.last_map_version.get(table)
        return (self.modes.get("identity_map") == "incremental" and start is not None
                and bool(self.map_before) and built_with == self.map_before
                and self.previous_start.get("funnel_stages") == start
                and swap.exists(self.wh, "funnel_stages")
                and swap.exists(self.wh, _applied_links(table)))

    def _days_with_stale_persons(self, table: str) -> set[date]:
        """Days holding events whose stored person is not what identity_map says now.

        When this run's merge names every moved id (_moved_since_built), their stored
        persons' days are read from funnel_stages and only those days are checked.
        Otherwise:

        The links `table` was last built with are kept beside it (`<table>_identity`,
        see _save_applied_links), so the ids whose person changed since are the
        difference of two small sets; the days are those with events carrying one of
        those ids, scanned from the earliest day any of them was seen. Comparing with
        the links the table was built with (not with the map's previous version) also
        catches a map rebuilt by an earlier `--select` run. Without that record (a
        table built by an older version) every stored person is checked instead.
        """
        if self._moved_since_built(table):
            # O(the moved ids' people): their days from funnel_stages, then only those
            # days of `table` read for events carrying a moved id
            moved = identity.MOVED
            rows = self.wh.query(f"""
                SELECT DISTINCT toString(event_date) FROM {table}
                WHERE event_date IN (
                        SELECT stage_date FROM funnel_stages
                        WHERE person_id IN (SELECT stored_person FROM {moved}))
                  AND (user_id IN (SELECT id FROM {moved})
                       OR anonymous_id IN (SELECT id FROM {moved}))""").rows
            return {date.fromisoformat(r[0]) for r in rows}
        applied = _applied_links(table)
        if not swap.exists(self.wh, applied):
            return self._days_with_stale_persons_by_scan(table)
        changed = f"""
            SELECT id FROM (SELECT id, person_id FROM identity_map WHERE person_id != id
                            EXCEPT SELECT id, person_id FROM {applied})
            UNION ALL
            SELECT id FROM (SELECT id, person_id FROM {applied}
                            EXCEPT SELECT id, person_id FROM identity_map WHERE person_id != id)"""
        count, since = self.wh.query(
            f"SELECT count(), toString(toDate(minOrNull(m.first_seen_at), {{tz:String}})) "
            f"FROM ({changed}) AS c LEFT JOIN identity_map AS m ON m.id = c.id "
            f"SETTINGS join_use_nulls = 1",
            {"tz": self.tz},
        ).rows[0]
        if not int(count):
            return set()
        rows = self.wh.query(
            f"SELECT DISTINCT toString(event_date) FROM {table} "
            f"WHERE event_date >= {{since:Date}} "
            f"AND (user_id IN ({changed}) OR anonymous_id IN ({changed}))",
            {"since": since or "1970-01-01"},
        ).rows
        return {date.fromisoformat(r[0]) for r in rows}

    def _days_with_stale_persons_by_scan(self, table: str) -> set[date]:
        """Days where a stored person differs from the current map (a full scan)."""
        rows = self.wh.query(f"""
            SELECT DISTINCT toString(b.event_date)
            FROM (
                SELECT event_date, person_id, user_id, anonymous_id
                FROM {table}
                GROUP BY event_date, person_id, user_id, anonymous_id
            ) AS b
            -- resolved as behavior_events resolves: by the user id when there is one
            LEFT JOIN identity_map AS m
                ON m.id = if(b.user_id != '', b.user_id, b.anonymous_id)
            WHERE b.person_id != if(m.person_id != '', m.person_id,
                                    if(b.user_id != '', b.user_id, b.anonymous_id))
            {_QUERY_SETTINGS}""").rows
        return {date.fromisoformat(r[0]) for r in rows}

    def _save_applied_links(self, table: str) -> None:
        """Record the links `table` now reflects: every day of it was built with them."""
        applied = _applied_links(table)
        new = f"{applied}__new"
        if self._moved_since_built(table):  # the stored links differ by the moved ids
            moved = f"id IN (SELECT id FROM {identity.MOVED})"
            swap.replace_rows(self.wh, applied, new, moved,
                              f"SELECT id, person_id FROM identity_map "
                              f"WHERE {moved} AND person_id != id")
            return
        self.wh.execute(f"DROP TABLE IF EXISTS {new} SYNC")
        self.wh.execute(
            f"CREATE TABLE {new} (id String, person_id String) ENGINE = MergeTree ORDER BY id"
        )
        self.wh.execute(
            f"INSERT INTO {new} SELECT id, person_id FROM identity_map WHERE person_id != id"
        )
        swap.swap(self.wh, applied, new)

    def _last_rules(self, model: str) -> str | None:
        return self.last_rules.get(model)

    def _last_watermark(self, model: str) -> str | None:
        return self.previous.get(model)

    def _day_rows(self, days: list[date] | None = None) -> dict[date, int]:
        """Events per reporting day in events_raw (a read of the timestamp column):
        every day, or only the span of `days` (a range of events_raw's sort key)."""
        if self.day_rows is not None:
            return self.day_rows
        span = ""
        params = {"tz": self.tz}
        if days:
            bounds = self._day_params([min(days), max(days)])
            span = ("WHERE timestamp >= {f:DateTime64(3, 'UTC')} "
                    "AND timestamp < {t:DateTime64(3, 'UTC')}")
            params |= {"f": bounds["ts_from"], "t": bounds["ts_to"]}
        rows = self.wh.query(
            "SELECT toString(toDate(timestamp, {tz:String})) AS d, count() "
            f"FROM events_raw {span} GROUP BY d",
            params,
        ).rows
        counts = {date.fromisoformat(r[0]): int(r[1]) for r in rows}
        if not days:
            self.day_rows = counts
        return counts

    def _chunks(self, days: list[date]) -> list[list[date]]:
        """Runs of consecutive days, cut at CHUNK_MAX_DAYS days or chunk_rows events.

        Consecutive, because a chunk reads events_raw as one range of days; a day with
        more events than chunk_rows is a chunk of its own.
        """
        counts = self._day_rows(days)
        chunks: list[list[date]] = []
        rows = 0
        for day in sorted(days):
            n = counts.get(day, 0)
            if (
                chunks
                and chunks[-1][-1] == day - timedelta(days=1)
                and len(chunks[-1]) < CHUNK_MAX_DAYS
                and rows + n <= self.chunk_rows
            ):
                chunks[-1].append(day)
                rows += n
            else:
                chunks.append([day])
                rows = n
        return chunks

    def _new_events(self, model: str) -> str:
        """The events received since `model`'s previous run, as a table expression.

        Received since = `received_at` above that run's watermark less the margin (the
        loader commits some events a little after later-received ones). Only the parts
        of events_raw written since that run started are read: every event already in
        a part then was read by that run (or an earlier one), and a merge or a forget
        writes new parts, which are read again (so this only narrows the read). The
        first identity_map/plan caller keeps them in a Memory table for the run.
        """
        key = (self.previous[model], self.previous_start.get(model))
        if self.new_events_key == key:
            return NEW_EVENTS
        condition = ("received_at > {w:DateTime64(3, 'UTC')} - INTERVAL {m:UInt32} SECOND")
        params = {"w": key[0], "m": str(int(self.received_margin.total_seconds()))}
        if key[1] is not None:
            # a part's directory time is set while it is written, a little before it is
            # visible: a minute's slack (or the margin) covers a long insert
            slack = max(int(self.received_margin.total_seconds()), 60)
            parts = [r[0] for r in self.wh.query(
                "SELECT name FROM system.parts WHERE database = currentDatabase() "
                "AND table = 'events_raw' AND active "
                "AND modification_time >= toDateTime({s:DateTime64(3, 'UTC')}) "
                "- INTERVAL {k:UInt32} SECOND", {"s": key[1], "k": slack}).rows
                if _PART_NAME.match(r[0])]
            listed = ", ".join(f"'{name}'" for name in parts)
            condition += f" AND _part IN ({listed})" if parts else " AND 0"
        if self.new_events_key is None and model == "identity_map":
            self.wh.execute(f"DROP TABLE IF EXISTS {NEW_EVENTS} SYNC")
            self.wh.execute(
                f"CREATE TABLE {NEW_EVENTS} ENGINE = Memory AS "
                f"SELECT timestamp, received_at, message_id, type, anonymous_id, user_id, "
                f"previous_id FROM events_raw WHERE {condition}", params)
            self.new_events_key = key
            return NEW_EVENTS
        return "(SELECT * FROM events_raw WHERE " + _bind(condition, params) + ")"

    # -- building ----------------------------------------------------------------------
    def _build_table(self, model: Model, keep: Callable[[], None] | None = None) -> int:
        new = f"{model.name}__new"
        self.wh.execute(f"DROP TABLE IF EXISTS {new} SYNC")
        self.wh.execute(_ddl(model, new))
        self._insert(model, new, {}, keep)
        rows = self._count(new)
        swap.swap(self.wh, model.name, new)
        return rows

    def _build_identity_map(self, model: Model, full_refresh: bool) -> tuple[int, str]:
        """Merge the new events' links into the kept state, or build the map whole
        (a full refresh, no state yet, or a new release's columns)."""
        if (not full_refresh and "identity_map" in self.previous
                and swap.exists(self.wh, "identity_map") and swap.exists(self.wh, identity.LINKS)
                and swap.exists(self.wh, identity.CHANGES) and not self._schema_changed(model)):
            return identity.refresh(self.wh, self._new_events("identity_map")), "incremental"
        scratch = "identity_map__scratch"
        rows = self._build_table(model, keep=lambda: identity.save_links(self.wh, scratch))
        return rows, "full"

    def _build_by_person(self, model: Model, full_refresh: bool) -> tuple[int, str]:
        """Rebuild the affected people's rows and swap the table in with them; the whole
        table when this run cannot say who changed."""
        plan = self._person_plan(full_refresh)
        if (plan is None or not swap.exists(self.wh, model.name)
                or self.previous.get(model.name) != self.previous.get("identity_map")
                or self._last_rules(model.name) != self.rules or self._schema_changed(model)):
            return self._build_table(model), "full"
        summed = self._summed(model)
        if not plan.count:
            if summed:
                self.deltas[model.name] = ""
            return 0, "incremental"
        stage, new = f"{model.name}__stage", f"{model.name}__new"
        self.wh.execute(f"DROP TABLE IF EXISTS {stage} SYNC")
        self.wh.execute(_ddl(model, stage))
        self.lane.filters = (plan.people, _date_list(plan.days))
        try:
            self._insert(model, stage, {})
        finally:
            self.lane.filters = None
        replaced = f"{model.replace_by} IN (SELECT person_id FROM {plan.people})"
        rows = self._count(stage)
        if summed:  # the people's rows now and before, for the sums downstream
            delta = f"{model.name}__delta"
            self.wh.execute(f"DROP TABLE IF EXISTS {delta} SYNC")
            self.wh.execute(
                f"CREATE TABLE {delta} ENGINE = Memory AS "
                f"SELECT *, toInt8(1) AS sign FROM {stage} WHERE {replaced} UNION ALL "
                f"SELECT *, toInt8(-1) AS sign FROM {model.name} "
                f"WHERE {model.replace_by} IN (SELECT person_id FROM {PEOPLE_BEFORE})")
            self.deltas[model.name] = delta
        swap.replace_rows(self.wh, model.name, new, replaced,
                          f"SELECT * FROM {stage} WHERE {replaced}")
        self.wh.execute(f"DROP TABLE {stage} SYNC")
        return rows, "incremental"

    def _summed(self, model: Model) -> bool:
        """Does an incremental_sum model of this run add up `model`?"""
        return any(other.materialized == "incremental_sum" and model.name in other.depends_on
                   for other in self.models)

    def _build_sum(self, model: Model, full_refresh: bool) -> tuple[int, str]:
        """The table's rows plus the change of its source's refreshed people, built whole
        (a sum table is small) and swapped in; every row of the source summed when this
        run cannot say what changed (the source rebuilt whole, the sums built from
        another state of it, or a forget since: its rows left the source only)."""
        if len(model.depends_on) != 1:
            raise ValueError(f"{model.name}: an incremental_sum adds up exactly one model")
        source = model.depends_on[0]
        delta = self.deltas.get(source)
        incremental = (not full_refresh and delta is not None
                       and swap.exists(self.wh, model.name)
                       and self.previous.get(model.name) == self.previous.get(source)
                       and self._last_rules(model.name) == self.rules
                       and not self._schema_changed(model) and not self._forgotten_since(model))
        if incremental and not delta:
            return 0, "incremental"
        new = f"{model.name}__new"
        self.wh.execute(f"DROP TABLE IF EXISTS {new} SYNC")
        self.wh.execute(_ddl(model, new))
        self.lane.sums = ((model.name, delta or "") if incremental else
                     (f"(SELECT * FROM {new} WHERE 0)",
                      f"(SELECT *, toInt8(1) AS sign FROM {source})"))
        try:
            self._insert(model, new, {})
        finally:
            self.lane.sums = None
        rows = self._count(new)
        swap.swap(self.wh, model.name, new)
        return rows, "incremental" if incremental else "full"

    def _forgotten_since(self, model: Model) -> bool:
        """Was anyone forgotten since `model` was last built (forget.py)?"""
        start = self.previous_start.get(model.name)
        if start is None or not swap.exists(self.wh, "forgotten_ids"):
            return True
        return bool(self.wh.query(
            "SELECT count() FROM forgotten_ids WHERE forgotten_at >= {s:DateTime64(3, 'UTC')}",
            {"s": start}).scalar())

    def _person_plan(self, full_refresh: bool) -> PersonPlan | None:
        """Who the person-level models rebuild in this run, worked out once (before the
        first of them rewrites anything: the others wait on the lock); None when they
        must be rebuilt whole."""
        with self.shared:
            if not self.planned:
                self.plan = self._plan_people(full_refresh)
                self.planned = True
            return self.plan

    def _plan_people(self, full_refresh: bool) -> PersonPlan | None:
        # funnel_stages (people's days) and orders (who holds an order) are read as
        # they were before this run: both must be in step with the map
        upstream = (*PLAN_UPSTREAM, "funnel_stages", "orders")
        if (full_refresh or not self.whole_run
                or any(self.modes.get(m) != "incremental" for m in PLAN_UPSTREAM)
                or len({self.previous.get(m) for m in upstream}) != 1
                or not swap.exists(self.wh, "funnel_stages") or not swap.exists(self.wh, "orders")):
            return None
        if self.people is None:
            self.people = affected_people(self.wh, self._new_events("identity_map"))
        rebuilt = self._days_of(self.rebuilt_days, set(PLAN_UPSTREAM))
        return plan_people(self.wh, self.people, sorted(rebuilt))

    def _build_incremental_full(self, model: Model, days: list[date]) -> int:
        new = f"{model.name}__new"
        self.wh.execute(f"DROP TABLE IF EXISTS {new} SYNC")
        self.wh.execute(_ddl(model, new))
        chunks = self._chunks(days)
        for n, chunk in enumerate(chunks, 1):
            self._insert(model, new, self._day_params(chunk))
            self.progress(f"    {model.name}: days {chunk[0]}…{chunk[-1]} ({n}/{len(chunks)})")
        rows = self._count(new)
        swap.swap(self.wh, model.name, new)
        return rows

    def _build_incremental_days(self, model: Model, days: list[date]) -> int:
        stage = f"{model.name}__{self.lane.tag}stage"
        rows = 0
        for chunk in self._chunks(days):
            self.wh.execute(f"DROP TABLE IF EXISTS {stage} SYNC")
            self.wh.execute(_ddl(model, stage))
            self._insert(model, stage, self._day_params(chunk))
            rows += self._swap_days(model, stage, chunk)
            self.progress(f"    {model.name}: days {chunk[0]}…{chunk[-1]} replaced")
        self.wh.execute(f"DROP TABLE IF EXISTS {stage} SYNC")
        return rows

    def _build_partial_days(self, model: Model, days: list[date]) -> int:
        """Rebuild the affected people's rows of these days and keep every other row.

        Per run of consecutive days, the stage starts as the days with the people's
        rows left out (swap.keep_partitions: the parts hard-linked and those rows
        masked), their rows are rebuilt into it from the raw rows carrying their ids,
        and each day is swapped in with REPLACE PARTITION (readers see the old day or
        the new one). Returns the rows rebuilt.
        """
        if not days:
            return 0
        assert self.people is not None
        stage = f"{model.name}__{self.lane.tag}stage"
        replaced = f"{model.replace_by} IN (SELECT person_id FROM {self.people.people})"
        rows = 0
        for chunk in _consecutive_runs(days, CHUNK_MAX_DAYS):
            self.wh.execute(f"DROP TABLE IF EXISTS {stage} SYNC")
            # the stored table's own structure: parts attach only between equal ones
            self.wh.execute(f"CREATE TABLE {stage} AS {model.name}")
            swap.keep_partitions(self.wh, model.name, stage,
                                 [day.strftime("%Y%m%d") for day in chunk], replaced)
            self.lane.filters = (self.people.people, _date_list(chunk))
            try:
                self._insert(model, stage, self._day_params(chunk))
            finally:
                self.lane.filters = None
            rows += self._count(stage, replaced)
            self._swap_days(model, stage, chunk)
            self.progress(f"    {model.name}: days {chunk[0]}…{chunk[-1]} replaced "
                          f"for the affected people")
        self.wh.execute(f"DROP TABLE IF EXISTS {stage} SYNC")
        return rows

    def _swap_days(self, model: Model, stage: str, chunk: list[date]) -> int:
        """Each day of the stage replaces the model's (a day left empty is dropped)."""
        rows = 0
        filled = {
            r[0]: r[1]
            for r in self.wh.query(
                "SELECT partition_id, sum(rows) FROM system.parts "
                "WHERE database = currentDatabase() "
                "AND table = {t:String} AND active GROUP BY partition_id",
                {"t": stage},
            ).rows
        }
        for day in chunk:
            pid = day.strftime("%Y%m%d")
            if pid in filled:
                self.wh.execute(
                    f"ALTER TABLE {model.name} REPLACE PARTITION ID '{pid}' FROM {stage}"
                )
                rows += int(filled[pid])
            else:
                self.wh.execute(f"ALTER TABLE {model.name} DROP PARTITION ID '{pid}'")
        return rows

    def _insert(self, model: Model, target: str, day_params: dict[str, str],
                keep: Callable[[], None] | None = None) -> None:
        columns = [
            r[0]
            for r in self.wh.query(
                "SELECT name FROM system.columns "
                "WHERE database = currentDatabase() AND table = {t:String} "
                "ORDER BY position",
                {"t": target},
            ).rows
        ]
        cols = ", ".join(f"`{c}`" for c in columns)
        available = {
            "tz": self.tz,
            "gap_seconds": str(self.settings.session_gap_minutes * 60),
            **day_params,
        }
        steps, select = model.statements(self.lane.tag)
        wanted = set(_PARAM.findall(" ".join((*steps, select))))
        missing = wanted - set(available)
        if missing:
            raise ValueError(
                f"{model.name}: parameter(s) {sorted(missing)} need an incremental run"
            )
        params = {k: v for k, v in available.items() if k in wanted}
        scratch_tables = [_SCRATCH_TABLE.findall(step)[0] for step in steps]
        try:
            for table, step in zip(scratch_tables, steps, strict=True):
                self.wh.execute(f"DROP TABLE IF EXISTS {table} SYNC")
                self.wh.execute(f"{self._filtered(step)}\n{_QUERY_SETTINGS}", params)
            self.wh.execute(
                f"INSERT INTO {target} ({cols})\nSELECT {cols}\nFROM (\n"
                f"{self._filtered(select)}\n)\n{_QUERY_SETTINGS}",
                params,
            )
            if keep is not None:
                keep()
        finally:
            for table in scratch_tables:
                self.wh.execute(f"DROP TABLE IF EXISTS {table} SYNC")

    def _filtered(self, sql: str) -> str:
        """{{ people:COL }} / {{ days:COL }}: the affected people and their days in a
        by-person run or a late day's partial rebuild, no filter (`1`) otherwise, and
        {{ people_ids:A,B }} / {{ people_only }} likewise; {{ kept }} / {{ delta:… }}
        in a sum's build."""
        if self.lane.sums is not None:
            kept, delta = self.lane.sums
            sql = _DELTA.sub(lambda m: delta, sql.replace(_KEPT, kept))
        if self.lane.filters is None:
            for template in (_PEOPLE, _DAYS, _PEOPLE_IDS):
                sql = template.sub("1", sql)
            return sql.replace(_PEOPLE_ONLY, "0")
        people, days = self.lane.filters
        sql = _PEOPLE_IDS.sub(
            lambda m: f"({m.group(1)} IN (SELECT id FROM {PEOPLE_IDS}) "
                      f"OR {m.group(2)} IN (SELECT id FROM {PEOPLE_IDS}))",
            sql.replace(_PEOPLE_ONLY, "1"))
        sql = _PEOPLE.sub(lambda m: f"{m.group(1)} IN (SELECT person_id FROM {people})", sql)
        return _DAYS.sub(lambda m: f"{m.group(1)} IN {days}", sql)

    def _day_params(self, days: list[date]) -> dict[str, str]:
        return _day_params(self.tz, days)

    def _schema_changed(self, model: Model) -> bool:
        """Do the stored table's columns differ from what the model's DDL creates now?

        Not when the model's last run left its table with this very DDL (the hash it
        recorded); otherwise a probe table made from the DDL is compared column by
        column (a run of an older version recorded no hash).
        """
        if self.last_ddl_hash.get(model.name) == _ddl_hash(model):
            return False
        probe = f"{model.name}__probe"
        self.wh.execute(f"DROP TABLE IF EXISTS {probe} SYNC")
        self.wh.execute(_ddl(model, probe))
        try:
            shapes = self.wh.query(
                "SELECT table, groupArray((name, type)) FROM ("
                "SELECT table, name, type FROM system.columns "
                "WHERE database = currentDatabase() AND table IN ({t:String}, {p:String}) "
                "ORDER BY table, position) GROUP BY table",
                {"t": model.name, "p": probe},
            ).rows
        finally:
            self.wh.execute(f"DROP TABLE IF EXISTS {probe} SYNC")
        columns = {table: list(cols) for table, cols in shapes}
        return columns.get(model.name) != columns.get(probe)

    def _count(self, table: str, where: str = "1") -> int:
        return int(self.wh.query(f"SELECT count() FROM {table} WHERE {where}").scalar() or 0)


def _ddl(model: Model, table: str) -> str:
    return model.ddl.replace("{{ this }}", table)


def _ddl_hash(model: Model) -> str:
    return hashlib.sha256(model.ddl.encode()).hexdigest()


def _day_params(tz: str, days: list[date]) -> dict[str, str]:
    """The chunk's days, and its bounds in UTC: [ts_from, ts_to) covers the days,
    [pad_from, pad_to) one more day either side (for copies straddling midnight)."""
    zone = ZoneInfo(tz)

    def start_of(day: date) -> str:
        return _utc_text(datetime(day.year, day.month, day.day, tzinfo=zone))

    first, last = days[0], days[-1]
    return {
        "days": "[" + ",".join(f"'{d.isoformat()}'" for d in days) + "]",
        "date_from": first.isoformat(),
        "date_to": last.isoformat(),
        "ts_from": start_of(first),
        "ts_to": start_of(last + timedelta(days=1)),
        "pad_from": start_of(first - timedelta(days=1)),
        "pad_to": start_of(last + timedelta(days=2)),
    }


def _span(tz: str, days: list[date]) -> tuple[str, str]:
    """The UTC instants from the first day's start to the last day's end."""
    params = _day_params(tz, days)
    return params["ts_from"], params["ts_to"]


def _bind(condition: str, params: dict[str, str]) -> str:
    """The new-events condition with its two values inlined (a watermark the runner
    read from the warehouse and a number of seconds), for a table expression."""
    return (condition
            .replace("{w:DateTime64(3, 'UTC')}",
                     f"toDateTime64('{_checked_time(params['w'])}', 3, 'UTC')")
            .replace("{m:UInt32}", str(int(params["m"]))))


def _checked_time(text: str) -> str:
    if not re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", text):
        raise ValueError(f"unexpected watermark {text!r}")
    return text


def _date_list(days: list[date]) -> str:
    """A literal tuple of dates (the runner's own dates, never user text)."""
    return "(" + ", ".join(f"toDate('{d.isoformat()}')" for d in days or [date(1970, 1, 1)]) + ")"


def _applied_links(table: str) -> str:
    """The identity links (id → person, linked ids only) `table` was last built with."""
    return f"{table}_identity"


def _scratch_names(prefix: str, sql: str) -> str:
    """{{ scratch }} → <prefix>scratch, {{ scratch:name }} → <prefix>name."""
    return _SCRATCH.sub(lambda m: f"{prefix}{m.group(1) or 'scratch'}", sql)


def _strip_comments(sql: str) -> str:
    """Drop whole-line comments before the body, so a wrapper can nest it safely."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def _consecutive_runs(days: list[date], longest: int) -> list[list[date]]:
    """The days (sorted) cut into runs of consecutive days, at most `longest` each."""
    runs: list[list[date]] = []
    for day in days:
        if runs and runs[-1][-1] == day - timedelta(days=1) and len(runs[-1]) < longest:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.000")
