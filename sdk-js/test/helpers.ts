// Test doubles for the core: a scripted transport and a storage that records writes.

import type { KeyValueStorage, Message, SendTarget, Transport, TransportResponse } from '../src/core/types';
import { MemoryStorage } from '../src/core/storage';
import { Analytics } from '../src/core/analytics';
import type { CoreOptions } from '../src/core/types';

export interface SentRequest {
  url: string;
  writeKey: string;
  body: { batch: Message[]; sentAt: string; writeKey: string };
  raw: string;
  keepalive: boolean;
}

type Reply = TransportResponse | Error;

/** Answers each request with the next scripted reply (the last one repeats); records every request. */
export class FakeTransport implements Transport {
  requests: SentRequest[] = [];
  beacons: SentRequest[] = [];
  beaconAccepts: boolean[] = [];
  private replies: Reply[];

  constructor(...replies: Reply[]) {
    this.replies = replies.length ? replies : [{ status: 200, body: { accepted: 1, rejected: [] } }];
  }

  reply(...replies: Reply[]): void {
    this.replies = replies;
  }

  async send(raw: string, target: SendTarget, opts: { keepalive: boolean }): Promise<TransportResponse> {
    this.requests.push({ url: target.url, writeKey: target.writeKey, body: JSON.parse(raw), raw, keepalive: opts.keepalive });
    const r = this.replies.length > 1 ? this.replies.shift()! : this.replies[0];
    if (r instanceof Error) throw r;
    return r;
  }

  beacon(raw: string, target: SendTarget): boolean {
    const ok = this.beaconAccepts.length ? this.beaconAccepts.shift()! : true;
    if (ok) this.beacons.push({ url: target.url, writeKey: target.writeKey, body: JSON.parse(raw), raw, keepalive: true });
    return ok;
  }

  /** Every message sent, in order, across requests. */
  get sent(): Message[] {
    return this.requests.flatMap((r) => r.body.batch);
  }
}

/** MemoryStorage that counts writes, to prove nothing is stored before consent. */
export class RecordingStorage extends MemoryStorage implements KeyValueStorage {
  writes: string[] = [];
  override setItem(key: string, value: string): void {
    this.writes.push(key);
    super.setItem(key, value);
  }
}

export function client(transport: Transport, options: Partial<CoreOptions> = {}): Analytics {
  return new Analytics({
    writeKey: 'wk_test',
    endpoint: 'https://collect.example.com/',
    transport,
    random: () => 0.5,
    flushInterval: 1000,
    ...options,
  });
}

/** Lets pending promise callbacks run (fake timers do not advance microtasks by themselves). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}
