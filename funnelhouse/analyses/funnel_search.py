"""The funnel's steps found by array searches instead of the walk (`arrayFold`).

Each person's step events are collected once (`plain_journeys`: the opener apart, the
later steps' events as packed numbers or as tuples) and each step is one
`arrayFirstIndex` (`walked_by_search`), giving the same final state the general walk in
funnel.py reaches — the walk carries two arrays in its state and took 9-15 s for a
5-step funnel at 10M events, a search 1-2.5 s. The reference tests run both paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from funnelhouse.analyses.common import Cte

if TYPE_CHECKING:
    from funnelhouse.analyses.funnel import FunnelSpec

# Bit k of a mask stands for step k (or for level k); bit 0 is unused; at most 63 steps.
# values: the revenue of the event that filled each step (of the held lines when a
# product field is held). An event offers one held value, or one per order line (holds),
# with the revenue of each (revenues).
STATE = ("Tuple(level UInt8, t0 Int64, stopped UInt8, excluded UInt8, times Array(Int64), "
         "done UInt64, hold UInt64, first_index UInt32, last_index UInt32, "
         "values Array(Float64))")


def walked_columns(level: str, t0: str, excluded: str, times: str, values: str) -> str:
    """A walk's outcome per person as the columns `people` reads: steps done (level), when
    the window opened (started_ms), excluded, and per step the time and revenue of the
    event that filled it (0 when not done). Plain columns rather than one STATE tuple:
    building the tuple cost 6% of a plain 5-step funnel at 10M (0.965 → 0.905 s,
    8 rounds alternated)."""
    return (f"toUInt8({level}) AS level,\n        {t0} AS started_ms,\n"
            f"        toUInt8({excluded}) AS excluded,\n        {times} AS found_times,\n"
            f"        {values} AS found_values")


# The plain funnel's later-step event as one number: ts · 2^56 + tie · 2^24 + hits. A tie
# (UInt32) and the hits of up to 23 steps (bits 1..23) fit below ts, so the numbers sort
# as (ts, tie) do; ts is an Int64, so ts · 2^56 stays inside an Int128.
_PACKED_MAX_STEPS = 23
# With exclusions the low 24 bits hold the hits (bits 1..11) and, above them, the voids
# (bits 1..10: after how many steps the event excludes), so at most 11 steps.
_PACKED_MAX_STEPS_WITH_VOIDS = 11
_VOIDS_BITS = 12
_VOIDS_UNIT = 1 << _VOIDS_BITS
_PACKED_TIE_BITS = 24
_PACKED_TIE_UNIT = 1 << _PACKED_TIE_BITS
_PACKED_TS_BITS = 56
# (ts, tie) as one number; the packed numbers are this key above their low 24 bits.
_KEY = "toInt128(ts) * 4294967296 + tie"
_PACKED = f"({_KEY}) * {_PACKED_TIE_UNIT} + hits"
_PACKED_WITH_VOIDS = (f"({_KEY}) * {_PACKED_TIE_UNIT} "
                      f"+ voids * {_VOIDS_UNIT} + hits")
_SEARCH_NOTES = {
    "loose": """\
-- loose order, every step required: step k is the first event of step k after the
-- event of step k-1, within the window opened by the first step-1 event
""",
    "strict": """\
-- strict order, every step required: step k is the first step event after the event
-- of step k-1 (a repeat of step k-1 aside) if it is step k, within the window opened
-- by the first step-1 event
""",
    "optional": """\
-- optional steps: from the highest step done, the next step is the first event after
-- that step's event of any step it may be next (the next required step or an optional
-- one before it), the lowest such step, within the window; in strict order the first
-- event of another step fills or ends the attempt
""",
    "any": """\
