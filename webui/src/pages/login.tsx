// The login screen: an API token, checked with GET /v1/whoami and kept in
// sessionStorage only. `spillway lab` prints a login link that fills it in.

import { useState } from 'preact/hooks';
import { checkToken, signedOutReason } from '../store';

export function Login() {
  const [busy, setBusy] = useState(false);
  const [empty, setEmpty] = useState(false);
  const reason = signedOutReason.value;
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const field = form.elements.namedItem('token') as HTMLInputElement;
    const tok = field.value.trim();
    if (!tok) {
      setEmpty(true);
      field.focus();
      return;
    }
    setEmpty(false);
    setBusy(true);
    await checkToken(tok);
    setBusy(false);
    // Still here: the token was refused. Keep the field for another try.
    field.select();
  };
  const error = empty ? 'Enter an API token to sign in.' : reason;
  return (
    <main id="main" class="login">
      <h1>Spillway console</h1>
      <p>
        Sign in with an API token. It is kept in this browser tab only, until you sign out or close the tab.
      </p>
      <form onSubmit={submit} noValidate>
        <div class="field">
          <label for="token">API token</label>
          <input
            id="token"
            name="token"
            type="password"
            autocomplete="off"
            spellcheck={false}
            autoFocus
            aria-describedby={error ? 'login-error' : undefined}
            aria-invalid={error ? 'true' : undefined}
          />
        </div>
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <div id="login-error" role="alert" class={error ? 'error' : 'quiet'} data-testid="login-error">
          {error}
        </div>
      </form>
    </main>
  );
}
