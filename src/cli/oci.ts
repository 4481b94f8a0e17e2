// `tsnet runtime ...` and `tsnet-runc`: the OCI runtime command line, shaped like
// runc's so that what drives runc (containerd's shim, podman's conmon) can drive
// tsnet: the same global flags (--root, --log, --log-format), commands, flags,
// state JSON and exit codes (1 for an error; run's own is the container's).
import { writeFileSync, existsSync, readFileSync, appendFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs, type FlagSpec } from './args.js';
import { asTsnetError, InvalidConfigError, UnsupportedError } from '../errors.js';
import { OciRuntime, localHelpers, type Helpers, type OciState } from '../runtime/oci/runtime.js';
import { serveOci } from './oci-server.js';
import { CgroupManager } from '../runtime/cgroups.js';
import { RealFiles } from '../system/real/files.js';
import { nativeProgram } from '../system/real/addon.js';
import { silentLogger } from '../log.js';
import { CAPABILITIES, DEFAULT_CAPS } from '../runtime/security.js';
import { parseProcess } from '../runtime/oci/config.js';
import { ownBoundingSet } from '../runtime/proc.js';
import { MASKED_PATHS, READONLY_PATHS, type ProcessPlan } from '../runtime/plan.js';

const GLOBAL: FlagSpec[] = [
  { name: 'root', type: 'string', help: 'state directory (default /run/tsnet/runtime)', metavar: 'DIR' },
  { name: 'log', type: 'string', help: 'append errors to this file', metavar: 'FILE' },
  { name: 'log-format', type: 'string', help: 'text or json', metavar: 'FMT' },
  { name: 'debug', type: 'bool', help: 'accepted (runc compatibility)' },
  { name: 'systemd-cgroup', type: 'bool', help: 'not supported: tsnet uses the cgroupfs driver' },
  { name: 'rootless', type: 'string', help: 'accepted: auto or false', metavar: 'MODE' },
  { name: 'criu', type: 'string', help: 'not supported', metavar: 'PATH' },
  { name: 'help', short: 'h', type: 'bool', help: 'show help' },
  { name: 'version', short: 'v', type: 'bool', help: 'print the version' },
  { name: 'serve', type: 'bool', help: 'serve the native tsnet-runc from a warm process (it starts one itself)' },
];

const BUNDLE: FlagSpec = { name: 'bundle', short: 'b', type: 'string', help: 'the bundle directory (default: the current one)', metavar: 'DIR' };
const CONSOLE: FlagSpec = { name: 'console-socket', type: 'string', help: 'unix socket to send the pty master to (process.terminal)', metavar: 'PATH' };
const PIDFILE: FlagSpec = { name: 'pid-file', type: 'string', help: "write the container process's pid here", metavar: 'FILE' };
const IGNORED: FlagSpec[] = [
  { name: 'no-pivot', type: 'bool', help: 'accepted; tsnet always uses pivot_root' },
  { name: 'no-new-keyring', type: 'bool', help: 'accepted' },
  { name: 'preserve-fds', type: 'string', help: 'only 0 is supported', metavar: 'N' },
];

interface Sub {
  name: string;
  usage: string;
  summary: string;
  flags: FlagSpec[];
  /** After this many positionals the rest is the command's (exec, ps). */
  restAfter?: number;
  args: [number, number];
  run(a: { flags: Record<string, unknown>; pos: string[]; rest: string[] }, rt: OciRuntime, out: (s: string) => void, ctx: Ctx): Promise<number>;
}

/** Where a call comes from: the caller's directory (paths are its), and whether the helper is the caller's (a warm server's client). */
export interface Ctx {
  cwd: string;
  remote: boolean;
}
const abs = (ctx: Ctx, p: string | undefined) => (p === undefined ? undefined : resolve(ctx.cwd, p));

const s = (v: unknown) => (v === undefined ? undefined : String(v));

function checkIgnored(flags: Record<string, unknown>): void {
  const n = s(flags['preserve-fds']);
  if (n !== undefined && n !== '0') throw new UnsupportedError('--preserve-fds is not supported by tsnet yet');
}

