"""What every analysis shares: event specs, named SQL parameters, results and their rendering."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from funnelhouse.warehouse.base import Warehouse

EVENTS_TABLE = "behavior_events"
# Comparison operators a filter may use; longest first so that "!=" wins over "=".
_OPERATORS = ("!=", ">=", "<=", "!~", "=", "~", ">", "<")
_FILTER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.$-]*)\s*(!=|>=|<=|!~|=|~|>|<)\s*(.*?)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal)")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# Columns of behavior_events that hold numbers; a property filter on them compares numbers.
_PROPERTY_PREFIX = "properties."
_SEGMENT_PREFIX = "segment:"
# Product fields that an event with order lines (a purchase) carries per line: a filter
# matches when any line matches, a held value is held when any line has it.
ITEM_ARRAYS = {"product_id": "item_product_ids", "product_name": "item_product_names",
               "product_category": "item_categories"}


@dataclass(frozen=True)
class ActiveDaysSource:
    """Where people's active days are read from: a table, its day and its time column."""

    table: str
    day: str
    at: str


def active_days_source(condition: str, breakdown: bool,
                       sessions_built: bool) -> ActiveDaysSource:
    """Active on a day by *any* event: read `sessions`, a row per session instead of one
    per event (8× fewer rows at 10M, 4× faster). The same people and days: every event
    belongs to one session, a session never crosses midnight in the reporting time zone
    (`session_date` is its events' day), and it starts at its first event, so
    `started_at <= as_of` keeps exactly the sessions with an event by as_of. A condition
    on the event, a breakdown by its properties, or no sessions model yet reads the
    events."""
    if condition == "1" and not breakdown and sessions_built:
        return ActiveDaysSource("sessions", "session_date", "started_at")
    return ActiveDaysSource(EVENTS_TABLE, "event_date", "event_at")


class SpecError(ValueError):
    """The analysis was asked for something it cannot do (bad step, unknown option …)."""


# -- specs ---------------------------------------------------------------------------
# The text form of a step: `event:prop=value,prop2>5`. A value that holds a comma, a quote or
# `|`, or has a space or an operator at its edge, is written in double quotes with `\"` and
# `\\` inside: `product_view:product_category="Shoes, Men"`; so is a name holding a colon.
_PROP = re.compile(r"[A-Za-z_][A-Za-z0-9_.$-]*")
_PROP_WHOLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.$-]*$")
_OPERATOR = re.compile(r"!=|>=|<=|!~|=|~|>|<")
# What a bare value or name cannot hold and still read back the same: the filter separator,
# a quote, `|` (a series' `EVENT|MATH`), an edge space (trimmed), an operator at a value's
# start (`<` then `=5` reads as `<=` then `5`), a colon in a name (it ends the name).
_VALUE_NEEDS_QUOTES = re.compile(r'[,"|]|^[\s=!<>~]|\s$')
_NAME_NEEDS_QUOTES = re.compile(r'[:|]|^[\s"]|\s$')


def quote_text(text: str) -> str:
    """`text` in double quotes, its backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_quoted(text: str, start: int) -> tuple[str, int] | None:
    """The quoted string opening at text[start] and the index after its closing quote, or
    None when it is never closed."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return None


