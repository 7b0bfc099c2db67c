// Signing in: with a local account (POST /api/v1/auth/session sets the session cookie and
// answers with the CSRF token the page sends back on changes), or with Hypha when the server
// offers it: Hypha's login page in a popup while this page asks the server whether it is
// complete (POST /api/v1/auth/hypha/check, waiting up to 20 s per ask).
import { useEffect, useState } from "preact/hooks";
import { ApiError, call, describe, Session } from "./api";
import { ErrorLine } from "./common";

interface Methods {
  password: boolean;
  hypha_server: string | null;
}

export function SignIn({ onSignedIn, notice }: { onSignedIn: (s: Session) => void; notice?: string | null }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [refused, setRefused] = useState<string | null>(null);
  const [busy, setBusy] = useState<"password" | "hypha" | null>(null);
  const [methods, setMethods] = useState<Methods | null>(null);

  useEffect(() => {
    call<Methods>("GET", "/api/v1/auth/methods").then(setMethods, () => setMethods({ password: true, hypha_server: null }));
  }, []);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy("password");
    setError(null);
    try {
      onSignedIn(await call<Session>("POST", "/api/v1/auth/session", { user, password }));
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(null);
    }
  };

  const hypha = async () => {
    setBusy("hypha");
    setError(null);
    // Opened at once (in the click), so popup blockers let it through; pointed at Hypha's
    // login page when the server has made one.
    const popup = window.open("about:blank", "hypha-login", "popup,width=520,height=700");
    try {
      const start = await call<{ login_url: string; key: string }>("POST", "/api/v1/auth/hypha/start");
      if (popup) popup.location.href = start.login_url;
      else window.open(start.login_url, "_blank");
      for (let closedChecks = 0; closedChecks < 2; ) {
        const r = await call<Session | { status: string }>("POST", "/api/v1/auth/hypha/check", { key: start.key, wait_secs: 20 });
        if ("user" in r) {
          popup?.close();
          return onSignedIn(r);
        }
        if (popup?.closed) closedChecks++; // one more ask after it closed: the login may have just completed
      }
      setError("The Hypha sign-in window was closed before the sign-in completed.");
    } catch (err) {
      popup?.close();
      if (err instanceof ApiError && err.code === "not_on_allowlist") setRefused(err.message);
      else setError(describe(err));
    } finally {
      setBusy(null);
    }
  };

  if (refused) {
    return (
      <main class="center">
        <div class="card signin" role="alert">
          <h1>Not on the allowlist</h1>
          <p>{refused}</p>
          <p class="muted">This server admits Hypha accounts by email address. Ask its administrator to add yours, or sign in with another account.</p>
          <button class="primary" onClick={() => setRefused(null)}>
            Sign in with another account
          </button>
        </div>
      </main>
    );
  }

  return (
    <main class="center">
      <form class="card signin" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <img src="/favicon.svg" alt="" width="28" height="28" /> hearth
        </h1>
        <p class="muted">Sign in to your workstations.</p>
        {notice && (
          <p class="note" role="status">
            {notice}
          </p>
        )}
        <label>
          Account
          <input name="user" autocomplete="username" required value={user} onInput={(e) => setUser(e.currentTarget.value)} autofocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy !== null}>
          {busy === "password" ? "Signing in…" : "Sign in"}
        </button>
        <p class="muted small">
          First start? <code>hearth serve</code> printed a one-time sign-in link for the administrator; open it.
        </p>
        {methods?.hypha_server && (
          <>
            <p class="or muted">or</p>
            <button type="button" onClick={hypha} disabled={busy !== null} title={methods.hypha_server}>
              {busy === "hypha" ? "Waiting for Hypha…" : "Log in with Hypha"}
            </button>
          </>
        )}
      </form>
    </main>
  );
}
