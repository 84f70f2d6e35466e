"""The tracking plan: loads `schemas/`, validates messages against it, checks the plan itself."""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend

from funnelhouse.config import Policy

__all__ = [
    "InvalidPlan",
    "PlanError",
    "Policy",
    "TrackingPlan",
    "Verdict",
    "to_snake_case_keys",
]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# Call types whose plan event follows from the type alone; track names its event itself.
EVENT_OF_TYPE = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "alias": "alias",
    "group": "group",
}
# Which part of the message the event's schema validates; everything else validates `properties`.
PAYLOAD_OF_EVENT = {"identify": "traits", "group": "traits"}

# The keywords the plan may use: both validators (jsonschema-rs on the hot path, jsonschema
# for the error report) evaluate them alike, and the differential test holds them to it.
VALIDATION_KEYWORDS = frozenset({
    "type", "properties", "required", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "minLength", "maxLength", "pattern", "items", "minItems", "maxItems",
    "additionalProperties", "anyOf", "oneOf", "$ref",
})
ANNOTATION_KEYWORDS = frozenset({
    "$schema", "$id", "$defs", "$comment", "title", "description", "examples",
})
# Keywords whose value is a map of name -> subschema, or a list of subschemas.
_SCHEMA_MAPS = ("properties", "$defs")
_SCHEMA_LISTS = ("anyOf", "oneOf")

_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION_FILE = re.compile(r"^([0-9]+)-([0-9]+)-([0-9]+)\.json$")
_MAX_MESSAGE = 300