-- any order, no event two steps: each step is its first event from the opener (the
-- first event of any step) on, within the window the opener opens
""",
}


def is_searched(spec: FunnelSpec, tie_type: str) -> bool:
    """Nothing held, in loose or strict order, or in any order when no event can be two
    steps (distinct names, no `*`). Answered by a search instead of the general walk (a
    fold whose state carries two arrays: 9-15 s for a 5-step funnel at 10M)."""
    if spec.hold:
        return False
    if spec.order == "any":
        names = [s.event for s in spec.steps]
        return len(set(names)) == len(names) and not any(s.any_event for s in spec.steps)
    return True


def is_held_search(spec: FunnelSpec) -> bool:
    """A held property in loose or strict order, every step required, no exclusions:
    searched over the walk's own arrays (the held values ride in each event's tuple)."""
    return bool(spec.hold) and spec.order in ("loose", "strict") and not spec.optional \
        and not spec.exclusions


def packs(tie_type: str, last_touch: bool, n: int, *, voids: bool) -> bool:
    """Do the plain funnel's later-step events travel as one number each (see below)?"""
    most = _PACKED_MAX_STEPS_WITH_VOIDS if voids else _PACKED_MAX_STEPS
    return tie_type != "String" and not last_touch and n <= most


def plain_journeys(tie_type: str, last_touch: bool, n: int, *, order: str,
                    voids: bool) -> Cte:
    """The plain funnel's per-person input: the opening event, and the later steps' events.

    Only the first step-1 event that may start an attempt opens the window, so the other
    step-1 events (page views, in most funnels: 40% of the rows) never need a place in
    the array; an event that is also a later step stays in it. The breakdown rides in
    the array only for last-touch attribution (first touch reads the opener's). In strict
    order every step event stays in the array: a step-1 event after step 1 ends the attempt.
    In any order the opener is the first event of any step, and every step event stays.

    When `packs`, each later-step event is one Int128, (ts, tie) above its hits bits
    (`_PACKED`), so the array sorts as plain numbers; the events with a revenue (few:
    purchases) carry it in a second array of (number, revenue) pairs. Collecting and
    sorting the 2.6M later-step events at 10M took 0.81 s as tuples, 0.26-0.29 s as
    numbers (0.33-0.43 s with revenues sorted along)."""
    opens = "can_start = 1 AND " + ("hits > 0" if order == "any" else "bitTest(hits, 1)")
    later = "bitAnd(hits, bitNot(toUInt64(2))) > 0" if order == "loose" else "hits > 0"
    if voids:   # an exclusion event rides too, whatever else it is
        later += " OR voids > 0"
    packed = packs(tie_type, last_touch, n, voids=voids)
    if tie_type == "String":  # a table from before day_event_seq: the tuple is the order
        opener = (f"argMinIf((ts, tie, event_revenue, breakdown_value), (ts, tie),\n"
                  f"                 {opens}) AS opener")
    else:
        # (ts, tie) as one number, the key: aggregates over a number cost a fraction of a
        # tuple's. The opener's time is the key's high bits; its breakdown has an argMin
        # of its own (one argMin of the (revenue, breakdown) pair cost 0.125 s at 10M,
        # each of two ≈0.06 s), and when packed its revenue is looked up among the pairs
        # below like a later step's.
        revenue = ("arrayFirst(r -> r.1 = opener_key, revenues_raw).2" if packed
                   else f"argMinIf(event_revenue, {_KEY}, {opens})")
        opener = (f"minIf({_KEY}, {opens}) AS opener_key,\n"
                  f"        toInt64(bitShiftRight(opener_key, 32)) AS opener_ts,\n"
                  f"        {revenue} AS opener_revenue,\n"
                  f"        argMinIf(breakdown_value, {_KEY}, {opens}) AS opener_breakdown,\n"
                  f"        (opener_ts, toUInt32(opener_key - toInt128(opener_ts) * 4294967296),\n"
                  f"         opener_revenue, opener_breakdown) AS opener")
    if packed:
        number = _PACKED_WITH_VOIDS if voids else _PACKED
        # The revenues of the events that have one (purchases: few), opener or later
        # step, as (key, revenue) pairs; any other event's revenue is 0. A found step's
        # revenue looked up among those instead of in a revenue per event: 0.638 ->
        # 0.616 s for the bench funnel at 10M (9 runs alternated).
        events = (f"groupArrayIf({number}, {later}) AS packed_raw,\n"
                  f"        groupArrayIf(({_KEY}, event_revenue),\n"
                  f"                     ({later} OR {opens}) AND event_revenue != 0)"
                  f" AS revenues_raw,\n"
                  f"        arraySort(packed_raw) AS packed")
    else:
        breakdown, breakdown_type = (", breakdown_value", ", breakdown_value String") \
            if last_touch else ("", "")
        void, void_type = (", voids", ", voids UInt64") if voids else ("", "")
        events = (f"arraySort(groupArrayIf(\n"
                  f"            CAST((ts, tie, hits, event_revenue{breakdown}{void}),\n"
                  f"                 'Tuple(ts Int64, tie {tie_type}, hits UInt64, "
                  f"revenue Float64{breakdown_type}{void_type})'),\n"
                  f"            {later})) AS events")
    return Cte("journeys", f"""\
    -- each person's opener (the first step-1 event that may start an attempt) and the
    -- events of the later steps in (event_at, message_id) order
    SELECT
        person_id,
        {opener},
        {events}
    FROM step_events
    WHERE {"hits > 0 OR voids > 0" if voids else "hits > 0"}
    GROUP BY person_id
    HAVING countIf({opens}) > 0""")