def split_unquoted(text: str, separator: str) -> tuple[str, str]:
    """`text` split at the first `separator` outside double quotes (as str.partition):
    `purchase:coupon="A|B"|sum:revenue` → (`purchase:coupon="A|B"`, `sum:revenue`)."""
    i = 0
    while i < len(text):
        if text[i] == '"':
            quoted = _read_quoted(text, i)
            # A quote never closed is a character, as the step parser reads it.
            i = quoted[1] if quoted is not None else i + 1
        elif text.startswith(separator, i):
            return text[:i], text[i + len(separator):]
        else:
            i += 1
    return text, ""


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _read_filter(text: str, i: int, stop_at_comma: bool) -> tuple[Filter, int]:
    """One `prop op value` from text[i]; returns it and the index where it ends (a comma
    or the end). A bare value runs to the next comma (or the end) and is trimmed; a
    quoted one is taken as written when only spaces follow it up to there."""
    end_of_part = text.find(",", i) if stop_at_comma else -1
    part = text[i:end_of_part if end_of_part >= 0 else len(text)]
    bad = SpecError(f"filter {part.strip()!r} is not PROPERTY(=|!=|~|!~|>|>=|<|<=)VALUE")
    i = _skip_space(text, i)
    if text.startswith('"', i):
        quoted = _read_quoted(text, i)
        if quoted is None or not quoted[0]:
            raise bad
        prop, i = quoted
    else:
        match = _PROP.match(text, i)
        if not match:
            raise bad
        prop, i = match.group(), match.end()
    i = _skip_space(text, i)
    op_match = _OPERATOR.match(text, i)
    if not op_match:
        raise bad
    op, i = op_match.group(), _skip_space(text, op_match.end())
    if text.startswith('"', i):
        quoted = _read_quoted(text, i)
        if quoted is not None:
            after = _skip_space(text, quoted[1])
            if after == len(text) or (stop_at_comma and text[after] == ","):
                return Filter(prop, op, quoted[0]), after
    # A bare value (also one opening with a quote it never closes, as before quoting).
    end = text.find(",", i) if stop_at_comma else -1
    end = end if end >= 0 else len(text)
    return Filter(prop, op, text[i:end].strip()), end


@dataclass(frozen=True)
class Filter:
    """`prop op value`: a column of behavior_events, else a key of the event's properties JSON."""

    prop: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Filter:
        """One filter: its value runs to the end (commas included) unless it is quoted."""
        flt, _ = _read_filter(text, 0, stop_at_comma=False)
        return flt

    @classmethod
    def from_json(cls, doc: Any) -> Filter:
        if isinstance(doc, str):
            return cls.parse(doc)
        if not isinstance(doc, dict) or "prop" not in doc:
            raise SpecError(f"filter {doc!r} must be \"prop=value\" or {{prop, op, value}}")
        check_keys(doc, ("prop", "op", "value"), "filter")
        op = doc.get("op", "=")
        if op not in _OPERATORS:
            raise SpecError(f"filter operator {op!r} is not one of {', '.join(_OPERATORS)}")
        return cls(str(doc["prop"]), op, str(doc.get("value", "")))

    def text(self) -> str:
        """The filter as text that parses back to it (quoted where a bare form would not)."""
        prop = self.prop if _PROP_WHOLE.match(self.prop) else quote_text(self.prop)
        value = quote_text(self.value) if _VALUE_NEEDS_QUOTES.search(self.value) else self.value
        return f"{prop}{self.op}{value}"


