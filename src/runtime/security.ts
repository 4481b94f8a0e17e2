// Capabilities and seccomp, decided here and handed to the native helper as data.
import { readFileSync } from 'node:fs';
import { InvalidConfigError } from '../errors.js';

export const CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT',
  'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE',
  'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ',
  'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
] as const;
export type Capability = (typeof CAPABILITIES)[number];

/** Docker's default set. */
export const DEFAULT_CAPS: Capability[] = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE'];

/** "NET_ADMIN", "CAP_NET_ADMIN", "net_admin" or "ALL" -> the names. */
function capNames(list: string[], flag: string): Capability[] | 'ALL' {
  const out: Capability[] = [];
  for (const raw of list) {
    const n = raw.toUpperCase().replace(/^CAP_/, '');
    if (n === 'ALL') return 'ALL';
    if (!(CAPABILITIES as readonly string[]).includes(n)) throw new InvalidConfigError(`${flag}: unknown capability "${raw}"`);
    out.push(n as Capability);
  }
  return out;
}

/** The container's capability set from Docker's default, --cap-add and --cap-drop (--privileged: all). */
export function capabilitySet(add: string[], drop: string[], privileged: boolean): Capability[] {
  if (privileged) return [...CAPABILITIES];
  const a = capNames(add, '--cap-add');
  const d = capNames(drop, '--cap-drop');
  let set = new Set<Capability>(d === 'ALL' ? [] : DEFAULT_CAPS.filter((c) => !d.includes(c)));
  if (a === 'ALL') set = new Set(CAPABILITIES);
  else for (const c of a) set.add(c);
  return CAPABILITIES.filter((c) => set.has(c));
}

export const capMask = (caps: Capability[]) => caps.reduce((m, c) => m | (1n << BigInt(CAPABILITIES.indexOf(c))), 0n);

// ---------------------------------------------------------------- seccomp

/** One rule as the helper takes it: syscall name, action, and argument conditions. */
export interface SeccompRule {
  name: string;
  action: string; // allow | errno:N | kill | trap | log
  args: Array<{ index: number; op: 'ne' | 'lt' | 'le' | 'eq' | 'ge' | 'gt' | 'me'; value: bigint; valueTwo: bigint }>;
}
export interface SeccompProgram {
  defaultAction: string;
  rules: SeccompRule[];
}

const EPERM = 1, ENOSYS = 38;
const CLONE_NS_FLAGS = [0x00020000 /* NEWNS */, 0x02000000 /* NEWCGROUP */, 0x04000000 /* NEWUTS */, 0x08000000 /* NEWIPC */, 0x10000000 /* NEWUSER */, 0x20000000 /* NEWPID */, 0x40000000 /* NEWNET */];

/**
 * The effect of Docker's default profile, as rules over an allowing default: the
 * calls it withholds from a container fail with EPERM unless the capability that
 * Docker's profile ties them to is in the set; clone may not make namespaces and
 * clone3 is ENOSYS (so libc falls back to clone) without CAP_SYS_ADMIN.
 */
export function defaultSeccomp(caps: Capability[]): SeccompProgram {
  const has = (c: Capability) => caps.includes(c);
  const deny: Array<[string[], Capability | undefined]> = [
    [['acct'], 'SYS_PACCT'],
    [['add_key', 'keyctl', 'request_key'], undefined],
    [['bpf'], 'BPF'],
    [['clock_adjtime', 'clock_settime', 'settimeofday', 'stime', 'adjtimex'], 'SYS_TIME'],
    [['create_module', 'delete_module', 'finit_module', 'init_module', 'get_kernel_syms', 'query_module'], 'SYS_MODULE'],
    [['get_mempolicy', 'mbind', 'set_mempolicy', 'move_pages'], 'SYS_NICE'],
    [['ioperm', 'iopl'], 'SYS_RAWIO'],
    [['kcmp', 'process_vm_readv', 'process_vm_writev', 'ptrace'], 'SYS_PTRACE'],
    [['kexec_file_load', 'kexec_load', 'reboot'], 'SYS_BOOT'],
    [['lookup_dcookie', 'perf_event_open'], 'PERFMON'],
    [['mount', 'umount', 'umount2', 'unshare', 'setns', 'pivot_root', 'name_to_handle_at', 'open_by_handle_at', 'quotactl', 'swapon', 'swapoff', 'sysfs', '_sysctl', 'fanotify_init', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'mount_setattr', 'vhangup'], 'SYS_ADMIN'],
    [['nfsservctl', 'uselib', 'userfaultfd', 'ustat', 'vm86', 'vm86old', 'io_uring_setup', 'io_uring_enter', 'io_uring_register'], undefined],
    [['syslog'], 'SYSLOG'],
  ];
  const rules: SeccompRule[] = [];
  for (const [names, cap] of deny) {
    if (cap && has(cap)) continue;
    for (const name of names) rules.push({ name, action: `errno:${EPERM}`, args: [] });
  }
  if (!has('SYS_ADMIN')) {
    for (const f of CLONE_NS_FLAGS) rules.push({ name: 'clone', action: `errno:${EPERM}`, args: [{ index: 0, op: 'me', value: BigInt(f), valueTwo: BigInt(f) }] });
    rules.push({ name: 'clone3', action: `errno:${ENOSYS}`, args: [] });
  }
  return { defaultAction: 'allow', rules };
}