class InvalidPlan(ValueError):
    """The plan cannot be used at all: a file is not JSON or a schema does not compile."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("tracking plan cannot be loaded:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PlanError:
    path: str      # JSON path like "$.properties.items[0].price"
    message: str
    # "schema_violation" | "unknown_event" | "unexpected_property" | "envelope_violation"
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    event: str                 # plan name after alias mapping ("Order Completed" -> "purchase")
    schema_version: str        # e.g. "purchase/1-0-0"; "" for unplanned events
    errors: tuple[PlanError, ...] = ()
    flags: tuple[str, ...] = ()   # "unplanned_event", "extra_properties"


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    # JSON Schema patterns are ECMA-262 regexes, where `$` is the end of the input; Python's
    # `$` also matches before a final newline. Rewriting `$` to `\Z` keeps this report
    # validator in agreement with the spec and with jsonschema-rs's ECMA-style regexes.
    if isinstance(instance, str) and not _compiled_ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=256)
def _compiled_ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


# The validator used for error reports (and by the differential test as the reference).
ReportValidator = extend(Draft202012Validator, {"pattern": _ecma_pattern})


def compile_fast(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """The hot path's yes/no for a plan schema: jsonschema-rs (full draft 2020-12, in Rust).

    It answers in ≈1 µs where fastjsonschema's generated code took ≈6 µs for the
    envelope. Only a "no" is explained, by the jsonschema report validator. `offline`:
    a plan's `$ref` is never fetched from the network.
    """
    return _fast_validator(schema).is_valid


def _fast_validator(schema: dict[str, Any]) -> Any:
    try:
        return jsonschema_rs.validator_for(copy.deepcopy(schema), offline=True)
    except jsonschema_rs.ValidationError:
        # jsonschema-rs refuses a schema the 2020-12 metaschema refuses; the plan still
        # loads, check() names the problem, and jsonschema evaluates it meanwhile.
        return ReportValidator(schema)


@dataclass(frozen=True, slots=True)
class _Schema:
    """One loaded schema file: compiled once, with what validate() needs precomputed."""

    name: str
    version: str
    path: Path
    raw: dict[str, Any]
    fast: Callable[[Any], bool]     # is_valid
    report: Any                     # ReportValidator
    declared: frozenset[str]        # top-level property names

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


class TrackingPlan:
    """The tracking plan in memory: the envelope, every event version, the alias table."""

    def __init__(
        self,
        plan_dir: Path,
        envelope: _Schema,
        versions: dict[str, dict[str, _Schema]],
        aliases: dict[str, str],
    ) -> None:
        self.plan_dir = plan_dir
        self._envelope = envelope
        self._versions = versions
        self._current = {name: by_version[_highest(by_version)]
                         for name, by_version in versions.items()}
        self._aliases = aliases
        self._folded = {_fold(name): name for name in self._current}
        self._folded.update({_fold(alias): target for alias, target in aliases.items()})
        self._valid: dict[tuple[str, tuple[str, ...]], Verdict] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, plan_dir: Path) -> TrackingPlan:
        plan_dir = Path(plan_dir)
        problems: list[str] = []

        envelope_files = _version_files(plan_dir / "envelope", problems)
        if not envelope_files:
            problems.append(f"{plan_dir / 'envelope'}: no envelope schema (expected 1-0-0.json)")
        envelopes = [_load_schema("envelope", v, p, problems) for v, p in envelope_files.items()]

        versions: dict[str, dict[str, _Schema]] = {}
        events_dir = plan_dir / "events"
        if not events_dir.is_dir():
            problems.append(f"{events_dir}: missing")
        else:
            for event_dir in sorted(p for p in events_dir.iterdir() if p.is_dir()):
                for version, path in _version_files(event_dir, problems).items():
                    loaded = _load_schema(event_dir.name, version, path, problems)
                    if loaded is not None:
                        versions.setdefault(event_dir.name, {})[version] = loaded

        aliases: dict[str, str] = {}
        alias_file = plan_dir / "aliases.json"
        if alias_file.exists():
            raw = _read_json(alias_file, problems)
            if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
                aliases = raw
            elif raw is not None:
                problems.append(f"{alias_file}: must be an object of name -> plan event name")

        if problems:
            raise InvalidPlan(problems)
        current_envelope = max((e for e in envelopes if e), key=lambda e: _version_key(e.version))
        return cls(plan_dir, current_envelope, versions, aliases)

    # ------------------------------------------------------------------ lookups
    def canonical_event(self, name: str) -> str:
        """The plan name for an event name as sent: plan names and aliases, case-insensitively."""
        if name in self._current:
            return name
        target = self._aliases.get(name)
        if target is not None:
            return target
        return self._folded.get(_fold(name), name)

    def events(self) -> dict[str, str]:
        """Planned event -> current (highest) version."""
        return {name: schema.version for name, schema in sorted(self._current.items())}

    def versions(self, event: str) -> list[str]:
        """Every loadable version of a planned event, oldest first."""
        return sorted(self._versions[event], key=_version_key)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def schema(self, event: str, version: str | None = None) -> dict[str, Any]:
        return self._schema(event, version).raw

    def envelope_schema(self) -> dict[str, Any]:
        return self._envelope.raw

    def declared_properties(self, event: str, version: str | None = None) -> dict[str, dict]:
        """Top-level properties the event's schema declares, name -> property schema."""
        return dict(self._schema(event, version).raw.get("properties", {}))

    def _schema(self, event: str, version: str | None) -> _Schema:
        if version is None:
            return self._current[event]
        try:
            return self._versions[event][version]
        except KeyError:
            raise KeyError(f"{event}/{version} is not in the tracking plan") from None

    # ------------------------------------------------------------------ validation
    def validate(
        self,
        message: dict,
        *,
        unknown_events: Policy = "flag",
        extra_properties: Policy = "flag",
        version: str | None = None,
    ) -> Verdict:
        """Validate one normalised (snake_case) message: the envelope, then the event's payload.

        `version` pins the event schema version (e.g. for a replay); default is the current one.
        """
        errors: list[PlanError] = []
        flags: tuple[str, ...] = ()
        envelope_ok = True
        if not self._envelope.fast(message):
            envelope_ok = False
            errors.extend(_report(self._envelope, message, "$", "envelope_violation"))
        if not isinstance(message, dict):
            return Verdict(False, "", "", tuple(errors))

        call_type = message.get("type")
        name = EVENT_OF_TYPE.get(call_type) if isinstance(call_type, str) else None
        if name is None:
            sent = message.get("event")
            name = self.canonical_event(sent) if isinstance(sent, str) else ""

        if not name and not envelope_ok:
            return Verdict(False, "", "", tuple(errors))  # the envelope already says why
        if name in self._current:
            schema = self._current[name] if version is None else self._schema(name, version)
        else:
            if unknown_events == "reject":
                errors.append(PlanError("$.event", f"{name!r} is not a planned event",
                                        "unknown_event"))
            elif unknown_events == "flag":
                flags = ("unplanned_event",)
            return Verdict(not errors, name, "", tuple(errors), flags)

        payload_key = PAYLOAD_OF_EVENT.get(name, "properties")
        payload = message.get(payload_key)
        if payload is None:
            payload = {}
        if isinstance(payload, dict):
            if not schema.fast(payload):
                errors.extend(_report(schema, payload, "$." + payload_key, "schema_violation"))
            # issuperset first: most payloads have no extra keys, and it builds no set
            if extra_properties != "allow" and not schema.declared.issuperset(payload):
                extra = payload.keys() - schema.declared
                if extra_properties == "flag":
                    flags = ("extra_properties",)
                else:
                    errors.extend(
                        PlanError(_json_path("$." + payload_key, (key,)),
                                  f"{key!r} is not a property of {schema.label}",
                                  "unexpected_property")
                        for key in sorted(extra))
        elif envelope_ok:
            # The envelope's own schema says this; kept for plans whose envelope does not.
            errors.append(PlanError("$." + payload_key, f"{payload_key} must be an object",
                                    "envelope_violation"))
        if not errors:
            # The same few answers for every valid event: made once (a frozen dataclass
            # costs ≈1 µs to build), kept per planned event, version and flags.
            key = (schema.label, flags)
            verdict = self._valid.get(key)
            if verdict is None:
                verdict = self._valid[key] = Verdict(True, name, schema.label, (), flags)
            return verdict
        if len(errors) > 1:
            errors.sort(key=_path_order)
        return Verdict(False, name, schema.label, tuple(errors), flags)

    # ------------------------------------------------------------------ plan problems
    def check(self) -> list[str]:
        """Problems with the plan itself; empty when the plan is sound."""
        problems: list[str] = []
        envelope = self._envelope
        problems += _check_schema(envelope, expect_event=None)
        for by_version in self._versions.values():
            for schema in by_version.values():
                problems += _check_schema(schema, expect_event=schema.name)
        for alias, target in sorted(self._aliases.items()):
            if target not in self._current:
                problems.append(
                    f"aliases.json: {alias!r} -> {target!r}, which is not a planned event")
            if alias in self._current:
                problems.append(f"aliases.json: {alias!r} is itself a planned event name")
        return problems


