import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeTransport, RecordingStorage, client, settle } from './helpers';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('consent', () => {
  it('sends and stores nothing before consent when requireConsent is set', async () => {
    const storage = new RecordingStorage();
    const t = new FakeTransport();
    const a = client(t, { storage, requireConsent: true, flushAt: 1 });
    a.identify('user-1', { email: 'a@example.com' });
    a.track('viewed', { n: 1 });
    a.page('Home');
    await vi.advanceTimersByTimeAsync(60_000);
    a.pageHidden(true);
    await a.flush();
    expect(a.consent).toBe('pending');
    expect(t.requests).toHaveLength(0);
    expect(t.beacons).toHaveLength(0);
    expect(storage.writes).toEqual([]);
  });

  it('on optIn stores the ids and sends what was held in memory, in order', async () => {
    const storage = new RecordingStorage();
    const t = new FakeTransport();
    const a = client(t, { storage, requireConsent: true, flushAt: 1 });
    const anon = a.getAnonymousId();
    a.track('before', { n: 1 });
    a.track('before', { n: 2 });
    a.optIn();
    a.track('after', { n: 3 });
    await a.flush();
    expect(t.sent.map((m) => m.properties!.n)).toEqual([1, 2, 3]);
    expect(t.sent.every((m) => m.anonymousId === anon)).toBe(true);
    expect(storage.getItem('fh.aid')).toBe(anon);
    expect(storage.getItem('fh.consent')).toBe('granted');

    // The choice is remembered: a new page with the same storage sends at once.
    const t2 = new FakeTransport();
    const b = client(t2, { storage, requireConsent: true, flushAt: 1 });
    expect(b.consent).toBe('granted');
    expect(b.getAnonymousId()).toBe(anon);
    b.track('next_page');
    await b.flush();
    expect(t2.sent).toHaveLength(1);
  });

  it('optOut drops the queue, forgets every id and sends nothing more', async () => {
    const storage = new RecordingStorage();
    const t = new FakeTransport({ status: 503 });
    const a = client(t, { storage, flushAt: 1 });
    const anon = a.getAnonymousId();
    a.identify('user-9');
    a.track('queued');
    await settle();
    a.optOut();
    expect(a.queueLength).toBe(0);
    const left = storage.keys().filter((k) => k.startsWith('fh.'));
    expect(left).toEqual(['fh.consent']);
    expect(storage.getItem('fh.consent')).toBe('denied');
    const before = t.requests.length;
    a.track('after_opt_out');
    a.page();
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    a.pageHidden(true);
    expect(t.requests.length).toBe(before);
    expect(t.beacons).toHaveLength(0);

    // Remembered on the next page, even without requireConsent.
    const t2 = new FakeTransport();
    const b = client(t2, { storage, flushAt: 1 });
    expect(b.consent).toBe('denied');
    b.track('still_no');
    await b.flush();
    expect(t2.requests).toHaveLength(0);

    // Opting back in starts over with a new anonymous id.
    b.optIn();
    b.track('welcome_back');
    await b.flush();
    expect(t2.sent.map((m) => m.event)).toEqual(['welcome_back']);
    expect(t2.sent[0].anonymousId).not.toBe(anon);
    expect(t2.sent[0].userId).toBeUndefined();
  });
});
