// The outbox: unsent messages, persisted (once consent allows) so they survive offline periods and reloads.

import type { Message } from './types';
import type { StateStore } from './storage';

interface PersistedQueue {
  /** The page that owned it is gone (pagehide); another page may adopt it. */
  closed?: boolean;
  t: number;
  items: Message[];
}

// A queue left by a page that crashed (no pagehide) is adopted after this long.
const ABANDONED_MS = 24 * 3600 * 1000;

export class EventQueue {
  private items: Message[] = [];
  private readonly inflight = new Set<string>();
  // On their way in a request the browser finishes after the page has gone: not stored for the next page.
  private readonly handedOver = new Set<string>();
  private readonly key: string;
  private closed = false;
  private storedAtClose = false;

  constructor(
    private readonly store: StateStore,
    readonly queueId: string,
    private readonly maxSize: number,
    private readonly now: () => number,
  ) {
    this.key = `q.${queueId}`;
    const own = store.getJSON<PersistedQueue>(this.key);
    if (own && Array.isArray(own.items)) this.items = own.items;
  }

  /** Takes over the queues of pages that closed with unsent messages. */
  adoptOrphans(): number {
    const keys = this.store.keys();
    if (!keys) return 0;
    let adopted = 0;
    const seen = new Set(this.items.map((m) => m.messageId));
    for (const k of keys) {
      if (!k.startsWith('q.') || k === this.key) continue;
      const q = this.store.getJSON<PersistedQueue>(k);
      if (!q || !Array.isArray(q.items)) {
        this.store.remove(k);
        continue;
      }
      if (!q.closed && this.now() - (q.t || 0) < ABANDONED_MS) continue;
      this.store.remove(k);
      for (const m of q.items) {
        if (m && m.messageId && !seen.has(m.messageId)) {
          seen.add(m.messageId);
          this.items.push(m);
          adopted++;
        }
      }
    }
    if (adopted) {
      this.items.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
      this.trim();
      this.save();
    }
    return adopted;
  }

  get length(): number {
    return this.items.length;
  }

  /** Messages neither sent nor being sent. */
  get pendingCount(): number {
    return this.items.length - this.inflight.size;
  }

  /** Adds a message; returns those dropped (oldest first) to stay within maxSize. */
  push(message: Message): Message[] {
    this.items.push(message);
    const dropped = this.trim();
    this.save();
    return dropped;
  }

  private trim(): Message[] {
    const dropped: Message[] = [];
    let i = 0;
    while (this.items.length > this.maxSize && i < this.items.length) {
      if (this.inflight.has(this.items[i].messageId)) {
        i++;
        continue;
      }
      dropped.push(this.items.splice(i, 1)[0]);
    }
    return dropped;
  }

  /** The oldest pending messages, at most `maxCount` and (except a lone message) `maxBytes` of JSON. */
  next(maxCount: number, maxBytes: number): Message[] {
    const out: Message[] = [];
    let bytes = 0;
    for (const m of this.items) {
      if (out.length >= maxCount) break;
      if (this.inflight.has(m.messageId)) continue;
      const size = utf8Length(JSON.stringify(m)) + 1;
      if (out.length > 0 && bytes + size > maxBytes) break;
      out.push(m);
      bytes += size;
    }
    return out;
  }

  pending(): Message[] {
    return this.items.filter((m) => !this.inflight.has(m.messageId));
  }

  markInFlight(messages: Message[]): void {
    for (const m of messages) this.inflight.add(m.messageId);
  }

  release(messages: Message[]): void {
    for (const m of messages) this.inflight.delete(m.messageId);
  }

  /** The page is closing while these are on their way: the next page must not send them again. */
  handOver(messages: Message[]): void {
    for (const m of messages) this.handedOver.add(m.messageId);
    this.save();
  }

  /**
   * Back from the back-forward cache: messages another page adopted from storage meanwhile are
   * its to send; this page keeps what is still stored and what is on its way.
   */
  reclaim(): void {
    const own = this.store.getJSON<PersistedQueue>(this.key);
    // Gone from storage: adopted (unless storage never took it, then nobody else has these).
    if (own || this.storedAtClose) {
      const stored = new Set((own && Array.isArray(own.items) ? own.items : []).map((m) => m.messageId));
      this.items = this.items.filter((m) => stored.has(m.messageId) || this.inflight.has(m.messageId));
    }
    this.handedOver.clear();
    this.setClosed(false);
  }

  /** Done with these, delivered or refused for good. */
  remove(messages: Message[]): void {
    const ids = new Set(messages.map((m) => m.messageId));
    for (const id of ids) {
      this.inflight.delete(id);
      this.handedOver.delete(id);
    }
    this.items = this.items.filter((m) => !ids.has(m.messageId));
    this.save();
  }

  setClosed(closed: boolean): void {
    this.closed = closed;
    this.save();
    this.storedAtClose = closed && this.store.get(this.key) !== null;
  }

  clear(): void {
    this.items = [];
    this.inflight.clear();
    this.handedOver.clear();
    this.store.remove(this.key);
  }

  /** Writes the queue to storage (a no-op into memory before consent). */
  save(): void {
    const items = this.handedOver.size ? this.items.filter((m) => !this.handedOver.has(m.messageId)) : this.items;
    if (items.length === 0 && !this.closed) {
      this.store.remove(this.key);
      return;
    }
    const q: PersistedQueue = { t: this.now(), items };
    if (this.closed) q.closed = true;
    this.store.setJSON(this.key, q);
  }
}

/** Bytes of a string encoded as UTF-8 (what the request body will weigh). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
