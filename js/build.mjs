// Bundle each view in src/ (every .js file directly inside it) into ../nbvis/static/, and copy
// what an offline HTML export needs (the widget manager and require.js, from npm) into
// ../nbvis/static/export/ so that an installed nbvis never fetches them at run time.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const entryPoints = readdirSync("src")
  .filter((f) => f.endsWith(".js"))
  .map((f) => `src/${f}`);

const options = {
  entryPoints,
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  sourcemap: false,
  outdir: "../nbvis/static",
  logLevel: "info",
};

function copyExportAssets() {
  const require = createRequire(import.meta.url);
  const manager = dirname(require.resolve("@jupyter-widgets/html-manager/package.json"));
  const requirejs = dirname(require.resolve("requirejs/package.json"));
  const out = "../nbvis/static/export";
  mkdirSync(out, { recursive: true });
  copyFileSync(join(manager, "dist", "embed-amd.js"), join(out, "embed-amd.js"));
  const loader = esbuild.transformSync(readFileSync(join(requirejs, "require.js"), "utf8"), { minify: true });
  writeFileSync(join(out, "require.js"), loader.code);
}

if (process.argv.includes("--watch")) {
  copyExportAssets();
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  copyExportAssets();
  await esbuild.build(options);
}