function listTable(states: OciState[]): string[] {
  const rows = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'], ...states.map((x) => [x.id, String(x.pid), x.status, x.bundle, x.created, x.owner || 'root'])];
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]! + 3))).join('').trimEnd());
}

/** A process override from exec's flags (or a process.json, which replaces the config's process); terminal: it wants a pty (-t, process.terminal). */
function execProcess(flags: Record<string, unknown>, rest: string[]): Partial<ProcessPlan> & { terminal: boolean; winsize?: { rows: number; cols: number } } {
  const file = s(flags.process);
  if (file) {
    let p: unknown;
    try {
      p = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new InvalidConfigError(`--process ${file}: ${(err as Error).message}`);
    }
    const { oomScoreAdj: _o, ...proc } = parseProcess(p, file, 'process', ownBoundingSet());
    return proc;
  }
  if (!rest.length) throw new InvalidConfigError('exec needs a command (or --process FILE)');
  const o: Partial<ProcessPlan> & { terminal: boolean } = { args: rest, terminal: Boolean(flags.tty) };
  const envs = (flags.env as string[] | undefined) ?? [];
  if (envs.length) o.env = envs;
  if (s(flags.cwd)) o.cwd = s(flags.cwd);
  const user = s(flags.user);
  if (user) {
    const m = /^(\d+)(?::(\d+))?$/.exec(user);
    if (!m) throw new InvalidConfigError(`--user "${user}": UID[:GID]`);
    o.user = { uid: Number(m[1]), gid: Number(m[2] ?? 0), groups: ((flags['additional-gids'] as string[] | undefined) ?? []).map(Number) };
  }
  if (flags['no-new-privs']) o.noNewPrivileges = true;
  return o;
}

