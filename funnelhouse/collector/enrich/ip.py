"""Client IP: which address to believe (X-Forwarded-For), and how much of it to keep.

Policies (`WriteKey.ip_policy`):
  truncate  IPv4 keeps its /24 (last octet zeroed), IPv6 its /48 — roughly a neighbourhood
            or a customer site, enough for coarse geography, not a person's line.
  hash      a 16-hex-digit keyed BLAKE2b of the address: joins events of one address
            without storing it. The salt is the key (longer than 64 bytes: hashed first).
  drop      "".
  keep      the address as given.
An invalid address gives "" under every policy, and so does an unknown policy: when in
doubt about personal data, store none. IPv4-mapped IPv6 (`::ffff:1.2.3.4`, as dual-stack
sockets report IPv4 peers) is treated as the IPv4 address.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from functools import lru_cache

__all__ = ["anonymise_ip", "client_ip"]

_ip_address = ipaddress.ip_address
_IPv6 = ipaddress.IPv6Address


def anonymise_ip(ip: str, policy: str, salt: bytes = b"") -> str:
    """The address as the write key's policy allows it to be stored."""
    if policy == "drop" or not ip:
        return ""
    # Events of one client come in runs, so most calls are cache hits.
    return _anonymise(ip, policy, salt)


@lru_cache(maxsize=8192)
def _anonymise(ip: str, policy: str, salt: bytes) -> str:
    text = ip.strip()
    if _ipv4_int(text) is not None:  # plain IPv4 without ipaddress: ~5x cheaper
        if policy == "keep":
            return text
        if policy == "truncate":
            return text.rpartition(".")[0] + ".0"
    address = _parse(text)
    if address is None:
        return ""
    if policy == "keep":
        return text
    if policy == "truncate":
        if address.version == 4:
            return str(ipaddress.IPv4Address(int(address) & 0xFFFF_FF00))
        return str(_IPv6(int(address) & ~((1 << 80) - 1)))
    if policy == "hash":
        key = salt if len(salt) <= 64 else hashlib.blake2b(salt).digest()
        return hashlib.blake2b(address.packed, digest_size=8, key=key).hexdigest()
    return ""


def _ipv4_int(text: str) -> int | None:
    """Dotted-quad IPv4 as an int, by ipaddress's rules (no leading zeros); else None."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()):
            return None
        if part[0] == "0" and len(part) > 1:
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _is_ip(text: str) -> bool:
    return _ipv4_int(text) is not None or _parse(text) is not None


def _parse(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = _ip_address(ip.strip())
    except (ValueError, TypeError, AttributeError):
        return None
    if address.__class__ is _IPv6:
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:  # fe80::1%eth0: the zone is local detail, not the address
            address = _IPv6(address.packed)
    return address


def client_ip(peer: str, forwarded_for: str | None, is_trusted: Callable[[str], bool]) -> str:
    """The client's address: the peer, or what trusted proxies say in X-Forwarded-For.

    X-Forwarded-For is believed only when the peer is a trusted proxy. Each proxy appends
    the address it saw, so the list is read right to left, skipping trusted proxies; the
    first untrusted address is the client (entries left of it are whatever the client
    chose to send). An unreadable entry ends the walk at the last trusted hop.
    Several X-Forwarded-For headers should be joined with "," before calling.
    """
    if not forwarded_for or not is_trusted(peer):
        return peer
    hop = peer
    for entry in reversed(forwarded_for.split(",")):
        address = _strip_port(entry.strip())
        if not address:
            continue  # "a,,b" or a trailing comma: nothing was said there
        if not _is_ip(address):
            return hop
        if not is_trusted(address):
            return address
        hop = address
    return hop


def _strip_port(entry: str) -> str:
    # Proxies may write "1.2.3.4:5678" or "[2001:db8::1]:443"; a bare IPv6 has 2+ colons.
    if entry.startswith("["):
        end = entry.find("]")
        return entry[1:end] if end > 0 else ""
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry
