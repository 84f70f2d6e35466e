// Auto-capture of clicks on links, buttons and data-track elements (never form values).

import type { Hub } from '../hub';
import { elementName, ignored, productIdOf, textOf, trackAttributes } from '../dom';

const CLICKABLE =
  '[data-track], a[href], button, input[type="button"], input[type="submit"], input[type="reset"], [role="button"], [role="link"], summary';

export function captureClicks(hub: Hub): void {
  // Capture phase: a page's stopPropagation() must not hide the click from us.
  hub.listen(
    document,
    'click',
    (e) => {
      const target = e.target as Element | null;
      if (!target || !target.closest) return;
      const el = target.closest(CLICKABLE);
      if (!el || ignored(el)) return;
      const props: Record<string, unknown> = { element: elementName(el) };
      const text = textOf(el);
      if (text) props.element_text = text;
      props.element_type = elementType(el);
      const href = el.closest('a[href]');
      if (href) props.target_url = (href as HTMLAnchorElement).href;
      const productId = productIdOf(el);
      if (productId) props.product_id = productId;
      const me = e as MouseEvent;
      if (typeof me.pageX === 'number' && me.pageX >= 0 && me.pageY >= 0) {
        props.x = Math.round(me.pageX);
        props.y = Math.round(me.pageY);
      }
      Object.assign(props, trackAttributes(el));
      hub.analytics.track('click', props);
    },
    { capture: true, passive: true },
  );
}

function elementType(el: Element): string {
  const tag = el.tagName.toLowerCase();
  if (tag === 'a' || el.getAttribute('role') === 'link') return 'link';
  if (tag === 'button' || tag === 'input' || el.getAttribute('role') === 'button') return 'button';
  return tag;
}