const ACTIONS: Record<string, (errno: number) => string> = {
  SCMP_ACT_ALLOW: () => 'allow',
  SCMP_ACT_ERRNO: (e) => `errno:${e}`,
  SCMP_ACT_KILL: () => 'killthread',
  SCMP_ACT_KILL_THREAD: () => 'killthread',
  SCMP_ACT_KILL_PROCESS: () => 'kill',
  SCMP_ACT_TRAP: () => 'trap',
  SCMP_ACT_LOG: () => 'log',
};
const OPS: Record<string, SeccompRule['args'][number]['op']> = {
  SCMP_CMP_NE: 'ne', SCMP_CMP_LT: 'lt', SCMP_CMP_LE: 'le', SCMP_CMP_EQ: 'eq', SCMP_CMP_GE: 'ge', SCMP_CMP_GT: 'gt', SCMP_CMP_MASKED_EQ: 'me',
};

/** A profile file in Docker's format (defaultAction, syscalls[{names, action, args, includes/excludes}]). */
export function parseSeccompProfile(text: string, caps: Capability[], where: string): SeccompProgram {
  let p: any;
  try {
    p = JSON.parse(text);
  } catch (err) {
    throw new InvalidConfigError(`seccomp profile ${where} is not JSON: ${(err as Error).message}`);
  }
  const action = (a: unknown, errno: unknown, at: string) => {
    const f = ACTIONS[String(a)];
    if (!f) throw new InvalidConfigError(`seccomp profile ${where}: ${at}: unknown action ${JSON.stringify(a)}`);
    return f(typeof errno === 'number' ? errno : EPERM);
  };
  if (typeof p?.defaultAction !== 'string') throw new InvalidConfigError(`seccomp profile ${where}: defaultAction is missing`);
  const prog: SeccompProgram = { defaultAction: action(p.defaultAction, p.defaultErrnoRet, 'defaultAction'), rules: [] };
  for (const [i, s] of ((p.syscalls ?? []) as any[]).entries()) {
    const at = `syscalls[${i}]`;
    const names: string[] = s.names ?? (s.name ? [s.name] : []);
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) throw new InvalidConfigError(`seccomp profile ${where}: ${at}.names must be a list of names`);
    const inc: string[] = s.includes?.caps ?? [];
    const exc: string[] = s.excludes?.caps ?? [];
    const capOk = (c: string) => caps.includes(c.replace(/^CAP_/, '') as Capability);
    if (inc.length && !inc.every(capOk)) continue;
    if (exc.length && exc.some(capOk)) continue;
    if (s.includes?.arches || s.excludes?.arches) {
      const arches: string[] = s.includes?.arches ?? [];
      if (arches.length && !arches.includes('amd64') && !arches.includes('x86_64')) continue;
      if ((s.excludes?.arches ?? []).some((a: string) => a === 'amd64' || a === 'x86_64')) continue;
    }
    const args = ((s.args ?? []) as any[]).map((a, j) => {
      const op = OPS[String(a.op)];
      if (!op) throw new InvalidConfigError(`seccomp profile ${where}: ${at}.args[${j}]: unknown op ${JSON.stringify(a.op)}`);
      return { index: Number(a.index), op, value: BigInt(a.value ?? 0), valueTwo: BigInt(a.valueTwo ?? 0) };
    });
    // Several conditions on one argument can only mean "any of these" (libseccomp refuses them in
    // one rule): each becomes a rule of its own, as runc does.
    const repeated = new Set(args.map((x) => x.index)).size < args.length;
    for (const name of names) {
      if (repeated) for (const a of args) prog.rules.push({ name, action: action(s.action, s.errnoRet, at), args: [a] });
      else prog.rules.push({ name, action: action(s.action, s.errnoRet, at), args });
    }
  }
  return prog;
}

export function loadSeccompProfile(path: string, caps: Capability[]): SeccompProgram {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidConfigError(`seccomp profile ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return parseSeccompProfile(text, caps, path);
}
