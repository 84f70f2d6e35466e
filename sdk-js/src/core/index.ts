// The DOM-free core: usable in React Native, app web views, workers and Node.

export { Analytics, DEFAULTS } from './analytics';
export { MemoryStorage, hydrateAsyncStorage, type AsyncKeyValueStorage } from './storage';
export { fetchTransport, parseRetryAfter, withWriteKey, type FetchTransportOptions } from './transport';
export { productProperties, checkoutProperties, orderProperties, snakeCase, type Product, type Checkout, type Order } from './ecommerce';
export { uuid4 } from './uuid';
export { LIBRARY_NAME, LIBRARY_VERSION } from './version';
export type * from './types';

import { Analytics } from './analytics';
import type { CoreOptions } from './types';

/** A core client (no DOM); channel defaults to 'app'. */
export function createAnalytics(options: CoreOptions): Analytics {
  return new Analytics({ channel: 'app', ...options });
}
