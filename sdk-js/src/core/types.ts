// Shared types of the core: messages, options and the two plug points (storage, transport).

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type Properties = Record<string, unknown>;

export type MessageType = 'track' | 'page' | 'screen' | 'identify' | 'alias' | 'group';

export interface Campaign {
  source?: string;
  medium?: string;
  name?: string;
  term?: string;
  content?: string;
}

export interface PageContext {
  url?: string;
  path?: string;
  title?: string;
  referrer?: string;
  search?: string;
}

export interface Context {
  page?: PageContext;
  screen?: { name?: string; width?: number; height?: number; density?: number };
  campaign?: Campaign;
  userAgent?: string;
  locale?: string;
  timezone?: string;
  library: { name: string; version: string };
  sessionId?: string;
  channel: 'web' | 'app';
  [key: string]: unknown;
}

/** One Segment-spec message, as sent to the collector. */
export interface Message {
  type: MessageType;
  messageId: string;
  timestamp: string;
  anonymousId: string;
  userId?: string;
  event?: string;
  name?: string;
  previousId?: string;
  groupId?: string;
  properties?: Properties;
  traits?: Properties;
  context: Context;
}

/** Per-call options, the last argument of every call. */
export interface CallOptions {
  /** When it happened (defaults to now); the snippet passes the time of the queued call. */
  timestamp?: Date | number | string;
  /** Merged over the automatic context. */
  context?: Record<string, unknown>;
}

/**
 * Synchronous key/value storage. localStorage fits as is; for React Native's
 * AsyncStorage use `hydrateAsyncStorage`, which loads the keys first.
 */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  /** All keys; lets a browser tab adopt the unsent queue of a closed tab. */
  keys?(): string[];
}

export interface TransportResponse {
  status: number;
  /** Seconds from a Retry-After header, when the response had one that could be read. */
  retryAfter?: number | null;
  body?: unknown;
}

export interface SendTarget {
  url: string;
  writeKey: string;
}

export interface Transport {
  /** POSTs a JSON body; rejects on network failure. */
  send(body: string, target: SendTarget, opts: { keepalive: boolean }): Promise<TransportResponse>;
  /** Hands a body to the browser to deliver after the page is gone; false when refused. */
  beacon?(body: string, target: SendTarget): boolean;
}

export type ConsentState = 'granted' | 'denied' | 'pending';

export interface DeliveryError {
  kind: 'rejected' | 'dropped' | 'retrying' | 'overflow';
  status?: number;
  messageIds: string[];
  detail?: unknown;
}

export interface CoreOptions {
  writeKey: string;
  /** Collector base URL, e.g. https://collect.example.com (no trailing /v1). */
  endpoint: string;
  channel?: 'web' | 'app';
  /** Send when this many events are queued. */
  flushAt?: number;
  /** …or this many ms after the first unsent event. */
  flushInterval?: number;
  /** Upper bound of one batch body in bytes (collector default limit is 512 KiB). */
  maxBatchBytes?: number;
  /** Upper bound of one beacon body in bytes (browsers allow ~64 KiB in flight). */
  maxBeaconBytes?: number;
  /** Events kept while offline; the oldest are dropped beyond this. */
  maxQueueSize?: number;
  /** Backoff for network errors and 5xx: base and cap in ms. */
  retryBaseDelay?: number;
  retryMaxDelay?: number;
  /** Session ends after this many minutes without an event. */
  sessionTimeout?: number;
  /** Hold everything in memory, send and store nothing, until optIn(). */
  requireConsent?: boolean;
  /** Use this anonymous id (e.g. handed from a native app to its web view). */
  anonymousId?: string;
  storage?: KeyValueStorage;
  /** Prefix of every storage key. */
  storagePrefix?: string;
  transport?: Transport;
  /** Extra context for every message (page, userAgent …); the browser layer sets it. */
  contextProvider?: () => Partial<Context>;
  /** Told about rejected, dropped and retried batches. */
  onError?: (error: DeliveryError) => void;
  /** Sees every message before it is queued; return null to drop it. */
  beforeSend?: (message: Message) => Message | null;
  /** Name of this instance's persisted queue; browsers use one per page load. */
  queueId?: string;
  /** For tests. */
  now?: () => number;
  random?: () => number;
}
