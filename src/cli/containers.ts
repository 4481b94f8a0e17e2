// The runtime's commands: run, create, start, stop, kill, rm, ps, logs, inspect,
// wait, exec, top, container prune; and the image commands. Docker's words, flags
// and exit codes: `run` exits with the container's code, 125 when tsnet failed,
// 126 when the command cannot be executed, 127 when it is not found.
import { spawn } from 'node:child_process';
import { createWriteStream, renameSync, rmSync } from 'node:fs';
import { constants as osConstants, totalmem } from 'node:os';
import { asTsnetError, InvalidConfigError } from '../errors.js';
import { humanDuration, type CreateContainerRequest, type StatsSample } from '../api/runtime.js';
import { ContainerStartError, AttachClient } from '../runtime/monitor.js';
import { parseFilterArgs } from '../api/filters.js';
import { list, str, type Command, type Env } from './command.js';
import type { FlagSpec } from './args.js';
import { portLine, renderInspect, renderList, shortId, table, type ListSpec } from './output.js';
import { goArch } from '../runtime/images/pull.js';
import { parseChanges, parseEnv, parseSignal } from '../runtime/spec.js';

const DETACH_KEYS: FlagSpec = { name: 'detach-keys', type: 'string', help: 'keys that detach from it, leaving it running (default ctrl-p,ctrl-q)', metavar: 'KEYS' };

const RUN_FLAGS: FlagSpec[] = [
  { name: 'detach', short: 'd', type: 'bool', help: 'run in the background and print the container ID' },
  { name: 'interactive', short: 'i', type: 'bool', help: 'keep stdin open' },
  { name: 'tty', short: 't', type: 'bool', help: 'allocate a terminal' },
  { name: 'name', type: 'string', help: 'container name', metavar: 'NAME' },
  { name: 'network', type: 'list', help: 'bridge (default), host, none, container:NAME, or a network (repeatable)', metavar: 'NET' },
  { name: 'publish', short: 'p', type: 'list', help: 'publish a port: [hostIP:][hostPort[-end]:]containerPort[-end][/proto]', metavar: 'SPEC' },
  { name: 'publish-all', short: 'P', type: 'bool', help: 'publish every exposed port on an ephemeral host port' },
  { name: 'expose', type: 'list', help: 'expose a port or range', metavar: 'PORT' },
  { name: 'ip', type: 'string', help: 'IPv4 address on the first network', metavar: 'ADDR' },
  { name: 'hostname', short: 'h', type: 'string', help: 'container host name', metavar: 'NAME' },
  { name: 'env', short: 'e', type: 'list', help: 'set an environment variable KEY=VALUE (KEY alone: from here)', metavar: 'KEY=VALUE' },
  { name: 'env-file', type: 'list', help: 'read environment variables from a file', metavar: 'FILE' },
  { name: 'workdir', short: 'w', type: 'string', help: 'working directory inside the container', metavar: 'DIR' },
  { name: 'volume', short: 'v', type: 'list', help: 'bind mount HOST:CONTAINER[:ro]', metavar: 'SPEC' },
  { name: 'tmpfs', type: 'list', help: 'mount a tmpfs PATH[:size=64m,mode=1777]', metavar: 'PATH' },
  { name: 'mount', type: 'list', help: 'type=bind|tmpfs,source=..,target=..[,readonly]', metavar: 'SPEC' },
  { name: 'memory', short: 'm', type: 'string', help: 'memory limit (64m, 1g)', metavar: 'BYTES' },
  { name: 'memory-swap', type: 'string', help: 'memory plus swap limit; -1 unlimited swap', metavar: 'BYTES' },
  { name: 'cpus', type: 'string', help: 'number of CPUs (0.5)', metavar: 'N' },
  { name: 'cpu-shares', short: 'c', type: 'string', help: 'relative CPU weight', metavar: 'N' },
  { name: 'cpuset-cpus', type: 'string', help: 'CPUs it may run on (0-1, 0,2)', metavar: 'LIST' },
  { name: 'pids-limit', type: 'string', help: 'process limit (-1 unlimited)', metavar: 'N' },
  { name: 'user', short: 'u', type: 'string', help: 'NAME|UID[:GROUP|GID]', metavar: 'USER' },
  { name: 'read-only', type: 'bool', help: 'mount the root filesystem read-only' },
  { name: 'init', type: 'bool', help: 'run an init as PID 1 that forwards signals and reaps zombies' },
  { name: 'rm', type: 'bool', help: 'remove the container when it exits' },
  { name: 'cap-add', type: 'list', help: 'add a capability', metavar: 'CAP' },
  { name: 'cap-drop', type: 'list', help: 'drop a capability', metavar: 'CAP' },
  { name: 'security-opt', type: 'list', help: 'seccomp=unconfined|PROFILE.json, no-new-privileges', metavar: 'OPT' },
  { name: 'privileged', type: 'bool', help: 'all capabilities, no seccomp, no masked paths' },
  { name: 'ulimit', type: 'list', help: 'NAME=SOFT[:HARD]', metavar: 'LIMIT' },
  { name: 'entrypoint', type: 'string', help: "replace the image's entrypoint", metavar: 'CMD' },
  { name: 'label', short: 'l', type: 'list', help: 'metadata KEY=VALUE', metavar: 'KEY=VALUE' },
  { name: 'stop-signal', type: 'string', help: 'signal that stops it (default SIGTERM)', metavar: 'SIG' },
  { name: 'stop-timeout', type: 'string', help: 'seconds to wait before SIGKILL on stop', metavar: 'SECONDS' },
  { name: 'log-opt', type: 'list', help: 'json-file options: max-size=SIZE, max-file=N', metavar: 'OPT' },
  { name: 'cgroup-parent', type: 'string', help: 'parent cgroup (default tsnet)', metavar: 'PATH' },
  { name: 'pull', type: 'string', help: 'pull the image: missing (default), always, never', metavar: 'POLICY' },
  DETACH_KEYS,
];

