// Who and when: anonymous id, user id and traits, and the session with its landing campaign.

import type { Campaign, Properties } from './types';
import type { StateStore } from './storage';
import { uuid4 } from './uuid';

export interface Session {
  id: string;
  startedAt: number;
  lastAt: number;
  campaign?: Campaign;
  referrer?: string;
}

export class Identity {
  private anonymousId: string;
  private userId: string | undefined;
  private traits: Properties;
  private session: Session | null;

  constructor(
    private readonly store: StateStore,
    private readonly timeoutMs: number,
    private readonly now: () => number,
    anonymousId?: string,
  ) {
    const stored = store.get('aid');
    this.anonymousId = anonymousId || stored || uuid4();
    if (this.anonymousId !== stored) store.set('aid', this.anonymousId);
    this.userId = store.get('uid') || undefined;
    this.traits = store.getJSON<Properties>('traits') || {};
    this.session = store.getJSON<Session>('session');
  }

  getAnonymousId(): string {
    return this.anonymousId;
  }

  setAnonymousId(id: string): void {
    this.anonymousId = id;
    this.store.set('aid', id);
  }

  getUserId(): string | undefined {
    return this.userId;
  }

  getTraits(): Properties {
    return this.traits;
  }

  identify(userId: string | undefined, traits: Properties | undefined): void {
    if (userId !== undefined && userId !== null && userId !== '') {
      const id = String(userId);
      // A different user on this device: their traits are not ours.
      if (this.userId && this.userId !== id) this.traits = {};
      this.userId = id;
      this.store.set('uid', id);
    }
    if (traits) {
      this.traits = { ...this.traits, ...traits };
      this.store.setJSON('traits', this.traits);
    }
  }

  /** The current session, started anew after `timeoutMs` without activity. */
  touchSession(): Session {
    const t = this.now();
    let s = this.session;
    if (!s || t - s.lastAt > this.timeoutMs || t < s.startedAt - 60_000) {
      s = { id: uuid4(), startedAt: t, lastAt: t };
    } else {
      s = { ...s, lastAt: Math.max(s.lastAt, t) };
    }
    this.session = s;
    this.store.setJSON('session', s);
    return s;
  }

  peekSession(): Session | null {
    return this.session;
  }

  /**
   * A visitor landed (page load or app open). A campaign different from the
   * session's starts a new session, so each visit keeps the campaign it came from.
   */
  land(campaign: Campaign | undefined, referrer: string | undefined): Session {
    const before = this.session;
    let s = this.touchSession();
    const fresh = !before || before.id !== s.id;
    const hasCampaign = !!campaign && Object.keys(campaign).length > 0;
    if (hasCampaign && !fresh && !sameCampaign(s.campaign, campaign)) {
      const t = this.now();
      s = { id: uuid4(), startedAt: t, lastAt: t };
    }
    if (fresh || hasCampaign && !sameCampaign(s.campaign, campaign)) {
      if (hasCampaign) s.campaign = campaign;
      if (referrer) s.referrer = referrer;
    }
    this.session = s;
    this.store.setJSON('session', s);
    return s;
  }

  /** Logout: a new anonymous id, no user, no traits, a new session. */
  reset(): void {
    this.userId = undefined;
    this.traits = {};
    this.session = null;
    this.anonymousId = uuid4();
    this.store.remove('uid');
    this.store.remove('traits');
    this.store.remove('session');
    this.store.set('aid', this.anonymousId);
  }
}

function sameCampaign(a: Campaign | undefined, b: Campaign | undefined): boolean {
  const ka: (keyof Campaign)[] = ['source', 'medium', 'name', 'term', 'content'];
  return ka.every((k) => (a ? a[k] : undefined) === (b ? b[k] : undefined));
}
