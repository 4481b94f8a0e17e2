// An in-memory kernel implementing Kernel, for unit tests of the logic above
// the system layer (controller, drivers, reconcile) without root. It models what
// tsnet relies on: namespaces (by pin path and fd), links with masters and
// aliases, addresses, routes, sysctls, and veth peers that die together.
import {
  DEFAULT_PATH, findCommand,
  type AddrInfo, type BridgeSpec, type ExecResult, type ExecRunner, type Family, type LinkInfo, type LockOps, type NetlinkHandle, type NetnsOps,
  type RouteInfo, type SysctlOps, type Kernel, type VethSpec,
} from '../kernel.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import { FakeFiles, FakeMounts } from './files.js';
import { AlreadyExistsError, SyscallError } from '../../errors.js';
import { cidrContains, parseCidr, parseIp } from '../../ipam/addr.js';

interface FakeLink extends LinkInfo {
  peer?: { ns: FakeNs; index: number };
  /** Bridge port flags set on it (IFLA_PROTINFO). */
  brport?: { isolated?: boolean; hairpin?: boolean };
  promisc?: boolean;
  /** A bridge's 802.1Q filtering; a port's VLANs. */
  vlanFiltering?: boolean;
  vlans?: Map<number, { pvid: boolean; untagged: boolean }>;
}

/** The canonical form of a sysctl key: slashes ('net/ipv4/ip_forward'), as its /proc/sys path. */
export const sysctlPath = (key: string) => (key.includes('/') ? key : key.replace(/\./g, '/'));

/** Per-interface sysctls a new link brings (and takes away when it goes), with the kernel's defaults. */
const PER_LINK: Record<string, string> = { 'net/ipv4/conf/IF/route_localnet': '0', 'net/ipv6/conf/IF/accept_dad': '1', 'net/ipv4/conf/IF/forwarding': '0' };

/** A random locally administered unicast MAC, as the kernel gives a link created without one. */
const randomMac = () => {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
};

export class FakeNs {
  links = new Map<number, FakeLink>();
  addrs: AddrInfo[] = [];
  routes: RouteInfo[] = [];
  /** Like /proc/sys/net in a fresh namespace: only keys that exist, by canonical path. */
  sysctl = new Map<string, string>([
    ['net/ipv4/ip_forward', '0'],
    ['net/ipv6/conf/all/forwarding', '0'],
    ['net/ipv4/conf/all/route_localnet', '0'],
    ['net/ipv4/ip_local_port_range', '32768\t60999'],
    ['net/ipv4/ip_local_reserved_ports', ''],
  ]);
  private nextIndex = 2;
  constructor(readonly id: number) {
    this.links.set(1, { index: 1, name: 'lo', mtu: 65536, up: false });
    this.linkSysctls('lo', true);
  }
  private linkSysctls(name: string, present: boolean): void {
    for (const [k, v] of Object.entries(PER_LINK)) {
      const key = k.replace('IF', name);
      if (present) this.sysctl.set(key, v);
      else this.sysctl.delete(key);
    }
  }
  add(l: Omit<FakeLink, 'index'>): FakeLink {
    if ([...this.links.values()].some((x) => x.name === l.name)) throw new SyscallError('netlink', 'EEXIST', `link ${l.name}: EEXIST`);
    const link = { ...l, index: this.nextIndex++ };
    this.links.set(link.index, link);
    this.linkSysctls(link.name, true);
    return link;
  }
  renameSysctls(from: string, to: string): void {
    const values = Object.keys(PER_LINK).map((k) => this.sysctl.get(k.replace('IF', from)));
    this.linkSysctls(from, false);
    Object.keys(PER_LINK).forEach((k, i) => this.sysctl.set(k.replace('IF', to), values[i] ?? PER_LINK[k]!));
  }
  remove(index: number): void {
    const l = this.links.get(index);
    if (!l) return;
    this.links.delete(index);
    this.linkSysctls(l.name, false);
    this.addrs = this.addrs.filter((a) => a.index !== index);
    this.routes = this.routes.filter((r) => r.oif !== index);
    if (l.peer) {
      const p = l.peer;
      l.peer = undefined;
      const other = p.ns.links.get(p.index);
      if (other) other.peer = undefined;
      p.ns.remove(p.index);
    }
  }
}

