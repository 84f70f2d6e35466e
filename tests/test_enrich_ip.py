"""Client IP: X-Forwarded-For trust and the anonymisation policies."""

import ipaddress

import pytest

from funnelhouse.collector.enrich.ip import anonymise_ip, client_ip

PROXIES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "fd00::/8")]


def is_trusted(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in PROXIES)


# --- anonymise_ip ----------------------------------------------------------------------


def test_truncate_zeroes_the_last_ipv4_octet():
    assert anonymise_ip("203.0.113.77", "truncate") == "203.0.113.0"


def test_truncate_keeps_the_ipv6_slash_48():
    assert anonymise_ip("2001:db8:abcd:12:34::1", "truncate") == "2001:db8:abcd::"
    assert anonymise_ip("2001:DB8:ABCD:FFFF:FFFF:FFFF:FFFF:FFFF", "truncate") == ("2001:db8:abcd::")


def test_ipv4_mapped_ipv6_is_treated_as_ipv4():
    assert anonymise_ip("::ffff:203.0.113.77", "truncate") == "203.0.113.0"
    assert anonymise_ip("::ffff:203.0.113.77", "hash", b"s") == anonymise_ip(
        "203.0.113.77", "hash", b"s"
    )


def test_hash_is_short_stable_and_keyed():
    first = anonymise_ip("203.0.113.77", "hash", b"salt-a")
    assert len(first) == 16
    int(first, 16)  # hex
    assert anonymise_ip("203.0.113.77", "hash", b"salt-a") == first
    assert anonymise_ip("203.0.113.78", "hash", b"salt-a") != first
    assert anonymise_ip("203.0.113.77", "hash", b"salt-b") != first


def test_hash_does_not_depend_on_how_ipv6_is_spelled():
    assert anonymise_ip("2001:db8::1", "hash", b"k") == anonymise_ip(
        "2001:0DB8:0000::0001", "hash", b"k"
    )


def test_hash_accepts_a_long_salt():
    assert len(anonymise_ip("203.0.113.77", "hash", b"x" * 200)) == 16


def test_drop_stores_nothing_and_keep_stores_as_is():
    assert anonymise_ip("203.0.113.77", "drop") == ""
    assert anonymise_ip("203.0.113.77", "keep") == "203.0.113.77"
    assert anonymise_ip("2001:db8::1", "keep") == "2001:db8::1"


@pytest.mark.parametrize(
    "ip",
    [
        "",
        "unknown",
        "300.1.2.3",
        "1.2.3",
        "01.2.3.4",
        "1.2.3.4:80",
        "2001:db8::g",
        "1.2.3.4 5.6.7.8",
    ],
)
@pytest.mark.parametrize("policy", ["truncate", "hash", "drop", "keep"])
def test_invalid_ip_is_empty_under_every_policy(ip, policy):
    assert anonymise_ip(ip, policy, b"k") == ""


def test_unknown_policy_stores_nothing():
    assert anonymise_ip("203.0.113.77", "mask") == ""


# --- client_ip -------------------------------------------------------------------------


def test_no_forwarded_for_means_the_peer():
    assert client_ip("203.0.113.5", None, is_trusted) == "203.0.113.5"
    assert client_ip("10.0.0.2", "", is_trusted) == "10.0.0.2"


def test_xff_ignored_from_untrusted_peer():
    assert client_ip("203.0.113.5", "198.51.100.7", is_trusted) == "203.0.113.5"


def test_xff_from_trusted_proxy_names_the_client():
    assert client_ip("10.0.0.2", "198.51.100.7", is_trusted) == "198.51.100.7"


def test_chain_of_proxies_is_walked_right_to_left():
    xff = "198.51.100.7, 10.1.1.1, 10.2.2.2"
    assert client_ip("10.0.0.2", xff, is_trusted) == "198.51.100.7"


def test_client_cannot_spoof_by_prepending_addresses():
    # The client sent "1.1.1.1"; our proxy appended the address it really saw.
    xff = "1.1.1.1, 198.51.100.7"
    assert client_ip("10.0.0.2", xff, is_trusted) == "198.51.100.7"


def test_all_trusted_chain_gives_the_leftmost():
    assert client_ip("10.0.0.2", "10.9.9.9, 10.1.1.1", is_trusted) == "10.9.9.9"


def test_ports_brackets_and_ipv6_entries_are_understood():
    assert client_ip("10.0.0.2", "198.51.100.7:54321", is_trusted) == "198.51.100.7"
    assert client_ip("10.0.0.2", "[2001:db8::1]:443", is_trusted) == "2001:db8::1"
    assert client_ip("fd00::1", "2001:db8::1, fd00::2", is_trusted) == "2001:db8::1"


def test_garbage_entry_stops_at_the_last_trusted_hop():
    assert client_ip("10.0.0.2", "198.51.100.7, unknown, 10.1.1.1", is_trusted) == "10.1.1.1"
    assert client_ip("10.0.0.2", "not-an-ip", is_trusted) == "10.0.0.2"


def test_empty_entries_are_skipped():
    assert client_ip("10.0.0.2", "198.51.100.7, , ", is_trusted) == "198.51.100.7"


def test_fast_ipv4_path_agrees_with_ipaddress():
    import random

    rng = random.Random(7)
    samples = ["0.0.0.0", "255.255.255.255", "1.2.3.04", "1.2.3.256", "1..2.3", "1.2.3.4.",
               "١.2.3.4", "+1.2.3.4", "1.2.3.-4", " 1.2.3.4"]  # fmt: skip
    for _ in range(2000):
        parts = [rng.choice(["0", "00", "7", "08", "99", "255", "256", "1000", ""])
                 for _ in range(rng.choice([3, 4, 4, 4, 5]))]  # fmt: skip
        samples.append(".".join(parts))
    for text in samples:
        try:
            expected = str(ipaddress.ip_network(text.strip() + "/24", strict=False).network_address)
        except ValueError:
            expected = ""
        assert anonymise_ip(text, "truncate") == expected, text
