// cgroups, with the cgroupfs driver: one cgroup per container under a parent
// ("tsnet", Docker's "docker"), in every v1 hierarchy that has a controller tsnet
// uses, or in the v2 unified tree when that is where the controllers are. All
// access is through FileOps: cgroupfs is files.
import { join } from 'node:path';
import type { FileOps } from '../system/kernel.js';
import { InvalidConfigError, SyscallError, UnsupportedError, runAll } from '../errors.js';

export interface CgroupResources {
  /** Bytes; undefined: no limit. */
  memory?: number;
  /** Memory + swap in bytes (Docker's --memory-swap); -1 unlimited swap. */
  memorySwap?: number;
  /** CFS quota and period in microseconds (--cpus N: quota = N * period). */
  cpuQuota?: number;
  cpuPeriod?: number;
  cpuShares?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: number;
  blkioWeight?: number;
  // OCI linux.resources beyond Docker's flags
  memoryReservation?: number;
  swappiness?: number;
  oomKillDisable?: boolean;
  cpuRtRuntime?: number;
  cpuRtPeriod?: number;
  /** v1 device rules in order: "a", or "c 1:3 rwm" ("*" for any number). */
  deviceRules?: Array<{ allow: boolean; rule: string }>;
  /** v2 control files by name (OCI linux.resources.unified). */
  unified?: Record<string, string>;
}

export interface CgroupLayout {
  version: 1 | 2;
  /** v1: controller -> hierarchy mount point; v2: '' -> the unified mount. */
  mounts: Record<string, string>;
}

/** The v1 controllers a container gets a cgroup in. */
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'cpuset', 'pids', 'blkio', 'devices', 'freezer'];

const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Where the cgroup hierarchies are, from mountinfo's text. */
export function parseCgroupLayout(mountinfo: string): CgroupLayout {
  const v1: Record<string, string> = {};
  let unified: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const [fstype, , superOpts] = line.slice(sep + 3).split(' ');
    const mnt = unescapeMount(fields[4] ?? '');
    if (fstype === 'cgroup2') unified ??= mnt;
    if (fstype !== 'cgroup') continue;
    for (const opt of (superOpts ?? '').split(',')) if (V1_CONTROLLERS.includes(opt)) v1[opt] ??= mnt;
  }
  if (Object.keys(v1).length) return { version: 1, mounts: v1 };
  if (unified) return { version: 2, mounts: { '': unified } };
  return { version: 1, mounts: {} };
}

/** Docker's shares (2..262144) as a v2 weight (1..10000). */
export const sharesToWeight = (shares: number) => Math.round(1 + ((shares - 2) * 9999) / 262142);

