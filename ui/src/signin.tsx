// Signing in with a local account: POST /api/v1/auth/session sets the session cookie and
// answers with the CSRF token the page sends back on changes.
import { useState } from "preact/hooks";
import { call, describe, Session } from "./api";

export function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await call<Session>("POST", "/api/v1/auth/session", { user, password }));
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="center">
      <form class="card signin" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <img src="/favicon.svg" alt="" width="28" height="28" /> hearth
        </h1>
        <p class="muted">Sign in to your workstations.</p>
        <label>
          Account
          <input name="user" autocomplete="username" required value={user} onInput={(e) => setUser(e.currentTarget.value)} autofocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button class="primary" type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