/** `runc spec`'s config: a busybox-ready rootfs/, sh, the default capabilities and mounts. */
export function defaultSpec(): unknown {
  const caps = DEFAULT_CAPS.filter((c) => ['AUDIT_WRITE', 'KILL', 'NET_BIND_SERVICE'].includes(c)).map((c) => `CAP_${c}`);
  return {
    ociVersion: '1.2.0',
    process: {
      terminal: true,
      user: { uid: 0, gid: 0 },
      args: ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, ambient: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'tsnet',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'].map((type) => ({ type })),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  };
}

const SUBS: Sub[] = [
  {
    name: 'create', usage: 'create [--bundle DIR] [--console-socket S] [--pid-file F] ID', summary: 'create a container; its process waits for start',
    flags: [BUNDLE, CONSOLE, PIDFILE, ...IGNORED], args: [1, 1],
    async run({ flags, pos }, rt, _out, ctx) {
      checkIgnored(flags);
      await rt.create(pos[0]!, { bundle: abs(ctx, s(flags.bundle) ?? '.')!, consoleSocket: abs(ctx, s(flags['console-socket'])), pidFile: abs(ctx, s(flags['pid-file'])) });
      return 0;
    },
  },
  {
    name: 'run', usage: 'run [-d] [--bundle DIR] [--console-socket S] [--pid-file F] ID', summary: 'create and start a container (foreground: its exit code is ours)',
    flags: [BUNDLE, CONSOLE, PIDFILE, { name: 'detach', short: 'd', type: 'bool', help: 'return once it runs' }, { name: 'keep', type: 'bool', help: 'do not delete it when it exits' }, ...IGNORED], args: [1, 1],
    async run({ flags, pos }, rt, _out, ctx) {
      checkIgnored(flags);
      const id = pos[0]!;
      const detach = Boolean(flags.detach);
      const c = await rt.create(id, { bundle: abs(ctx, s(flags.bundle) ?? '.')!, consoleSocket: abs(ctx, s(flags['console-socket'])), pidFile: abs(ctx, s(flags['pid-file'])), foreground: !detach });
      try {
        await rt.start(id);
      } catch (err) {
        await rt.delete(id, true).catch(() => undefined);
        throw err;
      }
      if (detach) return 0;
      // Signals to us go to the container, as runc forwards them (a warm server's client forwards its own).
      const fwd = (sig: NodeJS.Signals) => {
        try {
          process.kill(c.pid, sig);
        } catch {
          /* gone */
        }
      };
      if (!ctx.remote) for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const) process.on(sig, fwd);
      const code = await c.exit!;
      if (!flags.keep) await rt.delete(id, true);
      return code;
    },
  },
  {
    name: 'start', usage: 'start ID', summary: 'start a created container', flags: [], args: [1, 1],
    async run({ pos }, rt) {
      await rt.start(pos[0]!);
      return 0;
    },
  },
  {
    name: 'state', usage: 'state ID', summary: "the container's state as JSON", flags: [], args: [1, 1],
    async run({ pos }, rt, out) {
      out(JSON.stringify(rt.state(pos[0]!), null, 2));
      return 0;
    },
  },
  {
    name: 'kill', usage: 'kill [--all] ID [SIGNAL]', summary: 'send a signal (default SIGTERM) to the container process', flags: [{ name: 'all', short: 'a', type: 'bool', help: 'to every process in the container' }], args: [1, 2],
    async run({ flags, pos }, rt) {
      await rt.kill(pos[0]!, pos[1] ?? 'SIGTERM', Boolean(flags.all));
      return 0;
    },
  },
  {
    name: 'delete', usage: 'delete [--force] ID', summary: 'delete a stopped (or created) container; --force kills a running one', flags: [{ name: 'force', short: 'f', type: 'bool', help: 'kill it first if it runs' }], args: [1, 1],
    async run({ flags, pos }, rt) {
      await rt.delete(pos[0]!, Boolean(flags.force));
      return 0;
    },
  },
  {
    name: 'list', usage: 'list [--format table|json] [-q]', summary: 'list containers', flags: [{ name: 'format', short: 'f', type: 'string', help: 'table or json', metavar: 'FMT' }, { name: 'quiet', short: 'q', type: 'bool', help: 'only ids' }], args: [0, 0],
    async run({ flags }, rt, out) {
      const all = rt.list();
      if (flags.quiet) for (const x of all) out(x.id);
      else if (s(flags.format) === 'json') out(JSON.stringify(all));
      else if (!flags.format || s(flags.format) === 'table') for (const l of listTable(all)) out(l);
      else throw new InvalidConfigError(`invalid --format "${s(flags.format)}": table or json`);
      return 0;
    },
  },
  {
    name: 'ps', usage: 'ps [--format table|json] ID [PS_ARGS...]', summary: "the container's processes", flags: [{ name: 'format', short: 'f', type: 'string', help: 'table or json', metavar: 'FMT' }], args: [1, 1], restAfter: 1,
    async run({ flags, pos, rest }, rt, out) {
      const pids = rt.ps(pos[0]!);
      if (s(flags.format) === 'json') {
        out(JSON.stringify(pids));
        return 0;
      }
      const ps = spawnSync('ps', rest.length ? rest : ['-ef'], { encoding: 'utf8' });
      const lines = ps.stdout.split('\n').filter(Boolean);
      const header = lines[0] ?? '';
      const col = header.split(/\s+/).filter(Boolean).indexOf('PID');
      if (col < 0) throw new InvalidConfigError('ps: its output has no PID column');
      out(header);
      for (const l of lines.slice(1)) if (pids.includes(Number(l.trim().split(/\s+/)[col]))) out(l);
      return 0;
    },
  },
  {
    name: 'exec', usage: 'exec [--process F] [-e K=V] [--cwd D] [-u UID[:GID]] [-d] [--pid-file F] ID [COMMAND...]', summary: 'run a process in a running container',
    flags: [
      { name: 'process', short: 'p', type: 'string', help: 'a process.json (replaces the config process)', metavar: 'FILE' },
      { name: 'env', short: 'e', type: 'list', help: 'KEY=VALUE (replaces the environment)', metavar: 'KV' },
      { name: 'cwd', type: 'string', help: 'working directory', metavar: 'DIR' },
      { name: 'user', short: 'u', type: 'string', help: 'UID[:GID]', metavar: 'ID' },
      { name: 'additional-gids', short: 'g', type: 'list', help: 'extra groups', metavar: 'GID' },
      { name: 'tty', short: 't', type: 'bool', help: 'a pty of the container (its master to --console-socket)' },
      { name: 'detach', short: 'd', type: 'bool', help: 'return once it runs' },
      { name: 'no-new-privs', type: 'bool', help: 'set no_new_privs' },
      CONSOLE, PIDFILE,
      { name: 'cap', short: 'c', type: 'list', help: 'not supported yet', metavar: 'CAP' },
      { name: 'process-label', type: 'string', help: 'accepted', metavar: 'L' },
      { name: 'apparmor', type: 'string', help: 'accepted', metavar: 'P' },
      { name: 'ignore-paused', type: 'bool', help: 'accepted' },
      { name: 'preserve-fds', type: 'string', help: 'only 0', metavar: 'N' },
      { name: 'cgroup', type: 'string', help: 'not supported', metavar: 'PATH' },
    ],
    args: [1, 1], restAfter: 1,
    async run({ flags, pos, rest }, rt, _out, ctx) {
      checkIgnored(flags);
      if (((flags.cap as string[] | undefined) ?? []).length) throw new UnsupportedError('exec --cap is not supported by tsnet yet');
      if (s(flags.cgroup)) throw new UnsupportedError('exec --cgroup is not supported by tsnet');
      const { terminal, ...proc } = execProcess({ ...flags, process: abs(ctx, s(flags.process)) }, rest);
      const consoleSocket = abs(ctx, s(flags['console-socket']));
      if (terminal && !consoleSocket) throw new UnsupportedError('exec with a terminal needs --console-socket (tsnet does not proxy a terminal itself yet)');
      return rt.exec(pos[0]!, { ...proc, pidFile: abs(ctx, s(flags['pid-file'])), detach: Boolean(flags.detach), consoleSocket: terminal ? consoleSocket : undefined });
    },
  },
  {
    name: 'pause', usage: 'pause ID', summary: "freeze the container's processes", flags: [], args: [1, 1],
    async run({ pos }, rt) {
      await rt.pause(pos[0]!, true);
      return 0;
    },
  },
  {
    name: 'resume', usage: 'resume ID', summary: 'thaw a paused container', flags: [], args: [1, 1],
    async run({ pos }, rt) {
      await rt.pause(pos[0]!, false);
      return 0;
    },
  },
  {
    name: 'spec', usage: 'spec [--bundle DIR]', summary: 'write a default config.json', flags: [BUNDLE, { name: 'rootless', type: 'bool', help: 'not supported' }], args: [0, 0],
    async run({ flags }, _rt, _out, ctx) {
      if (flags.rootless) throw new UnsupportedError('rootless specs are not supported by tsnet');
      const file = join(abs(ctx, s(flags.bundle) ?? '.')!, 'config.json');
      if (existsSync(file)) throw new InvalidConfigError(`File ${file} exists. Remove it first`);
      writeFileSync(file, `${JSON.stringify(defaultSpec(), null, '\t')}\n`);
      return 0;
    },
  },
  {
    name: 'features', usage: 'features', summary: "what this runtime supports (runc's features JSON)", flags: [], args: [0, 0],
    async run(_a, _rt, out) {
      out(JSON.stringify({
        ociVersionMin: '1.0.0', ociVersionMax: '1.2.0',
        hooks: ['prestart', 'createRuntime', 'poststart', 'poststop'],
        mountOptions: ['ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'bind', 'rbind', 'private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'relatime', 'noatime', 'strictatime'],
        linux: {
          namespaces: ['cgroup', 'ipc', 'mount', 'network', 'pid', 'uts'],
          capabilities: CAPABILITIES.map((c) => `CAP_${c}`),
          cgroup: { v1: true, v2: true, systemd: false },
          seccomp: { enabled: true },
        },
      }, null, 2));
      return 0;
    },
  },
];

/** urfave/cli (runc's parser) takes long flags with one dash too: -bundle is --bundle. */
function longDash(a: string, specs: FlagSpec[]): string {
  const m = /^-([a-z][a-z-]+)(=.*)?$/.exec(a);
  return m && specs.some((f) => f.name === m[1]) ? `-${a}` : a;
}

function help(): string {
  return ['Usage: tsnet runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND [OPTIONS]', '   (also tsnet-runc: runc\'s command line, for engines that drive runc)', '', 'Commands:', ...SUBS.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`)].join('\n');
}

/** The OCI command line; returns the exit code. */
export async function ociMain(argv: string[], io: { out: (s: string) => void; err: (s: string) => void }, ctx: Ctx = { cwd: process.cwd(), remote: false }, helpers?: Helpers): Promise<number> {
  let logFile: string | undefined;
  let logJson = false;
  try {
    let i = 0;
    const g: string[] = [];
    while (i < argv.length && argv[i]!.startsWith('-')) {
      const a = longDash(argv[i]!, GLOBAL); // runc also takes -root
      g.push(a);
      const spec = GLOBAL.find((f) => a === `--${f.name}` || a === `-${f.short}`);
      if (spec && spec.type !== 'bool' && !a.includes('=')) g.push(argv[++i] ?? '');
      i++;
    }
    const gl = parseArgs(g, GLOBAL).flags;
    logFile = abs(ctx, s(gl.log));
    logJson = s(gl['log-format']) === 'json';
    if (gl.version) {
      io.out('tsnet-runc version 0.1.0\nspec: 1.2.0');
      return 0;
    }
    const root = abs(ctx, s(gl.root) ?? '/run/tsnet/runtime')!;
    if (gl.serve) {
      if (ctx.remote) throw new InvalidConfigError('--serve is not a request');
      return await serveOci(root);
    }
    const sub = SUBS.find((c) => c.name === argv[i]);
    if (!sub || gl.help) {
      if (argv[i] && !sub && !gl.help) throw new InvalidConfigError(`unknown command "${argv[i]}": see tsnet runtime --help`);
      io.out(help());
      return sub || gl.help ? 0 : 1;
    }
    if (gl['systemd-cgroup']) throw new UnsupportedError('--systemd-cgroup: tsnet uses the cgroupfs driver (set SystemdCgroup = false)');
    const args = argv.slice(i + 1).map((a) => longDash(a, sub.flags));
    if (args.includes('--help') || args.includes('-h')) {
      io.out([`Usage: tsnet runtime ${sub.usage}`, '', sub.summary].join('\n'));
      return 0;
    }
    const p = parseArgs(args, sub.flags, { restAfter: sub.restAfter });
    if (p.positionals.length < sub.args[0] || p.positionals.length > sub.args[1]) throw new InvalidConfigError(`"${sub.name}" takes ${sub.args[0] === sub.args[1] ? sub.args[0] : `${sub.args[0]} to ${sub.args[1]}`} argument(s): ${sub.usage}`);
    const files = new RealFiles();
    const rt = new OciRuntime({ root, files, cgroups: new CgroupManager(files), helpers: helpers ?? localHelpers(nativeProgram('tsnet-monitor')), log: silentLogger(), warn: io.err });
    return await sub.run({ flags: p.flags, pos: p.positionals, rest: p.rest }, rt, io.out, ctx);
  } catch (err) {
    const e = asTsnetError(err);
    io.err(`tsnet-runc: ${e.message}`);
    if (logFile) {
      const time = new Date().toISOString();
      try {
        appendFileSync(logFile, logJson ? `${JSON.stringify({ level: 'error', msg: e.message, time })}\n` : `time="${time}" level=error msg=${JSON.stringify(e.message)}\n`);
      } catch {
        /* the log is best effort */
      }
    }
    return 1;
  }
}
