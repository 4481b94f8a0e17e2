// From what a user asked (`tsnet run` flags, later the engine's requests) and the
// image's config to a container's Config and HostConfig: every flag parsed and
// checked here, before anything is made. Pure but for reading --env-file files.
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { isAbsolute, posix } from 'node:path';
import { InvalidConfigError } from '../errors.js';
import type { ImageConfigBody, ImageRecord } from './images/store.js';
import type { ContainerConfig, HostConfig, MountSpec, UlimitSpec } from './model.js';
import { capabilitySet } from './security.js';

export interface CreateContainerRequest {
  image: string;
  cmd?: string[];
  name?: string;
  /** Docker's --entrypoint: one string; "" clears the image's. */
  entrypoint?: string;
  env?: string[];
  envFiles?: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  /** --network (repeatable): the first is the network mode, the rest are connected too. */
  networks?: string[];
  publish?: string[];
  publishAll?: boolean;
  expose?: string[];
  ip?: string;
  volumes?: string[];
  tmpfs?: string[];
  mounts?: string[];
  memory?: string;
  memorySwap?: string;
  cpus?: string;
  cpuShares?: string;
  cpusetCpus?: string;
  pidsLimit?: string;
  readOnly?: boolean;
  init?: boolean;
  rm?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  securityOpt?: string[];
  privileged?: boolean;
  ulimits?: string[];
  labels?: string[];
  stopSignal?: string;
  stopTimeout?: string;
  logOpts?: string[];
  tty?: boolean;
  interactive?: boolean;
  cgroupParent?: string;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** Docker's RAMInBytes: "64m", "1.5g", "1024" (bytes), units binary. */
export function parseBytes(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgtp]?)b?$/i.exec(text.trim());
  if (!m) throw new InvalidConfigError(`invalid ${flag} "${text}": a size like 64m, 512k or 1g`);
  return Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
}

function wholeNumber(text: string, flag: string, min = 0): number {
  if (!/^-?\d+$/.test(text.trim())) throw new InvalidConfigError(`invalid ${flag} "${text}": a whole number`);
  const n = Number(text);
  if (n < min) throw new InvalidConfigError(`invalid ${flag} "${text}": at least ${min}`);
  return n;
}

export const RLIMITS: Record<string, number> = { cpu: 0, fsize: 1, data: 2, stack: 3, core: 4, rss: 5, nproc: 6, nofile: 7, memlock: 8, as: 9, locks: 10, sigpending: 11, msgqueue: 12, nice: 13, rtprio: 14, rttime: 15 };

/** --ulimit NAME=SOFT[:HARD] ("-1": unlimited). */
export function parseUlimit(text: string): UlimitSpec {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(text);
  if (!m) throw new InvalidConfigError(`invalid --ulimit "${text}": NAME=SOFT[:HARD], e.g. nofile=1024:2048`);
  if (RLIMITS[m[1]!] === undefined) throw new InvalidConfigError(`invalid --ulimit "${text}": unknown limit "${m[1]}" (${Object.keys(RLIMITS).join(', ')})`);
  const soft = Number(m[2]);
  const hard = m[3] === undefined ? soft : Number(m[3]);
  if (soft !== -1 && hard !== -1 && soft > hard) throw new InvalidConfigError(`invalid --ulimit "${text}": soft limit ${soft} is above the hard limit ${hard}`);
  if (hard === -1 && soft === -1) return { name: m[1]!, soft, hard };
  if (hard !== -1 && soft === -1) throw new InvalidConfigError(`invalid --ulimit "${text}": an unlimited soft limit needs an unlimited hard limit`);
  return { name: m[1]!, soft, hard };
}

/** A signal by name (TERM, SIGTERM) or number, as its name. */
export function parseSignal(text: string, flag = 'signal'): string {
  const t = text.trim().toUpperCase();
  const sigs = osConstants.signals as Record<string, number>;
  if (/^\d+$/.test(t)) {
    const name = Object.keys(sigs).find((k) => sigs[k] === Number(t));
    if (!name) throw new InvalidConfigError(`invalid ${flag} "${text}": no such signal number`);
    return name;
  }
  const name = t.startsWith('SIG') ? t : `SIG${t}`;
  if (sigs[name] === undefined) throw new InvalidConfigError(`invalid ${flag} "${text}": no such signal`);
  return name;
}

export const signalNumber = (name: string) => (osConstants.signals as Record<string, number>)[name] ?? 15;

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
export function validateContainerName(name: string): void {
  if (!NAME.test(name) || name.length > 128) throw new InvalidConfigError(`invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at most 128)`);
}

const HOSTNAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