/** The control-file writes that set resources, per hierarchy ('' for v2), in order. */
export function planCgroupWrites(version: 1 | 2, r: CgroupResources): Array<{ controller: string; file: string; value: string }> {
  const w: Array<{ controller: string; file: string; value: string }> = [];
  const add = (controller: string, file: string, value: string | number) => w.push({ controller, file, value: String(value) });
  if (version === 1) {
    if (r.memory !== undefined) add('memory', 'memory.limit_in_bytes', r.memory);
    if (r.memorySwap !== undefined) add('memory', 'memory.memsw.limit_in_bytes', r.memorySwap);
    if (r.cpuPeriod !== undefined) add('cpu', 'cpu.cfs_period_us', r.cpuPeriod);
    if (r.cpuQuota !== undefined) add('cpu', 'cpu.cfs_quota_us', r.cpuQuota);
    if (r.cpuShares !== undefined) add('cpu', 'cpu.shares', r.cpuShares);
    if (r.cpusetCpus !== undefined) add('cpuset', 'cpuset.cpus', r.cpusetCpus);
    if (r.cpusetMems !== undefined) add('cpuset', 'cpuset.mems', r.cpusetMems);
    if (r.pidsLimit !== undefined) add('pids', 'pids.max', r.pidsLimit > 0 ? r.pidsLimit : 'max');
    if (r.blkioWeight !== undefined) add('blkio', 'blkio.weight', r.blkioWeight);
    if (r.memoryReservation !== undefined) add('memory', 'memory.soft_limit_in_bytes', r.memoryReservation);
    if (r.swappiness !== undefined) add('memory', 'memory.swappiness', r.swappiness);
    if (r.oomKillDisable) add('memory', 'memory.oom_control', 1);
    if (r.cpuRtPeriod !== undefined) add('cpu', 'cpu.rt_period_us', r.cpuRtPeriod);
    if (r.cpuRtRuntime !== undefined) add('cpu', 'cpu.rt_runtime_us', r.cpuRtRuntime);
    for (const d of r.deviceRules ?? []) add('devices', d.allow ? 'devices.allow' : 'devices.deny', d.rule);
    if (r.unified && Object.keys(r.unified).length) throw new UnsupportedError('linux.resources.unified needs cgroup v2, and this host has v1 hierarchies');
  } else {
    if (r.memory !== undefined) add('', 'memory.max', r.memory);
    if (r.memorySwap !== undefined) add('', 'memory.swap.max', r.memorySwap === -1 ? 'max' : Math.max(0, r.memorySwap - (r.memory ?? 0)));
    if (r.cpuQuota !== undefined || r.cpuPeriod !== undefined) add('', 'cpu.max', `${r.cpuQuota !== undefined && r.cpuQuota > 0 ? r.cpuQuota : 'max'} ${r.cpuPeriod ?? 100000}`);
    if (r.cpuShares !== undefined) add('', 'cpu.weight', sharesToWeight(r.cpuShares));
    if (r.cpusetCpus !== undefined) add('', 'cpuset.cpus', r.cpusetCpus);
    if (r.cpusetMems !== undefined) add('', 'cpuset.mems', r.cpusetMems);
    if (r.pidsLimit !== undefined) add('', 'pids.max', r.pidsLimit > 0 ? r.pidsLimit : 'max');
    if (r.blkioWeight !== undefined) add('', 'io.weight', `default ${r.blkioWeight}`);
    if (r.memoryReservation !== undefined) add('', 'memory.low', r.memoryReservation);
    for (const [k, v] of Object.entries(r.unified ?? {})) add('', k, v);
  }
  return w;
}

export interface ContainerCgroup {
  version: 1 | 2;
  /** The directories the container's processes join (one per v1 hierarchy, one for v2). */
  dirs: string[];
  /** Where the kernel counts OOM kills: file and key. */
  oom?: { file: string; key: string };
  /** controller -> directory (v1), '' -> directory (v2). */
  byController: Record<string, string>;
}

export class CgroupManager {
  private layoutCache?: CgroupLayout;
  constructor(private readonly files: FileOps, private readonly mountinfo = '/proc/self/mountinfo') {}

  layout(): CgroupLayout {
    return (this.layoutCache ??= parseCgroupLayout(this.files.read(this.mountinfo) ?? ''));
  }

  /** The v1 hierarchies, each as the controllers its mount point names ("cpu,cpuacct"); [] on v2. */
  hierarchies(): string[][] {
    const l = this.layout();
    if (l.version === 2) return [];
    const byMount = new Map<string, string[]>();
    for (const [c, mnt] of Object.entries(l.mounts)) byMount.set(mnt, [...(byMount.get(mnt) ?? []), c]);
    return [...byMount.entries()].map(([mnt, ctls]) => {
      const named = mnt.slice(mnt.lastIndexOf('/') + 1).split(',');
      return named.every((x) => ctls.includes(x)) ? named : ctls;
    });
  }

