// Storage plug point: an in-memory store, an async-store adapter, and the consent gate.

import type { KeyValueStorage } from './types';

export class MemoryStorage implements KeyValueStorage {
  private readonly map = new Map<string, string>();
  getItem(key: string): string | null {
    const v = this.map.get(key);
    return v === undefined ? null : v;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
  removeItem(key: string): void {
    this.map.delete(key);
  }
  keys(): string[] {
    return Array.from(this.map.keys());
  }
}

/** The shape of React Native's AsyncStorage (and of most async key/value stores). */
export interface AsyncKeyValueStorage {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
  removeItem(key: string): Promise<void>;
  getAllKeys?(): Promise<readonly string[]>;
}

/**
 * Loads every key under `prefix` from an async store into memory and returns a
 * synchronous storage that writes through. Await it before `init`.
 */
export async function hydrateAsyncStorage(store: AsyncKeyValueStorage, prefix = 'fh.'): Promise<KeyValueStorage> {
  const cache = new MemoryStorage();
  const keys = store.getAllKeys ? (await store.getAllKeys()).filter((k) => k.startsWith(prefix)) : [];
  await Promise.all(
    keys.map(async (k) => {
      const v = await store.getItem(k);
      if (v !== null) cache.setItem(k, v);
    }),
  );
  const ignore = (): void => undefined;
  return {
    getItem: (k) => cache.getItem(k),
    setItem: (k, v) => {
      cache.setItem(k, v);
      store.setItem(k, v).catch(ignore);
    },
    removeItem: (k) => {
      cache.removeItem(k);
      store.removeItem(k).catch(ignore);
    },
    keys: () => cache.keys(),
  };
}

/**
 * Everything the SDK keeps goes through here. Until consent is given it lives in
 * memory only; `persist()` copies it to the real storage, `wipe()` removes it.
 */
export class StateStore {
  private memory = new MemoryStorage();
  private persistent: boolean;

  constructor(
    private readonly backing: KeyValueStorage,
    readonly prefix: string,
    persistent: boolean,
  ) {
    this.persistent = persistent;
  }

  private get target(): KeyValueStorage {
    return this.persistent ? this.backing : this.memory;
  }

  get isPersistent(): boolean {
    return this.persistent;
  }

  get(key: string): string | null {
    try {
      return this.target.getItem(this.prefix + key);
    } catch {
      return null;
    }
  }

  getJSON<T>(key: string): T | null {
    const raw = this.get(key);
    if (raw === null) return null;
    try {
      return JSON.parse(raw) as T;
    } catch {
      return null;
    }
  }

  set(key: string, value: string): void {
    try {
      this.target.setItem(this.prefix + key, value);
    } catch {
      // Storage full or blocked: the in-memory state of the caller still works.
    }
  }

  setJSON(key: string, value: unknown): void {
    this.set(key, JSON.stringify(value));
  }

  remove(key: string): void {
    try {
      this.target.removeItem(this.prefix + key);
    } catch {
      // ignore
    }
  }

  /** Keys (without prefix) present in the current target, when it can list them. */
  keys(): string[] | null {
    const t = this.target;
    if (!t.keys) return null;
    try {
      return t
        .keys()
        .filter((k) => k.startsWith(this.prefix))
        .map((k) => k.slice(this.prefix.length));
    } catch {
      return null;
    }
  }

  /** Consent given: from now on write to the real storage, starting with what memory holds. */
  persist(): void {
    if (this.persistent) return;
    this.persistent = true;
    for (const k of this.memory.keys()) {
      const v = this.memory.getItem(k);
      if (v !== null) {
        try {
          this.backing.setItem(k, v);
        } catch {
          // ignore
        }
      }
    }
    this.memory = new MemoryStorage();
  }

  /** Writes straight to the real storage: only for the consent choice itself. */
  record(key: string, value: string): void {
    try {
      this.backing.setItem(this.prefix + key, value);
    } catch {
      // ignore
    }
  }

  /** Reads straight from the real storage (the consent choice, before persisting). */
  recorded(key: string): string | null {
    try {
      return this.backing.getItem(this.prefix + key);
    } catch {
      return null;
    }
  }

  /** Consent withdrawn: forget everything, in memory and in storage. */
  wipe(): void {
    this.memory = new MemoryStorage();
    const keys = this.backing.keys ? safeKeys(this.backing) : KNOWN_KEYS.map((k) => this.prefix + k);
    for (const k of keys) {
      if (k.startsWith(this.prefix)) {
        try {
          this.backing.removeItem(k);
        } catch {
          // ignore
        }
      }
    }
    this.persistent = false;
  }
}

// Keys removed by wipe() when the storage cannot list its keys.
export const KNOWN_KEYS = ['aid', 'uid', 'traits', 'session', 'consent', 'q.main'];

function safeKeys(s: KeyValueStorage): string[] {
  try {
    return s.keys ? s.keys() : [];
  } catch {
    return [];
  }
}