function containerPath(p: string, what: string): string {
  if (!p.startsWith('/')) throw new InvalidConfigError(`${what}: "${p}" must be an absolute path in the container`);
  const n = posix.normalize(p);
  if (n === '/') throw new InvalidConfigError(`${what}: cannot mount over / of the container`);
  return n.replace(/\/+$/, '');
}

/** -v HOST:CTR[:ro|rw] (bind mounts only: tsnet has no named volumes yet). */
export function parseVolume(text: string): MountSpec {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3) throw new InvalidConfigError(`invalid -v "${text}": HOST_PATH:CONTAINER_PATH[:ro] (named volumes are not supported yet)`);
  const [src, dst, opt] = parts as [string, string, string | undefined];
  if (!isAbsolute(src)) throw new InvalidConfigError(`invalid -v "${text}": "${src}" is not an absolute host path (named volumes are not supported yet)`);
  const opts = (opt ?? '').split(',').filter(Boolean);
  for (const o of opts) if (!['ro', 'rw', 'z', 'Z', 'private', 'rprivate', 'slave', 'rslave', 'shared', 'rshared'].includes(o)) throw new InvalidConfigError(`invalid -v "${text}": unknown option "${o}"`);
  return { type: 'bind', source: posix.normalize(src), target: containerPath(dst, '-v'), readOnly: opts.includes('ro'), propagation: opts.find((o) => o.includes('private') || o.includes('slave') || o.includes('shared')) };
}

/** --tmpfs PATH[:size=64m,mode=1777] */
export function parseTmpfs(text: string): MountSpec {
  const i = text.indexOf(':');
  const path = i < 0 ? text : text.slice(0, i);
  const m: MountSpec = { type: 'tmpfs', target: containerPath(path, '--tmpfs'), readOnly: false };
  for (const o of (i < 0 ? '' : text.slice(i + 1)).split(',').filter(Boolean)) {
    const [k, v] = o.split('=') as [string, string | undefined];
    if (k === 'size' && v) m.tmpfsSize = parseBytes(v, '--tmpfs size');
    else if (k === 'mode' && v && /^[0-7]{3,4}$/.test(v)) m.tmpfsMode = parseInt(v, 8);
    else if (k === 'ro') m.readOnly = true;
    else if (!['rw', 'noexec', 'exec', 'nosuid', 'suid', 'nodev', 'dev'].includes(k)) throw new InvalidConfigError(`invalid --tmpfs "${text}": unknown option "${o}"`);
  }
  return m;
}

/** --mount type=bind|tmpfs,source=..,target=..[,readonly][,tmpfs-size=..][,tmpfs-mode=..] */
export function parseMount(text: string): MountSpec {
  const kv: Record<string, string> = {};
  for (const f of text.split(',')) {
    const [k, ...v] = f.split('=');
    kv[k!.trim()] = v.length ? v.join('=') : 'true';
  }
  const type = kv.type ?? 'volume';
  if (type !== 'bind' && type !== 'tmpfs') throw new InvalidConfigError(`invalid --mount "${text}": type must be bind or tmpfs (volumes are not supported yet)`);
  const target = kv.target ?? kv.destination ?? kv.dst;
  if (!target) throw new InvalidConfigError(`invalid --mount "${text}": target is missing`);
  const ro = ['readonly', 'ro'].some((k) => kv[k] !== undefined && kv[k] !== 'false' && kv[k] !== '0');
  if (type === 'tmpfs') {
    return { type, target: containerPath(target, '--mount'), readOnly: ro, tmpfsSize: kv['tmpfs-size'] ? parseBytes(kv['tmpfs-size'], '--mount tmpfs-size') : undefined, tmpfsMode: kv['tmpfs-mode'] ? parseInt(kv['tmpfs-mode'], 8) : undefined };
  }
  const src = kv.source ?? kv.src;
  if (!src || !isAbsolute(src)) throw new InvalidConfigError(`invalid --mount "${text}": a bind mount needs an absolute source`);
  return { type, source: posix.normalize(src), target: containerPath(target, '--mount'), readOnly: ro, propagation: kv['bind-propagation'] };
}

/** KEY=VALUE lines; "KEY" alone takes the value from our environment (Docker's rule). */
export function parseEnv(list: string[], where: string, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const raw of list) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line.trim() : line.slice(0, eq);
    if (!key || /\s/.test(key)) throw new InvalidConfigError(`invalid environment variable "${line}" in ${where}`);
    if (eq < 0) {
      if (env[key] !== undefined) out.push(`${key}=${env[key]}`);
    } else out.push(line);
  }
  return out;
}

