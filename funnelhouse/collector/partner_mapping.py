"""Partner payloads → Segment-spec messages: AppsFlyer-style install postbacks become
`app_install`, OneSignal-style push clicks become `push_open`.

The messages then go through the collector like any other (plan validation, enrichment,
dead letters, dedup); nothing here refuses anything. A payload missing what a message
needs (no device or user id, a time that is not a time) is mapped as far as it goes and
the plan refuses it with its path, so it is dead-lettered with its payload, not lost.

Each message id is derived from the partner's own ids (the device, the event, its
time; the notification), so a postback the partner repeats is a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from funnelhouse.collector.timestamps import to_iso

__all__ = ["appsflyer_message", "is_organic", "onesignal_message", "field_names"]

APPSFLYER = "appsflyer"
ONESIGNAL = "onesignal"
INSTALL_EVENTS = ("install",)
PUSH_CLICK_EVENTS = ("notification.clicked",)
# Attributed to one of AppsFlyer's owned-media sources (OneLink), an install is not a
# paid one: its medium says which owned channel brought it. Any other source is paid.
OWNED_MEDIA = {"email": "email", "sms": "sms", "qr_code": "qr", "af_banner": "referral",
               "af_smart_banner": "referral", "af_app_invites": "referral",
               "af_cross_promotion": "referral"}
ORGANIC = ("", "organic", "(organic)", "none")
PAID = "paid"


def field_names(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Keys as one spelling: `install-time`, `Install_Time` and `install_time` are one field
    (postback templates write macros in several spellings); empty and null values dropped."""
    return {str(key).strip().lower().replace("-", "_"): value for key, value in doc.items()
            if value is not None and value != ""}


def is_organic(fields: Mapping[str, Any]) -> bool:
    """No media source, or one that says organic: such an install has no campaign touch."""
    if str(fields.get("af_status", "")).strip().lower() == "organic":
        return True
    return _text(fields.get("media_source")).lower() in ORGANIC


def appsflyer_message(doc: Mapping[str, Any], channel: str = "app") -> dict[str, Any]:
    """An AppsFlyer Push API / postback payload (JSON body or query) as one message.

    An install is `app_install` at its install time, its attribution in context.campaign
    (none for an organic install); any other event keeps the partner's name and its
    `event_value` as properties, and the plan decides about it like any unplanned event.
    """
    fields = field_names(doc)
    name = _text(fields.get("event_name") or fields.get("event_type"))
    device_id = _text(fields.get("appsflyer_id") or fields.get("appsflyer_device_id"))
    user_id = _text(fields.get("customer_user_id"))
    install = name.lower() in INSTALL_EVENTS
    happened = fields.get("install_time") if install else fields.get("event_time")
    happened = happened or fields.get("event_time") or fields.get("install_time")
    message: dict[str, Any] = {
        "type": "track",
        "event": "app_install" if install else name,
        "messageId": _message_id(APPSFLYER, fields.get("app_id"), device_id or user_id,
                                 name.lower(), to_iso(happened) or happened),
        "context": _appsflyer_context(fields, channel,
                                      attributed=install and not is_organic(fields)),
    }
    if install:
        message["properties"] = _install_properties(fields)
    else:
        message["properties"] = _event_value(fields.get("event_value"))
    _set_ids(message, anonymous_id=device_id, user_id=user_id)
    _set_time(message, happened)
    return message


def _install_properties(fields: Mapping[str, Any]) -> dict[str, Any]:
    organic = is_organic(fields)
    properties = {
        "partner": APPSFLYER,
        # The attribution fields of an organic install stay empty: nothing was credited.
        "network": "" if organic else _text(fields.get("media_source")),
        "campaign": "" if organic else _text(fields.get("campaign")),
        "adgroup": "" if organic else _text(fields.get("af_adset") or fields.get("adset")),
        "creative": "" if organic else _text(fields.get("af_ad") or fields.get("ad")),
        "version": _text(fields.get("app_version")),
        "store": _text(fields.get("install_app_store")),
        "install_time": to_iso(fields.get("install_time")) or "",
        "click_time": "" if organic else to_iso(
            fields.get("attributed_touch_time") or fields.get("click_time")) or "",
    }
    return {key: value for key, value in properties.items() if value}


