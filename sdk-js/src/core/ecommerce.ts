// Ecommerce helpers: build properties that match the tracking plan (snake_case, Segment names).

import type { Properties } from './types';

/** A product as a shop usually has it; camelCase or snake_case keys both work. */
export interface Product {
  productId?: string | number;
  product_id?: string | number;
  sku?: string;
  name?: string;
  category?: string;
  brand?: string;
  variant?: string;
  price?: number;
  quantity?: number;
  currency?: string;
  coupon?: string;
  position?: number;
  url?: string;
  imageUrl?: string;
  image_url?: string;
  [key: string]: unknown;
}

export interface Checkout {
  checkoutId?: string;
  orderId?: string;
  value?: number;
  revenue?: number;
  currency?: string;
  coupon?: string;
  shipping?: number;
  tax?: number;
  discount?: number;
  items?: Product[];
  /** Segment's name for items. */
  products?: Product[];
  [key: string]: unknown;
}

export interface Order extends Checkout {
  orderId?: string;
  order_id?: string;
  total?: number;
  subtotal?: number;
}

export function snakeCase(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase();
}

/** Top-level keys to snake_case; ids become strings, as the plan types them. */
function snakeKeys(obj: Record<string, unknown>): Properties {
  const out: Properties = {};
  for (const k of Object.keys(obj)) {
    const v = obj[k];
    if (v === undefined) continue;
    out[snakeCase(k)] = v;
  }
  for (const idKey of ['product_id', 'order_id', 'checkout_id', 'cart_id']) {
    if (typeof out[idKey] === 'number') out[idKey] = String(out[idKey]);
  }
  return out;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

export function productProperties(p: Product, defaultQuantity?: number): Properties {
  const out = snakeKeys(p);
  if (defaultQuantity !== undefined && out.quantity === undefined) out.quantity = defaultQuantity;
  if (out.value === undefined && typeof out.price === 'number' && typeof out.quantity === 'number') {
    out.value = round2(out.price * out.quantity);
  }
  return out;
}

export function itemProperties(p: Product): Properties {
  const out = snakeKeys(p);
  if (out.quantity === undefined) out.quantity = 1;
  return out;
}

function itemsTotal(items: Properties[]): number | undefined {
  let sum = 0;
  for (const it of items) {
    if (typeof it.price !== 'number') return undefined;
    sum += it.price * (typeof it.quantity === 'number' ? it.quantity : 1);
  }
  return round2(sum);
}

export function checkoutProperties(c: Checkout): Properties {
  const { items, products, ...rest } = c;
  const out = snakeKeys(rest);
  const list = (items || products || []).map(itemProperties);
  out.items = list;
  if (out.value === undefined) {
    const total = itemsTotal(list);
    if (total !== undefined) out.value = total;
  }
  return out;
}

export function orderProperties(o: Order): Properties {
  const { items, products, ...rest } = o;
  const out = snakeKeys(rest);
  const list = (items || products || []).map(itemProperties);
  out.items = list;
  if (out.revenue === undefined) {
    const total = itemsTotal(list);
    if (total !== undefined) out.revenue = total;
  }
  return out;
}
