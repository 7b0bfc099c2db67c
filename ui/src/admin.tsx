// Administration: the host's budgets in use, accounts with their quotas, the email allowlist.
// Every workstation, with its owner, is on the dashboard (an administrator sees all).
import { useEffect, useState } from "preact/hooks";
import { call, describe } from "./api";
import { Confirm, ErrorLine, FormDialog, mib } from "./common";
import { useWorkstations } from "./dashboard";

interface Resources {
  mem_mib: number;
  vcpus: number;
  disk_gib: number;
}
interface Host {
  budget: Resources;
  in_use: Resources;
  workstations: Record<string, number>;
}
interface User {
  id: string;
  email: string | null;
  admin: boolean;
  has_password: boolean;
  disabled: boolean;
  created_unix_ms: number;
}
const LIMITS = ["max_workstations", "max_vcpus", "max_mem_mib", "max_disk_gib", "max_execs"] as const;
type Limit = (typeof LIMITS)[number];
type Quota = Partial<Record<Limit, number | null>>;
interface QuotaReport {
  limits: Quota;
  overrides: Quota;
  usage: { workstations: number; vcpus: number; mem_mib: number; disk_gib: number; execs: number };
}
const LIMIT_NAMES: Record<Limit, string> = {
  max_workstations: "Workstations",
  max_vcpus: "vCPUs",
  max_mem_mib: "Memory (MiB)",
  max_disk_gib: "Disk (GiB)",
  max_execs: "Commands at once",
};

export function AdminPage() {
  const [error, setError] = useState<string | null>(null);
  return (
    <main class="page">
      <div class="pagehead">
        <h1>Administration</h1>
      </div>
      <ErrorLine error={error} />
      <HostCard onError={setError} />
      <Users onError={setError} />
      <Allowlist onError={setError} />
    </main>
  );
}

function Meter({ label, used, budget, unit }: { label: string; used: number; budget: number; unit: (n: number) => string }) {
  const pct = budget > 0 ? Math.min(100, Math.round((100 * used) / budget)) : 0;
  return (
    <div class="meter">
      <div class="meterhead">
        <span>{label}</span>
        <span class="muted">
          {unit(used)} of {unit(budget)}
        </span>
      </div>
      <div class="bar" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={budget} aria-valuenow={used}>
        <span style={{ width: `${pct}%` }} class={pct > 90 ? "hot" : ""} />
      </div>
    </div>
  );
}

/** The host's budgets, read again whenever a workstation changes. */
function HostCard({ onError }: { onError: (m: string) => void }) {
  const { list } = useWorkstations();
  const [host, setHost] = useState<Host | null>(null);
  useEffect(() => {
    call<Host>("GET", "/api/v1/host").then(setHost, (e) => onError(describe(e)));
  }, [list]);
  if (!host) return null;
  const { budget: b, in_use: u } = host;
  return (
    <section class="card" aria-labelledby="host-title">
      <h2 id="host-title">This host</h2>
      <div class="meters">
        <Meter label="Memory" used={u.mem_mib} budget={b.mem_mib} unit={mib} />
        <Meter label="vCPUs" used={u.vcpus} budget={b.vcpus} unit={(n) => `${n}`} />
        <Meter label="Disk" used={u.disk_gib} budget={b.disk_gib} unit={(n) => `${n} GiB`} />
      </div>
      <p class="muted small">
        Workstations:{" "}
        {Object.entries(host.workstations)
          .map(([state, n]) => `${n} ${state}`)
          .join(", ") || "none"}
        . Running and paused ones hold their memory and vCPUs; every one, hibernated ones included, its disk.
      </p>
    </section>
  );
}

