"""User agent parsing: device type rules, bot detection, and the LRU cache."""

import dataclasses

import pytest

from funnelhouse.collector.enrich.useragent import UserAgentInfo, _parse_cached, parse_user_agent

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)
SAMSUNG_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"
)
SAMSUNG_TAB = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.6367.201 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)
CURL = "curl/8.5.0"
CUBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
ANDROID_TV = (
    "Mozilla/5.0 (Linux; Android 9; SHIELD Android TV Build/PPR1.180610.011) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
KINDLE_FIRE = (
    "Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Silk/124.2.1 like Chrome/124.0.6367.118 Safari/537.36"
)


def test_chrome_on_windows_is_desktop():
    info = parse_user_agent(CHROME_WINDOWS)
    assert info == UserAgentInfo(
        device_type="desktop",
        device_brand="",
        device_model="",
        os_name="Windows",
        os_version="10",
        browser_name="Chrome",
        browser_version="124.0.0.0",
        is_bot=False,
    )


def test_iphone_is_mobile_ipad_is_tablet():
    iphone = parse_user_agent(SAFARI_IPHONE)
    assert (iphone.device_type, iphone.device_brand, iphone.device_model) == (
        "mobile",
        "Apple",
        "iPhone",
    )
    assert (iphone.os_name, iphone.os_version) == ("iOS", "17.4")
    assert (iphone.browser_name, iphone.browser_version) == ("Mobile Safari", "17.4")

    ipad = parse_user_agent(SAFARI_IPAD)
    assert (ipad.device_type, ipad.device_model, ipad.os_version) == ("tablet", "iPad", "17.2")


def test_samsung_phone_is_mobile_with_brand_and_model():
    info = parse_user_agent(SAMSUNG_ANDROID)
    assert info.device_type == "mobile"
    assert (info.device_brand, info.device_model) == ("Samsung", "SM-S918B")
    assert (info.os_name, info.os_version) == ("Android", "14")
    assert info.browser_name == "Samsung Internet"
    assert not info.is_bot


def test_android_browser_without_mobile_token_is_tablet():
    assert parse_user_agent(SAMSUNG_TAB).device_type == "tablet"
    assert parse_user_agent(KINDLE_FIRE).device_type == "tablet"


def test_firefox_on_linux_and_safari_on_mac_are_desktop():
    firefox = parse_user_agent(FIREFOX_LINUX)
    assert (firefox.device_type, firefox.os_name) == ("desktop", "Ubuntu")
    assert (firefox.browser_name, firefox.browser_version) == ("Firefox", "125.0")
    mac = parse_user_agent(SAFARI_MAC)
    assert (mac.device_type, mac.os_name, mac.os_version) == ("desktop", "Mac OS X", "10.15.7")


@pytest.mark.parametrize("ua", [GOOGLEBOT, GOOGLEBOT_SMARTPHONE])
def test_googlebot_is_flagged(ua):
    info = parse_user_agent(ua)
    assert info.is_bot
    assert info.device_type == "bot"
    assert info.browser_name == "Googlebot"


def test_bingbot_is_flagged():
    info = parse_user_agent(BINGBOT)
    assert (info.is_bot, info.device_type, info.browser_name) == (True, "bot", "bingbot")


def test_headless_chrome_is_bot():
    info = parse_user_agent(HEADLESS_CHROME)
    assert (info.is_bot, info.device_type) == (True, "bot")
    assert info.browser_name == "HeadlessChrome"


@pytest.mark.parametrize(
    "ua", [CURL, "Wget/1.21.4", "python-requests/2.31.0", "Go-http-client/2.0", "Scrapy/2.11"]
)
def test_plain_http_clients_are_bots(ua):
    assert parse_user_agent(ua).is_bot


def test_cubot_phone_brand_is_not_a_bot():
    info = parse_user_agent(CUBOT_PHONE)
    assert (info.is_bot, info.device_type) == (False, "mobile")


def test_tv_is_other_not_tablet():
    assert parse_user_agent(ANDROID_TV).device_type == "other"


@pytest.mark.parametrize("ua", ["", "   "])
def test_empty_user_agent_is_other_and_not_bot(ua):
    info = parse_user_agent(ua)
    assert info.device_type == "other"
    assert info.is_bot is False
    assert info.browser_name == info.os_name == info.device_brand == ""


def test_unrecognised_string_has_no_placeholder_names():
    info = parse_user_agent("x")
    assert info.device_type == "other"
    assert "Other" not in dataclasses.astuple(info)


def test_result_is_frozen():
    info = parse_user_agent(CHROME_WINDOWS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.is_bot = True  # type: ignore[misc]


def test_repeated_user_agent_is_served_from_cache():
    ua = CHROME_WINDOWS.replace("124.0.0.0", "124.0.9.9")
    first = parse_user_agent(ua)
    hits = _parse_cached.cache_info().hits
    assert parse_user_agent(ua) is first
    assert _parse_cached.cache_info().hits == hits + 1


def test_huge_user_agent_is_parsed_by_its_prefix():
    info = parse_user_agent(SAFARI_IPHONE + " x" * 50_000)
    assert info.device_type == "mobile"