def walked_by_search(n: int, p_window: str, tie_type: str, *, last_touch: bool,
                     packed: bool, order: str, exclusions: bool = False,
                     nexts: list[int] | None = None) -> list[Cte]:
    """The plain funnel without a fold: step 1 is the opener; step k is the first event
    of step k after step k-1's event and within the window — one arrayFirstIndex per
    step, the same state the general walk would reach (one event fills one step; ties
    by message_id, which (ts, tie) orders alike). In strict order the search finds the
    first event after step k-1's that is any step but k-1 (a repeat of step k-1 is let
    pass, as in the walk): it fills step k if it is step k, else the attempt ends there.
    In any order (no event is two steps) each step is the first event of that step from
    the opener on, within the window; the opener does its own step. With exclusions
    (loose order) a person is excluded when, after reaching some level L and before the
    event of step L+1 (or the window's end), an event voids level L: the walk's rule,
    where filling the next step wins over voiding. With optional steps (loose order;
    `nexts`: per level, the mask of the steps the next event may fill) each search finds
    the first event after the last one used that may fill a step from the level reached,
    and it fills the lowest such step, as the walk's fill does; at most n - 1 searches,
    each moving the level up by at least one.

    The lambdas read plain arrays (times, ties, hits), not the tuples (when packed, ties
    are the numbers themselves and tie0 the opener's number): a tuple's field
    read per element is what the search spent its time on. One CTE per step keeps each
    index a column: as aliases in one SELECT they would be inlined into each other and
    the query tree would double with every step."""
    if packed:
        # ts, tie and hits read back from the sorted numbers (see _PACKED) by shifts and
        # masks: the shift is arithmetic, so a time before 1970 reads back too, and it
        # cost 0.94–0.96 of Int128 division in a plain 5-step funnel at 10M
        hits_mask = (_VOIDS_UNIT if exclusions else _PACKED_TIE_UNIT) - 1
        # No tie array: "after the opener" (t = t0 AND tie > tie0) asks the numbers
        # themselves, against the opener's (ts, tie) with every low bit set — one array
        # fewer to unpack (0.91–0.96 of the time in a plain 5-step funnel at 10M)
        unpacked = f"""\
        arrayMap(k -> toInt64(bitShiftRight(k, {_PACKED_TS_BITS})), packed) AS times,
        packed AS ties,
        arrayMap(k -> toUInt64(bitAnd(k, {hits_mask})), packed) AS hits"""
        opener_tie = (f"(toInt128(opener.1) * 4294967296 + opener.2) * {_PACKED_TIE_UNIT} "
                      f"+ {_PACKED_TIE_UNIT - 1}")
        if exclusions:
            unpacked += f""",
        arrayMap(k -> toUInt64(bitAnd(bitShiftRight(k, {_VOIDS_BITS}), {_VOIDS_UNIT - 1})),
                 packed) AS voids"""
        carried = "packed_raw, revenues_raw, packed"
    else:
        unpacked = "        events.ts AS times, events.tie AS ties, events.hits AS hits"
        if exclusions:
            unpacked += ", events.voids AS voids"
        carried = "events"
        opener_tie = "opener.2"
    ctes = [Cte("search_1", f"""\
    -- the opener is step 1 and opens the window at t0
    SELECT person_id, opener, {carried}, opener.1 AS t0, {opener_tie} AS tie0,
{unpacked},
        arrayEnumerate(times) AS js
    FROM journeys""", note=_SEARCH_NOTES["optional" if nexts else order])]
    if nexts:
        return [*ctes, *_optional_search(n, p_window, nexts, packed=packed,
                                         last_touch=last_touch, strict=order == "strict",
                                         exclusions=exclusions)]
    strict = order == "strict"

    def wanted(k: int) -> str:
        """Loose: the event is step k. Strict: it is a step other than k - 1."""
        return (f"bitAnd(h, bitNot(toUInt64({1 << (k - 1)}))) > 0" if strict
                else f"bitTest(h, {k})")

    def found(k: int) -> str:
        """The index of step k's event: strict order keeps the one found if it is step k."""
        return (f" AS c{k},\n        if(c{k} > 0 AND bitTest(hits[c{k}], {k}), c{k}, 0) AS i{k}"
                if strict else f" AS i{k}")

    if order == "any":
        # every step searched from the opener (index 1: the sorted array starts with it)
        searches = ",\n".join(f"        arrayFirstIndex((t, h) -> bitTest(h, {k}) AND t - t0 <= "
                              f"{p_window}, times, hits) AS i{k}" for k in range(1, n + 1))
        ctes.append(Cte("search_any", f"""\
    SELECT *,
{searches}
    FROM search_1"""))
    elif n > 1:
        ctes.append(Cte("search_2", f"""\
    SELECT *,
        arrayFirstIndex((t, tie, h) -> (t > t0 OR (t = t0 AND tie > tie0)) AND {wanted(2)}
            AND t - t0 <= {p_window}, times, ties, hits){found(2)}
    FROM search_1"""))
        for k in range(3, n + 1):
            ctes.append(Cte(f"search_{k}", f"""\
    SELECT *,
        if(i{k - 1} = 0, 0, arrayFirstIndex((t, h, j) -> j > i{k - 1} AND {wanted(k)}
            AND t - t0 <= {p_window}, times, hits, js)){found(k)}
    FROM search_{k - 1}"""))
    revenue_of = _revenue_of(packed)
    if order == "any":   # the opener's step is one of the searched
        indexes = [f"i{k}" for k in range(1, n + 1)]
        level = " + ".join(f"({i} > 0)" for i in indexes)
        step_times = ", ".join(f"if({i} > 0, times[{i}], 0)" for i in indexes)
        values = ", ".join(f"if({i} > 0, {revenue_of.format(i=i)}, 0.)" for i in indexes)
    else:
        indexes = [f"i{k}" for k in range(2, n + 1)]
        level = " + ".join(["1", *(f"({i} > 0)" for i in indexes)])
        step_times = ", ".join(["t0", *(f"if({i} > 0, times[{i}], 0)" for i in indexes)])
        values = ", ".join(["opener.3", *(f"if({i} > 0, {revenue_of.format(i=i)}, 0.)"
                                          for i in indexes)])
    if last_touch and indexes:
        # the last step reached is the greatest index: the indexes only grow along the
        # chain, and in any order the last new step is the latest event found
        last = "greatest(" + ", ".join(indexes) + ")" if len(indexes) > 1 else indexes[0]
        if exclusions and order == "any":
            # the last step reached before the first voiding event (where the walk stops)
            last = (f"arrayMax(arrayFilter(i -> i > 0 AND (first_void = 0 OR i < first_void), "
                    f"[{', '.join(indexes)}]))")
        elif exclusions:
            # the walk stops at the first voiding event, at the lowest level voided: its
            # last step is that level's (the search's indexes go on past the void)
            levels = ", ".join(_voided_levels(n, p_window, strict))
            stopped_at = ("[0, " + ", ".join(f"i{k}" for k in range(2, n)) + "]"
                          f"[arrayFirstIndex(x -> x, [{levels}])]")
            last = f"if(excluded_here, {stopped_at}, {last})"
        breakdown = f"if({last} = 0, opener.4, events[{last}].breakdown_value)"
    else:
        breakdown = "opener.4"
    excluded = "excluded_here" if exclusions else "0"
    voided = (f"\n        {_voided(n, p_window, strict)} AS excluded_here," if exclusions
              else "")
    if exclusions and order == "any":
        voided = (f"\n        {_any_order_void(n, p_window)} AS first_void,"
                  "\n        first_void > 0 AS excluded_here,")
    ctes.append(Cte("walked", f"""\
    SELECT
        person_id,{voided}
        {breakdown} AS breakdown,  -- {"last" if last_touch else "first"}-touch
        {walked_columns(level, "t0", excluded, f"[{step_times}]", f"[{values}]")}
    FROM {"search_any" if order == "any" else f"search_{n}"}"""))
    return ctes


