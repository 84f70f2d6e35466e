import { describe, expect, it } from 'vitest';
import { hydrateAsyncStorage, type AsyncKeyValueStorage } from '../src/core/storage';
import { campaignFromUrl } from '../src/browser/context';
import { createAnalytics } from '../src/core/index';
import { FakeTransport } from './helpers';
import { parseRetryAfter } from '../src/core/transport';

class FakeAsyncStorage implements AsyncKeyValueStorage {
  data = new Map<string, string>();
  async getItem(k: string) {
    return this.data.has(k) ? this.data.get(k)! : null;
  }
  async setItem(k: string, v: string) {
    this.data.set(k, v);
  }
  async removeItem(k: string) {
    this.data.delete(k);
  }
  async getAllKeys() {
    return Array.from(this.data.keys());
  }
}

describe('React Native style storage', () => {
  it('keeps the anonymous id and unsent events across app restarts through an async store', async () => {
    const disk = new FakeAsyncStorage();
    const down = new FakeTransport(new TypeError('offline'));
    const first = createAnalytics({ writeKey: 'wk', endpoint: 'https://c.example', transport: down, storage: await hydrateAsyncStorage(disk) });
    first.setOnline(false);
    first.screen('Home');
    first.track('tap', { n: 1 });
    first.close();
    await new Promise((r) => setTimeout(r, 0));
    expect(disk.data.get('fh.aid')).toBe(first.getAnonymousId());

    const up = new FakeTransport();
    const second = createAnalytics({ writeKey: 'wk', endpoint: 'https://c.example', transport: up, storage: await hydrateAsyncStorage(disk) });
    await second.flush();
    expect(second.getAnonymousId()).toBe(first.getAnonymousId());
    expect(up.sent.map((m) => [m.type, m.context.channel])).toEqual([
      ['screen', 'app'],
      ['track', 'app'],
    ]);
    expect(up.sent[0].context.screen).toEqual({ name: 'Home' });
    second.close();
  });
});

describe('campaign from the landing URL', () => {
  it('maps utm_* parameters to context.campaign', () => {
    expect(campaignFromUrl('https://s.example/?utm_source=nl&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=hero&x=1')).toEqual({
      source: 'nl',
      medium: 'email',
      name: 'spring',
      term: 'shoes',
      content: 'hero',
    });
    expect(campaignFromUrl('https://s.example/?q=shoes')).toBeUndefined();
  });
});

describe('Retry-After', () => {
  it('reads seconds, an HTTP date, or the body when the header is not exposed', () => {
    expect(parseRetryAfter('30')).toBe(30);
    const inTen = new Date(Date.now() + 10_000).toUTCString();
    const s = parseRetryAfter(inTen)!;
    expect(s).toBeGreaterThan(5);
    expect(s).toBeLessThanOrEqual(10);
    expect(parseRetryAfter(null, { retry_after: 7 })).toBe(7);
    expect(parseRetryAfter(null, { error: 'x' })).toBeNull();
  });
});