function runRequest(flags: Record<string, unknown>, positionals: string[], rest: string[]): CreateContainerRequest {
  return {
    image: positionals[0]!,
    cmd: rest,
    name: str(flags.name),
    entrypoint: str(flags.entrypoint),
    env: list(flags.env),
    envFiles: list(flags['env-file']),
    workdir: str(flags.workdir),
    user: str(flags.user),
    hostname: str(flags.hostname),
    networks: list(flags.network),
    publish: list(flags.publish),
    publishAll: Boolean(flags['publish-all']),
    expose: list(flags.expose),
    ip: str(flags.ip),
    volumes: list(flags.volume),
    tmpfs: list(flags.tmpfs),
    mounts: list(flags.mount),
    memory: str(flags.memory),
    memorySwap: str(flags['memory-swap']),
    cpus: str(flags.cpus),
    cpuShares: str(flags['cpu-shares']),
    cpusetCpus: str(flags['cpuset-cpus']),
    pidsLimit: str(flags['pids-limit']),
    readOnly: Boolean(flags['read-only']),
    init: Boolean(flags.init),
    rm: Boolean(flags.rm),
    capAdd: list(flags['cap-add']),
    capDrop: list(flags['cap-drop']),
    securityOpt: list(flags['security-opt']),
    privileged: Boolean(flags.privileged),
    ulimits: list(flags.ulimit),
    labels: list(flags.label),
    stopSignal: str(flags['stop-signal']),
    stopTimeout: str(flags['stop-timeout']),
    logOpts: list(flags['log-opt']),
    tty: Boolean(flags.tty),
    interactive: Boolean(flags.interactive),
    cgroupParent: str(flags['cgroup-parent']),
  };
}

/**
 * Docker's `--pull` for run and create: an image the store lacks is pulled first
 * ("Unable to find image 'X' locally"), its progress on stderr.
 */
async function pullFor(env: Env, flags: Record<string, unknown>, image: string): Promise<void> {
  const policy = str(flags.pull) ?? 'missing';
  if (!['missing', 'always', 'never'].includes(policy)) throw new InvalidConfigError(`invalid --pull "${policy}": use missing, always or never`);
  if (policy === 'never') return;
  const api = env.tsnet().api.images;
  if (policy === 'missing') {
    try {
      await api.inspect([image]);
      return;
    } catch (err) {
      if (asTsnetError(err).code !== 'NOT_FOUND') throw err;
    }
    // An ID (prefix) names nothing to pull.
    if (/^(sha256:)?[a-f0-9]{12,64}$/.test(image)) return;
    env.err(`Unable to find image '${image}' locally`);
  }
  await api.pull(image, {}, (l) => env.err(l));
}

/** tsnet's own failure as Docker reports it for run/start/exec: the message, and 125 (126/127 for the command). */
function failed(env: Env, err: unknown): number {
  env.err(`Error: ${asTsnetError(err).message}`);
  return err instanceof ContainerStartError ? err.exitCode : 125;
}

/**
 * Starts a container with this terminal attached: its output here, our stdin
 * there (-i), a raw terminal with its size (-t), our signals forwarded to it
 * (without -t), and its exit code as ours.
 */
/** Docker's --detach-keys: "ctrl-p,ctrl-q" (default), "ctrl-X" or single characters, comma-separated. */
export function parseDetachKeys(text: string): Buffer {
  const out: number[] = [];
  for (const k of text.split(',')) {
    const m = /^ctrl-([a-zA-Z@[\\\]^_])$/.exec(k);
    if (m) out.push(m[1]!.toUpperCase().charCodeAt(0) & 0x1f);
    else if (k.length === 1) out.push(k.charCodeAt(0));
    else throw new InvalidConfigError(`invalid --detach-keys "${text}": a comma-separated list of ctrl-<letter> or single characters`);
  }
  if (!out.length) throw new InvalidConfigError('invalid --detach-keys "": give at least one key');
  return Buffer.from(out);
}

/**
 * Our terminal on a container's stdio through its monitor: output here, stdin
 * there (interactive), raw mode and window size (tty), our signals to it (not a
 * tty, sig-proxy), and the detach keys, which leave it running. Settles with its
 * exit code, or "detached".
 */