# ---------------------------------------------------------------------- camelCase input
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@lru_cache(maxsize=4096)
def _snake(key: str) -> str:
    if key.islower() or not _IDENTIFIER.match(key):
        return key
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def to_snake_case_keys(obj: Any) -> Any:
    """A copy of `obj` with every dict key converted camelCase -> snake_case, values untouched.

    Keys that are not identifiers ("Button Name", "$ga") are kept as they are. When both
    spellings are present ({"userId": …, "user_id": …}) the snake_case one wins.
    """
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            new_key = _snake(key) if isinstance(key, str) else key
            if new_key != key and new_key in obj:
                continue
            out[new_key] = to_snake_case_keys(value)
        return out
    if isinstance(obj, list):
        return [to_snake_case_keys(item) for item in obj]
    return obj


# ---------------------------------------------------------------------- helpers
def _fold(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-"))


def _highest(by_version: dict[str, Any]) -> str:
    return max(by_version, key=_version_key)


def _version_files(directory: Path, problems: list[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        match = _VERSION_FILE.match(path.name)
        if match is None:
            problems.append(f"{path}: not a schema file name (want <major>-<minor>-<patch>.json)")
            continue
        found["-".join(str(int(part)) for part in match.groups())] = path
    return found


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: not readable JSON ({exc})")
        return None


def _load_schema(name: str, version: str, path: Path, problems: list[str]) -> _Schema | None:
    raw = _read_json(path, problems)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{path}: a schema must be a JSON object")
        return None
    try:
        fast = compile_fast(raw)
        report = ReportValidator(raw)
    except Exception as exc:  # noqa: BLE001 - any compile failure makes the plan unusable
        problems.append(f"{path}: does not compile ({type(exc).__name__}: {exc})")
        return None
    declared = frozenset(raw.get("properties", {})) if isinstance(raw.get("properties"), dict) \
        else frozenset()
    return _Schema(name, version, path, raw, fast, report, declared)


def _report(schema: _Schema, instance: Any, root: str, reason: str) -> list[PlanError]:
    """Every error in `instance`, sorted by path; only called once the fast path has failed."""
    found = sorted(schema.report.iter_errors(instance), key=lambda e: _sort_key(e.absolute_path))
    if not found:
        # The two validators disagree (the differential test exists to prevent this). The
        # fast path's verdict stands; jsonschema-rs says why.
        return [PlanError(_json_path(root, list(getattr(error, "instance_path", ()))),
                          error.message, reason)
                for error in _fast_errors(schema, instance)]
    return [PlanError(_json_path(root, path), message, reason)
            for error in found for path, message in _explain(error)]


def _fast_errors(schema: _Schema, instance: Any) -> list[Any]:
    """jsonschema-rs's own errors for an instance (its validator is rebuilt: rare path)."""
    return list(_fast_validator(schema.raw).iter_errors(instance))


def _explain(error: ValidationError) -> list[tuple[list[Any], str]]:
    """(path, message) pairs for one jsonschema error, made readable.

    A failed anyOf/oneOf is explained by the one branch that applies to the instance (the
    others fail on a const/enum discriminator such as `type`), so "alias call without
    previous_id" reads as "$.previous_id: 'previous_id' is a required property". When no
    single branch applies, the branches' descriptions are listed.
    """
    if error.validator in _SCHEMA_LISTS and isinstance(error.validator_value, list):
        by_branch: dict[str | int, list[ValidationError]] = {}
        for sub in error.context or ():
            by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
        applicable = [errs for errs in by_branch.values()
                      if not any(e.validator in ("const", "enum") for e in errs)]
        if len(applicable) == 1 and len(by_branch) == len(error.validator_value) > 1:
            return [pair for sub in applicable[0] for pair in _explain(sub)]
        descriptions = [branch.get("description") if isinstance(branch, dict) else None
                        for branch in error.validator_value]
        if all(descriptions):
            word = "exactly one" if error.validator == "oneOf" else "one"
            return [(list(error.absolute_path),
                     f"must satisfy {word} of: " + " | ".join(descriptions))]  # type: ignore[arg-type]
    path = list(error.absolute_path)
    if error.validator == "required":
        # A missing property points at the property itself, so coverage counts it there.
        missing = error.message.removesuffix(" is a required property")
        try:
            path.append(ast.literal_eval(missing))
        except (ValueError, SyntaxError):
            pass
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return [(path, message)]


def _path_order(error: PlanError) -> tuple[tuple[int, Any], ...]:
    parts = re.split(r"[.\[\]]+", error.path)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def _sort_key(path: Iterable[Any]) -> tuple[tuple[int, Any], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, str(part)) for part in path)


def _json_path(root: str, path: Iterable[Any]) -> str:
    out = [root]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif isinstance(part, str) and _IDENTIFIER.match(part):
            out.append("." + part)
        else:
            out.append("[" + json.dumps(part, ensure_ascii=False) + "]")
    return "".join(out)


def _check_schema(schema: _Schema, expect_event: str | None) -> list[str]:
    where = str(schema.path)
    raw = schema.raw
    problems = [f"{where}: {e.message} (at {_json_path('$', e.absolute_path)})"
                for e in Draft202012Validator(Draft202012Validator.META_SCHEMA).iter_errors(raw)]
    if raw.get("$schema") != DRAFT_2020_12:
        problems.append(f"{where}: $schema must be {DRAFT_2020_12!r}")
    if raw.get("x-version") != schema.version:
        problems.append(f"{where}: x-version {raw.get('x-version')!r} does not match the file name "
                        f"({schema.version!r})")
    if expect_event is not None:
        if not _EVENT_NAME.match(expect_event):
            problems.append(f"{where}: event name {expect_event!r} is not snake_case")
        if raw.get("x-event") != expect_event:
            problems.append(f"{where}: x-event {raw.get('x-event')!r} does not match the folder "
                            f"({expect_event!r})")
        if raw.get("type") != "object":
            problems.append(f"{where}: an event schema must have type 'object'")
        problems += _check_examples(schema)
    problems += [f"{where}: {p}" for p in _check_keywords(raw, raw, "$")]
    return problems


def _check_examples(schema: _Schema) -> list[str]:
    examples = schema.raw.get("examples", [])
    if not examples:
        return [f"{schema.path}: no examples (each event documents at least one valid payload)"]
    problems = []
    for i, example in enumerate(examples):
        errors = [m for e in schema.report.iter_errors(example) for _, m in _explain(e)]
        errors += [f"jsonschema-rs: {e.message}" for e in _fast_errors(schema, example)]
        problems += [f"{schema.path}: examples[{i}] is invalid: {e}" for e in errors]
    return problems


def _check_keywords(
    node: Any, root: dict[str, Any], path: str, documented: bool = True,
) -> Iterator[str]:
    """The keyword whitelist, walked through every subschema.

    `documented`: properties must carry a description, except inside anyOf/oneOf branches,
    which only restate conditions on properties documented elsewhere.
    """
    if not isinstance(node, dict):
        yield f"{path}: a subschema must be an object"
        return
    for key in node:
        if key not in VALIDATION_KEYWORDS and key not in ANNOTATION_KEYWORDS \
                and not key.startswith("x-"):
            yield f"{path}: keyword {key!r} is not allowed in the plan (see VALIDATION_KEYWORDS)"
    if "$ref" in node:
        ref = node["$ref"]
        siblings = set(node) - ANNOTATION_KEYWORDS - {"$ref"}
        if siblings:
            # Draft 2019-09 and earlier tools ignore keywords beside $ref; 2020-12 applies them.
            yield f"{path}: $ref must stand alone (found {sorted(siblings)})"
        if not (isinstance(ref, str) and ref.startswith("#/$defs/")
                and isinstance(root.get("$defs", {}).get(ref[len("#/$defs/"):]), dict)):
            yield f"{path}: $ref {ref!r} must point at a definition in this file's $defs"
    if node.get("additionalProperties", True) is not True:
        yield f"{path}: additionalProperties must be true (extra keys are a source policy)"
    if "items" in node and not isinstance(node["items"], dict):
        yield f"{path}: items must be a single schema"
    for keyword in ("enum", "const"):
        values = node.get(keyword) if keyword == "enum" else [node.get(keyword)]
        if keyword in node and not all(isinstance(v, str | int | float | bool) or v is None
                                       for v in values or []):
            yield f"{path}: {keyword} values must be scalars"
    if isinstance(node.get("pattern"), str):
        try:
            re.compile(node["pattern"])
        except re.error as exc:
            yield f"{path}: pattern does not compile ({exc})"
    for keyword in _SCHEMA_MAPS:
        for name, sub in (node.get(keyword) or {}).items():
            sub_path = f"{path}.{keyword}.{name}"
            if keyword == "properties" and documented \
                    and not (isinstance(sub, dict) and sub.get("description")):
                yield f"{sub_path}: every property needs a description (the plan is documentation)"
            yield from _check_keywords(sub, root, sub_path, documented)
    for keyword in _SCHEMA_LISTS:
        for i, sub in enumerate(node.get(keyword) or []):
            yield from _check_keywords(sub, root, f"{path}.{keyword}[{i}]", documented=False)
    if isinstance(node.get("items"), dict):
        yield from _check_keywords(node["items"], root, f"{path}.items", documented)
