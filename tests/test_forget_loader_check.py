"""The loader's forgotten-person check reads only the id fields of a queued events_raw row:
it must drop exactly the rows a full parse would (ids with escapes, look-alike keys inside
string values, tombstones, ids that are not strings, and an invalid event's payload
should one be among them)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from funnelhouse.people.forget import TOMBSTONE, ForgottenSet, _forgotten_row, hash_id

VICTIMS = ["victim", 'vic"tim', "vic\\tim", "vïctim-✓", "a\nb"]
OTHERS = ["someone", "", 'some"one', "x\\y", "victim2"]


def queued_row(anon: object, user: object, previous: object, props: str) -> bytes:
    """An events_raw row as the collector writes it: message_id first, ids at the top."""
    return orjson.dumps({"message_id": "m-1", "type": "track", "event": "click",
                         "anonymous_id": anon, "user_id": user, "previous_id": previous,
                         "source": "web", "properties": props, "context": "{}"})


def invalid_row(payload: dict) -> bytes:
    return orjson.dumps({"message_id": "m-2", "source": "web", "reason": "schema_violation",
                         "payload": orjson.dumps(payload).decode()})


ids = st.sampled_from(VICTIMS + OTHERS)
id_values = st.one_of(ids, st.none(), st.integers(0, 9))
look_alike = st.sampled_from([
    "{}", orjson.dumps({"user_id": "victim"}).decode(),
    '{"note": "\\"user_id\\":\\"victim\\""}', orjson.dumps({"anonymous_id": 'vic"tim'}).decode()])
rows = st.one_of(
    st.builds(queued_row, id_values, id_values, id_values, look_alike),
    st.builds(invalid_row, st.fixed_dictionaries({"userId": ids, "anonymousId": ids})),
    st.just(TOMBSTONE))


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, min_size=1, max_size=12), st.sets(st.sampled_from(VICTIMS), min_size=1))
def test_the_id_read_drops_what_a_full_parse_drops(lines: list[bytes], forgotten: set[str]
                                                   ) -> None:
    hashes = frozenset(hash_id(v) for v in forgotten)
    expected = [line for line in lines if not _forgotten_row(line, hashes)]
    kept, dropped = ForgottenSet(None).keep([b"\n".join(lines)], hashes,  # type: ignore[arg-type]
                                            raw_rows=True)
    assert (kept[0].split(b"\n") if kept else []) == expected
    assert dropped == len(lines) - len(expected)


def test_a_forgotten_id_in_each_column_and_only_there() -> None:
    hashes = frozenset({hash_id("victim")})
    lines = [queued_row("victim", "", "", "{}"), queued_row("a", "victim", "", "{}"),
             queued_row("a", "b", "victim", "{}"),
             queued_row("a", "b", "", orjson.dumps({"user_id": "victim"}).decode()),
             queued_row("victim2", "", "", "{}")]
    kept, dropped = ForgottenSet(None).keep([b"\n".join(lines)], hashes,  # type: ignore[arg-type]
                                            raw_rows=True)
    assert dropped == 3 and kept == [b"\n".join(lines[3:])]
