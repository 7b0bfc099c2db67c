// The API client: JSON in and out, the session's CSRF token on every change, every error as
// an ApiError carrying the server's code and message (shown to the user as they are).

export interface Session {
  user: string;
  admin: boolean;
  scope: "read" | "write" | "admin";
  csrf_token?: string;
  expires_unix_ms?: number | null;
}

export interface Bandwidth {
  rx_mbps: number;
  tx_mbps: number;
}

export type State = "stopped" | "running" | "paused" | "crashed" | "lost" | "hibernated";

export interface Workstation {
  id: string;
  name: string;
  owner: string;
  state: State;
  vcpu_count: number;
  mem_size_mib: number;
  disk_size_gib: number;
  smt_enabled: boolean;
  read_only: boolean;
  bandwidth?: Bandwidth | null;
  recipe: string;
  address?: string | null;
  egress?: string | null;
  created_unix_ms: number;
  started_unix_ms?: number | null;
  stopped_unix_ms?: number | null;
  crash?: string | null;
  /** The caller's role when it is another user's shared with them. */
  shared_as?: "viewer" | "collaborator";
}

export interface Share {
  user: string;
  role: "viewer" | "collaborator";
  created_unix_ms: number;
}

export interface Terminal {
  id: string;
  workstation_id: string;
  rows: number;
  cols: number;
  argv: string[];
  user: string;
  created_unix_ms: number;
  attached: number;
  title: string;
  exited: boolean;
  exit_code?: number | null;
  exit_signal?: number | null;
  ended_unix_ms?: number | null;
}

export interface WsEvent {
  id: number;
  at_unix_ms: number;
  kind: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

let csrf: string | undefined;

/** The session's CSRF token, sent back on every request that changes something. */
export function useSession(s: Session | null) {
  csrf = s?.csrf_token;
}

/** Called when the server says the caller is not signed in (the session ended). */
let onSignedOut: () => void = () => {};
export function whenSignedOut(f: () => void) {
  onSignedOut = f;
}

async function errorOf(r: Response): Promise<ApiError> {
  let body: any = null;
  try {
    body = await r.json();
  } catch {
    /* not JSON: a proxy's page, say */
  }
  const e = body?.error;
  if (e?.code) return new ApiError(r.status, e.code, e.message, e.field ?? undefined);
  return new ApiError(r.status, "http_" + r.status, `the server answered ${r.status} ${r.statusText}`);
}

/** One request; `body` is sent as JSON unless it is a Blob (files). */
export async function call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let payload: BodyInit | undefined;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let r: Response;
  try {
    r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, "unreachable", "the server cannot be reached: " + (e as Error).message);
  }
  if (!r.ok) {
    const e = await errorOf(r);
    if (r.status === 401 && !path.startsWith("/api/v1/auth/")) onSignedOut();
    throw e;
  }
  if (r.status === 204) return undefined as T;
  const type = r.headers.get("Content-Type") ?? "";
  return (type.includes("json") ? await r.json() : await r.text()) as T;
}

/** What an error says to a person. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) return e.field ? `${e.message} (${e.field})` : e.message;
  return String((e as Error)?.message ?? e);
}

export const wsPath = (id: string) => `/api/v1/workstations/${encodeURIComponent(id)}`;
