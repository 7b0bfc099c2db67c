// The page: who is signed in decides what is shown; the path picks the view.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { ApiError, call, describe, Session, useSession, whenSignedOut } from "./api";
import { go, navigate, usePath } from "./router";
import { setPrefs, usePrefs } from "./prefs";
import { SignIn } from "./signin";
import { Dashboard } from "./dashboard";
import { WorkstationPage } from "./workstation";
import { AdminPage } from "./admin";

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [problem, setProblem] = useState<string | null>(null);
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
  if (session === null) return <SignIn onSignedIn={adopt} />;

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
      {view}
    </>
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
