// The runc-compatible runtime: containers from OCI bundles, with runc's life cycle
// (create leaves the process waiting; start lets it exec; kill; delete) and runc's
// state JSON. No monitor stays: the container's init is the child of whoever ran
// `create` (containerd's shim, conmon), as runc's is. State lives in ROOT/ID
// (runc's --root; default /run/tsnet/runtime): state.json and the plan.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readlinkSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { FileOps } from '../../system/kernel.js';
import type { Logger } from '../../log.js';
import { AlreadyExistsError, ConflictError, InvalidConfigError, NotFoundError, TsnetError, UnsupportedError } from '../../errors.js';
import { faultPoint } from '../../fault.js';
import type { CgroupManager, ContainerCgroup } from '../cgroups.js';
import { renderContainerPlan, renderExecPlan, type ExecPlan, type ProcessPlan } from '../plan.js';
import { ContainerStartError } from '../monitor.js';
import { alive, ownBoundingSet, processStart } from '../proc.js';
import { parseSignal, signalNumber } from '../spec.js';
import { planFromSpec, readSpec, type HookStage, type OciHook } from './config.js';

export type OciStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

/** runc's `state` output. */
export interface OciState {
  ociVersion: string;
  id: string;
  pid: number;
  status: OciStatus;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations?: Record<string, string>;
}

/** What ROOT/ID/state.json holds. */
interface Record_ {
  id: string;
  ociVersion: string;
  bundle: string;
  rootfs: string;
  created: string;
  annotations: Record<string, string>;
  phase: 'creating' | 'created' | 'started';
  /** The tsnet that is creating it (a crash mid-create shows as stopped). */
  creator: { pid: number; start?: number };
  pid: number;
  pidStart?: number;
  /** The fd in the init that start writes its byte to. */
  startFd?: number;
  cgroup: ContainerCgroup;
  ownPidNamespace: boolean;
  hooks: Partial<Record<HookStage, OciHook[]>>;
  /** The config's process, for exec to start from. */
  process: ProcessPlan;
}

/** A create helper at work: its sync lines, and how it ends. */
export interface HelperRun {
  lines: { next(): Promise<string | undefined> };
  send(line: string): void;
  /** The helper's exit code; in the foreground, the container's. */
  exited: Promise<number>;
  kill(): void;
}

/**
 * Where the native helper runs: here, as a child of this process (the Node CLI),
 * or in the native tsnet-runc client that asked a warm server (the container must
 * be the caller's child).
 */
export interface Helpers {
  create(planPath: string, planText: string, o: { stdio: 'inherit' | 'ignore'; foreground: boolean }): HelperRun;
  /** Runs an exec plan: its exit code, or HANDED_OFF when the client runs it itself. */
  exec(planPath: string, planText: string): Promise<number>;
}
export const HANDED_OFF = -1;

/** The helper as a child of this process (tsnet-monitor create|exec PLAN). */
export function localHelpers(bin: string): Helpers {
  return {
    create(planPath, _text, o) {
      const child = spawn(bin, ['create', planPath], { stdio: [o.stdio, o.stdio, o.stdio, 'pipe'] });
      child.on('error', () => undefined);
      const exited = new Promise<number>((res) => child.on('exit', (code, sig) => res(code ?? 128 + (sig ? signalNumber(sig) : 0))));
      const sync = child.stdio[3] as Readable & Writable;
      sync.on('error', () => undefined);
      return { lines: lineReader(sync), send: (l) => sync.write(l), exited, kill: () => child.kill('SIGKILL') };
    },
    exec(planPath) {
      return new Promise<number>((res, rej) => {
        const child = spawn(bin, ['exec', planPath], { stdio: 'inherit' });
        child.on('error', rej);
        const fwd = (s: NodeJS.Signals) => child.kill(s);
        for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, fwd);
        child.on('exit', (code, sig) => {
          for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, fwd);
          res(code ?? 128 + (sig ? signalNumber(sig) : 0));
        });
      });
    },
  };
}

export interface OciDeps {
  root: string;
  files: FileOps;
  cgroups: CgroupManager;
  helpers: Helpers;
  log: Logger;
  /** Where warnings the user must see go (a failed poststart hook). */
  warn?: (message: string) => void;
}

