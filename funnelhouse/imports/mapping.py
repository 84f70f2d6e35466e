"""A column mapping: which message field each column of a file fills, and the messages it makes.

A mapping is a list of `target=source`:

* target: a message field — `type`, `event`, `userId`, `anonymousId`, `messageId`,
  `timestamp`, `previousId`, `groupId`, `name`, `category` (snake_case works too) — or a
  dotted path into `properties`, `traits`, `context` or `integrations`, with `[n]` for a
  list position: `properties.revenue`, `context.campaign.source`,
  `properties.items[0].product_id`.
* source: a column of the CSV file (a dotted path into the object for JSON lines), or a
  constant in quotes: `event='purchase'`, `properties.currency="KRW"`. An unquoted source
  that is not a column is an error, never silently a constant. In a mapping file
  (`--mapping FILE.json`: `{"target": "source", …}`) `{"value": …}` is a constant of any
  JSON type.

CSV cells are typed by funnelhouse.imports.values (the plan's type for the field);
`timestamp` is turned into ISO-8601 by funnelhouse.collector.timestamps (naive times in
the given time zone). An empty cell leaves its field out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import orjson

from funnelhouse.collector.plan import EVENT_OF_TYPE, PAYLOAD_OF_EVENT, TrackingPlan
from funnelhouse.collector.timestamps import to_iso
from funnelhouse.imports.values import declared_type, typed

__all__ = ["Field", "MappingError", "RowMapping", "check_targets", "identity_mapping",
           "parse_mapping", "parse_mapping_file"]

# Message fields a column may fill, by every spelling accepted → the one written.
TOP_FIELDS = {
    **{name: name for name in ("type", "event", "timestamp", "name", "category")},
    **{alias: camel for camel, snake in (
        ("userId", "user_id"), ("anonymousId", "anonymous_id"), ("messageId", "message_id"),
        ("previousId", "previous_id"), ("groupId", "group_id"))
       for alias in (camel, snake)},
}
CONTAINERS = ("properties", "traits", "context", "integrations")
_SEGMENT = re.compile(r"([A-Za-z0-9_$@-]+)((?:\[[0-9]{1,4}\])*)")
_INDEX = re.compile(r"\[([0-9]+)\]")

Path = list[str | int]


class MappingError(ValueError):
    """The mapping cannot be used with this file (said before any row is sent)."""


@dataclass(frozen=True)
class Field:
    target: tuple[str | int, ...]    # ("properties", "items", 0, "price")
    source: str = ""                 # a column, or a dotted path for JSON lines
    constant: Any = None             # when not None, the value itself
    typed_constant: bool = False     # a constant given as text (typed like a cell)

    @property
    def label(self) -> str:
        return _path_text(self.target)


def parse_mapping(specs: Iterable[str]) -> list[Field]:
    """`--map` values: each `target=source`, several per value separated by commas."""
    fields = []
    for spec in specs:
        for item in _split_commas(spec):
            target, equals, source = item.partition("=")
            if not equals or not target.strip() or not source.strip():
                raise MappingError(f"mapping {item!r}: write target=source, e.g. "
                                   "userId=customer_id or event='purchase'")
            fields.append(_field(target.strip(), source.strip()))
    return check_targets(fields)


def parse_mapping_file(doc: Any) -> list[Field]:
    """A mapping file: `{"target": "column" | "'constant'" | {"value": …}, …}`."""
    if not isinstance(doc, dict):
        raise MappingError("a mapping file is a JSON object of target → source")
    fields = []
    for target, source in doc.items():
        if isinstance(source, dict) and set(source) == {"value"}:
            fields.append(Field(_target(target), constant=source["value"]))
        elif isinstance(source, str) and source.strip():
            fields.append(_field(target, source.strip()))
        else:
            raise MappingError(f"mapping of {target!r}: a column name, a quoted constant "
                               "or {\"value\": …}")
    return check_targets(fields)


class RowMapping:
    """Turns one row into one message; built once per file, after the columns are known."""

    def __init__(self, fields: list[Field], plan: TrackingPlan, *, default_type: str,
                 default_event: str | None, tz: tzinfo, text_cells: bool) -> None:
        self.fields = fields
        self.plan = plan
        self.default_type = default_type
        self.default_event = default_event
        self.tz = tz
        # CSV cells are text and get their types from the plan; JSON values have theirs.
        self.text_cells = text_cells

    def check_columns(self, columns: Iterable[str]) -> None:
        known = set(columns)
        missing = [f for f in self.fields if f.constant is None and f.source not in known]
        if missing:
            raise MappingError(
                "not columns of the file: " + ", ".join(f"{f.source!r} (for {f.label})"
                                                        for f in missing)
                + f"; the columns are {', '.join(sorted(known))}; quote a constant: "
                  f"{missing[0].label}='{missing[0].source}'")

    def message(self, row: Mapping[str, Any], base: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """The message of one row: `base` (a JSON line as it is) with the mapped fields set."""
        message: dict[str, Any] = dict(base or {})
        containers: list[tuple[Field, Any]] = []
        for field in self.fields:
            value = field.constant if field.constant is not None else _lookup(row, field.source)
            if value is None or value == "":
                continue   # an empty cell is an absent field
            if len(field.target) == 1 and field.target[0] not in CONTAINERS:
                name = str(field.target[0])
                message[name] = self._top_value(name, value)
            else:
                containers.append((field, value))
        message.setdefault("type", self.default_type)
        if self.default_event and not message.get("event") and message["type"] == "track":
            message["event"] = self.default_event
        root, node = self._schema_of(message)
        for field, value in containers:
            if isinstance(value, str) and (self.text_cells or field.typed_constant):
                value = self._typed(field, value, message, root, node)
            _set(message, list(field.target), value)
        return message

    def _top_value(self, name: str, value: Any) -> Any:
        if name == "timestamp":
            return to_iso(value, self.tz) or value   # not a time: the plan says so
        if isinstance(value, str):
            return value
        # Ids and names are strings in the envelope; a JSON number id is its text.
        return value if name in ("type", "event") else _as_text(value)

    def _schema_of(self, message: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The event's schema (root) and which container it validates."""
        call = message.get("type")
        event = EVENT_OF_TYPE.get(call) if isinstance(call, str) else None
        if event is None:
            sent = message.get("event")
            event = self.plan.canonical_event(sent) if isinstance(sent, str) else ""
        if event not in self.plan.events():
            return {}, ""
        return self.plan.schema(event), PAYLOAD_OF_EVENT.get(event, "properties")

    def _typed(self, field: Field, text: str, message: dict[str, Any],
               root: dict[str, Any], payload: str) -> Any:
        container, *path = field.target
        if container == payload:
            return typed(text, declared_type(root, root, path))
        if container == "context":
            envelope = self.plan.envelope_schema()
            context = envelope.get("properties", {}).get("context")
            return typed(text, declared_type(envelope, context, path))
        return typed(text, None)


