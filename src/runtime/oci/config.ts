// An OCI runtime bundle's config.json (runtime spec 1.0-1.2, the parts a Linux
// container needs), checked field by field and turned into the same plan the
// native helper runs for `tsnet run`. Every error names the field it is about;
// nothing is touched until the whole config has been read.
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, posix, resolve } from 'node:path';
import { InvalidConfigError, UnsupportedError } from '../../errors.js';
import { CAPABILITIES, capMask, parseSeccompProfile, type Capability } from '../security.js';
import { CLONE, MS, cgroupSteps, devSteps, type ContainerPlan, type FsStep, type ProcessPlan } from '../plan.js';
import { RLIMITS } from '../spec.js';
import type { CgroupResources } from '../cgroups.js';

export type HookStage = 'prestart' | 'createRuntime' | 'createContainer' | 'startContainer' | 'poststart' | 'poststop';
export const HOOK_STAGES: HookStage[] = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'];

export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

/** What create needs from a config: the plan, the cgroup, the hooks. */
export interface OciPlan {
  plan: ContainerPlan;
  /** The cgroup path under each hierarchy's root ("/tsnet-oci/ID" by default). */
  cgroupPath: string;
  resources: CgroupResources;
  hooks: Partial<Record<HookStage, OciHook[]>>;
  rootfs: string;
  terminal: boolean;
  /** The container has a pid namespace of its own (its init's death ends every process in it). */
  ownPidNamespace: boolean;
  annotations: Record<string, string>;
  ociVersion: string;
}

/** The cgroup layout a plan's cgroup mounts follow. */
export interface HostCgroups {
  version: 1 | 2;
  hierarchies: string[][];
}

const bad = (field: string, why: string) => new InvalidConfigError(`config.json: ${field} ${why}`);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const strList = (v: unknown, field: string): string[] => {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(field, 'must be a list of strings');
  return v;
};
const int = (v: unknown, field: string, min = -(2 ** 53), max = 2 ** 53): number | undefined => {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(field, `must be a whole number${min > -(2 ** 53) ? ` from ${min}` : ''}${max < 2 ** 53 ? ` to ${max}` : ''}`);
  return v;
};

/** Reads BUNDLE/config.json. */
export function readSpec(bundle: string): Record<string, unknown> {
  const file = join(bundle, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidConfigError(`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file (is --bundle right?)' : (err as Error).message}`);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new InvalidConfigError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (!isObj(spec)) throw new InvalidConfigError(`${file} is not a JSON object`);
  return spec;
}

// Mount options as runc reads them: flags set, flags cleared, propagation, the rest is data.
const SET: Record<string, number> = {
  ro: MS.RDONLY, nosuid: MS.NOSUID, nodev: MS.NODEV, noexec: MS.NOEXEC, sync: 16, remount: 32, mand: 64, dirsync: 128,
  noatime: 1024, nodiratime: 2048, bind: MS.BIND, rbind: MS.BIND | MS.REC, relatime: 1 << 21, strictatime: MS.STRICTATIME,
};
const CLEAR: Record<string, number> = {
  rw: MS.RDONLY, suid: MS.NOSUID, dev: MS.NODEV, exec: MS.NOEXEC, async: 16, nomand: 64, atime: 1024, diratime: 2048, norelatime: 1 << 21, nostrictatime: MS.STRICTATIME,
};
const UNBINDABLE = 1 << 17;
const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE, rprivate: MS.PRIVATE | MS.REC, shared: MS.SHARED, rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE, rslave: MS.SLAVE | MS.REC, unbindable: UNBINDABLE, runbindable: UNBINDABLE | MS.REC,
};

export function parseMountOptions(options: string[]): { flags: number; propagation: number[]; data: string[] } {
  let flags = 0;
  const propagation: number[] = [];
  const data: string[] = [];
  for (const o of options) {
    if (SET[o] !== undefined) flags |= SET[o]!;
    else if (CLEAR[o] !== undefined) flags &= ~CLEAR[o]!;
    else if (PROPAGATION[o] !== undefined) propagation.push(PROPAGATION[o]!);
    else if (o === 'defaults') continue;
    else data.push(o);
  }
  return { flags, propagation, data };
}

