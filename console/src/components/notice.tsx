// Status lines every view shares: an error with the server's reason, a loading line, an empty state.
import type { ComponentChildren } from 'preact';
import { ApiError } from '../api';
import { isNotBuilt, NotBuiltNotice } from './notbuilt';

export function ErrorNotice({ error, what }: { error: unknown; what?: string }) {
  if (!error) return null;
  // Not an error to report: a state with a way out (build the tables now).
  if (isNotBuilt(error)) return <NotBuiltNotice />;
  const e = error instanceof ApiError ? error : null;
  return (
    <div class="notice error" role="alert">
      <strong>{what ? `${what} failed` : 'Failed'}:</strong> {e ? e.message : String((error as Error).message || error)}
      {e && (
        <span class="reason">
          {' '}
          ({e.status ? `HTTP ${e.status}, ` : ''}
          <code>{e.reason}</code>
          {e.path ? <>, at <code>{e.path}</code></> : null})
        </span>
      )}
    </div>
  );
}

export function Loading({ children = 'Loading…' }: { children?: ComponentChildren }) {
  return (
    <p class="notice loading" role="status">
      <span class="spinner" aria-hidden="true" />
      {children}
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="notice empty">{children}</p>;
}