def held_walked_by_search(n: int, p_window: str, *, last_touch: bool,
                           strict: bool = False) -> list[Cte]:
    """Holding a property, over each person's step events in order (the walk's
    journeys): the opener is the first step-1 event that may start, and it holds its
    first offered value h0; step k is the first event of step k after step k-1's, within
    the window, that offers h0. In strict order the first event offering h0 of a step
    other than k-1 fills step k if it is step k, else ends the attempt (events offering
    other values are let pass, as in the walk). A step's revenue is that of its lines
    offering h0 (the opener's: its first line's), as in the walk."""
    ctes = [Cte("search_1", """\
    -- the opener is step 1: it opens the window at t0 and holds its first value, h0
    SELECT person_id, events,
        events.ts AS times, events.hits AS hits, events.holds AS holds,
        arrayEnumerate(times) AS js,
        arrayFirstIndex(e -> e.can_start = 1 AND bitTest(e.hits, 1), events) AS i1,
        times[i1] AS t0,
        holds[i1][1] AS h0
    FROM journeys
    WHERE i1 > 0""", note="""\
-- loose order holding a property: step k is the first event of step k after the
-- event of step k-1 that offers the opener's value, within the window it opens
""")]
    for k in range(2, n + 1):
        wanted = (f"bitAnd(h, bitNot(toUInt64({1 << (k - 1)}))) > 0" if strict
                  else f"bitTest(h, {k})")
        found = (f" AS c{k},\n        if(c{k} > 0 AND bitTest(hits[c{k}], {k}), c{k}, 0) AS i{k}"
                 if strict else f" AS i{k}")
        ctes.append(Cte(f"search_{k}", f"""\
    SELECT *,
        if(i{k - 1} = 0, 0, arrayFirstIndex((t, h, hs, j) -> j > i{k - 1} AND {wanted}
            AND has(hs, h0) AND t - t0 <= {p_window}, times, hits, holds, js)){found}
    FROM search_{k - 1}"""))
    indexes = [f"i{k}" for k in range(2, n + 1)]
    level = " + ".join(["1", *(f"({i} > 0)" for i in indexes)])
    step_times = ", ".join(["t0", *(f"if({i} > 0, times[{i}], 0)" for i in indexes)])
    held = "arraySum(arrayMap((h, r) -> if(h = h0, r, 0.), holds[{i}], events[{i}].revenues))"
    values = ", ".join(["events[i1].revenues[1]",
                        *(f"if({i} > 0, {held.format(i=i)}, 0.)" for i in indexes)])
    last = f"greatest(i1, {', '.join(indexes)})" if last_touch else "i1"
    ctes.append(Cte("walked", f"""\
    SELECT
        person_id,
        events[{last}].breakdown_value AS breakdown,  -- {"last" if last_touch else "first"}-touch
        {walked_columns(level, "t0", "0", f"[{step_times}]", f"[{values}]")}
    FROM search_{n}"""))
    return ctes