def identity_mapping(columns: Iterable[str]) -> list[Field]:
    """A file whose header already names message fields maps each column to itself."""
    fields, unknown = [], []
    for column in columns:
        try:
            fields.append(Field(_target(column), source=column))
        except MappingError:
            unknown.append(column)
    if unknown:
        raise MappingError("columns that name no message field: "
                           + ", ".join(repr(c) for c in unknown)
                           + "; map them with --map (e.g. properties.amount=amount) or "
                             "--mapping FILE.json")
    return check_targets(fields)


def _field(target: str, source: str) -> Field:
    if len(source) >= 2 and source[0] == source[-1] and source[0] in "'\"":
        return Field(_target(target), constant=source[1:-1], typed_constant=True)
    return Field(_target(target), source=source)


def _target(text: str) -> tuple[str | int, ...]:
    """`properties.items[0].price` → ("properties", "items", 0, "price")."""
    parts = text.strip().split(".")
    path: Path = []
    for part in parts:
        match = _SEGMENT.fullmatch(part)
        if not match:
            raise MappingError(f"target {text!r}: {part!r} is not a field name")
        path.append(match.group(1))
        path += [int(index) for index in _INDEX.findall(match.group(2))]
    head = path[0]
    if head in CONTAINERS:
        if len(path) == 1:
            raise MappingError(f"target {text!r}: name a field inside it, "
                               f"e.g. {head}.revenue")
        return tuple(path)
    if isinstance(head, str) and head in TOP_FIELDS and len(path) == 1:
        return (TOP_FIELDS[head],)
    raise MappingError(f"target {text!r}: one of {', '.join(sorted(set(TOP_FIELDS.values())))}, "
                       f"or a path in {', '.join(CONTAINERS)}")


def check_targets(fields: list[Field]) -> list[Field]:
    """Each target once, and none inside another (`properties.items` and
    `properties.items[0].price` cannot both be set)."""
    targets = sorted((f.target for f in fields), key=len)
    for i, target in enumerate(targets):
        for later in targets[i + 1:]:
            if later[:len(target)] == target:
                what = "twice" if later == target else f"and {_path_text(later)} inside it"
                raise MappingError(f"{_path_text(target)} is mapped {what}")
    return fields


def _split_commas(spec: str) -> list[str]:
    """Split on commas outside quotes (a constant may hold a comma)."""
    items: list[str] = []
    current: list[str] = []
    quote = ""
    for char in spec:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _lookup(row: Mapping[str, Any], source: str) -> Any:
    """A column's value; for JSON lines a dotted path (`customer.id`) if no key is named so."""
    if source in row:
        return row[source]
    value: Any = row
    for part in source.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _set(message: dict[str, Any], path: Path, value: Any) -> None:
    """Set `value` at `path`, making the objects and list positions on the way."""
    node: Any = message
    for segment, following in zip(path, path[1:], strict=False):
        fresh: Any = [] if isinstance(following, int) else {}
        if isinstance(segment, int):
            while len(node) <= segment:
                node.append(None)
            if not isinstance(node[segment], dict | list):
                node[segment] = fresh
            node = node[segment]
        else:
            if not isinstance(node.get(segment), dict | list):
                node[segment] = fresh
            node = node[segment]
    last = path[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value


def _path_text(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p)
                   for i, p in enumerate(path))


def _as_text(value: Any) -> str:
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
