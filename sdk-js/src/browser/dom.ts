// Small DOM helpers for auto-capture: selectors, visible text, and the element name an event reports.

const MAX_TEXT = 255;

/** A short CSS path to the element, stopping at the nearest id. */
export function selectorOf(el: Element): string {
  const parts: string[] = [];
  let node: Element | null = el;
  while (node && node.nodeType === 1 && parts.length < 5) {
    const tag = node.tagName.toLowerCase();
    if (node.id) {
      parts.unshift(`${tag}#${cssEscape(node.id)}`);
      break;
    }
    if (tag === 'html' || tag === 'body') {
      parts.unshift(tag);
      break;
    }
    let part = tag;
    const classes = (node.getAttribute('class') || '').trim().split(/\s+/).filter(Boolean).slice(0, 2);
    for (const c of classes) part += `.${cssEscape(c)}`;
    const parent: Element | null = node.parentElement;
    if (parent) {
      const same = Array.prototype.filter.call(parent.children, (c: Element) => c.tagName === node!.tagName);
      if (same.length > 1) part += `:nth-of-type(${same.indexOf(node) + 1})`;
    }
    parts.unshift(part);
    node = parent;
  }
  return parts.join(' > ');
}

function cssEscape(s: string): string {
  const css = (globalThis as { CSS?: { escape?: (s: string) => string } }).CSS;
  return css && css.escape ? css.escape(s) : s.replace(/[^A-Za-z0-9_-]/g, '\\$&');
}

// Never read what a visitor typed: form fields and editable regions are skipped.
const FIELD_TAGS = new Set(['INPUT', 'TEXTAREA', 'SELECT', 'OPTION', 'SCRIPT', 'STYLE', 'NOSCRIPT']);

/** Visible text of an element without form values, whitespace collapsed, capped. */
export function textOf(el: Element): string {
  if (FIELD_TAGS.has(el.tagName) || isEditable(el)) return '';
  let out = '';
  const walk = (n: Node): void => {
    if (out.length > MAX_TEXT * 2) return;
    if (n.nodeType === 3) out += n.nodeValue || '';
    else if (n.nodeType === 1) {
      const e = n as Element;
      if (FIELD_TAGS.has(e.tagName) || isEditable(e)) return;
      for (let c = e.firstChild; c; c = c.nextSibling) walk(c);
    }
  };
  walk(el);
  out = out.replace(/\s+/g, ' ').trim();
  if (!out) out = (el.getAttribute('aria-label') || el.getAttribute('title') || '').trim();
  return out.slice(0, MAX_TEXT);
}

function isEditable(el: Element): boolean {
  const ce = el.getAttribute('contenteditable');
  return ce !== null && ce !== 'false';
}

/** How events name an element: its data-track name, else #id, else a selector. */
export function elementName(el: Element, attr?: string): string {
  const tagged = (attr && el.getAttribute(attr)) || el.getAttribute('data-track');
  if (tagged) return tagged;
  if (el.id) return `#${el.id}`;
  return selectorOf(el);
}

export function productIdOf(el: Element): string | undefined {
  const p = el.closest('[data-product-id]');
  return p ? p.getAttribute('data-product-id') || undefined : undefined;
}

/** data-track-foo="bar" attributes as properties { foo: "bar" }. */
export function trackAttributes(el: Element): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < el.attributes.length; i++) {
    const a = el.attributes[i];
    if (a.name.indexOf('data-track-') === 0 && a.name !== 'data-track-ignore') {
      out[a.name.slice(11).replace(/-/g, '_')] = a.value;
    }
  }
  return out;
}

export function ignored(el: Element): boolean {
  return !!el.closest('[data-track-ignore], .fh-ignore');
}