async function attachSession(env: Env, id: string, socket: string, opts: { interactive: boolean; tty: boolean; detachKeys: Buffer; sigProxy?: boolean; onOpen?: () => void }): Promise<number | 'detached'> {
  const api = env.tsnet().api;
  let exitCode: number | undefined;
  let closed!: () => void;
  const done = new Promise<void>((r) => (closed = r));
  let detached = false;
  const stdin = process.stdin;
  const raw = opts.tty && stdin.isTTY;
  const size = () => ({ rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 });
  const c = await AttachClient.open(socket, (e) => {
    if (e.type === 'exit') exitCode = e.code;
    else (e.type === 'stdout' ? process.stdout : process.stderr).write(e.data);
  }, () => closed());
  opts.onOpen?.();
  const cleanups: Array<() => void> = [];
  if (raw) {
    stdin.setRawMode(true);
    cleanups.push(() => stdin.setRawMode(false));
    const resize = () => c.resize(size().rows, size().cols);
    process.on('SIGWINCH', resize);
    cleanups.push(() => process.off('SIGWINCH', resize));
    resize();
  } else if (!opts.tty && opts.sigProxy !== false) {
    // Docker's sig-proxy: our signals go to the container.
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) {
      const h = () => void api.containers.kill([id], sig).catch(() => undefined);
      process.on(sig, h);
      cleanups.push(() => process.off(sig, h));
    }
  }
  if (opts.interactive) {
    // The detach keys are matched across reads; a partial match is held back until it fails.
    let matched = 0;
    const keys = opts.detachKeys;
    const onData = (d: Buffer) => {
      const out: number[] = [];
      for (const b of d) {
        if (b === keys[matched]) {
          matched++;
          if (matched === keys.length) {
            if (out.length) c.write(Buffer.from(out));
            detached = true;
            c.close();
            closed();
            return;
          }
          continue;
        }
        if (matched) out.push(...keys.subarray(0, matched));
        matched = b === keys[0] ? 1 : 0;
        if (!matched) out.push(b);
      }
      if (out.length) c.write(Buffer.from(out));
    };
    const onEnd = () => c.closeStdin();
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    cleanups.push(() => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.pause();
      stdin.unref?.();
    });
  }
  await done;
  for (const f of cleanups) f();
  if (detached) return 'detached';
  return exitCode ?? (await api.containers.wait(id));
}

/**
 * Starts a container with this terminal attached: its output here, our stdin
 * there (-i), a real terminal (-t); its exit code is ours, unless we detach.
 */
async function startAttached(env: Env, id: string, opts: { interactive: boolean; tty: boolean; detachKeys?: string }): Promise<number> {
  const api = env.tsnet().api;
  const detachKeys = parseDetachKeys(opts.detachKeys ?? 'ctrl-p,ctrl-q');
  const raw = opts.tty && process.stdin.isTTY;
  let session: Promise<number | 'detached'> | undefined;
  await api.containers.start(id, {
    winsize: raw ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 } : undefined,
    // The process waits (before exec) until we are attached.
    attach: async (sock) => {
      let opened!: () => void;
      const ready = new Promise<void>((r) => (opened = r));
      session = attachSession(env, id, sock, { ...opts, detachKeys, onOpen: opened });
      await Promise.race([ready, session.then(() => undefined)]);
    },
  });
  const r = await session!;
  if (r === 'detached') return 0;
  // The monitor cleans up after us too; doing it here means --rm is done when we return.
  await api.containers.cleanup(id);
  return r;
}

const PS_LIST: ListSpec = {
  columns: [['ID', 'CONTAINER ID'], ['Image', 'IMAGE'], ['Command', 'COMMAND'], ['RunningFor', 'CREATED'], ['Status', 'STATUS'], ['Ports', 'PORTS'], ['Names', 'NAMES']],
  headers: { ID: 'CONTAINER ID', Image: 'IMAGE', Command: 'COMMAND', CreatedAt: 'CREATED AT', RunningFor: 'CREATED', Status: 'STATUS', State: 'STATE', Ports: 'PORTS', Names: 'NAMES', Networks: 'NETWORKS', Labels: 'LABELS' },
  idField: 'ID',
};
const STATS_LIST: ListSpec = {
  columns: [['ID', 'CONTAINER ID'], ['Name', 'NAME'], ['CPUPerc', 'CPU %'], ['MemUsage', 'MEM USAGE / LIMIT'], ['MemPerc', 'MEM %'], ['NetIO', 'NET I/O'], ['BlockIO', 'BLOCK I/O'], ['PIDs', 'PIDS']],
  headers: { Container: 'CONTAINER', ID: 'CONTAINER ID', Name: 'NAME', CPUPerc: 'CPU %', MemUsage: 'MEM USAGE / LIMIT', MemPerc: 'MEM %', NetIO: 'NET I/O', BlockIO: 'BLOCK I/O', PIDs: 'PIDS' },
  idField: 'ID',
};

