// Throwaway "host" network namespaces for integration tests. Each TestHost is
// its own namespace with its own tsnet root and run directory; the tsnet CLI runs
// inside it (nsenter --net, so the mount namespace and our namespace pins are the
// real ones), and destroy() removes everything it made.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const TSNET_BIN = join(REPO, 'bin', 'tsnet.js');

export const isRoot = process.getuid?.() === 0;

/** Polls cond every 20 ms until it holds or timeoutMs passes; whether it held (never a fixed sleep). */
export async function pollUntil(cond: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** A process that has exited (a zombie counts: this VM's pid 1 does not reap orphans). */
export function processGone(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}
export function missingTools(...tools: string[]): string[] {
  return tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
}
/** The reason to skip a root-only integration test here, or false. */
export function skipReason(...tools: string[]): string | false {
  if (!isRoot) return 'needs root (network namespaces)';
  const missing = missingTools('ip', 'nsenter', 'iptables-save', ...tools);
  return missing.length ? `missing tools: ${missing.join(', ')} (CI installs them)` : false;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runSync(argv: string[], input?: string): RunResult {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', input });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function must(argv: string[]): string {
  const r = runSync(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/**
 * Runs `tsnet cni install --bin-dir BIN` with RUN as the plugins' run directory (their
 * locks, server sockets and marks), so plugin tests never use the host's /run/tsnet.
 */
export function installCni(bin: string, run: string, extra: string[] = []): RunResult {
  const r = spawnSync(process.execPath, [TSNET_BIN, '--run-dir', run, 'cni', 'install', '--bin-dir', bin, ...extra], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Kills every process left inside a network namespace (a CNI server the plugins
 * started there, a proxy): they would keep the namespace alive after `ip netns del`. */
export function killProcessesIn(nsPath: string): void {
  let ino: number;
  try {
    ino = statSync(nsPath).ino;
  } catch {
    return;
  }
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (statSync(`/proc/${pid}/ns/net`).ino === ino && Number(pid) !== process.pid) process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
}

/** A bare throwaway "host" namespace for plugin tests: what the plugins (and the CNI
 * server they start) run in; done() kills what is left inside and deletes it. */
export function throwawayNamespace(): { name: string; path: string; enter: (argv: string[]) => string[]; done: () => void } {
  const name = `tsnet-t-${randomBytes(4).toString('hex')}`;
  must(['ip', 'netns', 'add', name]);
  must(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  const path = `/run/netns/${name}`;
  return {
    name,
    path,
    enter: (argv) => ['nsenter', `--net=${path}`, '--', ...argv],
    done: () => {
      killProcessesIn(path);
      spawnSync('ip', ['netns', 'del', name]);
    },
  };
}

export class TestHost {
  readonly name: string;
  readonly nsPath: string;
  readonly dir: string;
  readonly root: string;
  readonly runDir: string;
  private readonly extraNs: string[] = [];
  /** A private mount namespace the CLI runs in (runtime tests): its mounts never reach the real host. */
  mountNs?: string;
  /** Extra environment for every tsnet run (a test's own cgroup parent). */
  extraEnv: Record<string, string> = {};

  private constructor(readonly firewall: string) {
    this.name = `tsnet-t-${randomBytes(4).toString('hex')}`;
    this.nsPath = `/run/netns/${this.name}`;
    this.dir = mkdtempSync(join(tmpdir(), 'tsnet-t-'));
    this.root = join(this.dir, 'root');
    this.runDir = join(this.dir, 'run');
  }

  static create(opts: { firewall?: string } = {}): TestHost {
    const h = new TestHost(opts.firewall ?? 'iptables');
    must(['ip', 'netns', 'add', h.name]);
    must(['ip', '-n', h.name, 'link', 'set', 'lo', 'up']);
    return h;
  }

  private env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { ...process.env, NODE_EXTRA_CA_CERTS: '', TSNET_ROOT: this.root, TSNET_RUN: this.runDir, TSNET_FIREWALL: this.firewall, ...this.extraEnv, ...extra };
  }

  /** Runs the tsnet CLI inside this host. */
  tsnet(args: string[], env: Record<string, string> = {}, opts: { input?: Buffer } = {}): RunResult {
    const r = spawnSync('nsenter', [...this.enterArgs(), '--', process.execPath, TSNET_BIN, ...args], { encoding: 'utf8', env: this.env(env), input: opts.input, maxBuffer: 64 << 20 });
    return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /** Runs tsnet and throws unless it succeeds; returns stdout trimmed. */
  ok(args: string[]): string {
    const r = this.tsnet(args);
    if (r.code !== 0) throw new Error(`tsnet ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Starts tsnet in the background (for kill tests). */
  spawnTsnet(args: string[], env: Record<string, string> = {}) {
    return spawn('nsenter', [...this.enterArgs(), '--', process.execPath, TSNET_BIN, ...args], { env: this.env(env), stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** nsenter's arguments that enter this host (its network namespace, and its mount namespace when it has one). */
  enterArgs(): string[] {
    return [`--net=${this.nsPath}`, ...(this.mountNs ? [`--mount=${this.mountNs}`] : [])];
  }

  /** A command in the host namespace. */
  sh(...argv: string[]): RunResult {
    return runSync(['nsenter', ...this.enterArgs(), '--', ...argv]);
  }

  /** A command inside a sandbox's namespace, by sandbox name (tsnet-created pins). */
  inSandbox(sandbox: string, ...argv: string[]): RunResult {
    const pin = join(this.runDir, 'netns', sandbox);
    // The pin is a mount of the private mount namespace, when there is one: enter that first.
    if (this.mountNs) return runSync(['nsenter', `--mount=${this.mountNs}`, '--', 'nsenter', `--net=${pin}`, '--', ...argv]);
    return runSync(['nsenter', `--net=${pin}`, '--', ...argv]);
  }

  inNs(path: string, ...argv: string[]): RunResult {
    return runSync(['nsenter', `--net=${path}`, '--', ...argv]);
  }

  ping(sandbox: string, addr: string): boolean {
    return this.inSandbox(sandbox, 'ping', addr.includes(':') ? '-6' : '-4', '-c', '1', '-W', '1', addr).code === 0;
  }

  inspect(kind: 'network' | 'sandbox', name: string): any {
    return JSON.parse(this.ok([kind, 'inspect', name]))[0];
  }

  /** Makes a namespace "outside" joined to this host by a veth pair (host 198.51.100.1, outside 198.51.100.2). */
  addOutside(): string {
    const out = `${this.name}-o`;
    must(['ip', 'netns', 'add', out]);
    this.extraNs.push(out);
    must(['ip', '-n', out, 'link', 'set', 'lo', 'up']);
    must(['ip', '-n', this.name, 'link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    must(['ip', '-n', this.name, 'addr', 'add', '198.51.100.1/24', 'dev', 'uplink0']);
    must(['ip', '-n', this.name, 'link', 'set', 'uplink0', 'up']);
    must(['ip', '-n', out, 'addr', 'add', '198.51.100.2/24', 'dev', 'eth0']);
    must(['ip', '-n', out, 'link', 'set', 'eth0', 'up']);
    must(['ip', '-n', this.name, 'route', 'add', 'default', 'via', '198.51.100.2']);
    return `/run/netns/${out}`;
  }

  /** Makes an extra namespace the test owns (for --netns). */
  addNamespace(): string {
    const n = `${this.name}-x${this.extraNs.length}`;
    must(['ip', 'netns', 'add', n]);
    this.extraNs.push(n);
    return `/run/netns/${n}`;
  }

  links(): string[] {
    return this.sh('ip', '-o', 'link', 'show').stdout.split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().split('@')[0]!);
  }

  iptables(): string {
    return this.sh('iptables-save').stdout.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
  }

  /** The userland proxy's pid, if one runs for this host. */
  proxyPid(): number | undefined {
    try {
      return Number(readFileSync(join(this.runDir, 'proxy.sock.pid'), 'utf8')) || undefined;
    } catch {
      return undefined;
    }
  }

  destroy(): void {
    // The keeper first: it would start a killed proxy again.
    for (const f of ['proxy.keeper.pid', 'proxy.sock.pid']) {
      try {
        spawnSync('kill', ['-9', readFileSync(join(this.runDir, f), 'utf8').trim()]);
      } catch {
        /* none ran */
      }
    }
    const pins = join(this.runDir, 'netns');
    if (existsSync(pins)) {
      for (const p of readdirSync(pins)) spawnSync('umount', ['-l', join(pins, p)]);
    }
    killProcessesIn(this.nsPath);
    for (const n of this.extraNs) spawnSync('ip', ['netns', 'del', n]);
    spawnSync('ip', ['netns', 'del', this.name]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs body with a fresh TestHost and always destroys it. */
export async function withHost<T>(body: (h: TestHost) => Promise<T> | T, opts: { firewall?: string } = {}): Promise<T> {
  const h = TestHost.create(opts);
  try {
    return await body(h);
  } finally {
    h.destroy();
  }
}
