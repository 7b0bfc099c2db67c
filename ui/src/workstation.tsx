// One workstation's page: its state and actions, its terminals as tabs (each a TerminalView),
// files in and out, the serial console followed live, its events.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { call, describe, Session, Share, Terminal, Workstation, WsEvent, wsPath } from "./api";
import { Actions, ago, Confirm, ErrorLine, mib, Modal, StateBadge } from "./common";
import { useWorkstations } from "./dashboard";
import { go, navigate } from "./router";
import { clamp, FONT_SIZES, onPrefs, prefs, setPrefs, SCROLLBACK, usePrefs } from "./prefs";
import { Status, TerminalView } from "./terminal";

type Tab = "terminals" | "console" | "events";

export function WorkstationPage({ id, terminal, session }: { id: string; terminal?: string; session: Session }) {
  const { list } = useWorkstations();
  const [error, setError] = useState<string | null>(null);
  const [tab, setTab] = useState<Tab>("terminals");
  const [sharing, setSharing] = useState(false);
  const w = list?.find((w) => w.id === id);

  if (list && !w) {
    return (
      <main class="page">
        <p class="error" role="alert">
          There is no workstation {id} (or it is not yours). <a href="/" onClick={(e) => go(e, "/")}>All workstations</a>
        </p>
      </main>
    );
  }
  if (!w) return <main class="page"><p class="muted">Loading…</p></main>;
  return (
    <main class="page wide">
      <div class="pagehead">
        <a href="/" onClick={(e) => go(e, "/")} class="back" aria-label="All workstations">
          ←
        </a>
        <h1>{w.name}</h1>
        <StateBadge state={w.state} />
        <span class="muted small">
          {w.vcpu_count} vCPU · {mib(w.mem_size_mib)} · {w.disk_size_gib} GiB{w.read_only && " · read-only"}
          {w.address && ` · ${w.address}`} · {w.owner !== session.user && `${w.owner}'s · `}started {ago(w.started_unix_ms)}
        </span>
        {w.shared_as && <span class="badge">shared with you: {w.shared_as}</span>}
        <span class="spacer" />
        {!w.shared_as && session.scope !== "read" && (
          <button class="small" onClick={() => setSharing(true)}>
            Share
          </button>
        )}
        <Actions w={w} onError={setError} onDone={(a) => a === "delete" && navigate("/", true)} />
      </div>
      {sharing && <ShareDialog w={w} onClose={() => setSharing(false)} />}
      {w.crash && w.state === "crashed" && <p class="error">It crashed: {w.crash}</p>}
      <ErrorLine error={error} />
      <nav class="tabs" role="tablist">
        {(["terminals", "console", "events"] as Tab[]).map((t) => (
          <button key={t} role="tab" aria-selected={tab === t} class={tab === t ? "tab on" : "tab"} onClick={() => setTab(t)}>
            {t[0].toUpperCase() + t.slice(1)}
          </button>
        ))}
      </nav>
      {tab === "terminals" && <Terminals w={w} selected={terminal} canWrite={session.scope !== "read" && w.shared_as !== "viewer"} />}
      {tab === "console" && <Console w={w} />}
      {tab === "events" && <Events w={w} />}
    </main>
  );
}

