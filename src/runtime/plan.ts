// The plan: everything the native helper and monitor do for one container, as
// data (planned here, rendered to the line format native/runtime/plan.c reads).
// Nothing in it is decided in C.
import type { SeccompProgram } from './security.js';

export const MS = { RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, BIND: 4096, REC: 16384, PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20, STRICTATIME: 1 << 24 } as const;
export const CLONE = { NEWNS: 0x00020000, NEWCGROUP: 0x02000000, NEWUTS: 0x04000000, NEWIPC: 0x08000000, NEWUSER: 0x10000000, NEWPID: 0x20000000, NEWNET: 0x40000000 } as const;

export type FsStep =
  | { op: 'mount'; kind: 'dir' | 'file'; source: string; target: string; fstype: string; flags: number; data: string }
  | { op: 'mkdir'; path: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'console'; path: string }
  /** A device node (OCI linux.devices). */
  | { op: 'mknod'; path: string; type: 'c' | 'b' | 'p'; major: number; minor: number; mode: number; uid: number; gid: number }
  /** Mount propagation of a mount point made before (MS_SHARED, MS_PRIVATE, ... with MS_REC). */
  | { op: 'propagate'; path: string; flags: number };

export interface ProcessPlan {
  rlimits: Array<{ resource: number; soft: bigint; hard: bigint }>;
  caps?: { bounding: bigint; effective: bigint; permitted: bigint; inheritable: bigint; ambient: bigint };
  user: { uid: number; gid: number; groups: number[] };
  cwd: string;
  env: string[];
  args: string[];
  noNewPrivileges: boolean;
  seccomp?: SeccompProgram;
  umask?: number;
}

export interface ContainerPlan extends ProcessPlan {
  clone: number;
  /** Namespaces joined by path (the sandbox's network; OCI's): pid before clone, the others in the child. */
  nsjoin?: Array<{ type: 'pid' | 'net' | 'ipc' | 'uts' | 'cgroup'; path: string }>;
  sysctls?: Record<string, string>;
  oomScoreAdj?: number;
  domainname?: string;
  cgroupns: boolean;
  root: string;
  propagation: number;
  fs: FsStep[];
  masked: string[];
  readonly: string[];
  rootReadOnly: boolean;
  hostname?: string;
  // what the monitor does
  cgroups: string[];
  oom?: { file: string; key: string };
  log?: { path: string; maxSize: number; maxFiles: number };
  exitFile?: string;
  attach?: string;
  waitAttach: boolean;
  tty: boolean;
  /** The terminal's size at start (rows, cols). */
  winsize?: { rows: number; cols: number };
  stdin: boolean;
  cleanup?: string[];
  // the OCI create path (tsnet-monitor create)
  /** Where to send the pty master (runc's --console-socket). */
  consoleSocket?: string;
  /** The helper stays the parent and exits with the container's status (runc run without -d). */
  foreground?: boolean;
}

export interface ExecPlan extends ProcessPlan {
  join: number;
  cgroups: string[];
  /** Write the process's pid here; detach: return once it has exec'd. */
  pidFile?: string;
  detach?: boolean;
  /** A pty of the container's devpts for the process, its master sent here (runc exec -t --console-socket). */
  consoleSocket?: string;
  winsize?: { rows: number; cols: number };
}

const esc = (s: string | number | bigint) => String(s).replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
const line = (...f: Array<string | number | bigint>) => f.map(esc).join('\t');
const hex = (n: bigint) => `0x${n.toString(16)}`;

