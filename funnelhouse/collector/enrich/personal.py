"""Personal fields per source: named property/trait fields dropped or hashed at ingest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any


def scrub_fields(properties: dict[str, Any], traits: dict[str, Any], *,
                 hash_fields: Iterable[str] = (), drop_fields: Iterable[str] = (),
                 salt: bytes = b"") -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop or hash named fields of an event's properties and traits (dotted paths nest).

    Names are matched as the source sends them, e.g. ("email", "address.street").
    A hashed value is a keyed BLAKE2b of its trimmed text (lower-cased when it looks like
    an e-mail), so one address hashes alike across events without being stored.
    """
    drop, hashed = tuple(drop_fields), tuple(hash_fields)
    if not drop and not hashed:
        return properties, traits
    key = salt if len(salt) <= 64 else hashlib.blake2b(salt).digest()
    return (_scrub(properties, drop, hashed, key), _scrub(traits, drop, hashed, key))


def _scrub(doc: dict[str, Any], drop: tuple[str, ...], hashed: tuple[str, ...],
           key: bytes) -> dict[str, Any]:
    if not doc:
        return doc
    out = dict(doc)
    for path in drop:
        _apply(out, path.split("."), None, key)
    for path in hashed:
        _apply(out, path.split("."), "hash", key)
    return out


def _apply(doc: dict[str, Any], parts: list[str], action: str | None, key: bytes) -> None:
    head, rest = parts[0], parts[1:]
    if head not in doc:
        return
    if rest:
        if isinstance(doc[head], dict):
            doc[head] = dict(doc[head])
            _apply(doc[head], rest, action, key)
        return
    if action is None:
        del doc[head]
    elif doc[head] is not None:
        text = str(doc[head]).strip()
        if "@" in text:
            text = text.lower()
        doc[head] = hashlib.blake2b(text.encode(), digest_size=16, key=key).hexdigest()
