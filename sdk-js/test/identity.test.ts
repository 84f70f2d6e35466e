import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeTransport, client } from './helpers';
import { MemoryStorage } from '../src/core/storage';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2025-03-01T10:00:00Z'));
});
afterEach(() => vi.useRealTimers());

describe('identity', () => {
  it('keeps one anonymous id across page loads and puts it on every message', async () => {
    const storage = new MemoryStorage();
    const t = new FakeTransport();
    const a = client(t, { storage });
    const b = client(t, { storage });
    expect(a.getAnonymousId()).toMatch(UUID);
    expect(b.getAnonymousId()).toBe(a.getAnonymousId());
    a.track('x');
    b.page();
    await a.flush();
    await b.flush();
    expect(t.sent.map((m) => m.anonymousId)).toEqual([a.getAnonymousId(), a.getAnonymousId()]);
  });

  it('builds Segment-spec messages with a fresh uuid messageId and the library context', async () => {
    const t = new FakeTransport();
    const a = client(t, { contextProvider: () => ({ locale: 'de-DE', timezone: 'Europe/Berlin', userAgent: 'UA/1' }) });
    a.track('click', { element: '#buy' });
    a.track('click', { element: '#buy' });
    await a.flush();
    const [m1, m2] = t.sent;
    expect(m1.type).toBe('track');
    expect(m1.messageId).toMatch(UUID);
    expect(m1.messageId).not.toBe(m2.messageId);
    expect(m1.timestamp).toBe('2025-03-01T10:00:00.000Z');
    expect(m1.context.library.name).toBe('funnelhouse-js');
    expect(m1.context.library.version).toBe('0.0.0-test');
    expect(m1.context).toMatchObject({ locale: 'de-DE', timezone: 'Europe/Berlin', userAgent: 'UA/1', channel: 'app' });
    expect(m1.context.sessionId).toMatch(UUID);
  });

  it('identify sets the user on later messages and merges traits', async () => {
    const t = new FakeTransport();
    const a = client(t);
    a.track('anonymous');
    a.identify('u-1', { plan: 'free' });
    a.identify({ email: 'u1@example.com' });
    a.track('known');
    await a.flush();
    const [anon, id1, id2, known] = t.sent;
    expect(anon.userId).toBeUndefined();
    expect(id1).toMatchObject({ type: 'identify', userId: 'u-1', traits: { plan: 'free' } });
    expect(id2.traits).toEqual({ plan: 'free', email: 'u1@example.com' });
    expect(known.userId).toBe('u-1');
    expect(known.anonymousId).toBe(anon.anonymousId);
  });

  it('alias links the previous id; group carries groupId and traits', async () => {
    const t = new FakeTransport();
    const a = client(t);
    const anon = a.getAnonymousId();
    a.alias('u-2');
    a.group('acme', { plan: 'team' });
    await a.flush();
    expect(t.sent[0]).toMatchObject({ type: 'alias', userId: 'u-2', previousId: anon });
    expect(t.sent[1]).toMatchObject({ type: 'group', groupId: 'acme', traits: { plan: 'team' }, userId: 'u-2' });
  });

  it('reset forgets the user and starts a new anonymous id and session', async () => {
    const storage = new MemoryStorage();
    const t = new FakeTransport();
    const a = client(t, { storage });
    a.identify('u-3', { name: 'Ann' });
    const anon = a.getAnonymousId();
    const session = a.getSessionId();
    a.reset();
    a.track('after_logout');
    await a.flush();
    const m = t.sent[t.sent.length - 1];
    expect(m.userId).toBeUndefined();
    expect(m.anonymousId).not.toBe(anon);
    expect(m.context.sessionId).not.toBe(session);
    expect(storage.getItem('fh.uid')).toBeNull();
    expect(client(t, { storage }).getAnonymousId()).toBe(m.anonymousId);
  });

  it('uses the anonymous id handed over by a native app', () => {
    const a = client(new FakeTransport(), { anonymousId: 'from-native-app' });
    expect(a.getAnonymousId()).toBe('from-native-app');
  });
});

describe('session', () => {
  it('continues the session while active and starts a new one after the inactivity timeout', async () => {
    const storage = new MemoryStorage();
    const t = new FakeTransport();
    const a = client(t, { storage, sessionTimeout: 30, flushAt: 1000 });
    a.track('e1');
    vi.advanceTimersByTime(29 * 60_000);
    a.track('e2'); // 29 min later: same session
    vi.advanceTimersByTime(29 * 60_000);
    a.track('e3'); // 29 min after the last activity: still the same
    vi.advanceTimersByTime(31 * 60_000);
    a.track('e4'); // 31 min idle: new session
    // A reload within the timeout continues the stored session.
    const b = client(t, { storage, sessionTimeout: 30, flushAt: 1000 });
    b.track('e5');
    await a.flush();
    await b.flush();
    const s = Object.fromEntries(t.sent.map((m) => [m.event, m.context.sessionId]));
    expect(s.e2).toBe(s.e1);
    expect(s.e3).toBe(s.e1);
    expect(s.e4).not.toBe(s.e1);
    expect(s.e5).toBe(s.e4);
  });

  it('honours a custom timeout', async () => {
    const t = new FakeTransport();
    const a = client(t, { sessionTimeout: 5 });
    a.track('a');
    vi.advanceTimersByTime(6 * 60_000);
    a.track('b');
    await a.flush();
    expect(t.sent[0].context.sessionId).not.toBe(t.sent[1].context.sessionId);
  });

  it('keeps the landing campaign on every event of the session; a new campaign starts a new session', async () => {
    const t = new FakeTransport();
    const a = client(t);
    a.land({ source: 'newsletter', medium: 'email', name: 'spring' }, 'https://mail.example.com/');
    a.track('first');
    vi.advanceTimersByTime(60_000);
    a.land(undefined, 'https://shop.example.com/'); // internal navigation: campaign stays
    a.track('second');
    a.land({ source: 'google', medium: 'cpc', name: 'brand' });
    a.track('third');
    vi.advanceTimersByTime(31 * 60_000);
    a.track('fourth'); // next visit, no campaign
    await a.flush();
    const [first, second, third, fourth] = t.sent;
    expect(first.context.campaign).toEqual({ source: 'newsletter', medium: 'email', name: 'spring' });
    expect(second.context.campaign).toEqual(first.context.campaign);
    expect(second.context.sessionId).toBe(first.context.sessionId);
    expect(third.context.campaign).toEqual({ source: 'google', medium: 'cpc', name: 'brand' });
    expect(third.context.sessionId).not.toBe(first.context.sessionId);
    expect(fourth.context.campaign).toBeUndefined();
    expect(fourth.context.sessionId).not.toBe(third.context.sessionId);
  });
});

describe('replayed calls', () => {
  it('keep the time they were made (snippet queue)', async () => {
    const t = new FakeTransport();
    const a = client(t);
    const at = Date.parse('2025-03-01T09:59:58.500Z');
    a.replay('track', ['early', { n: 1 }], at);
    a.track('late');
    await a.flush();
    expect(t.sent[0].timestamp).toBe('2025-03-01T09:59:58.500Z');
    expect(t.sent[1].timestamp).toBe('2025-03-01T10:00:00.000Z');
    expect(a.replay('constructor', [])).toBeUndefined();
  });
});
