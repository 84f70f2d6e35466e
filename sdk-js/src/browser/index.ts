// The browser layer: cookie + localStorage, fetch + sendBeacon, page context, lifecycle and auto-capture.

import { Analytics } from '../core/analytics';
import type { CoreOptions, Context, Transport } from '../core/types';
import { fetchTransport, withWriteKey } from '../core/transport';
import { uuid4 } from '../core/uuid';
import { BrowserStorage, type CookieOptions } from './storage';
import { campaignFromUrl, pageContext, stripHash } from './context';
import { Hub } from './hub';
import { capturePageViews } from './autocapture/pageviews';
import { captureClicks } from './autocapture/clicks';
import { captureScroll, type ScrollOptions } from './autocapture/scroll';
import { captureSwipes, type SwipeOptions } from './autocapture/swipes';
import { captureSearch, type SearchOptions } from './autocapture/search';
import { captureProductDwell } from './autocapture/dwell';

export interface AutocaptureOptions {
  pageViews?: boolean;
  clicks?: boolean;
  scroll?: boolean | ScrollOptions;
  swipes?: boolean | SwipeOptions;
  search?: boolean | SearchOptions;
  productDwell?: boolean;
  /** Treat #fragment changes as navigations (hash-routed single-page apps). */
  hashChanges?: boolean;
}

export interface BrowserOptions extends Omit<CoreOptions, 'channel'>, CookieOptions {
  /** 'web' by default; 'app' for pages shown in an app's web view. */
  channel?: 'web' | 'app';
  /** true (default) for everything, false for nothing, or switch each on or off. */
  autocapture?: boolean | AutocaptureOptions;
}

const ALL_ON: AutocaptureOptions = { pageViews: true, clicks: true, scroll: true, swipes: true, search: true, productDwell: true };

export class BrowserAnalytics extends Analytics {
  private readonly hub: Hub;
  private results?: (count: number) => void;

  constructor(options: BrowserOptions) {
    const prefix = options.storagePrefix || 'fh.';
    let referrer = document.referrer;
    // Read once: they do not change while the page lives (and are unreliable during unload).
    const fixed = staticContext();
    super({
      channel: 'web',
      queueId: uuid4(),
      ...options,
      storage: options.storage || new BrowserStorage(prefix, options),
      transport: options.transport || browserTransport(),
      contextProvider: () => ({ ...fixed, page: pageContext(referrer), ...(options.contextProvider ? options.contextProvider() : {}) }),
    });
    const hub = (this.hub = new Hub(this));
    this.land(campaignFromUrl(location.href), document.referrer);

    const auto = resolveAutocapture(options.autocapture);
    // Order matters: listeners of onLeave/onEnter run in registration order.
    if (auto.productDwell) captureProductDwell(hub);
    if (auto.scroll) captureScroll(hub, typeof auto.scroll === 'object' ? auto.scroll : {});
    if (auto.pageViews) capturePageViews(hub);
    if (auto.search) this.results = captureSearch(hub, typeof auto.search === 'object' ? auto.search : {});
    if (auto.clicks) captureClicks(hub);
    if (auto.swipes) captureSwipes(hub, typeof auto.swipes === 'object' ? auto.swipes : {});

    // Single-page-app navigation.
    const urlOf = (): string => (auto.hashChanges ? location.href : stripHash(location.href));
    let lastUrl = urlOf();
    const onLocation = (): void => {
      const url = urlOf();
      if (url === lastUrl) return;
      // URL changes before the new page has rendered (a redirect, a replaceState right after
      // pushState) are one navigation: one page view, of the URL it ends on.
      if (!hub.settling) {
        hub.leave();
        referrer = lastUrl;
        hub.enter(true);
      }
      lastUrl = url;
      const campaign = campaignFromUrl(url);
      if (campaign) this.land(campaign, referrer);
    };
    hub.onCleanup(watchHistory(onLocation));
    hub.listen(window, 'popstate', onLocation);
    if (auto.hashChanges) hub.listen(window, 'hashchange', onLocation);

    // Offline: hold everything; back online: send at once.
    this.setOnline(navigator.onLine !== false);
    hub.listen(window, 'online', () => this.setOnline(true));
    hub.listen(window, 'offline', () => this.setOnline(false));

    // Leaving. No unload/beforeunload listener: it would keep the page out of the back-forward cache.
    hub.listen(document, 'visibilitychange', () => {
      if (document.visibilityState === 'hidden') {
        hub.hide();
        this.pageHidden(false);
      }
    });
    hub.listen(window, 'pagehide', () => {
      hub.hide();
      this.pageHidden(true);
    });
    hub.listen(window, 'pageshow', (e) => {
      if (!(e as PageTransitionEvent).persisted) return;
      // Back from the back-forward cache: this is a new view of the page.
      this.pageShown();
      hub.enter();
    });

    hub.enter();
  }

  /**
   * The page shows the results of the search just made: `count` of them. Auto-captured searches
   * wait for this (or for a [data-search-result-count] element) before they are sent.
   */
  searchResults(count: number): void {
    if (this.results) this.results(count);
  }

  /** Removes every listener and timer (the stored queue stays for the next page). */
  destroy(): void {
    this.hub.destroy();
    this.close();
  }
}

export function createBrowserAnalytics(options: BrowserOptions): BrowserAnalytics {
  return new BrowserAnalytics(options);
}

function resolveAutocapture(a: boolean | AutocaptureOptions | undefined): AutocaptureOptions {
  if (a === false) return {};
  if (a === undefined || a === true) return ALL_ON;
  return { ...ALL_ON, ...a };
}

function staticContext(): Partial<Context> {
  const ctx: Partial<Context> = { userAgent: navigator.userAgent, locale: navigator.language };
  try {
    ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    // left to the core
  }
  if (typeof screen !== 'undefined') {
    ctx.screen = { width: screen.width, height: screen.height, density: window.devicePixelRatio || 1 };
  }
  return ctx;
}

/** fetch as a CORS simple request (no preflight), and sendBeacon for page close. */
export function browserTransport(): Transport {
  const base = fetchTransport({ mode: 'simple' });
  return {
    send: base.send,
    beacon(body, target) {
      if (typeof navigator === 'undefined' || typeof navigator.sendBeacon !== 'function') return false;
      try {
        // A string body goes out as text/plain;charset=UTF-8, which needs no preflight.
        return navigator.sendBeacon(withWriteKey(target.url, target.writeKey), body);
      } catch {
        return false;
      }
    },
  };
}

// history.pushState/replaceState fire no event; wrap them once per page and notify subscribers.
const HISTORY_EVENT = 'funnelhouse:locationchange';

function watchHistory(cb: () => void): () => void {
  const h = history as History & { __fhWrapped?: boolean };
  if (!h.__fhWrapped) {
    h.__fhWrapped = true;
    for (const name of ['pushState', 'replaceState'] as const) {
      const original = h[name];
      h[name] = function (this: History, ...args: Parameters<History['pushState']>) {
        const result = original.apply(this, args);
        window.dispatchEvent(new Event(HISTORY_EVENT));
        return result;
      };
    }
  }
  window.addEventListener(HISTORY_EVENT, cb);
  return () => window.removeEventListener(HISTORY_EVENT, cb);
}
