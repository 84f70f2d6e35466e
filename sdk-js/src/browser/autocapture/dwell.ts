// How long a product page is visible: measured from a product view until the page is left or hidden.

import type { Hub } from '../hub';

export function captureProductDwell(hub: Hub): void {
  let current: { productId: string; visibleMs: number; since: number | null } | null = null;

  const visible = (): boolean => document.visibilityState !== 'hidden';

  // Sends the visible time so far; a page hidden and shown again reports each stretch.
  const report = (): void => {
    if (!current) return;
    if (current.since !== null) current.visibleMs += Date.now() - current.since;
    current.since = null;
    const ms = Math.round(current.visibleMs);
    current.visibleMs = 0;
    if (ms > 0) hub.analytics.track('product_dwell', { product_id: current.productId, dwell_ms: ms });
  };

  hub.analytics.subscribe((m) => {
    if (m.type !== 'track' || m.event !== 'product_view') return;
    const id = m.properties && m.properties.product_id;
    if (id === undefined || id === null) return;
    report();
    current = { productId: String(id), visibleMs: 0, since: visible() ? Date.now() : null };
  });

  hub.onLeave(() => {
    report();
    current = null;
  });
  hub.onHide(report);
  hub.listen(document, 'visibilitychange', () => {
    if (current && visible() && current.since === null) current.since = Date.now();
  });
}