@dataclass(frozen=True)
class EventSpec:
    """An event name plus property filters: `product_view:product_category~shoes,price>100`.

    The name `*` (or `any`) matches every event. Names, properties and values may be
    double-quoted (`purchase:coupon="A, B"`); text() quotes where it must, so that
    parse(spec.text()) == spec for every spec.
    """

    event: str
    filters: tuple[Filter, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EventSpec:
        name, rest = cls._split_name(text)
        if not name:
            raise SpecError(f"step {text!r} has no event name")
        filters: list[Filter] = []
        i = 0
        while i < len(rest):
            if rest[i] == "," or rest[i].isspace():   # empty parts are skipped, as ever
                i += 1
                continue
            flt, i = _read_filter(rest, i, stop_at_comma=True)
            filters.append(flt)
        return cls(name, tuple(filters))

    @staticmethod
    def _split_name(text: str) -> tuple[str, str]:
        """The event name and what follows its colon: a bare name ends at the first colon."""
        start = _skip_space(text, 0)
        if text.startswith('"', start):
            quoted = _read_quoted(text, start)
            if quoted is None:
                raise SpecError(f"step {text!r}: the event name's quote is never closed")
            name, i = quoted
            i = _skip_space(text, i)
            if i < len(text) and text[i] != ":":
                raise SpecError(f"step {text!r}: a quoted event name is followed by "
                                "':' and the filters, or nothing")
            return name, text[i + 1:]
        name, _, rest = text.partition(":")
        return name.strip(), rest

    @classmethod
    def from_json(cls, doc: Any) -> EventSpec:
        if isinstance(doc, str):
            return cls.parse(doc)
        if isinstance(doc, EventSpec):
            return doc
        if not isinstance(doc, dict) or not isinstance(doc.get("event"), str):
            raise SpecError(f"event {doc!r} must be \"name:prop=value\" or {{event, filters}}")
        check_keys(doc, ("event", "filters"), "event")
        return cls(doc["event"], tuple(Filter.from_json(f) for f in doc.get("filters") or ()))

    @property
    def any_event(self) -> bool:
        return self.event in ("*", "any")

    def text(self) -> str:
        """The step as text that parses back to it: `name:filter,filter`, quoted where needed."""
        name = quote_text(self.event) if _NAME_NEEDS_QUOTES.search(self.event) else self.event
        if not self.filters:
            return name
        return name + ":" + ",".join(f.text() for f in self.filters)


def parse_duration_ms(text: str | int | float) -> int:
    """`7d`, `12h`, `30m`, `90s`, `2w`, `500ms`; a bare number is seconds."""
    if isinstance(text, int | float):
        return int(text * 1000)
    match = _DURATION.match(text)
    if not match:
        raise SpecError(f"duration {text!r} is not a number with ms|s|m|h|d|w")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2) or "s"])


