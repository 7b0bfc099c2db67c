// The administration and sharing pages in Debian's Chromium (crates/hearth-server/tests/
// web_pages.rs starts the server, with accounts root (an administrator), ann and bob, and
// ann's workstation "shared-lab"):
//   HEARTH_URL=… ROOT_PASSWORD=… ANN_PASSWORD=… BOB_PASSWORD=… node ui/test/pages.mjs
import { Run, termText } from "./browser.mjs";
import { join } from "node:path";

const base = process.env.HEARTH_URL;
const shots = process.env.SCREENSHOTS ?? "test-results";
const password = (u) => process.env[`${u.toUpperCase()}_PASSWORD`];
if (!base || !password("root") || !password("ann") || !password("bob")) throw new Error("HEARTH_URL and ROOT_, ANN_, BOB_PASSWORD are needed");
const trial = new Run("ui-pages");

async function signedIn(browser, user) {
  const ctx = await trial.context(browser, base, user, { viewport: { width: 1280, height: 800 } });
  ctx.expected.push([401, "/api/v1/auth/session"]);
  const page = await ctx.newPage();
  await page.goto(base);
  await page.getByLabel("Account").fill(user);
  await page.getByLabel("Password").fill(password(user));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Workstations" }).waitFor();
  return page;
}

await trial.main(async (browser) => {
  trial.say("the first start's link signs the administrator in, who then sets a password");
  const first = await trial.context(browser, base, "first", { viewport: { width: 1280, height: 800 } });
  // A new password ends the account's sessions, this page's too: its next requests are 401s.
  first.expected.push([401, "/api/v1/"]);
  const fp = await first.newPage();
  await fp.goto(base + process.env.SIGN_IN_LINK);
  await fp.getByRole("heading", { name: "Workstations" }).waitFor();
  await fp.getByText("admin has no password yet").waitFor();
  await fp.getByRole("button", { name: "Set a password" }).click();
  await fp.getByLabel("New password").fill("the admin's new password");
  await fp.getByLabel("The same again").fill("the admin's new password");
  await fp.getByRole("button", { name: "Set", exact: true }).click();
  await fp.getByText("Your password is set. Sign in with it.").waitFor();
  await fp.getByLabel("Account").fill("admin");
  await fp.getByLabel("Password").fill("the admin's new password");
  await fp.getByRole("button", { name: "Sign in" }).click();
  await fp.getByRole("heading", { name: "Workstations" }).waitFor();
  if (await fp.getByText("has no password yet").count()) throw new Error("the banner stayed after the password was set");
  await first.close();

  trial.say("an administrator sees the host's budgets and every account");
  const root = await signedIn(browser, "root");
  await root.locator(`tr`).filter({ hasText: "shared-lab" }).getByText("ann").waitFor(); // every workstation, with its owner
  await root.getByRole("link", { name: "Administration" }).click();
  await root.getByRole("heading", { name: "This host" }).waitFor();
  await root.getByRole("meter", { name: "Memory" }).waitFor();
  await root.getByText("1 GiB of 16 GiB").waitFor(); // ann's running workstation holds its memory
  await root.getByText("2 of 16", { exact: true }).waitFor();
  for (const u of ["admin", "ann", "bob", "root"]) await root.locator(`tr[data-user="${u}"]`).waitFor();

  trial.say("a quota set in its dialog");
  await root.getByRole("button", { name: "Quota of bob" }).click();
  await root.getByLabel("Workstations").fill("1");
  await root.getByRole("button", { name: "Save", exact: true }).click();
  await root.locator(`tr[data-user="bob"]`).getByText("0 / 1", { exact: true }).waitFor();

  trial.say("an account added");
  await root.getByRole("button", { name: "Add account" }).click();
  await root.getByLabel("Account name").fill("cy");
  await root.getByRole("button", { name: "Add", exact: true }).click();
  await root.locator(`tr[data-user="cy"]`).waitFor();

  trial.say("the allowlist kept, and there after a reload");
  await root.getByLabel("Kept here, one per line").fill("*@lab.org\nann@elsewhere.org");
  await root.getByRole("button", { name: "Save allowlist" }).click();
  await root.getByText("Saved.").waitFor();
  await root.screenshot({ path: join(shots, "admin.png"), fullPage: true });
  await root.reload();
  const kept = await root.getByLabel("Kept here, one per line").inputValue();
  if (kept !== "*@lab.org\nann@elsewhere.org") throw new Error(`the allowlist reads ${JSON.stringify(kept)} after a reload`);

  trial.say("its owner shares a workstation with a viewer");
  const ann = await signedIn(browser, "ann");
  await ann.getByRole("link", { name: "shared-lab" }).click();
  await ann.getByText("connected", { exact: true }).waitFor(); // her terminal opened by itself
  await ann.getByRole("button", { name: "Share", exact: true }).click();
  await ann.getByRole("dialog").getByLabel("Account").fill("bob");
  await ann.getByRole("dialog").getByRole("button", { name: "Share", exact: true }).click();
  await ann.getByRole("dialog").locator("td", { hasText: "viewer" }).waitFor();
  await ann.getByRole("button", { name: "Done" }).click();

  trial.say("the viewer watches its terminal, and may do nothing else");
  const bob = await signedIn(browser, "bob");
  await bob.getByRole("link", { name: "shared-lab" }).click();
  await bob.getByText("shared with you: viewer").waitFor();
  await bob.getByText("view only", { exact: true }).waitFor();
  for (const name of ["Share", "stop", "delete shared-lab", "New terminal"]) {
    if (await bob.getByRole("button", { name, exact: true }).count()) throw new Error(`a viewer is offered "${name}"`);
  }
  await bob.getByRole("link", { name: "All workstations" }).click();
  await bob.getByRole("link", { name: "shared-lab" }).waitFor();

  trial.say("the share ends, and the viewer's list loses it at once");
  await ann.getByRole("button", { name: "Share", exact: true }).click();
  await ann.getByRole("button", { name: "Stop sharing with bob" }).click();
  await ann.getByRole("button", { name: "Stop sharing with bob" }).waitFor({ state: "detached" });
  await bob.getByText("No workstations yet").waitFor();

  trial.say("hibernated from its page, it wakes where it was when opened again");
  await ann.getByRole("button", { name: "Done" }).click();
  await ann.locator(".xterm-helper-textarea").focus();
  await ann.keyboard.type("echo before-$((6*7))");
  await ann.keyboard.press("Enter");
  await termShows(ann, "before-42");
  await ann.getByRole("button", { name: "hibernate shared-lab", exact: true }).click();
  await ann.getByText("Wake it to go on where it was").waitFor(); // not woken behind her back
  await ann.getByRole("link", { name: "All workstations" }).click();
  await ann.locator("tr").filter({ hasText: "shared-lab" }).getByText("hibernated", { exact: true }).waitFor();
  await ann.getByRole("link", { name: "shared-lab" }).click();
  await ann.getByText("connected", { exact: true }).waitFor();
  await termShows(ann, "before-42"); // the same terminal, replayed
  await ann.getByText("running", { exact: true }).first().waitFor();
});

/** Waits until the page's terminal holds `want` (scrollback or screen). */
async function termShows(page, want) {
  const deadline = Date.now() + 30_000;
  let text = "";
  while (Date.now() < deadline) {
    text = await termText(page).catch(() => "");
    if (text.includes(want)) return;
    await page.waitForTimeout(200);
  }
  throw new Error(`the terminal never showed ${want}; it shows:\n${text}`);
}
