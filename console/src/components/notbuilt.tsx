// The state before the first model refresh: the tables the views read do not exist yet. Instead of
// an engine error the view says so and offers to build them now (POST /v1/admin/models/run).
import { useState } from 'preact/hooks';
import { ApiError, postJson } from '../api';
import { forgetCatalogue } from '../meta';

/** Tells the shell the tables were just built: it reloads the catalogue and the open view. */
export const BUILT_EVENT = 'funnelhouse:models-built';

export function isNotBuilt(error: unknown): boolean {
  return error instanceof ApiError && error.reason === 'not_built';
}

interface ModelRun {
  model: string;
  rows: number;
  seconds: number;
}

export function NotBuiltNotice() {
  const [state, setState] = useState<'idle' | 'building' | 'failed'>('idle');
  const [problem, setProblem] = useState('');

  async function build() {
    setState('building');
    setProblem('');
    try {
      await postJson<{ runs: ModelRun[] }>('/v1/admin/models/run', {});
      forgetCatalogue();
      window.dispatchEvent(new Event(BUILT_EVENT));
    } catch (err) {
      setState('failed');
      const e = err instanceof ApiError ? err : null;
      setProblem(e ? `${e.message} (${e.reason})` : String((err as Error).message || err));
    }
  }

  return (
    <div class="notice not-built" role="status" aria-live="polite">
      <h2>The tables are not built yet</h2>
      <p>
        This view reads the model tables (people, sessions, behaviour events, campaigns…), which are
        built from the raw events by the model refresh. <code>funnelhouse up</code> runs it every few
        minutes; until its first run there is nothing to show here.
      </p>
      <p class="row-buttons">
        <button type="button" class="primary" onClick={build} disabled={state === 'building'}>
          {state === 'building' ? 'Building…' : 'Build now'}
        </button>
        <span class="muted">
          or on the command line: <code>funnelhouse models run</code>
        </span>
      </p>
      {state === 'failed' && (
        <p class="preview-error" role="alert">
          The model refresh failed: {problem}
        </p>
      )}
    </div>
  );
}
