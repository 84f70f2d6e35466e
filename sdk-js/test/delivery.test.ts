import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeTransport, client, settle } from './helpers';
import { MemoryStorage } from '../src/core/storage';
import type { DeliveryError } from '../src/core/types';

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2025-03-01T10:00:00Z'));
});
afterEach(() => {
  vi.useRealTimers();
});

describe('batching', () => {
  it('sends one batch to /v1/batch when flushAt events are queued', async () => {
    const t = new FakeTransport();
    const a = client(t, { flushAt: 3 });
    a.track('one');
    a.track('two');
    await settle();
    expect(t.requests).toHaveLength(0);
    a.track('three');
    await settle();
    expect(t.requests).toHaveLength(1);
    const req = t.requests[0];
    expect(req.url).toBe('https://collect.example.com/v1/batch');
    expect(req.writeKey).toBe('wk_test');
    expect(req.body.writeKey).toBe('wk_test');
    expect(req.body.sentAt).toBe('2025-03-01T10:00:00.000Z');
    expect(req.body.batch.map((m) => m.event)).toEqual(['one', 'two', 'three']);
    expect(a.queueLength).toBe(0);
  });

  it('sends a partial batch once flushInterval has passed', async () => {
    const t = new FakeTransport();
    const a = client(t, { flushAt: 20, flushInterval: 5000 });
    a.track('lonely');
    await vi.advanceTimersByTimeAsync(4000);
    expect(t.requests).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.requests).toHaveLength(1);
    expect(t.sent.map((m) => m.event)).toEqual(['lonely']);
  });

  it('splits the queue into requests under maxBatchBytes', async () => {
    const t = new FakeTransport();
    const a = client(t, { flushAt: 100, maxBatchBytes: 3000 });
    for (let i = 0; i < 10; i++) a.track('big', { pad: 'x'.repeat(500), i });
    await a.flush();
    expect(t.requests.length).toBeGreaterThan(2);
    for (const r of t.requests) expect(r.raw.length).toBeLessThan(3000 + 600);
    expect(t.sent.map((m) => m.properties!.i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('sends events queued during a request in the next one, none twice', async () => {
    let release!: () => void;
    const t = new FakeTransport();
    const send = t.send.bind(t);
    t.send = async (raw, target, opts) => {
      const p = send(raw, target, opts);
      if (t.requests.length === 1) await new Promise<void>((r) => (release = r));
      return p;
    };
    const a = client(t, { flushAt: 1 });
    a.track('first');
    await settle();
    a.track('second');
    a.track('third');
    release();
    await vi.advanceTimersByTimeAsync(2000);
    expect(t.sent.map((m) => m.event)).toEqual(['first', 'second', 'third']);
  });
});

describe('retry rules', () => {
  for (const status of [400, 401, 403, 422]) {
    it(`never retries a batch the collector refused with ${status}`, async () => {
      const errors: DeliveryError[] = [];
      const t = new FakeTransport({ status, body: { error: 'invalid' } });
      const a = client(t, { flushAt: 1, onError: (e) => errors.push(e) });
      a.track('bad');
      await settle();
      await vi.advanceTimersByTimeAsync(10 * 60_000);
      expect(t.requests).toHaveLength(1);
      expect(a.queueLength).toBe(0);
      expect(errors.map((e) => [e.kind, e.status])).toEqual([['dropped', status]]);
    });
  }

  it('does not resend events a 200 reported as rejected', async () => {
    const errors: DeliveryError[] = [];
    const t = new FakeTransport();
    const a = client(t, { flushAt: 2, onError: (e) => errors.push(e) });
    a.track('ok');
    a.track('invalid');
    const badId = (a as unknown as { queue: { pending(): { messageId: string }[] } }).queue.pending()[1].messageId;
    t.reply({ status: 200, body: { accepted: 1, rejected: [{ index: 1, message_id: badId, reason: 'schema_violation' }] } });
    await a.flush();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(t.requests).toHaveLength(1);
    expect(a.queueLength).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0].kind).toBe('rejected');
    expect(errors[0].messageIds).toEqual([badId]);
  });

  it('halves the batch on 413 until it fits, then sends everything once', async () => {
    const t = new FakeTransport();
    t.send = async function (raw, target, opts) {
      const body = JSON.parse(raw);
      this.requests.push({ url: target.url, writeKey: target.writeKey, body, raw, keepalive: opts.keepalive });
      return body.batch.length > 3 ? { status: 413 } : { status: 200, body: { accepted: body.batch.length, rejected: [] } };
    };
    const a = client(t, { flushAt: 100 });
    for (let i = 0; i < 10; i++) a.track('e', { i });
    await a.flush();
    const sizes = t.requests.map((r) => r.body.batch.length);
    expect(sizes.slice(0, 3)).toEqual([10, 5, 2]);
    const delivered = t.requests.filter((r) => r.body.batch.length <= 3).flatMap((r) => r.body.batch.map((m) => m.properties!.i));
    expect(delivered).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(a.queueLength).toBe(0);
  });

  it('drops a single event that is still too large (413) and goes on', async () => {
    const errors: DeliveryError[] = [];
    const t = new FakeTransport({ status: 413 }, { status: 413 }, { status: 200, body: { accepted: 1, rejected: [] } });
    const a = client(t, { flushAt: 100, onError: (e) => errors.push(e) });
    a.track('huge');
    a.track('fine');
    await a.flush();
    expect(t.requests.map((r) => r.body.batch.map((m) => m.event))).toEqual([['huge', 'fine'], ['huge'], ['fine']]);
    expect(errors.map((e) => [e.kind, e.status])).toEqual([['dropped', 413]]);
    expect(a.queueLength).toBe(0);
  });

  it('honours Retry-After on 429 before trying again', async () => {
    const t = new FakeTransport({ status: 429, retryAfter: 30 }, { status: 200, body: { accepted: 1, rejected: [] } });
    const a = client(t, { flushAt: 1 });
    a.track('limited');
    await settle();
    expect(t.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(29_000);
    await a.flush(); // an explicit flush does not jump a server's Retry-After
    expect(t.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(t.requests).toHaveLength(2);
    expect(t.requests[1].body.batch[0].messageId).toBe(t.requests[0].body.batch[0].messageId);
    expect(a.queueLength).toBe(0);
  });

  for (const failure of ['network', 500, 502, 503] as const) {
    it(`retries after ${failure === 'network' ? 'a network error' : failure} with backoff, same messageId`, async () => {
      const first = failure === 'network' ? new TypeError('Failed to fetch') : { status: failure };
      const t = new FakeTransport(first, first, { status: 200, body: { accepted: 1, rejected: [] } });
      const a = client(t, { flushAt: 1, retryBaseDelay: 1000, random: () => 1 });
      a.track('flaky');
      await settle();
      expect(t.requests).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(999);
      expect(t.requests).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(t.requests).toHaveLength(2); // 1st retry after base delay
      await vi.advanceTimersByTimeAsync(1999);
      expect(t.requests).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(1);
      expect(t.requests).toHaveLength(3); // 2nd retry after twice that
      const ids = new Set(t.requests.map((r) => r.body.batch[0].messageId));
      expect(ids.size).toBe(1);
      expect(a.queueLength).toBe(0);
    });
  }

  it('jitters the backoff between half and all of the exponential delay, capped', () => {
    const draws = [0, 0.999, 0.25];
    let i = 0;
    const a = client(new FakeTransport(), { retryBaseDelay: 1000, retryMaxDelay: 8000, random: () => draws[i++ % 3] });
    const d = (a as unknown as { delivery: { attempt: number; delay(): number } }).delivery;
    const seen: number[][] = [];
    for (const attempt of [1, 2, 3, 4, 5, 8]) {
      d.attempt = attempt;
      const exp = Math.min(8000, 1000 * 2 ** (attempt - 1));
      const values = [d.delay(), d.delay(), d.delay()];
      for (const v of values) {
        expect(v).toBeGreaterThanOrEqual(exp / 2);
        expect(v).toBeLessThanOrEqual(exp);
      }
      seen.push(values);
    }
    expect(new Set(seen[0]).size).toBeGreaterThan(1);
  });
});

describe('offline', () => {
  it('holds events while offline and sends each once when back online', async () => {
    const t = new FakeTransport();
    const a = client(t, { flushAt: 1 });
    a.setOnline(false);
    for (let i = 0; i < 5; i++) a.track('offline', { i });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(t.requests).toHaveLength(0);
    a.setOnline(true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(t.sent.map((m) => m.properties!.i)).toEqual([0, 1, 2, 3, 4]);
    expect(new Set(t.sent.map((m) => m.messageId)).size).toBe(5);
  });

  it('keeps at most maxQueueSize events, dropping the oldest', async () => {
    const errors: DeliveryError[] = [];
    const t = new FakeTransport();
    const a = client(t, { maxQueueSize: 5, onError: (e) => errors.push(e) });
    a.setOnline(false);
    for (let i = 0; i < 8; i++) a.track('e', { i });
    expect(a.queueLength).toBe(5);
    expect(errors.filter((e) => e.kind === 'overflow')).toHaveLength(3);
    a.setOnline(true);
    await a.flush();
    expect(t.sent.map((m) => m.properties!.i)).toEqual([3, 4, 5, 6, 7]);
  });

  it('persists the queue so a new page (same storage) sends what the last one could not', async () => {
    const storage = new MemoryStorage();
    const down = new FakeTransport(new TypeError('offline'));
    down.beaconAccepts = [false];
    const first = client(down, { storage, flushAt: 1, queueId: 'page-1' });
    first.track('before_reload', { n: 1 });
    first.track('before_reload', { n: 2 });
    await settle();
    first.pageHidden(true); // beacon refused below, queue marked as left behind
    first.close();

    const up = new FakeTransport();
    const second = client(up, { storage, flushAt: 1, queueId: 'page-2' });
    await second.flush();
    expect(up.sent.map((m) => m.properties!.n)).toEqual([1, 2]);
    expect(up.sent[0].messageId).toBe(down.requests[0].body.batch[0].messageId);
  });

  it('does not adopt the queue of a page that is still open', async () => {
    const storage = new MemoryStorage();
    const down = new FakeTransport(new TypeError('offline'));
    const open = client(down, { storage, flushAt: 1, queueId: 'open-tab' });
    open.track('mine');
    await settle();
    const up = new FakeTransport();
    const other = client(up, { storage, flushAt: 1, queueId: 'other-tab' });
    await other.flush();
    expect(up.sent).toHaveLength(0);
    open.close();
  });
});

describe('beacon at page close', () => {
  it('splits pending events into beacons under the size limit and forgets what was handed over', () => {
    const t = new FakeTransport();
    const a = client(t, { flushAt: 1000, maxBeaconBytes: 4000 });
    for (let i = 0; i < 30; i++) a.track('closing', { i, pad: 'y'.repeat(300) });
    a.pageHidden(true);
    expect(t.requests).toHaveLength(0);
    expect(t.beacons.length).toBeGreaterThan(2);
    for (const b of t.beacons) expect(new TextEncoder().encode(b.raw).length).toBeLessThanOrEqual(4000);
    expect(t.beacons.flatMap((b) => b.body.batch.map((m) => m.properties!.i))).toEqual([...Array(30).keys()]);
    expect(a.queueLength).toBe(0);
  });

  it('keeps what the browser refused to beacon', () => {
    const storage = new MemoryStorage();
    const t = new FakeTransport();
    t.beaconAccepts = [true, false];
    const a = client(t, { storage, flushAt: 1000, maxBeaconBytes: 2000, queueId: 'p' });
    for (let i = 0; i < 10; i++) a.track('closing', { i, pad: 'z'.repeat(300) });
    a.pageHidden(true);
    const beaconed = t.beacons.flatMap((b) => b.body.batch.map((m) => m.properties!.i));
    expect(beaconed.length).toBeGreaterThan(0);
    expect(a.queueLength).toBe(10 - beaconed.length);
    const stored = JSON.parse(storage.getItem('fh.q.p')!);
    expect(stored.closed).toBe(true);
    expect(stored.items).toHaveLength(10 - beaconed.length);
  });

  it('sends no beacon while the collector is unreachable, so the next page can retry', async () => {
    const storage = new MemoryStorage();
    const t = new FakeTransport(new TypeError('Failed to fetch'));
    const a = client(t, { storage, flushAt: 1, queueId: 'p' });
    a.track('x');
    await settle();
    expect(t.requests).toHaveLength(1);
    a.pageHidden(true);
    expect(t.beacons).toHaveLength(0);
    expect(JSON.parse(storage.getItem('fh.q.p')!).items).toHaveLength(1);
    a.close();
  });

  it('sends no beacon while offline (the browser would lose it)', () => {
    const t = new FakeTransport();
    const a = client(t, { flushAt: 1000 });
    a.setOnline(false);
    a.track('x');
    a.pageHidden(true);
    expect(t.beacons).toHaveLength(0);
    expect(a.queueLength).toBe(1);
  });
});
