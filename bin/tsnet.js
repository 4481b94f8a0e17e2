#!/usr/bin/env node
// tsnet CLI entry point. The build makes a one-file bundle of the CLI (faster to
// load); the unbundled modules serve when it is absent or older than them (a
// `tsc` run without the bundling step).
import { statSync } from 'node:fs';

const bundle = new URL('../dist/src/cli/main.bundle.mjs', import.meta.url);
const modules = new URL('../dist/src/cli/main.js', import.meta.url);
const mtime = (u) => {
  try {
    return statSync(u).mtimeMs;
  } catch {
    return -1;
  }
};
const { main } = await import(mtime(bundle) >= mtime(modules) ? bundle.href : modules.href);
process.exitCode = await main(process.argv.slice(2));
