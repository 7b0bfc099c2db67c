// Latency as a browser user meets it (bench/ui.sh runs this): in Debian's Chromium,
//   open: from opening a terminal's page (navigation start) to its prompt rendered by xterm.js;
//   key: from a key pressed (the keydown event) to its echo rendered (xterm's onRender);
//   ws echo: a bare WebSocket in the same page, attached to the same terminal: a byte sent
//            to its echo received (no xterm, no rendering): the floor under `key`.
// Prints one JSON object: each measure's samples (ms) and their median, p90, min, max.
//   HEARTH_URL=… HEARTH_USER=… HEARTH_PASSWORD=… WORKSTATION=… TERMINAL=… [OPENS=10] [KEYS=200] node ui/test/latency.mjs
import { launch } from "./browser.mjs";

const { HEARTH_URL: base, HEARTH_USER: user, HEARTH_PASSWORD: password, WORKSTATION: ws, TERMINAL: tid } = process.env;
const opens = Number(process.env.OPENS ?? 10);
const keys = Number(process.env.KEYS ?? 200);
if (!base || !user || !password || !ws || !tid) throw new Error("HEARTH_URL, HEARTH_USER, HEARTH_PASSWORD, WORKSTATION and TERMINAL are needed");

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  const r = (x) => Math.round(x * 100) / 100;
  return { n: s.length, median: r(q(0.5)), p90: r(q(0.9)), min: r(s[0]), max: r(s.at(-1)), samples: s.map(r) };
};

// Installed before the page's own script: when the page makes its terminal, time the first
// render that shows a prompt.
const hook = () => {
  let t;
  Object.defineProperty(window, "hearthTerminal", {
    get: () => t,
    set(v) {
      t = v;
      const sub = v.term.onRender(() => {
        const b = v.term.buffer.active;
        const line = b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? "";
        if (line.trimEnd().endsWith("$")) {
          window.firstPrompt = performance.now();
          sub.dispose();
        }
      });
    },
  });
};

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await ctx.addInitScript(hook);
  const page = await ctx.newPage();
  await page.goto(base);
  await page.getByLabel("Account").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Workstations" }).waitFor();
  const url = `${base}/w/${ws}/t/${tid}`;

  const open = [];
  for (let i = 0; i < opens; i++) {
    await page.goto(url);
    await page.waitForFunction(() => window.firstPrompt !== undefined, null, { timeout: 60000 });
    open.push(await page.evaluate(() => window.firstPrompt));
  }

  // Keystrokes: each one's keydown to the render that shows it echoed.
  await page.evaluate(() => {
    const term = window.hearthTerminal.term;
    window.keyTimes = [];
    let pressed = null;
    // Printable keys only (the Ctrl-U that keeps the line short moves the cursor too).
    document.addEventListener("keydown", (e) => (pressed = e.key.length === 1 && !e.ctrlKey ? { at: performance.now(), x: term.buffer.active.cursorX } : null), true);
    term.onRender(() => {
      if (pressed && term.buffer.active.cursorX !== pressed.x) {
        window.keyTimes.push(performance.now() - pressed.at);
        pressed = null;
      }
    });
  });
  await page.locator(".xterm-helper-textarea").focus();
  for (let i = 0; i < keys; i++) {
    const before = await page.evaluate(() => window.keyTimes.length);
    await page.keyboard.press("x");
    await page.waitForFunction((n) => window.keyTimes.length > n, before, { timeout: 10000 });
    if (i % 40 === 39) await page.keyboard.press("Control+U"); // keep the line short
    await page.waitForTimeout(5);
  }
  const key = await page.evaluate(() => window.keyTimes);
  await page.keyboard.press("Control+U");

  // A bare WebSocket to the same terminal, from the same page: byte out, echo in.
  const echo = await page.evaluate(
    async ({ path, n }) => {
      const sock = new WebSocket(`ws://${location.host}${path}`);
      sock.binaryType = "arraybuffer";
      let replay = 0;
      let waiting = null;
      await new Promise((ok) => (sock.onmessage = (m) => typeof m.data === "string" && JSON.parse(m.data).type === "attached" && ((replay = JSON.parse(m.data).replay_bytes), ok())));
      let got = 0;
      sock.onmessage = (m) => {
        if (typeof m.data === "string") return;
        if (replay > 0) return void (replay -= m.data.byteLength);
        got += m.data.byteLength;
        if (waiting) {
          const w = waiting;
          waiting = null;
          w();
        }
      };
      await new Promise((ok) => setTimeout(ok, 300));
      const times = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await new Promise((ok) => {
          waiting = ok;
          sock.send(new TextEncoder().encode("y"));
        });
        times.push(performance.now() - t0);
        if (i % 40 === 39) {
          sock.send(new Uint8Array([21])); // Ctrl-U
          await new Promise((ok) => setTimeout(ok, 100));
        }
        await new Promise((ok) => setTimeout(ok, 5));
      }
      sock.send(new Uint8Array([21]));
      sock.close();
      return times;
    },
    { path: `/api/v1/workstations/${ws}/terminals/${tid}/ws`, n: keys },
  );
  console.log(JSON.stringify({ open_to_prompt_ms: stats(open), key_to_render_ms: stats(key), ws_echo_ms: stats(echo) }, null, 1));
} finally {
  await browser.close();
}
