// One browser terminal attached to one session in a workstation (docs/terminal-protocol.md):
// xterm.js drawing it, a WebSocket carrying it. The session lives in the workstation, so a
// reconnect (after a network blip, a server restart, a reload) starts from a blank terminal
// and writes the server's replay: the scrollback, then the exact screen.
import { Terminal as Xterm, ITheme } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { SearchAddon } from "@xterm/addon-search";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { WebglAddon } from "@xterm/addon-webgl";
import { ClipboardAddon } from "@xterm/addon-clipboard";
import { Prefs } from "./prefs";

export type Status =
  | { kind: "connecting" }
  | { kind: "connected"; readOnly: boolean }
  | { kind: "retrying"; inSecs: number }
  | { kind: "offline" } // gave up retrying on its own: Enter (or the button) tries again
  | { kind: "exited"; code: number | null; signal: number | null }
  | { kind: "gone"; why: string };

const DARK: ITheme = { background: "#161a21", foreground: "#d7dae0", cursor: "#f28c38", selectionBackground: "#3a4456" };
const LIGHT: ITheme = { background: "#fbfbfa", foreground: "#24292f", cursor: "#d35400", selectionBackground: "#c8d6ea", black: "#24292f", brightBlack: "#57606a", white: "#d0d7de", brightWhite: "#f6f8fa" };

/** Retry delays after a connection ends; past the last, the terminal waits for Enter. */
const RETRY_MS = [250, 500, 1000, 2000, 4000, 8000, 15000, 30000];

export class TerminalView {
  readonly term: Xterm;
  readonly search = new SearchAddon();
  private fit = new FitAddon();
  private ws: WebSocket | null = null;
  private attempt = 0;
  private retryTimer = 0;
  private replayLeft = 0;
  private readOnly = false;
  private closed = false;
  private resizeObserver: ResizeObserver;
  private encoder = new TextEncoder();
  private pingTimer = 0;

  constructor(
    private el: HTMLElement,
    private url: string,
    prefs: Prefs,
    private onStatus: (s: Status) => void,
    private onTitle: (t: string) => void,
  ) {
    this.term = new Xterm({
      allowProposedApi: true, // unicode11
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, monospace',
      fontSize: prefs.fontSize,
      scrollback: prefs.scrollback,
      theme: prefs.theme === "dark" ? DARK : LIGHT,
      cursorBlink: true,
      macOptionIsMeta: true,
    });
    this.term.loadAddon(this.fit);
    this.term.loadAddon(this.search);
    this.term.loadAddon(new WebLinksAddon());
    this.term.loadAddon(new ClipboardAddon()); // OSC 52: programs in the shell may set the clipboard
    this.term.loadAddon(new Unicode11Addon());
    this.term.unicode.activeVersion = "11";
    this.term.open(el);
    // WebGL draws fastest, but not on touch screens: there (in Chromium's phone emulation at
    // a device pixel ratio of 2, measured) its canvas came out at twice its size, the bottom
    // half of the terminal cut off. The DOM renderer draws those.
    if (!matchMedia("(pointer: coarse)").matches) {
      try {
        const gl = new WebglAddon();
        gl.onContextLoss(() => gl.dispose()); // back to the DOM renderer
        this.term.loadAddon(gl);
      } catch {
        // No WebGL here: the DOM renderer draws.
      }
    }
    this.term.attachCustomKeyEventHandler((e) => this.key(e));
    this.term.onData((d) => this.send(this.encoder.encode(this.ctrlNext ? this.withCtrl(d) : d)));
    this.term.onBinary((d) => this.send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
    this.term.onResize(({ rows, cols }) => this.control({ type: "resize", rows, cols }));
    this.term.onTitleChange((t) => this.onTitle(t));
    this.resizeObserver = new ResizeObserver(() => this.refit());
    this.resizeObserver.observe(el);
    this.refit();
    this.connect();
  }

  /** Copy and paste with Ctrl-Shift-C / Ctrl-Shift-V (Ctrl-C stays the shell's interrupt). */
  private key(e: KeyboardEvent): boolean {
    if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) {
      if (e.type === "keydown" && e.key === "Enter" && this.status === "offline") {
        this.reconnect();
        return false;
      }
      return true;
    }
    if (e.code === "KeyC") {
      const s = this.term.getSelection();
      if (s) void navigator.clipboard?.writeText(s);
      return false;
    }
    if (e.code === "KeyV") {
      void navigator.clipboard?.readText().then((t) => this.term.paste(t));
      return false;
    }
    return true;
  }

  private status: Status["kind"] = "connecting";
  private setStatus(s: Status) {
    this.status = s.kind;
    this.onStatus(s);
  }