def _optional_search(n: int, p_window: str, nexts: list[int], *, packed: bool,
                     last_touch: bool, strict: bool = False, exclusions: bool = False
                     ) -> list[Cte]:
    """Optional steps, after search_1: search m finds index o{m}, the first event after
    o{m-1} (after the opener for m = 1) that may fill a step from level l{m-1}, and the
    level l{m} it reaches (the lowest step it may fill). A level that does not move ends
    the chain: o{m} = 0 and l{m} = l{m-1} from there on. In strict order the candidate
    c{m} is the first event of a step other than level l{m-1}'s: it fills if it may,
    else the attempt ends. With exclusions, an event voiding level l{m-1} after o{m-1}
    and before o{m} (in strict order up to and including a c{m} that ends the attempt)
    excludes the person."""
    masks = literal_masks(nexts)   # per level + 1: computed here, never user text
    lowest = "bitCount(bitXor({x}, {x} - 1)) - 1"   # the lowest bit set: a step number
    ctes = []
    voids = []
    for m in range(1, n):
        source = "search_1" if m == 1 else f"search_opt_{m - 1}"
        level = "1" if m == 1 else f"l{m - 1}"
        after = "(t > t0 OR (t = t0 AND tie > tie0))" if m == 1 else f"j > o{m - 1}"
        alive = "" if m == 1 else f"o{m - 1} = 0 OR l{m - 1} = {n}, 0, "
        wanted = (f"bitAnd(h, bitNot(bitShiftLeft(toUInt64(1), {level}))) > 0" if strict
                  else f"bitAnd(h, may{m}) > 0")
        found = (f" AS c{m},\n        if(bitAnd(hits[c{m}], may{m}) > 0, c{m}, 0) AS o{m}"
                 if strict else f" AS o{m}")
        hit = f"bitAnd(hits[o{m}], may{m})"
        ctes.append(Cte(f"search_opt_{m}", f"""\
    SELECT *,
        {masks}[{level} + 1] AS may{m},
        {"if(" if alive else ""}{alive}arrayFirstIndex((t, tie, h, j) -> {after}
            AND {wanted} AND t - t0 <= {p_window},
            times, ties, hits, js){")" if alive else ""}{found},
        if(o{m} = 0, {level}, {lowest.format(x=hit)}) AS l{m}
    FROM {source}"""))
        reached = "" if m == 1 else f"o{m - 1} > 0 AND "
        end = f"c{m}" if strict else f"o{m}"
        voids.append(f"({reached}{level} < {n} AND arrayExists((t, tie, v, j) -> {after}\n"
                     f"            AND ({end} = 0 OR j < {end} OR (j = {end} AND o{m} = 0))\n"
                     f"            AND bitTest(v, {level}) AND t - t0 <= {p_window}, "
                     f"times, ties, voids, js))")
    found_list = "[" + ", ".join(f"o{m}" for m in range(1, n)) + "]"
    levels = "[" + ", ".join(f"l{m}" for m in range(1, n)) + "]"
    revenue_of = _revenue_of(packed).format(i="i")
    # each level is reached once, by the first search that reached it
    by_step = (f"arrayMap(k -> if(indexOf({levels}, k) = 0, 0, "
               f"{found_list}[indexOf({levels}, k)]), range(2, {n + 1}))")
    last = f"arrayMax({found_list})"
    if exclusions and last_touch:
        # the walk stops at the first voiding event: its last step is the one before
        stopped_at = ("[0, " + ", ".join(f"o{m}" for m in range(1, n - 1)) + "]"
                      f"[arrayFirstIndex(x -> x, [{', '.join(voids)}])]")
        last = f"if(excluded_here, {stopped_at}, {last})"
    breakdown = (f"if({last} = 0, opener.4, events[{last}].breakdown_value)"
                 if last_touch else "opener.4")
    voided = ("\n        toUInt8(" + "\n          OR ".join(voids) + ") AS excluded_here,"
              if exclusions else "")
    ctes.append(Cte("walked", f"""\
    SELECT
        person_id,{voided}
        {breakdown} AS breakdown,  -- {"last" if last_touch else "first"}-touch
        {by_step} AS step_index,
        {walked_columns(
            f"l{n - 1}", "t0", "excluded_here" if exclusions else "0",
            "arrayConcat([t0], arrayMap(i -> if(i = 0, 0, times[i]), step_index))",
            f"arrayConcat([opener.3], arrayMap(i -> if(i = 0, 0., {revenue_of}), step_index))")}
    FROM search_opt_{n - 1}"""))
    return ctes


