// Browser storage: localStorage for everything, plus a first-party cookie for the ids (optionally cross-subdomain).

import type { KeyValueStorage } from '../core/types';
import { MemoryStorage } from '../core/storage';

export interface CookieOptions {
  /** Share the ids across subdomains (finds the registrable domain, e.g. .example.com). */
  crossSubdomain?: boolean;
  /** Or name the cookie domain yourself, e.g. '.example.com'. */
  cookieDomain?: string;
  /** Cookie lifetime in days (browsers cap it at about 400). */
  cookieDays?: number;
}

// Kept in cookies as well as localStorage: small, and what subdomains must share.
const COOKIE_KEYS = ['aid', 'uid', 'session', 'consent'];

export class BrowserStorage implements KeyValueStorage {
  private readonly local: KeyValueStorage;
  private readonly cookieNames: Record<string, string> = {};
  private readonly domain: string | undefined;
  private readonly maxAge: number;

  constructor(prefix: string, options: CookieOptions = {}) {
    this.local = localStorageOrMemory();
    for (const k of COOKIE_KEYS) this.cookieNames[prefix + k] = cookieName(prefix + k);
    this.maxAge = Math.round((options.cookieDays || 365) * 86400);
    this.domain = options.cookieDomain || (options.crossSubdomain ? topDomain() : undefined);
  }

  getItem(key: string): string | null {
    const c = this.cookieNames[key];
    if (c) {
      const v = readCookie(c);
      if (v !== null) return v;
    }
    return this.local.getItem(key);
  }

  setItem(key: string, value: string): void {
    const c = this.cookieNames[key];
    if (c) writeCookie(c, value, this.maxAge, this.domain);
    this.local.setItem(key, value);
  }

  removeItem(key: string): void {
    const c = this.cookieNames[key];
    if (c) writeCookie(c, '', 0, this.domain);
    this.local.removeItem(key);
  }

  keys(): string[] {
    const keys = this.local.keys ? this.local.keys() : [];
    for (const k of Object.keys(this.cookieNames)) {
      if (keys.indexOf(k) < 0 && readCookie(this.cookieNames[k]) !== null) keys.push(k);
    }
    return keys;
  }
}

function cookieName(key: string): string {
  return key.replace(/[^A-Za-z0-9_-]/g, '_');
}

function localStorageOrMemory(): KeyValueStorage {
  try {
    const ls = window.localStorage;
    const probe = '__fh_probe__';
    ls.setItem(probe, '1');
    ls.removeItem(probe);
    return {
      getItem: (k) => ls.getItem(k),
      setItem: (k, v) => ls.setItem(k, v),
      removeItem: (k) => ls.removeItem(k),
      keys: () => {
        const out: string[] = [];
        for (let i = 0; i < ls.length; i++) {
          const k = ls.key(i);
          if (k !== null) out.push(k);
        }
        return out;
      },
    };
  } catch {
    // Blocked storage (sandboxed frames, some private modes): this page view still works.
    return new MemoryStorage();
  }
}

export function readCookie(name: string): string | null {
  const parts = document.cookie ? document.cookie.split('; ') : [];
  for (const p of parts) {
    const i = p.indexOf('=');
    if (i > 0 && p.slice(0, i) === name) {
      try {
        return decodeURIComponent(p.slice(i + 1));
      } catch {
        return null;
      }
    }
  }
  return null;
}

function writeCookie(name: string, value: string, maxAge: number, domain: string | undefined): void {
  let c = `${name}=${encodeURIComponent(value)}; Path=/; Max-Age=${maxAge}; SameSite=Lax`;
  if (domain) c += `; Domain=${domain}`;
  if (location.protocol === 'https:') c += '; Secure';
  try {
    document.cookie = c;
  } catch {
    // cookies disabled
  }
}

/** The widest domain this page may set a cookie on (example.com for shop.example.com). */
export function topDomain(): string | undefined {
  const host = location.hostname;
  if (!host || /^[\d.]+$/.test(host) || host.indexOf('.') < 0) return undefined;
  const labels = host.split('.');
  const probe = '__fh_td__';
  for (let i = labels.length - 2; i >= 0; i--) {
    const candidate = labels.slice(i).join('.');
    document.cookie = `${probe}=1; Path=/; Domain=${candidate}; Max-Age=10`;
    if (readCookie(probe) === '1') {
      document.cookie = `${probe}=; Path=/; Domain=${candidate}; Max-Age=0`;
      return candidate;
    }
  }
  return undefined;
}
