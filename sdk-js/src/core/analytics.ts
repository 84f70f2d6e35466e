// The core client: builds Segment-spec messages and owns identity, consent, the queue and delivery. No DOM.

import type {
  CallOptions,
  Campaign,
  ConsentState,
  Context,
  CoreOptions,
  DeliveryError,
  Message,
  MessageType,
  Properties,
} from './types';
import { MemoryStorage, StateStore } from './storage';
import { Identity } from './identity';
import { EventQueue } from './queue';
import { Delivery } from './delivery';
import { fetchTransport } from './transport';
import { uuid4 } from './uuid';
import { LIBRARY_NAME, LIBRARY_VERSION } from './version';
import {
  checkoutProperties,
  orderProperties,
  productProperties,
  snakeCase,
  type Checkout,
  type Order,
  type Product,
} from './ecommerce';

export const DEFAULTS = {
  flushAt: 20,
  flushInterval: 3000,
  maxBatchEvents: 100,
  maxBatchBytes: 450 * 1024,
  maxBeaconBytes: 60 * 1024,
  maxQueueSize: 1000,
  retryBaseDelay: 1000,
  retryMaxDelay: 60_000,
  sessionTimeout: 30,
  storagePrefix: 'fh.',
};

type Listener = (message: Message) => void;

export class Analytics {
  readonly options: CoreOptions;
  private readonly store: StateStore;
  private identity: Identity;
  private readonly queue: EventQueue;
  private readonly delivery: Delivery;
  private consentState: ConsentState;
  private readonly listeners: Listener[] = [];
  private readonly now: () => number;
  private callTime: number | undefined;

  constructor(options: CoreOptions) {
    if (!options || !options.writeKey) throw new Error('funnelhouse: init needs a writeKey');
    if (!options.endpoint) throw new Error('funnelhouse: init needs an endpoint (the collector URL)');
    this.options = options;
    this.now = options.now || Date.now;
    const backing = options.storage || new MemoryStorage();
    const prefix = options.storagePrefix || DEFAULTS.storagePrefix;
    const probe = new StateStore(backing, prefix, false);
    const recorded = probe.recorded('consent');
    this.consentState =
      recorded === 'denied' ? 'denied' : recorded === 'granted' || !options.requireConsent ? 'granted' : 'pending';
    this.store = new StateStore(backing, prefix, this.consentState === 'granted');
    this.identity = this.newIdentity();
    this.queue = new EventQueue(this.store, options.queueId || 'main', options.maxQueueSize || DEFAULTS.maxQueueSize, this.now);
    if (this.consentState === 'granted') this.queue.adoptOrphans();
    this.delivery = new Delivery(this.queue, options.transport || fetchTransport(), {
      writeKey: options.writeKey,
      endpoint: options.endpoint,
      flushAt: Math.max(1, options.flushAt || DEFAULTS.flushAt),
      flushInterval: options.flushInterval !== undefined ? options.flushInterval : DEFAULTS.flushInterval,
      maxBatchEvents: Math.max(DEFAULTS.maxBatchEvents, options.flushAt || 0),
      maxBatchBytes: options.maxBatchBytes || DEFAULTS.maxBatchBytes,
      maxBeaconBytes: options.maxBeaconBytes || DEFAULTS.maxBeaconBytes,
      retryBaseDelay: options.retryBaseDelay || DEFAULTS.retryBaseDelay,
      retryMaxDelay: options.retryMaxDelay || DEFAULTS.retryMaxDelay,
      now: this.now,
      random: options.random || Math.random,
      onError: options.onError,
    });
    this.delivery.setEnabled(this.consentState === 'granted');
  }

  private newIdentity(): Identity {
    const minutes = this.options.sessionTimeout || DEFAULTS.sessionTimeout;
    return new Identity(this.store, minutes * 60_000, this.now, this.options.anonymousId);
  }

  // ---- the calls -------------------------------------------------------------------------

  track(event: string, properties?: Properties, options?: CallOptions): void {
    if (!event) return;
    this.enqueue('track', { event: String(event), properties: properties || {} }, options);
  }

