// Shared by the bin/ entry points: the one-file bundle of an entry module when it
// is at least as new as the compiled modules (a `tsc` run without the bundling
// step leaves it older), the modules otherwise; then its main with our arguments.
import { statSync } from 'node:fs';

const mtime = (u) => {
  try {
    return statSync(u).mtimeMs;
  } catch {
    return -1;
  }
};

export async function runEntry(name) {
  const bundle = new URL(`../dist/src/cli/${name}.bundle.mjs`, import.meta.url);
  const modules = new URL(`../dist/src/cli/${name}.js`, import.meta.url);
  const { main } = await import(mtime(bundle) >= mtime(modules) ? bundle.href : modules.href);
  process.exitCode = await main(process.argv.slice(2));
}
