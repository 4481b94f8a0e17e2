// `tsnet cni install`: puts a launcher for each built tsnet plugin into a CNI bin
// directory. A launcher is a tiny Node script that loads the plugin's bundle from
// this installation, so upgrading tsnet upgrades the plugins.
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConflictError, InvalidConfigError } from '../errors.js';

const MARK = '// tsnet CNI plugin launcher';

export function installPlugins(opts: { bundleDir: string; binDir: string; nodePath: string }): string[] {
  if (!opts.binDir.startsWith('/')) throw new InvalidConfigError(`--bin-dir must be an absolute path (got ${opts.binDir})`);
  const bundles = existsSync(opts.bundleDir) ? readdirSync(opts.bundleDir).filter((f) => /^tsnet-[a-z]+\.bundle\.mjs$/.test(f)).sort() : [];
  if (!bundles.length) throw new InvalidConfigError(`no plugin bundles in ${opts.bundleDir}: run npm run build first`);
  // Validate everything before writing anything.
  const plan = bundles.map((b) => ({ name: b.replace('.bundle.mjs', ''), bundle: join(opts.bundleDir, b) }));
  for (const p of plan) {
    const target = join(opts.binDir, p.name);
    if (existsSync(target) && !readFileSync(target, 'utf8').includes(MARK)) {
      throw new ConflictError(`${target} exists and was not written by tsnet: not overwriting it`);
    }
  }
  mkdirSync(opts.binDir, { recursive: true, mode: 0o755 });
  for (const p of plan) {
    const target = join(opts.binDir, p.name);
    writeFileSync(target, `#!${opts.nodePath}\n${MARK} (tsnet cni install)\nimport(${JSON.stringify(p.bundle)});\n`);
    chmodSync(target, 0o755);
  }
  return plan.map((p) => join(opts.binDir, p.name));
}