def _revenue_of(packed: bool) -> str:
    """The revenue of the event at index `{i}`: when packed, found by its key (the
    number's high bits) among the (key, revenue) pairs of the events that have one (0 if
    it is not there); else the tuple's own field."""
    return (f"arrayFirst(r -> r.1 = bitShiftRight(packed[{{i}}], {_PACKED_TIE_BITS}), "
            f"revenues_raw).2" if packed else "events[{i}].revenue")


def _any_order_void(n: int, p_window: str) -> str:
    """Any order: the index of the first event after the opener, within the window, that
    voids the level reached when it happens (the steps found before it) and fills no
    step of its own (filling wins); 0 if none. Once every step is done nothing voids."""
    found = "[" + ", ".join(f"i{k}" for k in range(1, n + 1)) + "]"
    level = " + ".join(f"(i{k} > 0 AND i{k} < j)" for k in range(1, n + 1))
    return (f"arrayFirstIndex((t, tie, v, j) -> (t > t0 OR (t = t0 AND tie > tie0))\n"
            f"            AND t - t0 <= {p_window} AND NOT has({found}, j)\n"
            f"            AND bitTest(v, {level}) AND ({level}) < {n}, times, ties, voids, js)")


def _voided(n: int, p_window: str, strict: bool = False) -> str:
    """Is there, for some level L reached, an event voiding L after L's event and before
    step L+1's (or within the window when L+1 was not reached)? In strict order the
    attempt also ends at the first step event after L's that is not step L+1 (c{L+1}):
    an event voiding L up to and including that one excludes (voiding comes before
    stopping in the walk), none after it."""
    levels = _voided_levels(n, p_window, strict)
    return "toUInt8(" + "\n          OR ".join(levels) + ")" if levels else "0"


def _voided_levels(n: int, p_window: str, strict: bool = False) -> list[str]:
    """Per level L = 1..n-1, is L voided (see _voided)? Level 1's event is the opener,
    which is not in the array: after it means after (t0, tie0)."""
    levels = []
    for level in range(1, n):
        after = "(t > t0 OR (t = t0 AND tie > tie0))" if level == 1 else f"j > i{level}"
        before = (f"(c{level + 1} = 0 OR j < c{level + 1} OR (j = c{level + 1} AND "
                  f"i{level + 1} = 0))" if strict else f"(i{level + 1} = 0 OR j < i{level + 1})")
        reached = "" if level == 1 else f"i{level} > 0 AND "
        levels.append(f"({reached}arrayExists((t, tie, v, j) -> {after} AND {before}\n"
                      f"            AND bitTest(v, {level}) AND t - t0 <= {p_window}, "
                      f"times, ties, voids, js))")
    return levels


def mask(bits: Iterable[int]) -> int:
    """An integer with the given bits set (step k is bit k)."""
    return sum(1 << b for b in set(bits))


def literal_masks(masks: list[int]) -> str:
    return "[" + ", ".join(f"toUInt64({m})" for m in masks) + "]"
