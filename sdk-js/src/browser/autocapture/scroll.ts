// Auto-capture of scroll depth: one event per milestone reached, per page, from the furthest point reached.

import type { Hub } from '../hub';

export interface ScrollOptions {
  /** Percent milestones, default [25, 50, 75, 90, 100]. */
  milestones?: number[];
}

export function captureScroll(hub: Hub, options: ScrollOptions = {}): void {
  const milestones = (options.milestones || [25, 50, 75, 90, 100]).slice().sort((a, b) => a - b);
  let reached = new Set<number>();
  // Scrolling a product page counts towards that product's engagement.
  let productId: string | undefined;
  hub.analytics.subscribe((m) => {
    if (m.type === 'track' && m.event === 'product_view' && m.properties && m.properties.product_id) {
      productId = String(m.properties.product_id);
    }
  });

  // Read on every scroll event (browsers send at most one per frame): a position read later
  // would miss the bottom of a fast scroll that goes straight back up.
  const measure = (): void => {
    const doc = document.documentElement;
    const height = Math.max(doc.scrollHeight, document.body ? document.body.scrollHeight : 0);
    const viewport = window.innerHeight;
    // A page that fits the window cannot be scrolled: no depth to report.
    if (height <= viewport + 1) return;
    const top = window.scrollY || doc.scrollTop || 0;
    const percent = Math.min(100, ((top + viewport) / height) * 100);
    for (const m of milestones) {
      if (m > percent + 0.5 || reached.has(m)) continue;
      reached.add(m);
      const props: Record<string, unknown> = { depth_percent: m, depth_px: Math.round(top), page_height_px: Math.round(height) };
      if (productId) props.product_id = productId;
      hub.analytics.track('scroll', props);
    }
  };

  hub.listen(window, 'scroll', measure, { passive: true });
  hub.onLeave(() => {
    reached = new Set<number>();
    productId = undefined;
  });
}