def format_duration(ms: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0 and ms >= _UNIT_MS[unit]:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def parse_date(value: Any, what: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise SpecError(f"{what} {value!r} is not a date (YYYY-MM-DD)") from exc


def parse_moment(value: Any) -> datetime | None:
    """An ISO time (UTC unless it says otherwise), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise SpecError(f"as_of {value!r} is not an ISO time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc_text(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# -- SQL building ----------------------------------------------------------------------
class SqlParams:
    """Named query parameters: the SQL says `{date_from:Date}`, the values travel beside it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.types: dict[str, str] = {}

    def add(self, name: str, type_: str, value: Any) -> str:
        if name in self.values and self.values[name] != value:
            raise ValueError(f"parameter {name} bound twice")
        self.values[name] = value
        self.types[name] = type_
        return "{" + f"{name}:{type_}" + "}"

    def for_query(self) -> dict[str, str]:
        return {k: v if isinstance(v, str) else str(v) for k, v in self.values.items()}

    def set_statements(self) -> str:
        """The parameters as clickhouse-client statements, so the SQL can be pasted and run."""
        lines = []
        for name, value in self.values.items():
            text = str(value).replace("\\", "\\\\").replace("'", "\\'")
            lines.append(f"SET param_{name} = '{text}';")
        return "\n".join(lines)


@dataclass(frozen=True)
class Cte:
    """One named piece of an analysis: `name AS (body)`, with comment lines above it."""

    name: str
    body: str          # the SELECT inside the parentheses, as shown (indented lines)
    note: str = ""     # `--` lines printed above `name AS (`; empty for none


@dataclass(frozen=True)
class Query:
    """An analysis query as named pieces: header comment, WITH pieces in order, final SELECT.

    Other features build on an analysis by taking, adding or replacing pieces by name
    (the people behind a funnel step are the funnel's pieces up to `people` and their
    own final SELECT), never by searching the SQL text.
    """

    header: str                  # `--` lines above WITH
    ctes: tuple[Cte, ...]
    final: str                   # the SELECT over the pieces
    params: SqlParams

    def names(self) -> list[str]:
        return [cte.name for cte in self.ctes]

    def index(self, name: str) -> int:
        names = self.names()
        if name not in names:
            raise KeyError(f"the query has no piece {name!r} (it has {', '.join(names)})")
        return names.index(name)

    def through(self, name: str) -> Query:
        """The pieces up to and including `name`, with no final SELECT yet."""
        return replace(self, ctes=self.ctes[:self.index(name) + 1], final="")

    def with_cte(self, cte: Cte) -> Query:
        """`cte` in place of the piece of the same name, or appended after the others."""
        if cte.name in self.names():
            i = self.index(cte.name)
            return replace(self, ctes=(*self.ctes[:i], cte, *self.ctes[i + 1:]))
        return replace(self, ctes=(*self.ctes, cte))

    def select(self, final: str) -> Query:
        return replace(self, final=final)

    def sql(self) -> str:
        if not self.final:
            raise ValueError("the query has no final SELECT")
        pieces = ",\n\n".join(f"{cte.note}{cte.name} AS (\n{cte.body}\n)" for cte in self.ctes)
        with_ = f"WITH\n{pieces}\n\n" if self.ctes else ""
        header = f"{self.header}\n" if self.header else ""
        return f"{header}{with_}{self.final}\n"


def comment(text: str) -> str:
    """User text made safe to sit in an SQL `--` comment (no line breaks)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text)[:120]


def table_columns(warehouse: Warehouse, table: str = EVENTS_TABLE) -> dict[str, str]:
    """name → type of a table's columns; raises SpecError when the table is not built yet."""
    rows = warehouse.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {t:String} ORDER BY position", {"t": table}).rows
    if not rows:
        raise SpecError(f"table {table} does not exist yet: run the models first")
    return {r[0]: r[1] for r in rows}


def tie_order(columns: dict[str, str]) -> tuple[str, str]:
    """What orders one person's events of the same millisecond: (column, type).

    The order is (event_at, message_id) everywhere. behavior_events numbers each event's
    place in its person's day in that order (day_event_seq); events of the same instant
    fall on one day, so (event_at, day_event_seq) is the same order, and carrying a
    number in a person's array costs a third of carrying the id's text. A table built
    by a release before that column falls back to the id itself."""
    if "day_event_seq" in columns:
        return "day_event_seq", "UInt32"
    return "message_id", "String"


class Properties:
    """Turns property names into SQL over behavior_events (a column, else a JSON key)."""

    def __init__(self, columns: dict[str, str], params: SqlParams) -> None:
        self.columns = columns
        self.params = params
        self._json_keys: dict[str, str] = {}

    def expr(self, prop: str) -> str:
        """The property as a String expression.

        `segment:ID` is the person's membership of a materialised segment
        ('in ID' / 'not in ID'), so any analysis can be broken down by a segment.
        """
        if prop.startswith(_SEGMENT_PREFIX):
            segment_id = prop[len(_SEGMENT_PREFIX):]
            if not segment_id:
                raise SpecError("segment: needs a segment id")
            p_segment = self.params.add("segment_id", "String", segment_id)
            return (f"if(person_id IN (SELECT person_id FROM segment_members "
                    f"WHERE segment_id = {p_segment}), concat('in ', {p_segment}), "
                    f"concat('not in ', {p_segment}))")
        if prop.startswith(_PROPERTY_PREFIX):
            return self._json(prop[len(_PROPERTY_PREFIX):])
        lines = self._item_array(prop)
        if lines:
            # One value per event: its own, else its lines' distinct values joined.
            return (f"if({prop} != '' OR empty({lines}), {prop}, "
                    f"arrayStringConcat(arrayDistinct({lines}), ','))")
        if prop in self.columns:
            if not _NAME.match(prop):
                raise SpecError(f"property {prop!r} is not a plain column name")
            kind = self.columns[prop]
            if "DateTime" in kind:
                return f"toString({prop})"
            if "Nullable" in kind:
                return f"ifNull(toString({prop}), '')"
            return prop if kind in ("String", "LowCardinality(String)") else f"toString({prop})"
        return self._json(prop)

    def number(self, prop: str) -> str:
        """The property as a Float64 (NULL where it is not a number). A numeric column is
        converted directly: through its text it costs a format and a parse per row."""
        kind = self.columns.get(prop, "")
        if _NUMERIC.match(kind) and not self._item_array(prop) and _NAME.match(prop):
            return f"toFloat64({prop})"
        return f"toFloat64OrNull({self.expr(prop)})"

    def _item_array(self, prop: str) -> str | None:
        """The order-line array column of a product field, when the table has both."""
        lines = ITEM_ARRAYS.get(prop)
        return lines if lines and prop in self.columns and lines in self.columns else None

    def hold_keys(self, prop: str) -> str:
        """The values an event offers for a held property, hashed: one, or one per line."""
        lines = self._item_array(prop)
        if lines:
            return (f"if(empty({lines}), [cityHash64({prop})], "
                    f"arrayMap(x -> cityHash64(x), {lines}))")
        return f"[cityHash64({self.expr(prop)})]"

    def hold_revenues(self, prop: str) -> str:
        """Beside hold_keys: the revenue each offered value carries (a line's revenue)."""
        revenue = "toFloat64(revenue)" if "revenue" in self.columns else "0."
        if self._item_array(prop) and "item_revenues" in self.columns:
            return (f"if(empty(item_revenues), [{revenue}], "
                    "arrayMap(x -> toFloat64(x), item_revenues))")
        return f"[{revenue}]"

    def _json(self, key: str) -> str:
        if not key:
            raise SpecError("an empty property name")
        name = self._json_keys.get(key)
        if name is None:
            name = f"key_{len(self._json_keys) + 1}"
            self._json_keys[key] = name
        placeholder = self.params.add(name, "String", key)
        # Strings as they are; numbers and booleans as their JSON text ("9900", "true").
        return (f"if(JSONType(properties, {placeholder}) = 'String', "
                f"JSONExtractString(properties, {placeholder}), "
                f"JSONExtractRaw(properties, {placeholder}))")

    def condition(self, spec: EventSpec, prefix: str) -> str:
        """`event = … AND <filters>` for one step, with its values as parameters."""
        parts = []
        if not spec.any_event:
            parts.append(f"event = {self.params.add(f'{prefix}_event', 'String', spec.event)}")
        for index, flt in enumerate(spec.filters, 1):
            expr = self.expr(flt.prop)
            name = f"{prefix}_value_{index}"
            lines = self._item_array(flt.prop)
            if lines and flt.op in ("=", "!=", "~", "!~"):
                value = self.params.add(name, "String", flt.value)
                if flt.op in ("=", "!="):
                    any_line = f"({flt.prop} = {value} OR has({lines}, {value}))"
                else:
                    any_line = (f"(positionCaseInsensitive({flt.prop}, {value}) > 0 OR "
                                f"arrayExists(x -> positionCaseInsensitive(x, {value}) > 0, "
                                f"{lines}))")
                parts.append(any_line if flt.op in ("=", "~") else f"NOT {any_line}")
            elif flt.op in ("=", "!="):
                parts.append(f"{expr} {flt.op} {self.params.add(name, 'String', flt.value)}")
            elif flt.op in ("~", "!~"):
                negate = "= 0" if flt.op == "!~" else "> 0"
                parts.append(f"positionCaseInsensitive({expr}, "
                             f"{self.params.add(name, 'String', flt.value)}) {negate}")
            else:
                try:
                    float(flt.value)
                except ValueError as exc:
                    raise SpecError(f"filter {flt.text()!r} compares with a non-number") from exc
                parts.append(f"{self.number(flt.prop)} {flt.op} "
                             f"{self.params.add(name, 'Float64', flt.value)}")
        return " AND ".join(parts) if parts else "1"


def check_keys(doc: Mapping[str, Any], known: Collection[str], what: str) -> None:
    """A key the spec does not read is an error, not silently dropped: a misspelt key
    ("exclusions" for "exclude") would otherwise answer a different question."""
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        raise SpecError(f"{what}: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(repr(k) for k in unknown)}; "
                        f"known: {', '.join(sorted(known))}")


@contextmanager
def spec_errors() -> Iterator[None]:
    """Turn the TypeError/ValueError of reading a spec into a SpecError (a 400)."""
    try:
        yield
    except SpecError:
        raise
    except (TypeError, ValueError) as exc:
        raise SpecError(str(exc)) from exc


def days_json(date_from: date | None, date_to: date | None) -> dict[str, Any]:
    """A spec's reporting days as JSON (None where not set)."""
    return {"date_from": date_from.isoformat() if date_from else None,
            "date_to": date_to.isoformat() if date_to else None}


def analysis_window(warehouse: Warehouse, date_from: date | None, date_to: date | None,
                    as_of: datetime | None) -> tuple[date, date, datetime]:
    """The spec's days and moment, defaulting to the days that hold data and to now."""
    as_of = as_of or datetime.now(UTC)
    if date_from is None or date_to is None:
        days = data_days(warehouse)
        fallback = as_of.date()
        date_from = date_from or (days[0] if days else fallback)
        date_to = date_to or (days[1] if days else fallback)
    return date_from, date_to, as_of


def data_days(warehouse: Warehouse) -> tuple[date, date] | None:
    """First and last reporting day holding events: the default date range."""
    row = warehouse.query(
        f"SELECT toString(min(event_date)), toString(max(event_date)), count() FROM {EVENTS_TABLE}"
    ).rows[0]
    if not row[2]:
        return None
    return date.fromisoformat(row[0]), date.fromisoformat(row[1])


# -- results ---------------------------------------------------------------------------
@dataclass
class AnalysisResult:
    """What an analysis answers: its main table, headline numbers, and the SQL that ran."""

    analysis: str
    spec: dict[str, Any]
    sql: str
    params: dict[str, Any]
    columns: list[str]
    rows: list[list[Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)   # analysis-specific structured form

    def to_dict(self) -> dict[str, Any]:
        return {"analysis": self.analysis, "spec": self.spec, "summary": self.summary,
                "notes": self.notes, "columns": self.columns, "rows": self.rows,
                "data": self.data, "sql": self.sql, "params": self.params}

    def to_table(self) -> str:
        return render_pretty(self.to_dict())

    def to_csv(self) -> str:
        return render_csv(self.to_dict())

    def runnable_sql(self) -> str:
        return render_sql(self.to_dict())


def render_sql(doc: dict[str, Any]) -> str:
    params = SqlParams()
    for name, value in doc.get("params", {}).items():
        params.values[name] = value
    header = "-- parameters (clickhouse-client accepts these SET lines, or --param_<name>=…)"
    return f"{header}\n{params.set_statements()}\n\n{doc['sql'].strip()}\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"
    return str(value)


def render_pretty(doc: dict[str, Any]) -> str:
    lines = []
    title = doc.get("analysis", "")
    if doc.get("summary"):
        lines.append(f"{title}: " + ", ".join(f"{k} {_cell(v)}" for k, v in doc["summary"].items()
                                              if not isinstance(v, dict | list)))
    lines.extend(f"note: {n}" for n in doc.get("notes", []))
    columns = doc.get("columns", [])
    rows = [[_cell(v) for v in row] for row in doc.get("rows", [])]
    if columns:
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        numeric = [all(_is_number(r[i]) for r in rows if r[i]) and bool(rows)
                   for i in range(len(columns))]

        def line(values: list[str]) -> str:
            return "  ".join(v.rjust(w) if num else v.ljust(w)
                             for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

        lines.append("")
        lines.append(line(columns))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(line(r) for r in rows)
        if not rows:
            lines.append("(no rows)")
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def render_csv(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(doc.get("columns", []))
    for row in doc.get("rows", []):
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def pct(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 2)