def _appsflyer_context(fields: Mapping[str, Any], channel: str, *,
                       attributed: bool) -> dict[str, Any]:
    context: dict[str, Any] = {"channel": channel, "library": {"name": APPSFLYER}}
    if attributed:
        source = _text(fields.get("media_source"))
        campaign = {
            "source": source,
            "medium": OWNED_MEDIA.get(source.lower(), PAID),
            "name": _text(fields.get("campaign")),
            "content": _text(fields.get("af_ad") or fields.get("ad")),
            "term": _text(fields.get("af_keywords") or fields.get("keywords")),
        }
        context["campaign"] = {key: value for key, value in campaign.items() if value}
    device = {
        "id": _text(fields.get("idfv") or fields.get("android_id")),
        "advertising_id": _text(fields.get("advertising_id") or fields.get("idfa")
                                or fields.get("gaid")),
        "manufacturer": _text(fields.get("device_brand")),
        "model": _text(fields.get("device_model") or fields.get("device_type")),
    }
    os = {"name": _text(fields.get("platform")), "version": _text(fields.get("os_version"))}
    app = {"namespace": _text(fields.get("app_id")), "version": _text(fields.get("app_version")),
           "name": _text(fields.get("app_name"))}
    for name, part in (("device", device), ("os", os), ("app", app)):
        part = {key: value for key, value in part.items() if value}
        if part:
            context[name] = part
    for name, key in (("ip", "ip"), ("locale", "language")):
        if fields.get(key):
            context[name] = _text(fields[key])
    return context


def onesignal_message(doc: Mapping[str, Any], channel: str = "app") -> dict[str, Any]:
    """A OneSignal-style webhook as one message: a click is `push_open`; another event
    (willDisplay, dismissed) keeps the provider's name and the plan decides about it.
    `channel` is where the push was opened: "web" for web push, else "app"."""
    fields = field_names(doc)
    event = _text(fields.get("event"))
    notification_id = _text(fields.get("notificationid") or fields.get("notification_id")
                            or fields.get("id"))
    device_id = _text(fields.get("subscriptionid") or fields.get("subscription_id")
                      or fields.get("player_id") or fields.get("playerid")
                      or fields.get("userid"))
    user_id = _text(fields.get("externalid") or fields.get("external_id")
                    or fields.get("external_user_id") or fields.get("externaluserid"))
    extra = fields.get("additionaldata") or fields.get("additional_data")
    extra = extra if isinstance(extra, dict) else {}
    properties = {
        "push_id": notification_id,
        "title": _text(fields.get("heading") or fields.get("title")),
        "deep_link": _text(fields.get("url") or fields.get("launchurl")),
        "action": _text(fields.get("actionid") or fields.get("action_id")),
        "campaign_id": _text(extra.get("campaign_id")),
        "campaign_name": _text(extra.get("campaign_name")),
    }
    message: dict[str, Any] = {
        "type": "track",
        "event": "push_open" if event.lower() in PUSH_CLICK_EVENTS else event,
        "messageId": _message_id(ONESIGNAL, notification_id, device_id or user_id, event,
                                 None),
        "properties": {key: value for key, value in properties.items() if value},
        "context": {"channel": channel, "library": {"name": ONESIGNAL}},
    }
    _set_ids(message, anonymous_id=device_id, user_id=user_id)
    _set_time(message, fields.get("timestamp") or fields.get("time"))
    return message


def _set_ids(message: dict[str, Any], *, anonymous_id: str, user_id: str) -> None:
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    if user_id:
        message["userId"] = user_id


def _set_time(message: dict[str, Any], value: Any) -> None:
    """The partner's time in ISO-8601; kept as sent when it is none (the plan says why)."""
    if value is None or value == "":
        return  # the collector's receive time
    message["timestamp"] = to_iso(value) or value


def _message_id(partner: str, *parts: Any) -> str:
    """The same partner ids give the same message id, so a repeated postback dedups."""
    key = orjson.dumps([partner, *(_text(part) for part in parts)])
    return f"{partner}-{hashlib.blake2b(key, digest_size=16).hexdigest()}"


def _event_value(value: Any) -> dict[str, Any]:
    """AppsFlyer sends an in-app event's parameters as a JSON object inside a string."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {"event_value": value}
    if isinstance(value, dict):
        return value
    return {"event_value": value} if value not in (None, "") else {}


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return value.strip() if isinstance(value, str) else str(value)
