"""Campaign and referrer classification: UTM fields, click ids, source and medium."""

import pytest

from funnelhouse.collector.enrich.campaign import TrafficInfo, classify_traffic

PAGE = "https://shop.example/products/42"


def classify(page_url=PAGE, referrer="", campaign=None, own_hosts=frozenset()):
    return classify_traffic(page_url, referrer, campaign, own_hosts)


def source_medium(info: TrafficInfo) -> tuple[str, str]:
    return info.traffic_source, info.traffic_medium


def test_gclid_is_paid_search():
    info = classify(PAGE + "?gclid=Cj0KCQ", referrer="https://www.google.com/")
    assert (info.click_id, info.click_id_type) == ("Cj0KCQ", "gclid")
    assert source_medium(info) == ("google", "paid")


@pytest.mark.parametrize(
    ("param", "network"),
    [
        ("msclkid", "bing"),
        ("ttclid", "tiktok"),
        ("li_fat_id", "linkedin"),
        ("wbraid", "google"),
        ("gbraid", "google"),
        ("dclid", "google"),
    ],
)
def test_ad_click_ids_are_paid_from_their_network(param, network):
    info = classify(f"{PAGE}?{param}=xyz")
    assert (info.click_id, info.click_id_type) == ("xyz", param)
    assert source_medium(info) == (network, "paid")


def test_click_id_keeps_the_utm_source_when_tagged():
    info = classify(PAGE + "?utm_source=Google_Brand&utm_medium=cpc&gclid=abc")
    assert source_medium(info) == ("google_brand", "paid")
    assert info.utm_source == "Google_Brand"  # raw field as given


def test_fbclid_alone_is_social_not_paid():
    # Facebook appends fbclid to every outbound link, organic shares included.
    assert source_medium(classify(PAGE + "?fbclid=IwAR")) == ("facebook", "social")
    via_instagram = classify(PAGE + "?fbclid=IwAR", referrer="https://l.instagram.com/")
    assert source_medium(via_instagram) == ("instagram", "social")
    assert via_instagram.click_id_type == "fbclid"


def test_fbclid_with_paid_utm_medium_is_paid():
    info = classify(PAGE + "?utm_source=facebook&utm_medium=paid_social&fbclid=IwAR")
    assert source_medium(info) == ("facebook", "paid")


@pytest.mark.parametrize(
    "medium",
    ["cpc", "PPC", "paid", "paid_search", "paidsocial", "paid-video", "display", "cpm", "banner"],
)
def test_paid_utm_media_are_paid(medium):
    assert classify(f"{PAGE}?utm_source=x&utm_medium={medium}").traffic_medium == "paid"


@pytest.mark.parametrize("medium", ["email", "E-mail", "newsletter"])
def test_email_utm_media_are_email(medium):
    info = classify(f"{PAGE}?utm_source=Spring_News&utm_medium={medium}&utm_campaign=spring")
    assert source_medium(info) == ("spring_news", "email")
    assert info.utm_campaign == "spring"


@pytest.mark.parametrize("medium", ["social", "social-network", "Social_Media", "sm"])
def test_social_utm_media_are_social(medium):
    assert classify(f"{PAGE}?utm_source=fb&utm_medium={medium}").traffic_medium == "social"


def test_unknown_utm_medium_is_kept_lowercased():
    info = classify(PAGE + "?utm_source=Partner&utm_medium=Affiliate")
    assert (info.utm_medium, info.traffic_medium, info.traffic_source) == (
        "Affiliate",
        "affiliate",
        "partner",
    )


def test_utm_without_medium_is_not_set():
    info = classify(PAGE + "?utm_source=partner&utm_campaign=launch")
    assert source_medium(info) == ("partner", "(not set)")


def test_utm_medium_without_source_falls_back_to_referrer():
    info = classify(PAGE + "?utm_medium=social", referrer="https://www.linkedin.com/feed")
    assert source_medium(info) == ("linkedin", "social")
    assert source_medium(classify(PAGE + "?utm_medium=email")) == ("(not set)", "email")


def test_all_utm_fields_are_read_from_the_url_and_decoded():
    info = classify(
        PAGE + "?utm_source=news&utm_medium=email&utm_campaign=spring+sale"
        "&utm_term=red%20shoes&utm_content=hero#top"
    )
    assert (
        info.utm_source,
        info.utm_medium,
        info.utm_campaign,
        info.utm_term,
        info.utm_content,
    ) == ("news", "email", "spring sale", "red shoes", "hero")


def test_explicit_campaign_context_wins_over_the_url():
    info = classify(
        PAGE + "?utm_source=url&utm_medium=cpc",
        campaign={
            "source": "app",
            "medium": "push",
            "name": "winback",
            "term": "t",
            "content": "c",
        },
    )
    assert (
        info.utm_source,
        info.utm_medium,
        info.utm_campaign,
        info.utm_term,
        info.utm_content,
    ) == ("app", "push", "winback", "t", "c")
    assert source_medium(info) == ("app", "push")


