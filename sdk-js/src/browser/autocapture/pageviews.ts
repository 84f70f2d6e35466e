// Auto-capture of page views: on load, on single-page-app navigation, on return from the back-forward cache.

import type { Hub } from '../hub';

export function capturePageViews(hub: Hub): void {
  hub.onEnter(() => hub.analytics.page());
}
