// The login screen: asks for the admin token that `funnelhouse up` prints, checks it, keeps it
// for this browser tab only (sessionStorage).
import { useEffect, useRef, useState } from 'preact/hooks';
import { checkToken, setToken } from './api';
import { ErrorNotice } from './components/notice';

export function Login({ onLogin, message }: { onLogin: () => void; message?: string }) {
  const [token, setTokenText] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => input.current?.focus(), []);

  async function submit(e: Event) {
    e.preventDefault();
    const value = token.trim();
    if (!value) {
      setError(new Error('Enter the admin token.'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await checkToken(value);
      setToken(value);
      onLogin();
    } catch (err) {
      setError(err);
      input.current?.focus();
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="login" aria-labelledby="login-title">
      <form class="login-box" onSubmit={submit}>
        <h1 id="login-title">funnelhouse console</h1>
        {message && <p class="notice" role="status">{message}</p>}
        <label class="field">
          <span class="field-label">Admin token</span>
          <input ref={input} type="password" name="token" autocomplete="current-password" value={token} onInput={(e) => setTokenText((e.target as HTMLInputElement).value)} aria-describedby="token-help" />
        </label>
        <p id="token-help" class="help">
          <code>funnelhouse up</code> prints it as <q>admin token</q> when it starts (or set <code>FUNNELHOUSE_ADMIN_TOKEN</code>). It is kept for this tab only.
        </p>
        <ErrorNotice error={error} what="Login" />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Checking…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
