"""Events from the tools a team already uses: install postbacks from mobile measurement
partners (AppsFlyer-style) and push-click webhooks from push providers (OneSignal-style),
mapped to `app_install` and `push_open` and ingested like any other event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from funnelhouse.collector.app import Collector


def partner_routes(collector: Collector) -> list[BaseRoute]:
    return []
