// rtnetlink through the `netlink` package. A handle is bound to one network
// namespace: for a foreign namespace the socket is opened inside it in one
// synchronous addon call (enter, open, leave), and stays bound to it.
import { createNetlink, type NetlinkSocket } from 'netlink';
import type { AddrInfo, BridgeSpec, Family, LinkInfo, NetlinkHandle, RouteInfo, VethSpec } from '../kernel.js';
import { SyscallError } from '../../errors.js';
import type { Logger } from '../../log.js';
import {
  AF_BRIDGE, IFLA, IFLA_BRPORT, IFLA_INFO, attr, attrMac, attrNested, attrString, attrU32, attrU8, ifinfomsg, linkKind, linkinfoBridge, linkinfoVeth, parseAttrs,
  afSpecVlan,
  BRIDGE_VLAN_INFO,
} from './nlattr.js';
import { nativeAddon } from './addon.js';
import { bufferToIp, formatIp, ipToBuffer, parseIp } from '../../ipam/addr.js';

const MSG = { NEWLINK: 16, DELLINK: 17, GETLINK: 18, SETLINK: 19, NEWADDR: 20, DELADDR: 21, GETADDR: 22, NEWROUTE: 24, GETROUTE: 26 } as const;
const NETLINK_ROUTE = 0;
const NLM_F = { REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400, DUMP: 0x300 } as const;
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
const AF = { 4: 2, 6: 10 } as const;
const IFF_UP = 1;
const IFF_PROMISC = 0x100;
const RT_TABLE_MAIN = 254;

/** netlink 0.3.0 reports "Request rejected: EEXIST" with no errno field: recover the name. */
function wrap(op: string, err: unknown): SyscallError {
  const msg = err instanceof Error ? err.message : String(err);
  const m = /Request rejected: (E[A-Z0-9]+|-?\d+)/.exec(msg);
  // ENOTSUP and EOPNOTSUPP are one number on Linux: callers (and the fake) see one name.
  const raw = m ? m[1]! : ((err as { code?: string })?.code ?? 'EIO');
  const errno = raw === 'ENOTSUP' ? 'EOPNOTSUPP' : raw;
  return new SyscallError('netlink', errno, `${op}: ${errno}${m ? '' : ` (${msg})`}`, { cause: err });
}

function macToString(b: Buffer | undefined): string | undefined {
  return b && b.length === 6 ? [...b].map((x) => x.toString(16).padStart(2, '0')).join(':') : undefined;
}

export class RealNetlink implements NetlinkHandle {
  // A plain NETLINK_ROUTE socket: we encode and parse ourselves (the package's
  // rtnetlink layer parses every attribute of every message, ~60 µs a link).
  private readonly sock: NetlinkSocket;
  constructor(private readonly log: Logger, nsFd?: number) {
    const open = () => createNetlink(NETLINK_ROUTE);
    this.sock = nsFd === undefined ? open() : nativeAddon().withNetns(nsFd, open);
  }

  close(): void {
    this.sock.socket.close();
  }

  private async dump(type: number, parts: Buffer[], op: string, flags: number = NLM_F.DUMP) {
    try {
      const [msgs] = await this.sock.request(type, parts, { flags });
      return msgs;
    } catch (err) {
      throw wrap(op, err);
    }
  }

  private async raw(op: string, type: number, parts: Buffer[], flags = 0): Promise<void> {
    this.log.debug({ op }, 'netlink');
    try {
      await this.sock.request(type, parts, { flags });
    } catch (err) {
      throw wrap(op, err);
    }
  }