const NS_TYPES: Record<string, { clone: number; join?: 'pid' | 'net' | 'ipc' | 'uts' | 'cgroup' }> = {
  pid: { clone: CLONE.NEWPID, join: 'pid' },
  network: { clone: CLONE.NEWNET, join: 'net' },
  mount: { clone: CLONE.NEWNS },
  ipc: { clone: CLONE.NEWIPC, join: 'ipc' },
  uts: { clone: CLONE.NEWUTS, join: 'uts' },
  user: { clone: CLONE.NEWUSER },
  cgroup: { clone: CLONE.NEWCGROUP, join: 'cgroup' },
  time: { clone: 0x80 },
};

const ROOT_PROPAGATION: Record<string, number> = {
  '': MS.SLAVE | MS.REC, shared: MS.SHARED | MS.REC, rshared: MS.SHARED | MS.REC, slave: MS.SLAVE | MS.REC, rslave: MS.SLAVE | MS.REC,
  private: MS.PRIVATE | MS.REC, rprivate: MS.PRIVATE | MS.REC, unbindable: UNBINDABLE | MS.REC, runbindable: UNBINDABLE | MS.REC,
};

function capList(v: unknown, field: string): Capability[] {
  return strList(v, field).map((c) => {
    const name = c.replace(/^CAP_/, '');
    if (!(CAPABILITIES as readonly string[]).includes(name)) throw bad(field, `names an unknown capability "${c}"`);
    return name as Capability;
  });
}

function hooksOf(v: unknown): Partial<Record<HookStage, OciHook[]>> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw bad('hooks', 'must be an object');
  const out: Partial<Record<HookStage, OciHook[]>> = {};
  for (const [stage, list] of Object.entries(v)) {
    if (!(HOOK_STAGES as string[]).includes(stage)) throw bad(`hooks.${stage}`, `is not a hook stage (${HOOK_STAGES.join(', ')})`);
    if (!Array.isArray(list)) throw bad(`hooks.${stage}`, 'must be a list');
    out[stage as HookStage] = list.map((h, i) => {
      const f = `hooks.${stage}[${i}]`;
      if (!isObj(h) || typeof h.path !== 'string' || !isAbsolute(h.path)) throw bad(`${f}.path`, 'must be an absolute path');
      return { path: h.path, args: strList(h.args, `${f}.args`), env: strList(h.env, `${f}.env`), timeout: int(h.timeout, `${f}.timeout`, 1) };
    });
  }
  return out;
}

