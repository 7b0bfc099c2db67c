// What the browser tests share: Debian's Chromium launched for a closed network, and contexts
// that record console errors and failed requests of hearth's own pages.
import { chromium } from "playwright-core";

export const STEP_MS = 180_000;

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // Without the background-networking flags Chromium keeps trying hosts this machine cannot reach.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Records what went wrong, and the step it went wrong in. */
export class Run {
  problems = [];
  step = "start";

  say(s) {
    this.step = s;
    console.log(`${this.name}: ${s}`);
  }

  constructor(name) {
    this.name = name;
  }

  /** A context whose pages on `base` must log no console error and see no failed or
   * unexpected (not in `ctx.expected`, [status, url part]) request. */
  async context(browser, base, name, options = {}) {
    const ctx = await browser.newContext({ acceptDownloads: true, ...options });
    ctx.setDefaultTimeout(STEP_MS);
    ctx.expected = [];
    const ours = (url) => url.startsWith(base);
    // Chromium logs each 4xx answer as a console error too: those expected are not problems.
    const expectedText = (text) => ctx.expected.some(([s]) => text.includes(`status of ${s}`));
    ctx.on("console", (m) => {
      if (m.type() === "error" && ours(m.page()?.url() ?? base) && !expectedText(m.text())) this.problems.push(`${name} console error during "${this.step}": ${m.text()}`);
    });
    ctx.on("requestfailed", async (r) => {
      // Streams and sockets are cut when a page goes away, and Chromium reports a 204 answer
      // to a fetch as aborted once it was answered: neither is a failure.
      if (!ours(r.url()) || r.url().includes("/stream") || r.url().endsWith("/ws") || (await r.response().catch(() => null))) return;
      this.problems.push(`${name} request failed during "${this.step}": ${r.method()} ${r.url()} ${r.failure()?.errorText}`);
    });
    ctx.on("response", (r) => {
      if (ours(r.url()) && r.status() >= 400 && !ctx.expected.some(([s, part]) => s === r.status() && r.url().includes(part)))
        this.problems.push(`${name} got ${r.status()} during "${this.step}": ${r.request().method()} ${r.url()}`);
    });
    return ctx;
  }

  /** Runs `steps`, then reports and exits: 1 on a failed step or any recorded problem. */
  async main(steps) {
    const browser = await launch();
    let failed = false;
    try {
      await steps(browser);
    } catch (e) {
      failed = true;
      console.error(`${this.name}: FAILED at "${this.step}": ${e.stack ?? e}`);
      // What each open page showed when it failed.
      const dir = process.env.SCREENSHOTS;
      let n = 0;
      for (const page of dir ? browser.contexts().flatMap((c) => c.pages()) : []) {
        const path = `${dir}/failed-${++n}.png`;
        if (await page.screenshot({ path }).then(() => true, () => false)) console.error(`${this.name}: ${page.url()} as it failed: ${path}`);
      }
    } finally {
      await browser.close();
    }
    for (const p of this.problems) console.error(`${this.name}: ${p}`);
    if (failed || this.problems.length) process.exit(1);
    console.log(`${this.name}: passed`);
  }
}

/** Everything the page's current terminal holds: scrollback and screen, as text. */
export const termText = (page) =>
  page.evaluate(() => {
    const b = window.hearthTerminal.term.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
    return lines.join("\n");
  });
