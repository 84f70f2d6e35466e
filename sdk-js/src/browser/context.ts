// What the browser knows about where an event happened: page, campaign, user agent, locale.

import type { Campaign, PageContext } from '../core/types';

const UTM: [string, keyof Campaign][] = [
  ['utm_source', 'source'],
  ['utm_medium', 'medium'],
  ['utm_campaign', 'name'],
  ['utm_term', 'term'],
  ['utm_content', 'content'],
];

/** UTM parameters of a URL, or undefined when it has none. */
export function campaignFromUrl(href: string): Campaign | undefined {
  let params: URLSearchParams;
  try {
    params = new URL(href).searchParams;
  } catch {
    return undefined;
  }
  const c: Campaign = {};
  let any = false;
  for (const [param, field] of UTM) {
    const v = params.get(param);
    if (v) {
      c[field] = v;
      any = true;
    }
  }
  return any ? c : undefined;
}

export function stripHash(href: string): string {
  const i = href.indexOf('#');
  return i >= 0 ? href.slice(0, i) : href;
}

export function pageContext(referrer: string): PageContext {
  return {
    url: stripHash(location.href),
    path: location.pathname,
    title: document.title,
    referrer,
    search: location.search,
  };
}