function resourcesOf(r: unknown): CgroupResources {
  if (r === undefined || r === null) return {};
  if (!isObj(r)) throw bad('linux.resources', 'must be an object');
  const out: CgroupResources = {};
  const mem = r.memory;
  if (isObj(mem)) {
    out.memory = positive(int(mem.limit, 'linux.resources.memory.limit'));
    const swap = int(mem.swap, 'linux.resources.memory.swap');
    if (swap !== undefined && swap !== 0) out.memorySwap = swap;
    out.memoryReservation = positive(int(mem.reservation, 'linux.resources.memory.reservation'));
    out.swappiness = int(mem.swappiness, 'linux.resources.memory.swappiness', 0, 100);
    if (mem.disableOOMKiller === true) out.oomKillDisable = true;
  }
  const cpu = r.cpu;
  if (isObj(cpu)) {
    out.cpuShares = positive(int(cpu.shares, 'linux.resources.cpu.shares', 0));
    out.cpuQuota = int(cpu.quota, 'linux.resources.cpu.quota');
    out.cpuPeriod = positive(int(cpu.period, 'linux.resources.cpu.period', 0));
    out.cpuRtRuntime = int(cpu.realtimeRuntime, 'linux.resources.cpu.realtimeRuntime');
    out.cpuRtPeriod = positive(int(cpu.realtimePeriod, 'linux.resources.cpu.realtimePeriod', 0));
    if (cpu.cpus !== undefined && cpu.cpus !== '') out.cpusetCpus = cpuList(cpu.cpus, 'linux.resources.cpu.cpus');
    if (cpu.mems !== undefined && cpu.mems !== '') out.cpusetMems = cpuList(cpu.mems, 'linux.resources.cpu.mems');
  }
  if (isObj(r.pids)) out.pidsLimit = int(r.pids.limit, 'linux.resources.pids.limit');
  if (isObj(r.blockIO)) {
    const w = int(r.blockIO.weight, 'linux.resources.blockIO.weight', 0, 1000);
    if (w) out.blkioWeight = w;
  }
  if (Array.isArray(r.devices)) {
    out.deviceRules = r.devices.map((d, i) => {
      const f = `linux.resources.devices[${i}]`;
      if (!isObj(d) || typeof d.allow !== 'boolean') throw bad(`${f}.allow`, 'must be true or false');
      const type = d.type === undefined ? 'a' : String(d.type);
      if (!['a', 'c', 'b'].includes(type)) throw bad(`${f}.type`, 'must be a, c or b');
      const access = d.access === undefined ? 'rwm' : String(d.access);
      if (!/^[rwm]{1,3}$/.test(access)) throw bad(`${f}.access`, 'must be letters of rwm');
      const major = int(d.major, `${f}.major`, 0);
      const minor = int(d.minor, `${f}.minor`, 0);
      return { allow: d.allow, rule: type === 'a' && major === undefined && minor === undefined ? 'a' : `${type} ${major ?? '*'}:${minor ?? '*'} ${access}` };
    });
  }
  if (r.unified !== undefined) {
    if (!isObj(r.unified) || !Object.values(r.unified).every((x) => typeof x === 'string')) throw bad('linux.resources.unified', 'must map file names to strings');
    for (const k of Object.keys(r.unified)) if (k.includes('/') || k.startsWith('.')) throw bad('linux.resources.unified', `key "${k}" is not a control file name`);
    out.unified = r.unified as Record<string, string>;
  }
  if (Array.isArray(r.hugepageLimits) && r.hugepageLimits.length) throw new UnsupportedError('config.json: linux.resources.hugepageLimits is not supported by tsnet yet');
  if (isObj(r.network) && (r.network.classID !== undefined || (Array.isArray(r.network.priorities) && r.network.priorities.length))) throw new UnsupportedError('config.json: linux.resources.network (net_cls, net_prio) is not supported by tsnet');
  for (const k of Object.keys(out) as Array<keyof CgroupResources>) if (out[k] === undefined) delete out[k];
  return out;
}
/** runc's allowed devices: mknod of any, and null, zero, full, random, urandom, tty, console, ptmx, the ptys, tun. */
const DEFAULT_DEVICE_RULES = ['c *:* m', 'b *:* m', 'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', 'c 136:* rwm', 'c 10:200 rwm'];

const positive = (n: number | undefined) => (n === undefined || n <= 0 ? undefined : n);
function cpuList(v: unknown, field: string): string {
  if (typeof v !== 'string' || !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(v)) throw bad(field, 'must be a list like 0-2,4');
  return v;
}

/** A cgroup path: absolute under each hierarchy's root, or relative to tsnet's default parent. */
export function cgroupPathOf(v: unknown, id: string): string {
  if (v === undefined || v === null || v === '') return `/tsnet-oci/${id}`;
  if (typeof v !== 'string') throw bad('linux.cgroupsPath', 'must be a string');
  if (v.includes(':')) throw new UnsupportedError(`config.json: linux.cgroupsPath "${v}" is a systemd slice path; tsnet uses the cgroupfs driver (give a path like /tsnet/${id})`);
  const p = posix.normalize(v.startsWith('/') ? v : `/tsnet-oci/${v}`);
  if (p === '/' || p.split('/').includes('..')) throw bad('linux.cgroupsPath', `"${v}" must name a cgroup below the root`);
  return p;
}

