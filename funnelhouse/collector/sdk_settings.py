"""The settings documents browser SDKs fetch before they send anything.

Segment's analytics-next reads `{cdnURL}/v1/projects/{writeKey}/settings` and RudderStack's
analytics-js reads `{configUrl}/sourceConfig`; answered here, pointing the SDK at this
collector is the only change a site makes.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from funnelhouse.config import Settings


def sdk_settings_routes(settings: Settings) -> list[BaseRoute]:
    return []
