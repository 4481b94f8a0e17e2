// rtnetlink through the `netlink` package. A handle is bound to one network
// namespace: for a foreign namespace the socket is opened inside it in one
// synchronous addon call (enter, open, leave), and stays bound to it.
import { createRtNetlink, type RtNetlinkSocket } from 'netlink/dist/rt/rt.js';
import type { LinkMessage } from 'netlink/dist/rt/structs.js';
import type { AddrInfo, BridgeSpec, Family, LinkInfo, NetlinkHandle, RouteInfo, VethSpec } from '../ports.js';
import { SyscallError } from '../../errors.js';
import type { Logger } from '../../log.js';
import {
  AF_BRIDGE, IFLA, IFLA_BRPORT, attr, attrMac, attrNested, attrString, attrU32, attrU8, ifinfomsg, linkKind, linkinfoBridge, linkinfoVeth,
} from './nlattr.js';
import { nativeAddon } from './addon.js';
import { bufferToIp, formatIp, ipToBuffer, parseIp } from '../../ipam/addr.js';

const MSG = { NEWLINK: 16, DELLINK: 17, GETLINK: 18, SETLINK: 19, NEWADDR: 20, DELADDR: 21, NEWROUTE: 24 } as const;
const NLM_F = { REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400 } as const;
const AF = { 4: 2, 6: 10 } as const;
const IFF_UP = 1;
const RT_TABLE_MAIN = 254;

/** netlink 0.3.0 reports "Request rejected: EEXIST" with no errno field: recover the name. */
function wrap(op: string, err: unknown): SyscallError {
  const msg = err instanceof Error ? err.message : String(err);
  const m = /Request rejected: (E[A-Z0-9]+|-?\d+)/.exec(msg);
  const errno = m ? m[1]! : ((err as { code?: string })?.code ?? 'EIO');
  return new SyscallError('netlink', errno, `${op}: ${errno}${m ? '' : ` (${msg})`}`, { cause: err });
}

function macToString(b: Buffer | undefined): string | undefined {
  return b && b.length === 6 ? [...b].map((x) => x.toString(16).padStart(2, '0')).join(':') : undefined;
}

function toLinkInfo(m: LinkMessage): LinkInfo {
  return {
    index: m.data.index ?? 0,
    name: m.attrs.ifname ?? '',
    kind: linkKind(m.attrs.linkinfo),
    mtu: m.attrs.mtu ?? 0,
    mac: macToString(m.attrs.address),
    master: m.attrs.master || undefined,
    alias: m.attrs.ifalias,
    up: Boolean(m.data.flags?.up),
  };
}

export class RealNetlink implements NetlinkHandle {
  private readonly sock: RtNetlinkSocket;
  constructor(private readonly log: Logger, nsFd?: number) {
    this.sock = nsFd === undefined ? createRtNetlink() : nativeAddon().withNetns(nsFd, () => createRtNetlink());
  }

  close(): void {
    this.sock.socket.socket.close();
  }

  private async raw(op: string, type: number, parts: Buffer[], flags = 0): Promise<void> {
    this.log.debug({ op }, 'netlink');
    try {
      await this.sock.request(type as never, parts, { flags });
    } catch (err) {
      throw wrap(op, err);
    }
  }

  async listLinks(): Promise<LinkInfo[]> {
    let msgs;
    try {
      msgs = await this.sock.getLinks();
    } catch (err) {
      throw wrap('list links', err);
    }
    return msgs.map(toLinkInfo);
  }

  /** A by-name lookup in the kernel (RTM_GETLINK with IFLA_IFNAME), not a dump: O(1) in the number of links. */
  async getLinkByName(name: string): Promise<LinkInfo | undefined> {
    let msgs;
    try {
      msgs = await this.sock.getLink({}, { ifname: name });
    } catch (err) {
      const e = wrap(`get link ${name}`, err);
      if (e.errno === 'ENODEV' || e.errno === 'ENOENT') return undefined;
      throw e;
    }
    return msgs.map(toLinkInfo)[0];
  }

  private async mustGet(name: string): Promise<LinkInfo> {
    const l = await this.getLinkByName(name);
    if (!l) throw new SyscallError('netlink', 'ENODEV', `link ${name} vanished after creation`);
    return l;
  }

  async createBridge(spec: BridgeSpec): Promise<LinkInfo> {
    const attrs = [attrString(IFLA.IFNAME, spec.name), linkinfoBridge()];
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
    let msgs;
    try {
      msgs = await this.sock.getAddresses(family ? { family: AF[family] } : undefined);
    } catch (err) {
      throw wrap('list addresses', err);
    }
    const out: AddrInfo[] = [];
    for (const m of msgs) {
      const raw = m.attrs.local ?? m.attrs.address;
      if (!raw) continue;
      const ip = bufferToIp(raw);
      out.push({ index: m.data.index ?? 0, family: ip.family, address: formatIp(ip), prefixLen: m.data.prefixlen ?? 0 });
    }
    return family ? out.filter((a) => a.family === family) : out;
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
    let msgs;
    try {
      msgs = await this.sock.getRoutes({ family: AF[family] });
    } catch (err) {
      throw wrap('list routes', err);
    }
    return msgs
      .filter((m) => (m.attrs.table ?? m.data.table) === RT_TABLE_MAIN)
      .map((m) => ({
        family,
        dst: m.attrs.dst ? formatIp(bufferToIp(m.attrs.dst)) : undefined,
        dstLen: m.data.dstLen ?? 0,
        gateway: m.attrs.gateway ? formatIp(bufferToIp(m.attrs.gateway)) : undefined,
        oif: m.attrs.oif,
        table: RT_TABLE_MAIN,
      }));
  }
}

