// The page: who is signed in decides what is shown; the path picks the view.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { ApiError, call, describe, Session, useSession, whenSignedOut } from "./api";
import { FormDialog } from "./common";
import { go, navigate, usePath } from "./router";
import { setPrefs, usePrefs } from "./prefs";
import { SignIn } from "./signin";
import { Dashboard } from "./dashboard";
import { WorkstationPage } from "./workstation";
import { AdminPage } from "./admin";

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [problem, setProblem] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const path = usePath();

  const adopt = (s: Session | null) => {
    useSession(s);
    setSession(s);
  };

  useEffect(() => {
    whenSignedOut(() => adopt(null));
    call<Session>("GET", "/api/v1/auth/session")
      .then(adopt)
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) adopt(null);
        else setProblem(describe(e));
      });
  }, []);

  if (problem) return <main class="center"><p class="error" role="alert">{problem}</p></main>;
  if (session === undefined) return <main class="center"><p class="muted">Loading…</p></main>;
  if (session === null) return <SignIn onSignedIn={adopt} notice={notice} />;

  const signOut = async () => {
    try {
      await call("DELETE", "/api/v1/auth/session");
    } finally {
      adopt(null);
      navigate("/", true);
    }
  };

  const ws = path.match(/^\/w\/([^/]+)(?:\/t\/([^/]+))?\/?$/);
  const view = ws ? (
    <WorkstationPage id={decodeURIComponent(ws[1])} terminal={ws[2] && decodeURIComponent(ws[2])} session={session} />
  ) : path === "/admin" && session.admin ? (
    <AdminPage />
  ) : (
    <Dashboard session={session} />
  );
  return (
    <>
      <TopBar session={session} onSignOut={signOut} path={path} />
      <NoPasswordYet
        session={session}
        onSet={() => {
          // A new password ends the account's sessions, this one too.
          setNotice("Your password is set. Sign in with it.");
          adopt(null);
          navigate("/", true);
        }}
      />
      {view}
    </>
  );
}

/** An account signed in by the first start's link has no password yet: a banner asks for one. */
function NoPasswordYet({ session, onSet }: { session: Session; onSet: () => void }) {
  const [missing, setMissing] = useState(false);
  const [asking, setAsking] = useState(false);
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const me = `/api/v1/users/${encodeURIComponent(session.user)}`;
  useEffect(() => {
    // Accounts from Hypha (`hypha:<id>`) sign in there: they never have a password here.
    if (session.user.startsWith("hypha:")) return;
    call<{ has_password: boolean }>("GET", me).then((u) => setMissing(!u.has_password), () => setMissing(false));
  }, [session.user]);
  if (!missing) return null;
  const submit = async () => {
    if (password !== again) throw new Error("the two passwords differ");
    await call("PATCH", me, { password });
    onSet();
  };
  return (
    <div class="banner" role="status">
      {session.user} has no password yet: the sign-in link works once.{" "}
      <button class="small primary" onClick={() => setAsking(true)}>
        Set a password
      </button>
      {asking && (
        <FormDialog title="Set a password" action="Set" submit={submit} onClose={() => setAsking(false)}>
          <label>
            New password (at least 8 characters)
            <input type="password" autocomplete="new-password" required minLength={8} value={password} onInput={(e) => setPassword(e.currentTarget.value)} autofocus />
          </label>
          <label>
            The same again
            <input type="password" autocomplete="new-password" required value={again} onInput={(e) => setAgain(e.currentTarget.value)} />
          </label>
        </FormDialog>
      )}
    </div>
  );
}

function TopBar({ session, onSignOut, path }: { session: Session; onSignOut: () => void; path: string }) {
  const p = usePrefs();
  return (
    <header class="topbar">
      <a class="brand" href="/" onClick={(e) => go(e, "/")}>
        <img src="/favicon.svg" alt="" width="20" height="20" /> hearth
      </a>
      <span class="spacer" />
      {session.admin && (
        <nav aria-label="Sections">
          <a href="/" class={path === "/" ? "on" : ""} onClick={(e) => go(e, "/")}>
            Workstations
          </a>
          <a href="/admin" class={path === "/admin" ? "on" : ""} onClick={(e) => go(e, "/admin")}>
            Administration
          </a>
        </nav>
      )}
      <button class="ghost" title="Light or dark theme" aria-label="Switch theme" onClick={() => setPrefs({ theme: p.theme === "dark" ? "light" : "dark" })}>
        {p.theme === "dark" ? "☀" : "☾"}
      </button>
      <span class="who" title={`scope: ${session.scope}`}>
        {session.user}
        {session.admin && <span class="badge">admin</span>}
      </span>
      <button class="ghost" onClick={onSignOut}>
        Sign out
      </button>
    </header>
  );
}

render(<App />, document.getElementById("app")!);