function processLines(p: ProcessPlan): string[] {
  const out: string[] = [];
  for (const r of p.rlimits) out.push(line('rlimit', r.resource, r.soft, r.hard));
  if (p.caps) out.push(line('caps', hex(p.caps.bounding), hex(p.caps.effective), hex(p.caps.permitted), hex(p.caps.inheritable), hex(p.caps.ambient)));
  out.push(line('user', p.user.uid, p.user.gid, p.user.groups.length ? p.user.groups.join(',') : '-'));
  if (p.cwd) out.push(line('cwd', p.cwd));
  for (const e of p.env) out.push(line('env', e));
  out.push(line('args', ...p.args));
  if (p.noNewPrivileges) out.push(line('nnp'));
  if (p.umask !== undefined) out.push(line('umask', `0${p.umask.toString(8)}`));
  if (p.seccomp) {
    out.push(line('seccomp', p.seccomp.defaultAction));
    for (const r of p.seccomp.rules) out.push(line('syscall', r.name, r.action, ...r.args.flatMap((a) => [a.index, a.op, a.value, a.valueTwo])));
  }
  return out;
}

export function renderContainerPlan(p: ContainerPlan): string {
  const out: string[] = [line('clone', p.clone), line('root', p.root), line('propagation', p.propagation)];
  for (const j of p.nsjoin ?? []) out.push(line('nsjoin', j.type, j.path));
  if (p.cgroupns) out.push(line('cgroupns'));
  for (const [k, v] of Object.entries(p.sysctls ?? {})) out.push(line('sysctl', k, v));
  if (p.oomScoreAdj !== undefined) out.push(line('oomscoreadj', p.oomScoreAdj));
  for (const s of p.fs) {
    if (s.op === 'mount') out.push(line('mount', s.kind, s.source, s.target, s.fstype, s.flags, s.data));
    else if (s.op === 'mkdir') out.push(line('mkdir', s.path));
    else if (s.op === 'symlink') out.push(line('symlink', s.target, s.path));
    else if (s.op === 'mknod') out.push(line('mknod', s.path, s.type, s.major, s.minor, s.mode, s.uid, s.gid));
    else if (s.op === 'propagate') out.push(line('propagate', s.path, s.flags));
    else out.push(line('console', s.path));
  }
  for (const m of p.masked) out.push(line('mask', m));
  for (const r of p.readonly) out.push(line('readonly', r));
  if (p.rootReadOnly) out.push(line('rootreadonly'));
  if (p.hostname) out.push(line('hostname', p.hostname));
  if (p.domainname) out.push(line('domainname', p.domainname));
  out.push(...processLines(p));
  for (const c of p.cgroups) out.push(line('cgroup', c));
  if (p.oom) out.push(line('oom', p.oom.file, p.oom.key));
  if (p.log) out.push(line('log', p.log.path, p.log.maxSize, p.log.maxFiles));
  if (p.exitFile) out.push(line('exitfile', p.exitFile));
  if (p.attach) out.push(line('attach', p.attach));
  if (p.waitAttach) out.push(line('waitattach'));
  if (p.tty) out.push(line('tty'));
  if ((p.tty || p.consoleSocket) && p.winsize) out.push(line('winsize', p.winsize.rows, p.winsize.cols));
  if (p.stdin) out.push(line('stdin'));
  if (p.cleanup) out.push(line('cleanup', ...p.cleanup));
  if (p.consoleSocket) out.push(line('consolesocket', p.consoleSocket));
  if (p.foreground) out.push(line('foreground'));
  return `${out.join('\n')}\n`;
}