/** Later entries win, by key; order of first appearance kept. */
export function mergeEnv(...lists: string[][]): string[] {
  const m = new Map<string, string>();
  for (const l of lists) for (const e of l) m.set(e.split('=')[0]!, e);
  return [...m.values()];
}

/** Ports the container exposes ("80/tcp" keys), from the image and --expose. */
function exposedPorts(image: Record<string, object> | undefined, expose: string[]): Record<string, Record<string, never>> {
  const out: Record<string, Record<string, never>> = {};
  for (const k of Object.keys(image ?? {})) out[k] = {};
  for (const e of expose) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(e);
    if (!m) throw new InvalidConfigError(`invalid --expose "${e}": PORT[-END][/tcp|udp|sctp]`);
    const end = Number(m[2] ?? m[1]);
    for (let p = Number(m[1]); p <= end; p++) out[`${p}/${m[3] ?? 'tcp'}`] = {};
  }
  return out;
}

export interface PlannedContainer {
  name?: string;
  config: ContainerConfig;
  hostConfig: HostConfig;
}

/**
 * The container's Config and HostConfig: the request over the image's config, with
 * every flag checked. Throws InvalidConfigError naming the flag.
 */
export function planContainer(req: CreateContainerRequest, image: ImageRecord, env: NodeJS.ProcessEnv = process.env, ncpu = 1): PlannedContainer {
  if (req.name !== undefined) validateContainerName(req.name);
  const ic = image.config;
  if (req.hostname !== undefined && !HOSTNAME.test(req.hostname)) throw new InvalidConfigError(`invalid --hostname "${req.hostname}"`);
  const fileEnv: string[] = [];
  for (const f of req.envFiles ?? []) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      throw new InvalidConfigError(`--env-file ${f}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
    fileEnv.push(...parseEnv(text.split('\n'), `--env-file ${f}`, env));
  }
  const userEnv = parseEnv(req.env ?? [], '-e', env);
  const entrypoint = req.entrypoint !== undefined ? (req.entrypoint === '' ? [] : [req.entrypoint]) : (ic.Entrypoint ?? []);
  // A new entrypoint drops the image's Cmd (Docker's rule).
  const cmd = req.cmd?.length ? req.cmd : req.entrypoint !== undefined ? [] : (ic.Cmd ?? []);
  if (!entrypoint.length && !cmd.length) throw new InvalidConfigError(`no command specified: the image ${req.image} has no Cmd or Entrypoint; give one after the image name`);
  if (req.workdir !== undefined && !req.workdir.startsWith('/')) throw new InvalidConfigError(`invalid -w "${req.workdir}": the working directory must be an absolute path`);
  const labels: Record<string, string> = { ...(ic.Labels ?? {}) };
  for (const l of req.labels ?? []) {
    const eq = l.indexOf('=');
    if (eq === 0) throw new InvalidConfigError(`invalid --label "${l}"`);
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1);
  }
  const stopTimeout = req.stopTimeout === undefined ? undefined : wholeNumber(req.stopTimeout, '--stop-timeout', -1);
  const config: ContainerConfig = {
    Hostname: req.hostname ?? '',
    Domainname: '',
    User: req.user ?? ic.User ?? '',
    Env: mergeEnv(ic.Env ?? [], fileEnv, userEnv),
    Cmd: cmd,
    Entrypoint: entrypoint,
    Image: req.image,
    WorkingDir: req.workdir ?? ic.WorkingDir ?? '',
    Labels: labels,
    StopSignal: parseSignal(req.stopSignal ?? ic.StopSignal ?? 'SIGTERM', '--stop-signal'),
    StopTimeout: stopTimeout,
    ExposedPorts: exposedPorts(ic.ExposedPorts, req.expose ?? []),
    Tty: Boolean(req.tty),
    OpenStdin: Boolean(req.interactive),
  };

  const nets = req.networks?.length ? req.networks : ['bridge'];
  const mode = nets[0]!;
  if ((mode === 'host' || mode === 'none' || mode.startsWith('container:')) && nets.length > 1) throw new InvalidConfigError(`--network ${mode} cannot be combined with other networks`);
  if (mode === 'host' || mode.startsWith('container:')) {
    if (req.publish?.length || req.publishAll) throw new InvalidConfigError(`-p/-P do not apply to --network ${mode} (the ports are the ${mode === 'host' ? "host's" : "other container's"})`);
    if (req.hostname !== undefined && mode.startsWith('container:')) throw new InvalidConfigError('--hostname cannot be combined with --network container:');
  }
  const mounts = [...(req.volumes ?? []).map(parseVolume), ...(req.tmpfs ?? []).map(parseTmpfs), ...(req.mounts ?? []).map(parseMount)];
  const seen = new Set<string>();
  for (const m of mounts) {
    if (seen.has(m.target)) throw new InvalidConfigError(`duplicate mount point: ${m.target}`);
    seen.add(m.target);
  }
  const memory = req.memory === undefined ? 0 : parseBytes(req.memory, '--memory');
  if (req.memory !== undefined && memory < 6 * 1024 * 1024) throw new InvalidConfigError('invalid --memory: the minimum memory limit allowed is 6MB');
  let memorySwap = 0;
  if (req.memorySwap !== undefined) {
    if (!memory) throw new InvalidConfigError('--memory-swap needs --memory as well');
    memorySwap = req.memorySwap.trim() === '-1' ? -1 : parseBytes(req.memorySwap, '--memory-swap');
    if (memorySwap !== -1 && memorySwap < memory) throw new InvalidConfigError('invalid --memory-swap: it is memory plus swap, so it must be at least --memory');
  } else if (memory) {
    memorySwap = memory * 2; // Docker: as much swap as memory
  }
  let nanoCpus = 0;
  if (req.cpus !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(req.cpus) || Number(req.cpus) <= 0) throw new InvalidConfigError(`invalid --cpus "${req.cpus}": a positive number of CPUs, like 0.5`);
    if (Number(req.cpus) > ncpu) throw new InvalidConfigError(`invalid --cpus ${req.cpus}: the range of CPUs is from 0.01 to ${ncpu} (the CPUs this machine has)`);
    nanoCpus = Math.round(Number(req.cpus) * 1e9);
    if (nanoCpus < 1e7) throw new InvalidConfigError(`invalid --cpus ${req.cpus}: at least 0.01`);
  }
  const cpuShares = req.cpuShares === undefined ? 0 : wholeNumber(req.cpuShares, '--cpu-shares', 2);
  if (cpuShares > 262144) throw new InvalidConfigError('invalid --cpu-shares: at most 262144');
  if (req.cpusetCpus !== undefined && !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(req.cpusetCpus)) throw new InvalidConfigError(`invalid --cpuset-cpus "${req.cpusetCpus}": a list like 0-1 or 0,2`);
  if (req.cpusetCpus !== undefined) {
    for (const n of req.cpusetCpus.split(/[,-]/).map(Number)) if (n >= ncpu) throw new InvalidConfigError(`invalid --cpuset-cpus ${req.cpusetCpus}: CPU ${n} does not exist (this machine has 0-${ncpu - 1})`);
  }
  const pidsLimit = req.pidsLimit === undefined ? 0 : wholeNumber(req.pidsLimit, '--pids-limit', -1);
  const securityOpt = req.securityOpt ?? [];
  for (const o of securityOpt) {
    if (!/^(seccomp[=:].+|no-new-privileges(:(true|false))?|apparmor[=:].+|label[=:].+)$/.test(o)) throw new InvalidConfigError(`invalid --security-opt "${o}": seccomp=unconfined|PROFILE.json, no-new-privileges`);
  }
  // Checked now so that a bad name fails at create, not at start.
  capabilitySet(req.capAdd ?? [], req.capDrop ?? [], Boolean(req.privileged));
  const logConfig: Record<string, string> = {};
  for (const o of req.logOpts ?? []) {
    const m = /^(max-size|max-file)=(.+)$/.exec(o);
    if (!m) throw new InvalidConfigError(`invalid --log-opt "${o}": json-file takes max-size=SIZE and max-file=N`);
    if (m[1] === 'max-size') parseBytes(m[2]!, '--log-opt max-size');
    else if (wholeNumber(m[2]!, '--log-opt max-file', 1) < 1) throw new InvalidConfigError('--log-opt max-file must be at least 1');
    logConfig[m[1]!] = m[2]!;
  }
  if (logConfig['max-file'] && Number(logConfig['max-file']) > 1 && !logConfig['max-size']) throw new InvalidConfigError('--log-opt max-file needs max-size');
  const cgroupParent = req.cgroupParent ?? 'tsnet';
  if (!/^[a-zA-Z0-9_.\/-]+$/.test(cgroupParent) || cgroupParent.split('/').includes('..')) throw new InvalidConfigError(`invalid cgroup parent "${cgroupParent}"`);
  if (req.ip !== undefined && (mode === 'host' || mode === 'none' || mode.startsWith('container:'))) throw new InvalidConfigError(`--ip does not apply to --network ${mode}`);
  const hostConfig: HostConfig = {
    NetworkMode: mode,
    Networks: nets.slice(1),
    PortBindings: req.publish ?? [],
    PublishAllPorts: Boolean(req.publishAll),
    IP: req.ip,
    Mounts: mounts,
    Memory: memory,
    MemorySwap: memorySwap,
    NanoCpus: nanoCpus,
    CpuShares: cpuShares,
    CpusetCpus: req.cpusetCpus ?? '',
    PidsLimit: pidsLimit,
    ReadonlyRootfs: Boolean(req.readOnly),
    Init: Boolean(req.init),
    AutoRemove: Boolean(req.rm),
    CapAdd: req.capAdd ?? [],
    CapDrop: req.capDrop ?? [],
    SecurityOpt: securityOpt,
    Privileged: Boolean(req.privileged),
    Ulimits: (req.ulimits ?? []).map(parseUlimit),
    LogConfig: { Type: 'json-file', Config: logConfig },
    CgroupParent: cgroupParent,
  };
  return { name: req.name, config, hostConfig };
}

/**
 * `import -c`: the Dockerfile instructions docker import takes (CMD, ENTRYPOINT,
 * ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR), as image config keys.
 * CMD and ENTRYPOINT take the JSON form or a shell form (run by /bin/sh -c).
 */
export function parseChanges(changes: string[]): ImageConfigBody {
  const out: ImageConfigBody = {};
  const words = (s: string) => s.trim().split(/\s+/).filter(Boolean);
  const argv = (rest: string, what: string): string[] => {
    const t = rest.trim();
    if (t.startsWith('[')) {
      let v: unknown;
      try {
        v = JSON.parse(t);
      } catch {
        throw new InvalidConfigError(`--change "${what} ${t}": not a JSON list of strings`);
      }
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new InvalidConfigError(`--change "${what} ${t}": not a JSON list of strings`);
      return v;
    }
    return ['/bin/sh', '-c', t];
  };
  // KEY=VALUE pairs, or the legacy "KEY VALUE" form for one pair.
  const pairs = (rest: string, what: string): Array<[string, string]> => {
    const t = rest.trim();
    if (!/^[^\s=]+=/.test(t)) {
      const [k, ...v] = words(t);
      if (!k || !v.length) throw new InvalidConfigError(`--change "${what} ${t}": needs KEY=VALUE`);
      return [[k, v.join(' ')]];
    }
    const re = /([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)/g;
    const res: Array<[string, string]> = [];
    for (const m of t.matchAll(re)) res.push([m[1]!, m[2]!.startsWith('"') ? JSON.parse(m[2]!) : m[2]!]);
    if (!res.length) throw new InvalidConfigError(`--change "${what} ${t}": needs KEY=VALUE`);
    return res;
  };
  for (const c of changes) {
    const m = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(c);
    if (!m) throw new InvalidConfigError(`--change "${c}": expected INSTRUCTION ARGUMENTS`);
    const instr = m[1]!.toUpperCase();
    const rest = m[2]!;
    switch (instr) {
      case 'CMD':
        out.Cmd = argv(rest, instr);
        break;
      case 'ENTRYPOINT':
        out.Entrypoint = argv(rest, instr);
        break;
      case 'ENV':
        out.Env = mergeEnv(out.Env ?? [], pairs(rest, instr).map(([k, v]) => `${k}=${v}`));
        break;
      case 'LABEL':
        out.Labels = { ...(out.Labels ?? {}), ...Object.fromEntries(pairs(rest, instr)) };
        break;
      case 'EXPOSE':
        for (const p of words(rest)) {
          if (!/^\d+(?:-\d+)?(?:\/(tcp|udp|sctp))?$/.test(p)) throw new InvalidConfigError(`--change "EXPOSE ${p}": PORT[/tcp|udp|sctp]`);
          out.ExposedPorts = { ...(out.ExposedPorts ?? {}), [p.includes('/') ? p : `${p}/tcp`]: {} };
        }
        break;
      case 'STOPSIGNAL':
        parseSignal(rest.trim());
        out.StopSignal = rest.trim();
        break;
      case 'USER':
        out.User = rest.trim();
        break;
      case 'WORKDIR':
        if (!rest.trim().startsWith('/')) throw new InvalidConfigError(`--change "WORKDIR ${rest.trim()}": must be an absolute path`);
        out.WorkingDir = rest.trim();
        break;
      case 'VOLUME':
        for (const v of rest.trim().startsWith('[') ? argv(rest, instr) : words(rest)) out.Volumes = { ...(out.Volumes ?? {}), [v]: {} };
        break;
      default:
        throw new InvalidConfigError(`--change "${c}": ${instr} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR`);
    }
  }
  return out;
}
