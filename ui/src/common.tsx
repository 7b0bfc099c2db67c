// Pieces the views share: state badges, ages, confirmation dialogs, lifecycle buttons.
import { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { call, describe, State, Workstation, wsPath } from "./api";

export function StateBadge({ state }: { state: State }) {
  return <span class={`state state-${state}`}>{state}</span>;
}

/** "3 min ago" and the like. */
export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function mib(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024} GiB` : `${n} MiB`;
}

/** A modal dialog (the platform's <dialog>: focus kept inside, Esc closes). */
export function Modal({ title, children, onClose }: { title: string; children: ComponentChildren; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current!;
    d.showModal();
    const closed = () => onClose();
    d.addEventListener("close", closed);
    return () => {
      d.removeEventListener("close", closed);
      if (d.open) d.close();
    };
  }, []);
  return (
    <dialog ref={ref} aria-label={title}>
      <h2>{title}</h2>
      {children}
    </dialog>
  );
}

/** An error to show, if there is one (announced to screen readers). */
export function ErrorLine({ error }: { error: string | null }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

/** A dialog around a form: `submit` runs on submit; its error is shown and the dialog stays,
 * else the dialog closes. */
export function FormDialog(props: { title: string; action: string; submit: () => Promise<unknown>; onClose: () => void; children: ComponentChildren }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await props.submit();
      props.onClose();
    } catch (err) {
      setError(describe(err));
      setBusy(false);
    }
  };
  return (
    <Modal title={props.title} onClose={props.onClose}>
      <form class="form" onSubmit={submit}>
        {props.children}
        <ErrorLine error={error} />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button class="primary" type="submit" disabled={busy}>
            {props.action}
          </button>
        </div>
      </form>
    </Modal>
  );
}

/** Asks before something that cannot be undone; runs it, showing its error if it fails. */
export function Confirm(props: { title: string; body: ComponentChildren; action: string; danger?: boolean; run: () => Promise<unknown>; onClose: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      await props.run();
      props.onClose();
    } catch (e) {
      setError(describe(e));
      setBusy(false);
    }
  };
  return (
    <Modal title={props.title} onClose={props.onClose}>
      <div>{props.body}</div>
      <ErrorLine error={error} />
      <div class="buttons">
        <button onClick={props.onClose} disabled={busy}>
          Cancel
        </button>
        <button class={props.danger ? "danger" : "primary"} onClick={go} disabled={busy}>
          {busy ? "Working…" : props.action}
        </button>
      </div>
    </Modal>
  );
}

type Action = "start" | "stop" | "restart" | "pause" | "resume" | "hibernate" | "wake" | "delete";

/** Which actions a state allows. */
export function actionsFor(state: State): Action[] {
  switch (state) {
    case "running":
      return ["stop", "restart", "pause", "hibernate", "delete"];
    case "paused":
      return ["resume", "hibernate", "stop", "delete"];
    case "hibernated":
      return ["wake", "stop", "delete"];
    case "stopped":
    case "crashed":
      return ["start", "delete"];
    default:
      return ["delete"];
  }
}

const ASK: Partial<Record<Action, string>> = {
  stop: "Stopping ends every program and terminal in it (a hibernated one's saved memory too); its disk stays.",
  restart: "Restarting ends every program and terminal in it, then boots it again; its disk stays.",
  delete: "Deleting removes its disk, logs and address for good.",
};

/** The lifecycle buttons of one workstation; those that lose work ask first. */
export function Actions({ w, onDone, onError }: { w: Workstation; onDone?: (a: Action) => void; onError: (m: string | null) => void }) {
  const [asking, setAsking] = useState<Action | null>(null);
  const [busy, setBusy] = useState<Action | null>(null);
  const run = async (a: Action) => {
    if (a === "delete") await call("DELETE", wsPath(w.id));
    // Starting a hibernated workstation wakes it where it was.
    else await call("POST", `${wsPath(w.id)}/${a === "wake" ? "start" : a}`);
    onDone?.(a);
  };
  const click = async (a: Action) => {
    if (ASK[a]) return setAsking(a);
    setBusy(a);
    onError(null);
    try {
      await run(a);
    } catch (e) {
      onError(`${a} ${w.name}: ${describe(e)}`);
    } finally {
      setBusy(null);
    }
  };
  return (
    <span class="actions">
      {actionsFor(w.state)
        .filter((a) => (w.shared_as === "viewer" ? false : w.shared_as === "collaborator" ? a !== "delete" : true))
        .map((a) => (
          <button key={a} class={a === "delete" ? "danger small" : "small"} disabled={busy !== null} onClick={() => click(a)} aria-label={`${a} ${w.name}`}>
            {busy === a ? `${a}…` : a}
          </button>
        ))}
      {asking && (
        <Confirm
          title={`${asking[0].toUpperCase()}${asking.slice(1)} ${w.name}?`}
          body={<p>{ASK[asking]}</p>}
          action={asking}
          danger={asking === "delete"}
          run={() => run(asking)}
          onClose={() => setAsking(null)}
        />
      )}
    </span>
  );
}
