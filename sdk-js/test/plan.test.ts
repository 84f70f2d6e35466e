// Payloads the SDK builds must match the tracking plan in ../funnelhouse/schemas (valid, and no unplanned keys).
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { FakeTransport, client } from './helpers';
import type { Message } from '../src/core/types';

const PLAN = join(__dirname, '..', '..', 'funnelhouse', 'schemas', 'events');

function schemaOf(event: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(PLAN, event, '1-0-0.json'), 'utf8'));
}

function expectPlanned(event: string, props: Record<string, unknown>): void {
  const schema = schemaOf(event);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const validate = ajv.compile(schema);
  const ok = validate(props);
  expect(validate.errors || [], `${event}: ${JSON.stringify(validate.errors)}`).toEqual([]);
  expect(ok).toBe(true);
  const planned = Object.keys((schema.properties as object) || {});
  const extra = Object.keys(props).filter((k) => !planned.includes(k));
  expect(extra, `${event} has unplanned properties`).toEqual([]);
}

async function sentBy(fn: (a: ReturnType<typeof client>) => void): Promise<Message[]> {
  const t = new FakeTransport();
  const a = client(t);
  fn(a);
  await a.flush();
  a.close();
  return t.sent;
}

const shoe = { productId: 'sku-42', name: 'Road Runner', price: 89.9, currency: 'EUR', category: 'Shoes/Running', imageUrl: 'https://x/y.jpg' };

describe('ecommerce helpers match the tracking plan', () => {
  it('productView', async () => {
    const [m] = await sentBy((a) => a.productView(shoe));
    expect(m.event).toBe('product_view');
    expect(m.properties).toEqual({ product_id: 'sku-42', name: 'Road Runner', price: 89.9, currency: 'EUR', category: 'Shoes/Running', image_url: 'https://x/y.jpg' });
    expectPlanned('product_view', m.properties!);
  });

  it('addToCart and removeFromCart default quantity 1 and compute value', async () => {
    const [add, remove] = await sentBy((a) => {
      a.addToCart({ ...shoe, quantity: 2 });
      a.removeFromCart({ product_id: 17, price: 5 });
    });
    expect(add.event).toBe('add_to_cart');
    expect(add.properties).toMatchObject({ product_id: 'sku-42', quantity: 2, value: 179.8 });
    expect(remove.event).toBe('remove_from_cart');
    expect(remove.properties).toMatchObject({ product_id: '17', quantity: 1, value: 5 });
    expectPlanned('add_to_cart', add.properties!);
    expectPlanned('remove_from_cart', remove.properties!);
  });

  it('beginCheckout with items sums the value', async () => {
    const [m] = await sentBy((a) =>
      a.beginCheckout({ currency: 'EUR', items: [{ ...shoe, quantity: 2 }, { productId: 'sock-1', price: 4.5 }] }),
    );
    expect(m.event).toBe('begin_checkout');
    expect(m.properties).toMatchObject({ currency: 'EUR', value: 184.3 });
    expect((m.properties!.items as unknown[]).length).toBe(2);
    expectPlanned('begin_checkout', m.properties!);
  });

  it('purchase with items, coupon and revenue', async () => {
    const [m] = await sentBy((a) =>
      a.purchase({ orderId: 'o-1001', currency: 'EUR', coupon: 'SPRING10', products: [{ ...shoe, quantity: 2 }] }),
    );
    expect(m.event).toBe('purchase');
    expect(m.properties).toMatchObject({
      order_id: 'o-1001',
      revenue: 179.8,
      currency: 'EUR',
      coupon: 'SPRING10',
      items: [{ product_id: 'sku-42', name: 'Road Runner', price: 89.9, quantity: 2, category: 'Shoes/Running' }],
    });
    expectPlanned('purchase', m.properties!);
  });

  it('search', async () => {
    const [m] = await sentBy((a) => a.search('running shoes', { resultCount: 12 }));
    expect(m.properties).toEqual({ query: 'running shoes', result_count: 12 });
    expectPlanned('search', m.properties!);
  });

  it('page carries the page fields the plan lists', async () => {
    const t = new FakeTransport();
    const a = client(t, {
      contextProvider: () => ({ page: { url: 'https://shop.example.com/p?x=1', path: '/p', title: 'P', referrer: '', search: '?x=1' } }),
    });
    a.page('Product detail', { category: 'Shop' });
    await a.flush();
    const m = t.sent[0];
    expect(m).toMatchObject({ type: 'page', name: 'Product detail' });
    expect(m.context.page).toMatchObject({ path: '/p' });
    expectPlanned('page_view', m.properties!);
  });

  it('screen names the screen in properties and context', async () => {
    const [m] = await sentBy((a) => a.screen('ProductDetail', { productId: 'sku-42' }));
    expect(m).toMatchObject({ type: 'screen', name: 'ProductDetail', context: { screen: { name: 'ProductDetail' } } });
  });
});