  /**
   * Dumps links with statistics skipped (IFLA_EXT_MASK) and parses only the
   * attributes tsnet reads: the netlink package's full parse costs ~60 µs a link.
   */
  async listLinks(filter: { kind?: string } = {}): Promise<LinkInfo[]> {
    const parts = [ifinfomsg(), attrU32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS)];
    // Kernels since 4.16 filter dumps by IFLA_LINKINFO kind; older ones ignore it, so filter here too.
    if (filter.kind) parts.push(attrNested(IFLA.LINKINFO, [attrString(IFLA_INFO.KIND, filter.kind)]));
    const links = await this.rawLinks(parts, NLM_F.DUMP, 'list links');
    return filter.kind ? links.filter((l) => l.kind === filter.kind) : links;
  }

  private async rawLinks(parts: Buffer[], flags: number, op: string): Promise<LinkInfo[]> {
    const msgs = await this.dump(MSG.GETLINK, parts, op, flags);
    const out: LinkInfo[] = [];
    for (const m of msgs) {
      if (m.type !== MSG.NEWLINK || m.data.length < 16) continue;
      const a = parseAttrs(m.data.subarray(16));
      const str = (t: number) => a.get(t)?.toString('utf8').replace(/\0+$/, '');
      const u32 = (t: number) => (a.get(t)?.length === 4 ? a.get(t)!.readUInt32LE(0) : undefined);
      out.push({
        index: m.data.readInt32LE(4),
        name: str(IFLA.IFNAME) ?? '',
        kind: linkKind(a.get(IFLA.LINKINFO)),
        mtu: u32(IFLA.MTU) ?? 0,
        mac: macToString(a.get(IFLA.ADDRESS)),
        master: u32(IFLA.MASTER) || undefined,
        alias: str(IFLA.IFALIAS),
        up: (m.data.readUInt32LE(8) & IFF_UP) !== 0,
      });
    }
    return out;
  }

  /** A by-name lookup in the kernel (RTM_GETLINK with IFLA_IFNAME), not a dump: O(1) in the number of links. */
  async getLinkByName(name: string): Promise<LinkInfo | undefined> {
    try {
      const found = await this.rawLinks([ifinfomsg(), attrString(IFLA.IFNAME, name), attrU32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS)], 0, `get link ${name}`);
      return found[0];
    } catch (err) {
      if (err instanceof SyscallError && (err.errno === 'ENODEV' || err.errno === 'ENOENT')) return undefined;
      throw err;
    }
  }

  async getLinkByIndex(index: number): Promise<LinkInfo | undefined> {
    try {
      const found = await this.rawLinks([ifinfomsg({ index }), attrU32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS)], 0, `get link ${index}`);
      return found[0];
    } catch (err) {
      if (err instanceof SyscallError && (err.errno === 'ENODEV' || err.errno === 'ENOENT')) return undefined;
      throw err;
    }
  }

  async routeGet(family: Family, dst: string): Promise<{ oif?: number; gateway?: string } | undefined> {
    const rtm = Buffer.alloc(12); // struct rtmsg
    rtm.writeUInt8(AF[family], 0);
    rtm.writeUInt8(family === 4 ? 32 : 128, 1);
    let msgs;
    try {
      msgs = await this.dump(MSG.GETROUTE, [rtm, attr(1 /* RTA_DST */, ipToBuffer(parseIp(dst)))], `route get ${dst}`, 0);
    } catch (err) {
      if (err instanceof SyscallError && ['ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN'].includes(err.errno)) return undefined;
      throw err;
    }
    const m = msgs.find((x) => x.type === MSG.NEWROUTE && x.data.length >= 12);
    if (!m) return undefined;
    const a = parseAttrs(m.data.subarray(12));
    const oif = a.get(4 /* RTA_OIF */);
    const gw = a.get(5 /* RTA_GATEWAY */);
    return { oif: oif ? oif.readUInt32LE(0) : undefined, gateway: gw ? formatIp(bufferToIp(gw)) : undefined };
  }

  private async mustGet(name: string): Promise<LinkInfo> {
    const l = await this.getLinkByName(name);
    if (!l) throw new SyscallError('netlink', 'ENODEV', `link ${name} vanished after creation`);
    return l;
  }

  async createBridge(spec: BridgeSpec): Promise<LinkInfo> {
    const attrs = [attrString(IFLA.IFNAME, spec.name), linkinfoBridge({ vlanFiltering: spec.vlanFiltering })];
    if (spec.mtu) attrs.push(attrU32(IFLA.MTU, spec.mtu));
    if (spec.mac) attrs.push(attrMac(IFLA.ADDRESS, spec.mac));
    await this.raw(`create bridge ${spec.name}`, MSG.NEWLINK, [ifinfomsg(), ...attrs], NLM_F.CREATE | NLM_F.EXCL);
    return this.tagged(await this.mustGet(spec.name), spec.alias);
  }

  async createVeth(spec: VethSpec): Promise<LinkInfo> {
    const attrs = [
      attrString(IFLA.IFNAME, spec.name),
      linkinfoVeth({ name: spec.peerName, netnsFd: spec.peerNetnsFd, mtu: spec.mtu, mac: spec.peerMac }),
    ];
    if (spec.mtu) attrs.push(attrU32(IFLA.MTU, spec.mtu));
    if (spec.master) attrs.push(attrU32(IFLA.MASTER, spec.master));
    await this.raw(`create veth ${spec.name}/${spec.peerName}`, MSG.NEWLINK, [ifinfomsg(), ...attrs], NLM_F.CREATE | NLM_F.EXCL);
    return this.tagged(await this.mustGet(spec.name), spec.alias);
  }

  /** The kernel ignores IFLA_IFALIAS when creating a link: set it right after. */
  private async tagged(link: LinkInfo, alias: string | undefined): Promise<LinkInfo> {
    if (!alias) return link;
    await this.raw(`set alias of ${link.name}`, MSG.NEWLINK, [ifinfomsg({ index: link.index }), attrString(IFLA.IFALIAS, alias)]);
    return { ...link, alias };
  }

  async setLinkUp(index: number, up = true): Promise<void> {
    await this.raw(`set link ${index} ${up ? 'up' : 'down'}`, MSG.NEWLINK, [ifinfomsg({ index, flags: up ? IFF_UP : 0, change: IFF_UP })]);
  }

  async setLinkName(index: number, name: string): Promise<void> {
    await this.raw(`rename link ${index} to ${name}`, MSG.NEWLINK, [ifinfomsg({ index }), attrString(IFLA.IFNAME, name)]);
  }

  async setMtu(index: number, mtu: number): Promise<void> {
    await this.raw(`set mtu ${index} ${mtu}`, MSG.NEWLINK, [ifinfomsg({ index }), attrU32(IFLA.MTU, mtu)]);
  }

  async setBridgePort(index: number, opts: { isolated?: boolean; hairpin?: boolean }): Promise<void> {
    const brport: Buffer[] = [];
    if (opts.isolated !== undefined) brport.push(attrU8(IFLA_BRPORT.ISOLATED, opts.isolated ? 1 : 0));
    if (opts.hairpin !== undefined) brport.push(attrU8(IFLA_BRPORT.MODE, opts.hairpin ? 1 : 0));
    if (!brport.length) return;
    await this.raw(`set bridge port ${index}`, MSG.SETLINK, [ifinfomsg({ family: AF_BRIDGE, index }), attrNested(IFLA.PROTINFO, brport)]);
  }

  async setPromisc(index: number, on: boolean): Promise<void> {
    await this.raw(`set promisc ${index} ${on ? 'on' : 'off'}`, MSG.NEWLINK, [ifinfomsg({ index, flags: on ? IFF_PROMISC : 0, change: IFF_PROMISC })]);
  }

  async bridgeVlan(index: number, op: 'add' | 'del', vid: number, opts: { pvid?: boolean; untagged?: boolean } = {}): Promise<void> {
    const flags = (opts.pvid ? BRIDGE_VLAN_INFO.PVID : 0) | (opts.untagged ? BRIDGE_VLAN_INFO.UNTAGGED : 0);
    await this.raw(`${op} vlan ${vid} on ${index}`, op === 'add' ? MSG.SETLINK : MSG.DELLINK, [ifinfomsg({ family: AF_BRIDGE, index }), afSpecVlan(vid, flags)]);
  }

  async deleteLink(index: number): Promise<boolean> {
    try {
      await this.raw(`delete link ${index}`, MSG.DELLINK, [ifinfomsg({ index })]);
      return true;
    } catch (err) {
      if (err instanceof SyscallError && (err.errno === 'ENODEV' || err.errno === 'ENOENT')) return false;
      throw err;
    }
  }

  private addrMsg(index: number, family: Family, prefixLen: number): Buffer {
    const b = Buffer.alloc(8); // struct ifaddrmsg
    b.writeUInt8(AF[family], 0);
    b.writeUInt8(prefixLen, 1);
    b.writeUInt8(0, 2); // flags
    b.writeUInt8(0, 3); // scope universe
    b.writeUInt32LE(index, 4);
    return b;
  }

  async addAddress(index: number, family: Family, address: string, prefixLen: number): Promise<void> {
    const ip = ipToBuffer(parseIp(address));
    const IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_FLAGS = 8, IFA_F_NODAD = 0x02;
    const attrs = [attr(IFA_LOCAL, ip), attr(IFA_ADDRESS, ip)];
    // IPv6: skip duplicate address detection, the address is ours by IPAM (Docker does the same).
    if (family === 6) attrs.push(attrU32(IFA_FLAGS, IFA_F_NODAD));
    await this.raw(`add address ${address}/${prefixLen} on ${index}`, MSG.NEWADDR, [this.addrMsg(index, family, prefixLen), ...attrs], NLM_F.CREATE | NLM_F.EXCL);
  }

  async deleteAddress(index: number, family: Family, address: string, prefixLen: number): Promise<boolean> {
    const ip = ipToBuffer(parseIp(address));
    try {
      await this.raw(`delete address ${address}/${prefixLen} on ${index}`, MSG.DELADDR, [this.addrMsg(index, family, prefixLen), attr(2, ip), attr(1, ip)]);
      return true;
    } catch (err) {
      if (err instanceof SyscallError && ['EADDRNOTAVAIL', 'ENODEV', 'ENOENT'].includes(err.errno)) return false;
      throw err;
    }
  }

  async listAddresses(family?: Family): Promise<AddrInfo[]> {
    const req = Buffer.alloc(8);
    req.writeUInt8(family ? AF[family] : 0, 0);
    const out: AddrInfo[] = [];
    for (const m of await this.dump(MSG.GETADDR, [req], 'list addresses')) {
      if (m.type !== MSG.NEWADDR || m.data.length < 8) continue;
      const a = parseAttrs(m.data.subarray(8));
      const raw = a.get(2 /* IFA_LOCAL */) ?? a.get(1 /* IFA_ADDRESS */);
      if (!raw || (raw.length !== 4 && raw.length !== 16)) continue;
      const ip = bufferToIp(raw);
      out.push({ index: m.data.readUInt32LE(4), family: ip.family, address: formatIp(ip), prefixLen: m.data.readUInt8(1) });
    }
    return family ? out.filter((x) => x.family === family) : out;
  }

  async addRoute(route: { family: Family; dst?: string; dstLen?: number; gateway?: string; oif?: number }): Promise<void> {
    const RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5;
    const rtm = Buffer.alloc(12); // struct rtmsg
    rtm.writeUInt8(AF[route.family], 0);
    rtm.writeUInt8(route.dst ? (route.dstLen ?? 0) : 0, 1);
    rtm.writeUInt8(RT_TABLE_MAIN, 4);
    rtm.writeUInt8(3, 5); // RTPROT_BOOT
    rtm.writeUInt8(route.gateway ? 0 : 253, 6); // universe via gateway, link scope otherwise
    rtm.writeUInt8(1, 7); // RTN_UNICAST
    const attrs: Buffer[] = [];
    if (route.dst) attrs.push(attr(RTA_DST, ipToBuffer(parseIp(route.dst))));
    if (route.gateway) attrs.push(attr(RTA_GATEWAY, ipToBuffer(parseIp(route.gateway))));
    if (route.oif) attrs.push(attrU32(RTA_OIF, route.oif));
    const what = `${route.dst ? `${route.dst}/${route.dstLen}` : 'default'}${route.gateway ? ` via ${route.gateway}` : ''}`;
    await this.raw(`add route ${what}`, MSG.NEWROUTE, [rtm, ...attrs], NLM_F.CREATE | NLM_F.EXCL);
  }

  async listRoutes(family: Family): Promise<RouteInfo[]> {
    const req = Buffer.alloc(12);
    req.writeUInt8(AF[family], 0);
    const out: RouteInfo[] = [];
    for (const m of await this.dump(MSG.GETROUTE, [req], 'list routes')) {
      if (m.type !== MSG.NEWROUTE || m.data.length < 12) continue;
      const a = parseAttrs(m.data.subarray(12));
      const table = a.get(15 /* RTA_TABLE */)?.readUInt32LE(0) ?? m.data.readUInt8(4);
      if (table !== RT_TABLE_MAIN) continue;
      const dst = a.get(1 /* RTA_DST */);
      const gw = a.get(5 /* RTA_GATEWAY */);
      const oif = a.get(4 /* RTA_OIF */);
      out.push({
        family,
        dst: dst ? formatIp(bufferToIp(dst)) : undefined,
        dstLen: m.data.readUInt8(1),
        gateway: gw ? formatIp(bufferToIp(gw)) : undefined,
        oif: oif ? oif.readUInt32LE(0) : undefined,
        table,
      });
    }
    return out;
  }
}
