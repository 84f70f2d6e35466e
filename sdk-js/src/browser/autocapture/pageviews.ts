// Auto-capture of page views: on load, on single-page-app navigation, on return from the back-forward cache.

import type { Hub } from '../hub';
import { settle, type Stop } from '../settle';
import type { PageContext } from '../../core/types';

// Routers often set the title after the new page's data has loaded; this long at most.
const TITLE_WAIT_MS = 1000;

export function capturePageViews(hub: Hub): void {
  let pending: Stop | null = null;
  let lastTitle: string | undefined;
  const now = (): void => {
    if (pending) pending();
  };

  hub.onEnter(({ at, navigated }) => {
    now();
    const provider = hub.analytics.options.contextProvider;
    // The URL now (the page may be left before the title comes); the title when it is there.
    const page: PageContext = { ...((provider && provider().page) || {}) };
    pending = settle(
      () => {
        pending = null;
        page.title = lastTitle = document.title;
        // Dated when the navigation happened, so it sorts before what the new page sends.
        hub.analytics.page(undefined, undefined, { timestamp: at, context: { page } });
      },
      TITLE_WAIT_MS,
      // A single-page app still showing the last page view's title has not set its own yet.
      () => !navigated || document.title !== lastTitle,
    );
  });
  hub.onLeave(now);
  hub.onHide(now);
  hub.onCleanup(() => pending && pending(false));
}
