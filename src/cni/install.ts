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

/** An example conflist: loopback is the runtime's business; this is the pod network. */
export function exampleConflist(opts: { name?: string; bridge?: string; subnet?: string } = {}): string {
  const conf = {
    cniVersion: '1.1.0',
    name: opts.name ?? 'tsnet',
    plugins: [
      {
        type: 'tsnet-bridge',
        bridge: opts.bridge ?? 'tsnet-cni0',
        isGateway: true,
        isDefaultGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: opts.subnet ?? '10.89.0.0/16' }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'tsnet-portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
  return `${JSON.stringify(conf, null, 2)}\n`;
}

/** Writes the example conflist into a CNI configuration directory (never over another file). */
export function writeExampleConflist(confDir: string, fileName = '10-tsnet.conflist'): string {
  if (!confDir.startsWith('/')) throw new InvalidConfigError(`--conf-dir must be an absolute path (got ${confDir})`);
  const target = join(confDir, fileName);
  if (existsSync(target) && !readFileSync(target, 'utf8').includes('"tsnet-bridge"')) {
    throw new ConflictError(`${target} exists and is not a tsnet configuration: not overwriting it`);
  }
  mkdirSync(confDir, { recursive: true, mode: 0o755 });
  writeFileSync(target, exampleConflist());
  return target;
}
