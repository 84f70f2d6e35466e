"""Campaign and referrer → UTM fields, ad click id, and a classified traffic source/medium.

UTM fields come from the event's `context.campaign` (source, medium, name, term,
content) when it has any, else from the page URL's query (`utm_*`). They are stored as
given; the classified `traffic_source` / `traffic_medium` are lowercased so they group.
Ad click ids (gclid, msclkid, …) are read from the page URL query (and from
`context.campaign` if an SDK put them there).

Classification — the first rule that matches decides (source, medium):

| signal                                                 | medium    | source              |
|--------------------------------------------------------|-----------|---------------------|
| ad click id: gclid gbraid wbraid dclid msclkid ttclid  | paid      | utm_source, else    |
|   li_fat_id twclid yclid sccid epik rdt_cid            |           | the ad network      |
| utm_medium cpc ppc paid* display cpm banner …          | paid      | utm_source          |
|   (`_PAID_MEDIA`, includes paid_social)                |           |                     |
| utm_medium email e-mail newsletter … (`_EMAIL_MEDIA`)  | email     | utm_source          |
| utm_medium social social-network sm … (`_SOCIAL_MEDIA`)| social    | utm_source          |
| utm_medium organic                                     | search    | utm_source          |
| any other utm_medium                                   | it, lower | utm_source          |
| utm_* present but no utm_medium                        | (not set) | utm_source          |
| fbclid alone (Facebook adds it to *every* outbound     | social    | referring network,  |
|   link, ad or not, so it does not mean paid)           |           | else facebook       |
| no referrer, or the referrer is one of our own hosts   | direct    | (direct)            |
| webmail referrer (mail.google.com, outlook.live.com …) | email     | referrer host       |
| search engine referrer (google.*, bing, duckduckgo,    | search    | engine name         |
|   yahoo, baidu, yandex, naver, daum, ecosia …)         |           |                     |
| social referrer (facebook, instagram, t.co, x.com,     | social    | network name        |
|   linkedin, youtube, tiktok, pinterest, reddit, kakao) |           |                     |
| any other referrer                                     | referral  | referrer host       |

A missing utm_source falls back to the referrer's source, else "(not set)".
Our own hosts are `own_hosts` plus the page URL's host, each with its subdomains.
The referrer host is lowercased, without "www." and port. Malformed URLs never raise;
they just yield no host or no query.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote_plus

__all__ = ["TrafficInfo", "classify_traffic"]


class TrafficInfo(NamedTuple):
    """Immutable; a NamedTuple because a frozen dataclass costs ~1 µs per construction."""

    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_term: str
    utm_content: str
    click_id: str
    click_id_type: str
    referrer_host: str
    traffic_source: str
    traffic_medium: str


DIRECT = "(direct)"
NOT_SET = "(not set)"

# Click id parameter → the ad network it belongs to (in order of precedence).
_PAID_CLICK_IDS: dict[str, str] = {
    "gclid": "google",
    "gbraid": "google",
    "wbraid": "google",
    "dclid": "google",  # Display & Video 360 / Campaign Manager
    "msclkid": "bing",
    "ttclid": "tiktok",
    "li_fat_id": "linkedin",
    "twclid": "twitter",
    "yclid": "yandex",
    "sccid": "snapchat",
    "epik": "pinterest",
    "rdt_cid": "reddit",
}
_CLICK_ID_KEYS = (*_PAID_CLICK_IDS, "fbclid")

# fmt: off
_PAID_MEDIA = frozenset(
    {
        "cpc", "ppc", "cpm", "cpv", "cpa", "cpp", "paid", "display", "banner", "retargeting",
        "remarketing", "paidsearch", "paid_search", "paid-search", "paidsocial",
        "paid_social", "paid-social", "sem", "ad", "ads",
    }
)
_EMAIL_MEDIA = frozenset({"email", "e-mail", "e_mail", "mail", "newsletter", "edm"})
_SOCIAL_MEDIA = frozenset(
    {
        "social", "social-network", "social_network", "social-media", "social_media",
        "socialnetwork", "socialmedia", "sm", "social network", "social media",
    }
)

_UTM_PARAMS = {
    "utm_source": 0, "utm_medium": 1, "utm_campaign": 2, "utm_term": 3, "utm_content": 4,
}
_CAMPAIGN_KEYS = ("source", "medium", "name", "term", "content")
# Most page URLs carry neither: skip parsing their query at all.
_QUERY_MARKERS = re.compile(r"utm_|clid|clkid|braid|li_fat_id|sccid|epik|rdt_cid", re.IGNORECASE)

# Referrer classification. Hosts are matched on their "brand" label (google in
# www.google.co.uk) or, for short link domains, on the whole registrable name (t.co).
_SEARCH_ENGINES: dict[str, str] = {
    name: name
    for name in (
        "google", "bing", "duckduckgo", "yahoo", "baidu", "yandex", "naver", "daum",
        "ecosia", "startpage", "qwant", "seznam", "sogou", "brave", "kagi", "perplexity",
    )
} | {
    "ya.ru": "yandex", "so.com": "360", "search.aol.com": "aol",
    # Android apps send `android-app://<package>` as the referrer.
    "com.google.android.googlequicksearchbox": "google",
}
_SOCIAL_NETWORKS: dict[str, str] = {
    name: name
    for name in (
        "facebook", "instagram", "twitter", "linkedin", "youtube", "tiktok", "pinterest",
        "reddit", "kakao", "snapchat", "threads", "tumblr", "vk", "weibo", "telegram",
        "whatsapp", "discord", "quora", "mastodon", "bsky",
    )
} | {
    "fb": "facebook", "m.me": "facebook", "t.co": "twitter", "x.com": "twitter",
    "lnkd.in": "linkedin", "youtu.be": "youtube", "t.me": "telegram", "wa.me": "whatsapp",
    "pin.it": "pinterest", "redd.it": "reddit", "line.me": "line", "band.us": "band",
    "com.linkedin.android": "linkedin",
}
_WEBMAIL_HOSTS = frozenset(
    {
        "mail.google.com", "outlook.live.com", "outlook.office.com", "outlook.office365.com",
        "mail.yahoo.com", "mail.yandex.ru", "mail.naver.com", "mail.daum.net", "mail.aol.com",
        "mail.proton.me", "webmail.gmx.net", "mail.zoho.com", "com.google.android.gm",
    }
)
# fmt: on
# Second-level labels that are part of a country suffix (co.uk, com.br, ne.jp …).
_GENERIC_SLDS = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "ne", "or", "go"})


def classify_traffic(
    page_url: str,
    referrer: str,
    campaign: dict[str, str] | None,
    own_hosts: frozenset[str] = frozenset(),
) -> TrafficInfo:
    """UTM fields, click id and classified source/medium of one event."""
    utm = ["", "", "", "", ""]
    click_id = click_id_type = ""

    if campaign and isinstance(campaign, dict):
        for i, key in enumerate(_CAMPAIGN_KEYS):
            value = campaign.get(key)
            if value:
                utm[i] = str(value).strip()
        for key in _CLICK_ID_KEYS:
            value = campaign.get(key)
            if value:
                click_id, click_id_type = str(value).strip(), key
                break
    from_campaign = any(utm)

    query = _query(page_url)
    if query and _QUERY_MARKERS.search(query):
        found = _wanted_params(query)
        if not from_campaign:
            for key, i in _UTM_PARAMS.items():
                utm[i] = found.get(key, "")
        if not click_id:
            for key in _CLICK_ID_KEYS:
                if key in found:
                    click_id, click_id_type = found[key], key
                    break

    referrer_host = _host(referrer)
    if referrer_host and _is_own(referrer_host, own_hosts, page_url):
        ref_source, ref_medium = DIRECT, "direct"
    elif referrer_host:
        ref_source, ref_medium = _classify_host(referrer_host)
    else:
        ref_source, ref_medium = DIRECT, "direct"

    source, medium = _classify(
        utm[0].lower(), utm[1].lower(), any(utm), click_id_type, ref_source, ref_medium
    )
    return TrafficInfo(
        utm_source=utm[0],
        utm_medium=utm[1],
        utm_campaign=utm[2],
        utm_term=utm[3],
        utm_content=utm[4],
        click_id=click_id,
        click_id_type=click_id_type,
        referrer_host=referrer_host,
        traffic_source=source,
        traffic_medium=medium,
    )


def _classify(
    utm_source: str,
    utm_medium: str,
    has_utm: bool,
    click_id_type: str,
    ref_source: str,
    ref_medium: str,
) -> tuple[str, str]:
    # A referrer that classified as direct names no source for a tagged visit.
    fallback = ref_source if ref_medium != "direct" else NOT_SET
    if click_id_type in _PAID_CLICK_IDS:
        return utm_source or _PAID_CLICK_IDS[click_id_type], "paid"
    if utm_medium:
        source = utm_source or fallback
        if utm_medium in _PAID_MEDIA or utm_medium.startswith("paid"):
            return source, "paid"
        if utm_medium in _EMAIL_MEDIA:
            return source, "email"
        if utm_medium in _SOCIAL_MEDIA:
            return source, "social"
        if utm_medium == "organic":
            return source, "search"
        return source, utm_medium
    if has_utm:
        return utm_source or fallback, NOT_SET
    if click_id_type == "fbclid":
        return (ref_source if ref_medium == "social" else "facebook"), "social"
    return ref_source, ref_medium


_WANTED_PARAMS = frozenset((*_UTM_PARAMS, *_CLICK_ID_KEYS))


def _wanted_params(query: str) -> dict[str, str]:
    """The UTM and click id parameters of a query string, decoded; first one wins.

    Only the wanted values are percent-decoded (undecodable bytes become U+FFFD), which
    is most of the saving over parse_qsl on long queries.
    """
    found: dict[str, str] = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        key = key.lower()
        if value and key in _WANTED_PARAMS and key not in found:
            if "%" in value or "+" in value:
                value = unquote_plus(value)
            value = value.strip()
            if value:
                found[key] = value
    return found


def _query(url: str) -> str:
    if not url or url.__class__ is not str:
        return ""
    start = url.find("?")
    if start < 0:
        return ""
    end = url.find("#", start)
    return url[start + 1 :] if end < 0 else url[start + 1 : end]


@lru_cache(maxsize=4096)
def _host(url: str) -> str:
    """Lowercased host of a URL without "www." and port; "" when there is none."""
    if not url or url.__class__ is not str:
        return ""
    scheme_end = url.find("://")
    rest = url[scheme_end + 3 :] if scheme_end >= 0 else url
    if scheme_end < 0 and (rest.startswith("/") or ":" in rest.split("/", 1)[0]):
        return ""  # a path, or an opaque URI such as mailto: — no host
    for sep in "/?#\\":
        cut = rest.find(sep)
        if cut >= 0:
            rest = rest[:cut]
    rest = rest.rpartition("@")[2]
    if rest.startswith("["):  # IPv6 literal
        host = rest[1 : rest.find("]")] if "]" in rest else ""
    else:
        host = rest.partition(":")[0]
    host = host.strip().rstrip(".").lower()
    if host.startswith("www."):
        host = host[4:]
    if not host or any(c in host for c in " \t\r\n\"'<>"):
        return ""
    return host


def _is_own(host: str, own_hosts: frozenset[str], page_url: str) -> bool:
    page_host = _host(page_url)
    if host == page_host:
        return True
    for own in own_hosts:
        own = own.lower().removeprefix("www.")
        if host == own or host.endswith("." + own):
            return True
    return bool(page_host) and host.endswith("." + page_host)


@lru_cache(maxsize=4096)
def _classify_host(host: str) -> tuple[str, str]:
    """(source, medium) of an external referrer host."""
    if host in _WEBMAIL_HOSTS:
        return host, "email"
    labels = host.split(".")
    for key in (host, ".".join(labels[-2:])):
        if key in _SEARCH_ENGINES:
            return _SEARCH_ENGINES[key], "search"
        if key in _SOCIAL_NETWORKS:
            return _SOCIAL_NETWORKS[key], "social"
    brand = _brand_label(labels)
    if brand in _SEARCH_ENGINES:
        return _SEARCH_ENGINES[brand], "search"
    if brand in _SOCIAL_NETWORKS:
        return _SOCIAL_NETWORKS[brand], "social"
    return host, "referral"


def _brand_label(labels: list[str]) -> str:
    # google.co.uk → google, m.facebook.com → facebook, search.naver.com → naver.
    if len(labels) < 2:
        return labels[0]
    if len(labels) >= 3 and labels[-2] in _GENERIC_SLDS and len(labels[-1]) == 2:
        return labels[-3]
    return labels[-2]
