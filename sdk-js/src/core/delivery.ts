// Sends the outbox to /v1/batch: batching, backoff, the status-code rules, and beacons at page close.

import type { DeliveryError, Message, SendTarget, Transport, TransportResponse } from './types';
import { EventQueue, utf8Length } from './queue';

export interface DeliveryOptions {
  writeKey: string;
  endpoint: string;
  flushAt: number;
  flushInterval: number;
  maxBatchEvents: number;
  maxBatchBytes: number;
  maxBeaconBytes: number;
  retryBaseDelay: number;
  retryMaxDelay: number;
  now: () => number;
  random: () => number;
  onError?: (e: DeliveryError) => void;
}

// The collector refused these as invalid or unauthorised: sending them again cannot help.
// (Every other 4xx is treated the same, except 408, 413 and 429 below.)
const RETRYABLE_4XX = new Set([408, 425]);
const MAX_RETRY_AFTER_S = 3600;

export class Delivery {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = 0;
  private chain: Promise<void> = Promise.resolve();
  private running = false;
  private attempt = 0;
  private retryAt = 0;
  private rateLimitedUntil = 0;
  private batchLimit: number;
  private online = true;
  // The last request never reached the collector: a beacon now would most likely be lost too.
  private unreachable = false;
  private enabled = true;
  // The request on its way, if any.
  private sending: { batch: Message[]; keepalive: boolean } | null = null;

  constructor(
    private readonly queue: EventQueue,
    private readonly transport: Transport,
    private readonly o: DeliveryOptions,
  ) {
    this.batchLimit = o.maxBatchEvents;
  }