export interface FakeKernelOptions {
  /** Whether bridges can filter VLANs (CONFIG_BRIDGE_VLAN_FILTERING); this project's VM cannot. */
  bridgeVlanFiltering?: boolean;
  /** Programs installed in /usr/sbin (default: iptables, ip6tables and nft with their save/restore). */
  commands?: readonly string[];
}

export const DEFAULT_FAKE_COMMANDS = ['iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'ip6tables-save', 'ip6tables-restore', 'nft'];

export class FakeKernel implements Kernel {
  /** The filesystem: /tmp, /run, /var/lib, a boot id, and the installed commands. */
  readonly files = new FakeFiles();
  readonly mounts = new FakeMounts(this.files);

  constructor(private readonly opts: FakeKernelOptions = {}) {
    for (const d of ['/tmp', '/run', '/var/lib', '/usr/sbin', '/usr/bin', '/proc/sys/kernel/random']) this.files.mkdir(d);
    this.files.write('/proc/sys/kernel/random/boot_id', `${randomUUID()}\n`);
    for (const c of opts.commands ?? DEFAULT_FAKE_COMMANDS) this.files.write(`/usr/sbin/${c}`, '', { mode: 0o755 });
  }

  /** A namespace pin is a file with a mount on it, as on the real kernel. */
  private makePin(path: string): void {
    this.files.mkdir(dirname(path));
    if (!this.files.create(path, '', 0o444)) throw new AlreadyExistsError(`namespace file ${path} already exists`);
    this.mounts.table.set(this.files.resolve(path, true), { source: 'nsfs', readOnly: false });
  }

  readonly host = new FakeNs(1);
  private nextNs = 2;
  /** pin path -> namespace */
  readonly pins = new Map<string, FakeNs>();
  private fds = new Map<number, FakeNs>();
  private nextFd = 100;
  /** Every command run, for assertions. */
  readonly commands: Array<{ argv: readonly string[]; input?: string }> = [];
  /** Make the next operation whose description matches fail (for rollback tests). */
  failOn?: RegExp;

  private check(op: string): void {
    if (this.failOn?.test(op)) {
      this.failOn = undefined;
      throw new SyscallError('netlink', 'EIO', `${op}: injected`);
    }
  }

  nsOf(fd?: number): FakeNs {
    if (fd === undefined) return this.host;
    const ns = this.fds.get(fd);
    if (!ns) throw new SyscallError('setns', 'EBADF', `fd ${fd} is not a namespace`);
    return ns;
  }

  netlink(nsFd?: number): NetlinkHandle {
    const k = this;
    const ns = this.nsOf(nsFd);
    const find = (i: number) => {
      const l = ns.links.get(i);
      if (!l) throw new SyscallError('netlink', 'ENODEV', `link ${i}: ENODEV`);
      return l;
    };
    const view = (l: FakeLink): LinkInfo => ({ index: l.index, name: l.name, kind: l.kind, mtu: l.mtu, mac: l.mac, master: l.master, alias: l.alias, up: l.up });
    return {
      async listLinks(filter: { kind?: string } = {}) {
        return [...ns.links.values()].filter((l) => !filter.kind || l.kind === filter.kind).map(view);
      },
      async getLinkByName(name: string) {
        const l = [...ns.links.values()].find((x) => x.name === name);
        return l ? view(l) : undefined;
      },
      async getLinkByIndex(index: number) {
        const l = ns.links.get(index);
        return l ? view(l) : undefined;
      },
      async routeGet(family: Family, dst: string) {
        // Longest prefix match over the namespace's routes and its addresses' connected subnets.
        const ip = parseIp(dst);
        const connected = ns.addrs.filter((x) => x.family === family).map((x) => ({ dst: x.address, dstLen: x.prefixLen, oif: x.index, gateway: undefined as string | undefined }));
        const all = [...ns.routes.filter((r) => r.family === family).map((r) => ({ dst: r.dst ?? (family === 4 ? '0.0.0.0' : '::'), dstLen: r.dstLen, oif: r.oif, gateway: r.gateway })), ...connected];
        const hits = all.filter((r) => cidrContains(parseCidr(`${r.dst}/${r.dstLen}`), ip)).sort((x, y) => y.dstLen - x.dstLen);
        return hits[0] ? { oif: hits[0].oif, gateway: hits[0].gateway } : undefined;
      },
      async createBridge(spec: BridgeSpec) {
        k.check(`create bridge ${spec.name}`);
        if (spec.vlanFiltering && !k.opts.bridgeVlanFiltering) throw new SyscallError('netlink', 'EOPNOTSUPP', `create bridge ${spec.name}: EOPNOTSUPP`);
        return view(ns.add({ name: spec.name, kind: 'bridge', mtu: spec.mtu ?? 1500, alias: spec.alias, mac: spec.mac ?? randomMac(), up: false, vlanFiltering: Boolean(spec.vlanFiltering) }));
      },
      async createVeth(spec: VethSpec) {
        k.check(`create veth ${spec.name}`);
        const peerNs = k.nsOf(spec.peerNetnsFd);
        if ([...peerNs.links.values()].some((x) => x.name === spec.peerName)) throw new SyscallError('netlink', 'EEXIST', 'EEXIST');
        if (spec.master !== undefined && !ns.links.has(spec.master)) throw new SyscallError('netlink', 'EINVAL', `master ${spec.master}: EINVAL`); // the kernel's answer to a missing master
        const a = ns.add({ name: spec.name, kind: 'veth', mtu: spec.mtu ?? 1500, alias: spec.alias, master: spec.master, mac: randomMac(), up: false });
        const b = peerNs.add({ name: spec.peerName, kind: 'veth', mtu: spec.mtu ?? 1500, mac: spec.peerMac ?? randomMac(), up: false });
        a.peer = { ns: peerNs, index: b.index };
        b.peer = { ns, index: a.index };
        return view(a);
      },
      async setLinkUp(index: number, up = true) {
        find(index).up = up;
      },
      async setLinkName(index: number, name: string) {
        const l = find(index);
        if ([...ns.links.values()].some((x) => x.name === name && x !== l)) throw new SyscallError('netlink', 'EEXIST', `link ${name}: EEXIST`);
        ns.renameSysctls(l.name, name);
        l.name = name;
      },
      async setMtu(index: number, mtu: number) {
        find(index).mtu = mtu;
      },
      async setBridgePort(index: number, opts: { isolated?: boolean; hairpin?: boolean }) {
        const l = find(index);
        if (!l.master) throw new SyscallError('netlink', 'EOPNOTSUPP', `link ${l.name} is not a bridge port: EOPNOTSUPP`);
        l.brport = { ...l.brport, ...opts };
      },
      async setPromisc(index: number, on: boolean) {
        find(index).promisc = on;
      },
      async bridgeVlan(index: number, op: 'add' | 'del', vid: number, opts: { pvid?: boolean; untagged?: boolean } = {}) {
        const l = find(index);
        const master = l.master ? ns.links.get(l.master) : undefined;
        // A port of a bridge that does not filter VLANs has none to change.
        if (!master?.vlanFiltering) throw new SyscallError('netlink', 'EOPNOTSUPP', `vlan ${vid} on ${l.name}: EOPNOTSUPP`);
        l.vlans ??= new Map([[1, { pvid: true, untagged: true }]]);
        if (op === 'add') l.vlans.set(vid, { pvid: Boolean(opts.pvid), untagged: Boolean(opts.untagged) });
        else if (!l.vlans.delete(vid)) throw new SyscallError('netlink', 'ENOENT', `vlan ${vid} on ${l.name}: ENOENT`);
      },
      async deleteLink(index: number) {
        if (!ns.links.has(index)) return false;
        ns.remove(index);
        return true;
      },
      async addAddress(index: number, family: Family, address: string, prefixLen: number) {
        k.check(`add address ${address}`);
        find(index);
        if (ns.addrs.some((a) => a.index === index && a.address === address)) throw new SyscallError('netlink', 'EEXIST', 'EEXIST');
        ns.addrs.push({ index, family, address, prefixLen });
      },
      async deleteAddress(index: number, _f: Family, address: string) {
        const before = ns.addrs.length;
        ns.addrs = ns.addrs.filter((a) => !(a.index === index && a.address === address));
        return ns.addrs.length !== before;
      },
      async listAddresses(family?: Family) {
        return ns.addrs.filter((a) => !family || a.family === family);
      },
      async addRoute(r) {
        k.check(`add route ${r.gateway ?? r.dst}`);
        const dstLen = r.dstLen ?? 0;
        // Same table, destination and priority: the kernel refuses (NLM_F_EXCL), whatever the gateway.
        if (ns.routes.some((x) => x.family === r.family && x.dstLen === dstLen && (dstLen === 0 || x.dst === r.dst))) {
          throw new SyscallError('netlink', 'EEXIST', `route ${r.dst ?? 'default'}/${dstLen}: EEXIST`);
        }
        ns.routes.push({ family: r.family, dst: r.dst, dstLen: r.dstLen ?? 0, gateway: r.gateway, oif: r.oif, table: 254 });
      },
      async listRoutes(family: Family) {
        return ns.routes.filter((r) => r.family === family);
      },
      close() {},
    };
  }

  readonly netns: NetnsOps = {
    create: (path: string) => {
      if (this.pins.has(path)) throw new AlreadyExistsError(`namespace file ${path} already exists`);
      this.makePin(path);
      this.pins.set(path, new FakeNs(this.nextNs++));
    },
    pin: (source: string, path: string) => {
      if (this.pins.has(path)) throw new AlreadyExistsError(`namespace file ${path} already exists`);
      const src = source === '/proc/self/ns/net' ? this.host : this.pins.get(source);
      if (!src) throw new SyscallError('mount', 'ENOENT', `${source}: ENOENT`);
      this.makePin(path);
      this.pins.set(path, src);
    },
    remove: (path: string) => {
      const mounted = this.mounts.unmount(path);
      const file = this.files.remove(path);
      return this.pins.delete(path) || mounted || file;
    },
    open: (path: string) => {
      const ns = path === '/proc/self/ns/net' ? this.host : this.pins.get(path);
      if (!ns) throw new SyscallError('open', 'ENOENT', `${path}: ENOENT`);
      const fd = this.nextFd++;
      this.fds.set(fd, ns);
      return fd;
    },
    close: (fd: number) => {
      this.fds.delete(fd);
    },
    inode: (path: string) => (path === '/proc/self/ns/net' ? this.host.id : this.pins.get(path)?.id),
    within: <T>(_fd: number, fn: () => T) => fn(),
  };

  readonly exec: ExecRunner = {
    run: async (argv: readonly string[], opts?: { input?: string }): Promise<ExecResult> => {
      this.commands.push({ argv, input: opts?.input });
      return { stdout: '', stderr: '', code: 0 };
    },
    which: (cmd: string, dirs: string | readonly string[] = DEFAULT_PATH) =>
      findCommand(cmd, dirs, (p) => {
        try {
          return this.files.kind(this.files.resolve(p, true)) === 'file';
        } catch {
          return false; // a component is not a directory
        }
      }),
  };

  /** Missing keys are missing (undefined), and setting one fails, as with /proc/sys. */
  readonly sysctl: SysctlOps = {
    get: (key: string, fd?: number) => this.nsOf(fd).sysctl.get(sysctlPath(key)),
    set: (key: string, value: string, fd?: number) => {
      const ns = this.nsOf(fd);
      if (!ns.sysctl.has(sysctlPath(key))) throw new SyscallError('open', 'ENOENT', `sysctl ${key} does not exist on this kernel`);
      ns.sysctl.set(sysctlPath(key), value);
    },
  };

  /** Held locks by path (an in-process mutex each), and every path ever locked. */
  private readonly held = new Map<string, Promise<void>>();
  readonly locked: string[] = [];
  readonly locks: LockOps = {
    withLock: async <T>(path: string, fn: () => Promise<T> | T): Promise<T> => {
      this.locked.push(path);
      while (this.held.has(path)) await this.held.get(path);
      let release!: () => void;
      this.held.set(path, new Promise<void>((r) => (release = r)));
      try {
        return await fn();
      } finally {
        this.held.delete(path);
        release();
      }
    },
  };

  async firewallGeneration(): Promise<number | undefined> {
    return undefined;
  }

  /** Ports "held by other programs", as 'proto/port'. */
  readonly busyPorts = new Set<string>();
  async portInUse(proto: 'tcp' | 'udp' | 'sctp', _hostIP: string, port: number): Promise<boolean> {
    return this.busyPorts.has(`${proto}/${port}`);
  }
}
