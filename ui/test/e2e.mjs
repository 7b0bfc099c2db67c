// The web UI end to end, in Debian's Chromium driven by playwright-core, against a real
// `hearth serve` (crates/hearth/tests/ui_e2e.rs starts it, with real Firecracker workstations
// in the box, and the accounts named below). Run by that test; by hand:
//   HEARTH_URL=http://127.0.0.1:8080 ANN_PASSWORD=… BOB_PASSWORD=… node ui/test/e2e.mjs
// Fails (exit 1) on the first step that does not happen, on any console error, and on any
// failed request the step did not expect.
import { Run, STEP_MS, termText } from "./browser.mjs";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const base = process.env.HEARTH_URL;
const shots = process.env.SCREENSHOTS ?? "test-results";
const users = { ann: process.env.ANN_PASSWORD, bob: process.env.BOB_PASSWORD };
if (!base || !users.ann || !users.bob) throw new Error("HEARTH_URL, ANN_PASSWORD and BOB_PASSWORD are needed");
mkdirSync(shots, { recursive: true });

const trial = new Run("ui-e2e");
const say = (s) => trial.say(s);


async function waitText(page, pred, what) {
  const deadline = Date.now() + STEP_MS;
  let text = "";
  while (Date.now() < deadline) {
    text = await termText(page).catch(() => "");
    if (pred(text)) return text;
    await page.waitForTimeout(200);
  }
  throw new Error(`the terminal never showed ${what}; it shows:\n${text}`);
}

/** Types a command into the terminal (xterm's hidden textarea has the focus) and runs it. */
async function run(page, cmd) {
  await page.locator(".xterm-helper-textarea").focus();
  await page.keyboard.type(cmd);
  await page.keyboard.press("Enter");
}

/** The last line that is not blank ends in the shell's prompt. */
const prompt = (t) => (t.trimEnd().split("\n").at(-1) ?? "").endsWith("$");
const sttySizes = (t) => [...t.matchAll(/^(\d+) (\d+)$/gm)].map((m) => `${m[1]} ${m[2]}`);

async function signIn(page, user) {
  await page.goto(base);
  await page.getByLabel("Account").fill(user);
  await page.getByLabel("Password").fill(users[user]);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Workstations" }).waitFor();
}

