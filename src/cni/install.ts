// `tsnet cni install`: puts an executable for each built tsnet plugin into a CNI
// bin directory: a copy of the native plugin client (native/src/cni-client.cc)
// patched with the plugin's name and where this installation's Node and bundles
// are, so upgrading tsnet upgrades the plugins.
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConflictError, InvalidConfigError } from '../errors.js';

/** Earlier installs wrote Node launcher scripts with this line; they may be replaced. */
const LAUNCHER_MARK = '// tsnet CNI plugin launcher';
/** A string only the client binary holds. */
const CLIENT_MARK = 'tsnet CNI client';
const CONFIG_SLOT = '@@TSNET-CNI-CONFIG@@';
const CONFIG_SIZE = 1024;

/** The client binary with its configuration slot filled in. */
export function patchClient(client: Buffer, config: Record<string, string>): Buffer {
  const text = Object.entries(config).map(([k, v]) => `${k}=${v}\n`).join('');
  const bytes = Buffer.from(text);
  if (bytes.length >= CONFIG_SIZE || Object.values(config).some((v) => v.includes('\n'))) throw new InvalidConfigError(`plugin configuration too long or malformed: ${text}`);
  const at = client.indexOf(CONFIG_SLOT);
  if (at < 0 || client.indexOf(CONFIG_SLOT, at + 1) >= 0) throw new InvalidConfigError('the CNI client binary has no single configuration slot (rebuild with npm run build)');
  const out = Buffer.from(client);
  out.fill(0, at, at + CONFIG_SIZE);
  bytes.copy(out, at);
  return out;
}

export function installPlugins(opts: { bundleDir: string; binDir: string; nodePath: string; clientPath: string; runDir: string }): string[] {
  if (!opts.binDir.startsWith('/')) throw new InvalidConfigError(`--bin-dir must be an absolute path (got ${opts.binDir})`);
  if (!opts.runDir.startsWith('/')) throw new InvalidConfigError(`the run directory must be an absolute path (got ${opts.runDir})`);
  const bundles = existsSync(opts.bundleDir) ? readdirSync(opts.bundleDir).filter((f) => /^tsnet-[a-z]+\.bundle\.mjs$/.test(f)).sort() : [];
  if (!bundles.length) throw new InvalidConfigError(`no plugin bundles in ${opts.bundleDir}: run npm run build first`);
  if (!existsSync(opts.clientPath)) throw new InvalidConfigError(`the CNI client binary ${opts.clientPath} is not built: run npm run build first`);
  const client = readFileSync(opts.clientPath);
  // Validate everything before writing anything.
  const plan = bundles.map((b) => {
    const name = b.replace('.bundle.mjs', '');
    return { name, binary: patchClient(client, { plugin: name, node: opts.nodePath, dir: opts.bundleDir, run: opts.runDir }) };
  });
  for (const p of plan) {
    const target = join(opts.binDir, p.name);
    if (existsSync(target)) {
      const old = readFileSync(target);
      if (!old.includes(CLIENT_MARK) && !old.includes(LAUNCHER_MARK)) throw new ConflictError(`${target} exists and was not written by tsnet: not overwriting it`);
    }
  }
  mkdirSync(opts.binDir, { recursive: true, mode: 0o755 });
  for (const p of plan) {
    // A new file renamed into place: the old one may be running (ETXTBSY on a rewrite).
    const target = join(opts.binDir, p.name);
    const tmp = `${target}.tsnet-new`;
    writeFileSync(tmp, p.binary);
    chmodSync(tmp, 0o755);
    renameSync(tmp, target);
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