  /** page(), page(name), page(properties) or page(name, properties). */
  page(name?: string | Properties, properties?: Properties, options?: CallOptions): void {
    if (name && typeof name === 'object') {
      options = properties as CallOptions | undefined;
      properties = name;
      name = undefined;
    }
    const ctxPage = (this.options.contextProvider && this.options.contextProvider().page) || {};
    const pageOverride = options && options.context && (options.context.page as Properties | undefined);
    const props: Properties = { ...ctxPage, ...(pageOverride || {}) };
    if (name) props.name = name;
    Object.assign(props, properties || {});
    const fields: Partial<Message> = { properties: props };
    if (name) fields.name = name as string;
    this.enqueue('page', fields, options);
  }

  screen(name: string, properties?: Properties, options?: CallOptions): void {
    const props: Properties = { name, ...(properties || {}) };
    const context = { ...(options && options.context), screen: { name } };
    this.enqueue('screen', { name, properties: props }, { ...options, context });
  }

  /** identify(userId, traits) or identify(traits) for an anonymous visitor. */
  identify(userId?: string | Properties, traits?: Properties, options?: CallOptions): void {
    if (userId && typeof userId === 'object') {
      options = traits as CallOptions | undefined;
      traits = userId;
      userId = undefined;
    }
    if (this.consentState === 'denied') return;
    this.identity.identify(userId as string | undefined, traits);
    this.enqueue('identify', { traits: { ...this.identity.getTraits() } }, options);
  }

  /** Links previousId (default: the current user or anonymous id) to userId. */
  alias(userId: string, previousId?: string, options?: CallOptions): void {
    if (!userId || this.consentState === 'denied') return;
    const prev = previousId || this.identity.getUserId() || this.identity.getAnonymousId();
    this.identity.identify(String(userId), undefined);
    this.enqueue('alias', { previousId: prev }, options);
  }

  group(groupId: string, traits?: Properties, options?: CallOptions): void {
    if (!groupId) return;
    this.enqueue('group', { groupId: String(groupId), traits: traits || {} }, options);
  }

  /** Logout: forget the user; a new anonymous id and session. Queued events keep their ids. */
  reset(): void {
    this.identity.reset();
  }

  /** Sends what is queued now; resolves when the queue is empty or waiting to retry. */
  flush(): Promise<void> {
    if (this.consentState !== 'granted') return Promise.resolve();
    return this.delivery.flush();
  }

  // ---- ecommerce ---------------------------------------------------------------------------

  productView(product: Product, options?: CallOptions): void {
    this.track('product_view', productProperties(product), options);
  }

  addToCart(product: Product, options?: CallOptions): void {
    this.track('add_to_cart', productProperties(product, 1), options);
  }

  removeFromCart(product: Product, options?: CallOptions): void {
    this.track('remove_from_cart', productProperties(product, 1), options);
  }

  beginCheckout(checkout: Checkout, options?: CallOptions): void {
    this.track('begin_checkout', checkoutProperties(checkout), options);
  }

  purchase(order: Order, options?: CallOptions): void {
    this.track('purchase', orderProperties(order), options);
  }

  search(query: string, properties?: Properties, options?: CallOptions): void {
    const props: Properties = { query: String(query) };
    for (const k of Object.keys(properties || {})) props[snakeCase(k)] = (properties as Properties)[k];
    this.track('search', props, options);
  }

  // ---- consent -----------------------------------------------------------------------------

  get consent(): ConsentState {
    return this.consentState;
  }

  /** Consent given: keep what was held in memory, store it, start sending. */
  optIn(): void {
    const wasDenied = this.consentState === 'denied';
    this.consentState = 'granted';
    this.store.persist();
    this.store.record('consent', 'granted');
    if (wasDenied) this.identity = this.newIdentity();
    this.queue.save();
    this.queue.adoptOrphans();
    this.delivery.setEnabled(true);
  }

  /** Consent refused or withdrawn: drop what is queued, forget all ids, send nothing more. */
  optOut(): void {
    this.consentState = 'denied';
    this.delivery.setEnabled(false);
    this.queue.clear();
    this.store.wipe();
    // Remembering the refusal itself is needed so it is not asked for again.
    this.store.record('consent', 'denied');
    this.identity = this.newIdentity();
  }

  // ---- identity ----------------------------------------------------------------------------

  getAnonymousId(): string {
    return this.identity.getAnonymousId();
  }

  setAnonymousId(id: string): void {
    if (id) this.identity.setAnonymousId(String(id));
  }

