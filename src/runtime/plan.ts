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
  | { op: 'console'; path: string };

export interface ProcessPlan {
  rlimits: Array<{ resource: number; soft: bigint; hard: bigint }>;
  caps?: { bounding: bigint; effective: bigint; permitted: bigint; inheritable: bigint; ambient: bigint };
  user: { uid: number; gid: number; groups: number[] };
  cwd: string;
  env: string[];
  args: string[];
  noNewPrivileges: boolean;
  seccomp?: SeccompProgram;
}

export interface ContainerPlan extends ProcessPlan {
  clone: number;
  netns?: string;
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
  exitFile: string;
  attach?: string;
  waitAttach: boolean;
  tty: boolean;
  /** The terminal's size at start (rows, cols). */
  winsize?: { rows: number; cols: number };
  stdin: boolean;
  cleanup?: string[];
}

export interface ExecPlan extends ProcessPlan {
  join: number;
  cgroups: string[];
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
  if (p.seccomp) {
    out.push(line('seccomp', p.seccomp.defaultAction));
    for (const r of p.seccomp.rules) out.push(line('syscall', r.name, r.action, ...r.args.flatMap((a) => [a.index, a.op, a.value, a.valueTwo])));
  }
  return out;
}

export function renderContainerPlan(p: ContainerPlan): string {
  const out: string[] = [line('clone', p.clone), line('root', p.root), line('propagation', p.propagation)];
  if (p.netns) out.push(line('netns', p.netns));
  if (p.cgroupns) out.push(line('cgroupns'));
  for (const s of p.fs) {
    if (s.op === 'mount') out.push(line('mount', s.kind, s.source, s.target, s.fstype, s.flags, s.data));
    else if (s.op === 'mkdir') out.push(line('mkdir', s.path));
    else if (s.op === 'symlink') out.push(line('symlink', s.target, s.path));
    else out.push(line('console', s.path));
  }
  for (const m of p.masked) out.push(line('mask', m));
  for (const r of p.readonly) out.push(line('readonly', r));
  if (p.rootReadOnly) out.push(line('rootreadonly'));
  if (p.hostname) out.push(line('hostname', p.hostname));
  out.push(...processLines(p));
  for (const c of p.cgroups) out.push(line('cgroup', c));
  if (p.oom) out.push(line('oom', p.oom.file, p.oom.key));
  if (p.log) out.push(line('log', p.log.path, p.log.maxSize, p.log.maxFiles));
  out.push(line('exitfile', p.exitFile));
  if (p.attach) out.push(line('attach', p.attach));
  if (p.waitAttach) out.push(line('waitattach'));
  if (p.tty) out.push(line('tty'));
  if (p.tty && p.winsize) out.push(line('winsize', p.winsize.rows, p.winsize.cols));
  if (p.stdin) out.push(line('stdin'));
  if (p.cleanup) out.push(line('cleanup', ...p.cleanup));
  return `${out.join('\n')}\n`;
}

export function renderExecPlan(p: ExecPlan): string {
  const out = [line('join', p.join), ...p.cgroups.map((c) => line('cgroup', c)), ...processLines(p)];
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------- the standard container filesystem

/** Docker's masked and read-only paths. */
export const MASKED_PATHS = ['/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
export const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** /proc, /dev (with its nodes, pts, shm, mqueue), /sys and the cgroup view: runc's default set. */
export function standardMounts(opts: { hostNetwork: boolean; privileged: boolean; cgroupControllers: string[][]; cgroupV2: boolean; tty: boolean }): FsStep[] {
  const { NOSUID, NODEV, NOEXEC, RDONLY, STRICTATIME, BIND, REC } = MS;
  const steps: FsStep[] = [
    { op: 'mount', kind: 'dir', source: 'proc', target: '/proc', fstype: 'proc', flags: NOSUID | NOEXEC | NODEV, data: '' },
    { op: 'mount', kind: 'dir', source: 'tmpfs', target: '/dev', fstype: 'tmpfs', flags: NOSUID | STRICTATIME, data: 'mode=755,size=65536k' },
    { op: 'mount', kind: 'dir', source: 'devpts', target: '/dev/pts', fstype: 'devpts', flags: NOSUID | NOEXEC, data: 'newinstance,ptmxmode=0666,mode=0620,gid=5' },
    { op: 'mount', kind: 'dir', source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: NOSUID | NOEXEC | NODEV, data: 'mode=1777,size=65536k' },
    { op: 'mount', kind: 'dir', source: 'mqueue', target: '/dev/mqueue', fstype: 'mqueue', flags: NOSUID | NOEXEC | NODEV, data: '' },
  ];
  for (const d of DEVICES) steps.push({ op: 'mount', kind: 'file', source: `/dev/${d}`, target: `/dev/${d}`, fstype: 'none', flags: BIND, data: '' });
  steps.push(
    { op: 'symlink', target: '/proc/self/fd', path: '/dev/fd' },
    { op: 'symlink', target: '/proc/self/fd/0', path: '/dev/stdin' },
    { op: 'symlink', target: '/proc/self/fd/1', path: '/dev/stdout' },
    { op: 'symlink', target: '/proc/self/fd/2', path: '/dev/stderr' },
    { op: 'symlink', target: 'pts/ptmx', path: '/dev/ptmx' },
    { op: 'symlink', target: '/proc/kcore', path: '/dev/core' },
  );
  if (opts.tty) steps.push({ op: 'console', path: '/dev/console' });
  const sysRo = opts.privileged ? 0 : RDONLY;
  // sysfs shows the network namespace of its mounter: in the host's, bind the host's /sys instead.
  if (opts.hostNetwork) steps.push({ op: 'mount', kind: 'dir', source: '/sys', target: '/sys', fstype: 'none', flags: BIND | REC | sysRo, data: '' });
  else steps.push({ op: 'mount', kind: 'dir', source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: NOSUID | NOEXEC | NODEV | sysRo, data: '' });
  if (opts.cgroupV2) {
    steps.push({ op: 'mount', kind: 'dir', source: 'cgroup', target: '/sys/fs/cgroup', fstype: 'cgroup2', flags: NOSUID | NOEXEC | NODEV | sysRo, data: '' });
  } else {
    // A tmpfs with one cgroup mount per hierarchy; the cgroup namespace makes each show the container's own.
    steps.push({ op: 'mount', kind: 'dir', source: 'tmpfs', target: '/sys/fs/cgroup', fstype: 'tmpfs', flags: NOSUID | NOEXEC | NODEV, data: 'mode=755' });
    for (const ctl of opts.cgroupControllers) {
      steps.push({ op: 'mount', kind: 'dir', source: 'cgroup', target: `/sys/fs/cgroup/${ctl.join(',')}`, fstype: 'cgroup', flags: NOSUID | NOEXEC | NODEV | sysRo, data: ctl.join(',') });
    }
  }
  return steps;
}
