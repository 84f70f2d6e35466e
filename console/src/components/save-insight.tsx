// "Save insight" on every analysis view: keeps the view's route (path + the URL query that holds its
// state) under a name, to open again or to put on a dashboard.
import { useState } from 'preact/hooks';
import { saveInsight, type Insight } from '../insights';
import { currentRoute, href } from '../router';
import { TextField } from './fields';
import { ErrorNotice } from './notice';

export function SaveInsight({ title }: { title: string }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<Insight | null>(null);

  function start() {
    setName(`${title} · ${new Date().toISOString().slice(0, 10)}`);
    setSaved(null);
    setError(null);
    setOpen(true);
  }

  async function save() {
    if (!name.trim() || busy) return;
    // Read at the moment of saving: views keep the address up to date without a route change.
    const route = currentRoute();
    // A view that writes its address only when it runs (funnels) has nothing to save before.
    if (!route.query.toString()) {
      setError(new Error('run the analysis first: its settings are not in the address yet'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      setSaved(await saveInsight({ name: name.trim(), path: route.path, query: route.query.toString() }));
      setOpen(false);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="save-insight">
      {!open && (
        <button type="button" onClick={start}>
          Save insight
        </button>
      )}
      {open && (
        <form
          class="save-insight-form"
          aria-label="Save insight"
          onSubmit={(e) => {
            e.preventDefault();
            save();
          }}
        >
          <TextField label="Insight name" value={name} onInput={setName} required class="wide" />
          <button type="submit" class="primary" disabled={busy || !name.trim()}>
            {busy ? 'Saving…' : 'Save'}
          </button>
          <button type="button" onClick={() => setOpen(false)}>
            Cancel
          </button>
        </form>
      )}
      <ErrorNotice error={error} what="Saving the insight" />
      {saved && (
        <p class="notice saved" role="status">
          Saved as “{saved.name}”. <a href={href('/dashboards')}>Put it on a dashboard</a>
        </p>
      )}
    </div>
  );
}
