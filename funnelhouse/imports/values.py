"""A CSV cell's text as the JSON value the tracking plan expects.

CSV has no types, so every cell is text. The rule, per field:

* declared in the plan (the event's schema for `properties.*` — `traits.*` for identify
  and group —, the envelope's for `context.*`): its type decides. `string` keeps the text
  as it is (an order id `1001` stays "1001"); `integer` takes `-?[0-9]+`; `number` takes
  that or a decimal (`12.5`, `-0.25`, `1e3`); `boolean` takes true/false, yes/no, 1/0
  (any case); `array`/`object` take JSON text. Text that does not fit is kept as text,
  so the plan refuses the row with the field's path instead of a guess being stored
  (`12,000` for a number is refused, not read as 12).
* not declared: `true`/`false` (any case) become booleans, whole numbers without a leading
  zero (`0`, `42`, `-7`, up to 18 digits) integers, decimals (`3.25`) numbers; anything
  else stays text (`007`, `+49 30 …`, `1e3`).

An empty cell is an absent field.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["declared_type", "typed"]

_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# The generic rule is stricter: a leading zero means an identifier (a zip code, "007").
_PLAIN_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_PLAIN_DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,17})\.[0-9]{1,18}")
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def typed(text: str, declared: str | None) -> Any:
    """The cell as JSON, by the plan's type for the field (`declared`, None if none)."""
    if declared is None:
        return _undeclared(text)
    value = text.strip()
    if declared == "integer" and _INTEGER.fullmatch(value):
        return int(value)
    if declared == "number" and _NUMBER.fullmatch(value):
        return int(value) if _INTEGER.fullmatch(value) else float(value)
    if declared == "boolean" and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    if declared in ("array", "object") and value[:1] in "[{":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return text
    return text


def _undeclared(text: str) -> Any:
    value = text.strip()
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _PLAIN_INTEGER.fullmatch(value):
        return int(value)
    if _PLAIN_DECIMAL.fullmatch(value):
        return float(value)
    return text


def declared_type(root: dict[str, Any], node: dict[str, Any] | None,
                  path: list[str | int]) -> str | None:
    """The JSON type a schema declares at `path` below `node` (local `$ref`s into `root`
    followed); None where it declares none, or only a choice (anyOf/oneOf)."""
    for segment in path:
        node = _resolved(root, node)
        if node is None:
            return None
        if isinstance(segment, int):
            items = node.get("items")
            node = items if isinstance(items, dict) else None
        else:
            properties = node.get("properties")
            node = properties.get(segment) if isinstance(properties, dict) else None
    node = _resolved(root, node)
    if node is None:
        return None
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return kind if isinstance(kind, str) else None


def _resolved(root: dict[str, Any], node: Any) -> dict[str, Any] | None:
    """Follow `{"$ref": "#/$defs/…"}` (a few hops; the plan's refs are local)."""
    for _ in range(8):
        if not isinstance(node, dict):
            return None
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        node = target
    return None