  /** The directories a container's cgroup has (made or not). */
  paths(parent: string, id: string): ContainerCgroup {
    const l = this.layout();
    const rel = join('/', parent, id);
    const byController: Record<string, string> = {};
    for (const [c, mnt] of Object.entries(l.mounts)) byController[c] = join(mnt, rel);
    const dirs = [...new Set(Object.values(byController))];
    const oom = l.version === 1 ? (byController.memory ? { file: join(byController.memory, 'memory.oom_control'), key: 'oom_kill' } : undefined) : { file: join(byController['']!, 'memory.events'), key: 'oom_kill' };
    return { version: l.version, dirs, byController, oom };
  }

  /** Makes the container's cgroup and sets its resources, or leaves nothing. */
  create(parent: string, id: string, r: CgroupResources): ContainerCgroup {
    const cg = this.paths(parent, id);
    if (!cg.dirs.length) throw new UnsupportedError('no cgroup hierarchy is mounted (looked in /proc/self/mountinfo)');
    const writes = planCgroupWrites(cg.version, r);
    for (const w of writes) {
      if (cg.byController[w.controller] === undefined) throw new UnsupportedError(`the ${w.controller || 'cgroup v2'} controller is not available here, so ${w.file} cannot be set`);
    }
    try {
      for (const [c, dir] of Object.entries(cg.byController)) this.makeDir(c, dir, cg.version);
      for (const w of writes) {
        const file = join(cg.byController[w.controller]!, w.file);
        if (this.files.kind(file) === undefined) throw new UnsupportedError(`${file} does not exist: this kernel cannot set ${w.file}`);
        try {
          this.files.write(file, w.value, { existing: true });
        } catch (err) {
          const e = err as SyscallError;
          throw new InvalidConfigError(`cannot set ${w.file} to ${w.value}: ${e.errno ?? e.message}`, { cause: err });
        }
      }
      return cg;
    } catch (err) {
      for (const dir of cg.dirs) this.files.remove(dir);
      throw err;
    }
  }

  /** mkdir -p with the parents a v1 cpuset needs (cpus and mems copied down), v2 controllers enabled. */
  private makeDir(controller: string, dir: string, version: 1 | 2): void {
    const mnt = version === 1 ? this.layout().mounts[controller]! : this.layout().mounts['']!;
    const parts = dir.slice(mnt.length).split('/').filter(Boolean);
    let at = mnt;
    for (const p of parts) {
      const parentDir = at;
      at = join(at, p);
      if (this.files.kind(at) === undefined) {
        if (version === 2) this.enableV2Controllers(parentDir);
        this.files.mkdir(at, 0o755);
      }
      if (controller === 'cpuset') {
        for (const f of ['cpuset.cpus', 'cpuset.mems']) {
          if ((this.files.read(join(at, f)) ?? '').trim() === '') this.files.write(join(at, f), (this.files.read(join(parentDir, f)) ?? '').trim(), { existing: true });
        }
      }
    }
  }

  private enableV2Controllers(dir: string): void {
    const available = (this.files.read(join(dir, 'cgroup.controllers')) ?? '').trim().split(/\s+/).filter(Boolean);
    const want = ['cpu', 'cpuset', 'memory', 'pids', 'io'].filter((c) => available.includes(c));
    if (want.length) this.files.write(join(dir, 'cgroup.subtree_control'), want.map((c) => `+${c}`).join(' '), { existing: true });
  }

