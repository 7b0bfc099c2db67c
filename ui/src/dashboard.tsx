// The dashboard: the caller's workstations, kept live by the server's list stream
// (GET /api/v1/workstations/stream, Server-Sent Events), and the create dialog.
import { useEffect, useState } from "preact/hooks";
import { call, describe, Session, Workstation } from "./api";
import { Actions, ago, ErrorLine, mib, Modal, StateBadge } from "./common";
import { go, navigate } from "./router";

/** The live list; `live` is false while the stream is down (the browser reconnects it). */
export function useWorkstations(): { list: Workstation[] | null; live: boolean } {
  const [list, setList] = useState<Workstation[] | null>(null);
  const [live, setLive] = useState(false);
  useEffect(() => {
    const src = new EventSource("/api/v1/workstations/stream");
    src.addEventListener("workstations", (e) => {
      setList(JSON.parse((e as MessageEvent).data).workstations);
      setLive(true);
    });
    src.onerror = () => setLive(false);
    return () => src.close();
  }, []);
  return { list, live };
}

export function Dashboard({ session }: { session: Session }) {
  const { list, live } = useWorkstations();
  const [creating, setCreating] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [, tick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 30000);
    return () => clearInterval(t);
  }, []);
  const others = list?.some((w) => w.owner !== session.user);

  return (
    <main class="page">
      <div class="pagehead">
        <h1>Workstations</h1>
        <span class={live ? "live on" : "live"} title={live ? "updates as it happens" : "reconnecting to the server"}>
          {live ? "live" : "reconnecting…"}
        </span>
        <span class="spacer" />
        <button class="primary" onClick={() => setCreating(true)} disabled={session.scope === "read"}>
          New workstation
        </button>
      </div>
      <ErrorLine error={error} />
      {list === null ? (
        <p class="muted">Loading…</p>
      ) : list.length === 0 ? (
        <div class="empty card">
          <p>No workstations yet. Each one is a Linux machine of its own with a Python data-science environment.</p>
          <button class="primary" onClick={() => setCreating(true)}>
            Create your first
          </button>
        </div>
      ) : (
        <div class="tablewrap">
          <table class="list">
            <thead>
              <tr>
                <th>Name</th>
                <th>State</th>
                {others && <th>Owner</th>}
                <th>Address</th>
                <th>Size</th>
                <th>Created</th>
                <th>
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((w) => (
                <tr key={w.id} data-id={w.id}>
                  <td>
                    <a href={`/w/${w.id}`} onClick={(e) => go(e, `/w/${w.id}`)}>
                      {w.name}
                    </a>
                    {w.read_only && <span class="badge">read-only</span>}
                  </td>
                  <td>
                    <StateBadge state={w.state} />
                  </td>
                  {others && <td>{w.owner}</td>}
                  <td class="mono">{w.address ?? "—"}</td>
                  <td>
                    {w.vcpu_count} vCPU · {mib(w.mem_size_mib)} · {w.disk_size_gib} GiB disk
                  </td>
                  <td title={new Date(w.created_unix_ms).toLocaleString()}>{ago(w.created_unix_ms)}</td>
                  <td>
                    <Actions w={w} onError={setError} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {creating && <CreateDialog onClose={() => setCreating(false)} />}
    </main>
  );
}

interface Preset {
  name: string;
  vcpu_count: number;
  mem_size_mib: number;
  disk_size_gib: number;
}

export const PRESETS: Preset[] = [
  { name: "Small", vcpu_count: 1, mem_size_mib: 1024, disk_size_gib: 4 },
  { name: "Medium", vcpu_count: 2, mem_size_mib: 2048, disk_size_gib: 8 },
  { name: "Large", vcpu_count: 4, mem_size_mib: 4096, disk_size_gib: 16 },
];

function CreateDialog({ onClose }: { onClose: () => void }) {
  const { vcpu_count, mem_size_mib, disk_size_gib } = PRESETS[0];
  const [f, setF] = useState({
    name: "",
    vcpu_count,
    mem_size_mib,
    disk_size_gib,
    read_only: false,
    smt_enabled: false,
    egress: "",
    rx_mbps: 0,
    tx_mbps: 0,
    start: true,
    packages: "",
    script: "",
  });
  const [error, setError] = useState<string | null>(null);
  const [field, setField] = useState<string | null>(null);
  const [since, setSince] = useState<number | null>(null);
  const [, tick] = useState(0);
  useEffect(() => {
    if (since === null) return;
    const t = setInterval(() => tick((n) => n + 1), 250);
    return () => clearInterval(t);
  }, [since]);

  const set = (k: string, v: unknown) => setF({ ...f, [k]: v });
  const num = (k: string) => (e: Event) => set(k, Number((e.currentTarget as HTMLInputElement).value));
  const preset = PRESETS.find((p) => p.vcpu_count === f.vcpu_count && p.mem_size_mib === f.mem_size_mib && p.disk_size_gib === f.disk_size_gib)?.name;

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setField(null);
    setSince(Date.now());
    const body: Record<string, unknown> = {
      name: f.name,
      vcpu_count: f.vcpu_count,
      mem_size_mib: f.mem_size_mib,
      disk_size_gib: f.disk_size_gib,
      read_only: f.read_only,
      smt_enabled: f.smt_enabled,
      start: f.start,
    };
    if (f.egress) body.egress = f.egress;
    if (f.rx_mbps > 0 || f.tx_mbps > 0) body.bandwidth = { rx_mbps: f.rx_mbps, tx_mbps: f.tx_mbps };
    const packages = f.packages.split(/[\s,]+/).filter((p) => p);
    if (packages.length || f.script.trim()) body.setup = { python_packages: packages, script: f.script };
    try {
      const w = await call<Workstation>("POST", "/api/v1/workstations", body);
      onClose();
      navigate(`/w/${w.id}`);
    } catch (err) {
      setError(describe(err));
      setField((err as { field?: string }).field ?? null);
      setSince(null);
    }
  };
  const invalid = (k: string) => (field === k || field?.startsWith(k + ".") ? { "aria-invalid": true } : {});

  return (
    <Modal title="New workstation" onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>
          Name
          <input name="name" required maxLength={64} value={f.name} onInput={(e) => set("name", e.currentTarget.value)} placeholder="analysis" autofocus {...invalid("name")} />
        </label>
        <fieldset class="presets">
          <legend>Size</legend>
          {PRESETS.map((p) => (
            <label key={p.name} class={preset === p.name ? "preset on" : "preset"}>
              <input type="radio" name="preset" checked={preset === p.name} onChange={() => setF({ ...f, vcpu_count: p.vcpu_count, mem_size_mib: p.mem_size_mib, disk_size_gib: p.disk_size_gib })} />
              <b>{p.name}</b>
              <small>
                {p.vcpu_count} vCPU · {mib(p.mem_size_mib)} · {p.disk_size_gib} GiB
              </small>
            </label>
          ))}
        </fieldset>
        <div class="row3">
          <label>
            vCPUs
            <input name="vcpu_count" type="number" min={1} max={32} value={f.vcpu_count} onInput={num("vcpu_count")} {...invalid("vcpu_count")} />
          </label>
          <label>
            Memory (MiB)
            <input name="mem_size_mib" type="number" min={128} step={128} value={f.mem_size_mib} onInput={num("mem_size_mib")} {...invalid("mem_size_mib")} />
          </label>
          <label>
            Disk (GiB)
            <input name="disk_size_gib" type="number" min={1} value={f.disk_size_gib} onInput={num("disk_size_gib")} {...invalid("disk_size_gib")} />
          </label>
        </div>
        <details>
          <summary>More settings</summary>
          <div class="row3">
            <label>
              Network
              <select name="egress" value={f.egress} onChange={(e) => set("egress", e.currentTarget.value)} {...invalid("egress")}>
                <option value="">The server's default</option>
                <option value="nat">Internet (NAT)</option>
                <option value="none">No network</option>
              </select>
            </label>
            <label>
              Download limit (Mbit/s, 0: none)
              <input name="rx_mbps" type="number" min={0} value={f.rx_mbps} onInput={num("rx_mbps")} {...invalid("bandwidth")} />
            </label>
            <label>
              Upload limit (Mbit/s, 0: none)
              <input name="tx_mbps" type="number" min={0} value={f.tx_mbps} onInput={num("tx_mbps")} {...invalid("bandwidth")} />
            </label>
          </div>
          <label class="check">
            <input type="checkbox" name="read_only" checked={f.read_only} onChange={(e) => set("read_only", e.currentTarget.checked)} />
            Read-only disk (nothing written survives a stop)
          </label>
          <label class="check">
            <input type="checkbox" name="smt_enabled" checked={f.smt_enabled} onChange={(e) => set("smt_enabled", e.currentTarget.checked)} />
            Simultaneous multithreading
          </label>
          <label class="check">
            <input type="checkbox" name="start" checked={f.start} onChange={(e) => set("start", e.currentTarget.checked)} />
            Boot it now
          </label>
          <label>
            Extra Python packages (installed at its first boot; its terminal “setup” shows how it went)
            <input name="packages" value={f.packages} onInput={(e) => set("packages", e.currentTarget.value)} placeholder="polars scikit-learn==1.5.2" {...invalid("setup.python_packages")} />
          </label>
          <label>
            Startup script (bash, run once at its first boot as scientist)
            <textarea name="script" rows={4} value={f.script} onInput={(e) => set("script", e.currentTarget.value)} placeholder="git clone https://github.com/me/project" {...invalid("setup.script")} />
          </label>
        </details>
        <ErrorLine error={error} />
        {since !== null && (
          <p class="progress" role="status">
            <span class="spinner" /> {f.start ? "Creating and booting" : "Creating"}… {((Date.now() - since) / 1000).toFixed(0)} s
          </p>
        )}
        <div class="buttons">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button class="primary" type="submit" disabled={since !== null}>
            Create
          </button>
        </div>
      </form>
    </Modal>
  );
}