/** u64 from a JSON number (18446744073709551615, "unlimited", arrives as 2^64). */
const u64 = (n: number) => (n >= 2 ** 64 - 1 ? 2n ** 64n - 1n : BigInt(Math.floor(n)));

/**
 * An OCI process object (config.json's, or exec's process.json), checked: what
 * the helper runs. label and field name it in errors.
 */
export function parseProcess(proc: unknown, label: string, field: string, ownCaps: bigint): ProcessPlan & { terminal: boolean; winsize?: { rows: number; cols: number }; oomScoreAdj?: number } {
  const bad = (f: string, why: string) => new InvalidConfigError(`${label}: ${f} ${why}`);
  const at = (f: string) => `${field}.${f}`;
  if (!isObj(proc)) throw bad(field, 'is missing');
  const args = strList(proc.args, at('args'));
  if (!args.length) throw bad(at('args'), 'must name the command to run');
  if (typeof proc.cwd !== 'string' || !proc.cwd.startsWith('/')) throw bad(at('cwd'), 'must be an absolute path');
  const env = strList(proc.env, at('env'));
  for (const e of env) if (!e.includes('=')) throw bad(at('env'), `entry "${e}" is not KEY=VALUE`);
  const user = isObj(proc.user) ? proc.user : {};
  const uid = int(user.uid, at('user.uid'), 0, 2 ** 32 - 2) ?? 0;
  const gid = int(user.gid, at('user.gid'), 0, 2 ** 32 - 2) ?? 0;
  const groups = (Array.isArray(user.additionalGids) ? user.additionalGids : []).map((g, i) => int(g, at(`user.additionalGids[${i}]`), 0, 2 ** 32 - 2)!);
  const umask = int(user.umask, at('user.umask'), 0, 0o777);
  let winsize: { rows: number; cols: number } | undefined;
  if (isObj(proc.consoleSize)) winsize = { rows: int(proc.consoleSize.height, at('consoleSize.height'), 0, 65535) ?? 24, cols: int(proc.consoleSize.width, at('consoleSize.width'), 0, 65535) ?? 80 };
  let caps: ProcessPlan['caps'];
  if (isObj(proc.capabilities)) {
    const c = proc.capabilities;
    const list = (k: string) => capList(c[k], at(`capabilities.${k}`));
    const sets = { bounding: list('bounding'), effective: list('effective'), permitted: list('permitted'), inheritable: list('inheritable'), ambient: list('ambient') };
    const missing = [...new Set(Object.values(sets).flat())].filter((x) => (ownCaps & capMask([x])) === 0n);
    if (missing.length) throw bad(at('capabilities'), `asks for ${missing.map((x) => `CAP_${x}`).join(', ')}, which tsnet itself does not have here`);
    caps = { bounding: capMask(sets.bounding), effective: capMask(sets.effective), permitted: capMask(sets.permitted), inheritable: capMask(sets.inheritable), ambient: capMask(sets.ambient) };
  }
  const rlimits = (Array.isArray(proc.rlimits) ? proc.rlimits : []).map((r, i) => {
    const f = at(`rlimits[${i}]`);
    if (!isObj(r) || typeof r.type !== 'string') throw bad(`${f}.type`, 'is missing');
    const resource = RLIMITS[r.type.replace(/^RLIMIT_/, '').toLowerCase()];
    if (resource === undefined) throw bad(`${f}.type`, `"${r.type}" is not an rlimit`);
    if (typeof r.soft !== 'number' || typeof r.hard !== 'number' || r.soft < 0 || r.hard < 0) throw bad(f, 'needs soft and hard limits');
    if (r.soft > r.hard) throw bad(f, `soft limit ${r.soft} is above the hard limit ${r.hard}`);
    return { resource, soft: u64(r.soft), hard: u64(r.hard) };
  });
  return {
    args, env, cwd: proc.cwd, user: { uid, gid, groups }, umask, caps, rlimits,
    noNewPrivileges: proc.noNewPrivileges === true,
    terminal: proc.terminal === true,
    winsize,
    oomScoreAdj: int(proc.oomScoreAdj, at('oomScoreAdj'), -1000, 1000),
  };
}

