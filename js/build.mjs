// Bundle each view in src/ (every .js file directly inside it) into ../nbvis/static/.
import * as esbuild from "esbuild";
import { readdirSync } from "node:fs";

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

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