/** Docker's %.4g sizes: binary units for memory (MiB), decimal for I/O (kB). */
function sizeG(n: number, binary: boolean): string {
  const base = binary ? 1024 : 1000;
  const units = binary ? ['B', 'KiB', 'MiB', 'GiB', 'TiB'] : ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

function statsRow(x: StatsSample, prev: StatsSample | undefined, noTrunc: boolean): Record<string, string> {
  const wall = prev ? x.at - prev.at : 0;
  const cpu = prev && wall > 0 ? ((x.cpuNs - prev.cpuNs) / wall) * 100 : 0;
  const limit = x.memoryLimit || totalmem();
  const id = noTrunc ? x.id : x.id.slice(0, 12);
  return {
    Container: id, ID: id, Name: x.name,
    CPUPerc: `${Math.max(0, cpu).toFixed(2)}%`,
    MemUsage: `${sizeG(x.memoryUsage, true)} / ${sizeG(limit, true)}`,
    MemPerc: `${((x.memoryUsage / limit) * 100).toFixed(2)}%`,
    NetIO: `${sizeG(x.netRx, false)} / ${sizeG(x.netTx, false)}`,
    BlockIO: `${sizeG(x.blkRead, false)} / ${sizeG(x.blkWrite, false)}`,
    PIDs: String(x.pids),
  };
}

const IMAGES_LIST: ListSpec = {
  columns: [['Repository', 'REPOSITORY'], ['Tag', 'TAG'], ['ID', 'IMAGE ID'], ['CreatedSince', 'CREATED'], ['Size', 'SIZE']],
  headers: { Repository: 'REPOSITORY', Tag: 'TAG', ID: 'IMAGE ID', CreatedSince: 'CREATED', CreatedAt: 'CREATED AT', Size: 'SIZE' },
  idField: 'ID',
};

export function humanSize(n: number): string {
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toPrecision(3)}${u[i]}`;
}

/** Docker's CREATED column: "3 seconds ago". */
const ago = (iso: string) => `${humanDuration(Date.now() - Date.parse(iso))} ago`;

/** Prints each done name; reports each failure; the first failure's exit code (Docker: 1). */
function report(o: { done: string[]; failed: Array<{ ref: string; error: { message: string } }> }, env: Env): number {
  for (const d of o.done) env.out(d);
  for (const f of o.failed) env.err(`Error: ${f.error.message}`);
  return o.failed.length ? 1 : 0;
}

const INSPECT_FORMAT: FlagSpec = { name: 'format', short: 'f', type: 'string', help: "a Go template ('{{.State.Status}}') or json", metavar: 'FMT' };

const run: Command = {
  path: 'run ',
  usage: 'tsnet run [OPTIONS] IMAGE [COMMAND] [ARG...]',
  summary: 'Create and start a container (foreground unless -d)',
  group: 'container',
  minArgs: 1,
  restAfter: 1,
  flags: RUN_FLAGS,
  async run({ flags, positionals, rest }, env) {
    let id: string;
    try {
      await pullFor(env, flags, positionals[0]!);
      ({ id } = await env.tsnet().api.containers.create(runRequest(flags, positionals, rest)));
    } catch (err) {
      return failed(env, err);
    }
    try {
      if (flags.detach) {
        await env.tsnet().api.containers.start(id);
        env.out(id);
        return 0;
      }
      return await startAttached(env, id, { interactive: Boolean(flags.interactive), tty: Boolean(flags.tty), detachKeys: str(flags['detach-keys']) });
    } catch (err) {
      return failed(env, err);
    }
  },
};

const attach: Command = {
  path: 'attach ',
  usage: 'tsnet attach [--no-stdin] [--detach-keys KEYS] [--sig-proxy=false] CONTAINER',
  summary: "Attach this terminal to a running container's stdio (its exit code is ours; the detach keys leave it running)",
  group: 'container',
  minArgs: 1,
  maxArgs: 1,
  flags: [
    { name: 'no-stdin', type: 'bool', help: 'do not attach stdin' },
    DETACH_KEYS,
    { name: 'sig-proxy', type: 'bool', help: 'send our signals to it (default true; not for a tty)' },
  ],
  async run({ flags, positionals }, env) {
    try {
      const api = env.tsnet().api.containers;
      const [c] = (await api.inspect(positionals)) as Array<{ Id: string; Config: { Tty: boolean; OpenStdin: boolean } }>;
      const detachKeys = parseDetachKeys(str(flags['detach-keys']) ?? 'ctrl-p,ctrl-q');
      const sock = await api.attachPath(c!.Id);
      const r = await attachSession(env, c!.Id, sock, { interactive: c!.Config.OpenStdin && !flags['no-stdin'], tty: c!.Config.Tty, detachKeys, sigProxy: flags['sig-proxy'] !== false });
      return r === 'detached' ? 0 : r;
    } catch (err) {
      return failed(env, err);
    }
  },
};

const create: Command = {
  path: 'create ',
  usage: 'tsnet create [OPTIONS] IMAGE [COMMAND] [ARG...]',
  summary: 'Create a container (start it with tsnet start)',
  group: 'container',
  minArgs: 1,
  restAfter: 1,
  flags: RUN_FLAGS.filter((f) => f.name !== 'detach'),
  async run({ flags, positionals, rest }, env) {
    try {
      await pullFor(env, flags, positionals[0]!);
      env.out((await env.tsnet().api.containers.create(runRequest(flags, positionals, rest))).id);
      return 0;
    } catch (err) {
      return failed(env, err);
    }
  },
};

const start: Command = {
  path: 'start ',
  usage: 'tsnet start [OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Start containers (-a: attached, with its exit code)',
  group: 'container',
  minArgs: 1,
  flags: [
    { name: 'attach', short: 'a', type: 'bool', help: 'attach its output and exit with its code' },
    { name: 'interactive', short: 'i', type: 'bool', help: "attach the container's stdin" },
    DETACH_KEYS,
  ],
  async run({ flags, positionals }, env) {
    if (flags.attach) {
      if (positionals.length > 1) throw new InvalidConfigError('you cannot start and attach multiple containers at once');
      try {
        const [c] = (await env.tsnet().api.containers.inspect(positionals)) as Array<{ Id: string; Config: { Tty: boolean; OpenStdin: boolean } }>;
        return await startAttached(env, c!.Id, { interactive: Boolean(flags.interactive) && c!.Config.OpenStdin, tty: c!.Config.Tty, detachKeys: str(flags['detach-keys']) });
      } catch (err) {
        return failed(env, err);
      }
    }
    let code = 0;
    for (const p of positionals) {
      try {
        await env.tsnet().api.containers.start(p);
        env.out(p);
      } catch (err) {
        code = failed(env, err);
      }
    }
    return code;
  },
};

const CONTAINER_COMMANDS_LIST: Command[] = [
  run,
  attach,
  create,
  start,
  {
    path: 'stop ',
    usage: 'tsnet stop [-t SECONDS] CONTAINER [CONTAINER...]',
    summary: 'Stop containers: the stop signal, then SIGKILL after the timeout',
    group: 'container',
    minArgs: 1,
    flags: [{ name: 'time', short: 't', type: 'string', help: 'seconds to wait before SIGKILL (default: the container\'s stop timeout, 10)', metavar: 'SECONDS' }],
    async run({ flags, positionals }, env) {
      const t = str(flags.time);
      if (t !== undefined && !/^-?\d+$/.test(t)) throw new InvalidConfigError(`invalid -t "${t}": a whole number of seconds`);
      return report(await env.tsnet().api.containers.stop(positionals, t === undefined ? undefined : Number(t)), env);
    },
  },
  {
    path: 'kill ',
    usage: 'tsnet kill [-s SIGNAL] CONTAINER [CONTAINER...]',
    summary: 'Send a signal to containers (default SIGKILL)',
    group: 'container',
    minArgs: 1,
    flags: [{ name: 'signal', short: 's', type: 'string', help: 'signal to send', metavar: 'SIG' }],
    async run({ flags, positionals }, env) {
      const sig = parseSignal(str(flags.signal) ?? 'SIGKILL', '--signal');
      return report(await env.tsnet().api.containers.kill(positionals, sig), env);
    },
  },
  {
    path: 'rm ',
    usage: 'tsnet rm [-f] [-v] CONTAINER [CONTAINER...]',
    summary: 'Remove containers (-f: running ones too)',
    group: 'container',
    minArgs: 1,
    flags: [
      { name: 'force', short: 'f', type: 'bool', help: 'kill and remove a running container' },
      { name: 'volumes', short: 'v', type: 'bool', help: 'accepted for Docker compatibility (tsnet has no anonymous volumes)' },
    ],
    async run({ flags, positionals }, env) {
      return report(await env.tsnet().api.containers.remove(positionals, { force: Boolean(flags.force) }), env);
    },
  },
  {
    path: 'ps ',
    usage: 'tsnet ps [OPTIONS]',
    summary: 'List containers (running ones; -a all)',
    group: 'container',
    maxArgs: 0,
    flags: [
      { name: 'all', short: 'a', type: 'bool', help: 'show all containers, not only running ones' },
      { name: 'quiet', short: 'q', type: 'bool', help: 'only IDs' },
      { name: 'filter', short: 'f', type: 'list', help: 'name=, id=, status=, label=', metavar: 'KEY=VALUE' },
      { name: 'format', type: 'string', help: "'table', 'json' or a Go template", metavar: 'FMT' },
      { name: 'no-trunc', type: 'bool', help: 'do not truncate' },
    ],
    async run({ flags }, env) {
      const all = await env.tsnet().api.containers.list({ all: Boolean(flags.all), filters: parseFilterArgs(list(flags.filter)) });
      const id = (x: string) => (flags['no-trunc'] ? x : shortId(x));
      const cmd = (x: string) => (flags['no-trunc'] || x.length <= 20 ? `"${x}"` : `"${x.slice(0, 19)}…"`);
      const rows = all.map((c) => ({
        ID: id(c.id), Image: c.image, Command: cmd(c.command), CreatedAt: c.created, RunningFor: ago(c.created), Status: c.status, State: c.state,
        Ports: c.ports.map((p) => `${portLine(p, true)}->${p.containerPort}/${p.proto}`).join(', '), Names: c.name, Networks: c.networks.join(','),
        Labels: Object.entries(c.labels).map(([k, v]) => `${k}=${v}`).join(','),
      }));
      for (const l of renderList(rows, PS_LIST, { format: str(flags.format), quiet: Boolean(flags.quiet) })) env.out(l);
      return 0;
    },
  },
  {
    path: 'logs ',
    usage: 'tsnet logs [-f] [--tail N] [-t] CONTAINER',
    summary: "Print a container's output (kept by its monitor, json-file)",
    group: 'container',
    minArgs: 1,
    maxArgs: 1,
    flags: [
      { name: 'follow', short: 'f', type: 'bool', help: 'keep printing new output until it exits' },
      { name: 'tail', short: 'n', type: 'string', help: 'only the last N lines ("all")', metavar: 'N' },
      { name: 'timestamps', short: 't', type: 'bool', help: 'prefix each line with its time' },
    ],
    async run({ flags, positionals }, env) {
      const tail = str(flags.tail);
      if (tail !== undefined && tail !== 'all' && !/^\d+$/.test(tail)) throw new InvalidConfigError(`invalid --tail "${tail}": a number of lines or "all"`);
      for await (const r of env.tsnet().api.containers.logs(positionals[0]!, { follow: Boolean(flags.follow), tail: tail === undefined || tail === 'all' ? undefined : Number(tail) })) {
        (r.stream === 'stderr' ? process.stderr : process.stdout).write(flags.timestamps ? `${r.time} ${r.log}` : r.log);
      }
      return 0;
    },
  },
  {
    path: 'inspect ',
    usage: 'tsnet inspect [-f FORMAT] CONTAINER|IMAGE [...]',
    summary: 'Show containers (or images) in detail: the keys of docker inspect',
    group: 'container',
    minArgs: 1,
    flags: [INSPECT_FORMAT, { name: 'type', type: 'string', help: 'container or image', metavar: 'TYPE' }],
    async run({ flags, positionals }, env) {
      const api = env.tsnet().api;
      const type = str(flags.type);
      const out: unknown[] = [];
      let code = 0;
      for (const p of positionals) {
        try {
          if (type === 'image') out.push(...(await api.images.inspect([p])));
          else {
            try {
              out.push(...(await api.containers.inspect([p])));
            } catch (err) {
              if (type === 'container' || asTsnetError(err).code !== 'NOT_FOUND') throw err;
              out.push(...(await api.images.inspect([p])));
            }
          }
        } catch {
          env.err(`Error: No such object: ${p}`);
          code = 1;
        }
      }
      for (const l of renderInspect(out, str(flags.format))) env.out(l);
      return code;
    },
  },
  {
    path: 'wait ',
    usage: 'tsnet wait CONTAINER [CONTAINER...]',
    summary: 'Wait for containers to exit and print their exit codes',
    group: 'container',
    minArgs: 1,
    flags: [],
    async run({ positionals }, env) {
      for (const p of positionals) env.out(String(await env.tsnet().api.containers.wait(p)));
      return 0;
    },
  },
  {
    path: 'exec ',
    usage: 'tsnet exec [OPTIONS] CONTAINER COMMAND [ARG...]',
    summary: "Run a command in a running container (every namespace and the cgroup of it)",
    group: 'container',
    minArgs: 1,
    restAfter: 1,
    flags: [
      { name: 'interactive', short: 'i', type: 'bool', help: 'keep stdin open' },
      { name: 'tty', short: 't', type: 'bool', help: 'use this terminal' },
      { name: 'detach', short: 'd', type: 'bool', help: 'run it in the background' },
      { name: 'env', short: 'e', type: 'list', help: 'KEY=VALUE', metavar: 'KEY=VALUE' },
      { name: 'user', short: 'u', type: 'string', help: 'NAME|UID[:GROUP|GID]', metavar: 'USER' },
      { name: 'workdir', short: 'w', type: 'string', help: 'working directory', metavar: 'DIR' },
    ],
    async run({ flags, positionals, rest }, env) {
      let plan: { argv: string[]; done: () => void };
      try {
        if (!rest.length) throw new InvalidConfigError('exec needs a command to run');
        plan = await env.tsnet().api.containers.execPlan(positionals[0]!, { cmd: rest, env: parseEnv(list(flags.env), '-e', process.env), user: str(flags.user), workdir: str(flags.workdir) });
      } catch (err) {
        return failed(env, err);
      }
      const stdin = flags.interactive ? 'inherit' : 'ignore';
      if (flags.detach) {
        const child = spawn(plan.argv[0]!, plan.argv.slice(1), { stdio: 'ignore', detached: true });
        child.unref();
        // The plan stays until the helper has read it.
        await new Promise((r) => setTimeout(r, 50));
        return 0;
      }
      return new Promise((resolveExit) => {
        const child = spawn(plan.argv[0]!, plan.argv.slice(1), { stdio: [stdin, 'inherit', 'inherit'] });
        const fwd = (sig: NodeJS.Signals) => () => child.kill(sig);
        const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, fwd(s)] as const);
        for (const [s, h] of handlers) process.on(s, h);
        child.on('close', (code, sig) => {
          for (const [s, h] of handlers) process.off(s, h);
          plan.done();
          resolveExit(code ?? 128 + (sig ? osConstants.signals[sig] : 0));
        });
        child.on('error', (err) => {
          plan.done();
          resolveExit(failed(env, err));
        });
      });
    },
  },
  {
    path: 'top ',
    usage: 'tsnet top CONTAINER',
    summary: 'The processes of a container',
    group: 'container',
    minArgs: 1,
    maxArgs: 1,
    flags: [],
    async run({ positionals }, env) {
      const ps = await env.tsnet().api.containers.top(positionals[0]!);
      env.out(table(['PID', 'CMD'], ps.map((p) => [String(p.pid), p.cmd])));
      return 0;
    },
  },
  {
    path: 'stats ',
    usage: 'tsnet stats [-a] [--no-stream] [--format FMT] [CONTAINER...]',
    summary: "Containers' CPU, memory, network and block I/O, and processes (every second until ^C)",
    group: 'container',
    flags: [
      { name: 'all', short: 'a', type: 'bool', help: 'stopped containers too' },
      { name: 'no-stream', type: 'bool', help: 'one sample and exit' },
      { name: 'no-trunc', type: 'bool', help: 'full IDs' },
      { name: 'format', type: 'string', help: "'table', 'json' or a Go template", metavar: 'FMT' },
    ],
    async run({ flags, positionals }, env) {
      const api = env.tsnet().api.containers;
      const sample = () => api.stats(positionals, { all: Boolean(flags.all) });
      const tty = process.stdout.isTTY && !flags['no-stream'];
      let prev = new Map((await sample()).map((x) => [x.id, x]));
      for (;;) {
        // CPU % over the last second, as Docker computes it.
        await new Promise((r) => setTimeout(r, 1000));
        const cur = await sample();
        const rows = cur.map((x) => statsRow(x, prev.get(x.id), Boolean(flags['no-trunc'])));
        if (tty) process.stdout.write('\x1b[2J\x1b[H');
        for (const l of renderList(rows, STATS_LIST, { format: str(flags.format) })) env.out(l);
        if (flags['no-stream']) return 0;
        prev = new Map(cur.map((x) => [x.id, x]));
      }
    },
  },
  {
    path: 'container prune',
    usage: 'tsnet container prune [-f]',
    summary: 'Remove every stopped container',
    maxArgs: 0,
    flags: [{ name: 'force', short: 'f', type: 'bool', help: 'do not ask (tsnet never asks)' }],
    async run(_a, env) {
      const gone = await env.tsnet().api.containers.prune();
      env.out(['Deleted Containers:', ...gone, '', `Total reclaimed space: 0B`].join('\n'));
      return 0;
    },
  },
  {
    path: 'container cleanup',
    usage: 'tsnet container cleanup ID',
    summary: "Record a container's exit and release what it held (its monitor runs this)",
    hidden: true,
    minArgs: 1,
    maxArgs: 1,
    flags: [],
    async run({ positionals }, env) {
      await env.tsnet().api.containers.cleanup(positionals[0]!);
      return 0;
    },
  },
  // ---------------------------------------------------------------- images
  {
    path: 'image import',
    usage: 'tsnet image import [-c CHANGE] FILE|- [NAME[:TAG]]',
    summary: 'Make a one-layer image from a root filesystem tarball (tar, tar.gz or tar.zst; - reads stdin)',
    minArgs: 1,
    maxArgs: 2,
    flags: [{ name: 'change', short: 'c', type: 'list', help: 'Dockerfile instruction: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR (repeatable)', metavar: 'INSTR' }],
    async run({ flags, positionals }, env) {
      const changes = parseChanges(list(flags.change));
      const src = positionals[0] === '-' ? process.stdin : positionals[0]!;
      const im = await env.tsnet().api.images.import(src, positionals[1], changes);
      env.out(im.id);
      return 0;
    },
  },
  {
    path: 'image load',
    usage: 'tsnet image load [-i ARCHIVE] [< ARCHIVE]',
    summary: 'Load images from a docker save archive or an OCI image layout (tar, tar.gz or directory; stdin without -i)',
    maxArgs: 0,
    flags: [
      { name: 'input', short: 'i', type: 'string', help: 'the archive (or OCI layout directory); default stdin', metavar: 'PATH' },
      { name: 'quiet', short: 'q', type: 'bool', help: 'accepted for Docker compatibility' },
    ],
    async run({ flags }, env) {
      const input = str(flags.input);
      if (!input && process.stdin.isTTY) throw new InvalidConfigError('requested load from stdin, but stdin is a terminal: give -i ARCHIVE or redirect a file in');
      for (const l of await env.tsnet().api.images.load(input ?? process.stdin)) {
        if (l.tags.length) for (const t of l.tags) env.out(`Loaded image: ${t}`);
        else env.out(`Loaded image ID: ${l.image.id}`);
      }
      return 0;
    },
  },
  {
    path: 'image pull',
    usage: 'tsnet image pull [--insecure] [-q] NAME[:TAG|@DIGEST]',
    summary: 'Pull an image from a registry (OCI distribution API; HTTPS, or HTTP for loopback and --insecure)',
    minArgs: 1,
    maxArgs: 1,
    flags: [
      { name: 'insecure', type: 'bool', help: 'allow plain HTTP (and fall back to it when HTTPS fails)' },
      { name: 'quiet', short: 'q', type: 'bool', help: 'print only the image name' },
      { name: 'platform', type: 'string', help: `linux/${goArch()} (this machine's) only`, metavar: 'OS/ARCH' },
    ],
    async run({ flags, positionals }, env) {
      const platform = str(flags.platform);
      const here = `linux/${goArch()}`;
      if (platform && platform !== here) throw new InvalidConfigError(`--platform ${platform}: only ${here}, this machine's, is supported`);
      const r = await env.tsnet().api.images.pull(positionals[0]!, { insecure: Boolean(flags.insecure) }, flags.quiet ? undefined : (l) => env.out(l));
      env.out(r.ref);
      return 0;
    },
  },
  {
    path: 'image save',
    usage: 'tsnet image save [-o FILE] IMAGE [IMAGE...]',
    summary: 'Write images as one tar (an OCI image layout that docker load also reads); stdout without -o',
    minArgs: 1,
    flags: [{ name: 'output', short: 'o', type: 'string', help: 'write to FILE (made whole, then renamed into place)', metavar: 'FILE' }],
    async run({ flags, positionals }, env) {
      const output = str(flags.output);
      if (!output) {
        if (process.stdout.isTTY) throw new InvalidConfigError('cowardly refusing to save to a terminal: use -o FILE or redirect stdout');
        await env.tsnet().api.images.save(positionals, process.stdout);
        return 0;
      }
      const tmp = `${output}.tmp-${process.pid}`;
      try {
        await env.tsnet().api.images.save(positionals, createWriteStream(tmp, { mode: 0o644 }));
        renameSync(tmp, output);
      } catch (err) {
        rmSync(tmp, { force: true });
        throw err;
      }
      return 0;
    },
  },
  {
    path: 'image ls',
    usage: 'tsnet image ls [OPTIONS]',
    summary: 'List images',
    maxArgs: 0,
    flags: [
      { name: 'quiet', short: 'q', type: 'bool', help: 'only IDs' },
      { name: 'format', type: 'string', help: "'table', 'json' or a Go template", metavar: 'FMT' },
      { name: 'no-trunc', type: 'bool', help: 'full IDs' },
    ],
    async run({ flags }, env) {
      const rows = (await env.tsnet().api.images.list()).flatMap((im) => {
        const id = flags['no-trunc'] ? im.id : im.id.slice(7, 19);
        const base = { ID: id, CreatedAt: im.created, CreatedSince: ago(im.created), Size: humanSize(im.size) };
        if (!im.repoTags.length) return [{ ...base, Repository: '<none>', Tag: '<none>' }];
        return im.repoTags.map((t) => ({ ...base, Repository: t.slice(0, t.lastIndexOf(':')), Tag: t.slice(t.lastIndexOf(':') + 1) }));
      });
      for (const l of renderList(rows, IMAGES_LIST, { format: str(flags.format), quiet: Boolean(flags.quiet) })) env.out(l);
      return 0;
    },
  },
  {
    path: 'image inspect',
    usage: 'tsnet image inspect [-f FORMAT] IMAGE [IMAGE...]',
    summary: 'Show images in detail',
    minArgs: 1,
    flags: [INSPECT_FORMAT],
    async run({ flags, positionals }, env) {
      for (const l of renderInspect(await env.tsnet().api.images.inspect(positionals), str(flags.format))) env.out(l);
      return 0;
    },
  },
  {
    path: 'image rm',
    usage: 'tsnet image rm [-f] IMAGE [IMAGE...]',
    summary: 'Remove images (a tag of an image with others only untags)',
    minArgs: 1,
    flags: [{ name: 'force', short: 'f', type: 'bool', help: 'remove an image with several tags by ID' }],
    async run({ flags, positionals }, env) {
      const r = await env.tsnet().api.images.remove(positionals, { force: Boolean(flags.force) });
      for (const l of r.lines) env.out(l);
      for (const f of r.failed) env.err(`Error: ${f.error.message}`);
      return r.failed.length ? 1 : 0;
    },
  },
  {
    path: 'image tag',
    usage: 'tsnet image tag SOURCE TARGET',
    summary: 'Give an image another name',
    minArgs: 2,
    maxArgs: 2,
    flags: [],
    async run({ positionals }, env) {
      await env.tsnet().api.images.tag(positionals[0]!, positionals[1]!);
      return 0;
    },
  },
];

/** A second name for a command (Docker's `images` for `image ls`, `container ls` for `ps`). */
const alias = (path: string, to: string): Command => {
  const c = CONTAINER_COMMANDS_LIST.find((x) => x.path === to)!;
  return { ...c, path, hidden: true };
};

export const CONTAINER_COMMANDS: Command[] = [
  ...CONTAINER_COMMANDS_LIST,
  alias('images ', 'image ls'),
  alias('rmi ', 'image rm'),
  alias('tag ', 'image tag'),
  alias('load ', 'image load'),
  alias('pull ', 'image pull'),
  alias('save ', 'image save'),
  alias('import ', 'image import'),
  alias('container ls', 'ps '),
  alias('container run', 'run '),
  alias('container create', 'create '),
  alias('container start', 'start '),
  alias('container stop', 'stop '),
  alias('container kill', 'kill '),
  alias('container rm', 'rm '),
  alias('container logs', 'logs '),
  alias('container inspect', 'inspect '),
  alias('container wait', 'wait '),
  alias('container exec', 'exec '),
  alias('container top', 'top '),
  alias('container stats', 'stats '),
  alias('container attach', 'attach '),
];
