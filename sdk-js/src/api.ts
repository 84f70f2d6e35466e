// One page-wide client behind plain functions: init() once, call the rest anywhere (calls before init are kept).

import { BrowserAnalytics, type BrowserOptions } from './browser/index';
import type { CallOptions, ConsentState, Properties } from './core/types';
import type { Checkout, Order, Product } from './core/ecommerce';

let client: BrowserAnalytics | null = null;
const early: [string, unknown[], number][] = [];

/** Starts the SDK (once per page); returns the client. */
export function init(options: BrowserOptions): BrowserAnalytics {
  if (client) return client;
  client = new BrowserAnalytics(options);
  for (const [method, args, at] of early.splice(0)) client.replay(method, args, at);
  return client;
}

/** The client, or null before init(). */
export function getClient(): BrowserAnalytics | null {
  return client;
}

/** Keeps a call made before init (with the time it was made) for when init comes. */
export function deferCall(method: string, args: unknown[], at: number): void {
  if (client) client.replay(method, args, at);
  else early.push([method, args, at]);
}

function call(method: string, args: unknown[]): unknown {
  if (client) return client.replay(method, args);
  early.push([method, args, Date.now()]);
  return undefined;
}

export const track = (event: string, properties?: Properties, options?: CallOptions): void => void call('track', [event, properties, options]);
export const page = (name?: string | Properties, properties?: Properties, options?: CallOptions): void => void call('page', [name, properties, options]);
export const screen = (name: string, properties?: Properties, options?: CallOptions): void => void call('screen', [name, properties, options]);
export const identify = (userId?: string | Properties, traits?: Properties, options?: CallOptions): void => void call('identify', [userId, traits, options]);
export const alias = (userId: string, previousId?: string, options?: CallOptions): void => void call('alias', [userId, previousId, options]);
export const group = (groupId: string, traits?: Properties, options?: CallOptions): void => void call('group', [groupId, traits, options]);
export const reset = (): void => void call('reset', []);
export const optIn = (): void => void call('optIn', []);
export const optOut = (): void => void call('optOut', []);
export const productView = (product: Product, options?: CallOptions): void => void call('productView', [product, options]);
export const addToCart = (product: Product, options?: CallOptions): void => void call('addToCart', [product, options]);
export const removeFromCart = (product: Product, options?: CallOptions): void => void call('removeFromCart', [product, options]);
export const beginCheckout = (checkout: Checkout, options?: CallOptions): void => void call('beginCheckout', [checkout, options]);
export const purchase = (order: Order, options?: CallOptions): void => void call('purchase', [order, options]);
export const search = (query: string, properties?: Properties, options?: CallOptions): void => void call('search', [query, properties, options]);
/** The page shows the results of the search just made: `count` of them (see Auto-capture: search). */
export const searchResults = (count: number): void => void call('searchResults', [count]);
export const setAnonymousId = (id: string): void => void call('setAnonymousId', [id]);

/** Sends what is queued; resolves when done (or waiting to retry). */
export function flush(): Promise<void> {
  return client ? client.flush() : Promise.resolve();
}

export function getAnonymousId(): string | undefined {
  return client ? client.getAnonymousId() : undefined;
}

export function getUserId(): string | undefined {
  return client ? client.getUserId() : undefined;
}

export function consent(): ConsentState | undefined {
  return client ? client.consent : undefined;
}
