// The plugin skeleton: what every tsnet CNI binary does before and after its own
// work. Reads CNI_* variables and the configuration on stdin, checks versions and
// the environment each command needs, dispatches, and prints exactly one thing on
// stdout: the result (ADD), version information (VERSION), an error object, or
// nothing. Errors exit 1 with the spec's codes.
import { asTsnetError, TsnetError } from '../errors.js';
import { CNI_ERR, CniError, COMMON_KEYS, LATEST, SUPPORTED_VERSIONS, resultFor, versionAtLeast, type CniResult, type NetConf } from './spec.js';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';

export interface CniArgs {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: Record<string, string>;
  path: string[];
  conf: NetConf;
  /** The invocation's whole environment (for delegated plugins and child processes). */
  env: NodeJS.ProcessEnv;
}

export interface CniPlugin {
  /** Plugin-specific configuration keys (besides the common ones); 'any' for IPAM plugins,
   * which receive their parent plugin's whole configuration. */
  keys: string[] | 'any';
  add(a: CniArgs): Promise<CniResult>;
  del(a: CniArgs): Promise<void>;
  check(a: CniArgs): Promise<void>;
  gc?(a: CniArgs): Promise<void>;
  status?(a: CniArgs): Promise<void>;
}

export { CniError };

const REQUIRED: Record<CniCommand, Array<'CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME'>> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  VERSION: [],
  GC: [],
  STATUS: [],
};

/** The spec's (and libcni's) rule for network names and container ids. */
export const CNI_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** CNI_IFNAME as the spec's reference skeleton accepts it: 1-15 bytes, not . or .., no '/', ':' or whitespace. */
export function validateCniIfname(ifname: string): void {
  if (Buffer.byteLength(ifname) > 15) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_IFNAME "${ifname}" is longer than 15 bytes`);
  if (ifname === '.' || ifname === '..' || /[/:\s\0]/.test(ifname)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_IFNAME ${JSON.stringify(ifname)} must not be . or .. or contain '/', ':' or whitespace`);
  }
}

