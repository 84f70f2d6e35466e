// A page that closes (navigates, is closed) while a request is on its way: the next page sends what was
// not handed over, and nothing the browser still carries.
import { describe, expect, it } from 'vitest';
import { FakeTransport, client, settle } from './helpers';
import { MemoryStorage } from '../src/core/storage';
import type { SendTarget, TransportResponse } from '../src/core/types';

/** A transport whose requests wait until the test answers them. */
class HeldTransport extends FakeTransport {
  private waiting: ((r: TransportResponse | Error) => void)[] = [];

  override send(raw: string, target: SendTarget, opts: { keepalive: boolean }): Promise<TransportResponse> {
    void super.send(raw, target, opts);
    return new Promise((resolve, reject) => this.waiting.push((r) => (r instanceof Error ? reject(r) : resolve(r))));
  }

  answer(reply: TransportResponse | Error = { status: 200, body: { accepted: 1, rejected: [] } }): void {
    const next = this.waiting.shift();
    if (!next) throw new Error('no request is waiting');
    next(reply);
  }
}

const events = (t: FakeTransport): unknown[] => t.sent.map((m) => m.event);

describe('a page closing while a request is on its way', () => {
  it('leaves a keepalive request to the browser: the next page does not send it again', async () => {
    const storage = new MemoryStorage();
    const held = new HeldTransport();
    const first = client(held, { storage, flushAt: 1000, queueId: 'page-1' });
    first.track('in_flight');
    void first.flush();
    await settle();
    first.track('not_sent_yet');
    held.beaconAccepts = [false]; // still stored: the next page must send this one
    first.pageHidden(true);
    expect(held.requests[0].keepalive).toBe(true);
    expect(JSON.parse(storage.getItem('fh.q.page-1')!).items.map((m: { event: string }) => m.event)).toEqual(['not_sent_yet']);

    const up = new FakeTransport();
    const second = client(up, { storage, flushAt: 1000, queueId: 'page-2' });
    await second.flush();
    expect(events(up)).toEqual(['not_sent_yet']);
    first.close();
  });

  it('keeps a request too large for keepalive (the browser cancels it): the next page sends it', async () => {
    const storage = new MemoryStorage();
    const held = new HeldTransport();
    const first = client(held, { storage, flushAt: 1000, maxBeaconBytes: 500, queueId: 'page-1' });
    first.track('big', { pad: 'x'.repeat(800) });
    void first.flush();
    await settle();
    first.pageHidden(true);
    expect(held.requests[0].keepalive).toBe(false);

    const up = new FakeTransport();
    const second = client(up, { storage, flushAt: 1000, queueId: 'page-2' });
    await second.flush();
    expect(events(up)).toEqual(['big']);
    first.close();
  });

  it('keeps a retry in flight while the collector has been failing: the next page sends it', async () => {
    const storage = new MemoryStorage();
    const held = new HeldTransport();
    const first = client(held, { storage, flushAt: 1000, queueId: 'page-1', retryBaseDelay: 60_000 });
    first.track('retried');
    void first.flush();
    await settle();
    held.answer({ status: 503 });
    await settle();
    void first.flush(); // the retry, on its way when the page closes
    await settle();
    expect(held.requests).toHaveLength(2);
    first.pageHidden(true);

    const up = new FakeTransport();
    const second = client(up, { storage, flushAt: 1000, queueId: 'page-2' });
    await second.flush();
    expect(events(up)).toEqual(['retried']);
    first.close();
  });

  it('back from the back-forward cache: what another page adopted meanwhile is not sent again', async () => {
    const storage = new MemoryStorage();
    const held = new HeldTransport();
    const first = client(held, { storage, flushAt: 1000, queueId: 'page-1' });
    first.track('in_flight');
    void first.flush();
    await settle();
    first.track('left_behind');
    held.beaconAccepts = [false];
    first.pageHidden(true);

    const up = new FakeTransport();
    const second = client(up, { storage, flushAt: 1000, queueId: 'page-2' });
    await second.flush();
    expect(events(up)).toEqual(['left_behind']);
    second.close();

    // Back to the first page: its request is answered now, and nothing is left to send.
    first.pageShown();
    held.answer();
    await settle();
    await first.flush();
    expect(events(held)).toEqual(['in_flight']);
    expect(first.queueLength).toBe(0);
    first.close();
  });

  it('back from the back-forward cache: a handed-over request that failed is stored and sent again', async () => {
    const storage = new MemoryStorage();
    const held = new HeldTransport();
    const first = client(held, { storage, flushAt: 1000, queueId: 'page-1', retryBaseDelay: 60_000 });
    first.track('in_flight');
    void first.flush();
    await settle();
    first.pageHidden(true);
    first.pageShown();
    held.answer(new TypeError('Failed to fetch'));
    await settle();
    expect(JSON.parse(storage.getItem('fh.q.page-1')!).items.map((m: { event: string }) => m.event)).toEqual(['in_flight']);
    void first.flush();
    await settle();
    held.answer();
    await settle();
    expect(events(held)).toEqual(['in_flight', 'in_flight']);
    expect(first.queueLength).toBe(0);
    first.close();
  });
});
