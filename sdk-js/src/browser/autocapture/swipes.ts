// Auto-capture of swipes on touch screens: direction, distance and the swiped element (e.g. a carousel).

import type { Hub } from '../hub';
import { elementName, ignored, productIdOf } from '../dom';

export interface SwipeOptions {
  /** Shortest gesture that counts, in CSS pixels (default 50). */
  minDistance?: number;
  /** Longest gesture that counts, in ms (default 1000): slower drags are not swipes. */
  maxDuration?: number;
}

// Vertical swipes are page scrolls (measured by scroll depth) unless the element says it is swipeable.
const SWIPEABLE = '[data-swipe]';

export function captureSwipes(hub: Hub, options: SwipeOptions = {}): void {
  const minDistance = options.minDistance || 50;
  const maxDuration = options.maxDuration || 1000;
  let start: { x: number; y: number; t: number; target: Element } | null = null;

  hub.listen(
    document,
    'touchstart',
    (e) => {
      const te = e as TouchEvent;
      if (te.touches.length !== 1) {
        start = null; // pinch or multi-finger: not a swipe
        return;
      }
      const t = te.touches[0];
      start = { x: t.clientX, y: t.clientY, t: Date.now(), target: te.target as Element };
    },
    { capture: true, passive: true },
  );

  hub.listen(
    document,
    'touchend',
    (e) => {
      const te = e as TouchEvent;
      const s = start;
      start = null;
      if (!s || te.changedTouches.length < 1) return;
      const t = te.changedTouches[0];
      const dx = t.clientX - s.x;
      const dy = t.clientY - s.y;
      const distance = Math.sqrt(dx * dx + dy * dy);
      if (distance < minDistance || Date.now() - s.t > maxDuration) return;
      const horizontal = Math.abs(dx) >= Math.abs(dy);
      const direction = horizontal ? (dx < 0 ? 'left' : 'right') : dy < 0 ? 'up' : 'down';
      const target = s.target instanceof Element ? s.target : null;
      if (!target || ignored(target)) return;
      const marked = target.closest(SWIPEABLE);
      if (!horizontal && !marked) return;
      const el = marked || target.closest('[data-track], [id]') || target;
      const props: Record<string, unknown> = {
        direction,
        element: elementName(el, 'data-swipe'),
        distance_px: Math.round(distance * 10) / 10,
      };
      const productId = productIdOf(el);
      if (productId) props.product_id = productId;
      hub.analytics.track('swipe', props);
    },
    { capture: true, passive: true },
  );

  hub.listen(document, 'touchcancel', () => (start = null), { capture: true, passive: true });
}