/** The terminal tabs of a running workstation. */
function Terminals({ w, selected, canWrite }: { w: Workstation; selected?: string; canWrite: boolean }) {
  const [terms, setTerms] = useState<Terminal[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [closing, setClosing] = useState<Terminal | null>(null);
  const base = wsPath(w.id);
  const running = w.state === "running";
  const hibernated = w.state === "hibernated";
  // Opening the page of a hibernated workstation is coming back to it: it wakes. One
  // hibernated while its page is open stays so until asked.
  const [waking, setWaking] = useState(hibernated);

  const refresh = async () => {
    try {
      const { terminals } = await call<{ terminals: Terminal[] }>("GET", `${base}/terminals`);
      const live = terminals.filter((t) => !t.ended_unix_ms);
      setTerms(live);
      return live;
    } catch (e) {
      setError(describe(e));
      return null;
    }
  };

  const open = async () => {
    setError(null);
    try {
      const t = await call<Terminal>("POST", `${base}/terminals`, { rows: 24, cols: 80 });
      await refresh();
      navigate(`/w/${w.id}/t/${t.id}`);
    } catch (e) {
      setError(describe(e));
    }
  };

  useEffect(() => {
    // Coming back to it: listing its terminals wakes it where it was, and the live list
    // then says running, which lists them again.
    if (hibernated) {
      if (waking) void refresh().then((live) => live === null && setWaking(false));
      return;
    }
    setWaking(false);
    if (!running) return setTerms([]);
    // A shell to land in: the setup's terminal (its first boot's packages and script) is
    // a tab beside it, not the place to type.
    void refresh().then((live) => {
      if (live && !live.some((t) => t.id !== "setup") && canWrite) void open();
    });
  }, [w.id, running, hibernated]);

  const current = terms?.find((t) => t.id === selected) ?? terms?.[0];
  useEffect(() => {
    if (current && current.id !== selected) navigate(`/w/${w.id}/t/${current.id}`, true);
  }, [current?.id]);

  if (hibernated)
    return (
      <div>
        <p class="muted card">
          {waking
            ? "It is hibernated: waking it where it was…"
            : "It is hibernated: every program and terminal in it is saved on disk. Wake it to go on where it was."}
        </p>
        <ErrorLine error={error} />
      </div>
    );
  if (!running) return <p class="muted card">Terminals run while the workstation runs. It is {w.state}.</p>;
  return (
    <section class="terminals">
      <div class="termtabs" role="tablist" aria-label="Terminals">
        {terms?.map((t, i) => (
          <span key={t.id} class={t.id === current?.id ? "termtab on" : "termtab"}>
            <a role="tab" aria-selected={t.id === current?.id} href={`/w/${w.id}/t/${t.id}`} onClick={(e) => go(e, `/w/${w.id}/t/${t.id}`)}>
              {t.id === "setup" ? "Setup" : t.title || `Terminal ${i + 1}`}
            </a>
            {canWrite && (
              <button class="ghost x" aria-label={`Close terminal ${i + 1}`} title="Close (ends its shell)" onClick={() => setClosing(t)}>
                ×
              </button>
            )}
          </span>
        ))}
        {canWrite && (
          <button class="ghost" onClick={open} aria-label="New terminal" title="New terminal">
            +
          </button>
        )}
      </div>
      <ErrorLine error={error} />
      {current && <TerminalPane key={current.id} w={w} t={current} viewOnly={!canWrite} />}
      {closing && (
        <Confirm
          title="Close this terminal?"
          body={<p>Its shell and whatever runs in it end.</p>}
          action="Close"
          danger
          run={async () => {
            await call("DELETE", `${base}/terminals/${closing.id}`);
            const live = await refresh();
            if (closing.id === current?.id) navigate(live?.[0] ? `/w/${w.id}/t/${live[0].id}` : `/w/${w.id}`, true);
          }}
          onClose={() => setClosing(null)}
        />
      )}
    </section>
  );
}

const KEYS: [string, string][] = [
  ["Esc", "\x1b"],
  ["Tab", "\t"],
  ["^C", "\x03"],
  ["←", "\x1b[D"],
  ["↑", "\x1b[A"],
  ["↓", "\x1b[B"],
  ["→", "\x1b[C"],
];

/** One attached terminal with its tool bar. */
function TerminalPane({ w, t, viewOnly }: { w: Workstation; t: Terminal; viewOnly: boolean }) {
  const el = useRef<HTMLDivElement>(null);
  const view = useRef<TerminalView | null>(null);
  const [status, setStatus] = useState<Status>({ kind: "connecting" });
  const [ctrl, setCtrl] = useState(false);
  const [find, setFind] = useState("");
  const [note, setNote] = useState<string | null>(null);
  const p = usePrefs();
  // Those who may not type (a viewer, a read-only token) attach in view mode.
  const url = useMemo(() => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${wsPath(w.id)}/terminals/${t.id}/ws${viewOnly ? "?mode=view" : ""}`, [w.id, t.id, viewOnly]);

  useEffect(() => {
    const v = new TerminalView(el.current!, url, prefs(), setStatus, (title) => (document.title = `${title} · ${w.name}`));
    v.onCtrlUsed = () => setCtrl(false);
    view.current = v;
    (window as any).hearthTerminal = v; // for tests and the curious: the live xterm
    v.focus();
    const off = onPrefs((p) => v.setPrefs(p));
    return () => {
      off();
      v.dispose();
      view.current = null;
      document.title = "hearth";
    };
  }, [url]);

  const upload = async (files: FileList | null) => {
    if (!files) return;
    for (const f of Array.from(files)) {
      const path = `/home/scientist/${f.name}`;
      setNote(`Uploading ${f.name}…`);
      try {
        await call("PUT", `${wsPath(w.id)}/files?path=${encodeURIComponent(path)}`, f);
        setNote(`Uploaded ${path} (${f.size} bytes)`);
      } catch (e) {
        setNote(`${f.name}: ${describe(e)}`);
      }
    }
    view.current?.focus();
  };

  const download = (e: Event) => {
    e.preventDefault();
    const path = (new FormData(e.currentTarget as HTMLFormElement).get("path") as string).trim();
    if (!path) return;
    const a = document.createElement("a");
    a.href = `${wsPath(w.id)}/files?path=${encodeURIComponent(path.startsWith("/") ? path : `/home/scientist/${path}`)}`;
    a.download = path.split("/").pop() || "download";
    a.click();
  };

  const size = (d: number) => setPrefs({ fontSize: clamp(p.fontSize + d, FONT_SIZES.min, FONT_SIZES.max) });
  const statusText =
    status.kind === "connected"
      ? status.readOnly
        ? "view only"
        : "connected"
      : status.kind === "retrying"
        ? `reconnecting in ${status.inSecs} s…`
        : status.kind === "offline"
          ? "disconnected"
          : status.kind === "exited"
            ? `exited${status.code !== null ? ` (${status.code})` : ""}`
            : status.kind === "gone"
              ? status.why
              : "connecting…";

  return (
    <div class="pane">
      <div class="toolbar">
        <span class={`conn conn-${status.kind}${status.kind === "connected" && status.readOnly ? " ro" : ""}`} role="status">
          {statusText}
        </span>
        {status.kind === "offline" && <button class="small" onClick={() => view.current?.reconnect()}>Reconnect</button>}
        <span class="spacer" />
        <form
          class="find"
          onSubmit={(e) => {
            e.preventDefault();
            view.current?.search.findNext(find);
          }}
        >
          <input type="search" placeholder="Find in scrollback" aria-label="Find in scrollback" value={find} onInput={(e) => setFind(e.currentTarget.value)} />
          <button class="small" type="button" aria-label="Previous match" onClick={() => view.current?.search.findPrevious(find)}>
            ↑
          </button>
          <button class="small" type="submit" aria-label="Next match">
            ↓
          </button>
        </form>
        <button class="small" aria-label="Smaller text" onClick={() => size(-1)}>
          A−
        </button>
        <button class="small" aria-label="Larger text" onClick={() => size(1)}>
          A+
        </button>
        <label class="small" title="Lines kept above the screen (for new terminals and this one)">
          Scrollback
          <input
            type="number"
            class="narrow"
            min={SCROLLBACK.min}
            max={SCROLLBACK.max}
            step={1000}
            value={p.scrollback}
            onChange={(e) => setPrefs({ scrollback: clamp(Number(e.currentTarget.value), SCROLLBACK.min, SCROLLBACK.max) })}
          />
        </label>
        <label class="button small" hidden={viewOnly}>
          Upload
          <input type="file" multiple hidden onChange={(e) => upload(e.currentTarget.files)} />
        </label>
        <form class="find" onSubmit={download}>
          <input name="path" placeholder="File to download" aria-label="Path of a file to download" />
          <button class="small" type="submit">
            Download
          </button>
        </form>
      </div>
      {note && <p class="note" role="status">{note}</p>}
      <div
        class="xterm-host"
        ref={el}
        onDragOver={(e) => {
          e.preventDefault();
          e.currentTarget.classList.add("drop");
        }}
        onDragLeave={(e) => e.currentTarget.classList.remove("drop")}
        onDrop={(e) => {
          e.preventDefault();
          e.currentTarget.classList.remove("drop");
          void upload(e.dataTransfer?.files ?? null);
        }}
      />
      <div class="keybar" aria-label="Special keys">
        <button class={ctrl ? "on" : ""} aria-pressed={ctrl} onClick={() => {
          const v = view.current;
          if (!v) return;
          v.ctrlNext = !ctrl;
          setCtrl(!ctrl);
          v.focus();
        }}>
          Ctrl
        </button>
        {KEYS.map(([label, seq]) => (
          <button key={label} onClick={() => {
            view.current?.type(seq);
            view.current?.focus();
          }}>
            {label}
          </button>
        ))}
      </div>
    </div>
  );
}

/** Who it is shared with, and as what; its owner (or an administrator) changes that here. */
function ShareDialog({ w, onClose }: { w: Workstation; onClose: () => void }) {
  const [shares, setShares] = useState<Share[] | null>(null);
  const [user, setUser] = useState("");
  const [role, setRole] = useState<Share["role"]>("viewer");
  const [error, setError] = useState<string | null>(null);
  const base = `${wsPath(w.id)}/shares`;
  const load = () =>
    call<{ shares: Share[] }>("GET", base).then(
      (r) => setShares(r.shares),
      (e) => setError(describe(e)),
    );
  useEffect(() => void load(), [w.id]);
  const add = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await call("PUT", `${base}/${encodeURIComponent(user.trim())}`, { role });
      setUser("");
      await load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const remove = async (s: Share) => {
    setError(null);
    try {
      await call("DELETE", `${base}/${encodeURIComponent(s.user)}`);
      await load();
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <Modal title={`Share ${w.name}`} onClose={onClose}>
      <p class="muted small">A viewer sees it and watches its terminals; a collaborator also types, runs commands, moves files, starts and stops it. Neither deletes or shares it.</p>
      {shares && shares.length > 0 && (
        <table class="list">
          <tbody>
            {shares.map((s) => (
              <tr key={s.user}>
                <td>{s.user}</td>
                <td>{s.role}</td>
                <td>
                  <button class="small danger" aria-label={`Stop sharing with ${s.user}`} onClick={() => remove(s)}>
                    remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form class="form" onSubmit={add}>
        <div class="row3">
          <label>
            Account
            <input name="user" required value={user} onInput={(e) => setUser(e.currentTarget.value)} />
          </label>
          <label>
            As
            <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value as Share["role"])}>
              <option value="viewer">viewer</option>
              <option value="collaborator">collaborator</option>
            </select>
          </label>
          <div class="endalign">
            <button class="primary" type="submit">
              Share
            </button>
          </div>
        </div>
        <ErrorLine error={error} />
      </form>
      <div class="buttons">
        <button onClick={onClose}>Done</button>
      </div>
    </Modal>
  );
}

/** The serial console: its end, then what the guest prints, followed live. */
function Console({ w }: { w: Workstation }) {
  const [text, setText] = useState("");
  const [follow, setFollow] = useState(true);
  const [ended, setEnded] = useState<string | null>(null);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    setText("");
    const src = new EventSource(`${wsPath(w.id)}/console/stream?tail_bytes=131072`);
    src.addEventListener("output", (e) => setText((t) => (t + JSON.parse((e as MessageEvent).data).text).slice(-1_000_000)));
    src.addEventListener("end", (e) => {
      setEnded(JSON.parse((e as MessageEvent).data).reason);
      src.close();
    });
    return () => src.close();
  }, [w.id]);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);
  return (
    <section>
      <div class="toolbar">
        <label class="check">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Follow
        </label>
        {ended && <span class="muted">ended: {ended.replace("_", " ")}</span>}
      </div>
      <pre class="console" ref={pre} tabIndex={0} aria-label="Serial console">
        {text}
      </pre>
    </section>
  );
}

/** What happened to it, newest last; read again when its state changes. */
function Events({ w }: { w: Workstation }) {
  const [events, setEvents] = useState<WsEvent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    call<{ events: WsEvent[] }>("GET", `${wsPath(w.id)}/events?limit=200`)
      .then((r) => setEvents(r.events))
      .catch((e) => setError(describe(e)));
  }, [w.id, w.state]);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!events) return <p class="muted">Loading…</p>;
  return (
    <table class="list events">
      <tbody>
        {events.map((e) => (
          <tr key={e.id}>
            <td class="muted" title={new Date(e.at_unix_ms).toLocaleString()}>
              {new Date(e.at_unix_ms).toLocaleString()}
            </td>
            <td>{e.kind.replace("_", " ")}</td>
            <td>{e.message}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