def test_empty_campaign_context_falls_back_to_the_url():
    info = classify(PAGE + "?utm_source=url&utm_medium=cpc", campaign={})
    assert source_medium(info) == ("url", "paid")


@pytest.mark.parametrize(
    ("referrer", "engine"),
    [
        ("https://www.google.com/", "google"),
        ("https://www.google.co.uk/search?q=shoes", "google"),
        ("https://www.google.com.br/", "google"),
        ("https://www.bing.com/search?q=x", "bing"),
        ("https://duckduckgo.com/", "duckduckgo"),
        ("https://search.yahoo.co.jp/search?p=x", "yahoo"),
        ("https://www.baidu.com/link?url=x", "baidu"),
        ("https://yandex.ru/search/?text=x", "yandex"),
        ("https://search.naver.com/search.naver?query=x", "naver"),
        ("https://search.daum.net/search?q=x", "daum"),
        ("https://www.ecosia.org/search?q=x", "ecosia"),
        ("android-app://com.google.android.googlequicksearchbox", "google"),
    ],
)
def test_search_engine_referrer_is_search(referrer, engine):
    assert source_medium(classify(referrer=referrer)) == (engine, "search")


@pytest.mark.parametrize(
    ("referrer", "network"),
    [
        ("https://l.facebook.com/l.php?u=x", "facebook"),
        ("https://m.facebook.com/", "facebook"),
        ("https://www.instagram.com/", "instagram"),
        ("https://t.co/AbC123", "twitter"),
        ("https://x.com/someone/status/1", "twitter"),
        ("https://www.linkedin.com/", "linkedin"),
        ("https://lnkd.in/xyz", "linkedin"),
        ("https://www.youtube.com/watch?v=1", "youtube"),
        ("https://www.tiktok.com/", "tiktok"),
        ("https://www.pinterest.co.uk/", "pinterest"),
        ("https://old.reddit.com/r/x", "reddit"),
        ("https://story.kakao.com/", "kakao"),
    ],
)
def test_social_network_referrer_is_social(referrer, network):
    assert source_medium(classify(referrer=referrer)) == (network, "social")


def test_webmail_referrer_is_email_not_search():
    assert source_medium(classify(referrer="https://mail.google.com/mail/u/0/")) == (
        "mail.google.com",
        "email",
    )


def test_other_referrer_is_referral_by_host():
    info = classify(referrer="https://WWW.Blog.Example.org:8443/post?id=1")
    assert info.referrer_host == "blog.example.org"
    assert source_medium(info) == ("blog.example.org", "referral")


def test_own_host_referrer_is_direct():
    own = frozenset({"shop.example", "checkout.example.net"})
    for referrer in (
        "https://shop.example/cart",
        "https://www.shop.example/",
        "https://m.shop.example/",
        "https://checkout.example.net/pay",
    ):
        info = classify(referrer=referrer, own_hosts=own)
        assert source_medium(info) == ("(direct)", "direct"), referrer


def test_referrer_on_the_page_host_is_direct_without_configuration():
    info = classify(page_url="https://www.acme.test/b", referrer="https://acme.test/a")
    assert source_medium(info) == ("(direct)", "direct")


def test_no_referrer_and_no_utm_is_direct():
    info = classify()
    assert info == TrafficInfo("", "", "", "", "", "", "", "", "(direct)", "direct")


@pytest.mark.parametrize(
    ("page_url", "referrer"),
    [
        ("http://[::1", "http://[::1"),
        ("::::", "::::"),
        ("https://shop.example/?%zz=%%&utm_source&=x&&", "http://"),
        ("", "not a url at all"),
        ("https://shop.example/?utm_source=%ff%fe&utm_medium=%E2%82", "mailto:a@b.c"),
        ("https://shop.example/?" + "a=b&" * 5000 + "utm_medium=cpc", "/relative/path"),
    ],
)
def test_malformed_urls_do_not_raise(page_url, referrer):
    info = classify(page_url=page_url, referrer=referrer)
    assert isinstance(info, TrafficInfo)
    assert info.traffic_source and info.traffic_medium


def test_referrer_without_scheme_still_has_a_host():
    assert classify(referrer="news.ycombinator.com/item?id=1").referrer_host == (
        "news.ycombinator.com"
    )


def test_every_known_click_id_is_detected_in_the_url():
    from funnelhouse.collector.enrich.campaign import _CLICK_ID_KEYS

    for key in _CLICK_ID_KEYS:
        info = classify(f"{PAGE}?page=2&{key.upper()}=v1")
        assert (info.click_id, info.click_id_type) == ("v1", key)
