// "Log in with Hypha" in Debian's Chromium against a hearth server that accepts identities of
// a REAL Hypha server (crates/hearth-server/tests/hypha_e2e.rs starts both): the page opens
// Hypha's login in a popup; the login is completed by reporting a user's token to Hypha's
// login service, as Hypha's own page does; the page is then signed in as that user. A user
// whose email the allowlist does not admit gets the "Not on the allowlist" page.
//   HEARTH_URL=… HYPHA_URL=… ANN_TOKEN=… BOB_TOKEN=… node ui/test/hypha-signin.mjs
import { Run } from "./browser.mjs";

const { HEARTH_URL: base, HYPHA_URL: hypha, ANN_TOKEN: ann, BOB_TOKEN: bob } = process.env;
if (!base || !hypha || !ann || !bob) throw new Error("HEARTH_URL, HYPHA_URL, ANN_TOKEN and BOB_TOKEN are needed");
const trial = new Run("hypha-signin");

/** Clicks "Log in with Hypha", completes the login at Hypha with `token`; returns the popup. */
async function logInWithHypha(page, token) {
  const started = page.waitForResponse((r) => r.url().endsWith("/api/v1/auth/hypha/start"));
  const [popup] = await Promise.all([page.waitForEvent("popup"), page.getByRole("button", { name: "Log in with Hypha" }).click()]);
  const { key, login_url } = await (await started).json();
  if (!login_url.startsWith(hypha)) throw new Error(`the login page is ${login_url}, not at ${hypha}`);
  await popup.waitForURL((u) => u.href.startsWith(hypha));
  const r = await fetch(`${hypha}/public/services/hypha-login/report`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ key, token }) });
  if (!r.ok) throw new Error(`Hypha's login service answered ${r.status}: ${await r.text()}`);
  return popup;
}

await trial.main(async (browser) => {
  const ctx = await trial.context(browser, base, "browser", { viewport: { width: 1280, height: 800 } });
  ctx.expected.push([401, "/api/v1/auth/session"], [403, "/api/v1/auth/hypha/check"]);
  const page = await ctx.newPage();

  trial.say("a user the allowlist admits signs in through the popup");
  await page.goto(base);
  const popup = await logInWithHypha(page, ann);
  await page.getByRole("heading", { name: "Workstations" }).waitFor();
  await page.getByText("hypha:ann-1", { exact: true }).waitFor();
  // A Hypha account has no password here, and is not asked for one.
  if (await page.getByText("has no password yet").count()) throw new Error("a Hypha account was asked to set a password");
  if (!popup.isClosed()) await popup.waitForEvent("close"); // the page closes it once signed in

  trial.say("signing out brings the sign-in page back");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Log in with Hypha" }).waitFor();

  trial.say("a user the allowlist does not admit is told so");
  await logInWithHypha(page, bob);
  await page.getByRole("heading", { name: "Not on the allowlist" }).waitFor();
  await page.getByText("bob@elsewhere.org").waitFor();
  await page.getByRole("button", { name: "Sign in with another account" }).click();
  await page.getByLabel("Account").waitFor();
});