const ID = /^[\w+.-]+$/;
export function validateId(id: string): void {
  if (!ID.test(id) || id.length > 1024 || id === '.' || id === '..') throw new InvalidConfigError(`invalid container id "${id}": letters, digits, _ + - . only`);
}

export class OciRuntime {
  constructor(private readonly d: OciDeps) {}

  private dir(id: string): string {
    return join(this.d.root, id);
  }

  private read(id: string): Record_ {
    validateId(id);
    const text = this.d.files.read(join(this.dir(id), 'state.json'));
    if (text === undefined) {
      if (existsSync(this.dir(id))) {
        // A create that died before its first write: nothing but the directory.
        return { id, phase: 'creating', creator: { pid: 0 }, pid: 0, ociVersion: '1.2.0', bundle: '', rootfs: '', created: new Date(0).toISOString(), annotations: {}, cgroup: { version: 1, dirs: [], byController: {} }, ownPidNamespace: true, hooks: {}, process: emptyProcess() };
      }
      throw new NotFoundError(`container does not exist: ${id}`);
    }
    return JSON.parse(text, (k, v) => (typeof v === 'string' && /^0x[0-9a-f]+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as Record_;
  }

  private write(r: Record_): void {
    const text = JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}n` : v));
    this.d.files.replace(join(this.dir(r.id), 'state.json'), text, { mode: 0o600 });
  }

  status(r: Record_): OciStatus {
    if (r.phase === 'creating') return alive(r.creator.pid, r.creator.start) ? 'creating' : 'stopped';
    if (!alive(r.pid, r.pidStart)) return 'stopped';
    if (r.phase === 'created') return 'created';
    return r.cgroup.dirs.length && this.d.cgroups.frozen(r.cgroup) ? 'paused' : 'running';
  }

  view(r: Record_): OciState {
    const status = this.status(r);
    const s: OciState = { ociVersion: r.ociVersion, id: r.id, pid: status === 'stopped' ? 0 : r.pid, status, bundle: r.bundle, rootfs: r.rootfs, created: r.created, owner: '' };
    if (Object.keys(r.annotations).length) s.annotations = r.annotations;
    return s;
  }

  state(id: string): OciState {
    return this.view(this.read(id));
  }

  list(): OciState[] {
    if (!existsSync(this.d.root)) return [];
    return readdirSync(this.d.root, { withFileTypes: true })
      .filter((e) => e.isDirectory() && ID.test(e.name))
      .map((e) => e.name)
      .flatMap((n) => {
        try {
          return [this.state(n)];
        } catch {
          return [];
        }
      });
  }

  /**
   * runc create: the process set up and waiting for start. foreground: runc run
   * without -d; the promise in `exit` settles with the container's exit code.
   */
  async create(id: string, o: { bundle: string; pidFile?: string; consoleSocket?: string; foreground?: boolean; stdio?: 'inherit' | 'ignore' }): Promise<{ pid: number; exit?: Promise<number> }> {
    validateId(id);
    const spec = readSpec(o.bundle);
    const cgl = this.d.cgroups.layout();
    const oci = planFromSpec(spec, { id, bundle: o.bundle, cgroups: { version: cgl.version, hierarchies: this.d.cgroups.hierarchies() }, consoleSocket: o.consoleSocket, foreground: o.foreground, ownCaps: ownBoundingSet() });
    if (oci.hooks.createContainer?.length || oci.hooks.startContainer?.length) throw new UnsupportedError('config.json: createContainer and startContainer hooks (run inside the container) are not supported by tsnet yet');
    mkdirSync(this.d.root, { recursive: true, mode: 0o711 });
    try {
      mkdirSync(this.dir(id), { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`container with id exists: ${id}`);
      throw err;
    }
    const cg = this.d.cgroups.paths(dirname(oci.cgroupPath), basename(oci.cgroupPath));
    const r: Record_ = {
      id, ociVersion: oci.ociVersion, bundle: o.bundle, rootfs: oci.rootfs, created: new Date().toISOString(), annotations: oci.annotations,
      phase: 'creating', creator: { pid: process.pid, start: processStart(process.pid) }, pid: 0, cgroup: cg, ownPidNamespace: oci.ownPidNamespace, hooks: oci.hooks,
      process: { rlimits: oci.plan.rlimits, caps: oci.plan.caps, user: oci.plan.user, cwd: oci.plan.cwd, env: oci.plan.env, args: oci.plan.args, noNewPrivileges: oci.plan.noNewPrivileges, seccomp: oci.plan.seccomp, umask: oci.plan.umask },
    };
    let helper: HelperRun | undefined;
    try {
      this.write(r);
      faultPoint('oci-create:after-record');
      this.d.cgroups.create(dirname(oci.cgroupPath), basename(oci.cgroupPath), oci.resources);
      oci.plan.cgroups = cg.dirs;
      const planPath = join(this.dir(id), 'plan');
      const planText = renderContainerPlan(oci.plan);
      this.d.files.write(planPath, planText, { mode: 0o600 });
      faultPoint('oci-create:before-helper');
      helper = this.d.helpers.create(planPath, planText, { stdio: o.stdio ?? 'inherit', foreground: Boolean(o.foreground) });
      const { lines, exited } = helper;
      const first = await lines.next();
      const pidLine = /^pid (\d+)$/.exec(first ?? '');
      if (!pidLine) throw startError(first, 'the helper exited before the container was made');
      r.pid = Number(pidLine[1]);
      r.pidStart = processStart(r.pid);
      this.write(r);
      await this.runHooks(r, 'prestart', true);
      await this.runHooks(r, 'createRuntime', true);
      helper.send('go\n');
      const second = await lines.next();
      const created = /^created (\d+)$/.exec(second ?? '');
      if (!created) throw startError(second, 'the helper exited before the container was ready');
      r.startFd = Number(created[1]);
      r.phase = 'created';
      this.write(r);
      if (o.pidFile) this.d.files.replace(o.pidFile, String(r.pid), { mode: 0o644 });
      if (!o.foreground) await exited;
      return { pid: r.pid, exit: o.foreground ? exited : undefined };
    } catch (err) {
      helper?.kill();
      if (r.pid) {
        try {
          process.kill(r.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await this.d.cgroups.destroy(cg).catch(() => undefined);
      rmSync(this.dir(id), { recursive: true, force: true });
      throw err;
    }
  }

  /** runc start: lets a created container's process exec. */
  async start(id: string): Promise<void> {
    const r = this.read(id);
    const status = this.status(r);
    if (status === 'stopped') throw new ConflictError(`cannot start a container that has stopped: ${id}`);
    if (status !== 'created') throw new ConflictError(`cannot start a container in the ${status} state: ${id}`);
    const fdPath = `/proc/${r.pid}/fd/${r.startFd}`;
    // The init's own pipe, and nothing else (a reused pid would not have it).
    if (!/^pipe:/.test(readlinkSafe(fdPath))) throw new ConflictError(`container ${id}: its process is not waiting to start`);
    const fd = openSync(fdPath, 'w');
    try {
      writeSync(fd, Buffer.from([1]));
    } finally {
      closeSync(fd);
    }
    r.phase = 'started';
    this.write(r);
    await this.runHooks(r, 'poststart', false);
  }

  async kill(id: string, signal = 'SIGTERM', all = false): Promise<void> {
    const r = this.read(id);
    const sig = parseSignal(signal);
    const status = this.status(r);
    if (status === 'stopped' || status === 'creating') throw new ConflictError(`container not running: ${id}`);
    for (const p of all ? this.d.cgroups.pids(r.cgroup) : [r.pid]) {
      try {
        process.kill(p, sig as NodeJS.Signals);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
  }

  /** runc delete: a stopped (or created) container goes; a running one only with force. */
  async delete(id: string, force = false): Promise<void> {
    let r: Record_;
    try {
      r = this.read(id);
    } catch (err) {
      if (force && err instanceof NotFoundError) return;
      throw err;
    }
    const status = this.status(r);
    if ((status === 'running' || status === 'paused' || status === 'creating') && !force) throw new ConflictError(`cannot delete container ${id} that is not stopped: ${status}`);
    if (status !== 'stopped' && alive(r.pid, r.pidStart)) {
      try {
        process.kill(r.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    faultPoint('oci-delete:after-kill');
    // Everything still in its cgroup (a shared pid namespace leaves them running).
    if (r.cgroup.dirs.length) await this.d.cgroups.destroy(r.cgroup);
    if (r.pid) await this.runHooks(r, 'poststop', false);
    rmSync(this.dir(id), { recursive: true, force: true });
  }

  ps(id: string): number[] {
    const r = this.read(id);
    return this.status(r) === 'stopped' ? [] : this.d.cgroups.pids(r.cgroup);
  }

  async pause(id: string, on: boolean): Promise<void> {
    const r = this.read(id);
    const status = this.status(r);
    if (on && status !== 'running') throw new ConflictError(`container not running: ${id} is ${status}`);
    if (!on && status !== 'paused') throw new ConflictError(`container not paused: ${id} is ${status}`);
    await this.d.cgroups.freeze(r.cgroup, on);
  }

  /**
   * runc exec: a process in a running container's namespaces and cgroup, from the
   * config's process with overrides (a process.json or flags). Returns its exit
   * code, or 0 once it runs with detach.
   */
  async exec(id: string, p: Partial<ProcessPlan> & { pidFile?: string; detach?: boolean; consoleSocket?: string; winsize?: { rows: number; cols: number } }): Promise<number> {
    const r = this.read(id);
    const status = this.status(r);
    if (status !== 'running') throw new ConflictError(`cannot exec in a container that is ${status}: ${id}`);
    if (!p.args?.length) throw new InvalidConfigError('exec: no command given');
    const plan: ExecPlan = { ...r.process, ...stripUndefined(p), join: r.pid, cgroups: r.cgroup.dirs } as ExecPlan;
    const planPath = join(this.dir(id), `exec-${process.pid}-${Date.now()}`);
    const planText = renderExecPlan(plan);
    this.d.files.write(planPath, planText, { mode: 0o600 });
    try {
      return await this.d.helpers.exec(planPath, planText);
    } finally {
      rmSync(planPath, { force: true });
    }
  }

  /** Runs a stage's hooks with the state on stdin; a failure is an error where the spec says so, else a warning. */
  private async runHooks(r: Record_, stage: HookStage, fatal: boolean): Promise<void> {
    for (const h of r.hooks[stage] ?? []) {
      const state = JSON.stringify({ ...this.view(r), status: stage === 'poststop' ? 'stopped' : stage === 'poststart' ? 'running' : 'creating' });
      try {
        await runHook(h, state);
      } catch (err) {
        if (fatal) throw new TsnetError('COMMAND', `${stage} hook ${h.path} failed: ${(err as Error).message}`);
        this.d.log.warn({ hook: h.path, stage, err: (err as Error).message }, `${stage} hook failed`);
        (this.d.warn ?? ((m: string) => process.stderr.write(`${m}\n`)))(`Warning: ${stage} hook ${h.path} failed: ${(err as Error).message}`);
      }
    }
  }
}

function emptyProcess(): ProcessPlan {
  return { rlimits: [], user: { uid: 0, gid: 0, groups: [] }, cwd: '/', env: [], args: [], noNewPrivileges: false };
}

const stripUndefined = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

function readlinkSafe(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return '';
  }
}

function startError(line: string | undefined, fallback: string): Error {
  const m = /^error (\d+) (.*)$/.exec(line ?? '');
  return m ? new ContainerStartError(Number(m[1]), m[2]!) : new ContainerStartError(125, fallback);
}

/** Lines from a stream, one per next() (undefined at the end). */
function lineReader(s: Readable): { next(): Promise<string | undefined> } {
  let buf = '';
  let ended = false;
  const waiting: Array<() => void> = [];
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    buf += d;
    waiting.splice(0).forEach((w) => w());
  });
  const end = () => {
    ended = true;
    waiting.splice(0).forEach((w) => w());
  };
  s.on('end', end);
  s.on('close', end);
  s.on('error', end);
  return {
    async next() {
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          const l = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          return l;
        }
        if (ended) return undefined;
        await new Promise<void>((r) => waiting.push(r));
      }
    },
  };
}

/** One hook: its path with its args (args[0] is argv[0]) and env, the state on stdin, killed after its timeout. */
export function runHook(h: OciHook, state: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const env = Object.fromEntries((h.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    const args = h.args?.length ? h.args : [h.path];
    const child = spawn(h.path, args.slice(1), { argv0: args[0], env, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(state);
    const timer = h.timeout ? setTimeout(() => child.kill('SIGKILL'), h.timeout * 1000) : undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(sig === 'SIGKILL' && h.timeout ? `timed out after ${h.timeout} s` : `exited with ${code ?? sig}${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
    });
  });
}
