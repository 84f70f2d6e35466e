// Hash routing (#/funnels?x=1): the console is a set of static files, so the server never sees the route.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  path: string;
  query: URLSearchParams;
  /** Mounted inside a dashboard card: compact, and the address is not the view's own. */
  embedded?: boolean;
}

export function currentRoute(): Route {
  const hash = location.hash.replace(/^#/, '') || '/home';
  const [path, search = ''] = hash.split('?', 2);
  return { path: path || '/home', query: new URLSearchParams(search) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const update = () => setRoute(currentRoute());
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}

export function href(path: string, query?: Record<string, string>): string {
  const search = query ? new URLSearchParams(query).toString() : '';
  return `#${path}${search ? `?${search}` : ''}`;
}

/**
 * A view whose state lives in the URL: after each change the address becomes the view's path with
 * `state` as its query (replaceState: no history entry per keystroke, no hashchange), so a reload
 * or a shared link opens the same view. Empty values are left out. A view mounted inside a
 * dashboard card (route.embedded) never touches the address: the address is the dashboard's.
 */
export function useUrlState(route: Route, state: Record<string, string>): void {
  const text = new URLSearchParams(Object.entries(state).filter(([, v]) => v !== '')).toString();
  useEffect(() => {
    const now = currentRoute();
    if (route.embedded || now.path !== route.path || now.query.toString() === text) return;
    history.replaceState(history.state, '', `#${route.path}${text ? `?${text}` : ''}`);
  }, [text]);
}

/** A value of a URL query as JSON, or `fallback` when it is missing or damaged. */
export function jsonParam<T>(query: URLSearchParams, name: string, fallback: T, valid: (v: unknown) => boolean = () => true): T {
  const text = query.get(name);
  if (!text) return fallback;
  try {
    const value = JSON.parse(text);
    return valid(value) ? (value as T) : fallback;
  } catch {
    return fallback;
  }
}