export interface PlanOptions {
  id: string;
  bundle: string;
  cgroups: HostCgroups;
  consoleSocket?: string;
  foreground?: boolean;
  /** This process's capability bounding set: a config cannot ask for more. */
  ownCaps: bigint;
}

export function planFromSpec(spec: Record<string, unknown>, o: PlanOptions): OciPlan {
  const bundle = resolve(o.bundle);
  const ociVersion = spec.ociVersion;
  if (typeof ociVersion !== 'string' || !/^1\.[0-2]\.\d+/.test(ociVersion)) throw bad('ociVersion', `must be a 1.0, 1.1 or 1.2 version (got ${JSON.stringify(ociVersion)})`);

  // root
  const root = spec.root;
  if (!isObj(root) || typeof root.path !== 'string' || !root.path) throw bad('root.path', 'is missing');
  const rootfs = resolve(bundle, root.path);
  let st;
  try {
    st = statSync(rootfs);
  } catch {
    throw bad('root.path', `"${root.path}" does not exist (looked at ${rootfs})`);
  }
  if (!st.isDirectory()) throw bad('root.path', `"${root.path}" is not a directory`);

  // process
  const { args, env, user: { uid, gid, groups }, umask, caps, rlimits, noNewPrivileges, cwd, terminal, winsize, oomScoreAdj } = parseProcess(spec.process, 'config.json', 'process', o.ownCaps);
  if (terminal && !o.consoleSocket && !o.foreground) throw new InvalidConfigError('process.terminal is true: give --console-socket (a detached container cannot use this terminal)');
  if (terminal && !o.consoleSocket) throw new UnsupportedError('process.terminal without --console-socket (runc would proxy its own terminal) is not supported yet: give --console-socket');

  // linux
  const linux = isObj(spec.linux) ? spec.linux : {};
  let clone = 0;
  let cgroupns = false;
  const nsjoin: NonNullable<ContainerPlan['nsjoin']> = [];
  const seen = new Set<string>();
  for (const [i, n] of (Array.isArray(linux.namespaces) ? linux.namespaces : []).entries()) {
    const f = `linux.namespaces[${i}]`;
    if (!isObj(n) || typeof n.type !== 'string' || !NS_TYPES[n.type]) throw bad(`${f}.type`, `must be one of ${Object.keys(NS_TYPES).join(', ')} (got ${JSON.stringify(isObj(n) ? n.type : n)})`);
    if (seen.has(n.type)) throw bad(f, `repeats the namespace type "${n.type}"`);
    seen.add(n.type);
    const t = NS_TYPES[n.type]!;
    if (n.type === 'user') throw new UnsupportedError('config.json: user namespaces (linux.namespaces type "user") are not supported by tsnet yet');
    if (n.type === 'time') throw new UnsupportedError('config.json: time namespaces are not supported by tsnet yet');
    if (n.path !== undefined && n.path !== '') {
      if (typeof n.path !== 'string' || !isAbsolute(n.path)) throw bad(`${f}.path`, 'must be an absolute path');
      if (!t.join) throw new UnsupportedError(`config.json: joining an existing ${n.type} namespace is not supported by tsnet`);
      try {
        statSync(n.path);
      } catch {
        throw bad(`${f}.path`, `"${n.path}" does not exist`);
      }
      nsjoin.push({ type: t.join, path: n.path });
    } else if (n.type === 'cgroup') {
      cgroupns = true; // made after the cgroups are joined, so that it is rooted at the container's
    } else {
      clone |= t.clone;
    }
  }
  if (!(clone & CLONE.NEWNS)) throw bad('linux.namespaces', 'must include a new "mount" namespace (tsnet sets up the rootfs in one)');
  if (typeof spec.hostname === 'string' && spec.hostname && !(clone & CLONE.NEWUTS)) throw bad('hostname', 'needs a new "uts" namespace');
  if (typeof spec.domainname === 'string' && spec.domainname && !(clone & CLONE.NEWUTS)) throw bad('domainname', 'needs a new "uts" namespace');
  if (Array.isArray(linux.uidMappings) && linux.uidMappings.length) throw new UnsupportedError('config.json: linux.uidMappings need a user namespace, which tsnet does not support yet');
  const propagation = ROOT_PROPAGATION[String(linux.rootfsPropagation ?? '')];
  if (propagation === undefined) throw bad('linux.rootfsPropagation', `"${linux.rootfsPropagation}" is not one of ${Object.keys(ROOT_PROPAGATION).filter(Boolean).join(', ')}`);
  const sysctls: Record<string, string> = {};
  if (linux.sysctl !== undefined) {
    if (!isObj(linux.sysctl)) throw bad('linux.sysctl', 'must map keys to strings');
    for (const [k, v] of Object.entries(linux.sysctl)) {
      if (typeof v !== 'string' || !/^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$/.test(k)) throw bad('linux.sysctl', `entry "${k}" is not a sysctl key with a string value`);
      if (k.startsWith('net.') && !(clone & CLONE.NEWNET) && !nsjoin.some((j) => j.type === 'net')) throw bad('linux.sysctl', `"${k}" needs a network namespace of the container's own`);
      sysctls[k] = v;
    }
  }
  let seccomp: ContainerPlan['seccomp'];
  if (linux.seccomp !== undefined && linux.seccomp !== null) {
    if (!isObj(linux.seccomp)) throw bad('linux.seccomp', 'must be an object');
    if (linux.seccomp.listenerPath) throw new UnsupportedError('config.json: seccomp notify (linux.seccomp.listenerPath) is not supported by tsnet');
    seccomp = parseSeccompProfile(JSON.stringify(linux.seccomp), [], 'config.json linux.seccomp');
  }
  const masked = strList(linux.maskedPaths, 'linux.maskedPaths');
  const readonly = strList(linux.readonlyPaths, 'linux.readonlyPaths');
  for (const [list, name] of [[masked, 'maskedPaths'], [readonly, 'readonlyPaths']] as const) for (const p of list) if (!p.startsWith('/')) throw bad(`linux.${name}`, `entry "${p}" must be absolute`);

  // mounts
  const fs: FsStep[] = [];
  let devIsFresh = false;
  for (const [i, m] of (Array.isArray(spec.mounts) ? spec.mounts : []).entries()) {
    const f = `mounts[${i}]`;
    if (!isObj(m) || typeof m.destination !== 'string' || !m.destination.startsWith('/')) throw bad(`${f}.destination`, 'must be an absolute path');
    const dest = posix.normalize(m.destination);
    if (dest === '/') throw bad(`${f}.destination`, 'cannot be /');
    const opts = parseMountOptions(strList(m.options, `${f}.options`));
    const type = typeof m.type === 'string' ? m.type : '';
    const isBind = type === 'bind' || (opts.flags & MS.BIND) !== 0;
    if (type === 'cgroup') {
      fs.push(...cgroupSteps({ cgroupV2: o.cgroups.version === 2, hierarchies: o.cgroups.hierarchies, flags: opts.flags & MS.RDONLY }));
      continue;
    }
    let kind: 'dir' | 'file' = 'dir';
    let source = typeof m.source === 'string' ? m.source : '';
    let flags = opts.flags;
    if (isBind) {
      if (!source) throw bad(`${f}.source`, 'is needed for a bind mount');
      source = resolve(bundle, source);
      let sst;
      try {
        sst = statSync(source);
      } catch {
        throw bad(`${f}.source`, `"${m.source}" does not exist`);
      }
      kind = sst.isDirectory() ? 'dir' : 'file';
      flags |= MS.BIND;
    } else if (!type) {
      throw bad(`${f}.type`, 'is missing');
    }
    if (dest === '/dev' && !isBind) devIsFresh = true;
    fs.push({ op: 'mount', kind, source: source || type, target: dest, fstype: isBind ? 'none' : type, flags, data: opts.data.join(',') });
    for (const p of opts.propagation) fs.push({ op: 'propagate', path: dest, flags: p });
    // runc's default set: a fresh /dev gets the standard nodes once /dev/pts is in place.
  }
  if (devIsFresh) {
    const at = fs.findIndex((s) => s.op === 'mount' && s.target === '/dev/pts');
    const after = at >= 0 ? at + 1 : fs.findIndex((s) => s.op === 'mount' && s.target === '/dev') + 1;
    fs.splice(after, 0, ...devSteps(terminal));
  } else if (terminal) {
    fs.push({ op: 'console', path: '/dev/console' });
  }
  for (const [i, d] of (Array.isArray(linux.devices) ? linux.devices : []).entries()) {
    const f = `linux.devices[${i}]`;
    if (!isObj(d) || typeof d.path !== 'string' || !d.path.startsWith('/dev/')) throw bad(`${f}.path`, 'must be a path under /dev');
    const type = d.type === 'u' ? 'c' : d.type;
    if (type !== 'c' && type !== 'b' && type !== 'p') throw bad(`${f}.type`, 'must be c, b, u or p');
    const major = type === 'p' ? 0 : int(d.major, `${f}.major`, 0);
    const minor = type === 'p' ? 0 : int(d.minor, `${f}.minor`, 0);
    if (major === undefined || minor === undefined) throw bad(f, 'needs major and minor numbers');
    fs.push({ op: 'mknod', path: posix.normalize(d.path), type, major, minor, mode: int(d.fileMode, `${f}.fileMode`, 0, 0o7777) ?? 0o666, uid: int(d.uid, `${f}.uid`, 0) ?? 0, gid: int(d.gid, `${f}.gid`, 0) ?? 0 });
  }
  fs.push({ op: 'mkdir', path: cwd });

  const plan: ContainerPlan = {
    clone,
    nsjoin,
    cgroupns,
    sysctls,
    oomScoreAdj,
    root: rootfs,
    propagation,
    fs,
    masked,
    readonly,
    rootReadOnly: root.readonly === true,
    hostname: typeof spec.hostname === 'string' && spec.hostname ? spec.hostname : undefined,
    domainname: typeof spec.domainname === 'string' && spec.domainname ? spec.domainname : undefined,
    rlimits,
    caps,
    user: { uid, gid, groups },
    umask,
    cwd,
    env,
    args,
    noNewPrivileges,
    seccomp,
    cgroups: [],
    waitAttach: false,
    tty: false,
    winsize,
    stdin: false,
    consoleSocket: o.consoleSocket,
    foreground: o.foreground,
  };
  const resources = resourcesOf(linux.resources);
  // As runc: after the config's device rules, the standard nodes and the config's own devices are allowed.
  if (resources.deviceRules?.length) {
    resources.deviceRules.push(...DEFAULT_DEVICE_RULES.map((rule) => ({ allow: true, rule })));
    for (const st of fs) if (st.op === 'mknod' && st.type !== 'p') resources.deviceRules.push({ allow: true, rule: `${st.type} ${st.major}:${st.minor} rwm` });
  }
  const annotations = spec.annotations;
  if (annotations !== undefined && (!isObj(annotations) || !Object.values(annotations).every((v) => typeof v === 'string'))) throw bad('annotations', 'must map keys to strings');
  return {
    plan,
    cgroupPath: cgroupPathOf(linux.cgroupsPath, o.id),
    resources,
    hooks: hooksOf(spec.hooks),
    rootfs,
    terminal,
    ownPidNamespace: (clone & CLONE.NEWPID) !== 0,
    annotations: (annotations as Record<string, string> | undefined) ?? {},
    ociVersion,
  };
}
