// The system layer's contract. real/ talks to the kernel; fake/ is an in-memory
// kernel for unit tests of the logic above it. Everything above the system layer
// depends only on these interfaces.

export type Family = 4 | 6;

export interface LinkInfo {
  index: number;
  name: string;
  kind?: string; // 'bridge', 'veth', ... from IFLA_INFO_KIND
  mtu: number;
  mac?: string;
  master?: number;
  alias?: string;
  up: boolean;
}

export interface AddrInfo {
  index: number;
  family: Family;
  address: string;
  prefixLen: number;
}

export interface RouteInfo {
  family: Family;
  dst?: string; // undefined = default route
  dstLen: number;
  gateway?: string;
  oif?: number;
  table: number;
}

export interface VethSpec {
  /** Host-side name (in the namespace of the handle). */
  name: string;
  /** Peer name, created directly inside the namespace behind peerNetnsFd. */
  peerName: string;
  peerNetnsFd: number;
  mtu?: number;
  alias?: string;
  peerMac?: string;
  master?: number;
}

export interface BridgeSpec {
  name: string;
  mtu?: number;
  /** 802.1Q filtering on the bridge (ports then carry only their VLANs). */
  vlanFiltering?: boolean;
  alias?: string;
  mac?: string;
}

/** One rtnetlink connection bound to one network namespace. */
export interface NetlinkHandle {
  /** All links, or (filtered in the kernel) only those of one kind. */
  listLinks(filter?: { kind?: string }): Promise<LinkInfo[]>;
  getLinkByName(name: string): Promise<LinkInfo | undefined>;
  getLinkByIndex(index: number): Promise<LinkInfo | undefined>;
  /** The route the kernel would use to reach dst (RTM_GETROUTE), undefined when unreachable. */
  routeGet(family: Family, dst: string): Promise<{ oif?: number; gateway?: string } | undefined>;
  createBridge(spec: BridgeSpec): Promise<LinkInfo>;
  createVeth(spec: VethSpec): Promise<LinkInfo>;
  setLinkUp(index: number, up?: boolean): Promise<void>;
  setLinkName(index: number, name: string): Promise<void>;
  setMtu(index: number, mtu: number): Promise<void>;
  setBridgePort(index: number, opts: { isolated?: boolean; hairpin?: boolean }): Promise<void>;
  setPromisc(index: number, on: boolean): Promise<void>;
  /** Adds or removes a VLAN on a bridge port (PVID/untagged: an access port of that VLAN). */
  bridgeVlan(index: number, op: 'add' | 'del', vid: number, opts?: { pvid?: boolean; untagged?: boolean }): Promise<void>;
  /** Deletes the link; returns false when it did not exist. */
  deleteLink(index: number): Promise<boolean>;
  addAddress(index: number, family: Family, address: string, prefixLen: number): Promise<void>;
  deleteAddress(index: number, family: Family, address: string, prefixLen: number): Promise<boolean>;
  listAddresses(family?: Family): Promise<AddrInfo[]>;
  addRoute(route: { family: Family; dst?: string; dstLen?: number; gateway?: string; oif?: number }): Promise<void>;
  listRoutes(family: Family): Promise<RouteInfo[]>;
  close(): void;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** The PATH a process without one searches. */
export const DEFAULT_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** which(1) over any filesystem: the first dir holding cmd as a file (a name with a slash is never looked up). */
export function findCommand(cmd: string, dirs: string | readonly string[], isFile: (path: string) => boolean): string | undefined {
  if (cmd === '' || cmd.includes('/') || cmd === '.' || cmd === '..') return undefined;
  const list = typeof dirs === 'string' ? dirs.split(':') : dirs;
  for (const d of list) {
    if (!d) continue;
    const p = `${d.replace(/\/+$/, '')}/${cmd}`;
    if (isFile(p)) return p;
  }
  return undefined;
}

export interface ExecRunner {
  /** Runs argv; rejects with CommandError on a non-zero exit unless allowFail. env replaces the environment. */
  run(argv: readonly string[], opts?: { input?: string; allowFail?: boolean; env?: NodeJS.ProcessEnv }): Promise<ExecResult>;
  /**
   * Where a command is: the first of dirs (a PATH string or a list; default the
   * process's PATH) holding it. A name with a slash is never looked up (undefined).
   */
  which(cmd: string, dirs?: string | readonly string[]): string | undefined;
}

export interface NetnsOps {
  /** Creates a persistent namespace pinned at path (like `ip netns add`). */
  create(path: string): void;
  /** Pins an existing namespace (e.g. /proc/PID/ns/net) at path. */
  pin(source: string, path: string): void;
  /** Unpins and removes path; false when it was already gone. */
  remove(path: string): boolean;
  /** Opens a namespace file; the caller closes the fd. */
  open(path: string): number;
  close(fd: number): void;
  /** Inode that identifies a namespace, or undefined when the path is gone. */
  inode(path: string): number | undefined;
  /** Runs fn synchronously inside the namespace behind fd. */
  within<T>(fd: number, fn: () => T): T;
}

export interface SysctlOps {
  /** key like 'net.ipv4.ip_forward'; nsFd selects the namespace (default: ours). */
  get(key: string, nsFd?: number): string | undefined;
  set(key: string, value: string, nsFd?: number): void;
}

export interface LockOps {
  /**
   * Runs fn holding an exclusive lock on path: a directory, or a file (created if
   * missing). Waiting never blocks the event loop; a lock file deleted or replaced
   * while waiting is taken again on the current one.
   */
  withLock<T>(path: string, fn: () => Promise<T> | T): Promise<T>;
}

export type FileKind = 'file' | 'dir' | 'symlink' | 'other';

/**
 * Files: the state store, CNI leases, marks and markers, /proc and cgroup control
 * files. Failures are SyscallErrors carrying the kernel's errno (ENOENT for a
 * missing parent, ENOTDIR, EISDIR, EEXIST, ...), the same from the fake.
 */
export interface FileOps {
  /** The file's text; undefined when nothing is there (and, with noFollow, when a symlink is). */
  read(path: string, opts?: { noFollow?: boolean }): string | undefined;
  /**
   * Writes a file. Default: created (with mode) or truncated. existing: only a file
   * that is already there (a /proc or cgroup control file), ENOENT otherwise.
   */
  write(path: string, text: string, opts?: { mode?: number; existing?: boolean }): void;
  /** Creates a file only where nothing is (O_EXCL: a symlink there counts): false when taken. A failed write leaves no file. */
  create(path: string, text: string, mode?: number): boolean;
  /**
   * Replaces path through a temp file and a rename (tmp: its name, default
   * PATH.PID.tmp): readers see the old text or the new, never part; a symlink at
   * path is replaced, its target untouched; a failed write leaves no temp behind.
   */
  replace(path: string, text: string, opts?: { mode?: number; tmp?: string }): void;
  /** Names in a directory, sorted; [] when it does not exist. */
  list(dir: string): string[];
  /** What is at path, without following a symlink there; undefined when nothing is. */
  kind(path: string): FileKind | undefined;
  /** mkdir -p, one component at a time (mode for the ones it makes). */
  mkdir(path: string, mode?: number): void;
  /** Removes a file, a symlink or an empty directory (a cgroup); false when nothing was there. */
  remove(path: string): boolean;
  rename(from: string, to: string): void;
  /** A second name for a file (a hard link). */
  link(existing: string, path: string): void;
  /** A symlink at path pointing to target (EEXIST when something is there). */
  symlink(target: string, path: string): void;
  /** Whether this process may create files in dir. */
  writable(dir: string): boolean;
}

/** Mounts of our mount namespace (the runtime's rootfs work happens in native code after fork). */
export interface MountOps {
  /** Bind-mounts source on target (which must exist); readOnly remounts the bind read-only. */
  bind(source: string, target: string, opts?: { readOnly?: boolean }): void;
  /** An overlay filesystem on target (an existing directory): lower dirs top first. */
  overlay(target: string, opts: { lower: string[]; upper: string; work: string }): void;
  /** Unmounts target (detach: lazily, MNT_DETACH); false when nothing was mounted there. */
  unmount(target: string, opts?: { detach?: boolean }): boolean;
  /** Whether a mount sits on path (compared with its parent directory's device and its own mount id). */
  isMountPoint(path: string): boolean;
}

export interface Kernel {
  /** rtnetlink handle for our own namespace (nsFd undefined) or the one behind nsFd. */
  netlink(nsFd?: number): NetlinkHandle;
  netns: NetnsOps;
  exec: ExecRunner;
  sysctl: SysctlOps;
  locks: LockOps;
  files: FileOps;
  mounts: MountOps;
  /** nftables ruleset generation of our namespace (undefined where nftables is absent). */
  firewallGeneration(): Promise<number | undefined>;
  /** Whether another program holds a port ('' = any address), probed by binding it. */
  portInUse(proto: 'tcp' | 'udp' | 'sctp', hostIP: string, port: number): Promise<boolean>;
}
