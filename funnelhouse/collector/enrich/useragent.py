"""User agent → device type, brand, model, OS, browser and a bot flag (LRU-cached).

Parsing is done by `ua-parser` (the uap-core rules), with its Rust resolver
(`ua-parser-rs`, pulled in by `ua-parser[regex]`) when installed, else its pure-Python
one. The library names families; the two things it does not decide are ours:

Bot — any of:
  - the library's device family is "Spider" (uap-core's crawler list);
  - the string contains a crawler or automation marker (`_BOT_MARKERS`): "bot" (but not
    the phone brand Cubot), crawl, spider, slurp, headless (HeadlessChrome), PhantomJS,
    Lighthouse …;
  - it starts like a plain HTTP client (`_BOT_PREFIXES`: curl, wget, python-requests,
    Go-http-client …), which no person browses with.

Device type — first rule that holds:
  bot     → "bot"
  other   → TVs, set-top boxes and consoles (`_TV_MARKERS`; an Android TV would otherwise
            look like a tablet, an Xbox like Windows)
  tablet  → iPad, Kindle/Silk, "Tablet" in the string, uap-core's generic tablet brand, or a
            browser on Android without the "Mobile" token (Android tablets drop it, per
            Google's UA guidance)
  mobile  → "Mobi" in the string (MDN's advice), iPhone/iPod, Android, Windows Phone, iOS
  desktop → Windows, macOS, Linux distributions, Chrome OS, BSDs
  other   → everything else (TVs, consoles, unknown)

Unknown names are "" (the warehouse columns are non-nullable strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import ua_parser

__all__ = ["UserAgentInfo", "parse_user_agent"]


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    device_type: str  # desktop | mobile | tablet | bot | other
    device_brand: str
    device_model: str
    os_name: str
    os_version: str
    browser_name: str
    browser_version: str
    is_bot: bool


UNKNOWN = UserAgentInfo("other", "", "", "", "", "", "", False)

# Longer strings are junk or attacks; parsing (and caching) only a prefix bounds both cost
# and cache memory. Every real user agent fits.
_MAX_UA_LENGTH = 512

# fmt: off
# Markers are plain substrings of the lowercased string: `in` on a str is C-fast, where
# one regex alternation scanned at every position cost more than the parse itself.
_BOT_MARKERS = (
    "bot", "crawl", "spider", "slurp", "headless", "phantomjs", "lighthouse",
    "facebookexternalhit", "ia_archiver", "mediapartners-google",
)
_BOT_PREFIXES = (
    "curl/", "wget/", "python-", "go-http-client", "java/", "libwww-perl", "scrapy",
    "aiohttp", "node-fetch", "axios/",
)
_NOT_BOT = ("cubot",)  # a phone brand
_TV_MARKERS = (
    "smarttv", "smart-tv", "googletv", "android tv", "bravia", "appletv", "crkey", "hbbtv",
    "web0s", "webos.tv", "playstation", "xbox", "nintendo",
)
_FIRE_TV = re.compile(r"\bAFT[A-Z0-9]{1,6}\b")  # Amazon Fire TV models: AFTMM, AFTS …
_TABLET_MARKERS = ("ipad", "tablet", "kindle", "silk/", "playbook")
_MOBILE_MARKERS = ("mobi", "iphone", "ipod", "android", "windows phone")
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS"})
_DESKTOP_OS = frozenset(
    {
        "Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "Debian",
        "Red Hat", "openSUSE", "Mint", "Arch Linux", "FreeBSD", "OpenBSD", "NetBSD",
        "Gentoo", "Slackware", "Mandriva", "CentOS",
    }
)
# uap-core's placeholders: not a brand or model anyone would group by.
_NOT_A_NAME = frozenset(
    {"Other", "Generic", "Generic_Android", "Generic_Android_Tablet", "Generic_Inettv",
     "Spider", "Desktop"}
)
# fmt: on

_parser: ua_parser.Parser | None = None


def _get_parser() -> ua_parser.Parser:
    # Built on first use (~0.2 s to compile the rules), without the library's own cache:
    # ours below caches the finished UserAgentInfo instead.
    global _parser
    if _parser is None:
        if ua_parser.RegexResolver is not None:
            resolver = ua_parser.RegexResolver(ua_parser.load_lazy_builtins())
        else:
            resolver = ua_parser.BasicResolver(ua_parser.load_builtins())
        _parser = ua_parser.Parser(resolver)
    return _parser


def parse_user_agent(ua: str) -> UserAgentInfo:
    """Device, OS, browser and bot flag of one user agent string."""
    if not ua or ua.__class__ is not str:
        return UNKNOWN
    if len(ua) > _MAX_UA_LENGTH:
        ua = ua[:_MAX_UA_LENGTH]
    return _parse_cached(ua)


@lru_cache(maxsize=10_000)
def _parse_cached(ua: str) -> UserAgentInfo:
    ua = ua.strip()
    if not ua:
        return UNKNOWN
    result = _get_parser().parse(ua)
    browser, os, device = result.user_agent, result.os, result.device

    browser_name = _name(browser.family) if browser else ""
    os_name = _name(os.family) if os else ""
    device_family = device.family if device else ""
    raw_brand = device.brand if device and device.brand else ""
    lower = ua.lower()
    is_bot = device_family == "Spider" or _is_bot(lower)

    if is_bot:
        device_type = "bot"
    elif _has_any(lower, _TV_MARKERS) or ("AFT" in ua and _FIRE_TV.search(ua)):
        device_type = "other"
    elif (
        _has_any(lower, _TABLET_MARKERS)
        or raw_brand == "Generic_Android_Tablet"
        or (os_name == "Android" and ua.startswith("Mozilla/") and "Mobile" not in ua)
    ):
        device_type = "tablet"
    elif _has_any(lower, _MOBILE_MARKERS) or os_name in _MOBILE_OS:
        device_type = "mobile"
    elif os_name in _DESKTOP_OS:
        device_type = "desktop"
    else:
        device_type = "other"

    return UserAgentInfo(
        device_type=device_type,
        device_brand=_name(raw_brand),
        device_model=_name(device.model) if device and device.model else "",
        os_name=os_name,
        os_version=_version(os) if os else "",
        browser_name=browser_name,
        browser_version=_version(browser) if browser else "",
        is_bot=is_bot,
    )


def _has_any(text: str, markers: tuple[str, ...]) -> bool:
    for marker in markers:  # a plain loop: any() over a generator costs 2x here
        if marker in text:
            return True
    return False


def _is_bot(lower: str) -> bool:
    if lower.startswith(_BOT_PREFIXES):
        return True
    for brand in _NOT_BOT:
        if brand in lower:
            lower = lower.replace(brand, "")
    return _has_any(lower, _BOT_MARKERS)


def _name(value: str | None) -> str:
    return "" if not value or value in _NOT_A_NAME else value


def _version(part: ua_parser.UserAgent | ua_parser.OS) -> str:
    return ".".join(
        v for v in (part.major, part.minor, part.patch, part.patch_minor) if v is not None
    )
