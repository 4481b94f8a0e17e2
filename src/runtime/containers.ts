// Containers: create, start (the rootfs, the sandbox, the cgroup, the plan, the
// monitor), stop, kill, remove, and the reconcile that finishes or undoes what a
// killed tsnet left. The runtime's records are in their own store; a container
// operation holds its lock and takes the network store's (through the
// controller) inside it, never the other way round.
import { existsSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, readdirSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { basename, join } from 'node:path';
import { Store, type StoreTx } from '../store/store.js';
import type { FileOps, LockOps, MountOps } from '../system/kernel.js';
import type { Logger } from '../log.js';
import type { Controller } from '../controller/controller.js';
import { AlreadyExistsError, ConflictError, InvalidConfigError, NotFoundError, TsnetError, asTsnetError, runAll } from '../errors.js';
import { faultPoint } from '../fault.js';
import { findByRef } from '../controller/lookup.js';
import { now } from '../controller/core.js';
import type { ImageStore } from './images/store.js';
import type { CgroupManager, ContainerCgroup } from './cgroups.js';
import { emptyRuntime, initialState, parseRuntimeState, type ContainerRecord, type RuntimeState } from './model.js';
import { planContainer, mergeEnv, parseBytes, RLIMITS, signalNumber, type CreateContainerRequest } from './spec.js';
import { capabilitySet, capMask, defaultSeccomp, loadSeccompProfile, type SeccompProgram } from './security.js';
import { CLONE, MS, MASKED_PATHS, READONLY_PATHS, renderContainerPlan, renderExecPlan, standardMounts, type ContainerPlan, type FsStep, type ProcessPlan } from './plan.js';
import { readInRoot, resolveUser, type ResolvedUser } from './users.js';
import { ContainerStartError, launchMonitor } from './monitor.js';
import { generateName } from './names.js';
import { alive, ownBoundingSet, processStart } from './proc.js';

export interface RuntimeDeps {
  root: string;
  runDir: string;
  files: FileOps;
  locks: LockOps;
  mounts: MountOps;
  images: ImageStore;
  cgroups: CgroupManager;
  controller: Controller;
  /** native/build/Release/tsnet-monitor and tsnet-init */
  monitorBin: string;
  initBin: string;
  /** The command the monitor runs when the container exits (`tsnet container cleanup ID`). */
  cleanupArgv: (id: string) => string[];
  random: (n: number) => Buffer;
  log: Logger;
  ncpu: number;
  /** Default parent cgroup (Docker's "docker"; ours "tsnet"). */
  cgroupParent?: string;
  env?: NodeJS.ProcessEnv;
}

export interface StartHooks {
  /** Called with the attach socket once the process exists and before it execs (the process waits for it). */
  attach?: (socketPath: string) => Promise<void>;
  /** The size of the terminal a -t container starts with. */
  winsize?: { rows: number; cols: number };
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ExitInfo {
  exitCode: number;
  signal: number;
  oomKilled: boolean;
  finishedAt: string;
}

export class Runtime {
  readonly store: Store<RuntimeState>;
  readonly dir: string;

  constructor(private readonly d: RuntimeDeps) {
    this.dir = join(d.root, 'containers');
    this.store = new Store<RuntimeState>(this.dir, emptyRuntime, d.log.child({ component: 'containers' }), { validate: parseRuntimeState, kernel: { files: d.files, locks: d.locks } });
  }

  // ---------------------------------------------------------------- paths

  cdir(c: { id: string }): string {
    return join(this.dir, c.id);
  }
  merged(c: { id: string }): string {
    return join(this.cdir(c), 'rootfs', 'merged');
  }
  logPath(c: { id: string }): string {
    return join(this.cdir(c), `${c.id}-json.log`);
  }
  exitPath(c: { id: string }): string {
    return join(this.cdir(c), 'exit');
  }
  attachPath(c: { id: string }): string {
    return join(this.d.runDir, 'attach', c.id.slice(0, 12));
  }
  cgroupOf(c: ContainerRecord): ContainerCgroup {
    return this.d.cgroups.paths(c.hostConfig.CgroupParent, c.id);
  }

  find(s: RuntimeState, ref: string): ContainerRecord {
    try {
      return findByRef(Object.values(s.containers), ref.replace(/^\//, ''), 'container');
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`No such container: ${ref}`);
      throw err;
    }
  }

  /** The records, after finishing whatever a dead process or an exited container left. */
  async snapshot(): Promise<RuntimeState> {
    const s = this.store.read();
    const pending = Object.values(s.containers).some((c) => c.phase !== 'ready' || c.state.status === 'starting' || (c.state.status === 'running' && (existsSync(this.exitPath(c)) || !alive(c.state.monitorPid, c.state.monitorStart))));
    if (!pending) return s;
    return this.change(async (_tx, st) => st);
  }

  private change<T>(fn: (tx: StoreTx<RuntimeState>, s: RuntimeState) => Promise<T>): Promise<T> {
    return this.store.transact(async (tx) => {
      const s = structuredClone(tx.state);
      await this.reconcile(tx, s);
      return fn(tx, s);
    });
  }

  // ---------------------------------------------------------------- create

  async create(req: CreateContainerRequest): Promise<ContainerRecord> {
    const image = this.d.images.resolve(req.image);
    const planned = planContainer({ ...req, cgroupParent: req.cgroupParent ?? this.d.cgroupParent }, image, this.d.env ?? process.env, this.d.ncpu);
    for (const m of planned.hostConfig.Mounts) {
      if (m.type === 'bind' && !existsSync(m.source!)) throw new NotFoundError(`invalid mount config for type "bind": bind source path does not exist: ${m.source}`);
    }
    for (const o of planned.hostConfig.SecurityOpt) {
      const m = /^seccomp[=:](.+)$/.exec(o);
      if (m && m[1] !== 'unconfined') loadSeccompProfile(m[1]!, []);
    }
    const ns = await this.d.controller.snapshot();
    const mode = planned.hostConfig.NetworkMode;
    if (!mode.startsWith('container:')) this.d.controller.findNetwork(ns, mode);
    for (const n of planned.hostConfig.Networks) this.d.controller.findNetwork(ns, n);
    return this.change(async (tx, s) => {
      const taken = (n: string) => Object.values(s.containers).some((c) => c.name === n);
      if (planned.name && taken(planned.name)) {
        const other = Object.values(s.containers).find((c) => c.name === planned.name)!;
        throw new AlreadyExistsError(`Conflict. The container name "/${planned.name}" is already in use by container "${other.id}". You have to remove (or rename) that container to be able to reuse that name.`);
      }
      const id = this.d.random(32).toString('hex');
      const name = planned.name ?? generateName(taken, this.d.random);
      const c: ContainerRecord = {
        id, name, created: now(), image: image.id, layers: image.layers,
        config: { ...planned.config, Hostname: planned.config.Hostname || (mode === 'host' ? osHostname() : id.slice(0, 12)) },
        hostConfig: planned.hostConfig,
        state: initialState(),
        phase: 'creating',
      };
      s.containers[id] = c;
      tx.write(s);
      try {
        for (const sub of ['upper', 'work', 'merged']) this.d.files.mkdir(join(this.cdir(c), 'rootfs', sub), 0o755);
      } catch (err) {
        rmSync(this.cdir(c), { recursive: true, force: true });
        delete s.containers[id];
        tx.write(s);
        throw err;
      }
      c.phase = 'ready';
      tx.write(s);
      return c;
    });
  }

  // ---------------------------------------------------------------- start

  async start(ref: string, hooks: StartHooks = {}): Promise<ContainerRecord> {
    return this.change(async (tx, s) => {
      const c = this.find(s, ref);
      if (c.state.status === 'running') return c;
      c.state = { ...c.state, status: 'starting', error: '', pid: 0, monitorPid: 0 };
      tx.write(s);
      try {
        await this.startKernel(tx, s, c, hooks);
      } catch (err) {
        const e = asTsnetError(err);
        await this.teardown(c, s).catch((te) => this.d.log.error({ err: te, container: c.name }, 'could not undo a failed start completely'));
        c.state = { ...c.state, status: c.state.startedAt.startsWith('0001') ? 'created' : 'exited', pid: 0, monitorPid: 0, exitCode: err instanceof ContainerStartError ? err.exitCode : 125, error: e.message };
        if (c.hostConfig.AutoRemove) await this.removeNow(tx, s, c);
        else tx.write(s);
        throw err;
      }
      return c;
    });
  }

  private async startKernel(tx: StoreTx<RuntimeState>, s: RuntimeState, c: ContainerRecord, hooks: StartHooks): Promise<void> {
    const { files, mounts, images, cgroups, controller } = this.d;
    const cdir = this.cdir(c);
    files.remove(this.exitPath(c));
    // 1. the rootfs: the image's layers under the container's own upper dir
    for (const l of c.layers) if (!existsSync(images.layerDir(l))) throw new NotFoundError(`layer ${l} of the container's image is missing from the image store`);
    const merged = this.merged(c);
    if (!mounts.isMountPoint(merged)) {
      mounts.overlay(merged, { lower: [...c.layers].reverse().map((l) => images.layerDir(l)), upper: join(cdir, 'rootfs', 'upper'), work: join(cdir, 'rootfs', 'work') });
    }
    await faultPoint('start:after-rootfs');
    // 2. the network: a sandbox named after the container
    const hc = c.hostConfig;
    const mode = hc.NetworkMode;
    let network = mode;
    if (mode.startsWith('container:')) {
      const target = mode.slice('container:'.length);
      const other = Object.values(s.containers).find((x) => x.name === target || x.id === target || (target.length >= 4 && x.id.startsWith(target)));
      if (other) {
        if (other.state.status !== 'running' || !other.sandbox) throw new ConflictError(`cannot join the network of container ${target}: it is not running`);
        network = `container:${other.sandbox}`;
      }
    }
    c.sandbox = c.name;
    tx.write(s);
    const exposed = Object.keys(c.config.ExposedPorts);
    await controller.createSandbox({ name: c.name, network, ip: hc.IP, publish: hc.PortBindings, publishAll: hc.PublishAllPorts, expose: exposed });
    for (const n of hc.Networks) await controller.connect(n, c.name, {});
    await faultPoint('start:after-network');
    const ns = await controller.snapshot();
    const sbx = controller.findSandbox(ns, c.name);
    const eps = controller.endpointsOf(ns, (e) => e.sandboxId === sbx.id);
    // 3. the cgroup
    const quota = hc.NanoCpus ? Math.round((hc.NanoCpus / 1e9) * 100000) : undefined;
    const cg = cgroups.create(hc.CgroupParent, c.id, {
      memory: hc.Memory || undefined,
      memorySwap: hc.Memory ? hc.MemorySwap : undefined,
      cpuQuota: quota,
      cpuPeriod: quota ? 100000 : undefined,
      cpuShares: hc.CpuShares || undefined,
      cpusetCpus: hc.CpusetCpus || undefined,
      pidsLimit: hc.PidsLimit || undefined,
    });
    await faultPoint('start:after-cgroup');
    // 4. the files the container sees as /etc/hosts, /etc/hostname, /etc/resolv.conf
    const hostNet = sbx.kind === 'host';
    const addr = eps.find((e) => e.ipv4)?.ipv4?.split('/')[0];
    const addr6 = eps.find((e) => e.ipv6)?.ipv6?.split('/')[0];
    const hosts = hostNet ? (readFileSync('/etc/hosts', 'utf8')) : [
      '127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix', 'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters',
      ...(addr ? [`${addr}\t${c.config.Hostname}`] : []), ...(addr6 ? [`${addr6}\t${c.config.Hostname}`] : []), '',
    ].join('\n');
    writeFileSync(join(cdir, 'hosts'), hosts);
    writeFileSync(join(cdir, 'hostname'), `${c.config.Hostname}\n`);
    writeFileSync(join(cdir, 'resolv.conf'), resolvConf(hostNet));
    // 5. who runs it
    const user = resolveUser(c.config.User, readInRoot(merged, 'etc/passwd'), readInRoot(merged, 'etc/group'));
    const argv = [...c.config.Entrypoint, ...c.config.Cmd];
    if (hc.Init && !existsSync(this.d.initBin)) throw new NotFoundError(`--init needs ${this.d.initBin} (run npm run build)`);
    const plan: ContainerPlan = {
      ...this.processPlan(c, user, hc.Init ? ['/sbin/tsnet-init', '--', ...argv] : argv, c.config.Env, c.config.WorkingDir),
      clone: CLONE.NEWNS | CLONE.NEWPID | CLONE.NEWUTS | CLONE.NEWIPC,
      nsjoin: hostNet ? [] : [{ type: 'net', path: sbx.key }],
      cgroupns: true,
      root: merged,
      propagation: MS.REC | MS.PRIVATE,
      fs: this.fsSteps(c, hostNet, cg),
      masked: hc.Privileged ? [] : MASKED_PATHS,
      readonly: hc.Privileged ? [] : READONLY_PATHS,
      rootReadOnly: hc.ReadonlyRootfs,
      hostname: hostNet ? undefined : c.config.Hostname,
      cgroups: cg.dirs,
      oom: cg.oom,
      log: { path: this.logPath(c), maxSize: hc.LogConfig.Config['max-size'] ? parseBytes(hc.LogConfig.Config['max-size'], '--log-opt max-size') : 0, maxFiles: Number(hc.LogConfig.Config['max-file'] ?? 1) },
      exitFile: this.exitPath(c),
      attach: this.attachPath(c),
      waitAttach: hooks.attach !== undefined,
      tty: c.config.Tty,
      winsize: hooks.winsize,
      stdin: c.config.OpenStdin,
      cleanup: this.d.cleanupArgv(c.id),
    };
    if (!plan.cwd) plan.cwd = '/';
    const planPath = join(cdir, 'plan');
    writeFileSync(planPath, renderContainerPlan(plan), { mode: 0o600 });
    mkdirSync(join(this.d.runDir, 'attach'), { recursive: true, mode: 0o700 });
    await faultPoint('start:before-monitor');
    const started = await launchMonitor(this.d.monitorBin, planPath, {
      onMonitor: (pid) => {
        c.state.monitorPid = pid;
        c.state.monitorStart = processStart(pid);
        tx.write(s);
      },
      onPid: async (pid) => {
        c.state.pid = pid;
        c.state.pidStart = processStart(pid);
        tx.write(s);
        if (hooks.attach) await hooks.attach(this.attachPath(c));
      },
    });
    c.state = { ...c.state, status: 'running', pid: started.pid, monitorPid: started.monitorPid, exitCode: 0, oomKilled: false, error: '', startedAt: now(), finishedAt: '0001-01-01T00:00:00Z' };
    tx.write(s);
  }

  /** The standard mounts, the /etc files, the user's mounts and --init, in order. */
  private fsSteps(c: ContainerRecord, hostNet: boolean, cg: ContainerCgroup): FsStep[] {
    const hc = c.hostConfig;
    const steps = standardMounts({ hostNetwork: hostNet, privileged: hc.Privileged, cgroupV2: cg.version === 2, tty: c.config.Tty, cgroupControllers: this.d.cgroups.hierarchies() });
    const cdir = this.cdir(c);
    for (const f of ['hosts', 'hostname', 'resolv.conf']) steps.push({ op: 'mount', kind: 'file', source: join(cdir, f), target: `/etc/${f}`, fstype: 'none', flags: MS.BIND, data: '' });
    for (const m of hc.Mounts) {
      if (m.type === 'bind') {
        const dir = statSync(m.source!).isDirectory();
        steps.push({ op: 'mount', kind: dir ? 'dir' : 'file', source: m.source!, target: m.target, fstype: 'none', flags: MS.BIND | MS.REC | (m.readOnly ? MS.RDONLY : 0), data: '' });
      } else {
        const data = [m.tmpfsSize ? `size=${m.tmpfsSize}` : '', m.tmpfsMode !== undefined ? `mode=${m.tmpfsMode.toString(8)}` : 'mode=1777'].filter(Boolean).join(',');
        steps.push({ op: 'mount', kind: 'dir', source: 'tmpfs', target: m.target, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | (m.readOnly ? MS.RDONLY : 0), data });
      }
    }
    if (hc.Init) steps.push({ op: 'mount', kind: 'file', source: this.d.initBin, target: '/sbin/tsnet-init', fstype: 'none', flags: MS.BIND | MS.RDONLY, data: '' });
    if (c.config.WorkingDir) steps.push({ op: 'mkdir', path: c.config.WorkingDir });
    return steps;
  }

  /** What the process gets, for the container's first process and for exec alike. */
  private processPlan(c: ContainerRecord, user: ResolvedUser, args: string[], env: string[], cwd: string): ProcessPlan {
    const hc = c.hostConfig;
    const own = ownBoundingSet();
    // --privileged: every capability we have (this VM, for one, withholds CAP_SYS_RESOURCE from root).
    const caps = capabilitySet(hc.CapAdd, hc.CapDrop, hc.Privileged).filter((c) => !hc.Privileged || (own & capMask([c])) !== 0n);
    const missing = caps.filter((c) => (own & capMask([c])) === 0n);
    if (missing.length) throw new InvalidConfigError(`capability ${missing.join(', ')} is not in tsnet's own bounding set here, so the container cannot have it`);
    const mask = capMask(caps);
    let seccomp: SeccompProgram | undefined;
    const opt = hc.SecurityOpt.map((o) => /^seccomp[=:](.+)$/.exec(o)?.[1]).find(Boolean);
    if (!hc.Privileged && opt !== 'unconfined') seccomp = opt ? loadSeccompProfile(opt, caps) : defaultSeccomp(caps);
    const base = [DEFAULT_PATH, `HOSTNAME=${c.config.Hostname}`, ...(c.config.Tty ? ['TERM=xterm'] : []), `HOME=${user.home}`];
    const fullEnv = mergeEnv(base, env);
    return {
      rlimits: hc.Ulimits.map((u) => ({ resource: RLIMITS[u.name]!, soft: u.soft === -1 ? 2n ** 64n - 1n : BigInt(u.soft), hard: u.hard === -1 ? 2n ** 64n - 1n : BigInt(u.hard) })),
      // Docker: a non-root user gets the bounding set only (no effective or permitted capabilities).
      caps: { bounding: mask, effective: user.uid === 0 ? mask : 0n, permitted: user.uid === 0 ? mask : 0n, inheritable: 0n, ambient: 0n },
      user: { uid: user.uid, gid: user.gid, groups: user.groups },
      cwd: cwd || '/',
      env: fullEnv,
      args,
      noNewPrivileges: hc.SecurityOpt.some((o) => /^no-new-privileges(:true)?$/.test(o)),
      seccomp,
    };
  }

  // ---------------------------------------------------------------- exit, stop, kill

  readExit(c: { id: string }): ExitInfo | undefined {
    let text: string;
    try {
      text = readFileSync(this.exitPath(c), 'utf8');
    } catch {
      return undefined;
    }
    const kv = Object.fromEntries(text.split('\n').filter(Boolean).map((l) => l.split(' ', 2) as [string, string]));
    return { exitCode: Number(kv.exitcode ?? 255), signal: Number(kv.signal ?? 0), oomKilled: kv.oomkilled === '1', finishedAt: kv.finished ?? now() };
  }

  /** Kernel objects of a container that is not running: rootfs mount, cgroup, sandbox, socket. Idempotent. */
  private async teardown(c: ContainerRecord, _s: RuntimeState): Promise<void> {
    const steps: Array<() => unknown> = [];
    // Whatever still runs in its cgroup goes first (a killed start, an orphaned process).
    const cg = this.cgroupOf(c);
    steps.push(() => this.d.cgroups.destroy(cg));
    if (alive(c.state.monitorPid, c.state.monitorStart) && !existsSync(this.exitPath(c))) steps.push(() => process.kill(c.state.monitorPid, 'SIGKILL'));
    steps.push(() => {
      if (this.d.mounts.isMountPoint(this.merged(c))) this.d.mounts.unmount(this.merged(c), { detach: true });
    });
    if (c.sandbox) {
      const name = c.sandbox;
      steps.push(async () => {
        const r = await this.d.controller.removeSandboxes([name], { force: true });
        if (r.failed.length) throw r.failed[0]!.error;
      });
    }
    steps.push(() => this.d.files.remove(this.attachPath(c)));
    await runAll(`clean up container ${c.name}`, steps);
    c.sandbox = undefined;
  }

  /** An exited container: its exit recorded, its kernel objects gone (and itself, for --rm). */
  private async finish(tx: StoreTx<RuntimeState>, s: RuntimeState, c: ContainerRecord, lost = false): Promise<void> {
    const exit = this.readExit(c);
    c.state = {
      ...c.state,
      status: 'exited',
      pid: 0,
      exitCode: exit?.exitCode ?? 255,
      oomKilled: exit?.oomKilled ?? false,
      finishedAt: exit?.finishedAt ?? now(),
      error: lost && !exit ? 'the container monitor is gone: the exit status is unknown' : c.state.error,
    };
    tx.write(s);
    await this.teardown(c, s);
    if (c.hostConfig.AutoRemove) await this.removeNow(tx, s, c);
    else tx.write(s);
  }

  private async removeNow(tx: StoreTx<RuntimeState>, s: RuntimeState, c: ContainerRecord): Promise<void> {
    c.phase = 'removing';
    tx.write(s);
    await faultPoint('rm:after-mark');
    await this.teardown(c, s);
    rmSync(this.cdir(c), { recursive: true, force: true });
    delete s.containers[c.id];
    tx.write(s);
  }

  /** Finishes what died: exits not yet recorded, starts and removals a killed tsnet left. */
  async reconcile(tx: StoreTx<RuntimeState>, s: RuntimeState): Promise<void> {
    for (const c of Object.values(s.containers)) {
      try {
        if (c.phase === 'removing') await this.removeNow(tx, s, c);
        else if (c.phase === 'creating') {
          rmSync(this.cdir(c), { recursive: true, force: true });
          delete s.containers[c.id];
          tx.write(s);
        } else if (c.state.status === 'starting') {
          // We hold the lock: the process that was starting it is gone.
          await this.teardown(c, s);
          c.state = { ...c.state, status: c.state.startedAt.startsWith('0001') ? 'created' : 'exited', pid: 0, monitorPid: 0, exitCode: 128, error: 'tsnet was stopped while starting the container' };
          tx.write(s);
        } else if (c.state.status === 'running') {
          if (existsSync(this.exitPath(c))) await this.finish(tx, s, c);
          else if (!alive(c.state.monitorPid, c.state.monitorStart) && !alive(c.state.pid, c.state.pidStart)) await this.finish(tx, s, c, true);
        }
      } catch (err) {
        this.d.log.error({ err, container: c.name }, 'could not finish the recorded state of a container');
      }
    }
  }

  /**
   * `tsnet container cleanup ID`, the monitor's last act: the reconcile records the
   * exit and releases what the container held (every container that needs it, this
   * one included; an unknown ID is no error, --rm may have removed it already).
   */
  async cleanup(_id: string): Promise<void> {
    await this.change(async () => undefined);
  }

  /** Processes in its cgroup. */
  processes(c: ContainerRecord): number[] {
    return this.d.cgroups.pids(this.cgroupOf(c));
  }

  cgroupStats(c: ContainerRecord): ReturnType<CgroupManager['stats']> {
    return this.d.cgroups.stats(this.cgroupOf(c));
  }

  signal(c: ContainerRecord, sig: string): void {
    if (c.state.status !== 'running' || !alive(c.state.pid, c.state.pidStart)) throw new ConflictError(`Cannot kill container: ${c.name}: container is not running`);
    process.kill(c.state.pid, signalNumber(sig));
  }

  private async waitExit(c: ContainerRecord, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (existsSync(this.exitPath(c)) || (!alive(c.state.pid, c.state.pidStart) && !alive(c.state.monitorPid, c.state.monitorStart))) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  /** Docker's stop: the stop signal, then SIGKILL after the timeout (seconds). */
  async stop(ref: string, timeout?: number): Promise<void> {
    const c = this.find(await this.snapshot(), ref);
    if (c.state.status === 'running') {
      const t = timeout ?? c.config.StopTimeout ?? 10;
      try {
        process.kill(c.state.pid, signalNumber(c.config.StopSignal));
      } catch {
        /* exited meanwhile */
      }
      if (!(t >= 0 && (await this.waitExit(c, t * 1000)))) {
        try {
          process.kill(c.state.pid, 'SIGKILL');
        } catch {
          /* exited meanwhile */
        }
        if (!(await this.waitExit(c, 10000))) throw new TsnetError('INTERNAL', `container ${c.name} did not exit after SIGKILL`);
      }
    }
    await this.change(async () => undefined);
  }

  async kill(ref: string, sig = 'SIGKILL'): Promise<void> {
    const c = this.find(await this.snapshot(), ref);
    this.signal(c, sig);
  }

  async remove(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    let c = this.find(await this.snapshot(), ref);
    if (c.state.status === 'running') {
      if (!opts.force) throw new ConflictError(`You cannot remove a running container ${c.id}. Stop the container before attempting removal or force remove`);
      try {
        process.kill(c.state.pid, 'SIGKILL');
      } catch {
        /* exited meanwhile */
      }
      await this.waitExit(c, 10000);
    }
    await this.change(async (tx, s) => {
      c = this.find(s, c.id);
      await this.removeNow(tx, s, c);
    });
  }

  async wait(ref: string): Promise<number> {
    const c = this.find(await this.snapshot(), ref);
    if (c.state.status === 'running') await this.waitExit(c, 2 ** 31 - 1);
    const exit = this.readExit(c);
    if (exit) return exit.exitCode;
    const s = await this.snapshot();
    return s.containers[c.id]?.state.exitCode ?? 0;
  }

  // ---------------------------------------------------------------- exec

  /** The helper invocation for `exec`: the caller runs it with its own stdio and removes the plan after. */
  async execPlan(ref: string, req: { cmd: string[]; env?: string[]; user?: string; workdir?: string }): Promise<{ argv: string[]; plan: string }> {
    const c = this.find(await this.snapshot(), ref);
    if (c.state.status !== 'running' || !alive(c.state.pid, c.state.pidStart)) throw new ConflictError(`Container ${c.id} is not running`);
    if (!req.cmd.length) throw new InvalidConfigError('exec needs a command');
    if (req.workdir !== undefined && !req.workdir.startsWith('/')) throw new InvalidConfigError(`invalid -w "${req.workdir}": the working directory must be an absolute path`);
    const merged = this.merged(c);
    const user = resolveUser(req.user ?? c.config.User, readInRoot(merged, 'etc/passwd'), readInRoot(merged, 'etc/group'));
    const pp = this.processPlan(c, user, req.cmd, mergeEnv(c.config.Env, req.env ?? []), req.workdir ?? c.config.WorkingDir);
    const plan = join(this.cdir(c), `exec-${this.d.random(6).toString('hex')}.plan`);
    writeFileSync(plan, renderExecPlan({ ...pp, join: c.state.pid, cgroups: this.cgroupOf(c).dirs }), { mode: 0o600 });
    return { argv: [this.d.monitorBin, 'exec', plan], plan };
  }

  // ---------------------------------------------------------------- logs

  /** Log records (json-file lines), oldest first, from the rotated files and the current one. */
  logFiles(c: ContainerRecord): string[] {
    const base = this.logPath(c);
    const dir = this.cdir(c);
    const rotated = existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(`${basename(base)}.`)).map((f) => Number(f.split('.').pop())).filter((n) => n > 0).sort((a, b) => b - a) : [];
    return [...rotated.map((n) => `${base}.${n}`), base].filter((f) => existsSync(f));
  }

  /** Reads new bytes of a log file from offset; returns whole lines and the next offset. */
  static readFrom(path: string, offset: number): { lines: string[]; offset: number; ino: number } {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      return { lines: [], offset, ino: 0 };
    }
    try {
      const st = fstatSync(fd);
      if (st.size < offset) offset = 0; // truncated or rotated
      const len = st.size - offset;
      const b = Buffer.alloc(len);
      let got = 0;
      while (got < len) {
        const n = readSync(fd, b, got, len - got, offset + got);
        if (n <= 0) break;
        got += n;
      }
      const text = b.subarray(0, got).toString('utf8');
      const last = text.lastIndexOf('\n');
      if (last < 0) return { lines: [], offset, ino: st.ino };
      return { lines: text.slice(0, last).split('\n'), offset: offset + Buffer.byteLength(text.slice(0, last + 1)), ino: st.ino };
    } finally {
      closeSync(fd);
    }
  }
}

/** The host's resolv.conf; without its loopback servers unless the container shares the host's network. */
function resolvConf(hostNet: boolean): string {
  let text = '';
  try {
    text = readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
  if (hostNet) return text;
  return `${text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\s*$)/.test(l)).join('\n').trim()}\n`;
}
