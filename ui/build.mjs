// Bundles the web UI for embedding in the hearth binary (crates/hearth-ui/build.rs runs this).
// Writes index.html, app-<hash>.js and app-<hash>.css, a .gz of each, and manifest.json (what
// to serve at which path, with its type) into --outdir; fails when the terminal page (all of
// it: one page app) is over its gzipped budget.
import * as esbuild from "esbuild";
import { gzipSync } from "node:zlib";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

// The budget for everything a terminal page loads, gzipped (issue: 350 KiB).
const BUDGET_GZIP_BYTES = 350 * 1024;

const here = dirname(fileURLToPath(import.meta.url));
const i = process.argv.indexOf("--outdir");
const outdir = i > 0 ? process.argv[i + 1] : join(here, "dist");
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: join(here, "src/main.tsx") },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["chrome111", "firefox115", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "[name]-[hash]",
  outdir,
  write: false,
  metafile: true,
  logLevel: "warning",
  legalComments: "none",
});

const manifest = [];
let total = 0;
function emit(path, file, type, bytes) {
  writeFileSync(join(outdir, file), bytes);
  const gz = gzipSync(bytes, { level: 9 });
  writeFileSync(join(outdir, file + ".gz"), gz);
  manifest.push({ path, file, type, bytes: bytes.length, gzip_bytes: gz.length });
  total += gz.length;
}

let js, css;
for (const f of result.outputFiles) {
  const name = f.path.slice(outdir.length + 1);
  if (name.endsWith(".js")) js = name;
  if (name.endsWith(".css")) css = name;
  emit("/assets/" + name, name, name.endsWith(".js") ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8", f.contents);
}
if (!js || !css) throw new Error("esbuild wrote no app script or style sheet");
const html = readFileSync(join(here, "index.html"), "utf8").replace("%SCRIPT%", "/assets/" + js).replace("%STYLE%", "/assets/" + css);
emit("/", "index.html", "text/html; charset=utf-8", Buffer.from(html));
const icon = readFileSync(join(here, "favicon.svg"));
emit("/favicon.svg", "favicon.svg", "image/svg+xml", icon);
writeFileSync(join(outdir, "manifest.json"), JSON.stringify({ budget_gzip_bytes: BUDGET_GZIP_BYTES, total_gzip_bytes: total, assets: manifest }, null, 1));
const kib = (n) => (n / 1024).toFixed(1) + " KiB";
console.log(`ui: ${manifest.map((a) => `${a.file} ${kib(a.bytes)} (${kib(a.gzip_bytes)} gzipped)`).join(", ")}; page ${kib(total)} gzipped of ${kib(BUDGET_GZIP_BYTES)}`);
if (total > BUDGET_GZIP_BYTES) {
  console.error(`ui: the page is ${kib(total)} gzipped, over its budget of ${kib(BUDGET_GZIP_BYTES)}`);
  process.exit(1);
}