  private get target(): SendTarget {
    return { url: this.o.endpoint.replace(/\/+$/, '') + '/v1/batch', writeKey: this.o.writeKey };
  }

  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    if (!enabled) this.clearTimer();
    else this.schedule();
  }

  setOnline(online: boolean): void {
    const was = this.online;
    this.online = online;
    if (online && !was) {
      // Back online: the backoff was about the network, not the server.
      this.attempt = 0;
      this.retryAt = 0;
      void this.kick(false);
    }
  }

  /** A message was queued: send now if enough are waiting, else within flushInterval. */
  schedule(): void {
    if (!this.enabled || this.queue.pendingCount === 0) return;
    const t = this.o.now();
    const blockedUntil = Math.max(this.retryAt, this.rateLimitedUntil);
    if (blockedUntil > t) this.setTimer(blockedUntil - t);
    else if (this.queue.pendingCount >= this.o.flushAt) void this.kick(false);
    else this.setTimer(this.o.flushInterval);
  }

  /** Sends everything now (ignoring network backoff, not a server's Retry-After). */
  flush(): Promise<void> {
    return this.kick(true);
  }

  private kick(force: boolean): Promise<void> {
    if (this.running && !force) return this.chain;
    this.chain = this.chain.then(() => this.run(force));
    return this.chain;
  }

  private async run(force: boolean): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        if (!this.enabled || !this.online) return;
        const t = this.o.now();
        if (t < this.rateLimitedUntil) return this.setTimer(this.rateLimitedUntil - t);
        if (!force && t < this.retryAt) return this.setTimer(this.retryAt - t);
        const batch = this.queue.next(this.batchLimit, this.o.maxBatchBytes);
        if (batch.length === 0) return;
        const done = await this.sendBatch(batch);
        if (!done) return;
        force = false;
      }
    } finally {
      this.running = false;
      // Messages queued while sending: pick them up within flushInterval (a timer, never a
      // direct re-run, so being offline or disabled cannot spin).
      if (this.enabled && this.online && this.queue.pendingCount > 0 && !this.timer) this.setTimer(this.o.flushInterval);
    }
  }

  /** One request. True when the loop may go on with the next batch right away. */
  private async sendBatch(batch: Message[]): Promise<boolean> {
    const body = this.body(batch);
    this.queue.markInFlight(batch);
    // keepalive lets the request finish if the page closes meanwhile; browsers cap it at 64 KiB.
    const keepalive = utf8Length(body) <= this.o.maxBeaconBytes;
    this.sending = { batch, keepalive };
    let res: TransportResponse;
    try {
      res = await this.transport.send(body, this.target, { keepalive });
    } catch (err) {
      this.sending = null;
      this.queue.release(batch);
      this.unreachable = true;
      this.backoff(batch, undefined, err);
      return false;
    }
    this.sending = null;
    this.queue.release(batch);
    this.unreachable = false;
    const s = res.status;
    if (s >= 200 && s < 300) {
      this.queue.remove(batch);
      this.attempt = 0;
      this.retryAt = 0;
      this.batchLimit = Math.min(this.o.maxBatchEvents, this.batchLimit * 2);
      const rejected = rejectedOf(res.body);
      if (rejected.length) {
        // Kept in the collector's dead-letter; sending again would only duplicate them there.
        this.report({ kind: 'rejected', status: s, messageIds: rejected.map((r) => r.id), detail: rejected.map((r) => r.detail) });
      }
      return true;
    }
    if (s === 413) {
      if (batch.length > 1) {
        this.batchLimit = Math.max(1, Math.floor(batch.length / 2));
        return true;
      }
      this.queue.remove(batch);
      this.report({ kind: 'dropped', status: s, messageIds: ids(batch), detail: res.body });
      return true;
    }
    if (s === 429) {
      this.attempt++;
      const ra = res.retryAfter;
      const wait = ra !== undefined && ra !== null && ra >= 0 ? Math.min(ra, MAX_RETRY_AFTER_S) * 1000 : this.delay();
      this.rateLimitedUntil = this.o.now() + wait;
      this.setTimer(wait);
      this.report({ kind: 'retrying', status: s, messageIds: ids(batch) });
      return false;
    }
    if (s >= 500 || RETRYABLE_4XX.has(s) || s === 0) {
      this.backoff(batch, s, res.body);
      return false;
    }
    this.queue.remove(batch);
    this.report({ kind: 'dropped', status: s, messageIds: ids(batch), detail: res.body });
    return true;
  }

  private backoff(batch: Message[], status: number | undefined, detail: unknown): void {
    this.attempt++;
    const wait = this.delay();
    this.retryAt = this.o.now() + wait;
    this.setTimer(wait);
    this.report({ kind: 'retrying', status, messageIds: ids(batch), detail });
  }

  /** Exponential backoff with jitter: between half and all of base·2^(attempt-1), capped. */
  delay(): number {
    const exp = Math.min(this.o.retryMaxDelay, this.o.retryBaseDelay * Math.pow(2, Math.max(0, this.attempt - 1)));
    return Math.round(exp / 2 + (this.o.random() * exp) / 2);
  }

  /**
   * The page is going away: hand what is pending to the browser in bodies under
   * the beacon limit. What the browser refuses stays queued for the next visit,
   * and so does everything while the collector seems unreachable: a beacon gets
   * no answer, so one lost on the way could never be retried.
   */
  beacon(): number {
    const send = this.transport.beacon;
    if (!send || !this.enabled || !this.online || this.unreachable || this.o.now() < this.rateLimitedUntil) return 0;
    const pending = this.queue.pending();
    let sent = 0;
    let chunk: Message[] = [];
    const flushChunk = (): boolean => {
      if (chunk.length === 0) return true;
      const ok = send.call(this.transport, this.body(chunk), this.target);
      if (ok) {
        this.queue.remove(chunk);
        sent += chunk.length;
      }
      chunk = [];
      return ok;
    };
    for (const m of pending) {
      const candidate = chunk.concat(m);
      if (utf8Length(this.body(candidate)) <= this.o.maxBeaconBytes) {
        chunk = candidate;
        continue;
      }
      if (!flushChunk()) return sent;
      // A message too big for any beacon waits for a normal request.
      if (utf8Length(this.body([m])) <= this.o.maxBeaconBytes) chunk = [m];
    }
    flushChunk();
    return sent;
  }

  /**
   * The page is closing with a request on its way. With keepalive the browser finishes it
   * without the page, as it does a beacon, and its answer can no longer be read: the next page
   * must not send those messages again (the collector would see them twice, and store them
   * twice once its dedup window has passed). Not so when the collector has lately been failing
   * (the request may well be lost: they stay stored), nor without keepalive (the browser
   * cancels the request).
   */
  closing(): void {
    const s = this.sending;
    if (s && s.keepalive && !this.unreachable && this.attempt === 0) this.queue.handOver(s.batch);
  }

  private body(batch: Message[]): string {
    return JSON.stringify({ batch, sentAt: new Date(this.o.now()).toISOString(), writeKey: this.o.writeKey });
  }

  private setTimer(ms: number): void {
    const at = this.o.now() + ms;
    if (this.timer && this.timerAt <= at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.kick(false);
    }, Math.max(0, ms));
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  stop(): void {
    this.clearTimer();
    this.enabled = false;
  }

  private report(e: DeliveryError): void {
    if (this.o.onError) {
      try {
        this.o.onError(e);
      } catch {
        // never let a callback break delivery
      }
    }
  }
}

function ids(batch: Message[]): string[] {
  return batch.map((m) => m.messageId);
}

function rejectedOf(body: unknown): { id: string; detail: unknown }[] {
  const r = body && typeof body === 'object' ? (body as { rejected?: unknown }).rejected : undefined;
  if (!Array.isArray(r)) return [];
  return r.map((x: { message_id?: string; messageId?: string }) => ({ id: String(x && (x.message_id || x.messageId) || ''), detail: x }));
}