  /** Process IDs in the container's cgroup. */
  pids(cg: ContainerCgroup): number[] {
    const dir = cg.byController.pids ?? cg.byController.memory ?? cg.dirs[0];
    if (!dir) return [];
    return (this.files.read(join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number);
  }

  /** Freezes (pause) or thaws (resume) every process in it; resolves once the kernel says it is done. */
  async freeze(cg: ContainerCgroup, on: boolean): Promise<void> {
    const v1 = cg.version === 1;
    const dir = v1 ? cg.byController.freezer : cg.byController[''];
    if (!dir) throw new UnsupportedError('the freezer cgroup controller is not available here');
    const file = join(dir, v1 ? 'freezer.state' : 'cgroup.freeze');
    this.files.write(file, v1 ? (on ? 'FROZEN' : 'THAWED') : on ? '1' : '0', { existing: true });
    for (let i = 0; i < 500; i++) {
      if (this.frozen(cg) === on) return;
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new InvalidConfigError(`the cgroup ${dir} did not ${on ? 'freeze' : 'thaw'} in time`);
  }

  /** Whether it is frozen (false where there is no freezer). */
  frozen(cg: ContainerCgroup): boolean {
    if (cg.version === 1) return cg.byController.freezer !== undefined && (this.files.read(join(cg.byController.freezer, 'freezer.state')) ?? '').trim() === 'FROZEN';
    const events = this.files.read(join(cg.byController['']!, 'cgroup.events')) ?? '';
    return /^frozen 1$/m.test(events);
  }

  /** Kills what is left in it and removes every directory (idempotent). */
  async destroy(cg: ContainerCgroup): Promise<void> {
    // A frozen process cannot die: thaw first.
    if (this.frozen(cg)) await this.freeze(cg, false).catch(() => undefined);
    for (const pid of this.pids(cg)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    await runAll('remove cgroup', cg.dirs.map((dir) => async () => {
      // rmdir fails with EBUSY until the last process has left: a killed one takes a moment.
      for (let i = 0; ; i++) {
        try {
          this.files.remove(dir);
          return;
        } catch (err) {
          if ((err as SyscallError).errno !== 'EBUSY' || i >= 100) throw err;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }));
  }

  /** Counters for stats: memory usage (without reclaimable page cache, as Docker shows it) and limit, CPU time (ns), PIDs, block I/O bytes. */
  stats(cg: ContainerCgroup): { memoryUsage: number; memoryLimit: number; cpuNs: number; pids: number; blkRead: number; blkWrite: number } {
    const num = (dir: string | undefined, f: string) => Number((dir && this.files.read(join(dir, f))?.trim()) || 0);
    const stat = (dir: string | undefined, f: string, key: string) => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec((dir && this.files.read(join(dir, f))) ?? '')?.[1] ?? 0);
    if (cg.version === 1) {
      let blkRead = 0;
      let blkWrite = 0;
      for (const l of (this.files.read(join(cg.byController.blkio ?? '/nonexistent', 'blkio.throttle.io_service_bytes')) ?? '').split('\n')) {
        const m = /^\d+:\d+ (Read|Write) (\d+)$/.exec(l.trim());
        if (m?.[1] === 'Read') blkRead += Number(m[2]);
        else if (m?.[1] === 'Write') blkWrite += Number(m[2]);
      }
      const usage = num(cg.byController.memory, 'memory.usage_in_bytes');
      return {
        memoryUsage: Math.max(0, usage - stat(cg.byController.memory, 'memory.stat', 'total_inactive_file')),
        memoryLimit: num(cg.byController.memory, 'memory.limit_in_bytes'),
        cpuNs: num(cg.byController.cpuacct, 'cpuacct.usage'),
        pids: num(cg.byController.pids, 'pids.current'),
        blkRead,
        blkWrite,
      };
    }
    const dir = cg.byController['']!;
    const usec = /usage_usec (\d+)/.exec(this.files.read(join(dir, 'cpu.stat')) ?? '');
    const max = (this.files.read(join(dir, 'memory.max')) ?? '').trim();
    let blkRead = 0;
    let blkWrite = 0;
    for (const m of (this.files.read(join(dir, 'io.stat')) ?? '').matchAll(/rbytes=(\d+) wbytes=(\d+)/g)) {
      blkRead += Number(m[1]);
      blkWrite += Number(m[2]);
    }
    return {
      memoryUsage: Math.max(0, num(dir, 'memory.current') - stat(dir, 'memory.stat', 'inactive_file')),
      memoryLimit: max === 'max' || !max ? 0 : Number(max),
      cpuNs: usec ? Number(usec[1]) * 1000 : 0,
      pids: num(dir, 'pids.current'),
      blkRead,
      blkWrite,
    };
  }

}