await trial.main(async (browser) => {
  // --- ann, on a desktop-sized window ---
  const ctx = await trial.context(browser, base, "ann", { viewport: { width: 1280, height: 800 } });
  ctx.expected.push([401, "/api/v1/auth/session"]); // the page asks who is signed in before she is
  const page = await ctx.newPage();
  say("sign in");
  await signIn(page, "ann");
  await page.getByText("No workstations yet").waitFor();

  say("create a workstation with a preset");
  await page.getByRole("button", { name: "New workstation" }).click();
  await page.getByLabel("Name").fill("lab");
  await page.getByText("Small", { exact: true }).click();
  await page.getByText("More settings").click();
  await page.getByLabel("Network").selectOption("none"); // tests send no traffic off the host
  await page.getByLabel(/Startup script/).fill("echo from-setup-$((6*7)) > ~/setup-ran");
  await page.getByRole("button", { name: "Create", exact: true }).click();
  await page.waitForURL(/\/w\/w[0-9a-f]+\/t\/t[0-9a-f]+$/);
  const [, wsId] = page.url().match(/\/w\/(w[0-9a-f]+)\//);

  say("the terminal shows a prompt");
  await page.getByText("connected", { exact: true }).waitFor();
  await waitText(page, prompt, "a prompt");

  say("numpy answers");
  await run(page, `python3 -c "import numpy; print(numpy.arange(3).sum())"`);
  await waitText(page, (t) => /^3$/m.test(t), "numpy's 3");
  await page.screenshot({ path: join(shots, "terminal.png") });

  say("the startup script ran once, as scientist, in its own terminal");
  await run(page, "until [ -e ~/setup-ran ]; do sleep 0.2; done; cat ~/setup-ran; stat -c %U ~/setup-ran");
  await waitText(page, (t) => /^from-setup-42$/m.test(t) && /^scientist$/m.test(t), "the setup's file");
  await page.getByRole("tab", { name: "Setup", exact: true }).waitFor();

  say("resizing the window resizes the terminal");
  await run(page, "stty size");
  const before = sttySizes(await waitText(page, (t) => sttySizes(t).length === 1, "stty's size"))[0];
  await page.setViewportSize({ width: 900, height: 600 });
  await page.waitForTimeout(300); // the fit runs on the element's resize
  await run(page, "stty size");
  const after = sttySizes(await waitText(page, (t) => sttySizes(t).length >= 1 && sttySizes(t).at(-1) !== before, "a new size")).at(-1);
  console.log(`ui-e2e: stty size ${before} -> ${after}`);
  await page.setViewportSize({ width: 1280, height: 800 });

  say("a reload brings the screen and scrollback back");
  await run(page, "echo before-reload-$((6*7))");
  await waitText(page, (t) => t.includes("before-reload-42"), "the echo");
  await page.reload();
  await page.getByText("connected", { exact: true }).waitFor();
  // The screen (the echo) and the scrollback above it (numpy's answer, the first size).
  await waitText(page, (t) => t.includes("before-reload-42") && /^3$/m.test(t) && t.includes(before), "the screen and scrollback from before the reload");

  say("a second terminal tab");
  const firstTerminal = page.url();
  await page.getByRole("button", { name: "New terminal" }).click();
  await page.waitForURL((u) => u.href !== firstTerminal && /\/t\/t[0-9a-f]+$/.test(u.pathname));
  await page.getByText("connected", { exact: true }).waitFor();
  await waitText(page, prompt, "the second terminal's prompt");
  if ((await page.getByRole("tab", { name: /Terminal|scientist|@/ }).count()) < 2) throw new Error("two terminal tabs were expected");

  say("a file dropped on the terminal lands in the workstation");
  const content = `dropped at ${new Date().toISOString()}\n`;
  await page.locator(".xterm-host").evaluate((el, content) => {
    const dt = new DataTransfer();
    dt.items.add(new File([content], "dropped.txt", { type: "text/plain" }));
    el.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
    el.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, content);
  await page.getByText("Uploaded /home/scientist/dropped.txt").waitFor();
  await run(page, "cat ~/dropped.txt");
  await waitText(page, (t) => t.includes(content.trim()), "the dropped file's content");

  say("a file comes down");
  await page.getByLabel("Path of a file to download").fill("dropped.txt");
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download" }).click()]);
  const got = readFileSync(await download.path(), "utf8");
  if (got !== content) throw new Error(`downloaded ${JSON.stringify(got)}, uploaded ${JSON.stringify(content)}`);

  say("the serial console");
  await page.getByRole("tab", { name: "Console" }).click();
  await page.locator("pre.console").filter({ hasText: "hearth-agent: ready" }).waitFor();
  await page.getByRole("tab", { name: "Events" }).click();
  await page.getByText("terminal opened").first().waitFor();
  await page.getByRole("tab", { name: "Terminals" }).click();

  say("the dashboard shows it live");
  await page.getByRole("link", { name: "All workstations" }).click();
  await page.locator(`tr[data-id="${wsId}"]`).getByText("running").waitFor();
  await page.screenshot({ path: join(shots, "dashboard.png") });

  // --- bob: neither sees nor reaches it ---
  say("another user cannot see or reach it");
  const bobCtx = await trial.context(browser, base, "bob", { viewport: { width: 1280, height: 800 } });
  bobCtx.expected.push([401, "/api/v1/auth/session"], [404, `/api/v1/workstations/${wsId}`]);
  const bobPage = await bobCtx.newPage();
  await signIn(bobPage, "bob");
  await bobPage.getByText("No workstations yet").waitFor();
  await bobPage.goto(`${base}/w/${wsId}`);
  await bobPage.getByText(`There is no workstation ${wsId}`).waitFor();
  const status = await bobPage.evaluate(async (id) => (await fetch(`/api/v1/workstations/${id}/terminals`)).status, wsId);
  if (status !== 404) throw new Error(`bob's request for ann's terminals answered ${status}`);
  await bobCtx.close();

  // --- ann on a phone: the key bar and touch scrolling ---
  say("a narrow touch screen: the key bar sends Ctrl-C and Tab");
  const phone = await trial.context(browser, base, "ann-phone", { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
  phone.expected.push([401, "/api/v1/auth/session"]);
  const tp = await phone.newPage();
  await signIn(tp, "ann");
  await tp.goto(firstTerminal);
  await tp.getByText("connected", { exact: true }).waitFor();
  await waitText(tp, prompt, "a prompt");
  await run(tp, "clear; sleep 600");
  await tp.waitForTimeout(500);
  await tp.getByRole("button", { name: "^C" }).tap();
  await waitText(tp, (t) => t.includes("^C") && prompt(t), "the prompt back after ^C");
  await run(tp, "clear");
  await tp.locator(".xterm-helper-textarea").focus();
  await tp.keyboard.type("ech");
  await tp.getByRole("button", { name: "Tab" }).tap();
  await waitText(tp, (t) => /\$ echo ?$/m.test(t), "the shell's completion of ech");
  await tp.keyboard.press("Enter");

  say("touch scrolling moves the scrollback");
  await run(tp, "seq 1 400");
  await waitText(tp, (t) => /^400$/m.test(t), "the end of seq");
  const top = () => tp.evaluate(() => window.hearthTerminal.term.buffer.active.viewportY);
  const bottom = await top();
  const box = await tp.locator(".xterm-screen").boundingBox();
  const x = box.x + box.width / 2;
  // A finger dragging down the screen, through the browser's own touch input (DevTools
  // protocol, as a touch screen delivers it): the view moves up into the scrollback.
  const cdp = await phone.newCDPSession(tp);
  const y0 = box.y + 40, y1 = box.y + box.height - 40;
  await cdp.send("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: [{ x, y: y0 }] });
  for (let y = y0; y <= y1; y += 20) await cdp.send("Input.dispatchTouchEvent", { type: "touchMove", touchPoints: [{ x, y }] });
  await cdp.send("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
  await tp.waitForTimeout(300);
  const scrolled = await top();
  console.log(`ui-e2e: touch scroll moved the viewport from line ${bottom} to ${scrolled}`);
  if (!(scrolled < bottom)) throw new Error(`touch scrolling did not move the scrollback (viewport at line ${scrolled}, was ${bottom})`);
  await tp.screenshot({ path: join(shots, "phone.png") });
  await phone.close();

  say("delete it, with confirmation");
  await page.getByRole("button", { name: "delete lab" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "delete" }).click();
  await page.locator(`tr[data-id="${wsId}"]`).waitFor({ state: "detached" });
  await page.getByText("No workstations yet").waitFor();
  await ctx.close();
});