  getUserId(): string | undefined {
    return this.identity.getUserId();
  }

  getSessionId(): string {
    return this.identity.touchSession().id;
  }

  /** Runs a call as if made at `at` (calls queued before the script loaded keep their time). */
  replay(method: string, args: unknown[], at?: number): unknown {
    const fn = (this as unknown as Record<string, unknown>)[method];
    if (typeof fn !== 'function' || method === 'replay' || method === 'constructor') return undefined;
    this.callTime = at;
    try {
      return (fn as (...a: unknown[]) => unknown).apply(this, args);
    } finally {
      this.callTime = undefined;
    }
  }

  // ---- hooks for platform layers -----------------------------------------------------------

  /** A visit starts (page load, app open): records the campaign and referrer it came with. */
  land(campaign: Campaign | undefined, referrer?: string): void {
    if (this.consentState === 'denied') return;
    this.identity.land(campaign, referrer);
  }

  /** Every message queued, after beforeSend (auto-capture listens, e.g. for product views). */
  subscribe(listener: Listener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  setOnline(online: boolean): void {
    this.delivery.setOnline(online);
  }

  /**
   * The page is being hidden or closed: beacon what is pending. Closing, the stored queue is
   * left to the next page, without what a request still on its way carries (see Delivery.closing).
   */
  pageHidden(closing: boolean): void {
    if (this.consentState !== 'granted') return;
    this.delivery.beacon();
    if (!closing) return;
    this.delivery.closing();
    this.queue.setClosed(true);
  }

  /** The page came back (e.g. from the back-forward cache). */
  pageShown(): void {
    if (this.consentState !== 'granted') return;
    this.queue.reclaim();
    this.delivery.schedule();
  }

  /** Stops timers (tests, hot reload). Queued messages stay stored. */
  close(): void {
    this.delivery.stop();
  }

  get queueLength(): number {
    return this.queue.length;
  }

  // ---- building messages -------------------------------------------------------------------

  private enqueue(type: MessageType, fields: Partial<Message>, options?: CallOptions): void {
    if (this.consentState === 'denied') return;
    const session = this.identity.touchSession();
    const base = (this.options.contextProvider && this.options.contextProvider()) || {};
    const context: Context = {
      ...base,
      library: { name: LIBRARY_NAME, version: LIBRARY_VERSION },
      channel: this.options.channel || base.channel || 'app',
      sessionId: session.id,
    };
    if (!context.locale) context.locale = intlLocale();
    if (!context.timezone) context.timezone = intlTimeZone();
    if (session.campaign) context.campaign = session.campaign;
    if (options && options.context) {
      for (const k of Object.keys(options.context)) {
        const v = options.context[k];
        const cur = context[k];
        context[k] = isPlainObject(v) && isPlainObject(cur) ? { ...cur, ...v } : v;
      }
    }
    let message: Message | null = {
      type,
      messageId: uuid4(),
      timestamp: toIso(options && options.timestamp !== undefined ? options.timestamp : this.callTime, this.now()),
      anonymousId: this.identity.getAnonymousId(),
      ...fields,
      context,
    };
    const userId = this.identity.getUserId();
    if (userId) message.userId = userId;
    if (this.options.beforeSend) {
      try {
        message = this.options.beforeSend(message);
      } catch {
        // a broken hook must not lose the event
      }
      if (!message) return;
    }
    const dropped = this.queue.push(message);
    if (dropped.length) this.report({ kind: 'overflow', messageIds: dropped.map((m) => m.messageId) });
    for (const l of this.listeners.slice()) {
      try {
        l(message);
      } catch {
        // ignore
      }
    }
    if (this.consentState === 'granted') this.delivery.schedule();
  }

  private report(e: DeliveryError): void {
    if (this.options.onError) {
      try {
        this.options.onError(e);
      } catch {
        // ignore
      }
    }
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function toIso(t: Date | number | string | undefined, fallback: number): string {
  if (t === undefined || t === null) return new Date(fallback).toISOString();
  const d = t instanceof Date ? t : new Date(t);
  return isNaN(d.getTime()) ? new Date(fallback).toISOString() : d.toISOString();
}

function intlLocale(): string | undefined {
  try {
    return Intl.DateTimeFormat().resolvedOptions().locale;
  } catch {
    return undefined;
  }
}

function intlTimeZone(): string | undefined {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}