function Users({ onError }: { onError: (m: string) => void }) {
  const [users, setUsers] = useState<User[] | null>(null);
  const [quotas, setQuotas] = useState<Record<string, QuotaReport>>({});
  const [adding, setAdding] = useState(false);
  const [editing, setEditing] = useState<User | null>(null);
  const [removing, setRemoving] = useState<User | null>(null);

  const load = async () => {
    try {
      const { users } = await call<{ users: User[] }>("GET", "/api/v1/users");
      setUsers(users);
      const reports = await Promise.all(users.map((u) => call<QuotaReport>("GET", `/api/v1/users/${encodeURIComponent(u.id)}/quota`)));
      setQuotas(Object.fromEntries(users.map((u, i) => [u.id, reports[i]])));
    } catch (e) {
      onError(describe(e));
    }
  };
  useEffect(() => void load(), []);

  const patch = async (u: User, change: object) => {
    try {
      await call("PATCH", `/api/v1/users/${encodeURIComponent(u.id)}`, change);
      await load();
    } catch (e) {
      onError(`${u.id}: ${describe(e)}`);
    }
  };

  const limit = (n: number | null | undefined) => (n ? `${n}` : "∞");
  return (
    <section class="card" aria-labelledby="users-title">
      <div class="pagehead">
        <h2 id="users-title">Accounts</h2>
        <span class="spacer" />
        <button onClick={() => setAdding(true)}>Add account</button>
      </div>
      <div class="tablewrap">
        <table class="list">
          <thead>
            <tr>
              <th>Account</th>
              <th>Email</th>
              <th>Workstations</th>
              <th>vCPUs</th>
              <th>Memory</th>
              <th>Disk</th>
              <th>
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users?.map((u) => {
              const q = quotas[u.id];
              return (
                <tr key={u.id} data-user={u.id}>
                  <td>
                    {u.id}
                    {u.admin && <span class="badge">admin</span>}
                    {u.disabled && <span class="badge">disabled</span>}
                  </td>
                  <td>{u.email ?? "—"}</td>
                  <td>{q && `${q.usage.workstations} / ${limit(q.limits.max_workstations)}`}</td>
                  <td>{q && `${q.usage.vcpus} / ${limit(q.limits.max_vcpus)}`}</td>
                  <td>{q && `${mib(q.usage.mem_mib)} / ${q.limits.max_mem_mib ? mib(q.limits.max_mem_mib) : "∞"}`}</td>
                  <td>{q && `${q.usage.disk_gib} / ${limit(q.limits.max_disk_gib)} GiB`}</td>
                  <td>
                    <span class="actions">
                      <button class="small" aria-label={`Quota of ${u.id}`} onClick={() => setEditing(u)}>
                        quota
                      </button>
                      <button class="small" aria-label={`${u.disabled ? "Enable" : "Disable"} ${u.id}`} onClick={() => patch(u, { disabled: !u.disabled })}>
                        {u.disabled ? "enable" : "disable"}
                      </button>
                      <button class="small" aria-label={`${u.admin ? "Make a user" : "Make an administrator"}: ${u.id}`} onClick={() => patch(u, { admin: !u.admin })}>
                        {u.admin ? "make user" : "make admin"}
                      </button>
                      <button class="small danger" aria-label={`Remove ${u.id}`} onClick={() => setRemoving(u)}>
                        remove
                      </button>
                    </span>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {adding && <AddUser onClose={() => setAdding(false)} onDone={load} />}
      {editing && quotas[editing.id] && <QuotaDialog user={editing} report={quotas[editing.id]} onClose={() => setEditing(null)} onDone={load} />}
      {removing && (
        <Confirm
          title={`Remove ${removing.id}?`}
          body={<p>The account, its sessions and API tokens go. Accounts that own workstations cannot be removed.</p>}
          action="Remove"
          danger
          run={async () => {
            await call("DELETE", `/api/v1/users/${encodeURIComponent(removing.id)}`);
            await load();
          }}
          onClose={() => setRemoving(null)}
        />
      )}
    </section>
  );
}

function AddUser({ onClose, onDone }: { onClose: () => void; onDone: () => void }) {
  const [f, setF] = useState({ id: "", password: "", email: "", admin: false });
  const submit = async () => {
    await call("POST", "/api/v1/users", { id: f.id, password: f.password || undefined, email: f.email || undefined, admin: f.admin });
    onDone();
  };
  return (
    <FormDialog title="Add an account" action="Add" submit={submit} onClose={onClose}>
      <label>
        Account name
        <input name="id" required value={f.id} onInput={(e) => setF({ ...f, id: e.currentTarget.value })} autofocus />
      </label>
      <label>
        Password (at least 8 characters; none: it cannot sign in with one)
        <input name="password" type="password" autocomplete="new-password" value={f.password} onInput={(e) => setF({ ...f, password: e.currentTarget.value })} />
      </label>
      <label>
        Email
        <input name="email" type="email" value={f.email} onInput={(e) => setF({ ...f, email: e.currentTarget.value })} />
      </label>
      <label class="check">
        <input type="checkbox" checked={f.admin} onChange={(e) => setF({ ...f, admin: e.currentTarget.checked })} /> Administrator
      </label>
    </FormDialog>
  );
}

/** A user's own limits: blank keeps the role's, 0 is unlimited. */
function QuotaDialog({ user, report, onClose, onDone }: { user: User; report: QuotaReport; onClose: () => void; onDone: () => void }) {
  const [f, setF] = useState<Record<Limit, string>>(Object.fromEntries(LIMITS.map((k) => [k, report.overrides[k]?.toString() ?? ""])) as Record<Limit, string>);
  const submit = async () => {
    const body = Object.fromEntries(LIMITS.map((k) => [k, f[k].trim() === "" ? null : Number(f[k])]));
    await call("PUT", `/api/v1/users/${encodeURIComponent(user.id)}/quota`, body);
    onDone();
  };
  return (
    <FormDialog title={`Quota of ${user.id}`} action="Save" submit={submit} onClose={onClose}>
      <p class="muted small">Blank: the {user.admin ? "administrators'" : "users'"} default. 0: unlimited.</p>
      {LIMITS.map((k) => (
        <label key={k}>
          {LIMIT_NAMES[k]}
          <input name={k} type="number" min={0} value={f[k]} placeholder={report.limits[k] ? `${report.limits[k]} (default)` : "unlimited (default)"} onInput={(e) => setF({ ...f, [k]: e.currentTarget.value })} />
        </label>
      ))}
    </FormDialog>
  );
}

/** Who may sign in with Hypha: the configured entries, and those kept here. */
function Allowlist({ onError }: { onError: (m: string) => void }) {
  const [list, setList] = useState<{ configured: string[]; managed: string[] } | null>(null);
  const [text, setText] = useState("");
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    call<{ configured: string[]; managed: string[] }>("GET", "/api/v1/allowlist").then((l) => {
      setList(l);
      setText(l.managed.join("\n"));
    }, (e) => onError(describe(e)));
  }, []);
  const save = async (e: Event) => {
    e.preventDefault();
    setSaved(false);
    try {
      const managed = text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
      setList(await call("PUT", "/api/v1/allowlist", { managed }));
      setSaved(true);
    } catch (err) {
      onError(`allowlist: ${describe(err)}`);
    }
  };
  if (!list) return null;
  return (
    <section class="card" aria-labelledby="allow-title">
      <h2 id="allow-title">Email allowlist for Hypha sign-ins</h2>
      <p class="muted small">
        Addresses (<code>ann@lab.org</code>) or domains (<code>*@lab.org</code>). With no entry at all, every Hypha account is admitted.
        {list.configured.length > 0 && <> From the configuration: {list.configured.join(", ")}.</>}
      </p>
      <form class="form" onSubmit={save}>
        <label>
          Kept here, one per line
          <textarea name="managed" rows={4} value={text} onInput={(e) => setText(e.currentTarget.value)} />
        </label>
        <div class="buttons">
          {saved && <span class="muted" role="status">Saved.</span>}
          <button class="primary" type="submit">
            Save allowlist
          </button>
        </div>
      </form>
    </section>
  );
}