export function parseCniArgs(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (text ?? '').split(';').filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERR.INVALID_ENV, `invalid CNI_ARGS pair "${part}": expected KEY=VALUE`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

export interface CniIo {
  env: NodeJS.ProcessEnv;
  stdin: string;
}

/** Runs one invocation; returns what goes to stdout and the exit code. */
export async function runCni(plugin: CniPlugin, io: CniIo): Promise<{ stdout: string; code: number }> {
  let version = LATEST;
  try {
    const command = io.env.CNI_COMMAND as CniCommand | undefined;
    // Own keys only: "toString" is in every object.
    if (!command || !Object.hasOwn(REQUIRED, command)) {
      throw new CniError(CNI_ERR.INVALID_ENV, `CNI_COMMAND must be one of ${Object.keys(REQUIRED).join(', ')} (got "${command ?? ''}")`);
    }
    if (command === 'VERSION') {
      return { stdout: `${JSON.stringify({ cniVersion: LATEST, supportedVersions: SUPPORTED_VERSIONS })}\n`, code: 0 };
    }
    let conf: NetConf;
    try {
      conf = JSON.parse(io.stdin) as NetConf;
    } catch (err) {
      throw new CniError(CNI_ERR.DECODE_FAILURE, 'failed to decode the network configuration on stdin', (err as Error).message);
    }
    if (!conf || typeof conf !== 'object' || Array.isArray(conf)) throw new CniError(CNI_ERR.DECODE_FAILURE, 'the network configuration must be a JSON object');
    if (typeof conf.cniVersion !== 'string' || !(SUPPORTED_VERSIONS as readonly string[]).includes(conf.cniVersion)) {
      throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `incompatible CNI version "${String(conf.cniVersion)}": this plugin supports ${SUPPORTED_VERSIONS.join(', ')}`);
    }
    version = conf.cniVersion;
    if ((command === 'GC' || command === 'STATUS') && !versionAtLeast(version, '1.1.0')) {
      throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `${command} needs cniVersion 1.1.0 or later (the configuration says ${version})`);
    }
    if (typeof conf.name !== 'string' || !conf.name) throw new CniError(CNI_ERR.INVALID_CONFIG, 'the network configuration has no "name"');
    // The name ends up in rule comments, link aliases and IPAM paths: only the spec's characters.
    if (!CNI_NAME_RE.test(conf.name)) {
      throw new CniError(CNI_ERR.INVALID_CONFIG, `invalid characters in network name ${JSON.stringify(conf.name)}: use letters, digits, '_', '.' and '-', starting with a letter or digit`);
    }
    if (typeof conf.type !== 'string' || !conf.type) throw new CniError(CNI_ERR.INVALID_CONFIG, 'the network configuration has no "type"');
    const known = new Set([...COMMON_KEYS, ...(plugin.keys === 'any' ? [] : plugin.keys)]);
    const unknown = plugin.keys === 'any' ? [] : Object.keys(conf).filter((k) => !known.has(k));
    if (unknown.length) throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, `unsupported field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')} for ${conf.type}`);
    const missing = REQUIRED[command].filter((k) => !io.env[k]);
    if (missing.length) throw new CniError(CNI_ERR.INVALID_ENV, `missing environment variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')} for ${command}`);
    if (REQUIRED[command].includes('CNI_CONTAINERID') && !CNI_NAME_RE.test(io.env.CNI_CONTAINERID!)) {
      throw new CniError(CNI_ERR.INVALID_ENV, `invalid characters in CNI_CONTAINERID ${JSON.stringify(io.env.CNI_CONTAINERID)}: use letters, digits, '_', '.' and '-', starting with a letter or digit`);
    }
    if (REQUIRED[command].includes('CNI_IFNAME')) validateCniIfname(io.env.CNI_IFNAME!);
    const args: CniArgs = {
      command,
      containerId: io.env.CNI_CONTAINERID ?? '',
      netns: io.env.CNI_NETNS ?? '',
      ifname: io.env.CNI_IFNAME ?? '',
      args: parseCniArgs(io.env.CNI_ARGS),
      path: (io.env.CNI_PATH ?? '').split(':').filter(Boolean),
      conf,
      env: io.env,
    };
    switch (command) {
      case 'ADD':
        return { stdout: `${JSON.stringify(resultFor(version, await plugin.add(args)))}\n`, code: 0 };
      case 'DEL':
        await plugin.del(args);
        return { stdout: '', code: 0 };
      case 'CHECK':
        await plugin.check(args);
        return { stdout: '', code: 0 };
      case 'GC':
        await plugin.gc?.(args);
        return { stdout: '', code: 0 };
      case 'STATUS':
        await plugin.status?.(args);
        return { stdout: '', code: 0 };
    }
  } catch (err) {
    const e = err instanceof CniError ? err : toCniError(err);
    return { stdout: `${JSON.stringify({ cniVersion: version, code: e.cniCode, msg: e.message, ...(e.details ? { details: e.details } : {}) })}\n`, code: 1 };
  }
  return { stdout: '', code: 0 };
}

function toCniError(err: unknown): CniError {
  const e: TsnetError = asTsnetError(err);
  return new CniError(e.mapping.cni, e.message);
}

/** The main of a plugin binary: stdin, env and stdout of this process. */
export async function pluginMain(plugin: CniPlugin): Promise<void> {
  const chunks: Buffer[] = [];
  if (process.env.CNI_COMMAND !== 'VERSION') for await (const c of process.stdin) chunks.push(c as Buffer);
  const { stdout, code } = await runCni(plugin, { env: process.env, stdin: Buffer.concat(chunks).toString('utf8') });
  process.stdout.write(stdout);
  process.exitCode = code;
}