export function renderExecPlan(p: ExecPlan): string {
  const out = [line('join', p.join), ...p.cgroups.map((c) => line('cgroup', c)), ...processLines(p)];
  if (p.pidFile) out.push(line('pidfile', p.pidFile));
  if (p.detach) out.push(line('detach'));
  if (p.consoleSocket) out.push(line('consolesocket', p.consoleSocket));
  if (p.consoleSocket && p.winsize) out.push(line('winsize', p.winsize.rows, p.winsize.cols));
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------- the standard container filesystem

/** Docker's masked and read-only paths. */
export const MASKED_PATHS = ['/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
export const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** The standard device nodes (bound from the host's), /dev's symlinks and, for a terminal, /dev/console: what runc puts in a fresh /dev. */
export function devSteps(tty: boolean): FsStep[] {
  const steps: FsStep[] = DEVICES.map((d) => ({ op: 'mount', kind: 'file', source: `/dev/${d}`, target: `/dev/${d}`, fstype: 'none', flags: MS.BIND, data: '' }));
  steps.push(
    { op: 'symlink', target: '/proc/self/fd', path: '/dev/fd' },
    { op: 'symlink', target: '/proc/self/fd/0', path: '/dev/stdin' },
    { op: 'symlink', target: '/proc/self/fd/1', path: '/dev/stdout' },
    { op: 'symlink', target: '/proc/self/fd/2', path: '/dev/stderr' },
    { op: 'symlink', target: 'pts/ptmx', path: '/dev/ptmx' },
    { op: 'symlink', target: '/proc/kcore', path: '/dev/core' },
  );
  if (tty) steps.push({ op: 'console', path: '/dev/console' });
  return steps;
}

/** The container's view of its cgroups at /sys/fs/cgroup: cgroup2, or a tmpfs with one mount per v1 hierarchy (controllers as the host groups them). */
export function cgroupSteps(opts: { cgroupV2: boolean; hierarchies: string[][]; flags: number }): FsStep[] {
  const { NOSUID, NOEXEC, NODEV } = MS;
  if (opts.cgroupV2) return [{ op: 'mount', kind: 'dir', source: 'cgroup', target: '/sys/fs/cgroup', fstype: 'cgroup2', flags: NOSUID | NOEXEC | NODEV | opts.flags, data: '' }];
  // The cgroup namespace makes each show the container's own.
  return [
    { op: 'mount', kind: 'dir', source: 'tmpfs', target: '/sys/fs/cgroup', fstype: 'tmpfs', flags: NOSUID | NOEXEC | NODEV, data: 'mode=755' },
    ...opts.hierarchies.map((ctl): FsStep => ({ op: 'mount', kind: 'dir', source: 'cgroup', target: `/sys/fs/cgroup/${ctl.join(',')}`, fstype: 'cgroup', flags: NOSUID | NOEXEC | NODEV | opts.flags, data: ctl.join(',') })),
  ];
}

/** /proc, /dev (with its nodes, pts, shm, mqueue), /sys and the cgroup view: runc's default set. */
export function standardMounts(opts: { hostNetwork: boolean; privileged: boolean; cgroupControllers: string[][]; cgroupV2: boolean; tty: boolean }): FsStep[] {
  const { NOSUID, NODEV, NOEXEC, RDONLY, STRICTATIME, BIND, REC } = MS;
  const steps: FsStep[] = [
    { op: 'mount', kind: 'dir', source: 'proc', target: '/proc', fstype: 'proc', flags: NOSUID | NOEXEC | NODEV, data: '' },
    { op: 'mount', kind: 'dir', source: 'tmpfs', target: '/dev', fstype: 'tmpfs', flags: NOSUID | STRICTATIME, data: 'mode=755,size=65536k' },
    { op: 'mount', kind: 'dir', source: 'devpts', target: '/dev/pts', fstype: 'devpts', flags: NOSUID | NOEXEC, data: 'newinstance,ptmxmode=0666,mode=0620,gid=5' },
    { op: 'mount', kind: 'dir', source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: NOSUID | NOEXEC | NODEV, data: 'mode=1777,size=65536k' },
    { op: 'mount', kind: 'dir', source: 'mqueue', target: '/dev/mqueue', fstype: 'mqueue', flags: NOSUID | NOEXEC | NODEV, data: '' },
    ...devSteps(opts.tty),
  ];
  const sysRo = opts.privileged ? 0 : RDONLY;
  // sysfs shows the network namespace of its mounter: in the host's, bind the host's /sys instead.
  if (opts.hostNetwork) steps.push({ op: 'mount', kind: 'dir', source: '/sys', target: '/sys', fstype: 'none', flags: BIND | REC | sysRo, data: '' });
  else steps.push({ op: 'mount', kind: 'dir', source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: NOSUID | NOEXEC | NODEV | sysRo, data: '' });
  steps.push(...cgroupSteps({ cgroupV2: opts.cgroupV2, hierarchies: opts.cgroupControllers, flags: sysRo }));
  return steps;
}
