// The default transport: fetch (browsers, React Native, Node 18+).

import type { SendTarget, Transport, TransportResponse } from './types';

export interface FetchTransportOptions {
  /**
   * 'simple' sends text/plain with the write key in the query string: a CORS
   * "simple request" (no preflight) that a page can also hand to sendBeacon.
   * 'headers' sends application/json with an X-Write-Key header (apps, servers).
   */
  mode?: 'simple' | 'headers';
}

export function withWriteKey(url: string, writeKey: string): string {
  return url + (url.indexOf('?') >= 0 ? '&' : '?') + 'writeKey=' + encodeURIComponent(writeKey);
}

export function fetchTransport(options: FetchTransportOptions = {}): Transport {
  const mode = options.mode || 'headers';
  return {
    async send(body: string, target: SendTarget, opts: { keepalive: boolean }): Promise<TransportResponse> {
      const simple = mode === 'simple';
      const init: RequestInit = {
        method: 'POST',
        body,
        headers: simple
          ? { 'Content-Type': 'text/plain;charset=UTF-8' }
          : { 'Content-Type': 'application/json', 'X-Write-Key': target.writeKey },
        credentials: 'omit',
        keepalive: opts.keepalive,
      };
      const res = await fetch(simple ? withWriteKey(target.url, target.writeKey) : target.url, init);
      let parsed: unknown;
      try {
        parsed = await res.json();
      } catch {
        parsed = undefined;
      }
      return { status: res.status, retryAfter: parseRetryAfter(res.headers.get('Retry-After'), parsed), body: parsed };
    },
  };
}

/** Seconds to wait: the Retry-After header (seconds or HTTP date), else a retry_after field in the body. */
export function parseRetryAfter(header: string | null, body?: unknown): number | null {
  if (header) {
    const n = Number(header);
    if (!isNaN(n)) return Math.max(0, n);
    const d = Date.parse(header);
    if (!isNaN(d)) return Math.max(0, (d - Date.now()) / 1000);
  }
  // Cross-origin pages can only read Retry-After if the collector exposes it; the body is a fallback.
  const b = body as { retry_after?: unknown; retryAfter?: unknown } | undefined;
  const v = b && typeof b === 'object' ? (b.retry_after !== undefined ? b.retry_after : b.retryAfter) : undefined;
  return typeof v === 'number' && v >= 0 ? v : null;
}