  private connect() {
    clearTimeout(this.retryTimer);
    this.setStatus({ kind: "connecting" });
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let attached = false;
    ws.onmessage = (m) => {
      if (typeof m.data === "string") {
        const msg = JSON.parse(m.data);
        if (msg.type === "attached") {
          attached = true;
          this.attempt = 0;
          this.readOnly = msg.read_only;
          // A blank terminal of the session's size takes the replay; then it is fitted to
          // this window (and the session resized to it) once the replay is drawn.
          this.term.reset();
          this.term.clear();
          if (msg.rows !== this.term.rows || msg.cols !== this.term.cols) this.term.resize(msg.cols, msg.rows);
          this.replayLeft = msg.replay_bytes;
          if (msg.title) this.onTitle(msg.title);
          if (this.replayLeft === 0) this.replayed();
          this.setStatus({ kind: "connected", readOnly: this.readOnly });
        } else if (msg.type === "resize" && this.readOnly) {
          this.term.resize(msg.cols, msg.rows);
        } else if (msg.type === "exit") {
          this.closed = true;
          this.setStatus({ kind: "exited", code: msg.code ?? null, signal: msg.signal ?? null });
        } else if (msg.type === "lagged") {
          // Fell behind: the server closes, the reconnect below brings a fresh screen.
          this.attempt = 0;
        }
        return;
      }
      const bytes = new Uint8Array(m.data as ArrayBuffer);
      if (this.replayLeft > 0) {
        this.replayLeft -= bytes.length;
        this.term.write(bytes, this.replayLeft <= 0 ? () => this.replayed() : undefined);
      } else {
        this.term.write(bytes);
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      if (this.closed) return;
      if (!attached && ev.code === 1006 && this.attempt >= 2) {
        // Never attached, twice: ask the API why (a 404: the terminal or workstation is gone).
        void this.why().then((gone) => (gone ? this.setStatus({ kind: "gone", why: gone }) : this.retry()));
        return;
      }
      this.retry();
    };
    ws.onopen = () => {
      clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => this.control({ type: "ping" }), 20000);
    };
  }

  /** The replay is drawn: fit this window and tell the session its size. */
  private replayed() {
    this.refit(true);
  }

  private async why(): Promise<string | null> {
    const api = this.url.replace(/^ws/, "http").replace(/\/ws(\?.*)?$/, "");
    const list = api.replace(/\/[^/]+$/, "");
    try {
      const r = await fetch(list, { credentials: "same-origin" });
      if (r.status === 404) return "the workstation is gone";
      if (!r.ok) return null;
      const { terminals } = await r.json();
      const id = api.slice(api.lastIndexOf("/") + 1);
      const t = terminals.find((t: { id: string }) => t.id === id);
      if (!t || t.ended_unix_ms) return "this terminal has ended (its workstation stopped, or it was closed)";
    } catch {
      /* the server is unreachable: keep retrying */
    }
    return null;
  }

  private retry() {
    if (this.attempt >= RETRY_MS.length) {
      this.setStatus({ kind: "offline" });
      this.term.write("\r\n\x1b[2m[disconnected: press Enter to reconnect]\x1b[0m");
      return;
    }
    const ms = RETRY_MS[this.attempt++];
    this.setStatus({ kind: "retrying", inSecs: Math.ceil(ms / 1000) });
    this.retryTimer = window.setTimeout(() => this.connect(), ms);
  }

  /** Tries again now (after the automatic retries gave up). */
  reconnect() {
    if (this.closed) return;
    this.attempt = 0;
    this.ws?.close();
    this.ws = null;
    this.connect();
  }

  private send(bytes: Uint8Array) {
    if (this.ws?.readyState === WebSocket.OPEN && this.replayLeft <= 0 && !this.readOnly) this.ws.send(bytes);
  }

  /** The touch key bar's Ctrl: the next key typed is sent with Ctrl held. */
  ctrlNext = false;
  onCtrlUsed: () => void = () => {};
  private withCtrl(d: string): string {
    this.ctrlNext = false;
    this.onCtrlUsed();
    const c = d.length === 1 ? d.toUpperCase().charCodeAt(0) : 0;
    return c >= 64 && c <= 95 ? String.fromCharCode(c - 64) : d;
  }

  /** Sends keys as if typed (the touch key bar). */
  type(s: string) {
    this.send(this.encoder.encode(s));
  }

  private control(m: object) {
    if (this.ws?.readyState === WebSocket.OPEN && this.replayLeft <= 0) this.ws.send(JSON.stringify(m));
  }

  /** Fits the terminal to its element; `announce` sends the size even when it did not change. */
  refit(announce = false) {
    if (!this.el.isConnected || this.el.clientWidth === 0) return;
    const before = [this.term.rows, this.term.cols];
    try {
      this.fit.fit();
    } catch {
      return;
    }
    if (announce && before[0] === this.term.rows && before[1] === this.term.cols) {
      this.control({ type: "resize", rows: this.term.rows, cols: this.term.cols });
    }
  }

  setPrefs(p: Prefs) {
    this.term.options.fontSize = p.fontSize;
    this.term.options.scrollback = p.scrollback;
    this.term.options.theme = p.theme === "dark" ? DARK : LIGHT;
    this.refit();
  }

  focus() {
    this.term.focus();
  }

  dispose() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.resizeObserver.disconnect();
    this.ws?.close();
    this.term.dispose();
  }
}
